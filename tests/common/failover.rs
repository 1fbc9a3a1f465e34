//! The failover scenario, the same against every VPC backend and told only
//! by the daemon's own log: a router carrying routes dies, and exactly its
//! routes move, in every table, each with one replacement saying why.

use super::Daemon;
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(15);

/// A running daemon whose routers can be killed.
pub trait Routers {
    fn daemon(&self) -> &Daemon;
    /// Stop `router` (an address) answering its health checks.
    fn kill(&mut self, router: &str);
}

/// Wait for the `routes` first routes to be created, kill the router of the
/// first, and check what moved; the victim.
pub fn a_dead_router_loses_exactly_its_routes(cluster: &mut impl Routers, routes: usize) -> String {
    let daemon = cluster.daemon();
    let created = daemon.wait_for_nth_line("route created", routes, WITHIN);
    let victim = field(&created, "host");
    let mut carried: Vec<String> = daemon
        .lines_with("route created")
        .into_iter()
        .filter(|l| field(l, "host") == victim)
        .map(|l| format!("{} {}", field(&l, "table"), field(&l, "cidr")))
        .collect();
    cluster.kill(&victim);
    let daemon = cluster.daemon();
    daemon.wait_for_nth_line("route replaced", carried.len(), WITHIN);
    let replaced = daemon.lines_with("route replaced");
    let mut moved: Vec<String> = replaced
        .iter()
        .map(|l| format!("{} {}", field(l, "table"), field(l, "cidr")))
        .collect();
    moved.sort();
    carried.sort();
    assert_eq!(
        moved, carried,
        "exactly the dead router's routes moved, one call each, in every table"
    );
    assert!(
        replaced
            .iter()
            .all(|l| field(l, "host") != victim && l.contains(&format!("{victim} failed"))),
        "{replaced:#?}"
    );
    victim
}

/// The value of `name=value` in a log line.
pub fn field(line: &str, name: &str) -> String {
    let start = line.find(&format!(" {name}=")).expect(name) + name.len() + 2;
    line[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string()
}
