//! The HTML status page: route tables x CIDRs with each route's router
//! coloured by its health, the router hosts, recent events and the plugins.
//! Server-rendered, self-contained (no scripts, no external resources), and
//! it reloads itself every few seconds.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use std::collections::BTreeSet;

use super::views::{RouteTarget, Snapshot, plugin_state, readiness, rfc3339, state_name};
use crate::ha::{HaStatus, Role};
use crate::health::State;

const REFRESH_SECONDS: u32 = 2;

const STYLE: &str = "
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2430; background: #f7f8fa; }
h1 { font-size: 1.4em; margin: 0 0 .2em; } h2 { font-size: 1.1em; margin: 1.4em 0 .5em; }
nav a { margin-right: 1em; } .muted { color: #667085; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #d0d5dd; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; }
td.healthy { background: #d1fadf; } td.questionable { background: #fef0c7; }
td.failed { background: #fee4e2; } td.none, td.other { background: #f2f4f7; color: #667085; }
td.fallback { background: #fef0c7; }
span.badge { display: inline-block; padding: .05em .5em; border-radius: 1em; font-size: .9em; }
.ready { background: #d1fadf; } .notready { background: #fee4e2; }
.healthy-dot::before { content: '\\25CF '; color: #12b76a; }
.questionable-dot::before { content: '\\25CF '; color: #f79009; }
.failed-dot::before { content: '\\25CF '; color: #f04438; }
small { color: #667085; } pre { background: #fff; padding: 1em; border: 1px solid #d0d5dd; }
";

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content=(REFRESH_SECONDS);
                title { "vpcrouter - " (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                nav {
                    a href="/" { "status" }
                    @for link in ["ips", "route_info", "vpc", "plugins", "events", "metrics"] {
                        a href={ "/" (link) } { (link) }
                    }
                }
                (body)
            }
        }
    }
}

/// A JSON view wrapped in a page.
pub fn json(title: &str, value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).expect("JSON");
    layout(title, html! { h1 { "/" (title) } pre { (text) } })
}

/// This replica's part in the HA election.
fn ha_line(ha: &HaStatus) -> Markup {
    let role = match ha.role {
        Role::Leader => "leader: this replica writes to EC2",
        Role::Standby => "standby: this replica writes nothing",
    };
    html! {
        p id="ha" {
            "HA replica " b { (ha.id) } ", " (role)
            @if let (Some(leader), Some(term)) = (&ha.leader, ha.term) {
                "; leader " b { (leader) } " (term " (term) ")"
            } @else { "; no leader known" }
            @if let Some(at) = ha.changed_at { ", since " (rfc3339(at)) }
            @if let Some(problem) = &ha.problem { br; "election problem: " (problem) }
        }
    }
}

/// The status page.
pub fn status(snap: &Snapshot) -> Markup {
    let ready = readiness(snap);
    let is_ready = ready["ready"].as_bool() == Some(true);
    let uptime = snap
        .now
        .duration_since(snap.started)
        .unwrap_or_default()
        .as_secs();
    let body = html! {
        h1 {
            "vpcrouter " (env!("CARGO_PKG_VERSION")) " "
            @if is_ready { span.badge.ready id="readiness" { "ready" } }
            @else { span.badge.notready id="readiness" { "not ready" } }
        }
        p.muted {
            "up " (uptime) " s since " (rfc3339(snap.started)) "; page of " (rfc3339(snap.now))
            @if let Some(error) = ready["last_error"].as_str() { br; "last problem: " (error) }
        }
        @if let Some(ha) = &snap.ha { (ha_line(ha)) }
        h2 { "Routes" }
        (route_grid(snap))
        h2 { "Router hosts" }
        (hosts(snap))
        h2 { "Recent events" }
        (events(snap))
        h2 { "Plugins" }
        (plugins(snap))
    };
    layout("status", body)
}

fn health_class(snap: &Snapshot, target: &RouteTarget) -> &'static str {
    match target {
        RouteTarget::Router {
            ip: Some(ip),
            blackhole: false,
            ..
        } => state_name(snap.health.state(ip)),
        RouteTarget::Router { .. } => "failed",
        RouteTarget::Other(_) => "other",
    }
}

/// CIDRs of the spec (rows) x route tables managed or holding any of
/// them (columns), each table with why it is managed.
fn route_grid(snap: &Snapshot) -> Markup {
    let (Some(spec), Some(vpc)) = (&snap.spec, &snap.routes.vpc) else {
        return html! { p.muted { "No route spec in force or the VPC not observed yet." } };
    };
    let managed = &snap.routes.managed;
    let tables: Vec<&str> = vpc
        .route_tables
        .iter()
        .filter(|t| {
            managed.contains_key(&t.id)
                || t.routes
                    .iter()
                    .any(|r| spec.routes().contains_key(&r.destination))
        })
        .map(|t| t.id.as_str())
        .collect();
    let lookup = snap.lookup(vpc);
    html! {
        table id="routes" {
            tr {
                th { "CIDR" }
                @for table in &tables {
                    th { (table) br; small { (managed.get(*table).map_or("not managed", String::as_str)) } }
                }
            }
            @for cidr in spec.routes().keys() {
                tr {
                    th { (cidr) }
                    @for table in &tables {
                        @let last = snap.routes.actions.get(&(table.to_string(), *cidr));
                        @let reason = last.map(|l| format!("{} {}: {}", l.action, l.at, l.reason)).unwrap_or_default();
                        @let fallback = snap.routes.fallbacks.get(&(*cidr, table.to_string()));
                        @let since = fallback.map(|f| format!("on its fallback since {}", rfc3339(f.since)));
                        @match lookup.target(table, cidr) {
                            Some(target) if fallback.is_some() => {
                                td.fallback title=(reason) data-table=(table) data-cidr=(cidr) {
                                    @if let RouteTarget::Other(other) = &target { (other) } br;
                                    small { (since.unwrap_or_default()) }
                                }
                            }
                            None if fallback.is_some() => {
                                td.fallback title=(reason) data-table=(table) data-cidr=(cidr) {
                                    "withdrawn" br; small { (since.unwrap_or_default()) }
                                }
                            }
                            Some(target) => {
                                td class=(health_class(snap, &target)) title=(reason) data-table=(table) data-cidr=(cidr) {
                                    @match &target {
                                        RouteTarget::Router { ip, eni, .. } => {
                                            (ip.map(|i| i.to_string()).unwrap_or_else(|| "?".into()))
                                            br; small { (eni) }
                                        }
                                        RouteTarget::Other(other) => { (other) }
                                    }
                                }
                            }
                            None => { td.none title=(reason) data-table=(table) data-cidr=(cidr) { "-" } }
                        }
                    }
                }
            }
        }
    }
}

fn hosts(snap: &Snapshot) -> Markup {
    let working_set = snap.working_set();
    if working_set.is_empty() {
        return html! { p.muted { "No router hosts yet." } };
    }
    let plugins: BTreeSet<&String> = snap.reports.keys().collect();
    html! {
        table id="hosts" {
            tr {
                th { "host" } th { "state" }
                @for plugin in &plugins { th { (plugin) } }
            }
            @for host in &working_set {
                @let state = snap.health.state(host);
                tr {
                    td { (host) }
                    td class=(state_name(state)) {
                        span class={ (state_name(state)) "-dot" } { (state_name(state)) }
                        @if let Some(drain) = snap.health.drained.get(host) { br; small { "drained: " (drain.reason) } }
                    }
                    @for plugin in &plugins {
                        @let report = snap.reports.get(*plugin).and_then(|r| r.get(host));
                        td {
                            @if let Some(report) = report {
                                (state_name(report.state))
                                @if let Some(rtt) = report.rtt_us { " " small { (format!("{:.1} ms", rtt as f64 / 1e3)) } }
                                @if let Some(detail) = &report.detail {
                                    @if report.state != State::Healthy { br; small { (detail) } }
                                }
                            } @else { span.muted { "-" } }
                        }
                    }
                }
            }
        }
    }
}

fn events(snap: &Snapshot) -> Markup {
    if snap.events.is_empty() {
        return html! { p.muted { "Nothing has happened yet." } };
    }
    html! {
        table id="events" {
            tr { th { "when" } th { "what" } th { "about" } th { "why" } th { "took" } }
            @for event in &snap.events {
                tr {
                    td { (event.at) }
                    td { (serde_json::to_value(event.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) }
                    td { (event.subject) }
                    td { (event.reason) }
                    td { @if let Some(ms) = event.duration_ms { (ms) " ms" } }
                }
            }
        }
    }
}

fn plugins(snap: &Snapshot) -> Markup {
    html! {
        table id="plugins" {
            tr { th { "plugin" } th { "state" } th { "restarts" } th { "last error" } th { "probes" } }
            @for (name, kind, status) in &snap.plugins {
                tr {
                    td { (name) br; small { (kind) } }
                    td { (plugin_state(&status.state)) }
                    td { (status.restarts) }
                    td { (status.last_error.as_deref().unwrap_or("")) }
                    td {
                        @if let Some(rounds) = &status.rounds {
                            (rounds.results) " results, " (rounds.failures) " not healthy; last round "
                            (format!("{:.1} ms", rounds.last_round.as_secs_f64() * 1e3))
                        }
                    }
                }
            }
        }
    }
}
