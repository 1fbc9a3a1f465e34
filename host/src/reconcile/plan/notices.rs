//! What the operator should know that needs no operation: table choices
//! that choose nothing, tables near EC2's route limits, routers that cannot
//! route for others, hosts left above the balanced bound.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::net::IpAddr;

use super::Plan;
use super::index::{Candidate, Managed};
use super::spread::{Overload, Spread};
use crate::cloud::model::VpcState;
use crate::cloud::operation::Action;
use crate::selector::TableSelector;
use rustc_hash::FxHashMap as HashMap;

/// Something the operator should know that needs no operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What it is about: a CIDR, a router host or a route table.
    pub subject: String,
    pub message: String,
}

/// EC2's default route limit per table, and the most it grants on request.
const ROUTES_PER_TABLE_DEFAULT: usize = 50;
const ROUTES_PER_TABLE_MAX: usize = 1000;

impl Plan {
    /// Table selectors (the flags', the spec's) that choose no table of the
    /// VPC: a mistyped tag or id would otherwise route nothing in silence.
    pub(super) fn warn_about_unmatched<'s>(
        &mut self,
        selectors: impl Iterator<Item = &'s TableSelector>,
        vpc: &VpcState,
    ) {
        let unmatched: BTreeSet<&TableSelector> = selectors
            .filter(|s| !vpc.route_tables.iter().any(|t| s.matches(t)))
            .collect();
        for selector in unmatched {
            self.notice(selector, "chooses no route table of the VPC");
        }
    }

    /// Tables that will be near or over EC2's route limits once the plan is
    /// carried out (`RouteLimitExceeded` otherwise comes as a surprise).
    pub(super) fn warn_about_limits(&mut self, managed: &[Managed]) {
        for Managed { table, .. } in managed {
            let change = |action: Action| {
                self.operations
                    .iter()
                    .filter(|o| o.table == table.id && o.action == action)
                    .count()
            };
            let routes = table.routes.len() + change(Action::Create) - change(Action::Delete);
            let message = if routes > ROUTES_PER_TABLE_MAX {
                format!(
                    "will need {routes} routes; EC2 allows at most {ROUTES_PER_TABLE_MAX} per table"
                )
            } else if routes * 10 > ROUTES_PER_TABLE_DEFAULT * 9 {
                format!(
                    "will hold {routes} routes; EC2's default limit is {ROUTES_PER_TABLE_DEFAULT} per table ({ROUTES_PER_TABLE_MAX} on request)"
                )
            } else {
                continue;
            };
            self.notice(&table.id, &message);
        }
    }

    /// Eligible hosts that cannot route for others.
    pub(super) fn warn_about_source_dest_checks(&mut self, usable: &HashMap<IpAddr, Candidate>) {
        let mut cannot_route: Vec<&Candidate> = usable
            .values()
            .filter(|c| c.interface.source_dest_check)
            .collect();
        cannot_route.sort_by_key(|c| c.host);
        for candidate in cannot_route {
            let message = format!(
                "{} has source/destination check enabled, so it cannot route for others; disable it on the ENI (or run with --disable-source-dest-check)",
                candidate.interface.id
            );
            self.notice(candidate.host, &message);
            self.source_dest_checked
                .push(candidate.interface.id.clone());
        }
    }

    /// Hosts that keep more CIDRs than the bound (after recoveries: routes
    /// do not move back on their own).
    pub(super) fn warn_about_overloads<'s>(
        &mut self,
        spreads: impl Iterator<Item = &'s Spread<'s, 's>>,
    ) {
        let mut overloaded: Vec<Overload> = spreads
            .into_iter()
            .flat_map(|s| s.overloaded.iter().copied())
            .collect();
        overloaded.sort_by_key(|o| (o.host, Reverse(o.load)));
        overloaded.dedup_by_key(|o| o.host);
        for over in overloaded {
            let message = format!(
                "carries {} CIDRs, above the balanced bound of {}; routes stay where they work (POST /rebalance or --rebalance moves the fewest)",
                over.load, over.bound
            );
            self.notice(over.host, &message);
        }
    }
}
