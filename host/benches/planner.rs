//! Planner figures at scale: 1,000 CIDRs x 20 route tables x 100 hosts.
//! Plan time for a full recheck with nothing to do, for the failover of one
//! host, and for the initial creation of every route. Pure computation.

use std::time::{Duration, Instant};
use vpcrouter::cloud::model::{Interface, RouteTable, Subnet, Target, VpcState};
use vpcrouter::health::HealthSnapshot;
use vpcrouter::reconcile::plan::{Settings, plan};
use vpcrouter::spec::RouteSpec;

const CIDRS: usize = 1000;
const TABLES: usize = 20;
const HOSTS: usize = 100;

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
            })
            .collect(),
        route_tables: (0..TABLES)
            .map(|t| RouteTable {
                id: format!("rtb-{t}"),
                subnets: vec![format!("subnet-{t}")],
                routes: vec![],
            })
            .collect(),
    };
    let hosts: Vec<String> = (0..HOSTS).map(host).collect();
    let spec = RouteSpec::from_entries((0..CIDRS).map(|c| {
        (
            format!("10.{}.{}.0/24", 100 + c / 256, c % 256),
            hosts.clone(),
        )
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
        questionable: Default::default(),
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
    println!("routes spread over {spread} of {HOSTS} hosts; busiest carries {carried} of {CIDRS}");
}
