//! Restoring the balanced spread: on the operator's request (or always,
//! with `--rebalance`), moved a few whole CIDRs per pass and only with EC2
//! calls to spare, so that a failover never waits behind it.

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::time::Duration;

use super::plan::{Plan, Settings};
use crate::cloud::VpcBackend;
use crate::cloud::operation::{Cause, Operation};
use crate::events::{EventKind, EventLog};

/// CIDRs moved per pass when rebalancing: every pass plans afresh, so a
/// failover never waits behind a long rebalance.
const CIDRS_PER_PASS: usize = 8;
/// Rebalancing looks again this soon when the EC2 budget had no spare calls.
const RETRY: Duration = Duration::from_secs(1);

/// The operator's requests for the balanced spread, and whether one is
/// under way.
pub(super) struct Rebalancing {
    requests: u64,
    active: bool,
}

impl Rebalancing {
    /// `requests`: the count of requests already made (not to be acted on).
    pub(super) fn new(requests: u64) -> Self {
        Self {
            requests,
            active: false,
        }
    }

    /// `requests` made so far: a new one starts a rebalance.
    pub(super) fn request(&mut self, requests: u64, events: &EventLog) {
        if requests != self.requests {
            self.requests = requests;
            self.active = true;
            events.record(EventKind::Rebalance, "routes", "rebalance requested", None);
        }
    }

    /// The planner's settings for this pass.
    pub(super) fn settings(&self, configured: &Settings) -> Settings {
        Settings {
            rebalance: configured.rebalance || self.active,
            ..configured.clone()
        }
    }

    /// A plan with no rebalancing move left ends the one under way.
    pub(super) fn see(&mut self, plan: &Plan, events: &EventLog) {
        let moves = plan.operations.iter().any(|o| o.cause == Cause::Rebalance);
        if self.active && !moves {
            self.active = false;
            let done = "every router is within the balanced bound";
            events.record(EventKind::Rebalance, "routes", done, None);
        }
    }
}

/// The operations to carry out this pass: every one that is not a
/// rebalancing move, and the moves of a few whole CIDRs (all their tables
/// at once) that the spare calls allow; with moves left, how soon to plan
/// again.
pub(super) async fn pace<B: VpcBackend>(
    operations: Vec<Operation>,
    backend: &B,
) -> (Vec<Operation>, Option<Duration>) {
    let (moves, mut operations): (Vec<_>, Vec<_>) = operations
        .into_iter()
        .partition(|o| o.cause == Cause::Rebalance);
    if moves.is_empty() {
        return (operations, None);
    }
    let mut by_cidr: BTreeMap<IpNet, Vec<Operation>> = BTreeMap::new();
    for op in moves {
        by_cidr.entry(op.destination).or_default().push(op);
    }
    let mut spare = backend
        .spare_operations()
        .await
        .saturating_sub(operations.len());
    let mut next = Duration::ZERO;
    for (n, cidr) in by_cidr.into_values().enumerate() {
        if n == CIDRS_PER_PASS {
            break;
        }
        // The first CIDR goes whenever any call is spare (a CIDR in more
        // tables than the spare could never move otherwise).
        if spare == 0 || (n > 0 && cidr.len() > spare) {
            if n == 0 {
                next = RETRY;
            }
            break;
        }
        spare = spare.saturating_sub(cidr.len());
        operations.extend(cidr);
    }
    (operations, Some(next))
}
