//! Prefix-list mode's planning: many CIDRs move with a number of EC2
//! calls that depends on the routers and tables, not on the CIDRs.
//!
//! A table routes each list it references (destination: the list) to one
//! target. The planner goes on seeing per-CIDR routes: [`expand`] turns
//! the lists into the routes they stand for, and [`compile`] turns the
//! planner's per-CIDR operations into calls on lists:
//!
//! - a list all of whose CIDRs leave their router in a table is re-pointed
//!   there: one `ReplaceRoute` per table however many CIDRs it holds, to
//!   the target most of them go to (stage 0, with the per-CIDR calls);
//! - a CIDR no re-pointed list takes where it should go moves to a list
//!   that routes it as the plan wants in every table (a new list if none
//!   does): added there first (stage 2), removed from its old list after
//!   (stage 3), 100 entries a call. Meanwhile both lists hold it; EC2 then
//!   uses one of the two routes, and both point where the planner chose,
//!   so no CIDR is ever without a route;
//! - a list about to hold more than its maximum grows first (stage 1): a
//!   list's maximum, not its size, counts against the route quota of
//!   every table that references it, so lists are sized from the balanced
//!   share of the CIDRs ([`Sizing`]), not from the most they could hold.
//!
//! A CIDR with a per-CIDR route in a table (per-CIDR mode's, or a
//! person's) is routed by it there, as EC2 prefers such a route to a
//! list's; operations on those routes pass through as they are.

mod adapter;
mod leave;
mod migrate;
mod pass;

pub use adapter::Listed;

/// The form the routes are kept in (`--route-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    PerCidr,
    PrefixList,
}

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};

use crate::cloud::lists::{ENTRIES_PER_CALL, ListCall, ListRef, Lists, PrefixList, target_of};
use crate::cloud::model::{Route, RouteOrigin, Target, VpcState};
use crate::cloud::operation::{Action, Cause, Operation, RouteTarget, RouterTarget};

/// How big a list is made: its share of the CIDRs, `bound` (the balanced
/// number of CIDRs per router), with a quarter more for what a failover
/// brings, or what it holds if that is more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    pub bound: usize,
}

impl Sizing {
    pub fn size_for(self, entries: usize) -> usize {
        let base = entries.max(self.bound);
        (base + base.div_ceil(4)).max(5)
    }
}

/// The calls that carry out a batch of per-CIDR operations, in stages: a
/// stage starts once every call of the one before has succeeded. The last
/// stage is the migration's: per-CIDR routes deleted once lists route
/// their CIDRs ([`migrate`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPlan {
    pub stages: [Vec<ListCall>; 5],
    /// For each operation compiled, the calls (stage, index) it rests on:
    /// it is done when they all are.
    pub rests_on: Vec<Vec<(usize, usize)>>,
}

impl ListPlan {
    pub fn calls(&self) -> usize {
        self.stages.iter().map(Vec::len).sum()
    }

    fn push(&mut self, stage: usize, call: ListCall) -> (usize, usize) {
        self.stages[stage].push(call);
        (stage, self.stages[stage].len() - 1)
    }
}

/// Where a table's route for a CIDR comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Served {
    /// A per-CIDR route.
    Static,
    /// A list's route (the first list by id, when two hold the CIDR).
    List(String),
    None,
}

/// Where `table`'s route for `cidr` comes from.
fn served(lists: &Lists, state: &VpcState, table: &str, cidr: IpNet) -> Served {
    let is_static =
        (state.table(table)).is_some_and(|t| t.routes.iter().any(|r| r.destination == cidr));
    if is_static {
        return Served::Static;
    }
    (lists.routed_in(table))
        .find(|r| {
            lists
                .list(&r.list)
                .is_some_and(|l| l.entries.contains(&cidr))
        })
        .map_or(Served::None, |r| Served::List(r.list.clone()))
}

/// The VPC as the planner sees it: `state`'s per-CIDR routes, and in each
/// table a route for every entry of every list it routes, unless a
/// per-CIDR route or an earlier list (by id) already routes the CIDR.
pub fn expand(state: &VpcState, lists: &Lists) -> VpcState {
    let mut out = state.clone();
    for table in &mut out.route_tables {
        let mut routed: BTreeSet<IpNet> = table.routes.iter().map(|r| r.destination).collect();
        for route in lists.routed_in(&table.id) {
            let Some(list) = lists.list(&route.list) else {
                continue;
            };
            for cidr in &list.entries {
                if routed.insert(*cidr) {
                    table.routes.push(Route {
                        destination: *cidr,
                        target: route.target.clone(),
                        blackhole: route.blackhole,
                        origin: RouteOrigin::CreateRoute,
                    });
                }
            }
        }
    }
    out
}

/// What EC2 has said the VPC cannot hold, learned from its refusals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Tables whose route quota cannot hold another list's route or a
    /// bigger list: a CIDR gets a per-CIDR route there instead of a new
    /// place in a list.
    pub per_cidr_tables: BTreeSet<String>,
    /// Lists that cannot grow (a table routing them is at its quota).
    pub fixed_lists: BTreeSet<String>,
}

/// A list this plan creates: where it is routed, what it holds.
struct NewList {
    signature: BTreeMap<String, Target>,
    entries: Vec<IpNet>,
    ipv6: bool,
}

/// Where a CIDR of the batch ends: its operations, the list it stays in or
/// goes to (none: it leaves every list), and the re-points already giving
/// it its new target.
struct Placed {
    cidr: IpNet,
    ops: Vec<usize>,
    home: Option<ListRef>,
    given: Vec<(usize, usize)>,
}

/// The calls that carry out `ops` (planned on [`expand`]`(state, lists)`),
/// within `limits`: in a table that cannot hold more lists, a CIDR that
/// is created or moves gets a per-CIDR route (it wins over a list's); a
/// list that cannot grow takes no more entries than it has room for.
pub fn compile(
    ops: &[Operation],
    state: &VpcState,
    lists: &Lists,
    sizing: Sizing,
    limits: &Limits,
) -> ListPlan {
    let mut plan = ListPlan {
        rests_on: vec![Vec::new(); ops.len()],
        ..ListPlan::default()
    };
    // What each list-served operation wants: CIDR -> table -> the op.
    let mut wanted: BTreeMap<IpNet, BTreeMap<String, usize>> = BTreeMap::new();
    // Tables where a listed CIDR gets a per-CIDR route: CIDR -> tables.
    let mut pinned: BTreeMap<IpNet, BTreeSet<String>> = BTreeMap::new();
    // Operations on listed CIDRs in full tables, with the list: a re-point
    // carries them at no cost to the quota, else a per-CIDR route does.
    let mut pin_unless_repointed: Vec<(usize, String)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let held_back = limits.per_cidr_tables.contains(&op.table);
        match served(lists, state, &op.table, op.destination) {
            Served::Static => {
                let call = plan.push(0, ListCall::Route(op.clone()));
                plan.rests_on[i].push(call);
            }
            Served::None if held_back => {
                let call = plan.push(0, ListCall::Route(op.clone()));
                plan.rests_on[i].push(call);
            }
            Served::List(list) => {
                if held_back && op.action != Action::Delete {
                    pin_unless_repointed.push((i, list));
                }
                let tables = wanted.entry(op.destination).or_default();
                tables.insert(op.table.clone(), i);
            }
            Served::None => {
                let tables = wanted.entry(op.destination).or_default();
                tables.insert(op.table.clone(), i);
            }
        }
    }

    // Re-points: a list all of whose CIDRs leave their target in a table.
    let mut after = lists.clone();
    let mut repointed: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for route in &lists.routes {
        let Some(list) = lists.list(&route.list) else {
            continue;
        };
        let members: Vec<IpNet> = (list.entries.iter().copied())
            .filter(|c| served(lists, state, &route.table, *c) == Served::List(list.id.clone()))
            .collect();
        let moving: Option<Vec<&Operation>> = (members.iter())
            .map(|c| Some(&ops[*wanted.get(c)?.get(&route.table)?]))
            .collect();
        let Some(moving) = moving.filter(|m| !m.is_empty()) else {
            continue;
        };
        let mut counts: BTreeMap<Target, (usize, &RouteTarget)> = BTreeMap::new();
        for op in &moving {
            match (op.action, &op.target) {
                (Action::Replace, Some(to)) if target_of(to) != route.target => {
                    counts.entry(target_of(to)).or_insert((0, to)).0 += 1;
                }
                (Action::Delete, _) => {}
                // A CIDR of the list stays where it is.
                _ => {
                    counts.clear();
                    break;
                }
            }
        }
        let Some((target, (_, to))) =
            (counts.into_iter()).max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.0.cmp(&a.0)))
        else {
            continue;
        };
        let call = plan.push(
            0,
            ListCall::Repoint {
                table: route.table.clone(),
                list: ListRef::Existing(route.list.clone()),
                to: to.clone(),
            },
        );
        repointed.insert((route.table.clone(), route.list.clone()), call);
        if let Some(r) =
            (after.routes.iter_mut()).find(|r| r.table == route.table && r.list == route.list)
        {
            r.target = target;
            r.blackhole = false;
        }
    }

    for (i, list) in pin_unless_repointed {
        let op = &ops[i];
        let carried = repointed.contains_key(&(op.table.clone(), list.clone()))
            && (after.route(&op.table, &list).map(|r| &r.target))
                == op.target.as_ref().map(target_of).as_ref();
        if carried {
            continue;
        }
        if let Some(tables) = wanted.get_mut(&op.destination) {
            tables.remove(&op.table);
            if tables.is_empty() {
                wanted.remove(&op.destination);
            }
        }
        let create = Operation {
            action: Action::Create,
            ..op.clone()
        };
        let call = plan.push(0, ListCall::Route(create));
        plan.rests_on[i].push(call);
        let tables = pinned.entry(op.destination).or_default();
        tables.insert(op.table.clone());
    }

    // Each CIDR's place after this batch: table -> target, and the calls
    // that already give it there.
    let mut adds: BTreeMap<ListRef, Vec<IpNet>> = BTreeMap::new();
    let mut removes: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
    let mut new_lists: Vec<NewList> = Vec::new();
    let mut placed: Vec<Placed> = Vec::new();
    for (cidr, tables) in &wanted {
        let mut place: BTreeMap<String, Target> = BTreeMap::new();
        let mut statics = BTreeSet::new();
        let mut given = Vec::new();
        // Where the CIDR is routed now, by list, after the re-points.
        for route in &after.routes {
            match served(lists, state, &route.table, *cidr) {
                Served::List(id) if id == route.list => {
                    let current = (after.route(&route.table, &id)).map(|r| r.target.clone());
                    place.insert(route.table.clone(), current.expect("routed"));
                    if let Some(call) = repointed.get(&(route.table.clone(), id)) {
                        given.push(*call);
                    }
                }
                Served::Static => {
                    statics.insert(route.table.clone());
                }
                _ => {}
            }
        }
        // Per-CIDR from this batch on.
        for table in pinned.get(cidr).into_iter().flatten() {
            place.remove(table);
            statics.insert(table.clone());
        }
        for (table, &i) in tables {
            match &ops[i].target {
                Some(to) if ops[i].action != Action::Delete => {
                    place.insert(table.clone(), target_of(to));
                }
                _ => {
                    place.remove(table);
                }
            }
        }
        let holding: Vec<&PrefixList> = (lists.lists.iter())
            .filter(|l| l.entries.contains(cidr))
            .collect();
        let fits = |place: &BTreeMap<String, Target>,
                    statics: &BTreeSet<String>,
                    signature: &BTreeMap<String, Target>| {
            let relevant = |(t, _): &(&String, &Target)| !statics.contains(*t);
            signature
                .iter()
                .filter(relevant)
                .eq(place.iter().filter(relevant))
        };
        let ops_of: Vec<usize> = tables.values().copied().collect();
        // The list it stays in or goes to.
        let ipv6 = matches!(cidr, IpNet::V6(_));
        // A list that cannot grow takes what it has room for.
        let room = |list: &PrefixList| {
            let coming = adds
                .get(&ListRef::Existing(list.id.clone()))
                .map_or(0, Vec::len);
            !limits.fixed_lists.contains(&list.id) || list.entries.len() + coming < list.max_entries
        };
        // A list holding it already is best (nothing to add), then any.
        let find = |place: &BTreeMap<String, Target>, statics: &BTreeSet<String>| {
            let existing = (holding.iter().map(|l| &l.id))
                .chain((after.lists.iter()).filter(|l| room(l)).map(|l| &l.id))
                .find(|id| {
                    let list = after.list(id);
                    list.is_some_and(|l| l.ipv6 == ipv6)
                        && fits(place, statics, &after.signature(id))
                });
            let existing = existing.map(|id| ListRef::Existing(id.clone()));
            existing.or_else(|| {
                (new_lists.iter())
                    .position(|l| l.ipv6 == ipv6 && fits(place, statics, &l.signature))
                    .map(ListRef::New)
            })
        };
        let mut home = (!place.is_empty())
            .then(|| find(&place, &statics))
            .flatten();
        let full: Vec<String> = (place.keys())
            .filter(|t| limits.per_cidr_tables.contains(*t))
            .cloned()
            .collect();
        if home.is_none() && !full.is_empty() {
            // A new list is routed in every table of its signature: where a
            // table cannot hold another, the CIDR keeps its route there as a
            // per-CIDR one.
            for table in full {
                let target = place.remove(&table).expect("placed");
                let keep = Operation {
                    action: Action::Create,
                    table: table.clone(),
                    destination: *cidr,
                    target: Some(route_target_for(state, &target)),
                    reason: "kept per CIDR: the table cannot hold another list".into(),
                    cause: Cause::Repair,
                };
                given.push(plan.push(0, ListCall::Route(keep)));
                statics.insert(table);
            }
            home = (!place.is_empty())
                .then(|| find(&place, &statics))
                .flatten();
        }
        if place.is_empty() {
            for list in &holding {
                removes.entry(list.id.clone()).or_default().push(*cidr);
            }
            placed.push(Placed {
                cidr: *cidr,
                ops: ops_of,
                home: None,
                given,
            });
            continue;
        }
        let home = home.unwrap_or_else(|| {
            new_lists.push(NewList {
                signature: place.clone(),
                entries: Vec::new(),
                ipv6,
            });
            ListRef::New(new_lists.len() - 1)
        });
        match &home {
            ListRef::New(k) => new_lists[*k].entries.push(*cidr),
            ListRef::Existing(id) if !holding.iter().any(|l| &l.id == id) => {
                adds.entry(home.clone()).or_default().push(*cidr);
            }
            ListRef::Existing(_) => {}
        }
        for list in &holding {
            if ListRef::Existing(list.id.clone()) != home {
                removes.entry(list.id.clone()).or_default().push(*cidr);
            }
        }
        placed.push(Placed {
            cidr: *cidr,
            ops: ops_of,
            home: Some(home),
            given,
        });
    }

    // Stage 1: new lists with their first entries; room in the others.
    let mut calls_of: BTreeMap<ListRef, Vec<(usize, usize)>> = BTreeMap::new();
    for (k, new) in new_lists.iter().enumerate() {
        let first = new.entries.iter().take(ENTRIES_PER_CALL).copied().collect();
        let call = plan.push(
            1,
            ListCall::Create {
                list: k,
                ipv6: new.ipv6,
                max_entries: sizing.size_for(new.entries.len()),
                entries: first,
            },
        );
        calls_of.entry(ListRef::New(k)).or_default().push(call);
    }
    for (list, cidrs) in &adds {
        let ListRef::Existing(id) = list else {
            continue;
        };
        let current = lists.list(id).expect("an existing list");
        let needed = current.entries.len() + cidrs.len();
        if needed > current.max_entries {
            let call = plan.push(
                1,
                ListCall::Resize {
                    list: list.clone(),
                    max_entries: sizing.size_for(needed),
                },
            );
            calls_of.entry(list.clone()).or_default().push(call);
        }
    }
    // Stage 2: the new lists' routes and the rest of their entries; the
    // entries coming into the others.
    for (k, new) in new_lists.iter().enumerate() {
        for (table, target) in &new.signature {
            let to = route_target_for(state, target);
            let call = plan.push(
                2,
                ListCall::RouteList {
                    table: table.clone(),
                    list: ListRef::New(k),
                    to,
                },
            );
            calls_of.entry(ListRef::New(k)).or_default().push(call);
        }
        let rest = &new.entries[new.entries.len().min(ENTRIES_PER_CALL)..];
        for chunk in rest.chunks(ENTRIES_PER_CALL) {
            let call = plan.push(
                2,
                ListCall::Modify {
                    list: ListRef::New(k),
                    add: chunk.to_vec(),
                    remove: Vec::new(),
                },
            );
            calls_of.entry(ListRef::New(k)).or_default().push(call);
        }
    }
    for (list, cidrs) in &adds {
        for chunk in cidrs.chunks(ENTRIES_PER_CALL) {
            let call = plan.push(
                2,
                ListCall::Modify {
                    list: list.clone(),
                    add: chunk.to_vec(),
                    remove: Vec::new(),
                },
            );
            calls_of.entry(list.clone()).or_default().push(call);
        }
    }
    // Stage 3: the entries leaving.
    let mut removed: BTreeMap<IpNet, Vec<(usize, usize)>> = BTreeMap::new();
    for (id, cidrs) in &removes {
        for chunk in cidrs.chunks(ENTRIES_PER_CALL) {
            let call = plan.push(
                3,
                ListCall::Modify {
                    list: ListRef::Existing(id.clone()),
                    add: Vec::new(),
                    remove: chunk.to_vec(),
                },
            );
            for cidr in chunk {
                removed.entry(*cidr).or_default().push(call);
            }
        }
    }
    for placed in placed {
        let mut rests: Vec<(usize, usize)> = placed.given;
        if let Some(home) = &placed.home {
            rests.extend(calls_of.get(home).into_iter().flatten());
        }
        rests.extend(removed.get(&placed.cidr).into_iter().flatten());
        rests.sort();
        rests.dedup();
        for i in placed.ops {
            // A list's route in another table is not this one's business.
            let own = |(stage, k): &(usize, usize)| match &plan.stages[*stage][*k] {
                ListCall::Repoint { table, .. } | ListCall::RouteList { table, .. } => {
                    *table == ops[i].table
                }
                _ => true,
            };
            plan.rests_on[i] = rests.iter().copied().filter(own).collect();
        }
    }
    plan
}

/// The operation target for `target`: the router of an ENI (its first
/// address, for the views), or a gateway.
fn route_target_for(state: &VpcState, target: &Target) -> RouteTarget {
    match target {
        Target::Interface(eni) => match state.interface(eni).and_then(|i| i.ips.first()) {
            Some(host) => RouteTarget::Router(RouterTarget {
                eni: eni.clone(),
                host: *host,
            }),
            None => RouteTarget::Gateway(eni.clone()),
        },
        Target::Instance(id) | Target::Other(id) => RouteTarget::Gateway(id.clone()),
    }
}

#[cfg(test)]
mod tests;
