//! End to end: the real daemon with the configfile and tcp plugins on the
//! embedded VPC, router hosts being real listeners on 127.0.x.y. Killing a
//! router moves its routes in every table to a healthy router.

mod common;

use common::sim_cluster::SimCluster;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(10);

/// The value of `name=value` in a log line.
fn field(line: &str, name: &str) -> String {
    let start = line.find(&format!(" {name}=")).expect(name) + name.len() + 2;
    line[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

#[test]
fn a_dead_router_loses_its_routes_in_every_table() {
    let mut cluster = SimCluster::start(3, &[]);
    let daemon = &cluster.daemon;
    let created = daemon.wait_for_nth_line("route created", 6, WITHIN);
    let victim = field(&created, "host");
    let carried: Vec<String> = daemon
        .lines_with("route created")
        .into_iter()
        .filter(|l| field(l, "host") == victim)
        .map(|l| format!("{} {}", field(&l, "table"), field(&l, "cidr")))
        .collect();
    cluster.kill(&victim);
    let daemon = &cluster.daemon;
    daemon.wait_for_nth_line("route replaced", carried.len(), WITHIN);
    let replaced = daemon.lines_with("route replaced");
    let mut moved: Vec<String> = replaced
        .iter()
        .map(|l| format!("{} {}", field(l, "table"), field(l, "cidr")))
        .collect();
    moved.sort();
    let mut expected = carried.clone();
    expected.sort();
    assert_eq!(
        moved, expected,
        "exactly the dead router's routes moved, in every table"
    );
    assert!(
        replaced
            .iter()
            .all(|l| field(l, "host") != victim && l.contains(&format!("{victim} failed")))
    );
}
