//! Metrics without an API call: every `--emf-interval` a JSON log line in
//! CloudWatch's embedded metric format (an `_aws` block naming the
//! metrics, their values beside it), which the CloudWatch agent, Fluent
//! Bit or a container's awslogs driver turn into metrics.

use std::time::{Duration, SystemTime};
use tokio::sync::watch;

use super::{Figures, Meter, NAMESPACE, Sources};

/// The `_aws` block naming the metrics present, for a line at `at`.
pub fn metadata(figures: &Figures, at: SystemTime) -> serde_json::Value {
    let metrics: Vec<serde_json::Value> = (figures.values().iter())
        .map(|(metric, _)| serde_json::json!({"Name": metric.name, "Unit": metric.unit}))
        .collect();
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

/// Log the figures every `every` until `shutdown`.
pub fn spawn(
    sources: Sources,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = super::ticks(every);
        let mut meter = Meter::new(sources);
        while super::tick(&mut ticks, &mut shutdown).await {
            let figures = meter.read();
            log(meter.vpc(), &figures);
        }
    })
}

/// One EMF line (with `--log-format json`, the `_aws` block is an object
/// of the line and the figures its numbers).
fn log(vpc: &str, figures: &Figures) {
    let metadata = metadata(figures, SystemTime::now()).to_string();
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
        let block = metadata(&figures, at);
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
