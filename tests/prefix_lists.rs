//! `--route-mode prefix-list`: the CIDRs live in prefix lists, a table
//! routes each list to a router, and a router's failover is a re-point per
//! table however many CIDRs it carried; the views still speak of CIDRs and
//! routers. On the embedded VPC, Romana's layout (many CIDRs, every table)
//! and the NAT-instance layout (0.0.0.0/0 per AZ); on moto's EC2.

mod common;

use common::Daemon;
use common::fault_proxy::Fault;
use common::nat::{ROUTER_A, ROUTER_B, default_routes, layout as nat_layout, routers_listening};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::TcpListener;

const NET: u8 = 41;
const ROUTERS: usize = 4;
const TABLES: usize = 10;
const CIDRS: usize = 100;

fn router(i: usize) -> String {
    format!("127.0.{NET}.{}", 10 + i)
}

fn cidr(i: usize) -> String {
    format!("10.{}.{}.0/24", 100 + i / 256, i % 256)
}

/// Romana's layout on the embedded VPC: `ROUTERS` routers (their own
/// subnets), `TABLES` tables, all tagged `vpcrouter=cluster`.
fn romana_vpc(dir: &std::path::Path) -> std::path::PathBuf {
    let interfaces: Vec<Value> = (0..ROUTERS)
        .map(|i| {
            json!({"id": format!("eni-{i}"), "instance": format!("i-{i}"),
                   "subnet": format!("subnet-{i}"), "ips": [router(i)], "running": true})
        })
        .collect();
    let subnets: Vec<Value> = (0..TABLES)
        .map(|t| json!({"id": format!("subnet-{t}"), "az": "az-a"}))
        .collect();
    let tables: Vec<Value> = (0..TABLES)
        .map(|t| {
            json!({"id": format!("rtb-{t}"), "subnets": [format!("subnet-{t}")], "routes": [],
                   "tags": {"vpcrouter": "cluster"}})
        })
        .collect();
    let file = dir.join("vpc.json");
    let vpc = json!({"subnets": subnets, "interfaces": interfaces, "route_tables": tables});
    std::fs::write(&file, vpc.to_string()).unwrap();
    file
}

/// The list calls made so far, by EC2 action (`vpcrouter_list_calls`).
fn list_calls(daemon: &Daemon) -> std::collections::BTreeMap<String, u64> {
    let (_, metrics) = daemon.http("GET", "/metrics", b"");
    (metrics.lines())
        .filter_map(|l| l.strip_prefix("vpcrouter_list_calls_total{action=\""))
        .filter_map(|l| {
            let (action, rest) = l.split_once('"')?;
            assert!(rest.contains("outcome=\"ok\""), "{l}");
            Some((action.to_string(), rest.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

fn total(calls: &std::collections::BTreeMap<String, u64>) -> u64 {
    calls.values().sum()
}

/// The router each CIDR is routed to in `/route_info`, once all are.
fn placed(daemon: &Daemon) -> Option<Vec<String>> {
    let info = daemon.view("/route_info");
    (0..CIDRS)
        .map(|i| info["routes"][cidr(i)]["ip"].as_str().map(String::from))
        .collect()
}

/// Romana's layout, 100 CIDRs over 4 routers in 10 tables: the busiest
/// router dies, and its CIDRs reach the survivors with one re-point per
/// table and a few list edits (not a ReplaceRoute per CIDR and table);
/// /route_info and /vpc name CIDRs and routers throughout.
#[test]
fn romana_a_dead_routers_cidrs_move_with_a_call_per_table() {
    let dir = tempfile::tempdir().unwrap();
    let routers: Vec<String> = (0..ROUTERS).map(router).collect();
    let refs: Vec<&str> = routers.iter().map(String::as_str).collect();
    let (mut listeners, port) = common::moto::listening(&refs);
    let spec = common::spec_file(dir.path(), (0..CIDRS).map(cidr), &refs);
    let mut args = common::configfile_tcp_args(&spec, port);
    let vpc = romana_vpc(dir.path());
    args.extend(
        [
            "--sim-vpc",
            vpc.to_str().unwrap(),
            "--route-table-tag",
            "vpcrouter=cluster",
            "--route-mode",
            "prefix-list",
        ]
        .map(String::from),
    );
    let daemon = Daemon::start(&common::strs(&args), dir.path());
    let before = common::wait_until("every CIDR routed", || placed(&daemon));
    let tables = daemon.view("/vpc")["route_tables"].clone();
    for t in 0..TABLES {
        let routes = &tables[format!("rtb-{t}")]["routes"];
        assert_eq!(
            routes.as_object().unwrap().len(),
            CIDRS,
            "rtb-{t}: {routes}"
        );
    }
    let start_calls = list_calls(&daemon);
    assert!(
        total(&start_calls) <= (4 + 4 * TABLES + 4) as u64,
        "{start_calls:?} to start"
    );

    let mut counts = std::collections::BTreeMap::<&String, usize>::new();
    for host in &before {
        *counts.entry(host).or_default() += 1;
    }
    let (victim, carried) = counts.into_iter().max_by_key(|(_, n)| *n).unwrap();
    let victim = victim.clone();
    listeners[routers.iter().position(|r| *r == victim).unwrap()] = None;
    let after = common::wait_until("every CIDR off the dead router", || {
        placed(&daemon).filter(|now| now.iter().all(|h| *h != victim))
    });
    for (was, now) in before.iter().zip(&after) {
        if *was != victim {
            assert_eq!(was, now, "a CIDR of a live router moved");
        }
    }
    // Every moved (table, CIDR) counts as a failover, as in per-CIDR mode.
    let moved = (carried * TABLES) as u64;
    let failovers = common::wait_until("the failovers counted", || {
        let (_, metrics) = daemon.http("GET", "/metrics", b"");
        let counted = (metrics.lines())
            .find_map(|l| l.strip_prefix("vpcrouter_failovers_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())?;
        (counted >= moved).then_some(counted)
    });
    assert_eq!(failovers, moved, "one per (table, CIDR) moved");
    let now = list_calls(&daemon);
    let failover: std::collections::BTreeMap<&String, u64> = (now.iter())
        .map(|(action, n)| (action, n - start_calls.get(action).copied().unwrap_or(0)))
        .collect();
    assert_eq!(
        failover[&"ReplaceRoute".to_string()],
        TABLES as u64,
        "a re-point per table: {failover:?}"
    );
    let calls: u64 = failover.values().sum();
    assert!(
        calls <= (TABLES + 8) as u64,
        "{calls} calls for {carried} CIDRs in {TABLES} tables: {failover:?}"
    );
    eprintln!("{calls} list calls moved {carried} CIDRs in {TABLES} tables: {failover:?}");
}

/// The NAT-instance layout: 0.0.0.0/0 in each AZ's private table on that
/// AZ's router, by a list routed differently per table; router A dies and
/// its table's list is re-pointed to B.
#[test]
fn nat_instances_each_az_table_fails_over_by_a_re_point() {
    let dir = tempfile::tempdir().unwrap();
    let ([router_a, _router_b], port) = routers_listening();
    let hosts = format!("{ROUTER_A}:{ROUTER_B}");
    let mut args = common::nat::daemon_args(&hosts, &port.to_string());
    let layout = nat_layout();
    args.extend(
        [
            "--sim-vpc",
            layout.to_str().unwrap(),
            "--route-mode",
            "prefix-list",
        ]
        .map(String::from),
    );
    let daemon = Daemon::start(&common::strs(&args), dir.path());
    common::wait_until("each AZ's table on its router", || {
        let now = default_routes(&daemon);
        (now["rtb-priv-a"] == "eni-a" && now["rtb-priv-b"] == "eni-b").then_some(())
    });
    let start_calls = total(&list_calls(&daemon));
    drop(router_a);
    common::wait_until("A's table on B", || {
        (default_routes(&daemon)["rtb-priv-a"] == "eni-b").then_some(())
    });
    let calls = list_calls(&daemon);
    assert!(calls.contains_key("ReplaceRoute"), "{calls:?}");
    assert!(total(&calls) - start_calls <= 4, "{calls:?}");
}

/// A moto VPC behind a counting proxy (moto patched where it lacks
/// prefix-list routes and version checks: tests/common/moto_server.py):
/// the first `routers` of `moto::ROUTERS` listening, in `azs` AZs with a
/// table each, and the daemon's arguments for `cidrs` CIDRs over them in
/// prefix-list mode (started by `daemon`).
struct OnMoto {
    runtime: tokio::runtime::Runtime,
    _moto: common::moto::Moto,
    proxy: common::fault_proxy::FaultProxy,
    ec2: aws_sdk_ec2::Client,
    vpc: common::moto::Vpc,
    listeners: std::cell::RefCell<Vec<Option<TcpListener>>>,
    routers: Vec<&'static str>,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

impl OnMoto {
    fn start(routers: usize, azs: usize, cidrs: usize) -> Self {
        use common::moto;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let moto = moto::Moto::start();
        let proxy = runtime.block_on(common::fault_proxy::FaultProxy::start(&moto.url));
        let ec2 = runtime.block_on(moto.client());
        let routers = moto::ROUTERS[..routers].to_vec();
        let vpc = runtime.block_on(moto::build_vpc(&ec2, azs, &routers));
        let dir = tempfile::tempdir().unwrap();
        let (listeners, port) = moto::listening(&routers);
        let spec = common::spec_file(dir.path(), (0..cidrs).map(cidr), &routers);
        let mut args = moto::daemon_args(&spec, port, &vpc, &proxy.url);
        args.extend(["--route-mode", "prefix-list"].map(String::from));
        Self {
            runtime,
            _moto: moto,
            proxy,
            ec2,
            vpc,
            listeners: std::cell::RefCell::new(listeners),
            routers,
            args,
            dir,
        }
    }

    fn daemon(&self) -> Daemon {
        Daemon::start(&common::strs(&self.args), self.dir.path())
    }

    /// Close `router`'s port: its probes are refused from now on.
    fn kill(&self, router: &str) {
        let at = self.routers.iter().position(|r| *r == router).unwrap();
        self.listeners.borrow_mut()[at] = None;
    }

    /// (table, CIDR) -> ENI, as moto has it now.
    fn routing(&self) -> BTreeMap<(String, String), String> {
        let routing = common::moto::routing(&self.ec2, &self.vpc.tables);
        self.runtime.block_on(routing)
    }

    /// The same, read lists first (see `moto::routing_lists_first`).
    fn routing_lists_first(&self) -> BTreeMap<(String, String), String> {
        let routing = common::moto::routing_lists_first(&self.ec2, &self.vpc.tables);
        self.runtime.block_on(routing)
    }

    /// The per-CIDR routes to a router, as moto has them now.
    fn per_cidr_routes(&self) -> usize {
        let described = self.runtime.block_on(
            (self.ec2.describe_route_tables())
                .set_route_table_ids(Some(self.vpc.tables.clone()))
                .send(),
        );
        (described.unwrap().route_tables().iter())
            .flat_map(|t| t.routes())
            .filter(|r| r.destination_cidr_block().is_some() && r.network_interface_id().is_some())
            .count()
    }

    /// Lists of ours not deleted, and routes to any list, as moto has them.
    fn lists_left(&self) -> usize {
        use aws_sdk_ec2::types::PrefixListState;
        let ours = aws_sdk_ec2::types::Filter::builder()
            .name("tag:vpcrouter:vpc")
            .values(&self.vpc.id)
            .build();
        let lists = self.runtime.block_on(
            (self.ec2.describe_managed_prefix_lists())
                .filters(ours)
                .send(),
        );
        let lists = (lists.unwrap().prefix_lists().iter())
            .filter(|l| l.state() != Some(&PrefixListState::DeleteComplete))
            .count();
        let tables = self.runtime.block_on(
            (self.ec2.describe_route_tables())
                .set_route_table_ids(Some(self.vpc.tables.clone()))
                .send(),
        );
        let routes = (tables.unwrap().route_tables().iter())
            .flat_map(|t| t.routes())
            .filter(|r| r.destination_prefix_list_id().is_some())
            .count();
        lists + routes
    }

    /// Give `table` a route quota (moto_server.py counts a route to a
    /// list as the list's maximum size, as EC2 does).
    fn limit_routes(&self, table: &str, quota: usize) {
        let tag = aws_sdk_ec2::types::Tag::builder()
            .key("moto:route-quota")
            .value(quota.to_string())
            .build();
        let tagged = (self.ec2.create_tags().resources(table).tags(tag)).send();
        self.runtime.block_on(tagged).unwrap();
    }

    /// Routing once each of `cidrs` CIDRs is routed in every table.
    fn all_routed(&self, cidrs: usize) -> BTreeMap<(String, String), String> {
        let all = cidrs * self.vpc.tables.len();
        common::wait_until("every CIDR routed in every table", || {
            let routes = self.routing();
            (routes.len() == all).then_some(routes)
        })
    }

    /// The router carrying the most routes in `routing`: (address, ENI,
    /// routes).
    fn busiest(&self, routing: &BTreeMap<(String, String), String>) -> (String, String, usize) {
        let (eni, routes) = (load(routing).into_iter()).max_by_key(|(_, n)| *n).unwrap();
        let router = (self.vpc.routers.iter())
            .find(|(_, (_, e))| *e == eni)
            .unwrap()
            .0;
        (router.clone(), eni, routes)
    }

    /// The mutating calls the proxy has seen, by action.
    fn mutating(&self) -> BTreeMap<String, u64> {
        (self.proxy.calls().into_iter())
            .filter(|(action, _)| !action.starts_with("Describe") && !action.starts_with("Get"))
            .collect()
    }
}

/// Routes per ENI in `routing`.
fn load(routing: &BTreeMap<(String, String), String>) -> BTreeMap<String, usize> {
    let mut load = BTreeMap::new();
    for eni in routing.values() {
        *load.entry(eni.clone()).or_default() += 1;
    }
    load
}

/// On EC2 (`OnMoto`): 100 CIDRs over 4 routers in 3 tables, a list per router; `faults` are
/// met by the calls of the failover. The busiest router dies: the mutating
/// calls (by action) from the kill until every table routes its CIDRs
/// elsewhere (the re-points: list edits may follow) and every fault was
/// met.
fn ec2_failover(faults: &[(&str, Fault)]) -> BTreeMap<String, u64> {
    let on = OnMoto::start(4, 3, CIDRS);
    let _daemon = on.daemon();
    let (proxy, vpc) = (&on.proxy, &on.vpc);
    let tables = vpc.tables.len();
    let placed = || {
        let routes = on.routing();
        (routes.len() == CIDRS * tables).then_some(routes)
    };
    let before = common::wait_until("every CIDR routed through lists", placed);
    let started = on.mutating();
    let (victim, busiest, routes) = on.busiest(&before);
    let carried = routes / tables;
    for (action, fault) in faults {
        proxy.inject(action, [*fault]);
    }
    on.kill(&victim);
    let killed = std::time::Instant::now();
    common::wait_until("every CIDR off the dead router", || {
        placed().filter(|now| now.values().all(|e| *e != busiest))
    });
    let took = killed.elapsed();
    common::wait_until("every fault met", || {
        faults
            .iter()
            .all(|(action, _)| proxy.pending(action) == 0)
            .then_some(())
    });
    let mutating: BTreeMap<String, u64> = (on.mutating().into_iter())
        .map(|(action, n)| {
            let before = started.get(&action).copied().unwrap_or(0);
            (action, n - before)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    eprintln!(
        "{carried} CIDRs of {victim} moved in {tables} tables in {took:?} after the kill, \
         with {mutating:?} (per CIDR: {} ReplaceRoute)",
        carried * tables
    );
    mutating
}

/// The failover is a ReplaceRoute per table and a few list edits, not a
/// ReplaceRoute per CIDR and table.
#[test]
fn on_ec2_a_dead_routers_cidrs_move_with_a_call_per_table() {
    let mutating = ec2_failover(&[]);
    assert_eq!(mutating.get("ReplaceRoute"), Some(&3), "{mutating:?}");
    let calls: u64 = mutating.values().sum();
    assert!(calls <= 3 + 8, "{mutating:?}");
}

/// EC2 throttling the failover's re-points and list edits (and failing
/// one with a 500): each call is retried, and every CIDR reaches a
/// survivor.
#[test]
fn on_ec2_throttled_list_calls_are_retried_and_the_failover_completes() {
    let mutating = ec2_failover(&[
        ("ReplaceRoute", Fault::Throttle),
        ("ReplaceRoute", Fault::ServerError),
        ("ModifyManagedPrefixList", Fault::Throttle),
        ("ModifyManagedPrefixList", Fault::Throttle),
    ]);
    assert_eq!(mutating.get("ReplaceRoute"), Some(&(3 + 2)), "{mutating:?}");
    assert!(mutating["ModifyManagedPrefixList"] >= 2, "{mutating:?}");
}

/// On EC2: a daemon restarted adopts the lists of the one before without a
/// write; a list edited behind its back (an entry taken out, its version
/// moved on) is put right at the next observation, which also learns the
/// list's new version (an edit at a stale one is refused by EC2:
/// `PrefixListVersionMismatch`, which moto is patched to do too).
#[test]
fn on_ec2_lists_are_adopted_on_restart_and_put_right_after_a_hand_edit() {
    let mut on = OnMoto::start(2, 2, 20);
    on.args
        .extend(["--route_recheck_interval", "5"].map(String::from));
    let (ec2, vpc, runtime) = (&on.ec2, &on.vpc, &on.runtime);
    let all = 20 * vpc.tables.len();
    let placed = || {
        let routes = on.routing();
        (routes.len() == all).then_some(routes)
    };
    let first_daemon = on.daemon();
    let before = common::wait_until("every CIDR routed through lists", placed);
    drop(first_daemon);

    let written = on.mutating();
    let daemon = on.daemon();
    common::wait_until("a first pass done", || {
        let (_, metrics) = daemon.http("GET", "/metrics", b"");
        (metrics.lines())
            .find_map(|l| l.strip_prefix("vpcrouter_last_successful_reconcile_timestamp_seconds "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|at| *at > 0.0)
    });
    assert_eq!(on.mutating(), written, "a restart writes nothing");
    assert_eq!(placed(), Some(before.clone()));

    // An entry taken out of a list by hand, straight at moto.
    let (list, taken) = runtime.block_on(async {
        let ours = aws_sdk_ec2::types::Filter::builder()
            .name("tag:vpcrouter:vpc")
            .values(&vpc.id)
            .build();
        let lists = (ec2.describe_managed_prefix_lists())
            .filters(ours)
            .send()
            .await
            .unwrap();
        let list = lists.prefix_lists()[0].clone();
        let id = list.prefix_list_id().unwrap().to_string();
        let entries = ec2
            .get_managed_prefix_list_entries()
            .prefix_list_id(&id)
            .send()
            .await
            .unwrap();
        let taken = entries.entries()[0].cidr().unwrap().to_string();
        ec2.modify_managed_prefix_list()
            .prefix_list_id(&id)
            .current_version(list.version().unwrap())
            .remove_entries(
                aws_sdk_ec2::types::RemovePrefixListEntry::builder()
                    .cidr(&taken)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        (id, taken)
    });
    let after = common::wait_until("the entry put back", placed);
    assert_eq!(after, before, "every CIDR where it was");
    assert!(
        daemon.lines_with("PrefixListVersionMismatch").is_empty(),
        "the edit named the version observed"
    );
    eprintln!("{taken} taken out of {list} by hand was put back");
}

/// On EC2: a table that cannot hold another route (EC2 answers
/// `RouteLimitExceeded` to the route to a list, from the proxy in front of
/// moto) is named in the log with EC2's code and the advice any full table
/// gets; the daemon keeps trying, and once EC2 takes the route every CIDR
/// is routed everywhere.
#[test]
fn on_ec2_a_table_refusing_a_list_route_is_named_and_tried_again() {
    let on = OnMoto::start(2, 2, 10);
    let (proxy, vpc) = (&on.proxy, &on.vpc);
    proxy.inject("CreateRoute", [Fault::Refuse("RouteLimitExceeded"); 3]);
    let daemon = on.daemon();
    let refused = daemon.wait_for_line("RouteLimitExceeded", std::time::Duration::from_secs(20));
    assert!(
        vpc.tables.iter().any(|t| refused.contains(t.as_str())),
        "the table is named: {refused}"
    );
    let all = 10 * vpc.tables.len();
    let routed = common::wait_until("every CIDR routed in every table", || {
        let routes = on.routing();
        (routes.len() == all).then_some(routes)
    });
    assert_eq!(proxy.pending("CreateRoute"), 0);
    assert_eq!(routed.len(), all);
}

/// On EC2: a VPC routed by per-CIDR mode switches to prefix-list mode. The
/// daemon adopts the routes without a write, then moves them into lists a
/// few CIDRs per pass (each CIDR added to a list first, its per-CIDR route
/// deleted after): every sample of moto shows every CIDR routed to the
/// router it was on. A router dying half way is failed over (per-CIDR
/// routes and lists alike), and the migration still ends with no per-CIDR
/// route left.
#[test]
fn on_ec2_per_cidr_routes_move_into_lists_without_a_gap() {
    const CIDRS: usize = 30;
    let mut on = OnMoto::start(2, 2, CIDRS);
    let all = CIDRS * on.vpc.tables.len();
    let prefix_list = on.args.split_off(on.args.len() - 2);
    let per_cidr_daemon = on.daemon();
    let before = common::wait_until("every CIDR routed per CIDR", || {
        let routes = on.routing();
        (routes.len() == all && on.per_cidr_routes() == all).then_some(routes)
    });
    drop(per_cidr_daemon);

    on.args.extend(prefix_list);
    let _daemon = on.daemon();
    // Each sample reads the tables before the lists: a CIDR whose route
    // is gone was added to its list before, so it shows in one or the other.
    let mut samples = 0;
    common::wait_until("the migration half done", || {
        let routes = on.routing();
        assert_eq!(
            routes, before,
            "sample {samples}: a CIDR moved or lost its route"
        );
        samples += 1;
        (on.per_cidr_routes() <= all / 2).then_some(())
    });
    let mutating = on.mutating();
    assert!(
        mutating.contains_key("CreateManagedPrefixList"),
        "{mutating:?}"
    );

    let victim = on.routers[0];
    let victim_eni = on.vpc.routers[victim].1.clone();
    let left_at_kill = on.per_cidr_routes();
    on.kill(victim);
    let after = common::wait_until(
        "every CIDR off the dead router, no per-CIDR route left",
        || {
            let routes = on.routing();
            let off = routes.len() == all && routes.values().all(|eni| *eni != victim_eni);
            (off && on.per_cidr_routes() == 0).then_some(routes)
        },
    );
    let survivor = &on.vpc.routers[on.routers[1]].1;
    assert!(after.values().all(|eni| eni == survivor));
    eprintln!(
        "{all} per-CIDR routes moved into lists ({samples} samples without a gap; \
         {left_at_kill} left when {victim} died), with {:?}",
        on.mutating()
    );
}

/// On EC2, the way back: a VPC routed by prefix-list mode, the daemon
/// restarted in per-CIDR mode. It adopts the lists without a write, gives
/// their CIDRs per-CIDR routes a few per pass and only then takes them
/// out of the lists: every sample of moto shows every CIDR routed to the
/// router it was on. A router dying half way is failed over, and in the
/// end no list of ours is left, nor a route to one.
#[test]
fn on_ec2_lists_empty_into_per_cidr_routes_without_a_gap_and_are_deleted() {
    const CIDRS: usize = 30;
    let mut on = OnMoto::start(2, 2, CIDRS);
    let all = CIDRS * on.vpc.tables.len();
    let prefix_list_daemon = on.daemon();
    let before = common::wait_until("every CIDR routed by lists", || {
        let routes = on.routing();
        (routes.len() == all && on.per_cidr_routes() == 0).then_some(routes)
    });
    drop(prefix_list_daemon);

    on.args.truncate(on.args.len() - 2);
    let _daemon = on.daemon();
    let mut samples = 0;
    // Each sample reads the lists before the tables: a CIDR gone from its
    // list had its per-CIDR route before, so it shows in one or the other.
    common::wait_until("the migration half done", || {
        let routes = on.routing_lists_first();
        assert_eq!(
            routes, before,
            "sample {samples}: a CIDR moved or lost its route"
        );
        samples += 1;
        (on.per_cidr_routes() >= all / 2).then_some(())
    });
    let victim = on.routers[0];
    let victim_eni = on.vpc.routers[victim].1.clone();
    let per_cidr_at_kill = on.per_cidr_routes();
    on.kill(victim);
    let survivor = on.vpc.routers[on.routers[1]].1.clone();
    common::wait_until("every CIDR per CIDR on the survivor, no list left", || {
        let routes = on.routing();
        let moved = routes.len() == all && routes.values().all(|eni| *eni == survivor);
        (moved && on.per_cidr_routes() == all && on.lists_left() == 0).then_some(())
    });
    assert_ne!(victim_eni, survivor);
    eprintln!(
        "{all} routes out of lists ({samples} samples without a gap; {per_cidr_at_kill} per \
         CIDR when {victim} died), with {:?}",
        on.mutating()
    );
}

/// On EC2: a table whose route quota cannot hold every list (moto patched
/// to count a route to a list as the list's maximum size, as EC2 does, in
/// a table tagged `moto:route-quota`). The route it refuses is named in
/// the log with what to do; the CIDRs no list routes there get per-CIDR
/// routes in that table alone, so every CIDR is routed everywhere; and
/// when a router dies each table moves its CIDRs, by list or per CIDR.
#[test]
fn on_ec2_a_table_too_small_for_the_lists_falls_back_to_per_cidr_routes() {
    const CIDRS: usize = 10;
    let on = OnMoto::start(2, 2, CIDRS);
    let small = on.vpc.tables[1].clone();
    // Beside the default route, two lists of at most 7 entries (5 CIDRs
    // each, a quarter more) do not fit in 13; one list and 5 per-CIDR
    // routes do.
    on.limit_routes(&small, 13);
    let daemon = on.daemon();
    let all = CIDRS * on.vpc.tables.len();
    let before = on.all_routed(CIDRS);
    let said = daemon.wait_for_line(
        "cannot hold a route to another prefix list",
        std::time::Duration::from_secs(20),
    );
    assert!(said.contains(&small), "{said}");
    assert_eq!(
        on.per_cidr_routes(),
        CIDRS / 2,
        "one list's CIDRs, per CIDR"
    );

    let victim = on.routers[0];
    let victim_eni = on.vpc.routers[victim].1.clone();
    assert!(before.values().any(|eni| *eni == victim_eni));
    on.kill(victim);
    common::wait_until("every CIDR off the dead router in both tables", || {
        let routes = on.routing();
        (routes.len() == all && routes.values().all(|eni| *eni != victim_eni)).then_some(())
    });
    eprintln!("{said}\nthen the failover, with {:?}", on.mutating());
}

/// `--dry-run` in prefix-list mode on EC2: the plan still speaks of CIDRs
/// and tables (an operation per route), and the EC2 calls it would take
/// are the list calls (a list per router with its entries, a route to each
/// per table), not a call per operation; nothing is written.
#[test]
fn on_ec2_a_dry_run_shows_the_list_calls_the_plan_takes() {
    let on = OnMoto::start(4, 3, CIDRS);
    let mut args = common::strs(&on.args);
    args.extend(["--dry-run", "--output", "json"]);
    let (code, stdout, stderr) = common::run_to_exit_with_output(&args);
    assert_eq!(code, 0, "{stderr}");
    let plan: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let tables = on.vpc.tables.len();
    assert_eq!(plan["operations"].as_array().unwrap().len(), CIDRS * tables);
    let mut calls = BTreeMap::<String, usize>::new();
    for call in plan["ec2_calls"].as_array().unwrap() {
        *calls
            .entry(call["call"].as_str().unwrap().into())
            .or_default() += 1;
    }
    let expected = [("CreateManagedPrefixList", 4), ("CreateRoute", 4 * tables)];
    let expected = expected.map(|(call, n)| (call.to_string(), n));
    assert_eq!(calls, BTreeMap::from(expected), "{plan:#}");
    assert!(on.mutating().is_empty(), "{:?}", on.mutating());
}

/// The NAT-instance layout switched to prefix-list mode, on the embedded
/// VPC: each AZ's table (and the main one) has the per-CIDR default route
/// per-CIDR mode left, to its AZ's router, claimed in its tags. The daemon
/// adopts them without a move, puts 0.0.0.0/0 in a list routed to A in
/// one table and to B in the other, and deletes the per-CIDR routes:
/// every table keeps its router throughout; then A dies and its table
/// fails over by a re-point.
#[test]
fn nat_instances_per_cidr_routes_move_into_a_list_routed_per_table() {
    let dir = tempfile::tempdir().unwrap();
    let ([router_a, _router_b], port) = routers_listening();
    let mut layout: Value =
        serde_json::from_str(&std::fs::read_to_string(nat_layout()).unwrap()).unwrap();
    let per_cidr = [
        ("rtb-priv-a", "eni-a"),
        ("rtb-priv-b", "eni-b"),
        ("rtb-main", "eni-a"),
    ];
    for table in layout["route_tables"].as_array_mut().unwrap() {
        let id = table["id"].as_str().unwrap().to_string();
        if let Some((_, eni)) = per_cidr.iter().find(|(t, _)| *t == id) {
            let route = json!({"destination": "0.0.0.0/0", "target": {"interface": eni}});
            table["routes"] = json!([route]);
            let tags = table["tags"].as_object().cloned().unwrap_or_default();
            let mut tags = Value::Object(tags);
            tags["vpcrouter:routes:default"] = json!("0.0.0.0/0");
            table["tags"] = tags;
        }
    }
    let file = dir.path().join("vpc.json");
    std::fs::write(&file, layout.to_string()).unwrap();
    let hosts = format!("{ROUTER_A}:{ROUTER_B}");
    let mut args = common::nat::daemon_args(&hosts, &port.to_string());
    args.extend(
        [
            "--sim-vpc",
            file.to_str().unwrap(),
            "--route-mode",
            "prefix-list",
        ]
        .map(String::from),
    );
    let daemon = Daemon::start(&common::strs(&args), dir.path());
    let expected = json!({"rtb-priv-a": "eni-a", "rtb-priv-b": "eni-b", "rtb-main": "eni-a"});
    let on_their_routers = || {
        let now = default_routes(&daemon);
        let each = ["rtb-priv-a", "rtb-priv-b", "rtb-main"];
        each.iter().all(|t| now[t] == expected[t]).then_some(())
    };
    let moved = common::wait_until("the per-CIDR routes deleted", || {
        assert!(on_their_routers().is_some(), "{}", default_routes(&daemon));
        let calls = list_calls(&daemon);
        (calls.get("DeleteRoute") == Some(&3)).then_some(calls)
    });
    assert!(moved.contains_key("CreateManagedPrefixList"), "{moved:?}");
    assert!(
        !moved.contains_key("ReplaceRoute"),
        "nothing moved: {moved:?}"
    );
    let (_, metrics) = daemon.http("GET", "/metrics", b"");
    assert!(
        !metrics.contains("vpcrouter_failovers_total 1"),
        "no failover counted"
    );

    drop(router_a);
    common::wait_until("A's tables on B", || {
        let now = default_routes(&daemon);
        (now["rtb-priv-a"] == "eni-b" && now["rtb-main"] == "eni-b").then_some(())
    });
    let calls = list_calls(&daemon);
    assert!(calls.contains_key("ReplaceRoute"), "a re-point: {calls:?}");
    assert_eq!(
        calls["DeleteRoute"], 3,
        "no per-CIDR route left to move: {calls:?}"
    );
}

/// On EC2: a list that cannot grow, because a table routing it is at its
/// quota (moto patched as EC2 behaves: the modification ends in
/// `modify-failed`, the table named in the state message). A router dies:
/// its list is re-pointed first, so every CIDR is on a survivor (and the
/// spread stays as it is: routes stick to live routers). Spreading them
/// over the survivors needs a bigger list: that refusal is said with
/// EC2's words and the table; the operator's rebalance then goes around it
/// (a new list in the other tables, per-CIDR routes in the full one) until
/// the planner wants nothing more.
#[test]
fn on_ec2_a_list_that_cannot_grow_holds_back_no_failover_and_is_gone_around() {
    const CIDRS: usize = 30;
    let on = OnMoto::start(3, 3, CIDRS);
    let tight = on.vpc.tables[1].clone();
    // The default route and three lists of at most 13 (10 CIDRs each, a
    // quarter more) leave room for 5 routes, not for a list grown to 19.
    on.limit_routes(&tight, 45);
    let daemon = on.daemon();
    let all = CIDRS * on.vpc.tables.len();
    let before = on.all_routed(CIDRS);
    assert_eq!(on.per_cidr_routes(), 0, "three lists fit");
    let (victim, busiest, _) = on.busiest(&before);
    on.kill(&victim);
    common::wait_until("every CIDR off the dead router", || {
        let routes = on.routing();
        (routes.len() == all && routes.values().all(|e| *e != busiest)).then_some(())
    });
    let refused = daemon.wait_for_line("modify-failed", std::time::Duration::from_secs(20));
    assert!(refused.contains(&tight), "the table is named: {refused}");
    assert_eq!(on.routing().len(), all, "no CIDR lost its route");
    let (status, body) = daemon.http("POST", "/rebalance", b"");
    assert_eq!(status, 202, "{body}");
    let after = common::wait_until("the survivors even, 15 CIDRs each", || {
        let routes = on.routing();
        let load = load(&routes);
        let even = load.len() == 2 && load.values().all(|n| *n == all / 2);
        (routes.len() == all && even && !load.contains_key(&busiest)).then_some(routes.clone())
    });
    assert_eq!(after.len(), all);
    assert!(on.per_cidr_routes() > 0, "per-CIDR routes in {tight}");
    eprintln!("{refused}\nthen {:?}", on.mutating());
}
