//! The bundled config-source plugins end to end: the real daemon binary,
//! the real plugins, real files and HTTP on loopback.

mod common;

use common::Daemon;
use serde_json::json;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(10);
const ACCEPTED: &str = "accepted route spec";

fn spec_line(spec: &serde_json::Value) -> String {
    format!("spec={spec}")
}

#[test]
fn configfile_applies_changes_ignores_invalid_content_and_survives_delete_recreate() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spec.json");
    let first = json!({"10.55.16.0/24": ["10.33.20.142"]});
    std::fs::write(&file, first.to_string()).unwrap();
    let mut daemon = Daemon::start(
        &["-m", "configfile", "-f", file.to_str().unwrap()],
        dir.path(),
    );
    daemon.wait_for_line(&spec_line(&first), WITHIN);

    // A change is applied.
    let second = json!({"10.55.16.0/24": ["10.33.20.142", "10.33.20.143"], "10.66.0.0/16": []});
    std::fs::write(&file, second.to_string()).unwrap();
    daemon.wait_for_line(&spec_line(&second), WITHIN);

    // Invalid JSON and an invalid spec are reported and change nothing.
    std::fs::write(&file, "{not json").unwrap();
    daemon.wait_for_line("not valid JSON", WITHIN);
    std::fs::write(&file, r#"{"10.55.16.1/24": ["10.33.20.142"]}"#).unwrap();
    daemon.wait_for_line("did you mean 10.55.16.0/24", WITHIN);
    assert_eq!(daemon.lines_with(ACCEPTED).len(), 2);

    // Deleted: reported, spec in force kept; re-created: applied.
    std::fs::remove_file(&file).unwrap();
    daemon.wait_for_line("No such file", WITHIN);
    let third = json!({"10.77.0.0/16": ["10.33.20.9"]});
    std::fs::write(&file, third.to_string()).unwrap();
    daemon.wait_for_line(&spec_line(&third), WITHIN);

    // Replaced by rename, as editors and config managers do.
    let fourth = json!({"10.88.0.0/16": ["10.33.20.10"]});
    let staged = dir.path().join("spec.json.new");
    std::fs::write(&staged, fourth.to_string()).unwrap();
    std::fs::rename(&staged, &file).unwrap();
    daemon.wait_for_line(&spec_line(&fourth), WITHIN);

    assert_eq!(daemon.lines_with(ACCEPTED).len(), 4);
    assert!(daemon.is_running());
}

#[test]
fn configfile_waits_for_valid_content_when_the_first_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spec.json");
    std::fs::write(&file, "[]").unwrap();
    let daemon = Daemon::start(
        &[
            "--mode-plugin",
            common::plugin("configfile").to_str().unwrap(),
            "--file",
            file.to_str().unwrap(),
        ],
        dir.path(),
    );
    daemon.wait_for_line("must be a JSON object", WITHIN);
    let spec = json!({"10.1.0.0/16": ["10.1.0.5"]});
    std::fs::write(&file, spec.to_string()).unwrap();
    daemon.wait_for_line(&spec_line(&spec), WITHIN);
}

#[test]
fn http_accepts_good_specs_and_refuses_bad_ones_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&["-m", "http"], dir.path());

    assert_eq!(daemon.http("GET", "/route_spec", b"").0, 404);

    let spec = json!({"10.55.16.0/24": ["10.33.20.142"], "fd00:10::/64": ["fd00::7"]});
    let (status, body) = daemon.http("POST", "/route_spec", spec.to_string().as_bytes());
    assert_eq!(status, 200, "{body}");
    daemon.wait_for_line(ACCEPTED, WITHIN);
    let (status, body) = daemon.http("GET", "/route_spec", b"");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        spec
    );

    let (status, body) = daemon.http("POST", "/route_spec", b"{nope");
    assert_eq!(status, 400);
    assert!(body.contains("not valid JSON"), "{body}");

    let bad_host = json!({"10.55.16.0/24": ["10.33.20.300"]});
    let (status, body) = daemon.http("POST", "/route_spec", bad_host.to_string().as_bytes());
    assert_eq!(status, 400);
    assert!(body.contains("10.33.20.300"), "{body}");
    // Shown where an author looks first.
    let plugins = daemon.view("/plugins");
    let last_error = plugins["plugins"][0]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        last_error.contains("rejected route spec") && last_error.contains("10.33.20.300"),
        "{plugins}"
    );

    let oversized = format!("{{\"10.0.0.0/8\": [\"{}\"]}}", "1".repeat(2 * 1024 * 1024));
    assert_eq!(
        daemon.http("POST", "/route_spec", oversized.as_bytes()).0,
        413
    );

    assert_eq!(daemon.http("DELETE", "/route_spec", b"").0, 405);
    assert_eq!(daemon.http("GET", "/no_such_path", b"").0, 404);

    // None of the bad requests replaced the spec.
    let (_, body) = daemon.http("GET", "/route_spec", b"");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        spec
    );
    assert_eq!(daemon.lines_with(ACCEPTED).len(), 1);
    assert!(daemon.is_running());
}

#[test]
fn fixedconf_serves_the_spec_from_its_options() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        &[
            "-m",
            "fixedconf",
            "--fixed_cidr",
            "10.0.0.0/16",
            "--fixed_hosts",
            "10.1.0.6:10.1.0.5:10.1.0.6",
        ],
        dir.path(),
    );
    daemon.wait_for_line(
        &spec_line(&json!({"10.0.0.0/16": ["10.1.0.5", "10.1.0.6"]})),
        WITHIN,
    );
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&["-m", "http"], dir.path());
    let pid = daemon.pid();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = daemon.wait_exit(WITHIN);
    assert_eq!(exit, Some(0));
}
