//! The state views as JSON, built from one consistent snapshot of the
//! daemon's state. Top-level keys follow the old daemon's endpoints.

use ipnet::IpNet;
use rustc_hash::FxHashMap as HashMap;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use super::Sources;
use crate::cloud::model::{Interface, Route, Target, VpcState};
use crate::events::Event;
use crate::health::{HealthSnapshot, HostReport, State};
use crate::plugin::{PluginKind, PluginState, PluginStatus};
use crate::reconcile::RouteReport;
use crate::reconcile::plan::{Settings, VpcIndex};
use crate::spec::RouteSpec;

/// Events the status page shows.
const PAGE_EVENTS: usize = 25;

/// The daemon's state at one moment.
pub struct Snapshot {
    pub now: SystemTime,
    pub started: SystemTime,
    pub params: Value,
    pub spec: Option<Arc<RouteSpec>>,
    pub health: HealthSnapshot,
    /// Hosts held down for flapping, and how long until each is let go.
    pub held: BTreeMap<IpAddr, std::time::Duration>,
    /// Plugin -> host -> its last report.
    pub reports: BTreeMap<String, BTreeMap<IpAddr, HostReport>>,
    pub routes: RouteReport,
    /// (name, kind, status)
    pub plugins: Vec<(String, PluginKind, PluginStatus)>,
    pub events: Vec<Event>,
    /// This replica's view of the HA election, when HA is on.
    pub ha: Option<crate::ha::HaStatus>,
}

/// Routers whose instance EC2 says is going or gone (stopping, shutting
/// down, stopped, terminated) or has a scheduled event starting soon are
/// shown drained, as the planner takes them (an operator's drain of one
/// says more).
fn instance_drains(
    spec: &RouteSpec,
    vpc: &VpcState,
    seen: SystemTime,
    drained: &mut BTreeMap<IpAddr, crate::health::Drain>,
) {
    let index = VpcIndex::new(vpc);
    for host in spec.hosts() {
        let Some(interface) = index.at(host) else {
            continue;
        };
        let name = interface.instance.as_deref().unwrap_or(&interface.id);
        let state = (interface.instance_state.as_deref())
            .filter(|s| !interface.running && crate::cloud::model::going_away(s));
        let reason = match (state, &interface.maintenance) {
            (Some(state), _) => format!("instance {name} is {state} (EC2)"),
            (None, Some(maintenance)) => format!("instance {name}: {maintenance}"),
            (None, None) => continue,
        };
        drained
            .entry(*host)
            .or_insert_with(|| crate::health::Drain {
                reason,
                since: seen,
                until: None,
            });
    }
}

impl Snapshot {
    pub fn take(sources: &Sources) -> Self {
        let spec = sources.specs.current();
        let mut health = sources.board.snapshot();
        let routes = sources.routes.borrow().clone();
        if let (Some(spec), Some(vpc)) = (&spec, &routes.vpc) {
            let seen = routes.observed_at.unwrap_or_else(SystemTime::now);
            instance_drains(spec, vpc, seen, &mut health.drained);
        }
        Self {
            now: SystemTime::now(),
            started: sources.started,
            params: sources.params.clone(),
            spec,
            health,
            held: sources.board.held(),
            reports: sources.board.reports(),
            routes,
            plugins: sources
                .plugins
                .iter()
                .map(|p| (p.name.clone(), p.kind, p.status.borrow().clone()))
                .collect(),
            events: sources.events.latest(PAGE_EVENTS),
            ha: sources.ha.as_ref().map(|status| status.borrow().clone()),
        }
    }

    pub fn working_set(&self) -> Vec<IpAddr> {
        self.spec
            .as_ref()
            .map(|s| s.hosts().iter().copied().collect())
            .unwrap_or_default()
    }

    /// Where the routes of `vpc` point, as this snapshot names routers.
    pub fn lookup<'s>(&'s self, vpc: &'s VpcState) -> RouteLookup<'s> {
        RouteLookup {
            spec: self.spec.as_deref(),
            index: VpcIndex::new(vpc),
            routes: vpc
                .route_tables
                .iter()
                .flat_map(|t| {
                    t.routes
                        .iter()
                        .map(move |r| ((t.id.as_str(), r.destination), r))
                })
                .collect(),
        }
    }
}

/// The routes of one observed VPC by table and destination, built once per
/// view: a view over a thousand CIDRs in twenty tables stays linear.
pub struct RouteLookup<'s> {
    spec: Option<&'s RouteSpec>,
    index: VpcIndex<'s>,
    routes: HashMap<(&'s str, IpNet), &'s Route>,
}

impl RouteLookup<'_> {
    /// What `cidr` routes to in `table`, if the table has such a route.
    pub fn target(&self, table: &str, cidr: &IpNet) -> Option<RouteTarget> {
        let route = self.routes.get(&(table, *cidr))?;
        let eligible = self.spec.and_then(|s| s.routes().get(cidr));
        Some(match self.index.target(&route.target) {
            Some(interface) => RouteTarget::Router {
                ip: router_ip(interface, eligible.map(Vec::as_slice)),
                eni: interface.id.clone(),
                instance: interface.instance.clone(),
                blackhole: route.blackhole,
            },
            None => RouteTarget::Other(match &route.target {
                Target::Interface(id) | Target::Instance(id) | Target::Other(id) => id.clone(),
            }),
        })
    }

    fn has(&self, table: &str, cidr: &IpNet) -> bool {
        self.routes.contains_key(&(table, *cidr))
    }
}

/// Where a route points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    Router {
        ip: Option<IpAddr>,
        eni: String,
        instance: Option<String>,
        blackhole: bool,
    },
    /// A gateway, or an ENI/instance the VPC no longer has.
    Other(String),
}

impl RouteTarget {
    fn to_json(&self) -> Value {
        match self {
            RouteTarget::Router {
                ip,
                eni,
                instance,
                blackhole,
            } => {
                let mut v = json!({ "ip": ip, "eni": eni, "instance": instance });
                if *blackhole {
                    v["blackhole"] = true.into();
                }
                v
            }
            RouteTarget::Other(target) => json!({ "target": target }),
        }
    }
}

/// The interface's address that is an eligible host, else its first.
fn router_ip(interface: &Interface, eligible: Option<&[IpAddr]>) -> Option<IpAddr> {
    interface
        .ips
        .iter()
        .find(|ip| eligible.is_some_and(|e| e.contains(ip)))
        .or(interface.ips.first())
        .copied()
}

/// What the reconciler would do now: the plan from the spec in force, the
/// health and the VPC as last observed, computed on request and applied by
/// nobody (empty once the routes are as planned). Every operation with its
/// reason and cause, and the notices.
pub fn plan(snap: &Snapshot, settings: &Settings) -> Value {
    let (spec, vpc) = match (&snap.spec, &snap.routes.vpc) {
        (Some(spec), Some(vpc)) => (spec, vpc),
        (None, _) => return unplanned("no route spec in force yet"),
        (_, None) => return unplanned("the VPC has not been observed (yet, or lately)"),
    };
    let settings = Settings {
        now: std::time::Instant::now(),
        ..settings.clone()
    };
    let planned = crate::reconcile::plan::plan(spec, &snap.health, vpc, &settings);
    let mut document = planned.to_json();
    document["observed_at"] = json!(snap.routes.observed_at.map(rfc3339));
    document
}

fn unplanned(why: &str) -> Value {
    json!({"planned": false, "reason": why, "operations": [], "notices": []})
}

pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// The whole state in one document, under the old daemon's top-level keys
/// (`SERVER`, `params`, `plugins`, `ips`, `route_info`, `vpc`; each view
/// keeps the old `_href` to its own path), and today's summary and links.
pub fn index(sources: &Sources) -> Value {
    let snap = Snapshot::take(sources);
    let uptime = snap.now.duration_since(snap.started).unwrap_or_default();
    let linked = |mut view: Value, href: &str| {
        view["_href"] = href.into();
        view
    };
    json!({
        "SERVER": {
            "version": env!("CARGO_PKG_VERSION"),
            "start_time": rfc3339(snap.started),
            "current_time": rfc3339(snap.now),
        },
        "params": snap.params,
        "plugins": linked(plugins(sources), "/plugins"),
        "ips": linked(ips(&snap), "/ips"),
        "route_info": linked(route_info(&snap, &sources.planning.ignore_routes), "/route_info"),
        "vpc": linked(vpc(&snap), "/vpc"),
        "server": "vpcrouter",
        "version": env!("CARGO_PKG_VERSION"),
        "start_time": rfc3339(snap.started),
        "current_time": rfc3339(snap.now),
        "uptime_seconds": uptime.as_secs(),
        "ready": readiness(&snap)["ready"],
        "ha": snap.ha,
        "links": {
            "ips": "/ips",
            "plugins": "/plugins",
            "route_info": "/route_info",
            "vpc": "/vpc",
            "plan": "/plan",
            "events": "/events",
            "metrics": "/metrics",
            "healthz": "/healthz",
            "readyz": "/readyz",
        },
    })
}

pub fn ips(snap: &Snapshot) -> Value {
    let hosts: BTreeMap<String, Value> = snap
        .working_set()
        .iter()
        .map(|host| {
            let checks: BTreeMap<&str, Value> = snap
                .reports
                .iter()
                .filter_map(|(plugin, reports)| {
                    let r = reports.get(host)?;
                    Some((
                        plugin.as_str(),
                        json!({
                            "state": state_name(r.state),
                            "rtt_us": r.rtt_us,
                            "detail": r.detail,
                        }),
                    ))
                })
                .collect();
            let state = state_name(snap.health.state(host));
            let mut value = json!({ "state": state, "checks": checks });
            if let Some(release_in) = snap.held.get(host) {
                value["held_down"] = json!({ "release_in_s": release_in.as_secs() });
            }
            if let Some(drain) = snap.health.drained.get(host) {
                value["drained"] = super::drain::shown(drain);
            }
            (host.to_string(), value)
        })
        .collect();
    json!({
        "failed_ips": snap.health.failed.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "questionable_ips": snap.health.questionable.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "held_down_ips": snap.held.keys().map(ToString::to_string).collect::<Vec<_>>(),
        "drained_ips": snap.health.drained.keys().map(ToString::to_string).collect::<Vec<_>>(),
        "working_set": snap.working_set().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "hosts": hosts,
    })
}

pub fn state_name(state: State) -> &'static str {
    match state {
        State::Healthy => "healthy",
        State::Questionable => "questionable",
        State::Failed => "failed",
    }
}

pub fn plugin_state(state: &PluginState) -> String {
    match state {
        PluginState::Running => "running".into(),
        PluginState::Restarting { retry_in } => {
            format!("restarting (in {:.1} s)", retry_in.as_secs_f64())
        }
        PluginState::Stopped => "stopped".into(),
    }
}

pub fn plugins(sources: &Sources) -> Value {
    let plugins: Vec<Value> = sources
        .plugins
        .iter()
        .map(|p| {
            let status = p.status.borrow().clone();
            let stats = status.rounds.as_ref().map(|r| {
                json!({
                    "rounds": r.rounds,
                    "probes": r.results,
                    "failures": r.failures,
                    "last_round_ms": r.last_round.as_secs_f64() * 1e3,
                    "rtt_us": r.rtt_us.map(|(min, median, max)| json!({
                        "min": min, "median": median, "max": max,
                    })),
                })
            });
            let running = &status.running;
            json!({
                "name": p.name,
                "version": running.version,
                "kind": p.kind.name(),
                "file": p.file,
                // What --plugin-sha256 and --plugin-pins call it.
                "pin_name": p.file.file_stem().map(|s| s.to_string_lossy()),
                "trust": running.origin.trust.describe(),
                "sha256": running.origin.digest,
                "wit": format!("vpcrouter:plugin@{}", running.origin.wit_version),
                "producer": running.origin.producer,
                "code": {
                    "from_compile_cache": running.origin.compiled.from_cache,
                    "tier": running.origin.compiled.tier.name(),
                    "took_ms": running.origin.compiled.took.as_millis() as u64,
                    "problems": running.origin.compiled.problems,
                },
                "grants": running.grants,
                "options": running.options.iter().cloned().collect::<BTreeMap<_, _>>(),
                "state": plugin_state(&status.state),
                "restarts": status.restarts,
                "last_error": status.last_error,
                "reloads": status.reloads,
                "reload_error": status.reload_error,
                "stats": stats,
            })
        })
        .collect();
    json!({ "plugins": plugins })
}

pub fn route_info(snap: &Snapshot, ignore_routes: &[ipnet::IpNet]) -> Value {
    let routes: serde_json::Map<String, Value> = match (&snap.spec, &snap.routes.vpc) {
        (Some(spec), Some(vpc)) => {
            let lookup = snap.lookup(vpc);
            spec.routes()
                .keys()
                .map(|cidr| {
                    let per_table: BTreeMap<&str, RouteTarget> = vpc
                        .route_tables
                        .iter()
                        .filter_map(|t| Some((t.id.as_str(), lookup.target(&t.id, cidr)?)))
                        .collect();
                    let mut targets = per_table.values();
                    let value = match targets.next() {
                        None => Value::Null,
                        Some(first) if targets.all(|t| t == first) => first.to_json(),
                        Some(_) => json!({
                            "tables": per_table
                                .iter()
                                .map(|(t, target)| (t.to_string(), target.to_json()))
                                .collect::<serde_json::Map<_, _>>(),
                        }),
                    };
                    (cidr.to_string(), value)
                })
                .collect()
        }
        _ => serde_json::Map::new(),
    };
    json!({
        "route_spec": snap.spec.as_ref().map(|s| s.to_json()),
        "routes": routes,
        "fallbacks": fallbacks(snap),
        "ignore_routes": ignore_routes.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// Routes on their fallback: CIDR, table, the fallback, since when and
/// for how many seconds.
fn fallbacks(snap: &Snapshot) -> Value {
    (snap.routes.fallbacks.iter())
        .map(|((cidr, table), on)| {
            json!({
                "cidr": cidr.to_string(),
                "table": table,
                "fallback": on.fallback.to_string(),
                "since": rfc3339(on.since),
                "seconds": snap.now.duration_since(on.since).unwrap_or_default().as_secs(),
            })
        })
        .collect()
}

pub fn vpc(snap: &Snapshot) -> Value {
    let report = &snap.routes;
    let tables: serde_json::Map<String, Value> = match &report.vpc {
        Some(vpc) => {
            let lookup = snap.lookup(vpc);
            // Routes deleted by vpcrouter are gone from their table; their
            // last action still says why.
            let mut gone: HashMap<&str, serde_json::Map<String, Value>> = HashMap::default();
            for ((table, cidr), last) in report.actions.iter() {
                if !lookup.has(table, cidr) {
                    gone.entry(table.as_str())
                        .or_default()
                        .insert(cidr.to_string(), json!({ "last_action": last }));
                }
            }
            vpc.route_tables
                .iter()
                .map(|table| {
                    let routes: serde_json::Map<String, Value> = table
                        .routes
                        .iter()
                        .map(|route| {
                            let mut value = lookup
                                .target(&table.id, &route.destination)
                                .map_or(Value::Null, |t| t.to_json());
                            if let Some(last) =
                                report.actions.get(&(table.id.clone(), route.destination))
                            {
                                value["last_action"] = json!(last);
                            }
                            // Not made by CreateRoute: never anybody's to change.
                            if !route.origin.is_create_route() {
                                value["origin"] = route.origin.name().into();
                            }
                            (route.destination.to_string(), value)
                        })
                        .collect();
                    let mut value = json!({
                        "subnets": table.subnets,
                        "routes": routes,
                        "managed": report.managed.get(&table.id),
                    });
                    if table.main {
                        value["main"] = true.into();
                    }
                    if !table.tags.is_empty() {
                        value["tags"] = json!(table.tags);
                    }
                    let claims = crate::cloud::claims::owners(&table.tags);
                    if !claims.is_empty() {
                        value["owners"] = json!(claims);
                    }
                    if let Some(deleted) = gone.remove(table.id.as_str()) {
                        value["gone"] = deleted.into();
                    }
                    (table.id.clone(), value)
                })
                .collect()
        }
        None => serde_json::Map::new(),
    };
    json!({
        "observed": report.vpc.is_some(),
        "observed_at": report.observed_at.map(rfc3339),
        "last_success": report.last_success.map(rfc3339),
        "last_error": report.last_error,
        "route_tables": tables,
        "fallbacks": fallbacks(snap),
    })
}

pub fn readiness(snap: &Snapshot) -> Value {
    let spec_loaded = snap.spec.is_some();
    let vpc_observed = snap.routes.vpc.is_some();
    let reconciled = snap.routes.last_success.is_some() && snap.routes.last_error.is_none();
    json!({
        "ready": spec_loaded && vpc_observed && reconciled,
        "spec_loaded": spec_loaded,
        "vpc_observed": vpc_observed,
        "last_reconcile_ok": reconciled,
        "last_success": snap.routes.last_success.map(rfc3339),
        "last_error": snap.routes.last_error,
        "ha": snap.ha,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::report::RouteReport;
    use crate::spec::RouteSpec;

    fn snapshot(spec: Option<&str>, vpc: Option<Value>) -> Snapshot {
        Snapshot {
            now: SystemTime::now(),
            started: SystemTime::now(),
            params: json!({}),
            spec: spec.map(|s| Arc::new(RouteSpec::from_json(s.as_bytes()).unwrap())),
            health: HealthSnapshot::default(),
            held: BTreeMap::new(),
            reports: BTreeMap::new(),
            routes: RouteReport {
                vpc: vpc.map(|v| Arc::new(serde_json::from_value(v).unwrap())),
                ..RouteReport::default()
            },
            plugins: Vec::new(),
            events: Vec::new(),
            ha: None,
        }
    }

    /// `/plan` is what a pass would do now, with reasons, and says why
    /// there is no plan when there cannot be one.
    #[test]
    fn the_plan_view_shows_what_a_pass_would_do() {
        let vpc = json!({
            "subnets": [{"id": "subnet-a", "az": "az-a"}],
            "interfaces": [{"id": "eni-a", "instance": "i-a", "subnet": "subnet-a",
                            "ips": ["10.0.1.10"], "running": true}],
            "route_tables": [{"id": "rtb-a", "subnets": ["subnet-a"], "routes": []}]
        });
        let spec = r#"{"10.55.0.0/16": ["10.0.1.10"]}"#;
        let view = plan(
            &snapshot(Some(spec), Some(vpc.clone())),
            &Settings::default(),
        );
        assert_eq!(view["planned"], true);
        let operations = view["operations"].as_array().unwrap();
        assert_eq!(operations.len(), 1, "{view:#}");
        assert_eq!(operations[0]["action"], "create");
        assert_eq!(operations[0]["table"], "rtb-a");
        assert_eq!(
            operations[0]["target"],
            json!({"eni": "eni-a", "host": "10.0.1.10"})
        );
        assert_eq!(operations[0]["cause"], "repair");
        assert!(
            operations[0]["reason"]
                .as_str()
                .unwrap()
                .contains("missing")
        );

        let unobserved = plan(&snapshot(Some(spec), None), &Settings::default());
        assert_eq!(unobserved["planned"], false);
        assert!(
            unobserved["reason"]
                .as_str()
                .unwrap()
                .contains("not been observed")
        );
        let no_spec = plan(&snapshot(None, Some(vpc)), &Settings::default());
        assert!(
            no_spec["reason"]
                .as_str()
                .unwrap()
                .contains("no route spec")
        );
    }
}
