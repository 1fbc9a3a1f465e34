//! CloudWatch metrics without an API call: every `--emf-interval` a JSON
//! log line in CloudWatch's embedded metric format (an `_aws` block naming
//! the metrics, their values beside it), which the CloudWatch agent,
//! Fluent Bit or a container's awslogs driver turn into metrics in the
//! namespace `vpcrouter`, dimension `VpcId`: what a NAT gateway shows,
//! for NAT instances. Few metrics, no per-CIDR dimension (each value of a
//! dimension is a metric CloudWatch bills for).

use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

use crate::health::{HealthSnapshot, State};
use crate::plugin::PluginStatus;
use crate::reconcile::report::RouteReport;
use crate::spec::RouteSpec;

/// The namespace the metrics go in.
pub const NAMESPACE: &str = "vpcrouter";

/// What the figures are read from.
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

    fn read(sources: &Sources, failovers: u64) -> Self {
        let spec = sources.specs.borrow().clone();
        let health = sources.health.borrow().clone();
        let (eligible_routers_min, cidrs_without_router) = match &spec {
            Some(spec) => Self::eligible(spec, &health),
            None => (None, 0),
        };
        let probe_rtt_ms = (sources.checkers.iter())
            .filter_map(|status| status.borrow().rounds.as_ref()?.rtt_us)
            .map(|(_, median, _)| f64::from(median) / 1e3)
            .reduce(f64::max);
        Self {
            failovers,
            routes_on_fallback: sources.routes.borrow().fallbacks.len() as u64,
            eligible_routers_min,
            cidrs_without_router,
            probe_rtt_ms,
        }
    }

    /// The `_aws` block naming the metrics present, for a line at `at`.
    pub fn metadata(&self, at: SystemTime) -> serde_json::Value {
        let mut metrics = vec![
            serde_json::json!({"Name": "Failovers", "Unit": "Count"}),
            serde_json::json!({"Name": "RoutesOnFallback", "Unit": "Count"}),
            serde_json::json!({"Name": "CidrsWithoutRouter", "Unit": "Count"}),
        ];
        if self.eligible_routers_min.is_some() {
            metrics.push(serde_json::json!({"Name": "EligibleRoutersMin", "Unit": "Count"}));
        }
        if self.probe_rtt_ms.is_some() {
            metrics.push(serde_json::json!({"Name": "ProbeRoundTrip", "Unit": "Milliseconds"}));
        }
        let millis = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        serde_json::json!({
            "Timestamp": millis,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["VpcId"]],
                "Metrics": metrics,
            }],
        })
    }
}

/// Log the figures every `every` until `shutdown`.
pub fn spawn(
    sources: Sources,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        let mut counted = crate::metrics::global().failovers.get();
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let total = crate::metrics::global().failovers.get();
            let figures = Figures::read(&sources, total.saturating_sub(counted));
            counted = total;
            log(&sources.vpc, &figures);
        }
    })
}

/// One EMF line (with `--log-format json`, the `_aws` block is an object
/// of the line and the figures its numbers).
fn log(vpc: &str, figures: &Figures) {
    let metadata = figures.metadata(SystemTime::now()).to_string();
    tracing::info!(
        target: "vpcrouter::emf",
        _aws = metadata.as_str(),
        VpcId = vpc,
        Failovers = figures.failovers,
        RoutesOnFallback = figures.routes_on_fallback,
        CidrsWithoutRouter = figures.cidrs_without_router,
        EligibleRoutersMin = figures.eligible_routers_min,
        ProbeRoundTrip = figures.probe_rtt_ms,
        "metrics"
    );
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

    #[test]
    fn the_metadata_names_what_the_line_holds() {
        let figures = Figures {
            failovers: 2,
            routes_on_fallback: 0,
            eligible_routers_min: None,
            cidrs_without_router: 0,
            probe_rtt_ms: Some(0.4),
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let block = figures.metadata(at);
        assert_eq!(block["Timestamp"], 1_700_000_000_123u64);
        let directive = &block["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "vpcrouter");
        assert_eq!(directive["Dimensions"], serde_json::json!([["VpcId"]]));
        let names: Vec<&str> = (directive["Metrics"].as_array().unwrap().iter())
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Failovers",
                "RoutesOnFallback",
                "CidrsWithoutRouter",
                "ProbeRoundTrip"
            ]
        );
    }
}
