//! The sandbox, second pass: nothing a co-plugin does can delay another
//! plugin's failover, churn the routes, win a grant at a reload, hide or
//! forge log lines, or keep the front door busy; and what can change state
//! over HTTP is never open beyond loopback. The real daemon binary on the
//! embedded VPC, everything on loopback.

mod common;

use common::{Daemon, hostile};
use std::path::Path;
use std::time::{Duration, Instant};

const WITHIN: Duration = Duration::from_secs(20);

/// Medium: a health plugin that holds every probe slot it can get on
/// silent hosts of the working set (four rounds and a batch over 3,000 of
/// them, 5 s timeouts, call after call) does not slow the bundled tcp
/// checker probing with full connects (as it does without CAP_NET_RAW): a
/// router that stops answering is failed and its route moved within a few
/// of tcp's 0.2 s rounds, not after the hog's probes time out.
#[test]
fn a_health_plugin_cannot_slow_another_plugins_failover() {
    let dir = tempfile::tempdir().unwrap();
    let routers = ["127.0.47.10", "127.0.47.11"];
    let first = std::net::TcpListener::bind((routers[0], 0)).unwrap();
    let port = first.local_addr().unwrap().port();
    let _second = std::net::TcpListener::bind((routers[1], port)).unwrap();
    let (_silent, _queued, silent) = hostile::silent_port();
    let hog = common::guest("hostile-health");
    let mut health = hostile::tcp_connect_args(&port.to_string());
    health.extend(hostile::hog_args(&hog, &silent.to_string()));
    let args = hostile::args_with_3000_hosts(dir.path(), &routers, &common::strs(&health));
    let daemon = Daemon::start(&common::strs(&args), dir.path());
    daemon.wait_for_line("route created", WITHIN);
    // The hog is under way: its first call holds its probes for seconds.
    std::thread::sleep(Duration::from_secs(2));
    let before = daemon.lines_with("host=127.0.47.10").len();
    let route = daemon.view("/route_info")["routes"]["10.55.0.0/16"]["ip"].clone();
    drop(first);
    let killed = Instant::now();
    common::wait_until("the router is failed", || {
        let lines = daemon.lines_with("host=127.0.47.10");
        lines[before..]
            .iter()
            .any(|l| l.contains("host failed"))
            .then_some(())
    });
    let detected = killed.elapsed();
    println!("router failed {detected:?} after it stopped answering, beside the hog");
    // tcp alone fails it within a round or two (0.2 s each); the hog's
    // probes of silent hosts hold a slot for 5 s each. Were tcp's probes
    // queued behind them, it would take 5 s and more.
    assert!(detected < Duration::from_secs(4), "{detected:?}");
    if route == "127.0.47.10" {
        common::wait_until("the route moved", || {
            let view = daemon.view("/route_info");
            (view["routes"]["10.55.0.0/16"]["ip"] == "127.0.47.11").then_some(())
        });
    }
    let hog = common::plugin_named(&daemon.view("/plugins"), "hostile-health").clone();
    assert_eq!(hog["state"], "running", "{hog}");
}

/// Medium: a health plugin flipping two routers as fast as it may (one
/// failed, then the other, every 100 ms) would move the route every round;
/// each router is held down after its third failure, so the route moves a
/// handful of times, not a hundred, and the holds are shown.
#[test]
fn flapping_verdicts_are_damped() {
    let dir = tempfile::tempdir().unwrap();
    let routers = ["127.0.48.10", "127.0.48.11"];
    let flapper = common::guest("hostile-health");
    let health = [
        "--health-plugin",
        flapper.to_str().unwrap(),
        "--hh_behaviour",
        "alternate",
    ];
    let args = common::loopback_args(dir.path(), &routers, &health);
    let daemon = Daemon::start(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    );
    daemon.wait_for_line("accepted route spec", WITHIN);
    // Let it flap for 100 rounds and more.
    let started = Instant::now();
    common::wait_until("100 rounds", || {
        let view = daemon.view("/plugins");
        let rounds = common::plugin_named(&view, "hostile-health")["stats"]["rounds"].as_u64()?;
        (rounds >= 100).then_some(())
    });
    let moves = daemon.lines_with("route replaced").len();
    let held = daemon.lines_with("host held down").len();
    println!(
        "{moves} route moves and {held} holds in {:?} of flapping",
        started.elapsed()
    );
    assert!(held >= 1, "no router was held down");
    // Each router's first two failures move the routes of both tables
    // (2 writes each); the third holds it. Undamped: 2 writes per round.
    assert!(moves <= 16, "{moves} route moves");
    let ips = daemon.view("/ips");
    assert!(
        !ips["held_down_ips"].as_array().unwrap().is_empty(),
        "{ips}"
    );
    let events = daemon.view("/events").to_string();
    assert!(events.contains("host_held"), "{events}");
}

/// `dir/hostile.wasm`: the hostile config guest, with `--note` declared as
/// `kind` (the marker bytes rewritten), as an installer puts a new version
/// in place.
fn hostile_with_note_kind(dir: &Path, kind: &str) -> std::path::PathBuf {
    let mut bytes = std::fs::read(common::guest("hostile")).unwrap();
    let (from, to) = (
        b"vpcrouter-test-note-kind=text".as_slice(),
        format!("vpcrouter-test-note-kind={kind}"),
    );
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("the marker is in the component");
    bytes[at..at + from.len()].copy_from_slice(to.as_bytes());
    let path = dir.join("hostile.wasm");
    let staged = dir.join("hostile.new");
    std::fs::write(&staged, bytes).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    path
}

/// Medium: a new version that declares an option the operator gave as
/// text to be a file is refused at reload (the operator's text would
/// become a read grant they never gave); a reload that does load says its
/// grants exactly as at start.
#[test]
fn a_reload_cannot_turn_the_operators_text_into_a_grant() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = hostile_with_note_kind(dir.path(), "text");
    let daemon = Daemon::start(
        &[
            "--mode-plugin",
            plugin.to_str().unwrap(),
            "--behaviour",
            "steal",
            "--note",
            "/etc/hostname",
        ],
        dir.path(),
    );
    daemon.wait_for_line("accepted route spec", WITHIN);
    const NOTHING: &str = "plugin granted nothing beyond its own sandbox";
    assert_eq!(daemon.lines_with(NOTHING).len(), 1);
    hostile_with_note_kind(dir.path(), "file");
    let (status, body) = daemon.http("POST", "/plugins/reload?wait=8", b"");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"failed\""), "{body}");
    assert!(
        body.contains("declares --note as file (it was text)"),
        "{body}"
    );
    let view = common::plugin_named(&daemon.view("/plugins"), "hostile").clone();
    assert_eq!(view["grants"].as_array().map(Vec::len), Some(0), "{view}");
    assert!(
        !daemon
            .lines_with("read /etc/hostname")
            .iter()
            .any(|l| l.contains("grant"))
    );

    // A plain new version reloads, and its grants are said again.
    hostile_with_note_kind(dir.path(), "text");
    common::new_version(&plugin, "v3");
    let (status, body) = daemon.http("POST", "/plugins/reload?wait=8", b"");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"reloaded\""), "{body}");
    daemon.wait_for_nth_line(NOTHING, 2, WITHIN);
}

/// The hostile config guest doing `behaviour` at start; the daemon.
fn hostile_at_start(dir: &Path, behaviour: &str) -> Daemon {
    let hostile = common::guest("hostile");
    Daemon::start(
        &[
            "--mode-plugin",
            hostile.to_str().unwrap(),
            "--behaviour",
            behaviour,
            "--at",
            "start",
        ],
        dir,
    )
}

/// Medium: a plugin that spends its own log budget cannot hide the
/// daemon's lines about what it does next (a denied read).
#[test]
fn a_noisy_plugin_cannot_hide_the_daemons_lines_about_it() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = hostile_at_start(dir.path(), "noisy");
    let denied = daemon.wait_for_line("access denied (not a file granted", WITHIN);
    assert!(denied.contains("/etc/shadow"), "{denied}");
    let noise = daemon.lines_with("noise").len();
    assert!(noise < 100, "{noise} lines of the plugin's noise");
}

/// Medium: line breaks (and carriage returns, and escapes) in what a
/// plugin logs or returns stay inside its line: no fake line appears.
#[test]
fn plugin_text_cannot_forge_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = hostile_at_start(dir.path(), "forge");
    daemon.wait_for_line("plugin reported an error", WITHIN);
    let quoted = daemon.wait_for_line("route replaced table=rtb-a", WITHIN);
    assert!(quoted.contains("\\n"), "{quoted}");
    let forged: Vec<String> = daemon
        .lines_with("route replaced table=rtb-a")
        .into_iter()
        .filter(|l| l.starts_with("2026-12-02T00:00:00") || l.contains('\r'))
        .collect();
    assert!(forged.is_empty(), "forged lines: {forged:?}");
}

/// Low: every daemon serves endpoints that change state (reload,
/// rebalance), so a listener beyond loopback without a token is refused
/// at start, whatever plugin runs.
#[test]
fn a_listener_beyond_loopback_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let spec = common::spec_file(dir.path(), ["10.55.0.0/16".into()], &["127.0.0.1"]);
    let (code, stderr) = common::run_to_exit(&[
        "-m",
        "configfile",
        "-f",
        spec.to_str().unwrap(),
        "-a",
        "0.0.0.0",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("POST /plugins/reload, POST /rebalance"),
        "{stderr}"
    );
}

/// Low: reloads are never queued behind a long plugin call: a health
/// plugin whose round takes 15 s (its probes of 3,000 silent hosts) gets
/// two new versions in a row, and each reload is answered at once with
/// the new version swapped in, not after the round (or with a 408).
#[test]
fn reloads_do_not_wait_behind_a_long_call() {
    let dir = tempfile::tempdir().unwrap();
    let (_silent, _queued, silent) = hostile::silent_port();
    let plugin = dir.path().join("hog.wasm");
    std::fs::copy(common::guest("hostile-health"), &plugin).unwrap();
    let hog = hostile::hog_args(&plugin, &silent.to_string());
    let args = hostile::args_with_3000_hosts(dir.path(), &["127.0.50.10"], &common::strs(&hog));
    let daemon = Daemon::start(&common::strs(&args), dir.path());
    daemon.wait_for_line("accepted route spec", WITHIN);
    // Its first round is under way.
    std::thread::sleep(Duration::from_secs(1));
    for tag in ["v2", "v3"] {
        common::new_version(&plugin, tag);
        let asked = Instant::now();
        let (status, body) = daemon.http("POST", "/plugins/reload?wait=8", b"");
        println!("{tag}: {status} after {:?}", asked.elapsed());
        assert_eq!(status, 200, "{tag}: {body}");
        assert!(body.contains("\"reloaded\""), "{tag}: {body}");
    }
    daemon.wait_for_nth_line("plugin reloaded: the new version runs", 2, WITHIN);
    let view = common::plugin_named(&daemon.view("/plugins"), "hostile-health").clone();
    assert_eq!(view["reloads"], 2, "{view}");
}

/// Low: clients asking for the whole state of a large spec (a thousand
/// CIDRs in three tables) over and over, sixteen at once, do not hold up
/// `/healthz`: views are built off the runtime's workers, two at a time.
#[test]
fn whole_state_views_do_not_hold_up_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let routers = ["127.0.49.10", "127.0.49.11", "127.0.49.12"];
    let cidrs = (0..1000u32).map(|c| format!("10.{}.{}.0/24", 100 + c / 256, c % 256));
    let vpc = common::loopback_vpc(dir.path(), &routers);
    let spec = common::spec_file(dir.path(), cidrs, &routers);
    let daemon = Daemon::start(
        &[
            "-m",
            "configfile",
            "-f",
            spec.to_str().unwrap(),
            "--sim-vpc",
            vpc.to_str().unwrap(),
        ],
        dir.path(),
    );
    common::wait_until("3,000 routes", || {
        let tables = daemon.view("/vpc")["route_tables"].clone();
        let created: usize = tables
            .as_object()?
            .values()
            .map(|t| t["routes"].as_object().map_or(0, |r| r.len()))
            .sum();
        (created >= 3000).then_some(())
    });
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", daemon.pid())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        // utime and stime, in clock ticks (100 per second).
        (fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()) * 10
    };
    let before = cpu();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = daemon.port;
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut views = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    assert_eq!(common::http(port, "GET", "/", b"").0, 200);
                    views += 1;
                }
                views
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        let asked = Instant::now();
        assert_eq!(daemon.http("GET", "/healthz", b"").0, 200);
        slowest = slowest.max(asked.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let views: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    println!(
        "{views} GET / of 1,000 CIDRs x 3 tables ({} ms of CPU each); slowest /healthz meanwhile {slowest:?}",
        (cpu() - before) / views.max(1)
    );
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
}
