//! The NAT-instance / egress-appliance layout on the embedded VPC
//! (examples/nat-instance): routers in the public subnets of two AZs, the
//! private subnets' tables tagged `vpcrouter=egress`, a third private
//! subnet on the main table, and an untagged table with a hand-made route
//! to a VPN instance and a propagated one.

use serde_json::{Value, json};
use std::net::TcpListener;

use super::Daemon;

/// Routers in the public subnets of two AZs, as on loopback.
pub const ROUTER_A: &str = "127.0.6.10";
pub const ROUTER_B: &str = "127.0.6.20";

/// The layout's embedded VPC.
pub fn layout() -> std::path::PathBuf {
    super::repo().join("examples/nat-instance/sim-vpc.json")
}

/// The daemon's flags for the layout: `0.0.0.0/0` over `hosts` (A:B), tcp
/// checks on `port` every 0.2 s, the tagged tables and the main one, AZ
/// affinity.
pub fn daemon_args(hosts: &str, port: &str) -> Vec<String> {
    [
        "-m",
        "fixedconf",
        "--fixed_cidr",
        "0.0.0.0/0",
        "--fixed_hosts",
        hosts,
        "-H",
        "tcp",
        "--tcp_check_port",
        port,
        "--tcp_check_interval",
        "0.2",
        "--route-table-tag",
        "vpcrouter=egress",
        "--main-route-table",
        "--az-affinity",
    ]
    .map(String::from)
    .to_vec()
}

/// Routers A and B listening on one port: the listeners and the port.
pub fn routers_listening() -> ([TcpListener; 2], u16) {
    let router_a = TcpListener::bind((ROUTER_A, 0)).unwrap();
    let port = router_a.local_addr().unwrap().port();
    let router_b = TcpListener::bind((ROUTER_B, port)).unwrap();
    ([router_a, router_b], port)
}

/// Where each table's default route points: an ENI, a gateway, or nothing.
pub fn default_routes(daemon: &Daemon) -> Value {
    routes_to(daemon, "0.0.0.0/0")
}

/// Where each table's route for `cidr` points: an ENI, a gateway, or
/// nothing.
pub fn routes_to(daemon: &Daemon, cidr: &str) -> Value {
    let tables = daemon.view("/vpc")["route_tables"].clone();
    let tables = tables.as_object().expect("tables");
    tables
        .iter()
        .map(|(id, table)| {
            let route = &table["routes"][cidr];
            let to = route["eni"].as_str().or(route["target"].as_str());
            (id.clone(), json!(to))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}
