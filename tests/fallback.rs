//! Backup targets and preferred routers, end to end with the daemon: a
//! CIDR's fallback (a NAT gateway, or withdrawing the route) while no
//! router is eligible and the fail-back hold after; router tiers and the
//! tier fail-back. On the NAT-instance layout and the Romana one (the
//! routers' own tables), embedded and on moto.

mod common;

use common::Daemon;
use common::fault_proxy::{Fault, FaultProxy};
use common::moto::{self, Moto};
use common::nat::{ROUTER_A, ROUTER_B, default_routes, routers_listening, routes_to};
use common::strs;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const NAT_GATEWAY: &str = "nat-0123456789abcdef0";
/// The NAT-instance layout's tables that take the default route.
const CHOSEN: [&str; 3] = ["rtb-priv-a", "rtb-priv-b", "rtb-main"];

fn spec(dir: &Path, spec: Value) -> PathBuf {
    let file = dir.join("spec.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    file
}

/// configfile reading `spec`, tcp checks on `port` every 0.2 s, the NAT
/// layout's tagged tables and main table, then `more`.
fn nat_args(spec: &Path, port: u16, more: &[&str]) -> Vec<String> {
    let layout = common::nat::layout();
    let mut args = common::configfile_tcp_args(spec, port);
    let tables = [
        "--route-table-tag",
        "vpcrouter=egress",
        "--main-route-table",
    ];
    let vpc = ["--sim-vpc", layout.to_str().unwrap()];
    args.extend(tables.iter().chain(&vpc).chain(more).map(|a| a.to_string()));
    args
}

/// The chosen tables' default routes once each satisfies `to`.
fn chosen_on(daemon: &Daemon, to: impl Fn(&Value) -> bool) -> Option<Value> {
    let now = default_routes(daemon);
    CHOSEN.iter().all(|t| to(&now[*t])).then_some(now)
}

/// How many route writes of `kind` ("route replaced", ...) reached `table`.
fn writes(daemon: &Daemon, kind: &str, table: &str) -> usize {
    let table = format!("table=\"{table}\"");
    (daemon.lines_with(kind).iter())
        .filter(|line| line.contains(&table))
        .count()
}

/// The status page, as a browser asks for it.
fn status_page(daemon: &Daemon) -> String {
    common::request(daemon.port, "GET", "/", &[("Accept", "text/html")], b"").body
}

fn state_of(daemon: &Daemon, host: &str) -> Value {
    daemon.view("/ips")["hosts"][host]["state"].clone()
}

/// NAT instances backed by a NAT gateway: with both routers dead every
/// chosen table points at the gateway (shown in the views, /plan and the
/// metrics); a router that comes back flaps once during the hold, which
/// starts it again; the routes return only once it has stayed healthy for
/// the hold, with one write per table each way.
#[test]
fn nat_instances_fall_back_to_a_nat_gateway_and_return_after_the_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (listeners, port) = routers_listening();
    let spec = spec(
        dir.path(),
        json!({"0.0.0.0/0": {"hosts": [ROUTER_A, ROUTER_B], "fallback": NAT_GATEWAY}}),
    );
    let args = nat_args(&spec, port, &["--failback-hold", "3"]);
    let daemon = Daemon::start(&strs(&args), dir.path());
    common::wait_until("the chosen tables on the routers", || {
        chosen_on(&daemon, |to| to == "eni-a" || to == "eni-b")
    });

    drop(listeners);
    let now = common::wait_until("the chosen tables on the NAT gateway", || {
        chosen_on(&daemon, |to| to == NAT_GATEWAY)
    });
    assert_eq!(now["rtb-pub-a"], "igw-1", "{now}");
    let fallbacks = daemon.view("/route_info")["fallbacks"].clone();
    let tables: Vec<&str> = (fallbacks.as_array().unwrap().iter())
        .map(|f| f["table"].as_str().unwrap())
        .collect();
    assert_eq!(
        tables,
        ["rtb-main", "rtb-priv-a", "rtb-priv-b"],
        "{fallbacks}"
    );
    assert_eq!(fallbacks[0]["fallback"], NAT_GATEWAY);
    assert_eq!(daemon.view("/vpc")["fallbacks"], fallbacks);
    assert_eq!(
        daemon.view("/plan")["on_fallback"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let (_, metrics) = daemon.http("GET", "/metrics", b"");
    assert!(
        metrics.contains(r#"vpcrouter_fallback_active{cidr="0.0.0.0/0",table="rtb-priv-a"} 1"#),
        "{metrics}"
    );
    let page = status_page(&daemon);
    assert!(page.contains("on its fallback since"), "{page}");
    daemon.wait_for_line(
        "no eligible router; falling back to the NAT gateway",
        Duration::from_secs(5),
    );

    // A comes back, and fails again during the hold.
    let router_a = TcpListener::bind((ROUTER_A, port)).unwrap();
    daemon.wait_for_line(
        "stays on its fallback until 127.0.6.10 has been healthy for 3 s",
        Duration::from_secs(20),
    );
    drop(router_a);
    common::wait_until("A failed again", || {
        (state_of(&daemon, ROUTER_A) == "failed").then_some(())
    });
    // Back for good: the hold starts again from here.
    let back = Instant::now();
    let _router_a = TcpListener::bind((ROUTER_A, port)).unwrap();
    common::wait_until("the chosen tables back on A", || {
        chosen_on(&daemon, |to| to == "eni-a")
    });
    assert!(
        back.elapsed() >= Duration::from_secs(3),
        "{:?}",
        back.elapsed()
    );
    for table in CHOSEN {
        assert_eq!(writes(&daemon, "route created", table), 1, "{table}");
        assert_eq!(
            writes(&daemon, "route replaced", table),
            2,
            "{table}: to the gateway and back"
        );
    }
    assert_eq!(daemon.view("/route_info")["fallbacks"], json!([]));
    let (_, metrics) = daemon.http("GET", "/metrics", b"");
    assert!(!metrics.contains("vpcrouter_fallback_active{"), "{metrics}");
    let spent = (metrics.lines())
        .find(|l| {
            l.starts_with(
                r#"vpcrouter_fallback_seconds_total{cidr="0.0.0.0/0",table="rtb-priv-a"}"#,
            )
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(spent > 0.0, "{spent}");
}

/// The Romana layout (each router's own table; 10.55.0.0/16 withdrawn when
/// its router is gone): the route is deleted and the table's wider default
/// route takes the traffic; it is created again once the router is back.
#[test]
fn a_withdrawn_route_leaves_the_wider_route_in_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let router = TcpListener::bind((ROUTER_A, 0)).unwrap();
    let port = router.local_addr().unwrap().port();
    let vpc = common::loopback_vpc(dir.path(), &[ROUTER_A]);
    let spec = spec(
        dir.path(),
        json!({"10.55.0.0/16": {"hosts": [ROUTER_A], "fallback": "withdraw"}}),
    );
    let mut args = common::configfile_tcp_args(&spec, port);
    let more = ["--sim-vpc", vpc.to_str().unwrap(), "--failback-hold", "1"];
    args.extend(more.map(String::from));
    let daemon = Daemon::start(&strs(&args), dir.path());
    let routed = |to: Value| {
        let now = routes_to(&daemon, "10.55.0.0/16");
        (now["rtb-a"] == to).then_some(())
    };
    common::wait_until("routed to A", || routed(json!("eni-a")));
    drop(router);
    common::wait_until("withdrawn", || routed(Value::Null));
    assert_eq!(default_routes(&daemon)["rtb-a"], "igw-1");
    let fallbacks = daemon.view("/route_info")["fallbacks"].clone();
    assert_eq!(fallbacks[0]["fallback"], "withdraw", "{fallbacks}");
    let page = status_page(&daemon);
    assert!(
        page.contains(r#"<td class="fallback""#) && page.contains("withdrawn<br>"),
        "{page}"
    );
    let _router = TcpListener::bind((ROUTER_A, port)).unwrap();
    common::wait_until("routed to A again", || routed(json!("eni-a")));
    assert_eq!(writes(&daemon, "route deleted", "rtb-a"), 1);
    assert_eq!(writes(&daemon, "route created", "rtb-a"), 2);
}

/// A first-tier router and a second-tier one (NAT layout, no AZ affinity):
/// every table on the first; on its death on the second; its return with
/// `--failback FAILBACK`: the routes follow it back after that delay, or
/// (`never`) stay until `POST /rebalance`. Returns the daemon with the
/// tables on B and A back, when A came back, and the routers.
fn tiers(dir: &Path, failback: &str) -> (Daemon, Instant, [TcpListener; 2]) {
    let (listeners, port) = routers_listening();
    let [router_a, router_b] = listeners;
    let spec = spec(
        dir,
        json!({"0.0.0.0/0": {"hosts": [{"ip": ROUTER_B, "tier": 2}, ROUTER_A]}}),
    );
    let args = nat_args(&spec, port, &["--failback", failback]);
    let daemon = Daemon::start(&strs(&args), dir);
    common::wait_until("every table on the first tier", || {
        chosen_on(&daemon, |to| to == "eni-a")
    });
    drop(router_a);
    common::wait_until("every table on the second tier", || {
        chosen_on(&daemon, |to| to == "eni-b")
    });
    let back = Instant::now();
    let router_a = TcpListener::bind((ROUTER_A, port)).unwrap();
    (daemon, back, [router_a, router_b])
}

#[test]
fn the_first_tier_takes_its_routes_back_after_the_failback_delay() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, back, _routers) = tiers(dir.path(), "after=5");
    common::wait_until("every table back on the first tier", || {
        chosen_on(&daemon, |to| to == "eni-a")
    });
    assert!(
        back.elapsed() >= Duration::from_secs(5),
        "{:?}",
        back.elapsed()
    );
    let moved = daemon.lines_with("of tier 1 is back");
    assert_eq!(moved.len(), CHOSEN.len(), "{moved:#?}");
}

#[test]
fn with_failback_never_routes_stay_on_the_second_tier_until_a_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, _, _routers) = tiers(dir.path(), "never");
    // A healthy again, and a pass planned with it: nothing is to move.
    common::wait_until("A healthy and nothing planned", || {
        let plan = daemon.view("/plan");
        let quiet = plan["operations"].as_array().is_some_and(Vec::is_empty);
        (state_of(&daemon, ROUTER_A) == "healthy" && quiet).then_some(())
    });
    assert!(chosen_on(&daemon, |to| to == "eni-b").is_some());
    let (status, body) = daemon.http("POST", "/rebalance", b"");
    assert_eq!(status, 202, "{body}");
    common::wait_until("every table back on the first tier", || {
        chosen_on(&daemon, |to| to == "eni-a")
    });
}

/// The NAT-instance layout on moto's EC2, with a NAT gateway made there:
/// with both routers dead the chosen tables point at the gateway; router A
/// flapping fast (held down for it) writes nothing; router B back, failing
/// once during the hold and back for good, takes the tables after the
/// hold: one write per table each way. EC2 refusing the gateway at first
/// (`InvalidNatGatewayID.NotFound`, from a proxy in front of moto) is
/// logged with its code and retried until EC2 takes it.
#[test]
fn nat_instances_on_ec2_fall_back_to_a_nat_gateway() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let moto = Moto::start();
    let proxy = runtime.block_on(FaultProxy::start(&moto.url));
    let ec2 = runtime.block_on(moto.client());
    let routers = ["127.0.1.10", "127.0.2.10"];
    let vpc = runtime.block_on(moto::build_vpc(&ec2, 2, &routers));
    let layout = runtime.block_on(moto::private_tables(&ec2, &vpc));
    let nat = runtime.block_on(moto::nat_gateway(&ec2, &vpc.subnets[0]));
    let chosen = [&layout.private[0], &layout.private[1], &layout.main];

    let dir = tempfile::tempdir().unwrap();
    let first = TcpListener::bind((routers[0], 0)).unwrap();
    let port = first.local_addr().unwrap().port();
    let second = TcpListener::bind((routers[1], port)).unwrap();
    let spec = spec(
        dir.path(),
        json!({"0.0.0.0/0": {"hosts": routers, "fallback": nat}}),
    );
    let mut args = moto::daemon_args(&spec, port, &vpc, &proxy.url);
    args.extend(
        [
            "--route-table-tag",
            "vpcrouter=egress",
            "--main-route-table",
            "--failback-hold",
            "3",
        ]
        .map(String::from),
    );
    let daemon = Daemon::start(&strs(&args), dir.path());
    let eni = |router: usize| vpc.routers[routers[router]].1.clone();
    let all_on = |to: &str| {
        let routes = runtime.block_on(moto::routes(&ec2, &vpc.id));
        chosen
            .iter()
            .all(|table| (routes[*table].iter()).any(|(d, t)| d == "0.0.0.0/0" && t == to))
    };
    common::wait_until("the chosen tables on the routers", || {
        (all_on(&eni(0)) || all_on(&eni(1))).then_some(())
    });

    let refused = Fault::Refuse("InvalidNatGatewayID.NotFound");
    proxy.inject("ReplaceRoute", [refused; 2]);
    let dead = Instant::now();
    drop((first, second));
    daemon.wait_for_line("InvalidNatGatewayID.NotFound", Duration::from_secs(20));
    common::wait_until("the chosen tables on the NAT gateway", || {
        all_on(&nat).then_some(())
    });
    // The routes are seen in moto before the daemon's log lines of them
    // are read: wait for the lines, then count.
    let writes_now = || chosen.map(|t| writes(&daemon, "route replaced", t));
    common::wait_until("the writes logged", || {
        writes_now().iter().all(|n| *n >= 1).then_some(())
    });
    let failed = daemon.lines_with("route operation failed");
    assert!(
        failed.len() == 2
            && failed
                .iter()
                .all(|l| l.contains("InvalidNatGatewayID.NotFound")),
        "{failed:#?}"
    );
    eprintln!(
        "on the NAT gateway {:?} after the routers died",
        dead.elapsed()
    );
    assert_eq!(writes_now(), [1, 1, 1]);

    // A flaps, each turn seen by its checks, until it is held down for
    // it: it takes nothing meanwhile.
    let held = || daemon.view("/ips")["hosts"][routers[0]]["held_down"].is_object();
    for flap in 0.. {
        assert!(flap < 10, "A flapped {flap} times and is not held down");
        let up = TcpListener::bind((routers[0], port)).unwrap();
        common::wait_until("A up", || {
            (held() || state_of(&daemon, routers[0]) == "healthy").then_some(())
        });
        drop(up);
        if held() {
            break;
        }
        common::wait_until("A down", || {
            (state_of(&daemon, routers[0]) == "failed").then_some(())
        });
    }
    assert!(all_on(&nat));
    assert_eq!(writes_now(), [1, 1, 1], "A's flapping wrote nothing");

    // B back, failing once during the hold, then back for good.
    let router_b = TcpListener::bind((routers[1], port)).unwrap();
    daemon.wait_for_line(
        "stays on its fallback until 127.0.2.10",
        Duration::from_secs(20),
    );
    drop(router_b);
    common::wait_until("B failed again", || {
        (state_of(&daemon, routers[1]) == "failed").then_some(())
    });
    let back = Instant::now();
    let _router_b = TcpListener::bind((routers[1], port)).unwrap();
    common::wait_until("the chosen tables on B", || all_on(&eni(1)).then_some(()));
    assert!(
        back.elapsed() >= Duration::from_secs(3),
        "{:?}",
        back.elapsed()
    );
    common::wait_until("the writes back logged", || {
        writes_now().iter().all(|n| *n >= 2).then_some(())
    });
    assert_eq!(writes_now(), [2, 2, 2], "one write per table each way");
    // The public tables keep their internet gateway route.
    let routes = runtime.block_on(moto::routes(&ec2, &vpc.id));
    for table in &vpc.tables {
        assert!(
            routes[table]
                .iter()
                .any(|(d, t)| d == "0.0.0.0/0" && t.starts_with("igw-"))
        );
    }
}
