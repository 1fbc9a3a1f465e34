//! The romana plugin against a real etcd (Debian's etcd-server): initial
//! load, updates, the key deleted, malformed topologies, etcd stopped and
//! restarted, TLS with client certificates, and the old `--usev2` flag.

mod common;

use common::Daemon;
use common::etcd::{Certs, Etcd, KEY};
use romana_topology::fixture::{Shape, topology};
use serde_json::{Value, json};
use std::time::Duration;

const WITHIN: Duration = Duration::from_secs(15);

fn small(groups: usize) -> (Value, Value) {
    let (topology, routes) = topology(Shape {
        networks: 2,
        groups,
        hosts_per_group: 3,
        depth: 3,
    });
    (topology, json!(routes))
}

fn romana(etcd: &Etcd, extra: &[&str], dir: &std::path::Path) -> Daemon {
    let port = etcd.port.to_string();
    let mut args = vec![
        "-m",
        "romana",
        "--etcd_addr",
        "127.0.0.1",
        "--etcd_port",
        &port,
    ];
    args.extend_from_slice(extra);
    Daemon::start(&args, dir)
}

/// The spec in force, from `/route_info`.
fn spec_in_force(daemon: &Daemon) -> Value {
    daemon.view("/route_info")["route_spec"].clone()
}

fn wait_for_spec(daemon: &Daemon, expected: &Value) {
    common::wait_until(&format!("spec {expected} in force"), || {
        (spec_in_force(daemon) == *expected).then_some(())
    });
}

#[test]
fn specs_follow_the_topology_and_bad_ones_leave_the_last_good_in_force() {
    let etcd = Etcd::start();
    let (first, first_routes) = small(5);
    etcd.put(KEY, &first.to_string());
    let dir = tempfile::tempdir().unwrap();
    let daemon = romana(&etcd, &[], dir.path());
    wait_for_spec(&daemon, &first_routes);

    let (second, second_routes) = small(8);
    etcd.put(KEY, &second.to_string());
    wait_for_spec(&daemon, &second_routes);

    etcd.put(KEY, "{not json");
    daemon.wait_for_line("topology is not JSON", WITHIN);
    let no_cidr = json!({"networks": {"n": {"host_groups": [{"hosts": [{"ip": "10.9.0.1"}]}]}}});
    etcd.put(KEY, &no_cidr.to_string());
    daemon.wait_for_line("has hosts but no \"cidr\"", WITHIN);
    etcd.delete(KEY);
    daemon.wait_for_line("not found in etcd", WITHIN);
    assert_eq!(
        spec_in_force(&daemon),
        second_routes,
        "the last good spec stays"
    );

    etcd.put(KEY, &first.to_string());
    wait_for_spec(&daemon, &first_routes);
}

#[test]
fn an_etcd_outage_keeps_the_spec_and_the_plugin_reconnects() {
    let mut etcd = Etcd::start();
    let (first, first_routes) = small(4);
    etcd.put(KEY, &first.to_string());
    let dir = tempfile::tempdir().unwrap();
    let daemon = romana(&etcd, &[], dir.path());
    wait_for_spec(&daemon, &first_routes);

    etcd.stop();
    daemon.wait_for_line("etcd unreachable", WITHIN);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(spec_in_force(&daemon), first_routes);
    let retries = daemon.lines_with("etcd unreachable").len();
    assert!(
        retries <= 4,
        "backing off, not hammering: {retries} failed polls in ~2 s"
    );

    etcd.resume();
    let (second, second_routes) = small(6);
    etcd.put(KEY, &second.to_string());
    daemon.wait_for_line("etcd answers again", WITHIN);
    wait_for_spec(&daemon, &second_routes);
}

#[test]
fn tls_is_done_by_the_host_with_the_operators_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::generate(dir.path());
    let etcd = Etcd::start_tls(&certs);
    let (topology, routes) = small(3);
    etcd.put(KEY, &topology.to_string());
    let (ca, cert, key) = (
        certs.ca.to_str().unwrap(),
        certs.client_cert.to_str().unwrap(),
        certs.client_key.to_str().unwrap(),
    );
    let daemon = romana(
        &etcd,
        &["--ca_cert", ca, "--cert_chain", cert, "--priv_key", key],
        dir.path(),
    );
    wait_for_spec(&daemon, &routes);
    drop(daemon);

    // Without the client certificate etcd refuses the connection.
    let daemon = romana(&etcd, &["--ca_cert", ca], dir.path());
    daemon.wait_for_line("etcd unreachable", WITHIN);
    assert_eq!(spec_in_force(&daemon), Value::Null);
}

#[test]
fn usev2_is_answered_with_a_clear_message() {
    let (code, stderr) = common::run_to_exit(&["-m", "romana", "--usev2"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--usev2: the etcd v2 API is not supported"),
        "{stderr}"
    );
}
