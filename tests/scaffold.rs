//! `vpcrouter plugin new`: the projects it writes build and work outside
//! this repository, as an outside author would use them: the README's
//! build, try and test commands.

mod common;

use common::Daemon;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn vpcrouter(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn run(program: &str, args: &[&str], dir: &Path, env: &[(&str, &Path)]) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} in {}:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A Rust config source: built with its vendored SDK and WIT, its unit test
/// passes, and the daemon runs it on the embedded VPC as the README says.
#[test]
fn a_new_rust_plugin_builds_tests_and_runs_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let created = vpcrouter(
        &["plugin", "new", "my-routes", "--lang", "rust"],
        dir.path(),
    );
    assert!(created.status.success(), "{created:?}");
    let project = dir.path().join("my-routes");
    // A target dir of its own (this one is locked by the running tests),
    // kept between runs.
    let target = common::repo().join("target/scaffold-test");
    let env = [("CARGO_TARGET_DIR", target.as_path())];
    run(
        "cargo",
        &["build", "--target", "wasm32-wasip2", "--release"],
        &project,
        &env,
    );
    run("cargo", &["test"], &project, &env);
    let plugin = target.join("wasm32-wasip2/release/my_routes.wasm");
    let (routes, vpc) = (project.join("routes.txt"), project.join("vpc.json"));
    let daemon = Daemon::start(
        &[
            "--mode-plugin",
            plugin.to_str().unwrap(),
            "--my_routes_file",
            routes.to_str().unwrap(),
            "--sim-vpc",
            vpc.to_str().unwrap(),
        ],
        dir.path(),
    );
    daemon.wait_for_line(
        r#"spec={"10.55.0.0/16":["127.0.0.1"]}"#,
        Duration::from_secs(10),
    );
    daemon.wait_for_line("route created", Duration::from_secs(10));
}

/// Python and JavaScript projects: their logic tests pass, they build with
/// their toolchains, and the daemon accepts what they build.
#[test]
fn new_python_and_javascript_plugins_test_and_build() {
    let dir = tempfile::tempdir().unwrap();
    for (lang, kind) in [("python", "config"), ("js", "health")] {
        let name = format!("my-{lang}");
        let created = vpcrouter(
            &["plugin", "new", &name, "--lang", lang, "--kind", kind],
            dir.path(),
        );
        assert!(created.status.success(), "{created:?}");
        let project = dir.path().join(&name);
        let built = match lang {
            "python" => {
                run("python3", &["-m", "unittest"], &project, &[]);
                let out = format!("{name}.wasm");
                run(
                    "componentize-py",
                    &[
                        "-d",
                        "wit",
                        "-w",
                        "config-plugin",
                        "componentize",
                        "app",
                        "-o",
                        &out,
                    ],
                    &project,
                    &[],
                );
                out
            }
            _ => {
                run("node", &["--test"], &project, &[]);
                // The toolchain `make lang-examples` installed for the
                // JavaScript example (npm install would fetch the same).
                let modules = common::repo().join("examples/tcp-latency/node_modules");
                std::os::unix::fs::symlink(&modules, project.join("node_modules")).unwrap();
                run("npm", &["run", "--silent", "build"], &project, &[]);
                format!("{name}.wasm")
            }
        };
        let inspected = vpcrouter(&["plugin", "inspect", &built], &project);
        let text = String::from_utf8_lossy(&inspected.stdout);
        assert!(inspected.status.success(), "{inspected:?}");
        let expected = match kind {
            "config" => "config-source plugin (vpcrouter:plugin@0.1.3)",
            _ => "health-check plugin (vpcrouter:plugin@0.1.3)",
        };
        assert!(text.contains(expected), "{text}");
    }
}

/// The contract version the guide, the scaffolds, the SDK and the bundled
/// plugins name is the newest in `wit/`, the host's: no page says an older
/// one is the newest, or that a scaffold vendors what it does not.
#[test]
fn the_guide_scaffolds_and_sdk_name_the_newest_contract() {
    let repo = common::repo();
    let newest = std::fs::read_dir(repo.join("wit"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let v: Vec<u32> = name
                .strip_prefix('v')?
                .split('.')
                .map(|n| n.parse().unwrap())
                .collect();
            Some(v)
        })
        .max()
        .map(|v| format!("{}.{}.{}", v[0], v[1], v[2]))
        .unwrap();
    let guide = std::fs::read_to_string(repo.join("PLUGINS.md")).unwrap();
    for line in guide
        .lines()
        .filter(|l| ["newest", "vendor"].iter().any(|w| l.contains(w)))
    {
        for found in versions_in(line) {
            assert_eq!(found, newest, "PLUGINS.md: {line}");
        }
    }
    assert!(guide.contains(&format!("vpcrouter:plugin@{newest}` is the newest")));
    assert!(guide.contains(&format!("| {newest} (this one) |")));
    let sdk = std::fs::read_to_string(repo.join("plugins/sdk/src/bindings.rs")).unwrap();
    assert!(
        sdk.contains(&format!("wit/v{newest}")),
        "the SDK builds against another contract"
    );

    let dir = tempfile::tempdir().unwrap();
    for lang in ["rust", "python", "js"] {
        let created = vpcrouter(
            &["plugin", "new", "v", "--lang", lang, "--dir", lang],
            dir.path(),
        );
        assert!(created.status.success(), "{created:?}");
        let project = dir.path().join(lang);
        let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
        assert!(
            readme.contains(&format!("vpcrouter:plugin@{newest}")),
            "{readme}"
        );
        assert!(readme.contains("PLUGINS.md ("), "{readme}");
        let vendored = std::fs::read_to_string(project.join("wit/plugin.wit")).unwrap();
        let ours = std::fs::read_to_string(repo.join(format!("wit/v{newest}/plugin.wit"))).unwrap();
        assert_eq!(vendored, ours, "{lang}");
    }
    let inspected = vpcrouter(
        &["plugin", "inspect", "configfile.wasm"],
        &repo.join("plugins"),
    );
    let text = String::from_utf8_lossy(&inspected.stdout);
    assert!(
        text.contains(&format!("vpcrouter:plugin@{newest}")),
        "{text}"
    );
}

/// Every `N.N.N` in `line`.
fn versions_in(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let end = bytes[i..]
                .iter()
                .position(|b| !(b.is_ascii_digit() || *b == b'.'))
                .map_or(bytes.len(), |n| i + n);
            let word = line[i..end].trim_end_matches('.');
            if word.split('.').count() == 3 {
                found.push(word.to_string());
            }
            i = end;
        } else {
            i += 1;
        }
    }
    found
}
