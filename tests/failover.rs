//! End to end: the real daemon with the configfile and tcp plugins on the
//! embedded VPC, router hosts being real listeners on 127.0.x.y. Killing a
//! router moves its routes in every table to a healthy router. The same
//! scenario runs against moto's EC2 in `ec2_daemon.rs`.

mod common;

use common::Daemon;
use common::failover::{Routers, a_dead_router_loses_exactly_its_routes};
use common::sim_cluster::{CIDRS, SimCluster};

impl Routers for SimCluster {
    fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    fn kill(&mut self, router: &str) {
        SimCluster::kill(self, router);
    }
}

#[test]
fn a_dead_router_loses_its_routes_in_every_table() {
    let mut cluster = SimCluster::start(3, &[]);
    let tables = 2;
    a_dead_router_loses_exactly_its_routes(&mut cluster, CIDRS.len() * tables);
}
