//! Failover against moto's EC2 server, end to end with the real daemon
//! (configfile + tcp), as the old daemon was measured (field notes): a VPC
//! of 3 subnets/AZs with a route table each, 6 router hosts that are TCP
//! listeners on 127.0.x.y, 3 CIDRs. A counting proxy between the daemon and
//! moto sees every EC2 call.
//!
//! For tcp intervals of 1 s and 0.2 s: kill the router carrying the first
//! CIDR at a random moment, time until every table routes all of the dead
//! router's CIDRs elsewhere (polled from moto directly, every 5 ms), count
//! the calls the failover cost; bring the router back. Then count the calls
//! of an idle minute (default 30 s recheck). Then, at 0.2 s, the same
//! failovers with and without `--notify webhook:` to a receiver that takes
//! each request and never answers, in turns: a sink that hangs must leave
//! failover times as they are.
//!
//! `cargo bench --bench failover` (`-- --trials N`, `-- --idle-seconds S`).

// Shared with the tests; each user takes a subset.
#[allow(dead_code)]
#[path = "../../tests/common/fault_proxy.rs"]
mod fault_proxy;
#[allow(dead_code)]
#[path = "../../tests/common/moto.rs"]
mod moto;

mod common;

use common::free_port;
use moto::{CIDRS, ROUTERS};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vpcrouter::cloud::budget::EC2_MUTATING;
const MUTATING: [&str; 3] = ["CreateRoute", "ReplaceRoute", "DeleteRoute"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let trials = flag("--trials", 20) as usize;
    let idle = Duration::from_secs(flag("--idle-seconds", 60));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!("failover against moto: 3 tables x 3 CIDRs, 6 routers, {trials} kills per interval");
    for interval in ["1", "0.2"] {
        let (latencies, calls) = runtime.block_on(failovers(interval, trials, None, None));
        let ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        println!(
            "tcp interval {interval:>3} s: kill -> every table moved: median {:.0} ms, p90 {:.0} ms, max {:.0} ms",
            percentile(&ms, 50),
            percentile(&ms, 90),
            ms.last().unwrap()
        );
        println!("  EC2 calls per failover: {calls}");
    }
    // The default interval (2 s), for the start-up figure and the idle calls.
    let (_, idle_calls) = runtime.block_on(failovers("2", 0, Some(idle), None));
    println!(
        "EC2 calls in {} s idle (recheck 30 s, tcp interval 2 s): {idle_calls}",
        idle.as_secs()
    );
    hanging_sink(&runtime, trials);
}

/// Failovers at 0.2 s without and with a notification sink that never
/// answers, in turns (machines are noisy: compare within one run).
fn hanging_sink(runtime: &tokio::runtime::Runtime, trials: usize) {
    let sink = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                held.push(connection);
            }
        });
        format!("webhook:http://127.0.0.1:{port}/never")
    });
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let half = trials.div_ceil(2);
        without.extend(runtime.block_on(failovers("0.2", half, None, None)).0);
        with.extend(
            runtime
                .block_on(failovers("0.2", half, None, Some(&sink)))
                .0,
        );
    }
    for (what, latencies) in [("no sink", &mut without), ("a sink that hangs", &mut with)] {
        latencies.sort();
        let ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        println!(
            "tcp interval 0.2 s, {what}: kill -> every table moved: median {:.0} ms, p90 {:.0} ms ({} kills)",
            percentile(&ms, 50),
            percentile(&ms, 90),
            ms.len()
        );
    }
}

/// Sorted input; nearest-rank percentile.
fn percentile(sorted: &[f64], p: usize) -> f64 {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// A router host: a listener that accepts (and drops) every connection,
/// as sshd or bgpd would; a listener that never accepts fills its queue
/// after 128 probes and then makes probes time out. Dropping it closes the
/// port (probes are refused).
struct Router(tokio::task::JoinHandle<()>);

impl Router {
    fn listen(ip: &str, port: u16) -> Self {
        let listener = std::net::TcpListener::bind((ip, port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        Self(tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                drop(connection);
            }
        }))
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run `trials` failovers at tcp `interval` (then stay idle for `idle`);
/// sorted latencies and the calls per failover (or of the idle time).
async fn failovers(
    interval: &str,
    trials: usize,
    idle: Option<Duration>,
    notify: Option<&str>,
) -> (Vec<Duration>, String) {
    let moto = moto::Moto::start();
    let ec2 = moto.client().await;
    let vpc = moto::build_vpc(&ec2, 3, &ROUTERS).await;
    let proxy = fault_proxy::FaultProxy::start(&moto.url).await;
    let first = std::net::TcpListener::bind((ROUTERS[0], 0)).unwrap();
    let port = first.local_addr().unwrap().port();
    drop(first);
    let mut listeners: BTreeMap<&str, Option<Router>> = BTreeMap::new();
    for router in &ROUTERS {
        listeners.insert(router, Some(Router::listen(router, port)));
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    let spec_json: serde_json::Map<_, _> = CIDRS
        .iter()
        .map(|c| (c.to_string(), serde_json::json!(ROUTERS)))
        .collect();
    std::fs::write(&spec, serde_json::Value::Object(spec_json).to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
        .args(["-m", "configfile", "-H", "tcp", "-a", "127.0.0.1"])
        .args([
            "-p",
            &free_port().to_string(),
            "-r",
            moto::REGION,
            "-v",
            &vpc.id,
        ])
        .args(["--ec2-endpoint", &proxy.url, "-f", spec.to_str().unwrap()])
        .args([
            "--tcp_check_port",
            &port.to_string(),
            "--tcp_check_interval",
            interval,
        ])
        .arg("--plugin-dir")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins"))
        .arg("--plugin-cache-dir")
        .arg(dir.path().join("cache"))
        .args(notify.map(|sink| ["--notify", sink]).into_iter().flatten())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // When the daemon logged each line, to split detection from the rest.
    let stdout = child.stdout.take().unwrap();
    let (log_tx, log) = std::sync::mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = log_tx.send((Instant::now(), line));
        }
    });
    let _daemon = Daemon(child);

    // CIDR -> ENI in every table, once they agree.
    let settled = async || -> BTreeMap<&str, String> {
        loop {
            let routes = moto::routes(&ec2, &vpc.id).await;
            let agreed: BTreeMap<&str, String> = CIDRS
                .iter()
                .filter_map(|cidr| {
                    let targets: Vec<_> = vpc
                        .tables
                        .iter()
                        .map(|t| {
                            routes[t]
                                .iter()
                                .find(|(d, _)| d == cidr)
                                .map(|r| r.1.clone())
                        })
                        .collect();
                    let first = targets[0].clone()?;
                    targets
                        .iter()
                        .all(|t| t.as_ref() == Some(&first))
                        .then_some((*cidr, first))
                })
                .collect();
            if agreed.len() == CIDRS.len() {
                return agreed;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let router_of = |eni: &str| -> &str {
        vpc.routers
            .iter()
            .find(|(_, (_, e))| e == eni)
            .map(|(ip, _)| ip.as_str())
            .unwrap()
    };
    settled().await;
    // Start-up: from the daemon's "started" line (plugins loaded) to every
    // table routed; no route waits for a timer tick.
    let converged = Instant::now();
    if let Some((started, _)) = log
        .try_iter()
        .find(|(_, line)| line.contains("vpcrouter started"))
    {
        let ms = converged.duration_since(started).as_secs_f64() * 1e3;
        println!("tcp interval {interval:>3} s: started -> every table routed: {ms:.0} ms");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    if let Some(idle) = idle {
        let before = proxy.calls();
        tokio::time::sleep(idle).await;
        return (vec![], delta(&before, &proxy.calls()));
    }
    let interval_s: f64 = interval.parse().unwrap();
    let mut latencies = Vec::new();
    let mut calls = BTreeMap::new();
    let mut moved = 0;
    let mut detections = Vec::new();
    for _ in 0..trials {
        let routes = settled().await;
        let victim_eni = routes[CIDRS[0]].clone();
        let victim = router_of(&victim_eni);
        moved += routes.values().filter(|eni| **eni == victim_eni).count() * vpc.tables.len();
        // A random moment within the probe cycle.
        tokio::time::sleep(Duration::from_secs_f64(fastrand::f64() * interval_s)).await;
        let before = proxy.calls();
        let killed = Instant::now();
        listeners.insert(victim, None);
        loop {
            let now = settled().await;
            if now.values().all(|eni| *eni != victim_eni) {
                break;
            }
        }
        latencies.push(killed.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let failed = format!("host={victim} ");
        if let Some((at, _)) = log.try_iter().find(|(at, line)| {
            *at >= killed && line.contains("host failed") && line.contains(&failed)
        }) {
            detections.push(at - killed);
        }
        let mut mutated = 0;
        for (action, n) in counts(&before, &proxy.calls()) {
            if MUTATING.contains(&action.as_str()) {
                mutated += n;
            }
            *calls.entry(action).or_insert(0) += n;
        }
        // Back up; eligible again once its failure window has passed. Wait
        // also until the daemon's call budget (by default EC2's own rate:
        // 5 mutating calls a second) has refilled what this failover took:
        // a router dying every second is not what is measured, and its
        // throttled failovers were this benchmark's slow tail (session 3).
        listeners.insert(victim, Some(Router::listen(victim, port)));
        let refill = Duration::from_secs_f64(mutated as f64 / EC2_MUTATING.rate);
        tokio::time::sleep(refill.max(Duration::from_secs_f64(interval_s * 2.0))).await;
    }
    latencies.sort();
    detections.sort();
    let per_failover = calls
        .iter()
        .map(|(action, n)| format!("{action} {:.1}", *n as f64 / trials as f64))
        .collect::<Vec<_>>()
        .join(", ");
    let mutating: u64 = calls
        .iter()
        .filter(|(a, _)| MUTATING.contains(&a.as_str()))
        .map(|(_, n)| n)
        .sum();
    let detected = detections
        .get(detections.len() / 2)
        .map_or("-".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3));
    let summary = format!(
        "{per_failover}; routes moved (CIDR x table) {:.1}, mutating calls {:.1}, describes {:.1}",
        moved as f64 / trials as f64,
        mutating as f64 / trials as f64,
        (calls.values().sum::<u64>() - mutating) as f64 / trials as f64
    );
    let summary = format!(
        "{summary}\n  of which detection (kill -> daemon's \"host failed\"): median {detected}"
    );
    (latencies, summary)
}

fn counts(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(action, n)| (action.clone(), n - before.get(action).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> String {
    let counts = counts(before, after);
    let total: u64 = counts.values().sum();
    let each = counts
        .iter()
        .map(|(a, n)| format!("{a} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{total} ({each})")
}
