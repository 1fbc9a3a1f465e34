//! CloudWatch metrics: the figures an operator of NAT instances wants
//! beside a NAT gateway's (failovers, routes on fallback, eligible routers,
//! probe round trip), in the namespace `vpcrouter` with the dimension
//! `VpcId`. Two ways out, each on its own interval: log lines in the
//! embedded metric format (`emf`, no API call) and `PutMetricData` (`put`,
//! calls on a budget of their own). Few metrics, no per-CIDR dimension
//! (each value of a dimension is a metric CloudWatch bills for).

pub mod emf;
pub mod put;

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Interval;

use crate::health::{HealthSnapshot, State};
use crate::plugin::PluginStatus;
use crate::reconcile::report::RouteReport;
use crate::spec::RouteSpec;

/// The namespace the metrics go in.
pub const NAMESPACE: &str = "vpcrouter";

/// What the figures are read from.
#[derive(Clone)]
pub struct Sources {
    pub vpc: String,
    pub specs: watch::Receiver<Option<Arc<RouteSpec>>>,
    pub health: watch::Receiver<HealthSnapshot>,
    pub routes: watch::Receiver<RouteReport>,
    /// The health checkers' status (their last round's round trips).
    pub checkers: Vec<watch::Receiver<PluginStatus>>,
}

/// One interval's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Routes moved off a failed or questionable router in the interval.
    pub failovers: u64,
    /// Routes on their CIDR's fallback (a NAT gateway, ...) now.
    pub routes_on_fallback: u64,
    /// The fewest routers any CIDR could use now (none: no spec yet).
    pub eligible_routers_min: Option<u64>,
    /// CIDRs with no router they could use now.
    pub cidrs_without_router: u64,
    /// The slowest health checker's median probe round trip, last round.
    pub probe_rtt_ms: Option<f64>,
}

/// A metric's name and unit, as CloudWatch spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
}

pub const FAILOVERS: Metric = Metric {
    name: "Failovers",
    unit: "Count",
};
pub const ROUTES_ON_FALLBACK: Metric = Metric {
    name: "RoutesOnFallback",
    unit: "Count",
};
pub const CIDRS_WITHOUT_ROUTER: Metric = Metric {
    name: "CidrsWithoutRouter",
    unit: "Count",
};
pub const ELIGIBLE_ROUTERS_MIN: Metric = Metric {
    name: "EligibleRoutersMin",
    unit: "Count",
};
pub const PROBE_ROUND_TRIP: Metric = Metric {
    name: "ProbeRoundTrip",
    unit: "Milliseconds",
};

impl Figures {
    /// Routers each CIDR could use: probed, not failed, not drained.
    fn eligible(spec: &RouteSpec, health: &HealthSnapshot) -> (Option<u64>, u64) {
        let counts: Vec<u64> = (spec.routes().values())
            .map(|hosts| {
                (hosts.iter())
                    .filter(|h| {
                        health.probed(h)
                            && health.state(h) != State::Failed
                            && !health.drained.contains_key(h)
                    })
                    .count() as u64
            })
            .collect();
        let without = counts.iter().filter(|n| **n == 0).count() as u64;
        (counts.into_iter().min(), without)
    }

    /// The metrics present, with their values.
    pub fn values(&self) -> Vec<(Metric, f64)> {
        let mut values = vec![
            (FAILOVERS, self.failovers as f64),
            (ROUTES_ON_FALLBACK, self.routes_on_fallback as f64),
            (CIDRS_WITHOUT_ROUTER, self.cidrs_without_router as f64),
        ];
        if let Some(min) = self.eligible_routers_min {
            values.push((ELIGIBLE_ROUTERS_MIN, min as f64));
        }
        if let Some(rtt) = self.probe_rtt_ms {
            values.push((PROBE_ROUND_TRIP, rtt));
        }
        values
    }
}

/// Reads the figures, each reading counting the failovers since the last.
pub struct Meter {
    sources: Sources,
    counted: u64,
}

impl Meter {
    pub fn new(sources: Sources) -> Self {
        Self {
            sources,
            counted: crate::metrics::global().failovers.get(),
        }
    }

    pub fn vpc(&self) -> &str {
        &self.sources.vpc
    }

    pub fn read(&mut self) -> Figures {
        let total = crate::metrics::global().failovers.get();
        let failovers = total.saturating_sub(self.counted);
        self.counted = total;
        let sources = &self.sources;
        let spec = sources.specs.borrow().clone();
        let health = sources.health.borrow().clone();
        let (eligible_routers_min, cidrs_without_router) = match &spec {
            Some(spec) => Figures::eligible(spec, &health),
            None => (None, 0),
        };
        let probe_rtt_ms = (sources.checkers.iter())
            .filter_map(|status| status.borrow().rounds.as_ref()?.rtt_us)
            .map(|(_, median, _)| f64::from(median) / 1e3)
            .reduce(f64::max);
        Figures {
            failovers,
            routes_on_fallback: sources.routes.borrow().fallbacks.len() as u64,
            eligible_routers_min,
            cidrs_without_router,
            probe_rtt_ms,
        }
    }
}

/// Ticks every `every`, the first an interval from now; a late tick is
/// not made up for.
fn ticks(every: Duration) -> Interval {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

/// Wait for the next tick: false at shutdown.
async fn tick(ticks: &mut Interval, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = ticks.tick() => true,
        _ = shutdown.wait_for(|stop| *stop) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn eligible_routers_leave_out_the_failed_the_drained_and_the_unprobed() {
        let spec = RouteSpec::from_json(
            br#"{"10.55.0.0/16": ["10.0.0.1", "10.0.0.2", "10.0.0.3"], "10.56.0.0/16": ["10.0.0.3"]}"#,
        )
        .unwrap();
        let ip = |s: &str| s.parse().unwrap();
        let mut health = HealthSnapshot {
            probed: Some(BTreeSet::from([
                ip("10.0.0.1"),
                ip("10.0.0.2"),
                ip("10.0.0.3"),
            ])),
            ..HealthSnapshot::default()
        };
        assert_eq!(Figures::eligible(&spec, &health), (Some(1), 0));
        health.failed.insert(ip("10.0.0.3"));
        assert_eq!(Figures::eligible(&spec, &health), (Some(0), 1));
        health.failed.clear();
        health.drained.insert(
            ip("10.0.0.1"),
            crate::health::Drain::new("patching", None).unwrap(),
        );
        health.probed = Some(BTreeSet::from([ip("10.0.0.1"), ip("10.0.0.3")]));
        assert_eq!(Figures::eligible(&spec, &health), (Some(1), 0));
    }
}
