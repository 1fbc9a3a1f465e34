//! `cargo bench --bench reload`: hot reload figures. A daemon with a config
//! source and a tcp health checker (rounds every 0.2 s) on the embedded
//! VPC; each plugin file is replaced by a new version (another digest) and
//! SIGHUP sent, 10 times each: the time from the signal to the new version
//! serving, and the health rounds missed meanwhile.

#[path = "../../tests/common/mod.rs"]
mod testkit;

use std::time::{Duration, Instant};
use testkit::Daemon;

const RELOADS: usize = 10;
const INTERVAL: f64 = 0.2;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (configfile, tcp) = (
        dir.path().join("configfile.wasm"),
        dir.path().join("tcp.wasm"),
    );
    std::fs::copy(testkit::plugin("configfile"), &configfile).unwrap();
    std::fs::copy(testkit::plugin("tcp"), &tcp).unwrap();
    let router = std::net::TcpListener::bind("127.0.0.52:0").unwrap();
    let port = router.local_addr().unwrap().port().to_string();
    let vpc = testkit::loopback_vpc(dir.path(), &["127.0.0.52"]);
    let spec = testkit::spec_file(dir.path(), ["10.55.0.0/16".to_string()], &["127.0.0.52"]);
    let daemon = Daemon::start(
        &[
            "--mode-plugin",
            configfile.to_str().unwrap(),
            "-f",
            spec.to_str().unwrap(),
            "--sim-vpc",
            vpc.to_str().unwrap(),
            "--health-plugin",
            tcp.to_str().unwrap(),
            "--tcp_check_port",
            &port,
            "--tcp_check_interval",
            &INTERVAL.to_string(),
        ],
        dir.path(),
    );
    let plugins = || daemon.view("/plugins")["plugins"].clone();
    let rounds = || plugins()[1]["stats"]["rounds"].as_u64().unwrap_or(0);
    while rounds() < 5 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (start, first) = (Instant::now(), rounds());
    for (index, path) in [(0, &configfile), (1, &tcp)] {
        let mut took = Vec::new();
        for n in 0..RELOADS {
            testkit::new_version(path, &format!("v{n}"));
            let before = plugins()[index]["reloads"].as_u64().unwrap();
            let sent = Instant::now();
            // SAFETY: signalling the child process this program started.
            unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) };
            while plugins()[index]["reloads"].as_u64().unwrap() == before {
                assert!(sent.elapsed() < Duration::from_secs(20), "no reload");
                std::thread::sleep(Duration::from_millis(2));
            }
            took.push(sent.elapsed());
        }
        took.sort();
        println!(
            "reload of {}: SIGHUP -> new version serving, {RELOADS} reloads: median {:.1} ms, max {:.1} ms",
            path.file_name().unwrap().to_string_lossy(),
            took[RELOADS / 2].as_secs_f64() * 1e3,
            took[RELOADS - 1].as_secs_f64() * 1e3
        );
    }
    let (elapsed, done) = (start.elapsed().as_secs_f64(), rounds() - first);
    let expected = (elapsed / INTERVAL).floor() as u64;
    println!(
        "health rounds during {} reloads over {elapsed:.1} s: {done} of {expected} expected at {INTERVAL} s; missed: {}",
        2 * RELOADS,
        expected.saturating_sub(done + 1)
    );
}
