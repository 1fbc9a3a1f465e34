//! `cargo bench --bench ha`: controller HA figures against a real etcd and
//! moto, with real daemon replicas (as tests/ha.rs): the takeover time
//! (kill -9 of the leader, together with a router it carries routes on ->
//! the first EC2 write of the new leader, which moves them) over 20 trials
//! at lease TTLs of 2 s and 5 s; and the leadership check a leader makes
//! before every batch of writes (one etcd transaction), in process.

#[path = "../../tests/common/mod.rs"]
mod testkit;

use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::ha_cluster::{Cluster, WITHIN};
use vpcrouter::ha::Election;
use vpcrouter::ha::etcd::EtcdElection;
use vpcrouter::http_client::Endpoint;

const TRIALS: usize = 20;

fn main() {
    for ttl in [2, 5] {
        let mut took = takeovers(ttl);
        took.sort();
        let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
        println!(
            "takeover, lease TTL {ttl} s: kill -9 -> first write of the new leader, {TRIALS} trials: median {:.0} ms, p90 {:.0} ms, max {:.0} ms",
            at(0.5),
            at(0.9),
            at(1.0)
        );
    }
    leadership_check();
}

/// One cluster, two fresh replicas per trial.
fn takeovers(ttl: u64) -> Vec<Duration> {
    let mut cluster = Cluster::start(0, ttl);
    (0..TRIALS)
        .map(|trial| {
            cluster.revive_routers();
            cluster.replicas = vec![
                Some(cluster.replica(&format!("a-{trial}"))),
                Some(cluster.replica(&format!("b-{trial}"))),
            ];
            let leader = cluster.leader();
            let standby = 1 - leader;
            let (victim, _) = cluster.busy_router();
            // Steady state, and the kill at a random point between two
            // renewals (every third of the TTL).
            let phase = fastrand::u64(0..ttl * 1000 / 3);
            std::thread::sleep(Duration::from_millis(ttl * 1000 / 2 + phase));
            let before = cluster.at(standby).mutating_calls();
            cluster.at(leader).signal(libc::SIGKILL);
            cluster.kill_router(&victim);
            let killed = Instant::now();
            while cluster.at(standby).mutating_calls() == before {
                assert!(killed.elapsed() < WITHIN, "no takeover");
                std::thread::sleep(Duration::from_millis(2));
            }
            let took = killed.elapsed();
            cluster.replicas.clear();
            took
        })
        .collect()
}

/// The check before each batch: an etcd transaction on the leader key.
fn leadership_check() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = Cluster::start(0, 5);
    let url = cluster.etcd_urls();
    let (host, port) = url.trim_start_matches("http://").rsplit_once(':').unwrap();
    let endpoint = Endpoint {
        host: host.into(),
        port: port.parse().unwrap(),
        tls: None,
    };
    let election = Arc::new(EtcdElection::new(
        vec![endpoint],
        "/vpcrouter/bench/leader".into(),
        "bench".into(),
        Duration::from_secs(5),
    ));
    let mut took: Vec<Duration> = runtime.block_on(async {
        election.open().await.unwrap();
        let term = election.campaign().await.unwrap();
        let mut took = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            assert!(election.confirm(&term).await.unwrap());
            took.push(started.elapsed());
        }
        took
    });
    took.sort();
    println!(
        "leadership check before a batch (etcd txn on the leader key), 200 checks: median {:.2} ms, p90 {:.2} ms",
        took[100].as_secs_f64() * 1e3,
        took[180].as_secs_f64() * 1e3
    );
}
