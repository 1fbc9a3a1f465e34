//! One pass of a migration between route modes ([`super::migrate`],
//! [`super::leave`]): what it sends, and which CIDRs it moves with the
//! calls to spare.

use ipnet::IpNet;
use std::collections::BTreeMap;

use super::ListPlan;
use crate::cloud::lists::ENTRIES_PER_CALL;

/// List calls a pass makes beside the deletions, at most: a new list or a
/// resize, entries added, a new list's route.
const LIST_CALLS: usize = 4;

/// One pass of a migration: its calls, the CIDRs they move, and the
/// CIDRs left for later passes; or, with none left, tidying.
#[derive(Debug, Default)]
pub struct Step {
    pub plan: ListPlan,
    pub cidrs: usize,
    pub left: usize,
    pub tidying: bool,
}

/// The CIDRs a pass moves, in order, with the per-CIDR calls each costs
/// (`calls`): the first whenever a call is spare, the next ones while
/// they fit in `spare` beside a few list calls, at most a list edit's
/// worth.
pub(super) fn choose<T>(
    found: &BTreeMap<IpNet, T>,
    spare: usize,
    calls: impl Fn(&T) -> usize,
) -> Vec<(IpNet, &T)> {
    let mut chosen = Vec::new();
    let mut cost = LIST_CALLS;
    for (cidr, routes) in found {
        let first = chosen.is_empty() && spare > 0;
        if chosen.len() == ENTRIES_PER_CALL || !(first || cost + calls(routes) <= spare) {
            break;
        }
        cost += calls(routes);
        chosen.push((*cidr, routes));
    }
    chosen
}
