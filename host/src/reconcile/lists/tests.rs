//! Prefix-list mode against the planner itself: what the planner wants of
//! the routes it sees ([`expand`]) is what the compiled list calls make,
//! no CIDR is without a route between stages, and a dead router's CIDRs
//! move with calls that do not grow with their number.

use ipnet::IpNet;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::leave::compile_out;
use super::migrate::next_pass;
use super::{Limits, ListPlan, Mode, Sizing, compile, expand};
use crate::cloud::lists::{ListCall, ListRoute, Lists, PrefixList, next_id};
use crate::cloud::model::{Route, RouteOrigin, Target, VpcState};
use crate::cloud::operation::{Action, Cause, Operation, RouteTarget, RouterTarget};
use crate::health::HealthSnapshot;
use crate::reconcile::plan::{Settings, plan};
use crate::selector::TableSelector;
use crate::spec::RouteSpec;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

/// Romana's layout: `hosts` routers, `tables` tables (a subnet each, one
/// AZ), `cidrs` CIDRs over every router.
fn romana(hosts: usize, tables: usize, cidrs: usize) -> (VpcState, RouteSpec, Vec<IpAddr>) {
    crate::reconcile::plan::tests::cluster_of(hosts, 1, tables, cidrs)
}

/// Every table of the VPC chosen (`--route-table`), not only the routers'.
fn every_table(vpc: &VpcState) -> Settings {
    Settings {
        tables: (vpc.route_tables.iter())
            .map(|t| TableSelector::Id(t.id.clone()))
            .collect(),
        ..Settings::default()
    }
}

fn sizing(spec: &RouteSpec, hosts: usize) -> Sizing {
    Sizing {
        bound: spec.len().div_ceil(hosts),
    }
}

/// Every (table, CIDR) routed, and where to.
fn routing(vpc: &VpcState) -> BTreeMap<(String, IpNet), Target> {
    (vpc.route_tables.iter())
        .flat_map(|t| (t.routes.iter()).map(|r| ((t.id.clone(), r.destination), r.target.clone())))
        .collect()
}

/// Carry out `plan`'s stages in order, as EC2 would, each stage's calls
/// in reverse (they go out side by side, so any order must do); after
/// each call every (table, CIDR) that was routed before the plan and that
/// the plan does not delete is still routed.
fn run(
    plan: &ListPlan,
    ops: &[Operation],
    state: &mut VpcState,
    lists: &mut Lists,
) -> Result<(), String> {
    let before = routing(&expand(state, lists));
    let mut wanted = before.clone();
    for op in ops {
        let key = (op.table.clone(), op.destination);
        match &op.target {
            Some(to) if op.action != Action::Delete => {
                wanted.insert(key, crate::cloud::lists::target_of(to));
            }
            _ => {
                wanted.remove(&key);
            }
        }
    }
    let mut created = BTreeMap::new();
    for (stage, calls) in plan.stages.iter().enumerate() {
        for call in calls.iter().rev() {
            let resolved = call.resolved(&created)?;
            let id = (lists.apply(state, &resolved, next_id))
                .map_err(|e| format!("stage {stage}: {call:?}: {e}"))?;
            if let (Some(id), ListCall::Create { list, .. }) = (id, call) {
                created.insert(*list, id);
            }
            let now = routing(&expand(state, lists));
            for key in before.keys() {
                if wanted.contains_key(key) && !now.contains_key(key) {
                    return Err(format!("{key:?} without a route after {call:?}"));
                }
            }
        }
    }
    Ok(())
}

/// A VPC in prefix-list mode, and how the daemon plans and sizes for it.
struct Cluster {
    state: VpcState,
    lists: Lists,
    settings: Settings,
    sizing: Sizing,
    mode: Mode,
    limits: Limits,
}

impl Cluster {
    fn new(state: VpcState, settings: Settings, sizing: Sizing) -> Self {
        Self {
            state,
            lists: Lists::default(),
            settings,
            sizing,
            mode: Mode::PrefixList,
            limits: Limits::default(),
        }
    }

    /// The CIDRs the lists hold.
    fn held(&self) -> BTreeSet<IpNet> {
        (self.lists.lists.iter())
            .flat_map(|l| l.entries.iter().copied())
            .collect()
    }

    /// The routes the planner sees.
    fn seen(&self) -> VpcState {
        expand(&self.state, &self.lists)
    }

    /// Plan on the expanded VPC, compile, carry out: the routes the
    /// planner wanted are the routes the lists give. The operations and
    /// the plan.
    fn step(&mut self, spec: &RouteSpec, health: &HealthSnapshot) -> (Vec<Operation>, ListPlan) {
        let seen = self.seen();
        let planned = plan(spec, health, &seen, &self.settings);
        let ops = planned.operations;
        let compiled = match self.mode {
            Mode::PrefixList => compile(&ops, &self.state, &self.lists, self.sizing, &self.limits),
            Mode::PerCidr => compile_out(&ops, &self.state, &self.lists),
        };
        // Within what EC2 said the VPC cannot hold (a list that cannot
        // grow also refuses entries beyond its maximum in `run`).
        for call in compiled.stages.iter().flatten() {
            let refused = match call {
                ListCall::Resize {
                    list: crate::cloud::lists::ListRef::Existing(id),
                    ..
                } => self.limits.fixed_lists.contains(id),
                ListCall::RouteList { table, .. } => self.limits.per_cidr_tables.contains(table),
                _ => false,
            };
            assert!(!refused, "{call:?} within {:?}", self.limits);
        }
        run(&compiled, &ops, &mut self.state, &mut self.lists).unwrap();
        for claim in &planned.claims {
            let tags = &self.state.table(&claim.table).unwrap().tags;
            if let Some(change) = claim.change(tags) {
                self.state.write_tags(&change).unwrap();
            }
        }
        let mut wanted = seen.clone();
        for op in &ops {
            wanted.apply(op).unwrap();
        }
        assert_eq!(routing(&self.seen()), routing(&wanted));
        for (i, rests) in compiled.rests_on.iter().enumerate() {
            assert!(!rests.is_empty(), "{:?} rests on no call", ops[i]);
        }
        (ops, compiled)
    }
}

fn failed(ips: &[IpAddr]) -> HealthSnapshot {
    HealthSnapshot {
        failed: ips.iter().copied().collect(),
        ..HealthSnapshot::default()
    }
}

/// The router carrying the most CIDRs in the first table.
fn busiest(vpc: &VpcState, ips: &[IpAddr]) -> IpAddr {
    let mut loads: BTreeMap<&Target, usize> = BTreeMap::new();
    for route in &vpc.route_tables[0].routes {
        *loads.entry(&route.target).or_default() += 1;
    }
    let (target, _) = loads.into_iter().max_by_key(|(_, n)| *n).unwrap();
    let Target::Interface(eni) = target else {
        panic!("{target:?}")
    };
    ips[eni["eni-".len()..].parse::<usize>().unwrap()]
}

/// Start-up on an empty VPC makes a list per router, and the calls that
/// move a dead router's CIDRs (a re-point per table first, then a few
/// list edits) are the same in number for 100 CIDRs as for 1,000.
#[test]
fn a_dead_routers_cidrs_move_with_calls_that_do_not_grow_with_them() {
    let mut figures = Vec::new();
    for cidrs in [100, 1000] {
        let (state, spec, ips) = romana(4, 10, cidrs);
        let settings = every_table(&state);
        let sizing = sizing(&spec, 4);
        let mut cluster = Cluster::new(state, settings, sizing);
        let (_, start) = cluster.step(&spec, &HealthSnapshot::default());
        assert_eq!(cluster.lists.lists.len(), 4, "a list per router");
        assert_eq!(cluster.lists.routes.len(), 40, "each routed in each table");
        assert!(
            cluster
                .state
                .route_tables
                .iter()
                .all(|t| t.routes.is_empty())
        );
        for list in &cluster.lists.lists {
            assert!(list.max_entries >= list.entries.len());
            assert!(list.max_entries <= sizing.size_for(list.entries.len()));
        }
        let starting = start.calls();

        let seen = cluster.seen();
        let dead = busiest(&seen, &ips);
        let (ops, moved) = cluster.step(&spec, &failed(&[dead]));
        let carried = ops.len() / 10;
        assert!(carried >= cidrs / 4, "{carried} of {cidrs}");
        let repoints = (moved.stages[0].iter())
            .filter(|c| matches!(c, ListCall::Repoint { .. }))
            .count();
        assert_eq!(repoints, 10, "the dead router's list, once per table");
        // After stage 0 alone, every CIDR of the dead router is on a survivor.
        figures.push((cidrs, carried, starting, moved.calls()));
        let again = plan(
            &spec,
            &failed(&[dead]),
            &cluster.seen(),
            &every_table(&cluster.state),
        );
        assert!(again.operations.is_empty(), "{:?}", again.operations);
    }
    let [(_, _, _, small), (_, _, _, large)] = figures[..] else {
        unreachable!()
    };
    eprintln!("(cidrs, moved per table, start-up calls, failover calls): {figures:?}");
    assert!(small <= 20 && large <= 20, "{figures:?}");
    assert!(
        large - small <= 4,
        "one call more per 100 CIDRs moved, at most: {figures:?}"
    );
}

/// The re-point comes first and alone carries every CIDR of the dead
/// router to a survivor: stage 0 leaves none on it.
#[test]
fn the_first_stage_alone_takes_every_cidr_off_the_dead_router() {
    let (state, spec, ips) = romana(4, 3, 200);
    let settings = every_table(&state);
    let sizing = sizing(&spec, 4);
    let mut cluster = Cluster::new(state, settings, sizing);
    cluster.step(&spec, &HealthSnapshot::default());
    let dead = busiest(&cluster.seen(), &ips);
    let dead_eni = Target::Interface(format!(
        "eni-{}",
        ips.iter().position(|i| *i == dead).unwrap()
    ));
    let seen = cluster.seen();
    let ops = plan(&spec, &failed(&[dead]), &seen, &every_table(&cluster.state)).operations;
    let compiled = compile(
        &ops,
        &cluster.state,
        &cluster.lists,
        sizing,
        &Limits::default(),
    );
    for call in &compiled.stages[0] {
        cluster
            .lists
            .apply(&mut cluster.state, call, next_id)
            .unwrap();
    }
    let after = routing(&cluster.seen());
    assert_eq!(after.len(), 3 * 200);
    assert!(after.values().all(|t| *t != dead_eni));
}

/// A list that is full grows before entries come; new CIDRs join the list
/// of their router; CIDRs gone from the spec leave their list.
#[test]
fn lists_grow_before_entries_come_and_lose_the_cidrs_the_spec_drops() {
    let (state, spec, _) = romana(2, 2, 40);
    let settings = every_table(&state);
    let sizing = Sizing { bound: 20 };
    let mut cluster = Cluster::new(state, settings, sizing);
    cluster.step(&spec, &HealthSnapshot::default());
    assert!(
        cluster.lists.lists.iter().all(|l| l.max_entries == 25),
        "{:?}",
        cluster.lists
    );

    let (_, bigger, _) = romana(2, 2, 90);
    let (_, grown) = cluster.step(&bigger, &HealthSnapshot::default());
    assert_eq!(
        cluster.lists.lists.len(),
        2,
        "the new CIDRs join the routers' lists"
    );
    let resizes = (grown.stages[1].iter())
        .filter(|c| matches!(c, ListCall::Resize { .. }))
        .count();
    assert_eq!(resizes, 2, "{grown:?}");
    assert_eq!(cluster.held().len(), 90);

    let (_, smaller, _) = romana(2, 2, 10);
    cluster.step(&smaller, &HealthSnapshot::default());
    assert_eq!(cluster.held().len(), 10);
    // An idle pass makes them small again: they hold less of each table's
    // route quota.
    let before: Vec<usize> = cluster.lists.lists.iter().map(|l| l.max_entries).collect();
    cluster.migrate(&smaller, &HealthSnapshot::default(), usize::MAX);
    let after: Vec<usize> = cluster.lists.lists.iter().map(|l| l.max_entries).collect();
    assert_eq!(after, [7, 7], "from {before:?}");
}

/// A per-CIDR route (from per-CIDR mode, or a person's) routes its CIDR in
/// its table: the planner's operations on it pass through; the other
/// tables take the CIDR from a list.
#[test]
fn per_cidr_routes_are_kept_and_managed_as_they_are() {
    let (mut state, spec, ips) = romana(2, 2, 4);
    let settings = every_table(&state);
    let first = *spec.routes().keys().next().unwrap();
    state.route_tables[0].routes.push(Route {
        destination: first,
        target: Target::Interface("eni-0".into()),
        blackhole: false,
        origin: RouteOrigin::CreateRoute,
    });
    let sizing = sizing(&spec, 2);
    let mut cluster = Cluster::new(state, settings, sizing);
    cluster.step(&spec, &HealthSnapshot::default());
    let (ops, compiled) = cluster.step(&spec, &failed(&[ips[0]]));
    let passed: Vec<&Operation> = (compiled.stages[0].iter())
        .filter_map(|c| match c {
            ListCall::Route(op) => Some(op),
            _ => None,
        })
        .collect();
    assert_eq!(passed.len(), 1, "{ops:?}");
    assert_eq!(
        (passed[0].table.as_str(), passed[0].destination),
        ("rtb-0", first)
    );
}

/// A failover once EC2 has said a table is at its quota and the lists
/// cannot grow (`Limits`): the dead router's list is re-pointed, and the
/// CIDRs that then spread over the survivors go to a new list routed in
/// the other tables and to per-CIDR routes in the full one; no list grows.
#[test]
fn at_the_quota_a_failover_spreads_by_new_lists_and_per_cidr_routes() {
    let (state, spec, ips) = romana(3, 3, 30);
    let settings = every_table(&state);
    let mut cluster = Cluster::new(state, settings, sizing(&spec, 3));
    cluster.step(&spec, &HealthSnapshot::default());
    cluster.limits = Limits {
        per_cidr_tables: ["rtb-1".to_string()].into(),
        fixed_lists: cluster.lists.lists.iter().map(|l| l.id.clone()).collect(),
    };
    let dead = busiest(&cluster.seen(), &ips);
    let (ops, moved) = cluster.step(&spec, &failed(&[dead]));
    assert!(!ops.is_empty());
    let calls: Vec<&str> = moved
        .stages
        .iter()
        .flatten()
        .map(ListCall::api_call)
        .collect();
    assert!(calls.contains(&"CreateManagedPrefixList"), "{calls:?}");
    let per_cidr = &cluster.state.table("rtb-1").unwrap().routes;
    assert!(!per_cidr.is_empty(), "per-CIDR routes in the full table");
    assert!(cluster.state.table("rtb-0").unwrap().routes.is_empty());
    let again = plan(&spec, &failed(&[dead]), &cluster.seen(), &cluster.settings);
    assert!(again.operations.is_empty(), "{:?}", again.operations);
}

/// In a table at its quota a dead router's list is still re-pointed (the
/// route exists: no cost to the quota), not replaced by per-CIDR routes
/// that the table could not hold.
#[test]
fn in_a_full_table_a_dead_routers_list_is_still_re_pointed() {
    let (state, spec, ips) = romana(2, 2, 10);
    let settings = every_table(&state);
    let mut cluster = Cluster::new(state, settings, sizing(&spec, 2));
    cluster.step(&spec, &HealthSnapshot::default());
    cluster.limits.per_cidr_tables.insert("rtb-1".into());
    let (_, moved) = cluster.step(&spec, &failed(&[ips[0]]));
    let in_full: Vec<&ListCall> = (moved.stages.iter().flatten())
        .filter(|c| match c {
            ListCall::Repoint { table, .. } => table == "rtb-1",
            ListCall::Route(op) => op.table == "rtb-1",
            _ => false,
        })
        .collect();
    assert!(
        matches!(in_full[..], [ListCall::Repoint { .. }]),
        "{in_full:?}"
    );
}

/// Tables that want a CIDR on different routers (AZ affinity, the NAT
/// layout) get a list routed differently in each.
#[test]
fn tables_that_disagree_get_a_list_routed_per_table() {
    let (mut state, _, _) = romana(2, 2, 0);
    let cidr = net("0.0.0.0/0");
    let to = |h: usize| {
        RouteTarget::Router(RouterTarget {
            eni: format!("eni-{h}"),
            host: format!("10.0.0.{}", 10 + h).parse().unwrap(),
        })
    };
    let ops: Vec<Operation> = (0..2)
        .map(|t| Operation {
            action: Action::Create,
            table: format!("rtb-{t}"),
            destination: cidr,
            target: Some(to(t)),
            reason: "each AZ its own router".into(),
            cause: Cause::Repair,
        })
        .collect();
    let mut lists = Lists::default();
    let compiled = compile(
        &ops,
        &state,
        &lists,
        Sizing { bound: 1 },
        &Limits::default(),
    );
    run(&compiled, &ops, &mut state, &mut lists).unwrap();
    assert_eq!(lists.lists.len(), 1);
    let targets: BTreeSet<&Target> = lists.routes.iter().map(|r| &r.target).collect();
    let each = [
        Target::Interface("eni-0".into()),
        Target::Interface("eni-1".into()),
    ];
    assert_eq!(targets, each.iter().collect());
}

/// The expansion: a per-CIDR route beats a list's; of two lists holding a
/// CIDR, the first by id routes it; a list a table does not route adds
/// nothing there.
#[test]
fn expansion_prefers_per_cidr_routes_then_the_first_list() {
    let (mut state, _, _) = romana(2, 2, 0);
    let (a, b, c) = (net("10.1.0.0/16"), net("10.2.0.0/16"), net("10.3.0.0/16"));
    state.route_tables[0].routes.push(Route {
        destination: a,
        target: Target::Other("pcx-1".into()),
        blackhole: false,
        origin: RouteOrigin::CreateRoute,
    });
    let list = |id: &str, entries: &[IpNet]| PrefixList {
        id: id.into(),
        ipv6: false,
        entries: entries.iter().copied().collect(),
        max_entries: 10,
    };
    let route = |table: &str, list: &str, eni: &str| ListRoute {
        table: table.into(),
        list: list.into(),
        target: Target::Interface(eni.into()),
        blackhole: false,
    };
    let lists = Lists {
        lists: vec![list("pl-2", &[a, b]), list("pl-1", &[b, c])],
        routes: vec![
            route("rtb-0", "pl-2", "eni-1"),
            route("rtb-0", "pl-1", "eni-0"),
            route("rtb-1", "pl-2", "eni-1"),
        ],
    };
    let seen = routing(&expand(&state, &lists));
    let at = |table: &str, cidr: IpNet| seen.get(&(table.to_string(), cidr)).cloned();
    assert_eq!(at("rtb-0", a), Some(Target::Other("pcx-1".into())));
    assert_eq!(at("rtb-0", b), Some(Target::Interface("eni-0".into())));
    assert_eq!(at("rtb-0", c), Some(Target::Interface("eni-0".into())));
    assert_eq!(at("rtb-1", a), Some(Target::Interface("eni-1".into())));
    assert_eq!(at("rtb-1", c), None);
}

/// Lists edited by hand: an entry taken out comes back, an entry put in
/// that the spec does not have goes (in the routers' own tables, where a
/// route to a router is the daemon's; in chosen tables only what the
/// daemon claimed is, as in per-CIDR mode).
#[test]
fn a_list_edited_by_hand_is_put_right() {
    let (state, spec, _) = romana(2, 2, 6);
    let settings = Settings::default();
    let sizing = sizing(&spec, 2);
    let mut cluster = Cluster::new(state, settings, sizing);
    cluster.step(&spec, &HealthSnapshot::default());
    let taken = *cluster.lists.lists[0].entries.iter().next().unwrap();
    cluster.lists.lists[0].entries.remove(&taken);
    let foreign = net("10.250.0.0/24");
    cluster.lists.lists[1].entries.insert(foreign);
    cluster.step(&spec, &HealthSnapshot::default());
    let held = cluster.held();
    assert!(held.contains(&taken));
    assert!(!held.contains(&foreign));
    assert_eq!(held.len(), 6);
}

impl Cluster {
    /// As per-CIDR mode leaves it: the planner's routes, each its own.
    fn per_cidr(state: VpcState, settings: Settings, sizing: Sizing, spec: &RouteSpec) -> Self {
        let mut cluster = Self::new(state, settings, sizing);
        let planned = plan(
            spec,
            &HealthSnapshot::default(),
            &cluster.state,
            &cluster.settings,
        );
        for op in &planned.operations {
            cluster.state.apply(op).unwrap();
        }
        cluster
    }

    /// The per-CIDR routes to routers left.
    fn per_cidr_routes(&self) -> usize {
        (self.state.route_tables.iter())
            .flat_map(|t| &t.routes)
            .filter(|r| matches!(r.target, Target::Interface(_)))
            .count()
    }

    /// One migration pass toward the cluster's mode with `spare` calls,
    /// carried out stage by stage: after each, every (table, CIDR) is
    /// routed exactly as before. The CIDRs moved and left.
    fn migrate(
        &mut self,
        spec: &RouteSpec,
        health: &HealthSnapshot,
        spare: usize,
    ) -> (usize, usize) {
        let planned = plan(spec, health, &self.seen(), &self.settings);
        assert!(planned.operations.is_empty(), "{:?}", planned.operations);
        let step = next_pass(
            self.mode,
            &planned.held,
            &self.state,
            &self.lists,
            &self.limits,
            spare,
        );
        let before = routing(&self.seen());
        let mut created = BTreeMap::new();
        // Each stage's calls in reverse, checked after each (see `run`).
        for (stage, calls) in step.plan.stages.iter().enumerate() {
            for call in calls.iter().rev() {
                let resolved = call.resolved(&created).unwrap();
                let id = (self.lists.apply(&mut self.state, &resolved, next_id)).unwrap();
                if let (Some(id), ListCall::Create { list, .. }) = (id, call) {
                    created.insert(*list, id);
                }
                let now = routing(&self.seen());
                assert_eq!(now, before, "stage {stage}, after {call:?}");
            }
        }
        (step.cidrs, step.left)
    }
}

/// Switching a per-CIDR VPC to prefix-list mode: the routes move into
/// lists a few CIDRs per pass, as the spare calls allow; no (table, CIDR)
/// ever changes its router or goes unrouted on the way, and at the end
/// every route is a list's.
#[test]
fn per_cidr_routes_move_into_lists_a_few_per_pass_without_a_gap() {
    let (state, spec, _) = romana(4, 10, 40);
    let settings = every_table(&state);
    let mut cluster = Cluster::per_cidr(state, settings, sizing(&spec, 4), &spec);
    assert_eq!(cluster.per_cidr_routes(), 400);
    let health = HealthSnapshot::default();
    // 25 calls spare: the list calls and two CIDRs' ten deletions each.
    let (moved, left) = cluster.migrate(&spec, &health, 25);
    assert_eq!((moved, left), (2, 38));
    assert_eq!(cluster.per_cidr_routes(), 380);
    // Nothing spare: nothing sent, the rest still to do.
    assert_eq!(cluster.migrate(&spec, &health, 0), (0, 38));
    let mut passes = 0;
    while cluster.migrate(&spec, &health, usize::MAX).1 > 0 {
        passes += 1;
        assert!(passes < 5, "{passes} passes");
    }
    assert_eq!(cluster.per_cidr_routes(), 0);
    assert_eq!(cluster.held().len(), 40);
    assert_eq!(cluster.lists.lists.len(), 4, "a list per router");
    for list in &cluster.lists.lists {
        assert!(list.max_entries >= list.entries.len());
        assert!(
            list.max_entries <= cluster.sizing.size_for(list.entries.len()),
            "{list:?}"
        );
    }
    assert_eq!(cluster.migrate(&spec, &health, usize::MAX), (0, 0));
}

/// Back to per-CIDR mode over a prefix-list VPC: the CIDRs get per-CIDR
/// routes and leave their lists a few per pass, as the spare calls allow,
/// without a (table, CIDR) changing router or going unrouted; then the
/// empty lists lose their routes and are deleted.
#[test]
fn lists_empty_into_per_cidr_routes_a_few_per_pass_and_are_then_deleted() {
    let (state, spec, _) = romana(4, 10, 40);
    let settings = every_table(&state);
    let mut cluster = Cluster::new(state, settings, sizing(&spec, 4));
    let health = HealthSnapshot::default();
    cluster.step(&spec, &health);
    assert_eq!((cluster.held().len(), cluster.per_cidr_routes()), (40, 0));
    cluster.mode = Mode::PerCidr;
    // 25 calls spare: two CIDRs' ten per-CIDR routes each, and the edits.
    assert_eq!(cluster.migrate(&spec, &health, 25), (2, 38));
    assert_eq!(cluster.per_cidr_routes(), 20);
    assert_eq!(cluster.held().len(), 38);
    let mut passes = 0;
    while cluster.migrate(&spec, &health, usize::MAX).1 > 0 {
        passes += 1;
        assert!(passes < 5, "{passes} passes");
    }
    assert_eq!(cluster.per_cidr_routes(), 400);
    assert_eq!(cluster.held().len(), 0);
    assert_eq!(
        cluster.lists.routes.len(),
        40,
        "the empty lists still routed"
    );
    cluster.migrate(&spec, &health, usize::MAX);
    assert_eq!(cluster.lists, Lists::default(), "the lists deleted");
    let again = plan(&spec, &health, &cluster.seen(), &cluster.settings);
    assert!(again.operations.is_empty(), "{:?}", again.operations);
}

/// Per-CIDR mode over a list: a route that goes in one table takes its
/// CIDR out of the list only after the other tables the list routes it in
/// have a per-CIDR route to the same router.
#[test]
fn a_listed_route_deleted_in_one_table_keeps_the_others() {
    let (mut state, _, _) = romana(2, 2, 0);
    let cidr = net("10.9.0.0/24");
    let mut lists = Lists::default();
    let to = RouteTarget::Router(RouterTarget {
        eni: "eni-0".into(),
        host: "10.0.0.10".parse().unwrap(),
    });
    let create = ListCall::Create {
        list: 0,
        ipv6: false,
        max_entries: 5,
        entries: vec![cidr],
    };
    let id = lists.apply(&mut state, &create, next_id).unwrap().unwrap();
    for t in 0..2 {
        let route = ListCall::RouteList {
            table: format!("rtb-{t}"),
            list: crate::cloud::lists::ListRef::Existing(id.clone()),
            to: to.clone(),
        };
        lists.apply(&mut state, &route, next_id).unwrap();
    }
    let ops = [Operation {
        action: Action::Delete,
        table: "rtb-0".into(),
        destination: cidr,
        target: None,
        reason: "not in the spec".into(),
        cause: Cause::Repair,
    }];
    let compiled = compile_out(&ops, &state, &lists);
    run(&compiled, &ops, &mut state, &mut lists).unwrap();
    let now = routing(&expand(&state, &lists));
    assert_eq!(now.get(&("rtb-0".to_string(), cidr)), None);
    assert_eq!(
        now.get(&("rtb-1".to_string(), cidr)),
        Some(&Target::Interface("eni-0".into()))
    );
    assert!(lists.lists[0].entries.is_empty());
    assert_eq!(compiled.rests_on[0].len(), 2, "{compiled:?}");
}

/// A random cluster (`hosts` routers over `zones` AZs, a table each)
/// routed in mode `from`, switched to the other mode: at each step the
/// routers given die (the others recover), the planner's operations are
/// carried out and a migration pass with that many spare calls follows,
/// each checked by [`Cluster::step`] and [`Cluster::migrate`]. Then, with
/// every router back, passes go on until one changes nothing.
fn switched(
    from: Mode,
    hosts: usize,
    zones: usize,
    affinity: bool,
    cidrs: usize,
    steps: Vec<(BTreeSet<usize>, usize)>,
) -> Cluster {
    let (state, spec, ips) = crate::reconcile::plan::tests::cluster_of(hosts, zones, zones, cidrs);
    let settings = Settings {
        az_affinity: affinity,
        ..every_table(&state)
    };
    let sizing = sizing(&spec, hosts);
    let mut cluster = match from {
        Mode::PerCidr => Cluster::per_cidr(state, settings, sizing, &spec),
        Mode::PrefixList => {
            let mut cluster = Cluster::new(state, settings, sizing);
            cluster.step(&spec, &HealthSnapshot::default());
            cluster
        }
    };
    cluster.mode = match from {
        Mode::PerCidr => Mode::PrefixList,
        Mode::PrefixList => Mode::PerCidr,
    };
    for (dead, spare) in steps {
        let dead: Vec<IpAddr> = (dead.into_iter())
            .filter(|h| *h < hosts)
            .map(|h| ips[h])
            .collect();
        let health = failed(&dead);
        cluster.step(&spec, &health);
        cluster.migrate(&spec, &health, spare);
    }
    // A CIDR without a router is left as it is; with the routers back,
    // the migration completes.
    let health = HealthSnapshot::default();
    cluster.step(&spec, &health);
    for _ in 0..cidrs.div_ceil(100) + 3 {
        let before = (cluster.state.clone(), cluster.lists.clone());
        cluster.migrate(&spec, &health, usize::MAX);
        if (&cluster.state, &cluster.lists) == (&before.0, &before.1) {
            return cluster;
        }
    }
    panic!("still migrating after {} passes", cidrs.div_ceil(100) + 3);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Over random clusters (Romana's one AZ, or routers over 2-3 AZs with
    /// or without AZ affinity: the NAT layout's per-AZ choice) and random
    /// sequences of deaths and recoveries: each step's list calls give
    /// exactly the routes the planner wanted, no CIDR is without a route
    /// between stages, and planning again on the result asks for nothing.
    /// After the start, EC2 may have said some tables are at their quota
    /// and the lists cannot grow: every step stays within that.
    #[test]
    fn property_list_calls_give_what_the_planner_wants(
        hosts in 2usize..6,
        zones in 1usize..4,
        per_zone in 1usize..3,
        affinity in any::<bool>(),
        cidrs in 1usize..60,
        steps in proptest::collection::vec(proptest::collection::btree_set(0usize..6, 0..3), 1..6),
        full_tables in proptest::collection::btree_set(0usize..6, 0..3),
        fixed in any::<bool>(),
    ) {
        let tables = zones * per_zone;
        let (state, spec, ips) =
            crate::reconcile::plan::tests::cluster_of(hosts, zones, tables, cidrs);
        let settings = Settings {
            az_affinity: affinity,
            ..every_table(&state)
        };
        let sizing = sizing(&spec, hosts);
        let mut cluster = Cluster::new(state, settings, sizing);
        cluster.step(&spec, &HealthSnapshot::default());
        cluster.limits = Limits {
            per_cidr_tables: (full_tables.into_iter())
                .filter(|t| *t < tables)
                .map(|t| cluster.state.route_tables[t].id.clone())
                .collect(),
            fixed_lists: (cluster.lists.lists.iter())
                .filter(|_| fixed)
                .map(|l| l.id.clone())
                .collect(),
        };
        for dead in steps {
            let dead: Vec<IpAddr> = dead.into_iter().filter(|h| *h < hosts).map(|h| ips[h]).collect();
            let health = failed(&dead);
            cluster.step(&spec, &health);
            let again = plan(&spec, &health, &cluster.seen(), &cluster.settings);
            prop_assert!(again.operations.is_empty(), "{:?}", again.operations);
            let held = cluster.held();
            prop_assert!(held.len() <= cidrs);
        }
    }
}

proptest! {
    // Both directions, 96 cases each on average.
    #![proptest_config(ProptestConfig::with_cases(192))]

    /// Over random clusters switched between modes while routers die and
    /// recover, with random calls to spare:
    /// - into lists: each migration pass leaves every route where it was,
    ///   failovers meanwhile give what the planner wants (a CIDR half moved
    ///   is routed by its per-CIDR route in some tables, by a list in the
    ///   others), and in the end no per-CIDR route is left;
    /// - back to per-CIDR routes: each step's calls give what the planner
    ///   wants without a gap (a change to a listed CIDR is a per-CIDR route;
    ///   a route that goes takes its CIDR out of the lists after the other
    ///   tables have a per-CIDR route), and in the end no list is left.
    #[test]
    fn property_switching_modes_moves_nothing_and_completes(
        into_lists in any::<bool>(),
        hosts in 2usize..6,
        zones in 1usize..4,
        affinity in any::<bool>(),
        cidrs in 1usize..60,
        steps in proptest::collection::vec(
            (proptest::collection::btree_set(0usize..6, 0..3), 0usize..40), 1..8),
    ) {
        let from = if into_lists { Mode::PerCidr } else { Mode::PrefixList };
        let cluster = switched(from, hosts, zones, affinity, cidrs, steps);
        if into_lists {
            prop_assert_eq!(cluster.per_cidr_routes(), 0);
        } else {
            prop_assert_eq!(cluster.lists, Lists::default());
        }
    }
}
