//! Romana topologies for tests and benchmarks: networks of nested groups
//! with many hosts, and the route spec each should become.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The shape of a generated topology.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub networks: usize,
    /// Leaf groups (with a CIDR and hosts) per network.
    pub groups: usize,
    pub hosts_per_group: usize,
    /// Leaf groups sit this deep under container groups (1: directly in
    /// `host_groups`).
    pub depth: usize,
}

/// A topology of `shape` and the routes it must yield. Leaf group `g` of
/// network `n` routes `10.{n}.{g / 256}.{g % 256 ...}` (a /32 per group
/// keeps CIDRs distinct at any size) through hosts `100.64.x.y`.
pub fn topology(shape: Shape) -> (Value, BTreeMap<String, Vec<String>>) {
    let mut networks = serde_json::Map::new();
    let mut routes = BTreeMap::new();
    let mut host = 0usize;
    for n in 0..shape.networks {
        let mut leaves = Vec::with_capacity(shape.groups);
        for g in 0..shape.groups {
            let cidr = format!("10.{n}.{}.{}/32", g / 256, g % 256);
            let hosts: Vec<String> = (0..shape.hosts_per_group)
                .map(|_| {
                    host += 1;
                    format!("100.64.{}.{}", host / 250, 1 + host % 250)
                })
                .collect();
            routes.insert(cidr.clone(), hosts.clone());
            let hosts: Vec<Value> = hosts
                .iter()
                .enumerate()
                .map(|(i, ip)| json!({"name": format!("host-{g}-{i}"), "ip": ip}))
                .collect();
            leaves.push(json!({"name": format!("group-{g}"), "cidr": cidr, "hosts": hosts}));
        }
        let mut groups = Value::Array(leaves);
        for level in 1..shape.depth {
            groups = json!([{"name": format!("level-{level}"), "groups": groups}]);
        }
        networks.insert(
            format!("net{n}"),
            json!({"name": format!("net{n}"), "host_groups": groups}),
        );
    }
    (json!({ "networks": networks }), routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_topologies_translate_to_their_routes() {
        let shape = Shape {
            networks: 3,
            groups: 300,
            hosts_per_group: 4,
            depth: 5,
        };
        let (topology, expected) = topology(shape);
        assert_eq!(expected.len(), 900);
        assert_eq!(
            crate::routes(topology.to_string().as_bytes()).unwrap(),
            expected
        );
    }
}
