//! What each route needs: the CIDRs to route (and those that cannot be),
//! each managed table's route created, kept or replaced toward the chosen
//! host and why, and the managed routes the spec lacks deleted.

use ipnet::IpNet;
use rustc_hash::FxHashMap as HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::index::{Candidate, Facts, Managed, VpcIndex, Wanted};
use super::spread::{Choice, Spread};
use super::{Plan, Settings};
use crate::cloud::claims::Claim;
use crate::cloud::model::{Interface, Route, Target};
use crate::cloud::operation::{Action, Cause, RouteTarget, RouterTarget};
use crate::health::{HealthSnapshot, State};
use crate::selector::Selected;
use crate::spec::{Fallback, RouteSpec};

impl Plan {
    /// The spec's CIDRs to route (not ignored, with eligible hosts), each
    /// with where its routes point now.
    pub(super) fn wanted<'p, 'v>(
        &mut self,
        spec: &'p RouteSpec,
        managed: &[Managed<'v>],
        usable: &'p HashMap<IpAddr, Candidate<'v>>,
        index: &VpcIndex<'v>,
        settings: &'p Settings,
        ignored: impl Fn(&IpNet) -> bool,
    ) -> Vec<Wanted<'p, 'v>> {
        let mut wanted = Vec::with_capacity(spec.len());
        for (cidr, hosts) in spec.routes() {
            if ignored(cidr) {
                continue;
            }
            let fallback = spec.fallback_of(cidr).or(settings.fallback.as_ref());
            if hosts.is_empty() && fallback.is_none() {
                self.notice(
                    *cidr,
                    "no eligible router in the spec; existing routes left alone",
                );
                continue;
            }
            let mut cidr = Wanted {
                cidr: *cidr,
                hosts,
                tables: spec.tables_of(cidr),
                candidates: hosts.iter().filter_map(|h| usable.get(h)).collect(),
                current: Vec::with_capacity(managed.len()),
                set_aside: settings.move_off.get(cidr).copied(),
                preferences: spec.preferences_of(cidr),
                fallback,
            };
            cidr.current = managed
                .iter()
                .map(|m| {
                    if !m.takes(cidr.tables) {
                        return None;
                    }
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
    /// choice; a CIDR with no usable host falls back, or is left as it is.
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
                match cidr.fallback {
                    Some(fallback) if !cidr.awaits_a_first_probe(facts.index, facts.health) => {
                        let message = match fallback {
                            Fallback::Withdraw => "no usable eligible host (failed, not running or unknown); routes withdrawn".to_string(),
                            Fallback::Gateway(id) => format!("no usable eligible host (failed, not running or unknown); routes on the fallback {} {id}", fallback.kind()),
                        };
                        self.notice(cidr.cidr, &message);
                        for table in managed.iter().filter(|m| m.takes(cidr.tables)) {
                            self.fall_back(cidr, table, fallback);
                        }
                    }
                    _ => {
                        self.notice(
                            cidr.cidr,
                            "no usable eligible host (failed, not running, unknown or not probed yet); routes left as they are",
                        );
                        if !cidr.awaits_a_first_probe(facts.index, facts.health) {
                            self.stranded.insert(cidr.cidr);
                        }
                    }
                }
                continue;
            }
            for table in managed.iter().filter(|m| m.takes(cidr.tables)) {
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
            settings,
        } = facts;
        let chosen = choice.host;
        let table = managed.table;
        if self.claimed_by_another(cidr, managed) {
            return;
        }
        let target = Some(RouteTarget::Router(RouterTarget {
            eni: chosen.interface.id.clone(),
            host: chosen.host,
        }));
        let route = managed.routes.get(&cidr.cidr).copied();
        // Off the fallback (withdrawn, or on its gateway) only once the
        // router has stayed healthy for the hold since it came back.
        let on_fallback = match (route, cidr.fallback) {
            (None, Some(Fallback::Withdraw)) => true,
            (Some(route), fallback) => managed.owns_gateway_route(route, fallback),
            (None, _) => false,
        };
        if on_fallback && let Some(end) = chosen.held_until(settings.failback_hold, settings.now) {
            let left = end
                .saturating_duration_since(settings.now)
                .as_secs_f64()
                .ceil();
            let message = format!(
                "{} stays on its fallback until {} has been healthy for {} s ({left} s more)",
                table.id,
                chosen.host,
                settings.failback_hold.as_secs()
            );
            self.notice(cidr.cidr, &message);
            self.again_at(end);
            if let Some(fallback) = cidr.fallback {
                self.on_fallback
                    .insert((cidr.cidr, table.id.clone()), fallback.clone());
            }
            return;
        }
        let Some(route) = route else {
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
            if on_fallback {
                let reason = format!("leaving the fallback {other}: {} is eligible", chosen.host);
                self.push(
                    Action::Replace,
                    table,
                    cidr.cidr,
                    target,
                    reason,
                    Cause::Repair,
                );
            } else {
                let message = format!("{} routes it to {other}, not ours to change", table.id);
                self.notice(cidr.cidr, &message);
            }
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
        let set_aside = current.filter(|c| cidr.set_aside == Some(c.host));
        let replaced = match set_aside {
            Some(c) if c.host != chosen.host => {
                Some((format!("{} was asked off it", c.host), Cause::Drain))
            }
            _ => replacement(route, pointed, current, choice, cidr, health),
        };
        match replaced {
            Some((why, cause)) => {
                let reason = format!("{why}; moving to {}", chosen.host);
                self.push(Action::Replace, table, cidr.cidr, target, reason, cause);
            }
            None => {
                self.held.insert((table.id.clone(), cidr.cidr));
            }
        }
    }

    /// The operation, if any, that puts `managed`'s route for `cidr` on its
    /// fallback: pointed at the gateway, or deleted (`withdraw`). Only a
    /// route that is ours: to a router, or to a gateway this daemon set.
    fn fall_back(&mut self, cidr: &Wanted, managed: &Managed, fallback: &Fallback) {
        let table = managed.table;
        if self.claimed_by_another(cidr, managed) {
            return;
        }
        let route = managed.routes.get(&cidr.cidr).copied();
        let to = |id: &str| Some(RouteTarget::Gateway(id.to_string()));
        let reason = match fallback {
            Fallback::Withdraw => {
                "no eligible router; withdrawn, so that a wider route takes the traffic".to_string()
            }
            Fallback::Gateway(id) => {
                format!(
                    "no eligible router; falling back to the {} {id}",
                    fallback.kind()
                )
            }
        };
        match (route, fallback) {
            (None, Fallback::Withdraw) => {}
            (None, Fallback::Gateway(id)) => {
                self.push(
                    Action::Create,
                    table,
                    cidr.cidr,
                    to(id),
                    reason,
                    Cause::Failover,
                );
            }
            (Some(route), _) => {
                let ours = match &route.target {
                    Target::Interface(_) | Target::Instance(_) => route.origin.is_create_route(),
                    Target::Other(_) => managed.owns_gateway_route(route, Some(fallback)),
                };
                if !ours {
                    let message = format!(
                        "{} routes it to {} (made by {}), not ours to change",
                        table.id,
                        match &route.target {
                            Target::Interface(t) | Target::Instance(t) | Target::Other(t) => t,
                        },
                        route.origin.name()
                    );
                    self.notice(cidr.cidr, &message);
                    return;
                }
                match fallback {
                    Fallback::Gateway(id) if route.target == Target::Other(id.clone()) => {}
                    Fallback::Gateway(id) => {
                        self.push(
                            Action::Replace,
                            table,
                            cidr.cidr,
                            to(id),
                            reason,
                            Cause::Failover,
                        );
                    }
                    Fallback::Withdraw => {
                        self.push(
                            Action::Delete,
                            table,
                            cidr.cidr,
                            None,
                            reason,
                            Cause::Failover,
                        );
                    }
                }
            }
        }
        self.on_fallback
            .insert((cidr.cidr, table.id.clone()), fallback.clone());
    }

    /// Whether another owner claims `cidr` in `managed` (said once per plan
    /// in a notice): its route there is not ours to touch.
    fn claimed_by_another(&mut self, cidr: &Wanted, managed: &Managed) -> bool {
        let Some(owner) = managed.theirs.get(&cidr.cidr) else {
            return false;
        };
        let message = format!(
            "{} routes it for vpcrouter owner {owner}, not ours",
            managed.table.id
        );
        self.notice(cidr.cidr, &message);
        true
    }

    /// Routes to interfaces or instances, made by CreateRoute, whose CIDR
    /// the spec lacks: in the tables of the routers' subnets (the old
    /// rule, for the old command lines) all of them; in chosen tables
    /// those this daemon owns.
    pub(super) fn delete_unwanted(
        &mut self,
        spec: &RouteSpec,
        managed: &[Managed],
        ignored: impl Fn(&IpNet) -> bool,
    ) {
        for m in managed {
            for route in &m.table.routes {
                let cidr = &route.destination;
                let to_router = matches!(route.target, Target::Interface(_) | Target::Instance(_));
                let ours = ((m.why == Selected::RouterSubnet || m.ours.contains(cidr))
                    && to_router
                    && route.origin.is_create_route())
                    || m.owns_gateway_route(route, spec.fallback_of(cidr));
                // A CIDR whose own tables no longer name this one leaves it
                // too (in a chosen table, where it is known to be ours).
                let unwanted = match spec.routes().contains_key(cidr) {
                    false => Some("not in the route spec"),
                    true if m.why != Selected::RouterSubnet && !m.takes(spec.tables_of(cidr)) => {
                        Some("its route tables in the spec do not name this one")
                    }
                    true => None,
                };
                if let Some(reason) = unwanted.filter(|_| ours && !ignored(cidr)) {
                    let (table, reason) = (m.table, reason.to_string());
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

    /// In each chosen table, claim the routes this daemon has there once
    /// the plan is carried out: the spec's (existing or created, not
    /// another owner's), not those it deletes. The reconciler claims them
    /// together with what it holds before writing routes, and lets go of
    /// the deleted ones after (see [`Claim::widened`]).
    pub(super) fn claim_ownership(
        &mut self,
        spec: &RouteSpec,
        managed: &[Managed],
        settings: &Settings,
        ignored: impl Fn(&IpNet) -> bool,
    ) {
        let fallback_of = |c: &IpNet| spec.fallback_of(c).or(settings.fallback.as_ref());
        let chosen = managed.iter().filter(|m| m.why != Selected::RouterSubnet);
        for m in chosen {
            let created = (self.operations.iter())
                .filter(|op| op.table == m.table.id && op.action == Action::Create)
                .map(|op| op.destination);
            // Withdrawn to its fallback: no route of ours is left.
            let deleted: BTreeSet<IpNet> = (self.operations.iter())
                .filter(|op| op.table == m.table.id && op.action == Action::Delete)
                .map(|op| op.destination)
                .collect();
            let existing = (m.table.routes.iter())
                .filter(|r| {
                    (matches!(r.target, Target::Interface(_) | Target::Instance(_))
                        && r.origin.is_create_route())
                        || m.owns_gateway_route(r, fallback_of(&r.destination))
                })
                .map(|r| r.destination);
            let wanted_here =
                |c: &IpNet| spec.routes().contains_key(c) && m.takes(spec.tables_of(c));
            let claimed: BTreeSet<IpNet> = created
                .chain(existing)
                .filter(|c| {
                    wanted_here(c)
                        && !m.theirs.contains_key(c)
                        && !ignored(c)
                        && !deleted.contains(c)
                })
                .collect();
            if claimed != m.ours {
                self.claims.push(Claim {
                    table: m.table.id.clone(),
                    owner: settings.owner.clone(),
                    cidrs: claimed,
                });
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
    cidr: &Wanted,
    health: &HealthSnapshot,
) -> Option<(String, Cause)> {
    let chosen = choice.host;
    let why = match pointed {
        _ if route.blackhole => ("its target is gone (blackhole)".to_string(), Cause::Repair),
        None => ("its target no longer exists".to_string(), Cause::Repair),
        Some(i) if !i.running => not_running(i),
        Some(i) if i.id == chosen.interface.id => return None,
        Some(i) => match current {
            None => (
                format!("{} is not an eligible host for this CIDR", i.id),
                Cause::Repair,
            ),
            Some(c) if c.state == State::Failed => (format!("{} failed", c.host), Cause::Failover),
            Some(c) if c.drained && !chosen.drained => {
                let reason = (health.drained.get(&c.host).map(|d| d.reason.as_str()))
                    .or(c.interface.maintenance.as_deref())
                    .unwrap_or_default();
                (format!("{} is drained: {reason}", c.host), Cause::Drain)
            }
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
                _ if cidr.preference(&c.host).tier > cidr.preference(&chosen.host).tier => (
                    format!(
                        "{} is of tier {}; {} of tier {} is back",
                        c.host,
                        cidr.preference(&c.host).tier,
                        chosen.host,
                        cidr.preference(&chosen.host).tier
                    ),
                    Cause::Repair,
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

/// Why a route leaves an interface whose instance does not run: one going
/// away on purpose (stopping, shutting down) is drained before it is gone;
/// one that is gone loses traffic now.
fn not_running(interface: &Interface) -> (String, Cause) {
    let name = interface.instance.as_deref().unwrap_or(&interface.id);
    match interface.instance_state.as_deref() {
        Some(state @ ("stopping" | "shutting-down")) => {
            (format!("{name} is {state}"), Cause::Drain)
        }
        Some(state) => (format!("{name} is {state}, not running"), Cause::Failover),
        None => (format!("{} is not running", interface.id), Cause::Repair),
    }
}
