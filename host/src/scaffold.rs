//! `vpcrouter plugin new NAME --lang rust|python|js --kind config|health`:
//! a ready-to-build plugin project, outside any checkout. The contract
//! (WIT) is vendored, and for Rust the guest SDK too, so that the project
//! builds on its own; a README gives three commands: build, try on the
//! embedded VPC, test.

use std::path::{Path, PathBuf};

use crate::plugin::wit_version;

/// The contract this daemon speaks.
const WIT: &str = include_str!(concat!("../../wit/v", wit_version!(), "/plugin.wit"));
/// The wit-bindgen the SDK is built with (the workspace's).
const WIT_BINDGEN: &str = "0.61";

const SDK: [(&str, &str); 4] = [
    ("lib.rs", include_str!("../../plugins/sdk/src/lib.rs")),
    (
        "bindings.rs",
        include_str!("../../plugins/sdk/src/bindings.rs"),
    ),
    ("spec.rs", include_str!("../../plugins/sdk/src/spec.rs")),
    (
        "tracker.rs",
        include_str!("../../plugins/sdk/src/tracker.rs"),
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Config,
    Health,
}

/// Write the project for plugin `name` into `dir` (which must not exist);
/// the files written.
pub fn write(name: &str, lang: Lang, kind: Kind, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(format!(
            "{name:?}: a plugin name is a lowercase letter, then lowercase letters, digits or '-'"
        ));
    }
    if dir.exists() {
        return Err(format!("{}: already exists", dir.display()));
    }
    let words = Words::new(name, lang, kind);
    let mut written = Vec::new();
    for (path, text) in project(lang, kind, &words) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The port a health check's try line probes: the daemon's own HTTP port,
/// which it listens on at 127.0.0.1, the router of the project's vpc.json,
/// so the check finds the router healthy and the route is created.
const TRY_PORT: u16 = 33289;

/// What the templates' `{{...}}` placeholders stand for.
struct Words {
    name: String,
    /// The name as an identifier (options are `--PREFIX_...`).
    prefix: String,
    world: &'static str,
    kind: &'static str,
    /// The built component's file name, and the README's command to try it.
    file: String,
    try_line: String,
    /// What the try line does.
    try_note: String,
}

impl Words {
    fn new(name: &str, lang: Lang, kind: Kind) -> Self {
        let prefix = name.replace('-', "_");
        let (world, kind_name) = match kind {
            Kind::Config => ("config-plugin", "config-source"),
            Kind::Health => ("health-plugin", "health-check"),
        };
        let file = match lang {
            Lang::Rust => format!("{prefix}.wasm"),
            Lang::Python | Lang::Js => format!("{name}.wasm"),
        };
        let built = match lang {
            Lang::Rust => format!("target/wasm32-wasip2/release/{file}"),
            Lang::Python | Lang::Js => file.clone(),
        };
        let try_line = match kind {
            Kind::Config => format!(
                "vpcrouter --mode-plugin {built} --{prefix}_file routes.txt --sim-vpc vpc.json -H none   # try"
            ),
            Kind::Health => format!(
                "vpcrouter -m fixedconf --fixed_cidr 10.55.0.0/16 --fixed_hosts 127.0.0.1 --sim-vpc vpc.json \\\n    --health-plugin {built} --{prefix}_port {TRY_PORT}   # try"
            ),
        };
        let try_note = match kind {
            Kind::Config => "The try line runs vpcrouter on its embedded VPC (`vpc.json`, \
                its router 127.0.0.1) on the spec your plugin reads from `routes.txt`: \
                it logs `route created`. Ctrl-C stops it; nothing leaves this machine."
                .to_string(),
            Kind::Health => format!(
                "The try line runs vpcrouter on its embedded VPC (`vpc.json`, its router \
                 127.0.0.1) with your check probing the daemon's own HTTP port ({TRY_PORT}) \
                 on that router: the check finds it healthy and the route is created \
                 (`route created` in the log). Ctrl-C stops it; nothing leaves this machine."
            ),
        };
        Self {
            name: name.to_string(),
            prefix,
            world,
            kind: kind_name,
            file,
            try_line,
            try_note,
        }
    }

    fn fill(&self, template: &str) -> String {
        template
            .replace("{{name}}", &self.name)
            .replace("{{prefix}}", &self.prefix)
            .replace("{{world}}", self.world)
            .replace("{{kind}}", self.kind)
            .replace("{{file}}", &self.file)
            .replace("{{try}}", &self.try_line)
            .replace("{{try_note}}", &self.try_note)
            .replace("{{version}}", env!("CARGO_PKG_VERSION"))
            .replace("{{wit}}", wit_version!())
            .replace("{{guide}}", &plugins_guide())
            .replace("{{wit_bindgen}}", WIT_BINDGEN)
    }
}

/// The project's files: the contract, a VPC to try it on, the README and
/// the language's own files, and for Rust the vendored SDK.
fn project(lang: Lang, kind: Kind, words: &Words) -> Vec<(PathBuf, String)> {
    let mut files: Vec<(PathBuf, String)> = vec![
        ("wit/plugin.wit".into(), WIT.into()),
        (
            "vpc.json".into(),
            include_str!("../templates/vpc.json").into(),
        ),
        (
            ".gitignore".into(),
            include_str!("../templates/gitignore").into(),
        ),
    ];
    if kind == Kind::Config {
        files.push((
            "routes.txt".into(),
            include_str!("../templates/routes.txt").into(),
        ));
    }
    let (readme, own) = templates(lang, kind);
    files.push(("README.md".into(), words.fill(readme)));
    files.extend(
        own.into_iter()
            .map(|(path, text)| (path.into(), words.fill(text))),
    );
    if lang == Lang::Rust {
        for (file, source) in SDK {
            // The SDK finds the contract one level up, as vendored here.
            let source = source.replace(concat!("../../wit/v", wit_version!()), "../wit");
            files.push((Path::new("sdk/src").join(file), source));
        }
    }
    files
}

/// The README template and the language's own files, by path.
fn templates(lang: Lang, kind: Kind) -> (&'static str, Vec<(&'static str, &'static str)>) {
    match (lang, kind) {
        (Lang::Rust, kind) => (
            include_str!("../templates/README-rust.md"),
            vec![
                ("Cargo.toml", include_str!("../templates/rust/Cargo.toml")),
                (
                    "sdk/Cargo.toml",
                    include_str!("../templates/rust/sdk-Cargo.toml"),
                ),
                (
                    "src/lib.rs",
                    match kind {
                        Kind::Config => include_str!("../templates/rust/config.rs"),
                        Kind::Health => include_str!("../templates/rust/health.rs"),
                    },
                ),
            ],
        ),
        (Lang::Python, Kind::Config) => (
            include_str!("../templates/README-python.md"),
            vec![
                ("app.py", include_str!("../templates/python/config_app.py")),
                (
                    "logic.py",
                    include_str!("../templates/python/config_logic.py"),
                ),
                (
                    "test_logic.py",
                    include_str!("../templates/python/config_test.py"),
                ),
            ],
        ),
        (Lang::Python, Kind::Health) => (
            include_str!("../templates/README-python.md"),
            vec![
                ("app.py", include_str!("../templates/python/health_app.py")),
                (
                    "logic.py",
                    include_str!("../templates/python/health_logic.py"),
                ),
                (
                    "test_logic.py",
                    include_str!("../templates/python/health_test.py"),
                ),
            ],
        ),
        (Lang::Js, Kind::Config) => (
            include_str!("../templates/README-js.md"),
            vec![
                ("package.json", include_str!("../templates/js/package.json")),
                ("plugin.js", include_str!("../templates/js/config.js")),
                ("errors.js", include_str!("../templates/js/errors.js")),
                ("logic.js", include_str!("../templates/js/config-logic.js")),
                (
                    "logic.test.js",
                    include_str!("../templates/js/config-logic.test.js"),
                ),
            ],
        ),
        (Lang::Js, Kind::Health) => (
            include_str!("../templates/README-js.md"),
            vec![
                ("package.json", include_str!("../templates/js/package.json")),
                ("plugin.js", include_str!("../templates/js/health.js")),
                ("errors.js", include_str!("../templates/js/errors.js")),
                ("logic.js", include_str!("../templates/js/health-logic.js")),
                (
                    "logic.test.js",
                    include_str!("../templates/js/health-logic.test.js"),
                ),
            ],
        ),
    }
}

/// Where the plugin author's guide is: installed beside this binary
/// (`PREFIX/share/doc/vpcrouter/PLUGINS.md`, `make install` and the
/// package put it there), else in vpcrouter's sources.
pub fn plugins_guide() -> String {
    let installed = std::env::current_exe().ok().and_then(|exe| {
        let prefix = exe.parent()?.parent()?;
        let guide = prefix.join(GUIDE_IN_PREFIX);
        guide.is_file().then_some(guide)
    });
    match installed {
        Some(guide) => format!("PLUGINS.md ({})", guide.display()),
        None => {
            format!("PLUGINS.md (in vpcrouter's sources; installed as PREFIX/{GUIDE_IN_PREFIX})")
        }
    }
}

/// The guide's place under an install's prefix (the Makefile's `install`).
pub const GUIDE_IN_PREFIX: &str = "share/doc/vpcrouter/PLUGINS.md";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_filled_in() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for kind in [Kind::Config, Kind::Health] {
                let dir = tempfile::tempdir().unwrap();
                let project = dir.path().join("my-plugin");
                let files = write("my-plugin", lang, kind, &project).unwrap();
                for file in &files {
                    let text = std::fs::read_to_string(file).unwrap();
                    assert!(!text.contains("{{"), "{}: {text}", file.display());
                }
                assert!(project.join("wit/plugin.wit").is_file());
                assert!(
                    write("my-plugin", lang, kind, &project).is_err(),
                    "overwrote"
                );
            }
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(write("My Plugin", Lang::Rust, Kind::Config, &dir.path().join("x")).is_err());
    }
}
