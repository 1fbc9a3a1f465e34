//! Health checking figures with the real daemon and the tcp plugin:
//! detection latency from a host's death to the daemon's "host failed" log
//! line, and the cost of probing thousands of hosts by full connects and by
//! half-open probes, on 127.0.0.0/8 and (as root) against peers behind a
//! veth pair between two network namespaces this benchmark creates, where
//! the peers' half of every exchange runs on the other core.
//!
//! `cargo bench --bench health` (all), `-- --detection-only`, `-- --scale-only`,
//! `-- --soak SECONDS` (false failures at 1,000 hosts every 0.1 s).

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
    let health: Vec<&str> = ["-H", "tcp"].iter().chain(tcp).copied().collect();
    daemon_in(&[], dir, hosts, &health)
}

/// The daemon with `health` (its health plugin arguments), started through
/// `wrapper` (a command that execs the rest).
fn daemon_in(
    wrapper: &[&str],
    dir: &Path,
    hosts: &[String],
    health: &[&str],
) -> (Child, mpsc::Receiver<(Instant, String)>) {
    let spec: serde_json::Map<String, serde_json::Value> = hosts
        .chunks(1000)
        .enumerate()
        .map(|(i, chunk)| (format!("10.{}.0.0/16", 100 + i), serde_json::json!(chunk)))
        .collect();
    let file = dir.join("spec.json");
    std::fs::write(&file, serde_json::Value::Object(spec).to_string()).unwrap();
    let port = common::free_port();
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(env!("CARGO_BIN_EXE_vpcrouter"));
            command
        }
        None => Command::new(env!("CARGO_BIN_EXE_vpcrouter")),
    };
    let mut child = command
        .args([
            "-m",
            "configfile",
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
        .args(health)
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
    // Filled at once: the accept queue holds one connection, and the SYN
    // of the next is dropped (a few ms, during which probes are refused).
    let mut queued = Vec::new();
    for _ in 0..4 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(5)) {
            Ok(stream) => queued.push(stream),
            Err(_) => break,
        }
    }
    (socket, queued)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Kill 127.0.0.82 `runs` times at a random moment; death -> failed event.
/// `timeout`: the probe timeout option, if given (else the adaptive one).
fn detection(
    interval: &str,
    timeout_mode: bool,
    timeout: Option<&str>,
    method: &str,
    runs: usize,
) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let victim: SocketAddr = "127.0.0.82:0".parse().unwrap();
    let listener = TcpListener::bind(victim).unwrap();
    let addr = listener.local_addr().unwrap();
    let _other = TcpListener::bind(("127.0.0.81", addr.port())).unwrap();
    let hosts = vec!["127.0.0.81".to_string(), "127.0.0.82".to_string()];
    let port = addr.port().to_string();
    let mut tcp = vec![
        "--tcp_check_port",
        &port,
        "--tcp_check_interval",
        interval,
        "--tcp_check_window",
        "1",
        "--tcp_check_method",
        method,
    ];
    if let Some(timeout) = timeout {
        tcp.extend(["--tcp_check_timeout", timeout]);
    }
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
        // Death is when the router stops answering, whatever it then does.
        let died = Instant::now();
        drop(listener.take());
        let hold = timeout_mode.then(|| silent(addr));
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

/// What probing costs: CPU shares of one core and RSS.
struct Cost {
    user: f64,
    system: f64,
    rss: f64,
    false_failures: u64,
}

/// The daemon, started through `wrapper`, checking `hosts` (all up) with
/// `probe` (see `probes`) every `interval`: its cost, and the busy share of
/// core 0 over the same time.
fn probe_cost(
    wrapper: &[&str],
    hosts: &[String],
    port: u16,
    (interval, probe): (&str, &str),
    measure: Duration,
) -> (Cost, f64) {
    let dir = tempfile::tempdir().unwrap();
    let port = port.to_string();
    let health = match probe {
        "icmpecho" => vec!["-H", "icmpecho", "--icmp_check_interval", interval],
        method => vec![
            "-H",
            "tcp",
            "--tcp_check_port",
            &port,
            "--tcp_check_interval",
            interval,
            "--tcp_check_method",
            method,
        ],
    };
    let (mut child, rx) = daemon_in(wrapper, dir.path(), hosts, &health);
    let ((user, system, rss), core) = measure_cpu_and_core(&mut child, measure, 0);
    let cost = Cost {
        user,
        system,
        rss,
        false_failures: false_failures(&rx),
    };
    (cost, core)
}

fn false_failures(rx: &mpsc::Receiver<(Instant, String)>) -> u64 {
    rx.try_iter()
        .filter(|(_, l)| l.contains("host failed"))
        .count() as u64
}

/// A listener on the wildcard address with a deep accept queue and two
/// acceptors: the probed "hosts" must keep up, or dropped SYNs show up as
/// false failures. Lives as long as the process. Its port.
fn wildcard_listener() -> u16 {
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
    port
}

/// The floor on loopback: the same connects from a bare loop, no daemon.
fn bare_loop(count: usize, interval: &str, measure: Duration) -> (f64, f64) {
    let port = wildcard_listener().to_string();
    let mut bare = Command::new(std::env::current_exe().unwrap())
        .args(["--bare-probe-loop", &count.to_string(), interval, &port])
        .args(["connect", "loopback"])
        .spawn()
        .unwrap();
    let (user, system, _) = measure_cpu(&mut bare, measure);
    (user, system)
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
    measure_cpu_and_core(child, measure, 0).0
}

/// Busy jiffies (everything but idle and iowait) of one core, and all.
fn core_jiffies(core: usize) -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let line = stat
        .lines()
        .find(|l| l.starts_with(&format!("cpu{core} ")))
        .unwrap();
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    (total - fields[3] - fields[4], total)
}

/// `measure_cpu`, plus the busy share of `core` over the same time.
fn measure_cpu_and_core(
    child: &mut Child,
    measure: Duration,
    core: usize,
) -> ((f64, f64, f64), f64) {
    std::thread::sleep(Duration::from_secs(3));
    let ((user0, system0), t0) = (cpu_seconds(child.id()), Instant::now());
    let (busy0, total0) = core_jiffies(core);
    std::thread::sleep(measure);
    let (user1, system1) = cpu_seconds(child.id());
    let (busy1, total1) = core_jiffies(core);
    let core_share = (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64;
    let wall = t0.elapsed().as_secs_f64();
    let rss = common::rss_mib(&format!("/proc/{}/status", child.id()));
    child.kill().unwrap();
    child.wait().unwrap();
    (
        ((user1 - user0) / wall, (system1 - system0) / wall, rss),
        core_share,
    )
}

/// Child mode: probe `count` loopback hosts every `interval` with the
/// daemon's own probe function, and nothing else.
fn bare_probe_loop(count: usize, interval: f64, port: u16, method: &str, remote: bool) {
    let hosts: Vec<std::net::IpAddr> = if remote {
        remote_hosts(count)
    } else {
        loopback_hosts(count)
    }
    .iter()
    .map(|h| h.parse().unwrap())
    .collect();
    let half_open = method == "half-open";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(interval));
        let timeout = Duration::from_secs_f64(interval.min(1.0));
        loop {
            tick.tick().await;
            let method = if half_open {
                vpcrouter::probe::Method::HalfOpen(port)
            } else {
                vpcrouter::probe::Method::Tcp(port)
            };
            let outcomes = method.outcomes(&hosts, timeout).await;
            let failed: Vec<_> = outcomes.iter().filter(|o| !o.ok).collect();
            if let Some(first) = failed.first() {
                eprintln!(
                    "bare loop: {} of {count} probes failed ({first:?})",
                    failed.len()
                );
            }
        }
    });
}

fn remote_hosts(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("10.99.{}.{}", i / 250, i % 250 + 1))
        .collect()
}

/// Two network namespaces joined by a veth pair: "near", where the daemon
/// runs, and "far", which answers for every address of 10.99.0.0/16 with
/// its packets handled on core 1 (RPS), so that the peers' half of each
/// exchange is not charged to core 0. Neither namespace is connected to
/// this machine's network. Removed on drop.
struct VethPair {
    near: String,
    far: String,
}

const FAR_PORT: u16 = 5022;

impl VethPair {
    /// None (with the reason printed) where namespaces cannot be made.
    fn create() -> Option<Self> {
        let pair = Self {
            near: format!("vrbench-near-{}", std::process::id()),
            far: format!("vrbench-far-{}", std::process::id()),
        };
        let (near, far) = (pair.near.as_str(), pair.far.as_str());
        let rps = |ns: &str, dev: &str, mask: &str| {
            let script = format!("echo {mask} > /sys/class/net/{dev}/queues/rx-0/rps_cpus");
            vec!["netns", "exec", ns, "sh", "-c"]
                .into_iter()
                .map(String::from)
                .chain([script])
                .collect::<Vec<_>>()
        };
        let steps: Vec<Vec<String>> = [
            vec!["netns", "add", near],
            vec!["netns", "add", far],
            vec![
                "-n", near, "link", "add", "vrb0", "type", "veth", "peer", "name", "vrb1", "netns",
                far,
            ],
            vec!["-n", near, "link", "set", "lo", "up"],
            vec!["-n", far, "link", "set", "lo", "up"],
            vec!["-n", near, "addr", "add", "10.98.0.1/30", "dev", "vrb0"],
            vec!["-n", far, "addr", "add", "10.98.0.2/30", "dev", "vrb1"],
            vec!["-n", near, "link", "set", "vrb0", "up"],
            vec!["-n", far, "link", "set", "vrb1", "up"],
            vec![
                "-n",
                near,
                "route",
                "add",
                "10.99.0.0/16",
                "via",
                "10.98.0.2",
            ],
            vec![
                "-n",
                far,
                "route",
                "add",
                "local",
                "10.99.0.0/16",
                "dev",
                "lo",
            ],
            vec![
                "netns",
                "exec",
                far,
                "sysctl",
                "-qw",
                "net.core.somaxconn=8192",
            ],
        ]
        .into_iter()
        .map(|step| step.into_iter().map(String::from).collect())
        .chain([rps(near, "vrb0", "1"), rps(far, "vrb1", "2")])
        .collect();
        for step in steps {
            let status = Command::new("ip").args(&step).status();
            if !status.is_ok_and(|s| s.success()) {
                println!(
                    "remote peers skipped: `ip {}` failed (needs root and iproute2)",
                    step.join(" ")
                );
                return None;
            }
        }
        Some(pair)
    }

    /// A command prefix running a program in `ns` pinned to `core`.
    fn run_in<'a>(ns: &'a str, core: &'a str) -> [&'a str; 7] {
        ["ip", "netns", "exec", ns, "taskset", "-c", core]
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in [&self.near, &self.far] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Child mode (in the far namespace): accept and drop connections to
/// FAR_PORT on every address, for the full connects.
fn far_acceptor() {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(&SocketAddr::from(([0, 0, 0, 0], FAR_PORT)).into())
        .unwrap();
    socket.listen(8192).unwrap();
    let listener: TcpListener = socket.into();
    for connection in listener.incoming() {
        drop(connection);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--bare-probe-loop") {
        return bare_probe_loop(
            args[i + 1].parse().unwrap(),
            args[i + 2].parse().unwrap(),
            args[i + 3].parse().unwrap(),
            &args[i + 4],
            args[i + 5] == "remote",
        );
    }
    if args.iter().any(|a| a == "--far-acceptor") {
        return far_acceptor();
    }
    println!("vpcrouter health benchmark (tcp plugin, real daemon)");
    if args.iter().any(|a| a == "--scale-only") {
        return scale_figures();
    }
    if let Some(i) = args.iter().position(|a| a == "--soak") {
        return soak(Duration::from_secs(args[i + 1].parse().unwrap()));
    }
    detection_figures();
    if args.iter().any(|a| a == "--detection-only") {
        return;
    }
    scale_figures();
}

/// Death -> "host failed": a router that refuses, and one that falls
/// silent, with the adaptive timeout (the default) and with a fixed one
/// equal to the interval (the default before: the lesser of 1 s and it).
fn detection_figures() {
    for (interval, runs) in [("1", 10), ("0.2", 30)] {
        let fixed = if interval == "1" { "1" } else { interval };
        let modes = [
            ("refused", false, None),
            ("silent, adaptive timeout", true, None),
            ("silent, fixed timeout = interval", true, Some(fixed)),
        ];
        for (mode, timeout_mode, timeout) in modes {
            for method in methods() {
                let l = detection(interval, timeout_mode, timeout, method, runs);
                println!(
                    "detection, interval {interval:>3} s, {mode:<32}, {method:<9}: median {:>7.1} ms  p90 {:>7.1} ms  max {:>7.1} ms  ({runs} kills)",
                    percentile(&l, 0.5).as_secs_f64() * 1e3,
                    percentile(&l, 0.9).as_secs_f64() * 1e3,
                    percentile(&l, 1.0).as_secs_f64() * 1e3,
                );
            }
        }
    }
}

/// False failures over a long run: 1,000 loopback hosts, all up, every
/// 0.1 s with the adaptive timeout, for `length` per method.
fn soak(length: Duration) {
    for method in methods() {
        let hosts = loopback_hosts(1_000);
        let port = wildcard_listener();
        let (cost, _) = probe_cost(&[], &hosts, port, ("0.1", method), length);
        let what = format!(
            "soak {} s, 1000 hosts every 0.1 s, adaptive timeout, {method:<9}",
            length.as_secs()
        );
        print_cost(&what, &cost, "");
    }
}

/// The probe methods to measure: half-open needs CAP_NET_RAW.
fn methods() -> Vec<&'static str> {
    match vpcrouter::probe::half_open::access() {
        Ok(()) => vec!["connect", "half-open"],
        Err(why) => {
            println!("half-open skipped: {why}");
            vec!["connect"]
        }
    }
}

fn print_cost(what: &str, cost: &Cost, extra: &str) {
    println!(
        "{what}: daemon CPU user {:>5.1} % + system {:>5.1} % = {:>5.1} % of one core{extra}, RSS {:>5.1} MiB, false failures {}",
        cost.user * 100.0,
        cost.system * 100.0,
        (cost.user + cost.system) * 100.0,
        cost.rss,
        cost.false_failures
    );
}

/// What the scale figures compare: the tcp methods, and ICMP echo (where
/// this process may send it).
fn probes() -> Vec<&'static str> {
    let mut probes = methods();
    match vpcrouter::probe::icmp::access() {
        Ok(_) => probes.push("icmpecho"),
        Err(why) => println!("icmpecho skipped: {why}"),
    }
    probes
}

fn scale_figures() {
    let measure = Duration::from_secs(10);
    let loads = [(10_000, "1"), (1_000, "0.1")];
    for (count, interval) in loads {
        for method in probes() {
            // One listener on the wildcard address answers for every
            // loopback address.
            let hosts = loopback_hosts(count);
            let port = wildcard_listener();
            let (cost, _) = probe_cost(&[], &hosts, port, (interval, method), measure);
            let what = format!("loopback, {count:>6} hosts every {interval:>3} s, {method:<9}");
            print_cost(&what, &cost, "");
        }
        let (user, system) = bare_loop(count, interval, measure);
        println!(
            "loopback, {count:>6} hosts every {interval:>3} s, bare connect loop (no daemon): CPU user {:>5.1} % + system {:>5.1} %",
            user * 100.0,
            system * 100.0
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        println!("remote peers skipped: needs two cores (one for each side)");
        return;
    }
    let Some(pair) = VethPair::create() else {
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let mut acceptor = Command::new("ip")
        .args(["netns", "exec", &pair.far, "taskset", "-c", "1"])
        .arg(exe)
        .arg("--far-acceptor")
        .spawn()
        .unwrap();
    let (idle0, total0) = core_jiffies(0);
    std::thread::sleep(Duration::from_secs(3));
    let (idle1, total1) = core_jiffies(0);
    println!(
        "remote peers: core 0 busy {:.1} % with no daemon (background)",
        (idle1 - idle0) as f64 * 100.0 / (total1 - total0).max(1) as f64
    );
    for (count, interval) in loads {
        for method in probes() {
            let near = VethPair::run_in(&pair.near, "0");
            let hosts = remote_hosts(count);
            let (cost, core) = probe_cost(&near, &hosts, FAR_PORT, (interval, method), measure);
            let what = format!("remote,   {count:>6} hosts every {interval:>3} s, {method:<9}");
            print_cost(
                &what,
                &cost,
                &format!(" (core 0 busy {:.1} %)", core * 100.0),
            );
        }
    }
    let _ = acceptor.kill();
    let _ = acceptor.wait();
}
