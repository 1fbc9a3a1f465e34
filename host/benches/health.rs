//! Health checking figures with the real daemon and the tcp plugin, all on
//! 127.0.0.0/8: detection latency from a host's death to the daemon's
//! "host failed" log line, and the cost of probing thousands of hosts.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn plugins() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins")
}

/// The daemon on a configfile spec naming `hosts`, with the tcp plugin;
/// its log lines containing "host " arrive on the channel.
fn daemon(
    dir: &Path,
    hosts: &[String],
    tcp: &[&str],
) -> (Child, mpsc::Receiver<(Instant, String)>) {
    let spec: serde_json::Map<String, serde_json::Value> = hosts
        .chunks(1000)
        .enumerate()
        .map(|(i, chunk)| (format!("10.{}.0.0/16", 100 + i), serde_json::json!(chunk)))
        .collect();
    let file = dir.join("spec.json");
    std::fs::write(&file, serde_json::Value::Object(spec).to_string()).unwrap();
    let port = common::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
        .args([
            "-m",
            "configfile",
            "-H",
            "tcp",
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "--plugin-dir",
        ])
        .arg(plugins())
        .arg("-f")
        .arg(&file)
        .arg("--plugin-cache-dir")
        .arg(dir.join("cache"))
        .args(tcp)
        .arg("--sim-vpc")
        .arg(common::sim_vpc())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("host ") {
                let _ = lines.send((Instant::now(), line));
            }
        }
    });
    (child, rx)
}

fn wait_for(rx: &mpsc::Receiver<(Instant, String)>, needle: &str, host: &str) -> Instant {
    loop {
        let (at, line) = rx.recv_timeout(Duration::from_secs(30)).expect(needle);
        if line.contains(needle) && line.contains(&format!("host={host} ")) {
            return at;
        }
    }
}

/// A listener with a full accept queue: connects to it time out.
fn silent(addr: SocketAddr) -> (socket2::Socket, Vec<std::net::TcpStream>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(0).unwrap();
    let queued = (0..4)
        .filter_map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(50)).ok())
        .collect();
    (socket, queued)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Kill 127.0.0.82 `runs` times at a random moment; death -> failed event.
fn detection(interval: &str, timeout_mode: bool, runs: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let victim: SocketAddr = "127.0.0.82:0".parse().unwrap();
    let listener = TcpListener::bind(victim).unwrap();
    let addr = listener.local_addr().unwrap();
    let _other = TcpListener::bind(("127.0.0.81", addr.port())).unwrap();
    let hosts = vec!["127.0.0.81".to_string(), "127.0.0.82".to_string()];
    let port = addr.port().to_string();
    let tcp = [
        "--tcp_check_port",
        &port,
        "--tcp_check_interval",
        interval,
        "--tcp_check_window",
        "1",
    ];
    let (mut child, rx) = daemon(dir.path(), &hosts, &tcp);
    let mut listener = Some(listener);
    let mut latencies = Vec::new();
    let mut jitter = 0x2545_f491_u64;
    let period = Duration::from_secs_f64(interval.parse().unwrap());
    std::thread::sleep(Duration::from_secs(1));
    for _ in 0..runs {
        jitter ^= jitter << 13;
        jitter ^= jitter >> 7;
        jitter ^= jitter << 17;
        std::thread::sleep(period.mul_f64((jitter % 1000) as f64 / 1000.0));
        drop(listener.take());
        let hold = timeout_mode.then(|| silent(addr));
        let died = Instant::now();
        latencies.push(wait_for(&rx, "host failed", "127.0.0.82") - died);
        drop(hold);
        listener = Some(TcpListener::bind(addr).unwrap());
        wait_for(&rx, "host healthy", "127.0.0.82");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    latencies.sort();
    latencies
}

/// (user, system) CPU seconds of a process.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields[i].parse::<f64>().unwrap() / 100.0;
    (ticks(11), ticks(12))
}

/// `count` hosts across 127.0.0.0/8 (all up: one listener on the wildcard
/// address answers for every loopback address), probed every `interval`.
/// (user share, system share of one core, RSS MiB, false failures).
fn scale(count: usize, interval: &str, measure: Duration) -> (f64, f64, f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    // A deep accept queue and two acceptors: the probed "hosts" must keep
    // up, or dropped SYNs show up as false failures.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"0.0.0.0:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(4096).unwrap();
    let listener: TcpListener = socket.into();
    let port = listener.local_addr().unwrap().port();
    for _ in 0..2 {
        let acceptor = listener.try_clone().unwrap();
        std::thread::spawn(move || {
            for connection in acceptor.incoming() {
                drop(connection);
            }
        });
    }
    let port = port.to_string();
    let tcp = ["--tcp_check_port", &port, "--tcp_check_interval", interval];
    let (mut child, rx) = daemon(dir.path(), &loopback_hosts(count), &tcp);
    let (user, system, rss) = measure_cpu(&mut child, measure);
    let failures = rx
        .try_iter()
        .filter(|(_, l)| l.contains("host failed"))
        .count() as u64;
    // The floor: the same connects from a bare loop, no daemon.
    let mut bare = Command::new(std::env::current_exe().unwrap())
        .args(["--bare-probe-loop", &count.to_string(), interval, &port])
        .spawn()
        .unwrap();
    let (bare_user, bare_system, _) = measure_cpu(&mut bare, measure);
    println!(
        "  bare probe loop, same hosts: CPU user {:>5.1} % + system {:>5.1} %",
        bare_user * 100.0,
        bare_system * 100.0
    );
    (user, system, rss, failures)
}

fn loopback_hosts(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            format!(
                "127.{}.{}.{}",
                1 + i / 62_500,
                (i / 250) % 250 + 1,
                i % 250 + 1
            )
        })
        .collect()
}

/// (user share, system share, RSS) of `child` over `measure`, after a
/// warm-up; kills it afterwards.
fn measure_cpu(child: &mut Child, measure: Duration) -> (f64, f64, f64) {
    std::thread::sleep(Duration::from_secs(3));
    let ((user0, system0), t0) = (cpu_seconds(child.id()), Instant::now());
    std::thread::sleep(measure);
    let (user1, system1) = cpu_seconds(child.id());
    let wall = t0.elapsed().as_secs_f64();
    let rss = common::rss_mib(&format!("/proc/{}/status", child.id()));
    child.kill().unwrap();
    child.wait().unwrap();
    ((user1 - user0) / wall, (system1 - system0) / wall, rss)
}

/// Child mode: probe `count` loopback hosts every `interval` with the
/// daemon's own probe function, and nothing else.
fn bare_probe_loop(count: usize, interval: f64, port: u16) {
    let hosts: Vec<std::net::IpAddr> = loopback_hosts(count)
        .iter()
        .map(|h| h.parse().unwrap())
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(interval));
        loop {
            tick.tick().await;
            vpcrouter::health::probe::tcp(hosts.clone(), port, Duration::from_secs(1)).await;
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--bare-probe-loop") {
        return bare_probe_loop(
            args[i + 1].parse().unwrap(),
            args[i + 2].parse().unwrap(),
            args[i + 3].parse().unwrap(),
        );
    }
    println!("vpcrouter health benchmark (tcp plugin, real daemon, loopback)");
    if args.iter().any(|a| a == "--scale-only") {
        return scale_figures();
    }
    for (interval, runs) in [("1", 10), ("0.2", 20)] {
        for (mode, timeout_mode) in [("refused", false), ("timeout", true)] {
            let l = detection(interval, timeout_mode, runs);
            println!(
                "detection, interval {interval:>3} s, {mode:<7}: median {:>7.1} ms  p90 {:>7.1} ms  max {:>7.1} ms  ({runs} kills)",
                percentile(&l, 0.5).as_secs_f64() * 1e3,
                percentile(&l, 0.9).as_secs_f64() * 1e3,
                percentile(&l, 1.0).as_secs_f64() * 1e3,
            );
        }
    }
    scale_figures();
}

fn scale_figures() {
    for (count, interval) in [(10_000, "1"), (1_000, "0.1")] {
        let (user, system, rss, failures) = scale(count, interval, Duration::from_secs(10));
        println!(
            "scale, {count:>6} hosts every {interval:>3} s: CPU user {:>5.1} % + system {:>5.1} % of one core, RSS {rss:>5.1} MiB, false failures {failures}",
            user * 100.0,
            system * 100.0
        );
    }
}
