//! Leaving prefix-list mode (`--route-mode per-cidr` over lists an earlier
//! run left): the lists go on routing their CIDRs while per-CIDR routes
//! take over, and EC2 prefers a per-CIDR route to a list's, so a CIDR is
//! routed throughout. A change to a listed CIDR is made as a per-CIDR
//! route ([`compile_out`]); the others get theirs a few CIDRs per pass,
//! with calls to spare, and only then leave their lists ([`out_of_lists`]).

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};

use super::pass::{Step, choose};
use super::{ListPlan, Served, expand, route_target_for, served};
use crate::cloud::Held;
use crate::cloud::lists::{ENTRIES_PER_CALL, ListCall, ListRef, Lists};
use crate::cloud::model::VpcState;
use crate::cloud::operation::{Action, Cause, Operation};

/// The tables where a list routes `cidr` (no per-CIDR route there).
fn listed_in(state: &VpcState, lists: &Lists, cidr: IpNet) -> BTreeSet<String> {
    (lists.routes.iter())
        .filter(|r| matches!(served(lists, state, &r.table, cidr), Served::List(_)))
        .map(|r| r.table.clone())
        .collect()
}

/// A per-CIDR route for `cidr` in `table` to where the lists send it now.
fn keeping(seen: &VpcState, table: &str, cidr: IpNet, reason: &str) -> Option<Operation> {
    let route = (seen.table(table)?.routes.iter()).find(|r| r.destination == cidr)?;
    Some(Operation {
        action: Action::Create,
        table: table.to_string(),
        destination: cidr,
        target: Some(route_target_for(seen, &route.target)),
        reason: reason.into(),
        cause: Cause::Repair,
    })
}

/// Stage 3: `cidrs` out of every list holding them, 100 a call; the calls
/// that take each CIDR out.
fn remove_all(
    plan: &mut ListPlan,
    lists: &Lists,
    cidrs: &BTreeSet<IpNet>,
) -> BTreeMap<IpNet, Vec<(usize, usize)>> {
    let mut removed: BTreeMap<IpNet, Vec<(usize, usize)>> = BTreeMap::new();
    for list in &lists.lists {
        let leaving: Vec<IpNet> = list.entries.intersection(cidrs).copied().collect();
        for chunk in leaving.chunks(ENTRIES_PER_CALL) {
            let call = plan.push(
                3,
                ListCall::Modify {
                    list: ListRef::Existing(list.id.clone()),
                    add: Vec::new(),
                    remove: chunk.to_vec(),
                },
            );
            for cidr in chunk {
                removed.entry(*cidr).or_default().push(call);
            }
        }
    }
    removed
}

/// The calls that carry out `ops` (planned on [`expand`]`(state, lists)`)
/// in per-CIDR mode: a listed CIDR routed elsewhere gets a per-CIDR route
/// (it wins over the list's); one whose route goes in a table leaves its
/// lists, after the other tables they route it in have a per-CIDR route
/// to where it goes now.
pub fn compile_out(ops: &[Operation], state: &VpcState, lists: &Lists) -> ListPlan {
    let seen = expand(state, lists);
    let mut plan = ListPlan {
        rests_on: vec![Vec::new(); ops.len()],
        ..ListPlan::default()
    };
    let mut listed: BTreeMap<IpNet, Vec<usize>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let is_listed = matches!(
            served(lists, state, &op.table, op.destination),
            Served::List(_)
        );
        if is_listed {
            listed.entry(op.destination).or_default().push(i);
            if op.action == Action::Delete {
                continue;
            }
        }
        let action = match op.action {
            Action::Replace if is_listed => Action::Create,
            action => action,
        };
        let op = Operation {
            action,
            ..op.clone()
        };
        let call = plan.push(0, ListCall::Route(op));
        plan.rests_on[i].push(call);
    }
    let mut leaving = BTreeSet::new();
    let mut kept_by: BTreeMap<IpNet, Vec<(usize, usize)>> = BTreeMap::new();
    for (cidr, of) in &listed {
        if of.iter().all(|i| ops[*i].action != Action::Delete) {
            continue;
        }
        let touched: BTreeSet<&str> = of.iter().map(|i| ops[*i].table.as_str()).collect();
        for table in listed_in(state, lists, *cidr) {
            let reason = "keeping its route as it leaves a prefix list";
            if let Some(op) = (!touched.contains(table.as_str()))
                .then(|| keeping(&seen, &table, *cidr, reason))
                .flatten()
            {
                let call = plan.push(0, ListCall::Route(op));
                kept_by.entry(*cidr).or_default().push(call);
            }
        }
        leaving.insert(*cidr);
    }
    let removed = remove_all(&mut plan, lists, &leaving);
    for (cidr, of) in &listed {
        for i in of.iter().filter(|i| ops[**i].action == Action::Delete) {
            let rests = &mut plan.rests_on[*i];
            rests.extend(kept_by.get(cidr).into_iter().flatten());
            rests.extend(removed.get(cidr).into_iter().flatten());
        }
    }
    plan
}

/// The calls that move the next few listed CIDRs out of the lists: a
/// per-CIDR route to where the lists send it in each table they route it
/// in, then out of every list. Only CIDRs all of whose listed routes are
/// `held` move; the first whenever a call is spare, the next ones while
/// their routes fit in `spare`.
pub fn out_of_lists(held: &Held, state: &VpcState, lists: &Lists, spare: usize) -> Step {
    let seen = expand(state, lists);
    let cidrs: BTreeSet<IpNet> = (lists.lists.iter())
        .flat_map(|l| l.entries.iter().copied())
        .collect();
    let movable: BTreeMap<IpNet, BTreeSet<String>> = (cidrs.into_iter())
        .map(|cidr| (cidr, listed_in(state, lists, cidr)))
        .filter(|(cidr, tables)| tables.iter().all(|t| held.contains(&(t.clone(), *cidr))))
        .collect();
    let chosen = choose(&movable, spare, BTreeSet::len);
    let left = movable.len() - chosen.len();
    let mut plan = ListPlan::default();
    for (cidr, tables) in &chosen {
        for table in tables.iter() {
            if let Some(op) = keeping(&seen, table, *cidr, "moving out of a prefix list") {
                plan.push(0, ListCall::Route(op));
            }
        }
    }
    let leaving = chosen.iter().map(|(cidr, _)| *cidr).collect();
    remove_all(&mut plan, lists, &leaving);
    Step {
        plan,
        cidrs: chosen.len(),
        left,
        tidying: false,
    }
}
