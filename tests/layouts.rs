//! Deployment layouts on the embedded VPC, end to end with the daemon:
//! the NAT-instance / egress-appliance layout (routers in public subnets,
//! the private subnets' tables pointing at them), chosen by tag, id and
//! the main table, beside tables that are not ours.

mod common;

use common::Daemon;
use common::moto::{self, Moto};
use common::nat::{self, ROUTER_A, ROUTER_B, default_routes, routers_listening};
use common::strs;
use serde_json::{Value, json};
use std::net::TcpListener;

fn nat_layout() -> std::path::PathBuf {
    common::nat::layout()
}

/// The issue's scenario: `-m fixedconf --fixed_cidr 0.0.0.0/0 --fixed_hosts
/// A:B -H tcp --route-table-tag vpcrouter=egress --main-route-table
/// --az-affinity`. Each private table points at its own AZ's router, the
/// main table at one of them, the public tables keep their IGW route; no
/// write reaches a table not chosen; the hand-made and propagated routes
/// survive; a router's death moves its tables, and its return brings its
/// own AZ's table back.
#[test]
fn nat_instances_route_the_private_tables_to_their_own_az() {
    let dir = tempfile::tempdir().unwrap();
    let router_a = TcpListener::bind((ROUTER_A, 0)).unwrap();
    let port = router_a.local_addr().unwrap().port();
    let _router_b = TcpListener::bind((ROUTER_B, port)).unwrap();
    let vpc = nat_layout();
    let hosts = format!("{ROUTER_A}:{ROUTER_B}");
    let port = port.to_string();
    let mut args = nat::daemon_args(&hosts, &port);
    args.extend(["--sim-vpc".into(), vpc.display().to_string()]);
    let daemon = Daemon::start(&strs(&args), dir.path());
    // Each private table on the router given for AZ a (B for AZ b), the
    // main table on one of them.
    let routed = |a: &'static str| {
        let now = default_routes(&daemon);
        (now["rtb-priv-a"] == a && now["rtb-priv-b"] == "eni-b" && now["rtb-main"].is_string())
            .then_some(now)
    };
    let now = common::wait_until("private tables routed", || routed("eni-a"));
    assert_eq!(now["rtb-pub-a"], "igw-1", "{now}");
    assert_eq!(now["rtb-pub-b"], "igw-1", "{now}");
    assert_eq!(now["rtb-vpn"], Value::Null, "{now}");

    // Why each table is managed, or not.
    let tables = daemon.view("/vpc")["route_tables"].clone();
    assert_eq!(
        tables["rtb-priv-a"]["managed"],
        "selected by tag:vpcrouter=egress"
    );
    assert_eq!(tables["rtb-main"]["managed"], "the main table");
    assert_eq!(tables["rtb-pub-a"]["managed"], Value::Null);
    let vpn = &tables["rtb-vpn"]["routes"];
    assert_eq!(vpn["10.200.0.0/16"]["eni"], "eni-vpn", "{vpn}");
    assert_eq!(vpn["10.201.0.0/16"]["eni"], "eni-vpn", "{vpn}");
    assert_eq!(
        vpn["10.201.0.0/16"]["origin"], "EnableVgwRoutePropagation",
        "{vpn}"
    );
    // The routes made are claimed, in the chosen tables only.
    assert_eq!(
        tables["rtb-priv-a"]["owners"]["default"],
        json!(["0.0.0.0/0"])
    );
    assert_eq!(
        tables["rtb-main"]["owners"]["default"],
        json!(["0.0.0.0/0"])
    );
    assert_eq!(tables["rtb-vpn"]["owners"], Value::Null);

    // Router A dies: its private table follows B, then comes back.
    drop(router_a);
    common::wait_until("rtb-priv-a on router B", || routed("eni-b"));
    let _router_a = TcpListener::bind((ROUTER_A, port.parse().unwrap())).unwrap();
    common::wait_until("rtb-priv-a back on router A", || routed("eni-a"));

    // No write ever reached a table not chosen.
    let writes: Vec<String> = ["route created", "route replaced", "route deleted"]
        .iter()
        .flat_map(|w| daemon.lines_with(w))
        .collect();
    assert!(!writes.is_empty());
    for line in &writes {
        assert!(
            ["rtb-priv-a", "rtb-priv-b", "rtb-main"]
                .iter()
                .any(|t| line.contains(&format!("table=\"{t}\""))),
            "{line}"
        );
    }
}

/// Draining an AZ's router on the NAT-instance layout: its private table
/// (and the main table, if it had it) goes to the other AZ's router at
/// once, while A still answers its probes; undrained, A's own AZ's table
/// comes back to it, as on a recovery (AZ affinity: cross-AZ traffic
/// costs), and the other tables stay.
#[test]
fn nat_instances_drain_an_az_router_before_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    let (_routers, port) = routers_listening();
    let hosts = format!("{ROUTER_A}:{ROUTER_B}");
    let mut args = nat::daemon_args(&hosts, &port.to_string());
    args.extend(["--sim-vpc".into(), nat_layout().display().to_string()]);
    let daemon = Daemon::start(&strs(&args), dir.path());
    let on = |priv_a: &'static str| {
        let now = default_routes(&daemon);
        (now["rtb-priv-a"] == priv_a && now["rtb-priv-b"] == "eni-b").then_some(now)
    };
    // The main table too: the count of moves below depends on it.
    let before = common::wait_until("private and main tables routed", || {
        on("eni-a").filter(|now| now["rtb-main"].is_string())
    });
    let main_on_a = before["rtb-main"] == "eni-a";

    let body = br#"{"reason": "instance type change"}"#;
    let (status, answer) = common::http(
        daemon.port,
        "POST",
        &format!("/hosts/{ROUTER_A}/drain"),
        body,
    );
    assert_eq!(status, 200, "{answer}");
    let now = common::wait_until("rtb-priv-a on router B", || on("eni-b"));
    assert_eq!(now["rtb-main"], "eni-b", "{now}");
    // The log lines can reach us after the view shows the moves.
    let moves = 1 + main_on_a as usize;
    daemon.wait_for_nth_line("route replaced", moves, std::time::Duration::from_secs(20));
    let moved = daemon.lines_with("route replaced");
    assert_eq!(moved.len(), 1 + main_on_a as usize, "{moved:#?}");
    assert!(
        moved
            .iter()
            .all(|l| l.contains("is drained: instance type change")),
        "{moved:#?}"
    );
    assert_eq!(daemon.view("/ips")["hosts"][ROUTER_A]["state"], "healthy");

    let (status, answer) = common::http(
        daemon.port,
        "DELETE",
        &format!("/hosts/{ROUTER_A}/drain"),
        b"",
    );
    assert_eq!(status, 200, "{answer}");
    let now = common::wait_until("rtb-priv-a back on router A", || on("eni-a"));
    assert_eq!(now["rtb-main"], "eni-b", "the main table stays: {now}");
}

/// NAT instances, manual failover: without AZ affinity every selected
/// table points at one router; `POST /routes/0.0.0.0/0/failover` moves them
/// all to the other in one pass, one write per table. With AZ affinity the
/// next pass would hand a healthy router's own AZ table back, so the
/// request is refused with the advice to drain (and names the router to
/// move off when tables differ).
#[test]
fn nat_instances_fail_the_default_route_over_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let (_routers, port) = routers_listening();
    let hosts = format!("{ROUTER_A}:{ROUTER_B}");
    let mut args = nat::daemon_args(&hosts, &port.to_string());
    args.retain(|a| a != "--az-affinity");
    args.extend(["--sim-vpc".into(), nat_layout().display().to_string()]);
    let daemon = Daemon::start(&strs(&args), dir.path());
    let all_on = |eni: &str| {
        let now = default_routes(&daemon);
        let tables = ["rtb-priv-a", "rtb-priv-b", "rtb-main"];
        tables.iter().all(|t| now[*t] == eni).then_some(now)
    };
    let first = common::wait_until("every table routed", || {
        all_on("eni-a")
            .map(|_| ("eni-a", ROUTER_A, "eni-b"))
            .or_else(|| all_on("eni-b").map(|_| ("eni-b", ROUTER_B, "eni-a")))
    });
    let (_, from, other) = first;
    let (status, answer) = common::http(daemon.port, "POST", "/routes/0.0.0.0/0/failover", b"");
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains(&format!("\"from\":\"{from}\"")), "{answer}");
    common::wait_until("every table on the other router", || all_on(other));
    let moved = daemon.lines_with("was asked off it");
    assert_eq!(moved.len(), 3, "one write per table: {moved:#?}");
    drop(daemon);

    // With AZ affinity: refused, nothing written.
    let dir = tempfile::tempdir().unwrap();
    let mut args = nat::daemon_args(&hosts, &port.to_string());
    args.extend(["--sim-vpc".into(), nat_layout().display().to_string()]);
    let daemon = Daemon::start(&strs(&args), dir.path());
    common::wait_until("private tables routed", || {
        let now = default_routes(&daemon);
        (now["rtb-priv-a"] == "eni-a" && now["rtb-priv-b"] == "eni-b").then_some(())
    });
    let (status, answer) = common::http(daemon.port, "POST", "/routes/0.0.0.0%2F0/failover", b"");
    assert_eq!(status, 409, "{answer}");
    assert!(answer.contains("say which to move it off"), "{answer}");
    let body = format!("{{\"from\": \"{ROUTER_A}\"}}");
    let (status, answer) = common::http(
        daemon.port,
        "POST",
        "/routes/0.0.0.0/0/failover",
        body.as_bytes(),
    );
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer.contains(&format!("drain {ROUTER_A} instead")),
        "{answer}"
    );
    assert!(daemon.lines_with("was asked off it").is_empty());
}

/// The old rule holds without a selection: the same layout, no table flag,
/// manages only the routers' (public) tables, where the IGW route is not
/// ours: nothing is written, and the daemon says why.
#[test]
fn without_a_selection_only_the_routers_tables_are_managed() {
    let dir = tempfile::tempdir().unwrap();
    let vpc = nat_layout();
    let hosts = format!("{ROUTER_A}:{ROUTER_B}");
    let daemon = Daemon::start(
        &[
            "-m",
            "fixedconf",
            "--fixed_cidr",
            "0.0.0.0/0",
            "--fixed_hosts",
            &hosts,
            "--sim-vpc",
            vpc.to_str().unwrap(),
        ],
        dir.path(),
    );
    daemon.wait_for_line("not ours to change", std::time::Duration::from_secs(20));
    // The views learn what the plan managed once its pass is written.
    let tables = common::wait_until("the managed tables shown", || {
        let tables = daemon.view("/vpc")["route_tables"].clone();
        tables["rtb-pub-a"]["managed"].is_string().then_some(tables)
    });
    assert_eq!(tables["rtb-pub-a"]["managed"], "a router's subnet");
    assert_eq!(tables["rtb-priv-a"]["managed"], Value::Null);
    assert!(daemon.lines_with("route created").is_empty());
}

/// The NAT-instance layout on moto's EC2: routers in the public subnets of
/// two AZs (their tables route 0.0.0.0/0 to the internet gateway), private
/// subnets whose tables are tagged `vpcrouter=egress`, a third private
/// subnet served by the main table, and an untagged table with a hand-made
/// route to a VPN instance. Only the tagged and main tables are written;
/// the others end as they began.
#[test]
fn nat_instances_on_ec2() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let moto = Moto::start();
    let ec2 = runtime.block_on(moto.client());
    let (routers, public) = (["127.0.1.10", "127.0.2.10"], 2);
    let vpc = runtime.block_on(moto::build_vpc(&ec2, public, &routers));
    let layout = runtime.block_on(moto::private_tables(&ec2, &vpc));
    let before = runtime.block_on(moto::routes(&ec2, &vpc.id));

    let first = TcpListener::bind((routers[0], 0)).unwrap();
    let port = first.local_addr().unwrap().port();
    let mut listeners = [
        Some(first),
        Some(TcpListener::bind((routers[1], port)).unwrap()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let hosts = routers.join(":");
    let port = port.to_string();
    let mut args = nat::daemon_args(&hosts, &port);
    args.extend(moto::ec2_args(&vpc.id, &moto.url));
    let (sqs, queue) = runtime.block_on(moto::sqs_queue(&moto.url, "vpcrouter-events"));
    args.extend(["--events-queue".into(), queue.clone()]);
    args.extend(["--events-endpoint".into(), moto.url.clone()]);
    let daemon = Daemon::start(&strs(&args), dir.path());
    let eni = |router: usize| vpc.routers[routers[router]].1.clone();
    let default_route = |table: &str| -> Option<String> {
        runtime.block_on(moto::target(&ec2, &vpc.id, table, "0.0.0.0/0"))
    };
    let private_on = |a: usize| {
        default_route(&layout.private[0]) == Some(eni(a))
            && default_route(&layout.private[1]) == Some(eni(1))
            && default_route(&layout.main).is_some_and(|t| t == eni(0) || t == eni(1))
    };
    common::wait_until("private tables routed, each to its AZ's router", || {
        private_on(0).then_some(())
    });

    // Router A dies: its AZ's private table moves to B; back when it returns.
    listeners[0] = None;
    common::wait_until("the AZ-a table on router B", || private_on(1).then_some(()));
    listeners[0] = Some(TcpListener::bind((routers[0], port.parse().unwrap())).unwrap());
    common::wait_until("the AZ-a table back on router A", || {
        private_on(0).then_some(())
    });

    // Tables not chosen end as they began (public, VPN, unassociated).
    let after = runtime.block_on(moto::routes(&ec2, &vpc.id));
    for table in vpc
        .tables
        .iter()
        .chain([&layout.vpn, &vpc.unassociated_table])
    {
        assert_eq!(after[table], before[table], "{table}");
    }
    let vpn = &after[&layout.vpn];
    assert!(
        vpn.iter()
            .any(|(d, t)| d == "10.200.0.0/16" && *t == layout.vpn_eni),
        "{vpn:?}"
    );
    for line in ["route created", "route replaced", "route deleted"]
        .iter()
        .flat_map(|w| daemon.lines_with(w))
    {
        let chosen = layout.private.iter().chain([&layout.main]);
        assert!(
            chosen.into_iter().any(|t| line.contains(t.as_str())),
            "{line}"
        );
    }

    // A Spot interruption warning for router A (events queue): its AZ's
    // private table moves to B while A still answers its probes.
    let instance = &vpc.routers[routers[0]].0;
    let warning = json!({
        "version": "0", "id": "1", "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2", "account": "123456789012", "region": moto::REGION,
        "time": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "resources": [], "detail": {"instance-id": instance, "instance-action": "stop"},
    });
    let sent = sqs
        .send_message()
        .queue_url(&queue)
        .message_body(warning.to_string())
        .send();
    runtime.block_on(sent).unwrap();
    common::wait_until("the AZ-a table on router B before A goes", || {
        (default_route(&layout.private[0]) == Some(eni(1))).then_some(())
    });
    assert_eq!(default_route(&layout.main), Some(eni(1)));
    assert_eq!(daemon.view("/ips")["hosts"][routers[0]]["state"], "healthy");
}

/// Two daemons share one chosen table (moto), each with its own
/// `--owner-id` and CIDR: each claims its route in the table's tags and
/// neither deletes or replaces the other's. Restarted with another spec,
/// one deletes the route it owned before (ownership is kept in the tags,
/// not in memory) and nothing else; the hand-made route survives it all.
#[test]
fn owners_share_a_table_and_ownership_survives_a_restart() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let moto = Moto::start();
    let ec2 = runtime.block_on(moto.client());
    let router = "127.0.1.10";
    let vpc = runtime.block_on(moto::build_vpc(&ec2, 1, &[router]));
    let shared = runtime.block_on(moto::route_table(&ec2, &vpc.id));
    let eni = vpc.routers[router].1.clone();
    runtime.block_on(async {
        ec2.create_route()
            .route_table_id(&shared)
            .destination_cidr_block("10.200.0.0/16")
            .network_interface_id(&eni)
            .send()
            .await
            .unwrap()
    });
    let listener = TcpListener::bind((router, 0)).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let daemon = |owner: &str, cidr: &str| {
        let mut args: Vec<String> = [
            "-m",
            "fixedconf",
            "--fixed_cidr",
            cidr,
            "--fixed_hosts",
            router,
            "-H",
            "tcp",
            "--tcp_check_port",
            &port,
            "--tcp_check_interval",
            "0.2",
            "--route-table",
            &shared,
            "--owner-id",
            owner,
        ]
        .map(String::from)
        .to_vec();
        args.extend(moto::ec2_args(&vpc.id, &moto.url));
        Daemon::start(&strs(&args), dir.path())
    };
    let routes = || -> Vec<String> {
        let all = runtime.block_on(moto::routes(&ec2, &vpc.id));
        let mut routes: Vec<String> = all[&shared]
            .iter()
            .filter(|(_, target)| *target == eni)
            .map(|(d, _)| d.clone())
            .collect();
        routes.sort();
        routes
    };
    let tags = || -> std::collections::BTreeMap<String, String> {
        let tables = runtime.block_on(async {
            ec2.describe_route_tables()
                .route_table_ids(&shared)
                .send()
                .await
                .unwrap()
        });
        tables.route_tables()[0]
            .tags()
            .iter()
            .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
            .collect()
    };

    let blue = daemon("blue", "10.55.0.0/16");
    let green = daemon("green", "10.56.0.0/16");
    common::wait_until("both routes made", || {
        (routes() == ["10.200.0.0/16", "10.55.0.0/16", "10.56.0.0/16"]).then_some(())
    });
    common::wait_until("both claimed", || {
        let tags = tags();
        (tags.get("vpcrouter:routes:blue").map(String::as_str) == Some("10.55.0.0/16")
            && tags.get("vpcrouter:routes:green").map(String::as_str) == Some("10.56.0.0/16"))
        .then_some(())
    });
    // Each has seen the other's route and left it (a full check each).
    for d in [&blue, &green] {
        d.wait_for_line("routes claimed", std::time::Duration::from_secs(20));
        assert!(d.lines_with("route deleted").is_empty());
        assert!(d.lines_with("route replaced").is_empty());
    }

    drop(blue);
    let _blue = daemon("blue", "10.57.0.0/16");
    common::wait_until("blue's old route gone, its new one made", || {
        (routes() == ["10.200.0.0/16", "10.56.0.0/16", "10.57.0.0/16"]).then_some(())
    });
    common::wait_until("blue's claim follows", || {
        (tags().get("vpcrouter:routes:blue").map(String::as_str) == Some("10.57.0.0/16"))
            .then_some(())
    });
    assert!(green.lines_with("route deleted").is_empty());
    drop(listener);
}

/// A spec file may name a CIDR's route tables (configfile hands them over
/// with WIT 0.1.3's `daemon.set-route-tables`): `0.0.0.0/0` goes in the
/// tagged private tables only, `10.55.0.0/16` in the tables managed for
/// every CIDR (here the routers' subnets', the old rule). A wrong table
/// name rejects the spec, naming it, and the spec in force stays.
#[test]
fn a_spec_file_names_the_route_tables_of_a_cidr() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    let write = |tables: Value| {
        let spec_json = json!({
            "0.0.0.0/0": {"hosts": [ROUTER_A, ROUTER_B], "tables": tables},
            "10.55.0.0/16": [ROUTER_A, ROUTER_B],
        });
        std::fs::write(&spec, spec_json.to_string()).unwrap();
    };
    write(json!(["tag:vpcrouter=egress"]));
    let vpc = nat_layout();
    let daemon = Daemon::start(
        &[
            "-m",
            "configfile",
            "-f",
            spec.to_str().unwrap(),
            "--sim-vpc",
            vpc.to_str().unwrap(),
        ],
        dir.path(),
    );
    let route = |tables: &Value, table: &str, cidr: &str| -> Option<String> {
        let route = &tables[table]["routes"][cidr];
        route["eni"]
            .as_str()
            .or(route["target"].as_str())
            .map(String::from)
    };
    let tables = common::wait_until("both CIDRs routed", || {
        let tables = daemon.view("/vpc")["route_tables"].clone();
        let routed = ["rtb-priv-a", "rtb-priv-b"]
            .iter()
            .all(|t| route(&tables, t, "0.0.0.0/0").is_some_and(|e| e.starts_with("eni-")))
            && ["rtb-pub-a", "rtb-pub-b"]
                .iter()
                .all(|t| route(&tables, t, "10.55.0.0/16").is_some());
        routed.then_some(tables)
    });
    assert_eq!(
        route(&tables, "rtb-pub-a", "0.0.0.0/0").as_deref(),
        Some("igw-1")
    );
    assert_eq!(route(&tables, "rtb-priv-a", "10.55.0.0/16"), None);
    assert_eq!(route(&tables, "rtb-main", "0.0.0.0/0"), None);
    assert_eq!(
        tables["rtb-priv-a"]["managed"],
        "selected by tag:vpcrouter=egress"
    );

    write(json!(["igw-1"]));
    let rejected = daemon.wait_for_line("rejected route spec", std::time::Duration::from_secs(20));
    assert!(rejected.contains("not a route table id"), "{rejected}");
    let spec_view = daemon.view("/route_info");
    assert!(
        spec_view.to_string().contains("tag:vpcrouter=egress"),
        "{spec_view}"
    );
}
