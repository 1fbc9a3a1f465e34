//! `vpcrouter plugin new`: the projects it writes build and work outside
//! this repository, as an outside author would use them: the README's
//! build, try and test commands.

mod common;

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

/// The command lines of a project's README: build, try, test (a line
/// ending in `\` goes on).
fn readme_commands(project: &Path) -> Vec<String> {
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    let block = readme
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        match line.strip_suffix('\\') {
            Some(first) => pending.push_str(first),
            None => {
                pending.push_str(line);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    assert_eq!(commands.len(), 3, "build, try, test: {commands:?}");
    commands
}

/// Every project `vpcrouter plugin new` writes (Rust, Python, JavaScript;
/// config source and health check) does what its README says, line for
/// line: the build line builds it, the try line (run as written, with
/// `vpcrouter` a binary that has no plugin folder beside it and
/// `$VPCROUTER_PLUGIN_DIR` unset) routes on the project's embedded VPC,
/// and the test line passes. Two liberties, for a machine without the
/// internet: `npm install` is the node_modules `make lang-examples`
/// installed, and a Rust project's `target/` is shared between runs.
#[test]
fn every_scaffold_builds_tries_and_tests_as_its_readme_says() {
    let repo = common::repo();
    let root = repo.join("target/scaffold-try");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let on_path = bin.join("vpcrouter");
    let _ = std::fs::remove_file(&on_path);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vpcrouter"), &on_path).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let shell = |command: &str, dir: &Path| {
        let mut shell = Command::new("sh");
        shell
            .args(["-c", command])
            .current_dir(dir)
            .env("PATH", &path)
            .env_remove("VPCROUTER_PLUGIN_DIR")
            // Kept between runs: a rebuild reuses the compile's functions.
            .env("XDG_STATE_HOME", root.join("state"))
            .env("XDG_CACHE_HOME", root.join("cache"));
        shell
    };
    for (lang, kind) in [
        ("rust", "config"),
        ("rust", "health"),
        ("python", "config"),
        ("python", "health"),
        ("js", "config"),
        ("js", "health"),
    ] {
        let project = root.join(format!("{lang}-{kind}"));
        let _ = std::fs::remove_dir_all(&project);
        let name = format!("try-{lang}-{kind}");
        let dir = project.to_str().unwrap();
        let created = vpcrouter(
            &[
                "plugin", "new", &name, "--lang", lang, "--kind", kind, "--dir", dir,
            ],
            &root,
        );
        assert!(created.status.success(), "{created:?}");
        match lang {
            "rust" => {
                // Made first: on a fresh clone a link to nothing would
                // stop cargo ("Not a directory").
                let target = repo.join("target/scaffold-test");
                std::fs::create_dir_all(&target).unwrap();
                std::os::unix::fs::symlink(target, project.join("target")).unwrap()
            }
            "js" => {
                let modules = repo.join("examples/tcp-latency/node_modules");
                std::os::unix::fs::symlink(modules, project.join("node_modules")).unwrap()
            }
            _ => {}
        }
        let [build, try_line, test] = <[String; 3]>::try_from(readme_commands(&project)).unwrap();
        let build = build.replace("npm install && ", "");
        for command in [&build, &test] {
            let output = shell(command, &project).output().unwrap();
            assert!(
                output.status.success(),
                "{lang} {kind}: {command}\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        assert!(try_line.starts_with("vpcrouter "), "{try_line}");
        let mut daemon = shell(&format!("exec {try_line}"), &project);
        let mut daemon = daemon
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, seen) = std::sync::mpsc::channel();
        for stream in [
            Box::new(daemon.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(daemon.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    let _ = lines.send(line);
                }
            });
        }
        drop(lines);
        // A Python or JavaScript plugin's first load compiles it (tens of
        // seconds on a debug daemon, more on a loaded machine).
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        let mut log = Vec::new();
        let routed = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match seen.recv_timeout(left) {
                Ok(line) if line.contains("route created") => break true,
                Ok(line) => log.push(line),
                Err(_) => break false,
            }
        };
        // A health check keeps working round after round (a round it
        // never dropped would hold one of its 4 places: the fifth is
        // refused and the router failed).
        let steady = !routed || kind != "health" || rounds_without_failure(&name, 6, deadline);
        let _ = daemon.kill();
        let _ = daemon.wait();
        assert!(routed, "{lang} {kind}: {try_line}\n{}", log.join("\n"));
        let log: Vec<String> = log.into_iter().chain(seen.try_iter()).collect();
        assert!(steady, "{lang} {kind}: {try_line}\n{}", log.join("\n"));
    }
}

/// Whether the health plugin `name` of the try line's daemon (port 33289)
/// runs `rounds` rounds without failing a router, by `deadline`.
fn rounds_without_failure(name: &str, rounds: u64, deadline: std::time::Instant) -> bool {
    loop {
        let reply = common::request(33289, "GET", "/plugins", &[], b"");
        let view: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
        let stats = view["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .map(|p| p["stats"].clone())
            .unwrap_or_default();
        if stats["failures"].as_u64().unwrap_or(0) > 0 {
            return false;
        }
        if stats["rounds"].as_u64().unwrap_or(0) >= rounds {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
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
        &["plugin", "inspect", "--no-describe", "configfile.wasm"],
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
