//! Planner figures at scale: 1,000 CIDRs x 20 route tables x 100 hosts.
//! Plan time for a full recheck with nothing to do, for the failover of one
//! host, for the initial creation of every route (also with AZ affinity),
//! and for a rebalance after that host's recovery; the spread they make.
//! Pure computation.
//!
//! Then the EC2 budget model: the real reconciler on the embedded VPC
//! behind EC2's token buckets and a per-call latency, in time scaled down
//! `TIME_SCALE` times (rates that much faster, latency that much shorter,
//! the figure scaled back): how long until a dead host carrying 200 routes
//! has none left.

use std::sync::Arc;
use std::time::{Duration, Instant};
use vpcrouter::cloud::budget::{BucketSize, Budget, EC2_DESCRIBE, EC2_MUTATING};
use vpcrouter::cloud::claims::TagChange;
use vpcrouter::cloud::model::{Interface, RouteTable, Subnet, Target, VpcState};
use vpcrouter::cloud::operation::Operation;
use vpcrouter::cloud::sim::SimVpc;
use vpcrouter::cloud::{CloudError, VpcBackend};
use vpcrouter::health::{HealthBoard, HealthSnapshot, HostReport, State};
use vpcrouter::reconcile::Reconciler;
use vpcrouter::reconcile::plan::{Settings, plan};
use vpcrouter::spec::{RouteOptions, RouteSpec};
use vpcrouter::spec_store::SpecStore;

const CIDRS: usize = 1000;
const TABLES: usize = 20;
const HOSTS: usize = 100;
/// Hosts eligible per CIDR (a window that shifts with the CIDR, so every
/// host serves some): all 100 would make the spec larger than the 1 MiB a
/// spec may be.
const ELIGIBLE: usize = 64;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn timed(runs: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let host = |h: usize| format!("10.0.{}.{}", h / 200, 10 + h % 200);
    let vpc = VpcState {
        subnets: (0..TABLES)
            .map(|t| Subnet {
                id: format!("subnet-{t}"),
                az: format!("az-{}", t % 3),
            })
            .collect(),
        interfaces: (0..HOSTS)
            .map(|h| Interface {
                id: format!("eni-{h}"),
                instance: Some(format!("i-{h}")),
                subnet: format!("subnet-{}", h % TABLES),
                ips: vec![host(h).parse().unwrap()],
                running: true,
                source_dest_check: false,
                instance_state: None,
                maintenance: None,
            })
            .collect(),
        route_tables: (0..TABLES)
            .map(|t| RouteTable {
                id: format!("rtb-{t}"),
                subnets: vec![format!("subnet-{t}")],
                ..RouteTable::default()
            })
            .collect(),
    };
    let spec = RouteSpec::from_entries((0..CIDRS).map(|c| {
        let hosts: Vec<String> = (0..ELIGIBLE).map(|k| host((c * 7 + k) % HOSTS)).collect();
        (format!("10.{}.{}.0/24", 100 + c / 256, c % 256), hosts)
    }))
    .unwrap();
    let healthy = HealthSnapshot::default();
    let settings = Settings::default();

    let empty_plan = plan(&spec, &healthy, &vpc, &settings);
    let mut converged = vpc.clone();
    for op in &empty_plan.operations {
        converged.apply(op).unwrap();
    }
    // The host carrying the most routes dies.
    let mut load = vec![0usize; HOSTS];
    for route in &converged.route_tables[0].routes {
        if let Target::Interface(eni) = &route.target {
            load[eni[4..].parse::<usize>().unwrap()] += 1;
        }
    }
    let (busiest, carried) = load.iter().enumerate().max_by_key(|(_, n)| **n).unwrap();
    let failed = HealthSnapshot {
        failed: [host(busiest).parse().unwrap()].into(),
        ..HealthSnapshot::default()
    };

    println!(
        "planner benchmark: {CIDRS} CIDRs x {TABLES} tables x {HOSTS} hosts (median of 20 runs)"
    );
    let create = timed(20, || {
        assert_eq!(
            plan(&spec, &healthy, &vpc, &settings).operations.len(),
            CIDRS * TABLES
        )
    });
    println!(
        "initial plan ({} creates)                     {:>8.2} ms",
        CIDRS * TABLES,
        create.as_secs_f64() * 1e3
    );
    let recheck = timed(20, || {
        assert!(
            plan(&spec, &healthy, &converged, &settings)
                .operations
                .is_empty()
        )
    });
    println!(
        "full recheck, nothing to do                      {:>8.2} ms",
        recheck.as_secs_f64() * 1e3
    );
    let failover = timed(20, || {
        assert_eq!(
            plan(&spec, &failed, &converged, &settings).operations.len(),
            carried * TABLES
        )
    });
    println!(
        "failover of the busiest host ({carried} CIDRs x {TABLES} tables) {:>8.2} ms",
        failover.as_secs_f64() * 1e3
    );
    let spread = load.iter().filter(|n| **n > 0).count();
    let fewest = load.iter().min().unwrap();
    println!(
        "routes spread over {spread} of {HOSTS} hosts; most / fewest CIDRs on one host: {carried} / {fewest} of {CIDRS} (bound {})",
        CIDRS.div_ceil(HOSTS)
    );
    let affinity = Settings {
        az_affinity: true,
        ..Settings::default()
    };
    let create_in_azs = timed(20, || {
        assert_eq!(
            plan(&spec, &healthy, &vpc, &affinity).operations.len(),
            CIDRS * TABLES
        )
    });
    println!(
        "initial plan with AZ affinity (3 AZs)              {:>8.2} ms",
        create_in_azs.as_secs_f64() * 1e3
    );
    // The busiest host fails over and recovers: its CIDRs stay on the
    // survivors until the operator asks for a rebalance.
    let mut recovered = converged.clone();
    for op in plan(&spec, &failed, &converged, &settings).operations {
        recovered.apply(&op).unwrap();
    }
    let rebalance = Settings {
        rebalance: true,
        ..Settings::default()
    };
    let mut moves = 0;
    let rebalanced = timed(20, || {
        moves = plan(&spec, &healthy, &recovered, &rebalance)
            .operations
            .len();
    });
    println!(
        "rebalance after its recovery ({moves} replaces)          {:>8.2} ms",
        rebalanced.as_secs_f64() * 1e3
    );

    tiered(&spec, &vpc, &host);

    // The host whose routes number closest to 200.
    let (victim, carried) = load
        .iter()
        .enumerate()
        .min_by_key(|(_, n)| (**n * TABLES).abs_diff(200))
        .unwrap();
    let routes = carried * TABLES;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let repair =
        runtime.block_on(budget_model(&spec, converged, &host(victim), victim)) * TIME_SCALE;
    println!(
        "EC2 budget model (mutating {EC2_MUTATING}/s, {} ms a call, {CONCURRENT} in flight): \
         a dead host carrying {routes} routes repaired in {:.1} s",
        CALL_LATENCY.as_millis(),
        repair.as_secs_f64()
    );
}

/// The same spec with preferred routers (issue 24): of each CIDR's 64
/// hosts, those of an even index are tier 1 and the others tier 2, with
/// weights 1 to 4, and a NAT gateway as every CIDR's fallback. The first
/// plan, a recheck, the failover of the busiest tier-1 host, and a plan
/// with every host failed (every route to its fallback).
fn tiered(spec: &RouteSpec, vpc: &VpcState, host: &impl Fn(usize) -> String) {
    let options = spec.routes().iter().map(|(cidr, hosts)| RouteOptions {
        cidr: cidr.to_string(),
        fallback: Some("nat-0123456789abcdef0".into()),
        hosts: (hosts.iter())
            .map(|h| {
                let index = (0..HOSTS).find(|i| host(*i) == h.to_string()).unwrap();
                (h.to_string(), 1 + index as u32 % 2, 1 + index as u32 % 4)
            })
            .collect(),
    });
    let spec = spec.clone().with_options(options).unwrap();
    let (healthy, settings) = (HealthSnapshot::default(), Settings::default());
    let first = plan(&spec, &healthy, vpc, &settings);
    let create = timed(20, || {
        assert_eq!(
            plan(&spec, &healthy, vpc, &settings).operations.len(),
            CIDRS * TABLES
        )
    });
    let mut converged = vpc.clone();
    for op in &first.operations {
        converged.apply(op).unwrap();
    }
    let mut load = vec![0usize; HOSTS];
    for route in &converged.route_tables[0].routes {
        if let Target::Interface(eni) = &route.target {
            load[eni[4..].parse::<usize>().unwrap()] += 1;
        }
    }
    let recheck = timed(20, || {
        assert!(
            plan(&spec, &healthy, &converged, &settings)
                .operations
                .is_empty()
        )
    });
    let (busiest, carried) = load.iter().enumerate().max_by_key(|(_, n)| **n).unwrap();
    let failed = HealthSnapshot {
        failed: [host(busiest).parse().unwrap()].into(),
        ..HealthSnapshot::default()
    };
    let failover = timed(20, || {
        assert_eq!(
            plan(&spec, &failed, &converged, &settings).operations.len(),
            carried * TABLES
        )
    });
    let all_failed = HealthSnapshot {
        failed: (0..HOSTS).map(|h| host(h).parse().unwrap()).collect(),
        ..HealthSnapshot::default()
    };
    let fallback = timed(20, || {
        assert_eq!(
            plan(&spec, &all_failed, &converged, &settings)
                .operations
                .len(),
            CIDRS * TABLES
        )
    });
    println!("with tiers (2), weights (1-4) and a fallback:");
    println!(
        "  initial plan ({} creates)                   {:>8.2} ms",
        CIDRS * TABLES,
        create.as_secs_f64() * 1e3
    );
    println!(
        "  full recheck, nothing to do                    {:>8.2} ms",
        recheck.as_secs_f64() * 1e3
    );
    println!(
        "  failover of the busiest host ({carried} CIDRs x {TABLES} tables) {:>8.2} ms",
        failover.as_secs_f64() * 1e3
    );
    println!(
        "  every host failed: all to the fallback        {:>8.2} ms",
        fallback.as_secs_f64() * 1e3
    );
    let by_weight = |w: usize| {
        let on: Vec<usize> = (0..HOSTS)
            .filter(|h| h % 2 == 0 && 1 + h % 4 == w)
            .map(|h| load[h])
            .collect();
        on.iter().sum::<usize>() as f64 / on.len().max(1) as f64
    };
    println!(
        "  CIDRs per tier-1 host by weight: w1 {:.1}, w3 {:.1}; tier 2 hosts carry {}",
        by_weight(1),
        by_weight(3),
        (0..HOSTS)
            .filter(|h| h % 2 == 1)
            .map(|h| load[h])
            .sum::<usize>()
    );
}

/// What a mutating EC2 call takes, round trip (the model's assumption).
const CALL_LATENCY: Duration = Duration::from_millis(100);
/// How much faster than EC2 the model runs (the daemon's own work between
/// calls is a few milliseconds, so the scaled figure is EC2's pace).
const TIME_SCALE: u32 = 10;
/// The reconciler's bound on calls in flight (`reconcile::run`).
const CONCURRENT: usize = 8;

/// The embedded VPC paced like EC2: every call takes a token of EC2's
/// buckets, then `CALL_LATENCY`.
struct Paced {
    sim: SimVpc,
    budget: Budget,
}

impl VpcBackend for Paced {
    async fn describe(&self) -> Result<VpcState, CloudError> {
        self.budget.describe.take().await;
        tokio::time::sleep(CALL_LATENCY / TIME_SCALE).await;
        self.sim.describe().await
    }

    async fn apply(&self, op: &Operation) -> Result<(), CloudError> {
        self.budget.mutating.take().await;
        tokio::time::sleep(CALL_LATENCY / TIME_SCALE).await;
        self.sim.apply(op).await
    }

    async fn disable_source_dest_check(&self, eni: &str) -> Result<(), CloudError> {
        self.budget.mutating.take().await;
        self.sim.disable_source_dest_check(eni).await
    }

    async fn write_tags(&self, change: &TagChange) -> Result<(), CloudError> {
        self.budget.mutating.take().await;
        tokio::time::sleep(CALL_LATENCY / TIME_SCALE).await;
        self.sim.write_tags(change).await
    }
}

/// Scaled time from `dead`'s failure report until no route targets it.
async fn budget_model(spec: &RouteSpec, vpc: VpcState, dead: &str, index: usize) -> Duration {
    let backend = Arc::new(Paced {
        sim: SimVpc::new(vpc),
        budget: Budget::new(faster(EC2_MUTATING), faster(EC2_DESCRIBE)),
    });
    let specs = Arc::new(SpecStore::default());
    let board = Arc::new(HealthBoard::default());
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(
        Reconciler {
            backend: backend.clone(),
            specs: specs.subscribe(),
            health: board.subscribe(),
            settings: Settings::default(),
            recheck: None,
            disable_source_dest_check: false,
            leadership: None,
            rebalance_requests: tokio::sync::watch::channel(0).1,
            moves: Default::default(),
            throttle_alert: Duration::from_secs(60),
            observers: Default::default(),
            shutdown,
        }
        .run(),
    );
    let entries = spec.routes().iter().map(|(cidr, hosts)| {
        (
            cidr.to_string(),
            hosts.iter().map(|h| h.to_string()).collect::<Vec<String>>(),
        )
    });
    specs.offer("bench", entries).unwrap();
    // Converged already: the start-up describe finds nothing to do.
    tokio::time::sleep(Duration::from_secs(5) / TIME_SCALE).await;
    assert_eq!(backend.sim.calls().1, 0, "the VPC was converged");
    let eni = Target::Interface(format!("eni-{index}"));
    let start = tokio::time::Instant::now();
    board.report(
        "bench",
        vec![HostReport {
            host: dead.parse().unwrap(),
            state: State::Failed,
            rtt_us: None,
            detail: None,
        }],
    );
    while backend
        .sim
        .snapshot()
        .route_tables
        .iter()
        .any(|t| t.routes.iter().any(|r| r.target == eni))
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

fn faster(size: BucketSize) -> BucketSize {
    BucketSize {
        rate: size.rate * f64::from(TIME_SCALE),
        ..size
    }
}
