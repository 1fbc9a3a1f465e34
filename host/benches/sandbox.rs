//! `cargo bench --bench sandbox`: the daemon's bounds under hostile
//! plugins (issue 11), as figures: log bytes per second, peak memory, HTTP
//! latency, and the time from SIGTERM to exit, with well-behaved plugins and
//! with every hostile guest at once; the memory a 14 MB spec from a plugin
//! costs before it is refused; health rounds over 3,000 and 10,000 silent
//! hosts.
//! Everything runs on loopback and the embedded VPC.

#[path = "../../tests/common/mod.rs"]
mod testkit;

use std::time::{Duration, Instant};
use testkit::Daemon;

/// Watch a running daemon for `seconds`: HTTP latency (median and max of
/// `/healthz` and `/plugins`, ten times a second) and log bytes per second.
fn watch(daemon: &Daemon, seconds: u64) -> (Duration, Duration, f64) {
    let started = Instant::now();
    let before = daemon.log_bytes();
    let mut latencies = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        for path in ["/healthz", "/plugins"] {
            let asked = Instant::now();
            assert_eq!(daemon.http("GET", path, b"").0, 200);
            latencies.push(asked.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    latencies.sort();
    let rate = (daemon.log_bytes() - before) as f64 / started.elapsed().as_secs_f64();
    (
        latencies[latencies.len() / 2],
        *latencies.last().unwrap(),
        rate,
    )
}

fn report(what: &str, daemon: &mut Daemon, seconds: u64) {
    // Start-up bursts are allowed by the limits; the rate is what lasts.
    std::thread::sleep(Duration::from_secs(2));
    let (median, max, rate) = watch(daemon, seconds);
    let (peak, now) = daemon.memory_mib();
    let exit = daemon.sigterm();
    println!(
        "{what}: log {:.1} KB/s, HTTP median {:.1} ms / max {:.1} ms, RSS {now} MiB (peak {peak} MiB), SIGTERM -> exit {:.0} ms",
        rate / 1e3,
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        exit.as_secs_f64() * 1e3
    );
}

fn main() {
    let routers = ["127.0.61.10", "127.0.61.11"];
    let first = std::net::TcpListener::bind((routers[0], 0)).unwrap();
    let port = first.local_addr().unwrap().port().to_string();
    let _second = std::net::TcpListener::bind((routers[1], port.parse::<u16>().unwrap())).unwrap();

    // Well-behaved: configfile on 1,000 CIDRs, tcp every 0.1 s.
    let dir = tempfile::tempdir().unwrap();
    let vpc = testkit::loopback_vpc(dir.path(), &routers);
    let cidrs = (0..1000).map(|c| format!("10.{}.{}.0/24", c / 256, c % 256));
    let spec = testkit::spec_file(dir.path(), cidrs, &routers);
    let (vpc, spec) = (vpc.to_str().unwrap(), spec.to_str().unwrap());
    let mut daemon = Daemon::start(
        &[
            "-m",
            "configfile",
            "-f",
            spec,
            "--sim-vpc",
            vpc,
            "-H",
            "tcp",
            "--tcp_check_port",
            &port,
            "--tcp_check_interval",
            "0.1",
        ],
        dir.path(),
    );
    report(
        "well-behaved (configfile, 1,000 CIDRs; tcp every 0.1 s)",
        &mut daemon,
        10,
    );

    // Every hostile guest at once (as tests/sandbox.rs).
    let (hostile, hostile_health) = (testkit::guest("hostile"), testkit::guest("hostile-health"));
    let hosts = routers.join(",");
    let mut daemon = Daemon::start(
        &[
            "--mode-plugin",
            hostile.to_str().unwrap(),
            "--behaviour",
            "churn",
            "--hosts",
            &hosts,
            "--sim-vpc",
            vpc,
            "--health-plugin",
            hostile_health.to_str().unwrap(),
            "--hh_behaviour",
            "amplify,slow,flood,outside,flip",
            "--hh_port",
            &port,
        ],
        dir.path(),
    );
    report(
        "every hostile guest at once (churn; amplify, slow, flood, outside, flip)",
        &mut daemon,
        10,
    );

    // A plugin in an endless loop at every start (restarted with backoff).
    let mut daemon = Daemon::start(
        &[
            "--mode-plugin",
            hostile.to_str().unwrap(),
            "--behaviour",
            "loop",
            "--at",
            "start",
        ],
        dir.path(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    println!(
        "SIGTERM -> exit while a plugin loops: {:.0} ms",
        daemon.sigterm().as_secs_f64() * 1e3
    );

    // Specs over the limit from a plugin: 1,000 CIDRs x 100 hosts (refused by
    // validation), 1,000 x 1,000 (refused while copied into the host).
    for (behaviour, shape, status) in [
        ("oversize", "1,000 x 100", 400),
        ("huge", "1,000 x 1,000", 503),
    ] {
        let mut daemon = Daemon::start(
            &[
                "--mode-plugin",
                hostile.to_str().unwrap(),
                "--behaviour",
                behaviour,
            ],
            dir.path(),
        );
        daemon.wait_for_line("accepted route spec", Duration::from_secs(10));
        let (before, _) = daemon.memory_mib();
        let asked = Instant::now();
        let (answered, _) = daemon.http("POST", "/poke", b"");
        let took = asked.elapsed();
        assert_eq!(answered, status);
        let (peak, now) = daemon.memory_mib();
        println!(
            "a {shape}-host spec from a plugin: refused ({status}) in {:.0} ms; peak RSS {before} -> {peak} MiB, {now} MiB after",
            took.as_secs_f64() * 1e3
        );
        daemon.sigterm();
    }

    silent_round(3, "1");
    // The largest working set at the longest probe timeout: ten waves of
    // 1,024 probes, within the 60 s a call may wait on the host.
    silent_round(10, "5");
}

/// `thousands` x 1,000 silent hosts (one listener on 0.0.0.0 with a full
/// accept queue), tcp with `timeout`: how long until all are failed, and
/// SIGTERM in the middle of the next round.
fn silent_round(thousands: u32, timeout: &str) {
    let silent = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    silent
        .bind(&"0.0.0.0:0".parse::<std::net::SocketAddr>().unwrap().into())
        .unwrap();
    silent.listen(0).unwrap();
    let port = silent.local_addr().unwrap().as_socket().unwrap().port();
    let _queued: Vec<_> = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(
                &([127, 0, 0, 1], port).into(),
                Duration::from_millis(50),
            )
            .ok()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let spec: serde_json::Map<_, _> = (0..thousands)
        .map(|c| {
            let hosts: Vec<String> = (0..1000u32)
                .map(|h| format!("127.1.{}.{}", c * 4 + h / 250, h % 250 + 1))
                .collect();
            (format!("10.{c}.0.0/16"), serde_json::json!(hosts))
        })
        .collect();
    let spec_file = dir.path().join("spec.json");
    std::fs::write(&spec_file, serde_json::Value::Object(spec).to_string()).unwrap();
    let port = port.to_string();
    let mut daemon = Daemon::start(
        &[
            "-m",
            "configfile",
            "-f",
            spec_file.to_str().unwrap(),
            "-H",
            "tcp",
            "--tcp_check_port",
            &port,
            "--tcp_check_interval",
            "1",
            "--tcp_check_timeout",
            timeout,
        ],
        dir.path(),
    );
    let started = Instant::now();
    let hosts = thousands as usize * 1000;
    let failed = || {
        let (_, body) = daemon.http("GET", "/ips", b"");
        let ips: serde_json::Value = serde_json::from_str(&body).unwrap();
        ips["failed_ips"].as_array().map_or(0, Vec::len)
    };
    while failed() < hosts {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not all failed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{hosts} silent hosts, {timeout} s probe timeout: all failed {:.1} s after start",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_millis(1500));
    println!(
        "SIGTERM -> exit during a round over them: {:.0} ms",
        daemon.sigterm().as_secs_f64() * 1e3
    );
}
