//! Failover at scale on moto's EC2 (issue 26): N CIDRs over 4 routers in
//! 10 tables, per-CIDR mode against prefix-list mode, in one run. A
//! counting proxy between the daemon and moto sees every EC2 call; the
//! daemon's own pacing is lifted (`--ec2-mutating-budget`), so that moto's
//! speed, not EC2's budget, is what the times measure, and the time EC2's
//! default budget (a burst of 50, then 5 a second) would add is computed
//! from the calls.
//!
//! For each (CIDRs, mode): start-up calls and time; kill the busiest
//! router; time until every table routes its CIDRs elsewhere (polled from
//! moto) and the mutating calls it cost.
//!
//! `cargo bench --bench scale` (`-- --cidrs 100,1000`).

#[allow(dead_code)]
#[path = "../../tests/common/fault_proxy.rs"]
mod fault_proxy;
#[allow(dead_code)]
#[path = "../../tests/common/moto.rs"]
mod moto;

mod common;

use aws_sdk_ec2::types::Tag;
use common::free_port;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vpcrouter::cloud::budget::EC2_MUTATING;

const ROUTERS: usize = 4;
const TABLES: usize = 10;
const MODES: [&str; 2] = ["per-cidr", "prefix-list"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<usize> = (args.iter().position(|a| a == "--cidrs"))
        .and_then(|i| args.get(i + 1))
        .map_or(vec![100, 1000], |v| {
            v.split(',').filter_map(|n| n.parse().ok()).collect()
        });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "failover at scale against moto: {ROUTERS} routers, {TABLES} tables; the busiest router dies"
    );
    println!(
        "| CIDRs | mode | start-up calls | start-up | moved (per table) | failover calls | kill -> all moved (moto) | + EC2's budget |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for cidrs in sizes {
        for mode in MODES {
            let f = runtime.block_on(run(mode, cidrs));
            println!(
                "| {cidrs} | {mode} | {} | {:.1} s | {} | {} | {:.2} s | {:.0} s |",
                f.start_calls,
                f.start.as_secs_f64(),
                f.moved,
                f.failover_calls,
                f.failover.as_secs_f64(),
                paced(f.failover_calls)
            );
        }
    }
}

/// Seconds EC2's default mutating budget adds to `calls` made at once.
fn paced(calls: u64) -> f64 {
    (calls as f64 - f64::from(EC2_MUTATING.burst)).max(0.0) / EC2_MUTATING.rate
}

struct Figures {
    start_calls: u64,
    start: Duration,
    moved: usize,
    failover_calls: u64,
    failover: Duration,
}

fn cidr(i: usize) -> String {
    format!("10.{}.{}.0/24", 100 + i / 256, i % 256)
}

fn mutating(calls: &BTreeMap<String, u64>) -> u64 {
    (calls.iter())
        .filter(|(action, _)| !action.starts_with("Describe") && !action.starts_with("Get"))
        .map(|(_, n)| n)
        .sum()
}

async fn run(mode: &str, cidrs: usize) -> Figures {
    let moto = moto::Moto::start();
    let ec2 = moto.client().await;
    let routers = &moto::ROUTERS[..ROUTERS];
    let vpc = moto::build_vpc(&ec2, 3, routers).await;
    let mut tables = Vec::new();
    for _ in 0..TABLES {
        let made = ec2
            .create_route_table()
            .vpc_id(&vpc.id)
            .send()
            .await
            .unwrap();
        tables.push(
            made.route_table()
                .unwrap()
                .route_table_id()
                .unwrap()
                .to_string(),
        );
    }
    let tag = Tag::builder().key("vpcrouter").value("scale").build();
    ec2.create_tags()
        .set_resources(Some(tables.clone()))
        .tags(tag)
        .send()
        .await
        .unwrap();
    let proxy = fault_proxy::FaultProxy::start(&moto.url).await;
    let (mut listeners, port) = moto::listening(routers);
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    let entries: serde_json::Map<_, _> = (0..cidrs)
        .map(|i| (cidr(i), serde_json::json!(routers)))
        .collect();
    std::fs::write(&spec, serde_json::Value::Object(entries).to_string()).unwrap();
    let started = Instant::now();
    let args = moto::daemon_args(&spec, port, &vpc, &proxy.url);
    let mut child = Command::new(env!("CARGO_BIN_EXE_vpcrouter"))
        .args(&args)
        .args(["-a", "127.0.0.1", "-p", &free_port().to_string()])
        .args(["--route-table-tag", "vpcrouter=scale", "--route-mode", mode])
        .args(["--ec2-mutating-budget", "100000/100000"])
        .args(["--ec2-describe-budget", "100000/100000"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let all = cidrs * TABLES;
    let before = loop {
        let now = moto::routing(&ec2, &tables).await;
        if now.len() == all {
            break now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "start-up took too long"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let start = started.elapsed();
    let start_calls = mutating(&proxy.calls());

    let mut load: BTreeMap<&String, usize> = BTreeMap::new();
    for eni in before.values() {
        *load.entry(eni).or_default() += 1;
    }
    let (busiest, carried) = load.into_iter().max_by_key(|(_, n)| *n).unwrap();
    let busiest = busiest.clone();
    let victim = (vpc.routers.iter())
        .find(|(_, (_, eni))| *eni == busiest)
        .unwrap()
        .0;
    listeners[routers.iter().position(|r| r == victim).unwrap()] = None;
    let killed = Instant::now();
    loop {
        let now = moto::routing(&ec2, &tables).await;
        if now.len() == all && now.values().all(|eni| *eni != busiest) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(600),
            "the failover took too long"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failover = killed.elapsed();
    let failover_calls = mutating(&proxy.calls()) - start_calls;
    let _ = child.kill();
    let _ = child.wait();
    drop(listeners);
    Figures {
        start_calls,
        start,
        moved: carried / TABLES,
        failover_calls,
        failover,
    }
}
