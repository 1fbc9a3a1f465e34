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
