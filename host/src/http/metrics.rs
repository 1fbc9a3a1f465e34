//! `GET /metrics`: the process-wide counters and histograms, plus the state
//! of things read at scrape time (host health, plugins, EC2 budget, specs).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use super::views::{Snapshot, readiness};
use super::{Shared, Sources};
use crate::health::State as Health;
use crate::plugin::PluginState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    host: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RttLabels {
    plugin: String,
    /// min, median, max
    stat: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BucketLabels {
    class: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub async fn scrape(State(sources): State<Shared>) -> Response {
    let tokens = match &sources.budget {
        Some(budget) => Some([
            ("mutating", budget.mutating.level().await),
            ("describe", budget.describe.level().await),
        ]),
        None => None,
    };
    let snap = Snapshot::take(&sources);
    let mut text = String::new();
    encode(&mut text, crate::metrics::global().registry()).expect("encode metrics");
    // Two registries, one exposition: only the last may end it.
    let mut text = text.strip_suffix("# EOF\n").unwrap_or(&text).to_string();
    encode(&mut text, &state_registry(&sources, &snap, tokens)).expect("encode metrics");
    ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
}

/// The state of things as metrics, read now.
fn state_registry(
    sources: &Sources,
    snap: &Snapshot,
    tokens: Option<[(&str, f64); 2]>,
) -> Registry {
    let mut state = Registry::with_prefix("vpcrouter");
    register_hosts(&mut state, snap);
    register_specs(&mut state, sources);
    register_plugins(&mut state, snap);
    if let Some(tokens) = tokens {
        register_budget(&mut state, tokens);
    }
    register_fallbacks(&mut state, snap);
    let ready = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
    ready.set((readiness(snap)["ready"].as_bool() == Some(true)) as i64);
    state.register("ready", "1 when /readyz says ready", ready);
    state
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    cidr: String,
    table: String,
}

/// Routes on their fallback now, and the seconds each (CIDR, table) has
/// spent on it: what the fallback costs.
fn register_fallbacks(state: &mut Registry, snap: &Snapshot) {
    let labels = |(cidr, table): &(ipnet::IpNet, String)| RouteLabels {
        cidr: cidr.to_string(),
        table: table.clone(),
    };
    let active = Family::<RouteLabels, Gauge>::default();
    let seconds = Family::<RouteLabels, Counter<f64, AtomicU64>>::default();
    for (key, spent) in snap.routes.fallback_seconds.iter() {
        seconds.get_or_create(&labels(key)).inc_by(*spent);
    }
    for (key, on) in snap.routes.fallbacks.iter() {
        active.get_or_create(&labels(key)).set(1);
        let spent = snap.now.duration_since(on.since).unwrap_or_default();
        seconds
            .get_or_create(&labels(key))
            .inc_by(spent.as_secs_f64());
    }
    state.register(
        "fallback_active",
        "1 while a route is on its fallback (no router of its CIDR eligible)",
        active,
    );
    state.register(
        "fallback_seconds",
        "Seconds routes have spent on their fallback",
        seconds,
    );
}

/// Each router host's health, and whether it is held down or drained.
fn register_hosts(state: &mut Registry, snap: &Snapshot) {
    let health = Family::<HostLabels, Gauge>::default();
    for host in snap.working_set() {
        let value = match snap.health.state(&host) {
            Health::Healthy => 0,
            Health::Questionable => 1,
            Health::Failed => 2,
        };
        health
            .get_or_create(&HostLabels {
                host: host.to_string(),
            })
            .set(value);
    }
    state.register(
        "host_health",
        "Router host health: 0 healthy, 1 questionable, 2 failed",
        health,
    );

    let held = Family::<HostLabels, Gauge>::default();
    for host in snap.working_set() {
        held.get_or_create(&HostLabels {
            host: host.to_string(),
        })
        .set(snap.held.contains_key(&host) as i64);
    }
    state.register(
        "host_held_down",
        "1 while a router host is held down for flapping (no route goes to it)",
        held,
    );

    let drained = Family::<HostLabels, Gauge>::default();
    for host in snap.working_set() {
        drained
            .get_or_create(&HostLabels {
                host: host.to_string(),
            })
            .set(snap.health.drained.contains_key(&host) as i64);
    }
    state.register(
        "host_drained",
        "1 while a router host is drained (its routes go to confirmed hosts when there are any)",
        drained,
    );
}

fn register_specs(state: &mut Registry, sources: &Sources) {
    let (accepted, rejected) = sources.specs.counts();
    let specs = Family::<ResultLabels, Counter>::default();
    for (result, n) in [("accepted", accepted), ("rejected", rejected)] {
        specs
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc_by(n);
    }
    state.register(
        "spec_updates",
        "Route specs offered by plugins, by result",
        specs,
    );
}

/// Each plugin's restarts and state; a health checker's rounds.
fn register_plugins(state: &mut Registry, snap: &Snapshot) {
    let restarts = Family::<PluginLabels, Counter>::default();
    let up = Family::<PluginLabels, Gauge>::default();
    let probes = Family::<PluginLabels, Counter>::default();
    let probe_failures = Family::<PluginLabels, Counter>::default();
    let rtt = Family::<RttLabels, FloatGauge>::default();
    let round = Family::<PluginLabels, FloatGauge>::default();
    for (name, _, status) in &snap.plugins {
        let plugin = PluginLabels {
            plugin: name.clone(),
        };
        restarts.get_or_create(&plugin).inc_by(status.restarts);
        up.get_or_create(&plugin)
            .set(matches!(status.state, PluginState::Running) as i64);
        if let Some(rounds) = &status.rounds {
            probes.get_or_create(&plugin).inc_by(rounds.results);
            probe_failures
                .get_or_create(&plugin)
                .inc_by(rounds.failures);
            round
                .get_or_create(&plugin)
                .set(rounds.last_round.as_secs_f64());
            if let Some((min, median, max)) = rounds.rtt_us {
                for (stat, us) in [("min", min), ("median", median), ("max", max)] {
                    let labels = RttLabels {
                        plugin: name.clone(),
                        stat: stat.into(),
                    };
                    rtt.get_or_create(&labels).set(us as f64 / 1e6);
                }
            }
        }
    }
    state.register("plugin_restarts", "Plugin restarts after a fault", restarts);
    state.register("plugin_up", "1 while the plugin is running", up);
    state.register("probe_results", "Host results from health rounds", probes);
    state.register(
        "probe_failures",
        "Host results that were not healthy",
        probe_failures,
    );
    state.register(
        "probe_rtt_seconds",
        "Probe round-trip time in the last round (min, median, max)",
        rtt,
    );
    state.register(
        "health_round_duration_seconds",
        "Duration of the last health round",
        round,
    );
}

fn register_budget(state: &mut Registry, tokens: [(&str, f64); 2]) {
    let levels = Family::<BucketLabels, FloatGauge>::default();
    for (class, level) in tokens {
        levels
            .get_or_create(&BucketLabels {
                class: class.into(),
            })
            .set(level);
    }
    state.register(
        "ec2_budget_tokens",
        "Tokens left in the client-side EC2 call budget",
        levels,
    );
}
