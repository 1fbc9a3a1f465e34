//! The Romana IPAM topology as a route spec (used by the romana plugin;
//! a crate of its own so it is tested natively and the tests can generate
//! topologies with [`fixture`]). `networks` maps network names
//! to networks; a network's `host_groups` is a tree of groups (one group
//! object, or a list of them); a group has an optional `cidr`, optional
//! `hosts` (objects with an `ip`) and optional child `groups`. Every group
//! with a cidr and hosts yields `cidr -> [host ips]`; a CIDR named by
//! several groups gets the hosts of all of them.

pub mod fixture;

use serde_json::Value;
use std::collections::BTreeMap;

/// Deeper group nesting than this is refused (a cycle-like blob or an
/// attack, not a network).
pub const MAX_DEPTH: usize = 32;

/// CIDR -> hosts, in order; or what is wrong, with where.
pub fn routes(topology: &[u8]) -> Result<BTreeMap<String, Vec<String>>, String> {
    let doc: Value =
        serde_json::from_slice(topology).map_err(|e| format!("topology is not JSON: {e}"))?;
    let networks = doc
        .get("networks")
        .ok_or("topology has no \"networks\"")?
        .as_object()
        .ok_or("\"networks\" must be an object of network name -> network")?;
    let mut routes = BTreeMap::new();
    for (name, network) in networks {
        let at = format!("networks.{name}");
        let groups = network
            .get("host_groups")
            .ok_or_else(|| format!("{at} has no \"host_groups\""))?;
        walk(groups, &format!("{at}.host_groups"), 1, &mut routes)?;
    }
    Ok(routes)
}

/// A group, or a list of groups, at `at`.
fn walk(
    node: &Value,
    at: &str,
    depth: usize,
    routes: &mut BTreeMap<String, Vec<String>>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("{at}: groups nested deeper than {MAX_DEPTH}"));
    }
    match node {
        Value::Array(groups) => groups
            .iter()
            .enumerate()
            .try_for_each(|(i, g)| walk(g, &format!("{at}[{i}]"), depth, routes)),
        Value::Object(group) => {
            let hosts = match group.get("hosts") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(hosts)) => hosts
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        h.get("ip")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .ok_or_else(|| format!("{at}.hosts[{i}] has no \"ip\" string"))
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(format!("{at}.hosts must be a list")),
            };
            match group.get("cidr") {
                Some(Value::String(cidr)) if !hosts.is_empty() => {
                    let entry: &mut Vec<String> = routes.entry(cidr.clone()).or_default();
                    for host in hosts {
                        if !entry.contains(&host) {
                            entry.push(host);
                        }
                    }
                }
                Some(Value::String(_)) | None if hosts.is_empty() => {}
                None | Some(Value::Null) => {
                    return Err(format!("{at} has hosts but no \"cidr\""));
                }
                Some(_) => return Err(format!("{at}.cidr must be a string")),
            }
            match group.get("groups") {
                None | Some(Value::Null) => Ok(()),
                Some(children) => walk(children, &format!("{at}.groups"), depth + 1, routes),
            }
        }
        _ => Err(format!("{at} must be a group object or a list of groups")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<BTreeMap<String, Vec<String>>, String> {
        routes(value.to_string().as_bytes())
    }

    #[test]
    fn groups_with_a_cidr_and_hosts_become_routes_at_any_depth() {
        let topology = json!({"networks": {
            "net1": {"host_groups": [
                {"name": "rack1", "cidr": "10.1.0.0/16",
                 "hosts": [{"name": "a", "ip": "192.168.0.10"}, {"ip": "192.168.0.11"}],
                 "groups": [{"cidr": "10.1.5.0/24", "hosts": [{"ip": "192.168.0.12"}]}]},
                {"name": "empty", "cidr": "10.2.0.0/16", "hosts": []},
                {"name": "container", "groups": {"cidr": "10.3.0.0/16", "hosts": [{"ip": "192.168.0.13"}]}}
            ]},
            "net2": {"host_groups": {"cidr": "10.1.0.0/16", "hosts": [{"ip": "192.168.0.20"}]}}
        }});
        let routes = parse(topology).unwrap();
        assert_eq!(
            routes,
            BTreeMap::from([
                (
                    "10.1.0.0/16".into(),
                    vec![
                        "192.168.0.10".into(),
                        "192.168.0.11".into(),
                        "192.168.0.20".into()
                    ]
                ),
                ("10.1.5.0/24".into(), vec!["192.168.0.12".into()]),
                ("10.3.0.0/16".into(), vec!["192.168.0.13".into()]),
            ])
        );
    }

    #[test]
    fn malformed_topologies_are_refused_naming_the_problem() {
        let nested = (0..40).fold(
            json!({"cidr": "10.0.0.0/8", "hosts": [{"ip": "1.2.3.4"}]}),
            |inner, _| json!({"groups": [inner]}),
        );
        let cases = [
            (json!([]), "no \"networks\""),
            (json!({"networks": []}), "must be an object"),
            (
                json!({"networks": {"n": {}}}),
                "networks.n has no \"host_groups\"",
            ),
            (
                json!({"networks": {"n": {"host_groups": 5}}}),
                "must be a group object",
            ),
            (
                json!({"networks": {"n": {"host_groups": [{"hosts": [{"ip": "1.2.3.4"}]}]}}}),
                "networks.n.host_groups[0] has hosts but no \"cidr\"",
            ),
            (
                json!({"networks": {"n": {"host_groups": [{"cidr": "10.0.0.0/8", "hosts": [{"name": "x"}]}]}}}),
                "networks.n.host_groups[0].hosts[0] has no \"ip\"",
            ),
            (
                json!({"networks": {"n": {"host_groups": [{"cidr": 7, "hosts": [{"ip": "1.2.3.4"}]}]}}}),
                "cidr must be a string",
            ),
            (
                json!({"networks": {"n": {"host_groups": {"cidr": "10.0.0.0/8", "hosts": "x"}}}}),
                "hosts must be a list",
            ),
            (
                json!({"networks": {"n": {"host_groups": nested}}}),
                "nested deeper than 32",
            ),
        ];
        for (topology, expected) in cases {
            let err = parse(topology.clone()).unwrap_err();
            assert!(
                err.contains(expected),
                "{topology}: {err:?} lacks {expected:?}"
            );
        }
        assert!(routes(b"{not json").unwrap_err().contains("not JSON"));
    }
}
