//! The daemon's test build compiles the daemon's dependencies with the
//! features of its normal build, so `make build` then `make test` (and
//! `make demo`) compile wasmtime, Cranelift and the EC2 SDK once per
//! profile: no dev-dependency may add a feature to a crate the daemon
//! builds (a crate whose features differ is compiled again, and every
//! crate above it).

use std::collections::BTreeSet;
use std::process::Command;

mod common;

/// Crates (name, features) as cargo resolves them for `vpcrouter`, with or
/// without its dev-dependencies.
fn resolved(with_dev: bool) -> BTreeSet<String> {
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(common::repo())
        .args(["tree", "--offline", "-p", "vpcrouter", "--prefix", "none"])
        .args(["-f", "{p} {f}"]);
    if !with_dev {
        command.args(["-e", "no-dev"]);
    }
    let output = command.output().expect("cargo tree");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| line.trim_end_matches(" (*)").to_string())
        .collect()
}

#[test]
fn dev_dependencies_add_no_feature_to_the_daemons_crates() {
    // proptest's `std` needs regex-syntax's unicode tables; what it
    // recompiles (regex-automata, tracing-subscriber, the daemon's own
    // crate) takes seconds, not the minutes of the heavy crates.
    let allowed = ["regex-syntax "];
    let normal = resolved(false);
    let test = resolved(true);
    let recompiled: Vec<&String> = normal
        .difference(&test)
        .filter(|unit| !allowed.iter().any(|a| unit.starts_with(a)))
        .collect();
    assert!(
        recompiled.is_empty(),
        "the test build gives these crates other features than the daemon's build \
         (each is compiled twice, with everything above it): {recompiled:?}; \
         move what needs them to tests/tools"
    );
}
