//! `cargo bench --bench coplugins`: what one plugin can do to the rest
//! (issue 19), as figures: the bundled tcp checker's failover time alone
//! and beside a health plugin that holds every probe slot it gets on
//! silent hosts, in one run; route writes per minute under a plugin that
//! flips two routers every round; the daemon's peak memory across reloads
//! of hostile files (a 4 GiB file, /dev/zero, a compile bomb).
//! Everything runs on loopback and the embedded VPC.

#[path = "../../tests/common/mod.rs"]
mod testkit;

use std::time::{Duration, Instant};
use testkit::{Daemon, hostile};

const ROUTERS: [&str; 2] = ["127.0.62.10", "127.0.62.11"];

/// tcp every 0.2 s by full connects on the routers (and 3,000 other
/// hosts), with `more` health plugins; the median and max time from a
/// router's listener closing to tcp's verdict on it turning failed, over
/// `trials` (the routers take turns, each back up before the next).
fn failover(label: &str, more: &[&str], trials: usize) {
    let dir = tempfile::tempdir().unwrap();
    let first = std::net::TcpListener::bind((ROUTERS[0], 0)).unwrap();
    let port = first.local_addr().unwrap().port();
    let mut listeners = [
        Some(first),
        Some(std::net::TcpListener::bind((ROUTERS[1], port)).unwrap()),
    ];
    let mut health = hostile::tcp_connect_args(&port.to_string());
    health.extend(more.iter().map(|a| a.to_string()));
    let args = hostile::args_with_3000_hosts(dir.path(), &ROUTERS, &testkit::strs(&health));
    let args = testkit::strs(&args);
    let daemon = Daemon::start(&args, dir.path());
    daemon.wait_for_line("route created", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let tcp_says = |router: &str| -> Option<String> {
        let ips = daemon.view("/ips");
        ips["hosts"][router]["checks"]["tcp"]["state"]
            .as_str()
            .map(String::from)
    };
    let mut took = Vec::new();
    for trial in 0..trials {
        let which = trial % 2;
        let router = ROUTERS[which];
        listeners[which] = None;
        let closed = Instant::now();
        while tcp_says(router).as_deref() != Some("failed") {
            assert!(closed.elapsed() < Duration::from_secs(60), "never failed");
            std::thread::sleep(Duration::from_millis(10));
        }
        took.push(closed.elapsed());
        listeners[which] = Some(std::net::TcpListener::bind((router, port)).unwrap());
        while tcp_says(router).as_deref() != Some("healthy") {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    took.sort();
    println!(
        "{label}: router failed by tcp {:.0} ms after it stopped answering (median of {trials}; max {:.0} ms)",
        took[trials / 2].as_secs_f64() * 1e3,
        took[trials - 1].as_secs_f64() * 1e3,
    );
}

/// A plugin flipping the two routers every round (100 ms) for a minute:
/// route writes, holds, and what the rounds would have cost undamped.
fn flapping() {
    let dir = tempfile::tempdir().unwrap();
    let flapper = testkit::guest("hostile-health");
    let health = [
        "--health-plugin",
        flapper.to_str().unwrap(),
        "--hh_behaviour",
        "alternate",
    ];
    let args = testkit::loopback_args(dir.path(), &ROUTERS, &health);
    let daemon = Daemon::start(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    );
    daemon.wait_for_line("route created", Duration::from_secs(20));
    let started = Instant::now();
    let rounds = || {
        let view = daemon.view("/plugins");
        view["plugins"][1]["stats"]["rounds"].as_u64().unwrap_or(0)
    };
    let (rounds_before, writes_before) = (rounds(), daemon.lines_with("route replaced").len());
    std::thread::sleep(Duration::from_secs(60));
    let rounds = rounds() - rounds_before;
    let writes = daemon.lines_with("route replaced").len() - writes_before;
    println!(
        "a plugin flipping 2 routers every round, 1 CIDR in 2 tables: {writes} route writes in {:.0} s ({rounds} rounds; undamped, a move per round: {} writes); {} holds",
        started.elapsed().as_secs_f64(),
        rounds * 2,
        daemon.lines_with("host held down").len()
    );
}

/// The daemon's peak memory across reloads of hostile plugin files: a
/// 4 GiB file and /dev/zero in place of the config source, a compile bomb
/// in place of the health checker.
fn hostile_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let (mode, health) = (dir.path().join("mode.wasm"), dir.path().join("health.wasm"));
    std::fs::copy(testkit::plugin("configfile"), &mode).unwrap();
    std::fs::copy(testkit::plugin("tcp"), &health).unwrap();
    let spec = testkit::spec_file(dir.path(), ["10.55.0.0/16".into()], &["127.0.0.1"]);
    let port = testkit::free_port().to_string();
    let daemon = Daemon::start(
        &[
            "--mode-plugin",
            mode.to_str().unwrap(),
            "-f",
            spec.to_str().unwrap(),
            "--health-plugin",
            health.to_str().unwrap(),
            "--tcp_check_port",
            &port,
        ],
        dir.path(),
    );
    daemon.wait_for_line("accepted route spec", Duration::from_secs(20));
    let huge = dir.path().join("huge");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let bomb = hostile::compile_bomb(dir.path());
    let bomb_kb = std::fs::metadata(&bomb).unwrap().len() >> 10;
    let zero = dir.path().join("zero");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let (configfile, tcp) = (testkit::plugin("configfile"), testkit::plugin("tcp"));
    for (what, file, slot, original) in [
        ("a 4 GiB file".to_string(), huge, &mode, &configfile),
        ("/dev/zero".to_string(), zero, &mode, &configfile),
        (format!("a {bomb_kb} KB compile bomb"), bomb, &health, &tcp),
    ] {
        let (before, _) = daemon.memory_mib();
        let _ = std::fs::remove_file(slot);
        std::os::unix::fs::symlink(&file, slot).unwrap();
        let asked = Instant::now();
        let (status, body) = daemon.http("POST", "/plugins/reload", b"");
        let took = asked.elapsed();
        let (peak, now) = daemon.memory_mib();
        let outcome: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let why = outcome["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["result"] == "failed")
            .filter_map(|p| p["detail"].as_str())
            .collect::<Vec<_>>()
            .join("; ");
        println!(
            "reload of {what}: {status} in {:.0} ms, peak RSS {before} -> {peak} MiB, {now} MiB after ({why})",
            took.as_secs_f64() * 1e3
        );
        // The running version's bytes again: the next reload is of one file.
        std::fs::remove_file(slot).unwrap();
        std::fs::copy(original, slot).unwrap();
    }
}

fn main() {
    failover("tcp alone", &[], 7);
    let hog = testkit::guest("hostile-health");
    let (_silent, _queued, silent) = hostile::silent_port();
    let silent = silent.to_string();
    failover(
        "tcp beside a plugin holding its probe slots on 3,000 silent hosts",
        &testkit::strs(&hostile::hog_args(&hog, &silent)),
        7,
    );
    flapping();
    hostile_reloads();
}
