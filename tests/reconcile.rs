//! The reconciler against the embedded VPC, with health fed in directly:
//! convergence, failover with one call per route moved, deletions, repair
//! on recheck, nothing done while the VPC cannot be observed, and the
//! balanced spread restored on request.

mod common;

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use vpcrouter::cloud::model::{Target, VpcState};
use vpcrouter::cloud::sim::SimVpc;
use vpcrouter::health::{HealthBoard, HostReport, State};
use vpcrouter::reconcile::Reconciler;
use vpcrouter::reconcile::plan::Settings;
use vpcrouter::spec_store::SpecStore;

const HOSTS: [&str; 3] = ["10.0.1.10", "10.0.1.11", "10.0.2.10"];

fn topology() -> VpcState {
    serde_json::from_value(json!({
        "subnets": [{"id": "subnet-1", "az": "az-1"}, {"id": "subnet-2", "az": "az-2"}],
        "interfaces": [
            {"id": "eni-a", "instance": "i-a", "subnet": "subnet-1", "ips": ["10.0.1.10"], "running": true},
            {"id": "eni-b", "instance": "i-b", "subnet": "subnet-1", "ips": ["10.0.1.11"], "running": true},
            {"id": "eni-c", "instance": "i-c", "subnet": "subnet-2", "ips": ["10.0.2.10"], "running": true}
        ],
        "route_tables": [
            {"id": "rtb-1", "subnets": ["subnet-1"], "routes": [{"destination": "0.0.0.0/0", "target": {"other": "igw-1"}}]},
            {"id": "rtb-2", "subnets": ["subnet-2"], "routes": [{"destination": "10.99.0.0/16", "target": {"interface": "eni-a"}}]}
        ]
    }))
    .unwrap()
}

struct Setup {
    sim: Arc<SimVpc>,
    specs: Arc<SpecStore>,
    board: Arc<HealthBoard>,
    rebalance: watch::Sender<u64>,
    _stop: watch::Sender<bool>,
}

fn start(recheck: Option<Duration>) -> Setup {
    let sim = Arc::new(SimVpc::new(topology()));
    let specs = Arc::new(SpecStore::default());
    let board = Arc::new(HealthBoard::default());
    let (stop, shutdown) = watch::channel(false);
    let (rebalance, rebalance_requests) = watch::channel(0);
    let reconciler = Reconciler {
        backend: sim.clone(),
        specs: specs.subscribe(),
        health: board.subscribe(),
        settings: Settings::default(),
        recheck,
        disable_source_dest_check: false,
        leadership: None,
        rebalance_requests,
        moves: Default::default(),
        throttle_alert: Duration::from_secs(60),
        observers: Default::default(),
        shutdown,
    };
    tokio::spawn(reconciler.run());
    Setup {
        sim,
        specs,
        board,
        rebalance,
        _stop: stop,
    }
}

fn offer(specs: &SpecStore, cidrs: &[&str]) {
    let hosts: Vec<String> = HOSTS.iter().map(|h| h.to_string()).collect();
    specs
        .offer("test", cidrs.iter().map(|c| (c.to_string(), hosts.clone())))
        .unwrap();
}

/// Interface targets of `cidr` in each table.
fn targets(sim: &SimVpc, cidr: &str) -> Vec<Option<String>> {
    let cidr = cidr.parse().unwrap();
    sim.snapshot()
        .route_tables
        .iter()
        .map(|t| {
            t.routes
                .iter()
                .find(|r| r.destination == cidr)
                .and_then(|r| match &r.target {
                    Target::Interface(eni) => Some(eni.clone()),
                    _ => None,
                })
        })
        .collect()
}

#[tokio::test]
async fn nothing_is_done_before_the_first_spec() {
    let setup = start(None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        setup.sim.snapshot(),
        topology(),
        "the foreign-CIDR route stays until a spec says otherwise"
    );
}

#[tokio::test]
async fn routes_converge_then_fail_over_with_one_call_per_route_moved() {
    let setup = start(None);
    let cidrs = [
        "10.55.0.0/16",
        "10.56.0.0/16",
        "10.57.0.0/16",
        "10.58.0.0/16",
    ];
    offer(&setup.specs, &cidrs);
    common::eventually("all routes set", || {
        cidrs
            .iter()
            .all(|c| targets(&setup.sim, c).iter().all(Option::is_some))
    })
    .await;
    common::eventually("route outside the spec deleted", || {
        targets(&setup.sim, "10.99.0.0/16") == [None, None]
    })
    .await;
    for cidr in cidrs {
        let t = targets(&setup.sim, cidr);
        assert_eq!(t[0], t[1], "{cidr}: one host in every table");
    }
    let (describes, mutations) = setup.sim.calls();
    assert_eq!(describes, 1);
    assert_eq!(mutations, 4 * 2 + 1);

    // The host carrying most routes dies.
    let before: Vec<_> = cidrs
        .iter()
        .map(|c| targets(&setup.sim, c)[0].clone().unwrap())
        .collect();
    let busiest = ["eni-a", "eni-b", "eni-c"]
        .into_iter()
        .max_by_key(|e| before.iter().filter(|t| t == e).count())
        .unwrap();
    let dead = HOSTS[["eni-a", "eni-b", "eni-c"]
        .iter()
        .position(|e| *e == busiest)
        .unwrap()];
    let moved = before.iter().filter(|t| *t == busiest).count() as u64;
    setup.board.report(
        "test",
        vec![HostReport {
            host: dead.parse().unwrap(),
            state: State::Failed,
            rtt_us: None,
            detail: None,
        }],
    );
    common::eventually("routes moved off the dead host", || {
        cidrs.iter().all(|c| {
            targets(&setup.sim, c)
                .iter()
                .all(|t| t.as_deref() != Some(busiest))
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (describes_after, mutations_after) = setup.sim.calls();
    assert_eq!(
        describes_after, describes,
        "a health event needs no describe"
    );
    assert_eq!(
        mutations_after - mutations,
        moved * 2,
        "one call per route moved per table"
    );
    let untouched: Vec<_> = cidrs
        .iter()
        .zip(&before)
        .filter(|(_, t)| *t != busiest)
        .collect();
    for (cidr, target) in untouched {
        assert_eq!(
            targets(&setup.sim, cidr)[0].as_ref(),
            Some(target),
            "{cidr} moved needlessly"
        );
    }
}

#[tokio::test]
async fn removed_cidrs_are_deleted_and_hand_deleted_routes_restored_on_recheck() {
    let setup = start(Some(Duration::from_millis(200)));
    offer(&setup.specs, &["10.55.0.0/16", "10.56.0.0/16"]);
    common::eventually("set", || {
        targets(&setup.sim, "10.56.0.0/16")
            .iter()
            .all(Option::is_some)
    })
    .await;
    offer(&setup.specs, &["10.55.0.0/16"]);
    common::eventually("deleted", || {
        targets(&setup.sim, "10.56.0.0/16") == [None, None]
    })
    .await;
    // An operator deletes a route by hand; the recheck puts it back.
    setup.sim.edit(|vpc| {
        vpc.route_tables[1]
            .routes
            .retain(|r| r.destination != "10.55.0.0/16".parse().unwrap())
    });
    common::eventually("restored", || {
        targets(&setup.sim, "10.55.0.0/16")
            .iter()
            .all(Option::is_some)
    })
    .await;
}

#[tokio::test]
async fn nothing_changes_while_the_vpc_cannot_be_observed() {
    let setup = start(None);
    setup.sim.set_unavailable(true);
    offer(&setup.specs, &["10.55.0.0/16"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    setup.sim.set_unavailable(false);
    assert_eq!(setup.sim.snapshot(), topology());
    // Back: the retry (1 s backoff) observes and converges.
    common::eventually("converged after the outage", || {
        targets(&setup.sim, "10.55.0.0/16")
            .iter()
            .all(Option::is_some)
    })
    .await;
}

fn set_health(board: &HealthBoard, host: &str, state: State) {
    let report = HostReport {
        host: host.parse().unwrap(),
        state,
        rtt_us: None,
        detail: None,
    };
    board.report("test", vec![report]);
}

/// How many CIDRs each ENI carries in the first table.
fn spread(sim: &SimVpc) -> std::collections::BTreeMap<String, usize> {
    let mut loads = std::collections::BTreeMap::new();
    for route in &sim.snapshot().route_tables[0].routes {
        if let Target::Interface(eni) = &route.target {
            *loads.entry(eni.clone()).or_insert(0) += 1;
        }
    }
    loads
}

#[tokio::test]
async fn a_recovered_router_gets_routes_back_only_when_the_operator_asks() {
    let setup = start(None);
    let owned: Vec<String> = (0..30).map(|c| format!("10.{}.0.0/16", 100 + c)).collect();
    let cidrs: Vec<&str> = owned.iter().map(String::as_str).collect();
    offer(&setup.specs, &cidrs);
    let loads = |sim: &SimVpc| spread(sim).into_values().collect::<Vec<_>>();
    common::eventually("30 CIDRs, 10 on each router", || {
        loads(&setup.sim) == [10, 10, 10]
    })
    .await;

    set_health(&setup.board, HOSTS[0], State::Failed);
    common::eventually("eni-a's 10 spread over the other two", || {
        loads(&setup.sim) == [15, 15]
    })
    .await;
    set_health(&setup.board, HOSTS[0], State::Healthy);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(spread(&setup.sim).get("eni-a"), None, "no fail-back");

    let (_, mutations) = setup.sim.calls();
    setup.rebalance.send_modify(|n| *n += 1);
    common::eventually("back to 10 each", || loads(&setup.sim) == [10, 10, 10]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, after) = setup.sim.calls();
    assert_eq!(
        after - mutations,
        10 * 2,
        "the fewest moves: 10 CIDRs in 2 tables, over passes of 8 CIDRs"
    );
    // Asking again with the bound held moves nothing.
    setup.rebalance.send_modify(|n| *n += 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(setup.sim.calls().1, after);
}
