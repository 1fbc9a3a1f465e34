//! Switching to prefix-list mode: per-CIDR routes found at start (per-CIDR
//! mode's, adopted without a write) move into lists a few CIDRs per pass,
//! with the EC2 calls to spare. A CIDR goes into a list routed to the same
//! router first, and only then is its per-CIDR route deleted: it is routed
//! throughout, and to the same router. Once nothing is left to move in
//! either direction ([`super::leave`]), the lists are tidied: empty ones
//! deleted, oversized ones shrunk.

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};

use super::pass::{Step, choose};
use super::{Limits, ListPlan, Mode, Served, Sizing, compile, route_target_for, served};
use crate::cloud::Held;
use crate::cloud::lists::{ListCall, ListRef, ListRoute, Lists};
use crate::cloud::model::{Target, VpcState};
use crate::cloud::operation::{Action, Cause, Operation};

/// The next pass toward `mode`'s form with `spare` calls: CIDRs moved
/// into lists (or out of them, in per-CIDR mode), and once none is left,
/// the lists tidied.
pub fn next_pass(
    mode: Mode,
    held: &Held,
    state: &VpcState,
    lists: &Lists,
    limits: &Limits,
    spare: usize,
) -> Step {
    let step = match mode {
        Mode::PrefixList => into_lists(held, state, lists, limits, spare),
        Mode::PerCidr => super::leave::out_of_lists(held, state, lists, spare),
    };
    if step.cidrs > 0 || step.left > 0 {
        return step;
    }
    Step {
        plan: tidy(held, state, lists, mode == Mode::PrefixList, spare),
        tidying: true,
        ..Step::default()
    }
}

/// The per-CIDR routes among `held`, by CIDR: (table, router ENI).
fn per_cidr(held: &Held, state: &VpcState) -> BTreeMap<IpNet, Vec<(String, Target)>> {
    let mut found: BTreeMap<IpNet, Vec<(String, Target)>> = BTreeMap::new();
    for (table, cidr) in held {
        let route = (state.table(table))
            .and_then(|t| t.routes.iter().find(|r| r.destination == *cidr))
            .filter(|r| matches!(r.target, Target::Interface(_)) && !r.blackhole);
        if let Some(route) = route {
            let routes = found.entry(*cidr).or_default();
            routes.push((table.clone(), route.target.clone()));
        }
    }
    found
}

/// The lists' size: the CIDRs held over the routers they are held on
/// (read where each route comes from, without expanding the VPC).
fn sizing(held: &Held, state: &VpcState, lists: &Lists) -> Sizing {
    let cidrs: BTreeSet<IpNet> = held.iter().map(|(_, cidr)| *cidr).collect();
    let routers: BTreeSet<&Target> = (held.iter())
        .filter_map(|(table, cidr)| match served(lists, state, table, *cidr) {
            Served::Static => {
                let routes = &state.table(table)?.routes;
                Some(&routes.iter().find(|r| r.destination == *cidr)?.target)
            }
            Served::List(id) => Some(&lists.route(table, &id)?.target),
            Served::None => None,
        })
        .collect();
    Sizing {
        bound: cidrs.len().div_ceil(routers.len().max(1)),
    }
}

/// The calls that move the next few `held` per-CIDR routes of `state` into
/// lists (stage 4 deletes them, after every entry is in place and any
/// stale one elsewhere is gone), as [`choose`] picks them. Tables that
/// cannot hold more lists (`limits`) keep their per-CIDR routes.
fn into_lists(held: &Held, state: &VpcState, lists: &Lists, limits: &Limits, spare: usize) -> Step {
    let mut found = per_cidr(held, state);
    for routes in found.values_mut() {
        routes.retain(|(table, _)| !limits.per_cidr_tables.contains(table));
    }
    found.retain(|_, routes| !routes.is_empty());
    let chosen = choose(&found, spare, Vec::len);
    let left = found.len() - chosen.len();
    if chosen.is_empty() {
        return Step {
            left,
            ..Step::default()
        };
    }
    // Without its per-CIDR routes, each CIDR is one to route by a list to
    // the router it is on; the routes go once the lists route it.
    let mut without = state.clone();
    let mut ops = Vec::new();
    for (cidr, routes) in &chosen {
        for (table, target) in routes.iter() {
            if let Some(t) = without.route_tables.iter_mut().find(|t| &t.id == table) {
                t.routes.retain(|r| r.destination != *cidr);
            }
            ops.push(Operation {
                action: Action::Create,
                table: table.clone(),
                destination: *cidr,
                target: Some(route_target_for(state, target)),
                reason: "moving into a prefix list".into(),
                cause: Cause::Repair,
            });
        }
    }
    let mut plan = compile(&ops, &without, lists, sizing(held, state, lists), limits);
    for op in ops {
        let delete = Operation {
            action: Action::Delete,
            target: None,
            reason: "now routed by a prefix list".into(),
            ..op
        };
        plan.push(4, ListCall::Route(delete));
    }
    Step {
        plan,
        cidrs: chosen.len(),
        left,
        tidying: false,
    }
}

/// Once nothing is left to move, tidying with calls to spare: an empty
/// list loses its routes, then is deleted; with `shrink` (prefix-list
/// mode), a list at least twice the size [`Sizing`] would give it now is
/// made that size, so that it holds less of every table's route quota.
fn tidy(held: &Held, state: &VpcState, lists: &Lists, shrink: bool, spare: usize) -> ListPlan {
    let sizing = sizing(held, state, lists);
    let mut plan = ListPlan::default();
    for list in &lists.lists {
        let routes: Vec<&ListRoute> = lists.routes.iter().filter(|r| r.list == list.id).collect();
        let size = sizing.size_for(list.entries.len());
        let calls = match list.entries.is_empty() {
            true => routes.len() + 1,
            false if shrink && list.max_entries >= 2 * size => 1,
            false => continue,
        };
        if spare == 0 || (plan.calls() > 0 && plan.calls() + calls > spare) {
            break;
        }
        if list.entries.is_empty() {
            for route in routes {
                let unroute = ListCall::Unroute {
                    table: route.table.clone(),
                    list: list.id.clone(),
                };
                plan.push(0, unroute);
            }
            plan.push(
                1,
                ListCall::Delete {
                    list: list.id.clone(),
                },
            );
        } else {
            let list = ListRef::Existing(list.id.clone());
            plan.push(
                0,
                ListCall::Resize {
                    list,
                    max_entries: size,
                },
            );
        }
    }
    plan
}
