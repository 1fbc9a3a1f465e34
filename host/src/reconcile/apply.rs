//! Carrying out a plan's operations: repairs first, a bounded number in
//! flight, each checked against the lease under HA; the cached VPC updated
//! from the ones that succeeded; every outcome logged, counted and recorded.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

use super::report::LastAction;
use super::run::Reconciler;
use crate::cloud::claims::Claim;
use crate::cloud::model::{RouteError, Target, VpcState};
use crate::cloud::operation::{Action, Cause, Operation};
use crate::cloud::{CloudError, Held, VpcBackend};
use crate::events::{EventKind, RouteChange};
use crate::metrics;

/// Migrating routes to the route mode goes on this soon when some are left.
const MIGRATION_PACE: Duration = Duration::from_secs(1);

impl<B: VpcBackend> Reconciler<B> {
    /// Let the backend re-form a few held routes with the calls to spare
    /// (`VpcBackend::migrate`; the leader only): how soon to go on, if
    /// routes are left; `Err` if a call failed (observe again).
    pub(super) async fn migrate(&self, held: &Held, leading: bool) -> Result<Option<Duration>, ()> {
        if !leading {
            return Ok(None);
        }
        let spare = self.backend.spare_operations().await;
        let may_write = || self.leadership.as_ref().is_none_or(|l| l.may_write());
        let migration = self.backend.migrate(held, spare, &may_write).await;
        if let Some(e) = migration.failed {
            tracing::error!("migrating routes to the route mode failed: {e}");
            return Err(());
        }
        Ok((migration.left > 0 || migration.calls > 0).then_some(MIGRATION_PACE))
    }

    /// Carry out `operations`, repairs first (they move traffic off dead
    /// hosts; when the EC2 budget is short they should not queue behind
    /// creations and deletions); update `vpc` with the ones that
    /// succeeded. False if any failed.
    pub(super) async fn apply(
        &self,
        mut operations: Vec<Operation>,
        vpc: &mut VpcState,
        trigger: Instant,
        full_tables: &mut BTreeSet<String>,
    ) -> bool {
        operations.sort_by_key(Operation::urgency);
        // The lease may run out while a batch is under way (etcd away,
        // this process paused): checked again at each call.
        let may_write = || self.leadership.as_ref().is_none_or(|l| l.may_write());
        let results = self.backend.apply_all(operations, &may_write).await;
        let mut all_ok = true;
        for (op, result) in results {
            self.record_outcome(&op, &result, trigger, previous(vpc, &op));
            let (cidr, table) = (op.destination, &op.table);
            let host = op
                .target
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let took_ms = trigger.elapsed().as_millis() as u64;
            match result {
                Ok(()) => {
                    let action = op.action.done();
                    tracing::info!(table, %cidr, host, reason = op.reason, took_ms, "route {action}");
                    if op.action == Action::Create {
                        full_tables.remove(table);
                    }
                    if let Err(e) = vpc.apply(&op) {
                        tracing::warn!(table, %cidr, "cached VPC out of step: {e}");
                        all_ok = false;
                    }
                }
                Err(CloudError::Refused(RouteError::LimitExceeded(_))) => {
                    if full_tables.insert(table.clone()) {
                        let routes = vpc
                            .route_tables
                            .iter()
                            .find(|t| &t.id == table)
                            .map_or(0, |t| t.routes.len());
                        tracing::error!(
                            table,
                            routes,
                            %cidr,
                            "RouteLimitExceeded: {table} already holds {routes} routes, EC2 refuses more; ask AWS for a higher limit (at most 1,000) or shorten the spec"
                        );
                    }
                    all_ok = false;
                }
                Err(e) => {
                    tracing::error!(table, %cidr, action = ?op.action, "route operation failed: {e}");
                    all_ok = false;
                }
            }
        }
        all_ok
    }

    /// Record an operation's outcome: metrics, event, last action.
    /// `previous` is where the route pointed before.
    fn record_outcome(
        &self,
        op: &Operation,
        result: &Result<(), CloudError>,
        trigger: Instant,
        previous: Option<Previous>,
    ) {
        let kind = op.action.name();
        let outcome = match result {
            Ok(()) => "ok",
            Err(CloudError::Refused(_)) => "refused",
            Err(CloudError::Unavailable(_)) => "failed",
        };
        metrics::global().route_operation(kind, outcome);
        let host = op.target.as_ref().map(ToString::to_string);
        let took_ms = Some(trigger.elapsed().as_millis() as u64);
        let to_gateway = op.target.as_ref().is_some_and(|t| t.gateway().is_some())
            || (op.action == Action::Delete && op.cause == Cause::Failover);
        let from_gateway = previous.as_ref().is_some_and(|p| p.gateway);
        let event = match (result, op.cause, op.action) {
            (Err(e), ..) => (
                EventKind::Error,
                format!("{kind} failed: {e} ({})", op.reason),
            ),
            (Ok(()), Cause::Failover, _) => {
                metrics::global().failovers.inc();
                let kind = if to_gateway {
                    EventKind::FallbackEngaged
                } else {
                    EventKind::Failover
                };
                (kind, op.reason.clone())
            }
            (Ok(()), _, Action::Replace) if from_gateway && !to_gateway => {
                (EventKind::FallbackCleared, op.reason.clone())
            }
            (Ok(()), Cause::Rebalance, _) => (EventKind::Rebalance, op.reason.clone()),
            (Ok(()), Cause::Drain, _) => (EventKind::Drain, op.reason.clone()),
            (Ok(()), Cause::Repair, Action::Replace) => (EventKind::Repair, op.reason.clone()),
            (Ok(()), Cause::Repair, Action::Create) => (EventKind::Create, op.reason.clone()),
            (Ok(()), Cause::Repair, Action::Delete) => (EventKind::Delete, op.reason.clone()),
        };
        let change = RouteChange {
            table: op.table.clone(),
            cidr: op.destination.to_string(),
            from: previous.map(|p| p.target),
            to: host.clone(),
        };
        self.observers
            .events
            .record_route(event.0, change, event.1, took_ms);
        let last = LastAction {
            action: op.action.done(),
            reason: op.reason.clone(),
            at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            host,
            error: result.as_ref().err().map(ToString::to_string),
        };
        self.observers
            .report
            .send_modify(|r| r.record(&op.table, op.destination, last));
    }

    /// Write the claim tags of chosen tables: `widened` before the routes
    /// (what is claimed, with what is held: no route is made unclaimed),
    /// else as planned after them (deleted routes let go). False if any
    /// write failed.
    pub(super) async fn write_claims(
        &self,
        claims: &[Claim],
        vpc: &mut VpcState,
        widened: bool,
    ) -> bool {
        let mut all_ok = true;
        for claim in claims {
            let Some(table) = vpc.table(&claim.table) else {
                continue;
            };
            let claim = match widened {
                true => claim.widened(&table.tags),
                false => claim.clone(),
            };
            let Some(change) = claim.change(&table.tags) else {
                continue;
            };
            let owned: Vec<String> = claim.cidrs.iter().map(ToString::to_string).collect();
            let table = &claim.table;
            match self.backend.write_tags(&change).await {
                Ok(()) => {
                    tracing::info!(
                        table,
                        owner = claim.owner,
                        owned = owned.join(" "),
                        "routes claimed"
                    );
                    if let Err(e) = vpc.write_tags(&change) {
                        tracing::warn!(table, "cached VPC out of step: {e}");
                        all_ok = false;
                    }
                }
                Err(e) => {
                    tracing::error!(table, "cannot write the claim tags: {e}");
                    all_ok = false;
                }
            }
        }
        all_ok
    }

    /// Turn off source/destination check on `enis`; false if any failed.
    pub(super) async fn disable_checks(&self, enis: &[String], vpc: &mut VpcState) -> bool {
        let mut all_ok = true;
        for eni in enis {
            match self.backend.disable_source_dest_check(eni).await {
                Ok(()) => {
                    tracing::info!(eni, "source/destination check disabled");
                    if let Some(interface) = vpc.interfaces.iter_mut().find(|i| &i.id == eni) {
                        interface.source_dest_check = false;
                    }
                }
                Err(e) => {
                    tracing::error!(eni, "cannot disable source/destination check: {e}");
                    all_ok = false;
                }
            }
        }
        all_ok
    }
}

/// Where a route pointed before an operation: a router's address (else
/// its ENI or instance), or a gateway.
struct Previous {
    target: String,
    gateway: bool,
}

fn previous(vpc: &VpcState, op: &Operation) -> Option<Previous> {
    let route = (vpc.table(&op.table)?.routes.iter()).find(|r| r.destination == op.destination)?;
    Some(match &route.target {
        Target::Interface(eni) => Previous {
            target: (vpc.interface(eni).and_then(|i| i.ips.first()))
                .map_or_else(|| eni.clone(), ToString::to_string),
            gateway: false,
        },
        Target::Instance(id) => Previous {
            target: id.clone(),
            gateway: false,
        },
        Target::Other(id) => Previous {
            target: id.clone(),
            gateway: true,
        },
    })
}
