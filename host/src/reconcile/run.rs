//! The reconciler task. Events drive it, not a sleep loop: a new spec or a
//! health change plans against the cached VPC and issues only the mutating
//! calls needed, concurrently (bounded); the cache is updated from the calls
//! that succeeded. A full describe happens at start, every recheck interval,
//! and after any error; nothing is planned from a VPC that could not be
//! observed, and nothing before the first spec.

use futures_util::StreamExt;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::Instant;

use super::plan::{Notice, Settings, plan};
use super::report::{LastAction, RouteReport};
use crate::cloud::model::{RouteError, VpcState};
use crate::cloud::operation::{Action, Cause, Operation};
use crate::cloud::{CloudError, VpcBackend};
use crate::events::{EventKind, EventLog};
use crate::ha::{HaStatus, Leadership};
use crate::health::HealthSnapshot;
use crate::metrics;
use crate::spec::RouteSpec;
use crate::spec_store::SpecWatch;

/// Route operations in flight at once.
const CONCURRENT_OPERATIONS: usize = 8;
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// CIDRs moved per pass when rebalancing: every pass plans afresh, so a
/// failover never waits behind a long rebalance.
const REBALANCE_CIDRS_PER_PASS: usize = 8;
/// Rebalancing looks again this soon when the EC2 budget had no spare calls.
const REBALANCE_RETRY: Duration = Duration::from_secs(1);

pub struct Reconciler<B> {
    pub backend: Arc<B>,
    pub specs: SpecWatch,
    pub health: watch::Receiver<HealthSnapshot>,
    pub settings: Settings,
    /// Full describe this often (`None`: only at start and after errors).
    pub recheck: Option<Duration>,
    /// Turn off source/destination check on eligible hosts that have it.
    pub disable_source_dest_check: bool,
    /// With HA: only while this replica leads does it write, after checking
    /// its term before each batch and its lease before each call.
    pub leadership: Option<Leadership>,
    /// Bumped by each operator's request to restore the balanced spread.
    pub rebalance_requests: watch::Receiver<u64>,
    pub observers: Observers,
    pub shutdown: watch::Receiver<bool>,
}

/// Where the reconciler reports what it sees and does.
#[derive(Default)]
pub struct Observers {
    pub report: watch::Sender<RouteReport>,
    pub events: Arc<EventLog>,
}

/// What the loop knows between rounds.
struct Round {
    /// The VPC as last observed and changed, shared with the views (copied
    /// only when a pass writes while the views still hold it).
    cache: Option<Arc<VpcState>>,
    next_full: Instant,
    /// No EC2 call before this (backing off after a failure).
    quiet_until: Instant,
    failures: u32,
    last_notices: Vec<Notice>,
    /// Tables whose `RouteLimitExceeded` has been reported.
    full_tables: BTreeSet<String>,
    /// The spec last recorded as an event (host changes are the health
    /// board's to record).
    seen_spec: Option<Arc<RouteSpec>>,
    /// The operator's requests for the balanced spread seen so far.
    rebalance_requests: u64,
    /// The operator asked for the balanced spread and it is not restored yet.
    rebalancing: bool,
    /// Plan again at this time, before the next full describe (a rebalance
    /// under way).
    again_at: Option<Instant>,
}

impl Round {
    /// Something failed: observe again, after a pause that grows with each
    /// failure in a row (the first retry is at once: the cache was simply
    /// out of date, the usual case).
    fn failed(&mut self) {
        self.cache = None;
        let pause = match self.failures {
            0 => Duration::ZERO,
            n => (BACKOFF_BASE * 2u32.saturating_pow(n - 1)).min(BACKOFF_CAP),
        };
        self.failures += 1;
        self.quiet_until = Instant::now() + pause;
        if !pause.is_zero() {
            tracing::warn!(retry_in = ?pause, "backing off before observing the VPC again");
        }
    }
}

impl<B: VpcBackend> Reconciler<B> {
    pub async fn run(mut self) {
        let mut round = Round {
            cache: None,
            next_full: Instant::now(),
            quiet_until: Instant::now(),
            failures: 0,
            last_notices: Vec::new(),
            full_tables: BTreeSet::new(),
            seen_spec: None,
            rebalance_requests: *self.rebalance_requests.borrow(),
            rebalancing: false,
            again_at: None,
        };
        let always_rebalance = self.settings.rebalance;
        // When the change being acted on was seen, to report how long acting took.
        let mut trigger = Instant::now();
        let mut ha_status = self.leadership.as_ref().map(Leadership::status);
        let mut was_leading = false;
        loop {
            let now = Instant::now();
            let leading = self.leadership.as_ref().is_none_or(Leadership::leading);
            if leading && !was_leading && self.leadership.is_some() {
                // Just elected: what the last leader did, or did not get to
                // do, is unknown; observe before acting.
                round.cache = None;
                round.quiet_until = now;
            }
            was_leading = leading;
            if (round.cache.is_none() || now >= round.next_full) && now >= round.quiet_until {
                match self.backend.describe().await {
                    Ok(state) => {
                        let state = Arc::new(state);
                        self.observers.report.send_modify(|r| {
                            r.vpc = Some(state.clone());
                            r.observed_at = Some(SystemTime::now());
                        });
                        round.cache = Some(state);
                        round.next_full = Instant::now()
                            + self.recheck.unwrap_or(Duration::from_secs(365 * 86_400));
                    }
                    Err(e) => {
                        tracing::warn!("cannot observe the VPC, changing nothing: {e}");
                        let error = format!("cannot observe the VPC: {e}");
                        self.observers
                            .events
                            .record(EventKind::Error, "VPC", &error, None);
                        self.observers.report.send_modify(|r| {
                            r.vpc = None;
                            r.last_error = Some(error);
                        });
                        round.failed();
                    }
                }
            }
            let spec = self.specs.borrow_and_update().clone();
            let health = self.health.borrow_and_update().clone();
            self.record_spec(&mut round, spec.as_ref());
            let requests = *self.rebalance_requests.borrow_and_update();
            if requests != round.rebalance_requests {
                round.rebalance_requests = requests;
                round.rebalancing = true;
                let events = &self.observers.events;
                events.record(EventKind::Rebalance, "routes", "rebalance requested", None);
            }
            self.settings.rebalance = always_rebalance || round.rebalancing;
            round.again_at = None;
            if let (Some(spec), Some(cache)) = (spec, round.cache.as_mut()) {
                let mut plan = plan(&spec, &health, cache, &self.settings);
                let moves = plan
                    .operations
                    .iter()
                    .filter(|o| o.cause == Cause::Rebalance);
                if moves.count() == 0 && round.rebalancing {
                    round.rebalancing = false;
                    let done = "every router is within the balanced bound";
                    self.observers
                        .events
                        .record(EventKind::Rebalance, "routes", done, None);
                }
                let deferred;
                (plan.operations, deferred) = self.pace_rebalance(plan.operations).await;
                round.again_at = deferred.map(|wait| Instant::now() + wait);
                if plan.notices != round.last_notices {
                    for notice in &plan.notices {
                        tracing::warn!(subject = notice.subject, "{}", notice.message);
                    }
                    round.last_notices = plan.notices;
                }
                let writes = !plan.operations.is_empty()
                    || (self.disable_source_dest_check && !plan.source_dest_checked.is_empty());
                let mut ok = true;
                if writes && self.may_write(leading).await {
                    // Copy on write: the views keep the state they show.
                    let vpc = Arc::make_mut(cache);
                    ok = self
                        .apply(plan.operations, vpc, trigger, &mut round.full_tables)
                        .await;
                    if self.disable_source_dest_check {
                        ok &= self.disable_checks(&plan.source_dest_checked, vpc).await;
                    }
                } else if writes && leading {
                    ok = false;
                }
                let vpc = cache.clone();
                self.observers.report.send_modify(|r| {
                    r.vpc = Some(vpc);
                    if ok {
                        r.last_success = Some(SystemTime::now());
                        r.last_error = None;
                    }
                });
                if ok {
                    metrics::global().reconciled_now();
                    round.failures = 0;
                } else {
                    round.failed();
                    continue;
                }
            }
            let wake = match round.cache {
                Some(_) => round
                    .again_at
                    .map_or(round.next_full, |at| at.min(round.next_full)),
                None => round.quiet_until,
            };
            if self.wait(wake, &mut ha_status).await {
                return;
            }
            trigger = Instant::now();
        }
    }

    /// Whether this replica may write the batch at hand: always without HA;
    /// with HA only as the leader, and only once etcd confirms its term.
    async fn may_write(&self, leading: bool) -> bool {
        let Some(leadership) = &self.leadership else {
            return true;
        };
        if !leading {
            return false;
        }
        match leadership.confirm().await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!("not writing: {e}");
                false
            }
        }
    }

    /// Rebalancing moves whole CIDRs (all their tables at once), a few per
    /// pass and only with calls to spare; the next pass, this long from now,
    /// moves more or finds the bound restored.
    async fn pace_rebalance(
        &self,
        operations: Vec<Operation>,
    ) -> (Vec<Operation>, Option<Duration>) {
        let (moves, mut operations): (Vec<_>, Vec<_>) = operations
            .into_iter()
            .partition(|o| o.cause == Cause::Rebalance);
        if moves.is_empty() {
            return (operations, None);
        }
        let mut spare = self
            .backend
            .spare_operations()
            .await
            .saturating_sub(operations.len());
        let mut next = Duration::ZERO;
        // The planner emits a CIDR's operations together.
        for (n, cidr) in moves
            .chunk_by(|a, b| a.destination == b.destination)
            .enumerate()
        {
            if n == REBALANCE_CIDRS_PER_PASS {
                break;
            }
            // The first CIDR goes whenever any call is spare (a CIDR in
            // more tables than the spare could never move otherwise).
            if spare == 0 || (n > 0 && cidr.len() > spare) {
                if n == 0 {
                    next = REBALANCE_RETRY;
                }
                break;
            }
            spare = spare.saturating_sub(cidr.len());
            operations.extend_from_slice(cidr);
        }
        (operations, Some(next))
    }

    /// Carry out `operations`, repairs first (they move traffic off dead
    /// hosts; when the EC2 budget is short they should not queue behind
    /// creations and deletions); update `vpc` with the ones that
    /// succeeded. False if any failed.
    async fn apply(
        &self,
        mut operations: Vec<Operation>,
        vpc: &mut VpcState,
        trigger: Instant,
        full_tables: &mut BTreeSet<String>,
    ) -> bool {
        operations.sort_by_key(Operation::urgency);
        let backend = &self.backend;
        let results: Vec<_> = futures_util::stream::iter(operations)
            .map(|op| async move {
                // The lease may run out while a batch is under way (etcd
                // away, this process paused): check again at each call.
                if self.leadership.as_ref().is_some_and(|l| !l.may_write()) {
                    let refused = CloudError::Unavailable("no longer the leader; not sent".into());
                    return (op, Err(refused));
                }
                let result = backend.apply(&op).await;
                (op, result)
            })
            .buffered(CONCURRENT_OPERATIONS)
            .collect()
            .await;
        let mut all_ok = true;
        for (op, result) in results {
            self.observe(&op, &result, trigger);
            let (cidr, table) = (op.destination, &op.table);
            let host = op
                .target
                .as_ref()
                .map(|(_, host)| host.to_string())
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
    fn observe(&self, op: &Operation, result: &Result<(), CloudError>, trigger: Instant) {
        let kind = op.action.name();
        let outcome = match result {
            Ok(()) => "ok",
            Err(CloudError::Refused(_)) => "refused",
            Err(CloudError::Unavailable(_)) => "failed",
        };
        metrics::global().route_operation(kind, outcome);
        let host = op.target.as_ref().map(|(_, host)| host.to_string());
        let subject = format!("{} {}", op.table, op.destination);
        let took_ms = Some(trigger.elapsed().as_millis() as u64);
        let event = match (result, op.cause, op.action) {
            (Err(e), ..) => (
                EventKind::Error,
                format!("{kind} failed: {e} ({})", op.reason),
            ),
            (Ok(()), Cause::Failover, _) => {
                metrics::global().failovers.inc();
                (EventKind::Failover, op.reason.clone())
            }
            (Ok(()), Cause::Rebalance, _) => (EventKind::Rebalance, op.reason.clone()),
            (Ok(()), Cause::Repair, Action::Replace) => (EventKind::Repair, op.reason.clone()),
            (Ok(()), Cause::Repair, Action::Create) => (EventKind::Create, op.reason.clone()),
            (Ok(()), Cause::Repair, Action::Delete) => (EventKind::Delete, op.reason.clone()),
        };
        self.observers
            .events
            .record(event.0, subject, event.1, took_ms);
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

    /// Record a new spec in force as an event.
    fn record_spec(&self, round: &mut Round, spec: Option<&Arc<RouteSpec>>) {
        let events = &self.observers.events;
        if let Some(spec) = spec
            && round
                .seen_spec
                .as_ref()
                .is_none_or(|seen| !Arc::ptr_eq(seen, spec))
        {
            let hosts = spec.hosts().len();
            let reason = format!("{} CIDRs, {hosts} router hosts", spec.len());
            events.record(EventKind::Spec, "route spec", reason, None);
            round.seen_spec = Some(spec.clone());
        }
    }

    /// Turn off source/destination check on `enis`; false if any failed.
    async fn disable_checks(&self, enis: &[String], vpc: &mut VpcState) -> bool {
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

    /// Sleep until `until`, a spec, health or leadership change, or
    /// shutdown (true).
    async fn wait(
        &mut self,
        until: Instant,
        ha_status: &mut Option<watch::Receiver<HaStatus>>,
    ) -> bool {
        let leadership_changed = async {
            match ha_status {
                Some(status) => {
                    if status.changed().await.is_err() {
                        // The election has ended (shutdown): nothing more to see.
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        let rebalance_requested = async {
            if self.rebalance_requests.changed().await.is_err() {
                // Nobody can ask any more.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = async { let _ = self.shutdown.wait_for(|stop| *stop).await; } => true,
            _ = rebalance_requested => false,
            _ = self.specs.changed() => false,
            _ = self.health.changed() => false,
            _ = leadership_changed => false,
            _ = tokio::time::sleep_until(until) => false,
        }
    }
}
