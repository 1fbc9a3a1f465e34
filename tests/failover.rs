//! End to end: the real daemon with the configfile and tcp plugins on the
//! embedded VPC, router hosts being real listeners on 127.0.x.y. Killing a
//! router moves its routes in every table to a healthy router.

mod common;

use serde_json::json;
use std::net::TcpListener;
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
    let dir = tempfile::tempdir().unwrap();
    let routers = [
        ("127.0.3.10", "eni-a", "subnet-a"),
        ("127.0.3.11", "eni-b", "subnet-b"),
    ];
    let first = TcpListener::bind((routers[0].0, 0)).unwrap();
    let port = first.local_addr().unwrap().port();
    let mut listeners = vec![
        Some(first),
        Some(TcpListener::bind((routers[1].0, port)).unwrap()),
    ];
    let topology = json!({
        "subnets": [{"id": "subnet-a", "az": "az-a"}, {"id": "subnet-b", "az": "az-b"}],
        "interfaces": routers.iter().map(|(ip, eni, subnet)| json!({
            "id": eni, "instance": format!("i-{eni}"), "subnet": subnet, "ips": [ip], "running": true
        })).collect::<Vec<_>>(),
        "route_tables": [
            {"id": "rtb-a", "subnets": ["subnet-a"], "routes": []},
            {"id": "rtb-b", "subnets": ["subnet-b"], "routes": []}
        ]
    });
    let hosts = [routers[0].0, routers[1].0];
    let spec = json!({"10.55.0.0/16": hosts, "10.56.0.0/16": hosts, "10.57.0.0/16": hosts});
    let (vpc_file, spec_file) = (dir.path().join("vpc.json"), dir.path().join("spec.json"));
    std::fs::write(&vpc_file, topology.to_string()).unwrap();
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let port = port.to_string();
    let daemon = common::Daemon::start(
        &[
            "-m",
            "configfile",
            "-f",
            spec_file.to_str().unwrap(),
            "--sim-vpc",
            vpc_file.to_str().unwrap(),
            "-H",
            "tcp",
            "--tcp_check_port",
            &port,
            "--tcp_check_interval",
            "0.2",
        ],
        dir.path(),
    );
    let created = daemon.wait_for_nth_line("route created", 6, WITHIN);
    let victim = field(&created, "host");
    let carried: Vec<String> = daemon
        .lines_with("route created")
        .into_iter()
        .filter(|l| field(l, "host") == victim)
        .map(|l| format!("{} {}", field(&l, "table"), field(&l, "cidr")))
        .collect();
    listeners[routers.iter().position(|r| r.0 == victim).unwrap()] = None;
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
    drop(listeners);
}
