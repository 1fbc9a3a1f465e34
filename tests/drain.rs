//! Planned loss of a router: draining it moves its routes at once to the
//! routers a probe has confirmed, undraining moves nothing back, and the
//! drain endpoints refuse what they cannot take. Here on the Romana layout
//! (routes in the routers' own subnets' table); the NAT-instance layout's
//! case is in tests/layouts.rs. And a router's own report of its health
//! (`POST /health/IP`), which fails it once it is not renewed.

mod common;

use common::Daemon;
use serde_json::{Value, json};
use std::process::Command;

const A: &str = "10.33.20.142";
const B: &str = "10.33.20.93";
const CIDRS: [&str; 2] = ["10.55.0.0/16", "10.56.0.0/16"];

/// The daemon on examples/sim-vpc.json with both CIDRs over A and B
/// (every host taken as healthy: no health check).
fn daemon(dir: &std::path::Path, extra: &[&str]) -> Daemon {
    let spec = dir.join("spec.json");
    let routes: serde_json::Map<String, Value> = CIDRS
        .iter()
        .map(|c| (c.to_string(), json!([A, B])))
        .collect();
    std::fs::write(&spec, Value::Object(routes).to_string()).unwrap();
    let mut args = vec!["-m", "configfile", "-f", spec.to_str().unwrap()];
    args.extend(extra);
    Daemon::start(&args, dir)
}

/// Which router each CIDR's route points at, once all are routed.
fn routed(daemon: &Daemon) -> Option<Vec<String>> {
    let info = daemon.view("/route_info");
    CIDRS
        .iter()
        .map(|c| info["routes"][c]["ip"].as_str().map(String::from))
        .collect()
}

/// `vpcrouter ARGS...` against the daemon: (exit code, stdout + stderr).
fn client(daemon: &Daemon, args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
        .args(args)
        .args(["--daemon", &format!("127.0.0.1:{}", daemon.port)])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code(), said)
}

/// `vpcrouter drain A`: A's CIDR moves to B in one pass, one write (one
/// CIDR, one table), naming the reason; the views, the status page,
/// metrics and events show the drain. `vpcrouter undrain A`: A is eligible again and nothing moves
/// back.
#[test]
fn a_drained_router_hands_its_routes_over_at_once_and_gets_none_back() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path(), &[]);
    let before = common::wait_until("both CIDRs routed", || routed(&daemon));
    // Balanced: one CIDR each.
    assert_eq!(before.iter().filter(|h| *h == A).count(), 1, "{before:?}");

    let (code, said) = client(&daemon, &["drain", A, "--reason", "kernel update"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("kernel update"), "{said}");
    let after = common::wait_until("every CIDR on B", || {
        routed(&daemon).filter(|now| now.iter().all(|h| h == B))
    });
    assert_eq!(after, vec![B, B]);
    // The log line can reach us after the view shows the move.
    daemon.wait_for_line("route replaced", std::time::Duration::from_secs(20));
    let moved = daemon.lines_with("route replaced");
    assert_eq!(moved.len(), 1, "{moved:#?}");
    assert!(
        moved[0].contains(&format!("{A} is drained: kernel update")),
        "{}",
        moved[0]
    );
    let ips = daemon.view("/ips");
    assert_eq!(ips["drained_ips"], json!([A]), "{ips}");
    assert_eq!(ips["hosts"][A]["drained"]["reason"], "kernel update");
    let (_, metrics) = common::http(daemon.port, "GET", "/metrics", b"");
    assert!(
        metrics.contains(&format!("vpcrouter_host_drained{{host=\"{A}\"}} 1")),
        "{metrics}"
    );
    let page = common::request(daemon.port, "GET", "/", &[("Accept", "text/html")], b"");
    assert!(
        page.body.contains("drained: kernel update"),
        "{}",
        page.body
    );
    let events = daemon.view("/events")["events"].clone();
    let kinds: Vec<&str> = (events.as_array().unwrap().iter())
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"host_drain") && kinds.contains(&"drain"),
        "{events}"
    );

    let (code, said) = client(&daemon, &["undrain", A]);
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(daemon.view("/ips")["drained_ips"], json!([]));
    // Sticky: the plan for the state as it is now moves nothing back.
    let plan = daemon.view("/plan");
    assert_eq!(plan["operations"], json!([]), "{plan}");
    assert_eq!(routed(&daemon).unwrap(), vec![B, B]);
    let (code, said) = client(&daemon, &["undrain", A]);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains(&format!("{A} is not drained")), "{said}");
}

/// What the drain endpoints refuse, each with a message that says why; a
/// host outside the spec is taken with a note; a drain with an end is
/// lifted by itself; with a token, only a request that carries it drains.
#[test]
fn drain_requests_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let daemon = daemon(dir.path(), &["--http-token-file", token.to_str().unwrap()]);
    let port = daemon.port;
    let authorised = |method: &str, path: &str, body: &str| {
        let reply = common::request(
            port,
            method,
            path,
            &[("Authorization", "Bearer s3cret")],
            body.as_bytes(),
        );
        (reply.status, reply.body)
    };
    let drain_a = format!("/hosts/{A}/drain");
    for (path, body, status, says) in [
        ("/hosts/router-1/drain", "", 400, "is not an IP address"),
        (drain_a.as_str(), "{", 400, "the body must be JSON"),
        (
            drain_a.as_str(),
            r#"{"reason": 7}"#,
            400,
            "the body must be JSON",
        ),
        (drain_a.as_str(), r#"{"why": "x"}"#, 400, "unknown field"),
        (drain_a.as_str(), r#"{"until": "tomorrow"}"#, 400, "until:"),
        (
            drain_a.as_str(),
            r#"{"until": "2020-01-01T00:00:00Z"}"#,
            400,
            "has passed",
        ),
        (
            drain_a.as_str(),
            r#"{"reason": "a\nb"}"#,
            400,
            "control characters",
        ),
    ] {
        let (code, answer) = authorised("POST", path, body);
        assert_eq!(code, status, "{path} {body}: {answer}");
        assert!(answer.contains(says), "{path} {body}: {answer}");
    }
    let long = json!({ "reason": "x".repeat(300) }).to_string();
    let (code, answer) = authorised("POST", &drain_a, &long);
    assert_eq!(
        (code, answer.contains("at most 256")),
        (400, true),
        "{answer}"
    );
    assert_eq!(daemon.view("/ips")["drained_ips"], json!([]));

    // Without the token: refused, nothing drained.
    let (code, _) = common::http(port, "POST", &drain_a, b"");
    assert_eq!(code, 401);
    let (code, said) = client(&daemon, &["drain", A]);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("401") && said.contains("bearer token"),
        "{said}"
    );

    // Not a router of the spec: taken, with a note.
    let (code, answer) = authorised("POST", "/hosts/10.99.0.1/drain", "");
    assert_eq!(code, 200, "{answer}");
    assert!(
        answer.contains("not a router of the route spec in force"),
        "{answer}"
    );

    // A drain with an end is lifted then (a few seconds from now).
    let until = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3),
    )
    .to_string();
    let (code, said) = client(
        &daemon,
        &[
            "drain",
            A,
            "--until",
            &until,
            "--http-token-file",
            token.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(daemon.view("/ips")["drained_ips"], json!([A, "10.99.0.1"]));
    common::wait_until("the drain lifted at its end", || {
        (daemon.view("/ips")["drained_ips"] == json!(["10.99.0.1"])).then_some(())
    });
    daemon.wait_for_line("its time is up", std::time::Duration::from_secs(5));
}

/// A drain is kept in the state folder: a restarted daemon has it in force
/// (every CIDR on B from the start). A kept record that is not one is
/// refused with a warning naming the file, and no drain is made up.
#[test]
fn a_drain_outlives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = daemon(dir.path(), &[]);
    common::wait_until("both CIDRs routed", || routed(&daemon));
    let (code, said) = client(&daemon, &["drain", A, "--reason", "new kernel"]);
    assert_eq!(code, Some(0), "{said}");
    daemon.sigterm();

    let daemon = self::daemon(dir.path(), &[]);
    daemon.wait_for_line("restored=1", std::time::Duration::from_secs(5));
    let ips = daemon.view("/ips");
    assert_eq!(ips["hosts"][A]["drained"]["reason"], "new kernel", "{ips}");
    let routes = common::wait_until("every CIDR on B", || {
        routed(&daemon).filter(|now| now.iter().all(|h| h == B))
    });
    assert_eq!(routes, vec![B, B]);
    drop(daemon);

    let kept = dir.path().join("state/drains.json");
    std::fs::write(&kept, "{\"drains\": {\"10.33.20.142\": 7}}").unwrap();
    let daemon = self::daemon(dir.path(), &[]);
    let warning = daemon.wait_for_line(
        "cannot read the kept drains",
        std::time::Duration::from_secs(5),
    );
    assert!(warning.contains("drains.json"), "{warning}");
    assert_eq!(daemon.view("/ips")["drained_ips"], json!([]));
}

/// `POST /routes/{cidr}/failover`: one CIDR moves off its router at once
/// (one write), the other stays; asked again it moves back (both healthy).
/// Refused, saying why: not a CIDR, not in the spec, a `from` its routes do
/// not point at, and no other confirmed router (the other one drained).
#[test]
fn a_cidr_fails_over_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path(), &[]);
    let before = common::wait_until("both CIDRs routed", || routed(&daemon));
    let other = |h: &str| if h == A { B } else { A };
    let (status, answer) = daemon.http("POST", "/routes/10.55.0.0%2F16/failover", b"");
    assert_eq!(status, 202, "{answer}");
    let reply: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(reply["from"], before[0]);
    assert_eq!(reply["to"], json!([other(&before[0])]));
    let after = common::wait_until("10.55.0.0/16 moved", || {
        routed(&daemon).filter(|now| now[0] != before[0])
    });
    assert_eq!(after[1], before[1], "the other CIDR stays");
    daemon.wait_for_line("route replaced", std::time::Duration::from_secs(20));
    let moved = daemon.lines_with("route replaced");
    assert_eq!(moved.len(), 1, "{moved:#?}");
    assert!(moved[0].contains("was asked off it"), "{}", moved[0]);
    // The plan is empty afterwards: the CIDR stays where it went.
    common::wait_until("nothing more planned", || {
        (daemon.view("/plan")["operations"] == json!([])).then_some(())
    });
    // The client subcommand, naming the router.
    let (code, said) = client(&daemon, &["failover", "10.55.0.0/16", "--from", &after[0]]);
    assert_eq!(code, Some(0), "{said}");
    common::wait_until("and back", || {
        routed(&daemon).filter(|now| now[0] == before[0])
    });

    let from = format!("{{\"from\": \"{}\"}}", other(&before[0]));
    for (path, body, status, says) in [
        ("/routes/router-1/failover", "", 400, "is not a CIDR"),
        (
            "/routes/10.99.0.0/16/failover",
            "",
            404,
            "not a CIDR of the route spec",
        ),
        (
            "/routes/10.55.0.0/16/failover",
            "{\"to\": 1}",
            400,
            "unknown field",
        ),
        (
            "/routes/10.55.0.0/16/failover",
            from.as_str(),
            409,
            "no route of 10.55.0.0/16 points at",
        ),
    ] {
        let (code, answer) = daemon.http("POST", path, body.as_bytes());
        assert_eq!(code, status, "{path} {body}: {answer}");
        assert!(answer.contains(says), "{path} {body}: {answer}");
    }
    let (code, said) = client(&daemon, &["drain", other(&before[0])]);
    assert_eq!(code, Some(0), "{said}");
    let (code, said) = client(&daemon, &["failover", "10.55.0.0/16"]);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("409") && said.contains("no other router of 10.55.0.0/16"),
        "{said}"
    );
}

/// A router reports its own health (`POST /health/IP`, issue 25's pushed
/// health): shown as the `pushed` check in `/ips`; a report not renewed
/// within its TTL fails the router, whose routes move; a report for a
/// host outside the spec, or a malformed one, is refused.
#[test]
fn a_pushed_report_that_expires_fails_its_router() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = daemon(dir.path(), &[]);
    let before = common::wait_until("both CIDRs routed", || routed(&daemon));
    let on = before[0].clone();
    let report = |host: &str, body: &str| {
        common::http(
            daemon.port,
            "POST",
            &format!("/health/{host}"),
            body.as_bytes(),
        )
    };
    let (code, said) = report(
        &on,
        r#"{"state": "healthy", "ttl": 1, "reason": "agent up"}"#,
    );
    assert_eq!(code, 200, "{said}");
    let check = &daemon.view("/ips")["hosts"][&on]["checks"]["pushed"];
    assert_eq!(check["state"], "healthy", "{check}");
    assert_eq!(check["detail"], "reported, for 1 s: agent up");
    // Not renewed: failed, and its CIDRs move.
    let after = common::wait_until("the CIDRs off the silent router", || {
        routed(&daemon).filter(|now| now.iter().all(|r| *r != on))
    });
    assert_eq!(after.len(), 2);
    let check = &daemon.view("/ips")["hosts"][&on]["checks"]["pushed"];
    assert_eq!(
        check["detail"], "no report within its TTL of 1 s",
        "{check}"
    );

    for (host, body, expected, says) in [
        (
            "10.9.9.9",
            r#"{"state": "healthy", "ttl": 5}"#,
            404,
            "not a router of the route spec",
        ),
        (A, r#"{"state": "fine", "ttl": 5}"#, 400, "unknown variant"),
        (
            A,
            r#"{"state": "failed", "ttl": 0}"#,
            400,
            "ttl 0 is out of range",
        ),
        (
            A,
            r#"{"state": "failed", "ttl": 5, "extra": 1}"#,
            400,
            "unknown field",
        ),
        (
            "banana",
            r#"{"state": "failed", "ttl": 5}"#,
            400,
            "not an IP address",
        ),
    ] {
        let (code, said) = report(host, body);
        assert_eq!(code, expected, "{body}: {said}");
        assert!(said.contains(says), "{body}: {said}");
    }
}
