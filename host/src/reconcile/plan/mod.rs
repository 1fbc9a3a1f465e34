//! The planner: a pure function from (route spec, host health, observed
//! VPC) to the route operations that make the VPC match the spec.
//!
//! Rules (README, "Routes"):
//! - only routes to interfaces/instances are ours; gateway, NAT, peering
//!   and local routes are never touched;
//! - the tables managed are those selected (by id, tag, or the main
//!   table); with no selection, those associated with subnets where spec
//!   hosts live;
//! - only routes made by CreateRoute are anybody's: the local route,
//!   propagated routes and those a Route Server installs are left alone;
//! - a host is a target only once a health checker has probed it (a
//!   router down from the start is never named by a route);
//! - each CIDR points at one chosen host in every managed table (with AZ
//!   affinity: a healthy host in the table's own AZ when there is one),
//!   targeting the ENI that carries the host's address;
//! - a route is replaced when its target is gone (blackhole, unknown ENI,
//!   stopped instance), is not eligible for the CIDR, is failed, or is
//!   questionable while a healthy alternative exists;
//! - when no eligible host is usable, the route is left as it is: never
//!   deleted, never pointed at a failed host; unless the CIDR has a
//!   fallback (the spec's, else `--fallback`) and none of its hosts awaits
//!   a first probe: then its routes point at the fallback gateway, or are
//!   deleted (`withdraw`) so that a wider route takes the traffic;
//! - a route on its fallback goes back to a router once that router has
//!   stayed healthy for the fail-back hold since it last came back;
//! - hosts may have tiers: a CIDR uses the first tier with an eligible
//!   host; one on a later tier returns to an earlier one only when
//!   `tier_failback` says (after that host has been healthy a while), or
//!   on request;
//! - with no table selection (the old command lines), managed routes to an
//!   interface or instance whose CIDR is not in the spec are deleted,
//!   unless inside `ignore_routes`, which are never touched at all; in
//!   chosen tables only routes this daemon owns (claimed in the table's
//!   tags, `cloud::claims`) are deleted, and another owner's routes are
//!   never touched;
//! - the spread is balanced and sticky: a CIDR keeps its current healthy
//!   target, and CIDRs that need a host go, in CIDR order, to the host of
//!   highest rendezvous weight still below the bound ceil(R/H) (R CIDRs, H
//!   hosts they may use; with weights, ceil(R*w/W)). So one host's death moves only its routes, spread
//!   within the bound over the survivors, and recovery moves nothing back.
//!   Only on request (`rebalance`) do routes leave hosts above the bound:
//!   the fewest that restore it, each host keeping its highest-weight CIDRs.
//!   Deterministic: replicas and restarts choose alike from the same state.
//!
//! Its rooms: `index` (the VPC as the planner reads it), `spread` (where
//! each CIDR goes: the balanced, sticky placement), `rules` (what each
//! route needs: create, keep, replace or delete, and why), `notices` (what
//! the operator should know that needs no operation), `show` (the plan's
//! JSON and text forms, for `/plan` and `--dry-run`). A new rule is a
//! function in `rules` and a case in `tests`.

mod index;
mod notices;
mod rules;
mod show;
mod spread;
#[cfg(test)]
pub(crate) mod tests;

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};

use crate::cloud::Held;
use crate::cloud::claims::{self, Claim};
use crate::cloud::model::{RouteTable, VpcState};
use crate::cloud::operation::{Action, Cause, Operation, RouteTarget};
use crate::health::HealthSnapshot;
use crate::selector::TableSelector;
use crate::spec::{Fallback, RouteSpec};
use std::time::{Duration, Instant};

pub use index::VpcIndex;
pub use notices::Notice;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Routes inside these are never touched.
    pub ignore_routes: Vec<IpNet>,
    /// Prefer a healthy host in the route table's own AZ.
    pub az_affinity: bool,
    /// Move routes off hosts above the balanced bound (the operator asked).
    pub rebalance: bool,
    /// The tables to manage; none: the tables of the spec routers'
    /// subnets (the old rule).
    pub tables: Vec<TableSelector>,
    /// Whose routes, in the tables chosen (see `cloud::claims`).
    pub owner: String,
    /// CIDRs the operator asked off a host (`POST /routes/{cidr}/failover`):
    /// for that CIDR the host is set aside like a drained one.
    pub move_off: BTreeMap<IpNet, std::net::IpAddr>,
    /// Where the routes of a CIDR without a fallback of its own go while
    /// none of its hosts is eligible (`--fallback`); none: left as they are.
    pub fallback: Option<Fallback>,
    /// How long a router stays healthy after coming back before routes
    /// leave the fallback for it (`--failback-hold`).
    pub failback_hold: Duration,
    /// A CIDR on a later tier returns to an earlier tier's host once that
    /// host has been healthy this long (`--failback after=N`); none: it
    /// stays while its host is eligible (`never`).
    pub tier_failback: Option<Duration>,
    /// The time the plan is made at (holds are measured to it).
    pub now: Instant,
}

/// The fail-back hold unless `--failback-hold` says.
pub const DEFAULT_FAILBACK_HOLD: Duration = Duration::from_secs(30);

impl Default for Settings {
    fn default() -> Self {
        Self {
            ignore_routes: Vec::new(),
            az_affinity: false,
            rebalance: false,
            tables: Vec::new(),
            owner: claims::DEFAULT_OWNER.to_string(),
            move_off: BTreeMap::new(),
            fallback: None,
            failback_hold: DEFAULT_FAILBACK_HOLD,
            tier_failback: None,
            now: Instant::now(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub operations: Vec<Operation>,
    pub notices: Vec<Notice>,
    /// ENIs of eligible hosts with source/destination check on (each also
    /// has a notice); `--disable-source-dest-check` turns it off for them.
    pub source_dest_checked: Vec<String>,
    /// The tables managed, and why: table -> why.
    pub managed: BTreeMap<String, String>,
    /// Claim tags to write first: which routes of the chosen tables are
    /// this daemon's.
    pub claims: Vec<Claim>,
    /// Where routes are on their fallback once the plan is carried out
    /// (CIDR, table), in that order.
    pub on_fallback: BTreeMap<(IpNet, String), Fallback>,
    /// When a hold this plan waited on ends: plan again then.
    pub again_at: Option<Instant>,
    /// CIDRs with no usable eligible router and no fallback: their routes
    /// are left as they are.
    pub stranded: BTreeSet<IpNet>,
    /// Routes of ours held as they are, already on the router chosen: a
    /// backend may re-form them without moving traffic (`VpcBackend::migrate`).
    pub held: Held,
}

pub fn plan(
    spec: &RouteSpec,
    health: &HealthSnapshot,
    vpc: &VpcState,
    settings: &Settings,
) -> Plan {
    let index = VpcIndex::new(vpc);
    let mut plan = Plan::default();
    let managed = index::managed_tables(spec, vpc, &index, settings);
    plan.managed = (managed.iter())
        .map(|m| (m.table.id.clone(), m.why.to_string()))
        .collect();
    let usable = index::usable_hosts(spec, health, vpc, &index);
    let ignored = |cidr: &IpNet| settings.ignore_routes.iter().any(|i| i.contains(cidr));
    let wanted = plan.wanted(spec, &managed, &usable, &index, settings, ignored);
    let spreads = spread::spreads(&wanted, &managed, settings);
    let facts = index::Facts {
        index: &index,
        usable: &usable,
        health,
        settings,
    };
    plan.route_all(&wanted, &managed, &spreads, &facts, settings);
    plan.delete_unwanted(spec, &managed, ignored);
    plan.claim_ownership(spec, &managed, settings, ignored);
    for spread in spreads.values() {
        if let Some(at) = spread.again_at {
            plan.again_at(at);
        }
    }
    plan.warn_about_unmatched(settings.tables.iter().chain(spec.selectors()), vpc);
    plan.warn_about_limits(&managed);
    plan.warn_about_source_dest_checks(&usable);
    plan.warn_about_overloads(spreads.values());
    plan
}

impl Plan {
    fn push(
        &mut self,
        action: Action,
        table: &RouteTable,
        destination: IpNet,
        target: Option<RouteTarget>,
        reason: String,
        cause: Cause,
    ) {
        self.operations.push(Operation {
            action,
            table: table.id.clone(),
            destination,
            target,
            reason,
            cause,
        });
    }

    /// Plan again at `at` (the earliest of those asked wins).
    fn again_at(&mut self, at: Instant) {
        self.again_at = Some(self.again_at.map_or(at, |t| t.min(at)));
    }

    fn notice(&mut self, subject: impl ToString, message: &str) {
        self.notices.push(Notice {
            subject: subject.to_string(),
            message: message.into(),
        });
    }
}
