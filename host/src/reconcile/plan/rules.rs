//! What each route needs: the CIDRs to route (and those that cannot be),
//! each managed table's route created, kept or replaced toward the chosen
//! host and why, and the managed routes the spec lacks deleted.

use ipnet::IpNet;
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;
use std::net::IpAddr;

use super::index::{Candidate, Facts, Managed, VpcIndex, Wanted};
use super::spread::{Choice, Spread};
use super::{Plan, Settings};
use crate::cloud::model::{Interface, Route, Target};
use crate::cloud::operation::{Action, Cause, RouterTarget};
use crate::health::State;
use crate::selector::Selected;
use crate::spec::RouteSpec;

impl Plan {
    /// The spec's CIDRs to route (not ignored, with eligible hosts), each
    /// with where its routes point now.
    pub(super) fn wanted<'p, 'v>(
        &mut self,
        spec: &'p RouteSpec,
        managed: &[Managed<'v>],
        usable: &'p HashMap<IpAddr, Candidate<'v>>,
        index: &VpcIndex<'v>,
        ignored: impl Fn(&IpNet) -> bool,
    ) -> Vec<Wanted<'p, 'v>> {
        let mut wanted = Vec::with_capacity(spec.len());
        for (cidr, hosts) in spec.routes() {
            if ignored(cidr) {
                continue;
            }
            if hosts.is_empty() {
                self.notice(
                    *cidr,
                    "no eligible router in the spec; existing routes left alone",
                );
                continue;
            }
            let mut cidr = Wanted {
                cidr: *cidr,
                hosts,
                candidates: hosts.iter().filter_map(|h| usable.get(h)).collect(),
                current: Vec::with_capacity(managed.len()),
            };
            cidr.current = managed
                .iter()
                .map(|m| {
                    let route = m.routes.get(&cidr.cidr).filter(|r| !r.blackhole)?;
                    let interface = index.target(&route.target)?;
                    cidr.candidate_of(interface, usable).map(|c| c.host)
                })
                .collect();
            wanted.push(cidr);
        }
        wanted
    }

    /// Every wanted CIDR routed in every managed table by its scope's
    /// choice; a CIDR with no usable host is left as it is.
    pub(super) fn route_all<'p, 'v>(
        &mut self,
        wanted: &[Wanted<'p, 'v>],
        managed: &[Managed<'v>],
        spreads: &BTreeMap<Option<&'v str>, Spread<'p, 'v>>,
        facts: &Facts<'p, 'v>,
        settings: &Settings,
    ) {
        for (i, cidr) in wanted.iter().enumerate() {
            if cidr.candidates.iter().all(|c| c.state == State::Failed) {
                self.notice(
                    cidr.cidr,
                    "no usable eligible host (failed, not running, unknown or not probed yet); routes left as they are",
                );
                continue;
            }
            for table in managed {
                // Every scope falls back to any usable host, so there is one.
                if let Some(choice) = spreads[&table.scope(settings)].choices[i] {
                    self.route(cidr, table, &choice, facts);
                }
            }
        }
    }

    /// The operation, if any, that points `managed`'s route for `cidr` at
    /// the chosen host.
    pub(super) fn route<'p, 'v>(
        &mut self,
        cidr: &Wanted<'p, 'v>,
        managed: &Managed<'v>,
        choice: &Choice<'p, 'v>,
        facts: &Facts<'p, 'v>,
    ) {
        let Facts {
            index,
            usable,
            health,
        } = facts;
        let chosen = choice.host;
        let table = managed.table;
        let target = Some(RouterTarget {
            eni: chosen.interface.id.clone(),
            host: chosen.host,
        });
        let Some(route) = managed.routes.get(&cidr.cidr).copied() else {
            let reason = format!("missing; pointing at {}", chosen.host);
            self.push(
                Action::Create,
                table,
                cidr.cidr,
                target,
                reason,
                Cause::Repair,
            );
            return;
        };
        if !route.origin.is_create_route() {
            let message = format!(
                "{} has a route for it made by {}, not ours to change",
                table.id,
                route.origin.name()
            );
            self.notice(cidr.cidr, &message);
            return;
        }
        if let Target::Other(other) = &route.target {
            let message = format!("{} routes it to {other}, not ours to change", table.id);
            self.notice(cidr.cidr, &message);
            return;
        }
        let pointed = index.target(&route.target);
        let current = pointed.and_then(|i| cidr.candidate_of(i, usable));
        if let Some(waiting) = pointed.and_then(|i| cidr.awaiting_probe(route, i, health)) {
            // Uncertain is no reason to move: a restart must not shuffle
            // routes because one host's first verdict came before another's.
            let message = format!("{} stays on {waiting} until its first probe", table.id);
            self.notice(cidr.cidr, &message);
            return;
        }
        if let Some((why, cause)) = replacement(route, pointed, current, choice) {
            let reason = format!("{why}; moving to {}", chosen.host);
            self.push(Action::Replace, table, cidr.cidr, target, reason, cause);
        }
    }

    /// The old rule, for the old command lines (no table selection):
    /// routes to interfaces or instances whose CIDR the spec lacks, made
    /// by CreateRoute, in the tables of the routers' subnets.
    pub(super) fn delete_unwanted(
        &mut self,
        spec: &RouteSpec,
        managed: &[Managed],
        ignored: impl Fn(&IpNet) -> bool,
    ) {
        let by_router_subnet = managed.iter().filter(|m| m.why == Selected::RouterSubnet);
        for Managed { table, .. } in by_router_subnet {
            for route in &table.routes {
                let ours = matches!(route.target, Target::Interface(_) | Target::Instance(_))
                    && route.origin.is_create_route();
                if ours
                    && !spec.routes().contains_key(&route.destination)
                    && !ignored(&route.destination)
                {
                    let reason = "not in the route spec".to_string();
                    self.push(
                        Action::Delete,
                        table,
                        route.destination,
                        None,
                        reason,
                        Cause::Repair,
                    );
                }
            }
        }
    }
}

/// Why a route must point elsewhere, and how urgent that is; `None` when
/// it may stay.
fn replacement(
    route: &Route,
    pointed: Option<&Interface>,
    current: Option<&Candidate>,
    choice: &Choice,
) -> Option<(String, Cause)> {
    let chosen = choice.host;
    let why = match pointed {
        _ if route.blackhole => ("its target is gone (blackhole)".to_string(), Cause::Repair),
        None => ("its target no longer exists".to_string(), Cause::Repair),
        Some(i) if !i.running => (format!("{} is not running", i.id), Cause::Repair),
        Some(i) if i.id == chosen.interface.id => return None,
        Some(i) => match current {
            None => (
                format!("{} is not an eligible host for this CIDR", i.id),
                Cause::Repair,
            ),
            Some(c) if c.state == State::Failed => (format!("{} failed", c.host), Cause::Failover),
            Some(c) if c.state == State::Questionable && chosen.state == State::Healthy => {
                (format!("{} is questionable", c.host), Cause::Failover)
            }
            Some(c) => match choice.rebalanced_from {
                Some(over) if over.host == c.host => (
                    format!(
                        "rebalancing: {} carries {} CIDRs, above the bound of {}",
                        c.host, over.load, over.bound
                    ),
                    Cause::Rebalance,
                ),
                _ if c.state == chosen.state => (
                    format!("{} differs from the host chosen for every table", c.host),
                    Cause::Repair,
                ),
                _ => return None,
            },
        },
    };
    Some(why)
}
