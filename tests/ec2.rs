//! The reconciler with the EC2 backend against moto's EC2 server: routes
//! created, replaced on failure, deleted when removed from the spec;
//! protected, gateway and unassociated-table routes untouched; routes to a
//! terminated instance repaired and routes deleted by hand restored on
//! recheck; the EC2 call counts of a failover. Health is fed in directly.

mod common;

use common::moto::{self, CIDRS, Moto, ROUTERS, Vpc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use vpcrouter::cloud::ec2::{Ec2Vpc, Outcome};
use vpcrouter::health::{HealthBoard, HostReport, State};
use vpcrouter::reconcile::Reconciler;
use vpcrouter::reconcile::plan::Settings;
use vpcrouter::spec_store::SpecStore;
const PROTECTED: &str = "10.200.0.0/16";
const FOREIGN: &str = "10.201.0.0/16";

struct Setup {
    _moto: Moto,
    ec2: aws_sdk_ec2::Client,
    vpc: Vpc,
    backend: Arc<Ec2Vpc>,
    specs: Arc<SpecStore>,
    board: Arc<HealthBoard>,
    _stop: watch::Sender<bool>,
}

/// moto with the shared VPC, plus: a protected route (under
/// `--ignore_routes`) and a route outside the spec in the first table, and
/// a route in the unassociated table; the reconciler running on it.
async fn start(recheck: Option<Duration>) -> Setup {
    let moto = Moto::start();
    let ec2 = moto.client().await;
    let vpc = moto::build_vpc(&ec2, 3, &ROUTERS).await;
    let eni = |ip: &str| vpc.routers[ip].1.clone();
    for (table, cidr) in [
        (&vpc.tables[0], PROTECTED),
        (&vpc.tables[0], FOREIGN),
        (&vpc.unassociated_table, FOREIGN),
    ] {
        ec2.create_route()
            .route_table_id(table)
            .destination_cidr_block(cidr)
            .network_interface_id(eni(ROUTERS[0]))
            .send()
            .await
            .unwrap();
    }
    let backend = Arc::new(moto.backend(&vpc.id, &moto.url));
    let settings = Settings {
        ignore_routes: vec![PROTECTED.parse().unwrap()],
        ..Settings::default()
    };
    let Inputs { specs, board, stop } = reconcile(&backend, settings, recheck, false);
    Setup {
        _moto: moto,
        ec2,
        vpc,
        backend,
        specs,
        board,
        _stop: stop,
    }
}

/// The inputs a running reconciler reads; it stops when this is dropped.
struct Inputs {
    specs: Arc<SpecStore>,
    board: Arc<HealthBoard>,
    stop: watch::Sender<bool>,
}

fn reconcile(
    backend: &Arc<Ec2Vpc>,
    settings: Settings,
    recheck: Option<Duration>,
    disable_source_dest_check: bool,
) -> Inputs {
    let specs = Arc::new(SpecStore::default());
    let board = Arc::new(HealthBoard::default());
    let (stop, shutdown) = watch::channel(false);
    let reconciler = Reconciler {
        backend: backend.clone(),
        specs: specs.subscribe(),
        health: board.subscribe(),
        settings,
        recheck,
        disable_source_dest_check,
        leadership: None,
        rebalance_requests: watch::channel(0).1,
        moves: Default::default(),
        throttle_alert: Duration::from_secs(60),
        observers: Default::default(),
        shutdown,
    };
    tokio::spawn(reconciler.run());
    Inputs { specs, board, stop }
}

impl Setup {
    fn offer(&self, cidrs: &[&str]) {
        let hosts: Vec<String> = ROUTERS.iter().map(|h| h.to_string()).collect();
        self.specs
            .offer("test", cidrs.iter().map(|c| (c.to_string(), hosts.clone())))
            .unwrap();
    }

    /// The target of `cidr` in every associated table.
    async fn targets(&self, cidr: &str) -> Vec<Option<String>> {
        moto::targets(&self.ec2, &self.vpc, cidr).await
    }

    /// Wait (10 s at most) until every table routes each of `cidrs` to one
    /// ENI, the same in every table, and `ok` holds for it.
    async fn converged(&self, cidrs: &[&str], ok: impl Fn(&str) -> bool) -> Vec<String> {
        for _ in 0..200 {
            let mut chosen = Vec::new();
            for cidr in cidrs {
                let targets = self.targets(cidr).await;
                match targets[0].clone() {
                    Some(eni) if targets.iter().all(|t| t.as_ref() == Some(&eni)) && ok(&eni) => {
                        chosen.push(eni)
                    }
                    _ => break,
                }
            }
            if chosen.len() == cidrs.len() {
                return chosen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "not converged within 10 s: {:#?}",
            moto::routes(&self.ec2, &self.vpc.id).await
        );
    }

    fn router_of(&self, eni: &str) -> &str {
        self.vpc
            .routers
            .iter()
            .find(|(_, (_, e))| e == eni)
            .map(|(ip, _)| ip.as_str())
            .unwrap()
    }

    fn fail(&self, ip: &str) {
        self.board.report(
            "test",
            vec![HostReport {
                host: ip.parse().unwrap(),
                state: State::Failed,
                rtt_us: None,
                detail: None,
            }],
        );
    }

    /// Successful calls by action.
    fn ok_calls(&self) -> BTreeMap<&'static str, u64> {
        self.backend
            .calls()
            .into_iter()
            .filter(|((_, outcome), _)| *outcome == Outcome::Ok)
            .map(|((action, _), n)| (action, n))
            .collect()
    }

    /// The successful calls once `action` has been called `n` more times
    /// than in `since` (a generous bound for a loaded machine).
    async fn calls_once(
        &self,
        since: &BTreeMap<&'static str, u64>,
        action: &str,
        n: u64,
    ) -> BTreeMap<&'static str, u64> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.ok_calls();
            if count(&now, action) - count(since, action) >= n {
                return now;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{action} not {n} more times: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn count(calls: &BTreeMap<&'static str, u64>, action: &str) -> u64 {
    calls.get(action).copied().unwrap_or(0)
}

#[tokio::test]
async fn routes_converge_fail_over_and_follow_the_spec() {
    let setup = start(None).await;
    let untouched = moto::routes(&setup.ec2, &setup.vpc.id).await;
    setup.offer(&CIDRS);
    let chosen = setup.converged(&CIDRS, |_| true).await;
    let routes = moto::routes(&setup.ec2, &setup.vpc.id).await;
    let first = &routes[&setup.vpc.tables[0]];
    assert!(
        first.iter().any(|(d, _)| d == PROTECTED),
        "protected route kept"
    );
    assert!(
        !first.iter().any(|(d, _)| d == FOREIGN),
        "route outside the spec deleted"
    );
    for table in &setup.vpc.tables {
        assert!(
            routes[table]
                .iter()
                .any(|(d, t)| d == "0.0.0.0/0" && t.starts_with("igw-")),
            "gateway route kept in {table}"
        );
    }
    assert_eq!(
        routes[&setup.vpc.unassociated_table], untouched[&setup.vpc.unassociated_table],
        "unassociated table untouched"
    );
    let distinct: std::collections::BTreeSet<_> = chosen.iter().collect();
    assert!(distinct.len() > 1, "CIDRs spread over hosts: {chosen:?}");
    let before = setup.ok_calls();
    assert_eq!(count(&before, "CreateRoute"), 9, "{before:?}");
    assert_eq!(count(&before, "DeleteRoute"), 1, "{before:?}");

    // The router carrying the first CIDR dies: its routes move, one
    // ReplaceRoute per route moved per table and no describe.
    let dead_eni = chosen[0].clone();
    let moved = chosen.iter().filter(|e| **e == dead_eni).count() as u64;
    setup.fail(setup.router_of(&dead_eni));
    let after_failover = setup.converged(&CIDRS, |eni| eni != dead_eni).await;
    for (before, after) in chosen.iter().zip(&after_failover) {
        if *before != dead_eni {
            assert_eq!(before, after, "a route on a live router moved");
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = setup.ok_calls();
    assert_eq!(
        count(&after, "ReplaceRoute") - count(&before, "ReplaceRoute"),
        moved * 3
    );
    for describe in [
        "DescribeInstances",
        "DescribeRouteTables",
        "DescribeSubnets",
    ] {
        assert_eq!(
            count(&after, describe),
            count(&before, describe),
            "{describe}: a failover needs no describe"
        );
    }

    // A CIDR leaves the spec: deleted from every table.
    setup.offer(&CIDRS[..2]);
    for _ in 0..200 {
        if setup.targets(CIDRS[2]).await.iter().all(Option::is_none) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(setup.targets(CIDRS[2]).await, [None, None, None]);
    let routes = moto::routes(&setup.ec2, &setup.vpc.id).await;
    assert!(
        routes[&setup.vpc.tables[0]]
            .iter()
            .any(|(d, _)| d == PROTECTED)
    );
}

#[tokio::test]
async fn terminated_routers_and_hand_deleted_routes_are_repaired_on_recheck() {
    let setup = start(Some(Duration::from_millis(500))).await;
    setup.offer(&CIDRS);
    let chosen = setup.converged(&CIDRS, |_| true).await;

    // The instance behind the first CIDR is terminated (moto keeps the route
    // "active" rather than blackhole; the instance state tells).
    let dead_eni = chosen[0].clone();
    let instance = setup.vpc.routers[setup.router_of(&dead_eni)].0.clone();
    setup
        .ec2
        .terminate_instances()
        .instance_ids(instance)
        .send()
        .await
        .unwrap();
    setup.converged(&CIDRS, |eni| eni != dead_eni).await;

    // An operator deletes a route by hand: the next recheck restores it.
    setup
        .ec2
        .delete_route()
        .route_table_id(&setup.vpc.tables[1])
        .destination_cidr_block(CIDRS[1])
        .send()
        .await
        .unwrap();
    assert_eq!(setup.targets(CIDRS[1]).await[1], None);
    setup.converged(&CIDRS, |eni| eni != dead_eni).await;
}

/// An idle recheck describes what can change by hand (instances, route
/// tables) and the scheduled events: three calls, six a minute at the
/// default 30 s. Subnets again only when one appears that the daemon has
/// not seen.
#[tokio::test]
async fn idle_rechecks_describe_instances_and_route_tables_only() {
    let setup = start(Some(Duration::from_millis(500))).await;
    setup.offer(&CIDRS);
    setup.converged(&CIDRS, |_| true).await;
    let before = setup.ok_calls();
    // Four rechecks, however long a loaded machine takes for them.
    let idle = setup.calls_once(&before, "DescribeInstances", 4).await;
    let delta = |action: &str| count(&idle, action) - count(&before, action);
    // The three go together; a snapshot may fall between them.
    for other in ["DescribeRouteTables", "DescribeInstanceStatus"] {
        let apart = delta("DescribeInstances").abs_diff(delta(other));
        assert!(apart <= 1, "{other}: {idle:?}");
    }
    assert_eq!(
        delta("DescribeSubnets"),
        0,
        "subnets are not described idle"
    );
    let mutating: u64 = ["CreateRoute", "ReplaceRoute", "DeleteRoute"]
        .iter()
        .map(|a| delta(a))
        .sum();
    assert_eq!(mutating, 0);

    // A new subnet, associated with a table: described once.
    let az = format!("{}a", moto::REGION);
    let subnet = moto::create_subnet(&setup.ec2, &setup.vpc.id, "127.0.9.0/24", &az).await;
    setup
        .ec2
        .associate_route_table()
        .route_table_id(&setup.vpc.unassociated_table)
        .subnet_id(subnet)
        .send()
        .await
        .unwrap();
    let described = setup.calls_once(&idle, "DescribeSubnets", 1).await;
    // Two more rechecks describe no subnet again.
    let after = setup.calls_once(&described, "DescribeInstances", 2).await;
    assert_eq!(
        count(&after, "DescribeSubnets") - count(&idle, "DescribeSubnets"),
        1,
        "{after:?}"
    );
}

#[tokio::test]
async fn a_wrong_route_target_is_corrected() {
    let setup = start(None).await;
    // A route for a spec CIDR already points at a router the spec does not
    // name for it (here: at a host outside the spec's list).
    let outsider = moto::launch(&setup.ec2, &setup.vpc.subnets[0], "127.0.1.99").await;
    setup
        .ec2
        .create_route()
        .route_table_id(&setup.vpc.tables[0])
        .destination_cidr_block(CIDRS[0])
        .network_interface_id(&outsider.1)
        .send()
        .await
        .unwrap();
    setup.offer(&CIDRS);
    setup.converged(&CIDRS, |eni| eni != outsider.1).await;
}

#[tokio::test]
async fn throttling_errors_and_slow_answers_are_retried_and_nothing_is_lost() {
    use common::fault_proxy::{Fault, FaultProxy};
    let moto = Moto::start();
    let ec2 = moto.client().await;
    let vpc = moto::build_vpc(&ec2, 3, &ROUTERS).await;
    let proxy = FaultProxy::start(&moto.url).await;
    let backend = Arc::new(moto.backend(&vpc.id, &proxy.url));
    let Inputs { specs, board, stop } = reconcile(&backend, Settings::default(), None, false);
    let setup = Setup {
        _moto: moto,
        ec2,
        vpc,
        backend,
        specs,
        board,
        _stop: stop,
    };

    // Start-up under faults: a describe fails, creations are throttled.
    proxy.inject(
        "DescribeRouteTables",
        [Fault::ServerError, Fault::Slow(Duration::from_millis(500))],
    );
    proxy.inject(
        "CreateRoute",
        [
            Fault::Throttle,
            Fault::ServerError,
            Fault::Throttle,
            Fault::Hang,
        ],
    );
    setup.offer(&CIDRS);
    let chosen = setup.converged(&CIDRS, |_| true).await;
    assert_eq!(proxy.pending("CreateRoute"), 0);
    let calls = setup.backend.calls();
    assert_eq!(calls[&("CreateRoute", Outcome::Ok)], 9, "{calls:?}");
    assert_eq!(calls[&("CreateRoute", Outcome::Throttled)], 2, "{calls:?}");
    assert_eq!(
        calls[&("CreateRoute", Outcome::Failed)],
        2,
        "500 and the timeout: {calls:?}"
    );

    // A failover while EC2 is failing harder than the retries cover: the
    // routes stay on the dead router (never deleted) until EC2 answers,
    // then move.
    let dead_eni = chosen[0].clone();
    proxy.inject("ReplaceRoute", [Fault::ServerError; 8]);
    setup.fail(setup.router_of(&dead_eni));
    while proxy.pending("ReplaceRoute") > 0 {
        for target in setup.targets(CIDRS[0]).await {
            assert!(target.is_some(), "a route went missing during the outage");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    setup.converged(&CIDRS, |eni| eni != dead_eni).await;
    let seen = proxy.calls();
    assert!(seen["ReplaceRoute"] >= 8 + 3, "{seen:?}");
}

#[tokio::test]
async fn source_dest_check_is_turned_off_when_asked() {
    let moto = Moto::start();
    let ec2 = moto.client().await;
    let vpc = moto::build_vpc(&ec2, 2, &ROUTERS[..2]).await;
    let eni = vpc.routers[ROUTERS[0]].1.clone();
    let check = |on: bool| {
        ec2.modify_network_interface_attribute()
            .network_interface_id(&eni)
            .source_dest_check(
                aws_sdk_ec2::types::AttributeBooleanValue::builder()
                    .value(on)
                    .build(),
            )
            .send()
    };
    check(true).await.unwrap();
    let backend = Arc::new(moto.backend(&vpc.id, &moto.url));
    let inputs = reconcile(&backend, Settings::default(), None, true);
    let specs = &inputs.specs;
    specs
        .offer(
            "test",
            [(CIDRS[0].to_string(), vec![ROUTERS[0].to_string()])],
        )
        .unwrap();
    let enabled = || async {
        let answer = ec2
            .describe_instances()
            .instance_ids(&vpc.routers[ROUTERS[0]].0)
            .send()
            .await
            .unwrap();
        answer.reservations()[0].instances()[0].network_interfaces()[0]
            .source_dest_check()
            .unwrap()
    };
    for _ in 0..200 {
        if !enabled().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!enabled().await, "source/destination check still on");
    let calls = backend.calls();
    assert_eq!(
        calls[&("ModifyNetworkInterfaceAttribute", Outcome::Ok)],
        1,
        "{calls:?}"
    );
}
