//! Metrics by API call: every `--put-metrics-interval` one `PutMetricData`
//! carrying the interval's figures, on a budget of its own (never EC2's):
//! at most one call per interval, one attempt of at most 5 s, no retry
//! inside an interval. A call that fails leaves its readings for the next
//! (at most [`KEPT`] wait; older ones are dropped and said); throttling
//! spaces the calls out, up to one per [`SLOWEST`] intervals, until a call
//! passes. Only the leader publishes: a standby's view is not the VPC's.

use aws_sdk_cloudwatch::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use std::collections::VecDeque;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

use super::{Figures, Meter, NAMESPACE, Sources};
use crate::ha::Leadership;

/// Readings kept for a call after one that failed.
pub const KEPT: usize = 10;
/// Throttled, calls go out at most once per this many intervals.
pub const SLOWEST: u32 = 16;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the figures go: CloudWatch in `region`, through `endpoint` when
/// given (tests, a VPC endpoint).
pub struct Publisher {
    client: aws_sdk_cloudwatch::Client,
    leadership: Option<Leadership>,
}

impl Publisher {
    pub async fn new(region: &str, endpoint: Option<&str>, leadership: Option<Leadership>) -> Self {
        let config = crate::aws::sdk_config(Some(region), endpoint, ATTEMPT_TIMEOUT).await;
        // One attempt a call: the next interval's call is the retry.
        let config = aws_sdk_cloudwatch::config::Builder::from(&config)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        Self {
            client: aws_sdk_cloudwatch::Client::from_conf(config),
            leadership,
        }
    }

    /// Publish the figures every `every` until `shutdown`.
    pub fn spawn(
        self,
        sources: Sources,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = super::ticks(every);
            let mut meter = Meter::new(sources);
            let mut waiting = Waiting::default();
            let mut pace = Pace::default();
            while super::tick(&mut ticks, &mut shutdown).await {
                let figures = meter.read();
                if !self.leadership.as_ref().is_none_or(Leadership::leading) {
                    waiting.readings.clear();
                    continue;
                }
                waiting.push(SystemTime::now(), figures);
                if !pace.due() {
                    continue;
                }
                let outcome = tokio::select! {
                    outcome = self.put(meter.vpc(), &waiting.readings) => outcome,
                    _ = shutdown.wait_for(|stop| *stop) => return,
                };
                crate::metrics::global().cloudwatch_put(outcome.label());
                match outcome {
                    Outcome::Sent => {
                        if pace.throttled() || waiting.problem.is_some() {
                            tracing::info!("CloudWatch takes the metrics again");
                        }
                        waiting.sent();
                        pace.passed();
                    }
                    Outcome::Throttled(ref why) | Outcome::Failed(ref why) => {
                        if waiting.problem.as_ref() != Some(why) {
                            tracing::warn!("cannot publish metrics to CloudWatch: {why}");
                            waiting.problem = Some(why.clone());
                        }
                        if matches!(outcome, Outcome::Throttled(_)) {
                            pace.throttled_once();
                        }
                    }
                }
            }
        })
    }

    async fn put(&self, vpc: &str, readings: &VecDeque<(SystemTime, Figures)>) -> Outcome {
        let data = readings
            .iter()
            .flat_map(|(at, figures)| data(vpc, *at, figures));
        let sent = (self.client.put_metric_data())
            .namespace(NAMESPACE)
            .set_metric_data(Some(data.collect()))
            .send()
            .await;
        match sent {
            Ok(_) => Outcome::Sent,
            Err(e) => {
                let why = DisplayErrorContext(&e).to_string();
                match e.code() {
                    Some("Throttling" | "ThrottlingException" | "RequestLimitExceeded") => {
                        Outcome::Throttled(why)
                    }
                    _ => Outcome::Failed(why),
                }
            }
        }
    }
}

/// One reading as CloudWatch's data points, dimension `VpcId`.
fn data(vpc: &str, at: SystemTime, figures: &Figures) -> Vec<MetricDatum> {
    let dimension = Dimension::builder().name("VpcId").value(vpc).build();
    (figures.values().into_iter())
        .map(|(metric, value)| {
            MetricDatum::builder()
                .metric_name(metric.name)
                .unit(StandardUnit::from(metric.unit))
                .value(value)
                .timestamp(DateTime::from(at))
                .dimensions(dimension.clone())
                .build()
        })
        .collect()
}

enum Outcome {
    Sent,
    Throttled(String),
    Failed(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Throttled(_) => "throttled",
            Outcome::Failed(_) => "failed",
        }
    }
}

/// The readings not yet taken, and the last reason a call failed (said
/// once).
#[derive(Default)]
struct Waiting {
    readings: VecDeque<(SystemTime, Figures)>,
    problem: Option<String>,
}

impl Waiting {
    fn push(&mut self, at: SystemTime, figures: Figures) {
        if self.readings.len() == KEPT {
            self.readings.pop_front();
            tracing::debug!("the oldest metrics reading not published is dropped");
        }
        self.readings.push_back((at, figures));
    }

    fn sent(&mut self) {
        self.readings.clear();
        self.problem = None;
    }
}

/// How many intervals pass between calls: 1, doubled at each throttled
/// call up to [`SLOWEST`], back to 1 when a call passes.
struct Pace {
    every: u32,
    skipped: u32,
}

impl Default for Pace {
    fn default() -> Self {
        Self {
            every: 1,
            skipped: 0,
        }
    }
}

impl Pace {
    /// Is this interval's call due?
    fn due(&mut self) -> bool {
        self.skipped += 1;
        if self.skipped < self.every {
            return false;
        }
        self.skipped = 0;
        true
    }

    fn throttled(&self) -> bool {
        self.every > 1
    }

    fn throttled_once(&mut self) {
        self.every = (self.every * 2).min(SLOWEST);
    }

    fn passed(&mut self) {
        self.every = 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(failovers: u64) -> Figures {
        Figures {
            failovers,
            routes_on_fallback: 1,
            eligible_routers_min: Some(2),
            cidrs_without_router: 0,
            probe_rtt_ms: None,
        }
    }

    #[test]
    fn throttling_spaces_the_calls_out_and_a_pass_brings_them_back() {
        let mut pace = Pace::default();
        assert!((0..3).all(|_| pace.due()), "one call per interval");
        let mut gaps = Vec::new();
        for _ in 0..6 {
            pace.throttled_once();
            gaps.push((1..=64).find(|_| pace.due()).unwrap());
        }
        assert_eq!(gaps, [2, 4, 8, 16, 16, 16]);
        pace.passed();
        assert!(pace.due());
    }

    #[test]
    fn readings_wait_for_a_call_that_passes_and_the_oldest_go_first() {
        let mut waiting = Waiting::default();
        for i in 0..(KEPT as u64 + 3) {
            waiting.push(SystemTime::UNIX_EPOCH, figures(i));
        }
        assert_eq!(waiting.readings.len(), KEPT);
        assert_eq!(waiting.readings[0].1.failovers, 3, "the oldest dropped");
        waiting.problem = Some("refused".into());
        waiting.sent();
        assert!(waiting.readings.is_empty() && waiting.problem.is_none());
    }

    #[test]
    fn a_reading_is_a_data_point_per_metric_present_by_vpc() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let points = data("vpc-1", at, &figures(3));
        let names: Vec<&str> = points.iter().filter_map(|p| p.metric_name()).collect();
        assert_eq!(
            names,
            [
                "Failovers",
                "RoutesOnFallback",
                "CidrsWithoutRouter",
                "EligibleRoutersMin"
            ]
        );
        let failovers = &points[0];
        assert_eq!(failovers.value(), Some(3.0));
        assert_eq!(failovers.unit(), Some(&StandardUnit::Count));
        assert_eq!(failovers.timestamp(), Some(&DateTime::from(at)));
        let dimension = &failovers.dimensions()[0];
        assert_eq!(
            (dimension.name(), dimension.value()),
            (Some("VpcId"), Some("vpc-1"))
        );
    }
}
