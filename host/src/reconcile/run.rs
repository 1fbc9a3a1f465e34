//! The reconciler task. Events drive it, not a sleep loop: a new spec or a
//! health change plans against the cached VPC and issues only the mutating
//! calls needed, concurrently (bounded); the cache is updated from the calls
//! that succeeded. A full describe happens at start, every recheck interval,
//! and after any error; nothing is planned from a VPC that could not be
//! observed, and nothing before the first spec.
//!
//! Each pass is the same named steps: follow leadership, observe if due,
//! take the inputs, plan, pace the rebalancing (`rebalance`), write
//! (`apply`), report, wait.

use ipnet::IpNet;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::Instant;

use super::moves::{MoveOff, MoveRequests};
use super::plan::{Notice, Plan, Settings, plan};
use super::rebalance::Rebalancing;
use super::report::RouteReport;
use crate::cloud::VpcBackend;
use crate::cloud::model::VpcState;
use crate::events::{EventKind, EventLog};
use crate::ha::{HaStatus, Leadership};
use crate::health::HealthSnapshot;
use crate::metrics;
use crate::spec::RouteSpec;
use crate::spec_store::SpecWatch;

const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Without a recheck interval, the VPC is observed again only after errors.
const NEVER: Duration = Duration::from_secs(365 * 86_400);

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
    /// CIDRs the operator asked off a host.
    pub moves: MoveRequests,
    /// EC2 throttling every call this long is an event (and a notice).
    pub throttle_alert: Duration,
    pub observers: Observers,
    pub shutdown: watch::Receiver<bool>,
}

/// Where the reconciler reports what it sees and does.
#[derive(Default)]
pub struct Observers {
    pub report: watch::Sender<RouteReport>,
    pub events: Arc<EventLog>,
}

/// The VPC as last observed and changed, and when to look again.
struct Observation {
    /// Shared with the views (copied only when a pass writes while the
    /// views still hold it).
    cache: Option<Arc<VpcState>>,
    next_full: Instant,
    /// No EC2 call before this (backing off after a failure).
    quiet_until: Instant,
    failures: u32,
}

impl Observation {
    fn due(&self, now: Instant) -> bool {
        (self.cache.is_none() || now >= self.next_full) && now >= self.quiet_until
    }

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

/// What was last told, so that it is told once.
#[derive(Default)]
pub(super) struct Told {
    notices: Vec<Notice>,
    /// CIDRs last told to have no eligible router.
    stranded: BTreeSet<IpNet>,
    /// Tables whose `RouteLimitExceeded` has been reported.
    pub(super) full_tables: BTreeSet<String>,
    /// The spec last recorded as an event (host changes are the health
    /// board's to record).
    spec: Option<Arc<RouteSpec>>,
    /// The start of the run of throttled EC2 calls last told.
    throttled: Option<std::time::Instant>,
}

/// The loop's state between passes.
struct Round {
    observation: Observation,
    told: Told,
    rebalancing: Rebalancing,
    leading: bool,
    ha_status: Option<watch::Receiver<HaStatus>>,
    /// Wakes the loop when the operator asks a CIDR off a host.
    move_requests: watch::Receiver<MoveOff>,
    /// When the change being acted on was seen, to report how long acting
    /// took.
    trigger: Instant,
}

impl<B: VpcBackend> Reconciler<B> {
    pub async fn run(mut self) {
        let now = Instant::now();
        let mut round = Round {
            observation: Observation {
                cache: None,
                next_full: now,
                quiet_until: now,
                failures: 0,
            },
            told: Told::default(),
            rebalancing: Rebalancing::new(*self.rebalance_requests.borrow()),
            leading: false,
            ha_status: self.leadership.as_ref().map(Leadership::status),
            move_requests: self.moves.subscribe(),
            trigger: now,
        };
        loop {
            self.follow_leadership(&mut round);
            if round.observation.due(Instant::now()) {
                self.observe(&mut round.observation).await;
            }
            let (spec, health) = self.inputs(&mut round);
            let mut again_at = None;
            if let (Some(spec), Some(_)) = (spec, &round.observation.cache) {
                let mut settings = round.rebalancing.settings(&self.settings);
                settings.move_off = self.moves.pending();
                settings.now = std::time::Instant::now();
                let mut plan = plan(
                    &spec,
                    &health,
                    round.observation.cache.as_ref().expect("observed"),
                    &settings,
                );
                round.rebalancing.see(&plan, &self.observers.events);
                let (operations, deferred) =
                    super::rebalance::pace(plan.operations, self.backend.as_ref()).await;
                plan.operations = operations;
                again_at = deferred.map(|wait| Instant::now() + wait);
                // A hold ends: plan again then.
                if let Some(at) = plan.again_at {
                    let at = Instant::from_std(at);
                    again_at = Some(again_at.map_or(at, |t: Instant| t.min(at)));
                }
                self.tell_notices(&mut round.told, &plan);
                let held = std::mem::take(&mut plan.held);
                if !self.write(plan, &mut round).await {
                    round.observation.failed();
                    continue;
                }
                match self.migrate(&held, round.leading).await {
                    Ok(Some(wait)) => {
                        let at = Instant::now() + wait;
                        again_at = Some(again_at.map_or(at, |t: Instant| t.min(at)));
                    }
                    Ok(None) => {}
                    Err(()) => {
                        round.observation.failed();
                        continue;
                    }
                }
                // (A wake-up follows: a request made meanwhile is not missed.)
                self.moves.done(&settings.move_off);
            }
            self.tell_throttling(&mut round.told);
            let wake = match round.observation.cache {
                Some(_) => again_at.map_or(round.observation.next_full, |at| {
                    at.min(round.observation.next_full)
                }),
                None => round.observation.quiet_until,
            };
            if self
                .wait(wake, &mut round.ha_status, &mut round.move_requests)
                .await
            {
                return;
            }
            round.trigger = Instant::now();
        }
    }

    /// Just elected: what the last leader did, or did not get to do, is
    /// unknown; observe before acting.
    fn follow_leadership(&self, round: &mut Round) {
        let leading = self.leadership.as_ref().is_none_or(Leadership::leading);
        if leading && !round.leading && self.leadership.is_some() {
            round.observation.cache = None;
            round.observation.quiet_until = Instant::now();
        }
        round.leading = leading;
    }

    /// A full describe, shown to the views; on failure, nothing is known.
    async fn observe(&self, observation: &mut Observation) {
        match self.backend.describe().await {
            Ok(state) => {
                let state = Arc::new(state);
                self.observers.report.send_modify(|r| {
                    r.vpc = Some(state.clone());
                    r.observed_at = Some(SystemTime::now());
                });
                observation.cache = Some(state);
                observation.next_full = Instant::now() + self.recheck.unwrap_or(NEVER);
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
                observation.failed();
            }
        }
    }

    /// The spec and health in force, and the operator's rebalance requests.
    fn inputs(&mut self, round: &mut Round) -> (Option<Arc<RouteSpec>>, HealthSnapshot) {
        let spec = self.specs.borrow_and_update().clone();
        let health = self.health.borrow_and_update().clone();
        self.record_spec(&mut round.told, spec.as_ref());
        round.move_requests.borrow_and_update();
        let requests = *self.rebalance_requests.borrow_and_update();
        round.rebalancing.request(requests, &self.observers.events);
        (spec, health)
    }

    fn tell_notices(&self, told: &mut Told, plan: &Plan) {
        if plan.notices != told.notices {
            for notice in &plan.notices {
                tracing::warn!(subject = notice.subject, "{}", notice.message);
            }
            told.notices = plan.notices.clone();
        }
        // A CIDR without a router is an event once, until it has one again.
        for cidr in plan.stranded.difference(&told.stranded) {
            self.observers.events.record(
                EventKind::NoEligibleRouter,
                cidr.to_string(),
                "no usable eligible router; its routes are left as they are",
                None,
            );
        }
        told.stranded = plan.stranded.clone();
    }

    /// EC2 throttling every call for long is an event once, and so is its
    /// end (a run that ended unseen, replaced by a new one, ends the old).
    fn tell_throttling(&self, told: &mut Told) {
        let events = &self.observers.events;
        let since = self.backend.throttled_since();
        if let Some(told_since) = told.throttled
            && since != Some(told_since)
        {
            let seconds = told_since.elapsed().as_secs();
            let reason = format!("EC2 answers again, after about {seconds} s of throttling");
            tracing::info!("{reason}");
            events.record(EventKind::Ec2ThrottleEnded, "EC2", reason, None);
            told.throttled = None;
        }
        if let Some(since) = since
            && told.throttled.is_none()
            && since.elapsed() >= self.throttle_alert
        {
            let seconds = since.elapsed().as_secs();
            let reason = format!(
                "EC2 has throttled every call for {seconds} s (RequestLimitExceeded): \
                 route changes wait; something else in the account may be spending \
                 its request budget"
            );
            tracing::warn!("{reason}");
            events.record(EventKind::Ec2Throttled, "EC2", reason, None);
            told.throttled = Some(since);
        }
    }

    /// Carry out the plan where this replica may write, and report the VPC
    /// it leaves; false if anything failed (observe again).
    async fn write(&self, plan: Plan, round: &mut Round) -> bool {
        let cache = round.observation.cache.as_mut().expect("observed");
        let managed = plan.managed.clone();
        // What a standby would do is not what is in the VPC.
        let on_fallback = round.leading.then(|| plan.on_fallback.clone());
        let checks = self.disable_source_dest_check && !plan.source_dest_checked.is_empty();
        let writes = !plan.operations.is_empty() || !plan.claims.is_empty() || checks;
        let mut ok = true;
        if writes && self.may_write(round.leading).await {
            // Copy on write: the views keep the state they show.
            let vpc = Arc::make_mut(cache);
            let full_tables = &mut round.told.full_tables;
            ok = self.write_claims(&plan.claims, vpc, true).await;
            ok &= self
                .apply(plan.operations, vpc, round.trigger, full_tables)
                .await;
            if ok {
                ok = self.write_claims(&plan.claims, vpc, false).await;
            }
            if self.disable_source_dest_check {
                ok &= self.disable_checks(&plan.source_dest_checked, vpc).await;
            }
        } else if writes && round.leading {
            ok = false;
        }
        let vpc = cache.clone();
        self.observers.report.send_modify(|r| {
            r.vpc = Some(vpc);
            if *r.managed != managed {
                r.managed = Arc::new(managed);
            }
            if ok {
                r.last_success = Some(SystemTime::now());
                r.last_error = None;
                if let Some(on_fallback) = &on_fallback {
                    r.set_fallbacks(on_fallback, SystemTime::now());
                }
            }
        });
        if ok {
            metrics::global().reconciled_now();
            round.observation.failures = 0;
        }
        ok
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

    /// Record a new spec in force as an event.
    fn record_spec(&self, told: &mut Told, spec: Option<&Arc<RouteSpec>>) {
        let events = &self.observers.events;
        if let Some(spec) = spec
            && told
                .spec
                .as_ref()
                .is_none_or(|seen| !Arc::ptr_eq(seen, spec))
        {
            let hosts = spec.hosts().len();
            let reason = format!("{} CIDRs, {hosts} router hosts", spec.len());
            events.record(EventKind::Spec, "route spec", reason, None);
            told.spec = Some(spec.clone());
        }
    }

    /// Sleep until `until`, a spec, health or leadership change, or
    /// shutdown (true).
    async fn wait(
        &mut self,
        until: Instant,
        ha_status: &mut Option<watch::Receiver<HaStatus>>,
        move_requests: &mut watch::Receiver<MoveOff>,
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
        let move_requested = async {
            if move_requests.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = async { let _ = self.shutdown.wait_for(|stop| *stop).await; } => true,
            _ = rebalance_requested => false,
            _ = move_requested => false,
            _ = self.specs.changed() => false,
            _ = self.health.changed() => false,
            _ = leadership_changed => false,
            _ = tokio::time::sleep_until(until) => false,
        }
    }
}
