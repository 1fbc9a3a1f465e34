//! Hot reload: SIGHUP and `POST /plugins/reload` swap in every plugin whose
//! file changed, once its new version has accepted the operator's options;
//! a bad new version leaves the running one; health rounds go on.

mod common;

use common::Daemon;
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(10);

fn plugin_view(daemon: &Daemon) -> serde_json::Value {
    daemon.view("/plugins")["plugins"][0].clone()
}

#[test]
fn sighup_swaps_in_a_changed_plugin_and_a_bad_one_leaves_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("configfile.wasm");
    std::fs::copy(common::plugin("configfile"), &plugin).unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::copy(common::repo().join("examples/spec.json"), &spec).unwrap();
    let daemon = Daemon::start(
        &[
            "--mode-plugin",
            plugin.to_str().unwrap(),
            "-f",
            spec.to_str().unwrap(),
        ],
        dir.path(),
    );
    daemon.wait_for_line("accepted route spec", WITHIN);
    let before = plugin_view(&daemon);
    assert_eq!(before["trust"], "bundled (configfile)");

    // Nothing changed: nothing reloaded.
    let (status, body) = daemon.http("POST", "/plugins/reload?wait=8", b"");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"unchanged\""), "{body}");
    // Without `wait`: accepted at once, the outcome at GET /plugins/reload.
    let (status, body) = daemon.http("POST", "/plugins/reload", b"");
    assert_eq!(status, 202, "{body}");
    let accepted: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(accepted["reload"], "accepted", "{body}");
    assert!(body.contains("GET /plugins/reload"), "{body}");
    let request = accepted["request"].as_u64().unwrap();
    let latest = common::wait_until("the reload is answered", || {
        let latest = daemon.view("/plugins/reload");
        (latest["answered"].as_u64()? >= request).then_some(latest)
    });
    assert_eq!(latest["plugins"][0]["result"], "unchanged", "{latest}");
    let (status, body) = daemon.http("POST", "/plugins/reload?wait=soon", b"");
    assert_eq!(status, 400, "{body}");

    common::new_version(&plugin, "v2");
    // SAFETY: signalling the child process this test started.
    unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) };
    daemon.wait_for_line("plugin reloaded: the new version runs", WITHIN);
    let after = plugin_view(&daemon);
    assert_eq!(after["reloads"], 1, "{after}");
    assert_ne!(after["sha256"], before["sha256"]);
    // Not the bundled bytes any more: its grant defaults would not apply.
    assert_eq!(after["trust"], "third-party");
    assert_eq!(after["state"], "running");
    let events = daemon.view("/events").to_string();
    assert!(events.contains("reloaded: version"), "{events}");
    // The whole digest, as a pin takes it.
    let digest = after["sha256"].as_str().unwrap();
    assert!(events.contains(&format!("sha256 {digest}")), "{events}");
    // The new version serves: it follows the spec file.
    std::fs::write(&spec, r#"{"10.77.0.0/16": ["10.33.20.142"]}"#).unwrap();
    daemon.wait_for_line("10.77.0.0/16", WITHIN);

    // A broken new version: refused, reported, the running one stays.
    std::fs::write(&plugin, b"not wasm at all").unwrap();
    let (status, body) = daemon.http("POST", "/plugins/reload?wait=8", b"");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"failed\"") && body.contains("not a WebAssembly file"),
        "{body}"
    );
    common::wait_until("the failure is shown", || {
        plugin_view(&daemon)["reload_error"]
            .as_str()
            .filter(|e| e.contains("not a WebAssembly file"))
            .map(drop)
    });
    let view = plugin_view(&daemon);
    assert_eq!(view["state"], "running");
    assert_eq!(view["sha256"], after["sha256"]);
    let events = daemon.view("/events").to_string();
    assert!(
        events.contains("reload failed, the running version stays"),
        "{events}"
    );
    // Logged once, by the plugin's supervisor.
    assert_eq!(daemon.lines_with("reload failed").len(), 1);
}

#[test]
fn reloading_a_health_checker_misses_no_round() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("tcp.wasm");
    std::fs::copy(common::plugin("tcp"), &plugin).unwrap();
    let router = std::net::TcpListener::bind("127.0.0.51:0").unwrap();
    let port = router.local_addr().unwrap().port().to_string();
    let health = [
        "--health-plugin",
        plugin.to_str().unwrap(),
        "--tcp_check_port",
        &port,
        "--tcp_check_interval",
        "0.2",
    ];
    let args = common::loopback_args(dir.path(), &["127.0.0.51"], &health);
    let daemon = Daemon::start(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    );
    let rounds = || -> u64 {
        let plugins = daemon.view("/plugins");
        plugins["plugins"][1]["stats"]["rounds"]
            .as_u64()
            .unwrap_or(0)
    };
    common::wait_until("rounds run", || (rounds() >= 3).then_some(()));
    let (start, first) = (Instant::now(), rounds());
    common::new_version(&plugin, "v2");
    let (status, body) = daemon.http("POST", "/plugins/reload?wait=8", b"");
    assert!(status == 200 && body.contains("\"reloaded\""), "{body}");
    std::thread::sleep(Duration::from_secs(2));
    let (elapsed, done) = (start.elapsed(), rounds() - first);
    // One round every 0.2 s, the reload included: none missed (one of
    // slack for the edges of the window).
    let expected = (elapsed.as_secs_f64() / 0.2).floor() as u64;
    assert!(done + 1 >= expected, "{done} rounds in {elapsed:?}");
    assert_eq!(daemon.view("/plugins")["plugins"][1]["reloads"], 1);
}

/// A pinned plugin is held to its pin at a reload too.
#[test]
fn a_pinned_plugin_is_not_reloaded_to_other_bytes() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("configfile.wasm");
    std::fs::copy(common::plugin("configfile"), &plugin).unwrap();
    let digest: String = Sha256::digest(std::fs::read(&plugin).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let pinned = format!("{}#sha256={digest}", plugin.display());
    let spec = common::repo().join("examples/spec.json");
    let daemon = Daemon::start(
        &["--mode-plugin", &pinned, "-f", spec.to_str().unwrap()],
        dir.path(),
    );
    daemon.wait_for_line("accepted route spec", WITHIN);
    common::new_version(&plugin, "unpinned");
    let (status, body) = daemon.http("POST", "/plugins/reload?wait=8", b"");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("is pinned to sha256 {digest}")),
        "{body}"
    );
    assert_eq!(plugin_view(&daemon)["sha256"], digest.as_str());
}

/// Upgrading a pinned plugin without a restart: the pins file
/// (`--plugin-pins`) is read again at every reload. New bytes are refused
/// until their digest is pinned there; then the reload takes them. A pins
/// file that does not read leaves the running version.
#[test]
fn a_pinned_plugin_is_upgraded_by_pinning_the_new_digest_and_reloading() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("configfile.wasm");
    std::fs::copy(common::plugin("configfile"), &plugin).unwrap();
    let digest_of = |path: &std::path::Path| common::sha256_hex(&std::fs::read(path).unwrap());
    let pins = dir.path().join("pins");
    let old = digest_of(&plugin);
    std::fs::write(&pins, format!("# pinned plugins\nconfigfile={old}\n")).unwrap();
    let spec = common::repo().join("examples/spec.json");
    let daemon = Daemon::start(
        &[
            "--mode-plugin",
            plugin.to_str().unwrap(),
            "-f",
            spec.to_str().unwrap(),
            "--plugin-pins",
            pins.to_str().unwrap(),
        ],
        dir.path(),
    );
    daemon.wait_for_line("accepted route spec", WITHIN);
    // The name a pin takes, as /plugins shows it (the plugin calls itself
    // configfile too; a copy named otherwise would differ).
    assert_eq!(plugin_view(&daemon)["pin_name"], "configfile");
    common::new_version(&plugin, "v2");
    let new = digest_of(&plugin);
    let (_, body) = daemon.http("POST", "/plugins/reload?wait=8", b"");
    assert!(
        body.contains(&format!("is pinned to sha256 {old}")),
        "{body}"
    );
    std::fs::write(&pins, b"configfile=not-hex\n").unwrap();
    let (_, body) = daemon.http("POST", "/plugins/reload?wait=8", b"");
    assert!(
        body.contains("\"failed\"") && body.contains(":1: \\\"not-hex\\\" is not a SHA-256"),
        "{body}"
    );
    assert_eq!(plugin_view(&daemon)["sha256"], old.as_str());
    std::fs::write(&pins, format!("configfile={new}\n")).unwrap();
    let (status, body) = daemon.http("POST", "/plugins/reload?wait=8", b"");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"reloaded\""), "{body}");
    assert_eq!(plugin_view(&daemon)["sha256"], new.as_str());
}
