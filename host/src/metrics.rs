//! Prometheus metrics. Counters and histograms of things that happen
//! (route operations, EC2 calls, plugin calls) live here, process-wide, and
//! are bumped where they happen; the state of things (host health, plugin
//! state, token levels, spec counts) is read when `/metrics` is scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// create, replace, delete.
    pub kind: String,
    /// ok, refused, failed.
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub action: String,
    /// ok, throttled, failed, refused.
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginCallLabels {
    pub plugin: String,
    /// init, on-event, handle-http, check.
    pub call: String,
    /// ok, error (the plugin reported one), fault (trap, deadline, memory).
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    pub plugin: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Lease renewals: ok, failed, lost (the lease was gone); CloudWatch
    /// calls: sent, throttled, failed.
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    pub sink: String,
    /// sent, failed (every try).
    pub outcome: String,
}

pub struct Metrics {
    pub failovers: Counter,
    /// Notices by sink and outcome.
    pub notifications: Family<SinkLabels, Counter>,
    /// PutMetricData calls by outcome.
    pub cloudwatch_puts: Family<OutcomeLabels, Counter>,
    pub route_operations: Family<OperationLabels, Counter>,
    pub ec2_calls: Family<CallLabels, Counter>,
    /// Prefix-list mode: the calls a batch became, by outcome.
    pub list_calls: Family<CallLabels, Counter>,
    pub ec2_call_seconds: Family<ActionLabels, Histogram>,
    pub plugin_calls: Family<PluginCallLabels, Counter>,
    pub plugin_call_seconds: Family<PluginLabels, Histogram>,
    pub last_reconcile: Gauge<f64, AtomicU64>,
    /// HA: 1 while this replica leads.
    pub leader: Gauge,
    pub leader_changes: Counter,
    pub lease_renewals: Family<OutcomeLabels, Counter>,
    registry: Registry,
}

fn latency_buckets() -> Histogram {
    // 1 ms .. ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("vpcrouter");
        let metrics = Self {
            failovers: Counter::default(),
            notifications: Family::default(),
            cloudwatch_puts: Family::default(),
            route_operations: Family::default(),
            ec2_calls: Family::default(),
            list_calls: Family::default(),
            ec2_call_seconds: Family::new_with_constructor(latency_buckets),
            plugin_calls: Family::default(),
            plugin_call_seconds: Family::new_with_constructor(latency_buckets),
            last_reconcile: Gauge::default(),
            leader: Gauge::default(),
            leader_changes: Counter::default(),
            lease_renewals: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "failovers",
            "Routes moved off a failed or questionable router",
            metrics.failovers.clone(),
        );
        registry.register(
            "notifications",
            "Notices handed to each notification sink, by outcome (sent, failed)",
            metrics.notifications.clone(),
        );
        registry.register(
            "cloudwatch_puts",
            "PutMetricData calls by outcome (sent, throttled, failed)",
            metrics.cloudwatch_puts.clone(),
        );
        registry.register(
            "route_operations",
            "Route operations by kind and result",
            metrics.route_operations.clone(),
        );
        registry.register(
            "ec2_calls",
            "EC2 API calls by action and outcome (each attempt)",
            metrics.ec2_calls.clone(),
        );
        registry.register(
            "list_calls",
            "Prefix-list mode: the calls route changes became (route to a list, list created, list edited), by outcome (ok, refused, failed)",
            metrics.list_calls.clone(),
        );
        registry.register(
            "ec2_call_duration_seconds",
            "EC2 API call latency by action (each attempt)",
            metrics.ec2_call_seconds.clone(),
        );
        registry.register(
            "plugin_calls",
            "Calls into plugins by plugin, call and outcome",
            metrics.plugin_calls.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Plugin call latency",
            metrics.plugin_call_seconds.clone(),
        );
        registry.register(
            "last_successful_reconcile_timestamp_seconds",
            "When the VPC last matched the plan (Unix time)",
            metrics.last_reconcile.clone(),
        );
        registry.register(
            "leader",
            "HA: 1 while this replica leads (and may write), else 0",
            metrics.leader.clone(),
        );
        registry.register(
            "leader_changes",
            "HA: times this replica became leader or stopped leading",
            metrics.leader_changes.clone(),
        );
        registry.register(
            "lease_renewals",
            "HA: lease renewals by outcome",
            metrics.lease_renewals.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn notification(&self, sink: &str, outcome: &str, notices: usize) {
        self.notifications
            .get_or_create(&SinkLabels {
                sink: sink.into(),
                outcome: outcome.into(),
            })
            .inc_by(notices as u64);
    }

    pub fn cloudwatch_put(&self, outcome: &str) {
        self.cloudwatch_puts
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn route_operation(&self, kind: &str, result: &str) {
        self.route_operations
            .get_or_create(&OperationLabels {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn ec2_call(&self, action: &str, outcome: &str, took: Duration) {
        self.ec2_calls
            .get_or_create(&CallLabels {
                action: action.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.ec2_call_seconds
            .get_or_create(&ActionLabels {
                action: action.into(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn list_call(&self, action: &str, outcome: &str) {
        self.list_calls
            .get_or_create(&CallLabels {
                action: action.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn plugin_call(&self, plugin: &str, call: &str, outcome: &str, took: Duration) {
        self.plugin_calls
            .get_or_create(&PluginCallLabels {
                plugin: plugin.into(),
                call: call.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.plugin_call_seconds
            .get_or_create(&PluginLabels {
                plugin: plugin.into(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn lease_renewal(&self, outcome: &str) {
        self.lease_renewals
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn reconciled_now(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.last_reconcile.set(now.as_secs_f64());
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
