use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::State;
use super::damping::{Damping, HoldChange};
use super::drain::Drain;
use crate::events::{EventKind, EventLog};
use tokio::sync::watch;

/// What one plugin said about one host in its last round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    pub host: IpAddr,
    pub state: State,
    pub rtt_us: Option<u32>,
    pub detail: Option<String>,
}

/// The combined view, published on every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub failed: BTreeSet<IpAddr>,
    pub questionable: BTreeSet<IpAddr>,
    /// With health checkers: the hosts some checker has a verdict on. Any
    /// other host has not been probed yet and is no route's target. `None`
    /// without health checkers: every host is taken as healthy.
    pub probed: Option<BTreeSet<IpAddr>>,
    /// Hosts drained on purpose, whatever their health (`drain`).
    pub drained: BTreeMap<IpAddr, Drain>,
    /// Healthy hosts that were failed or questionable before: when they
    /// came back (a fail-back waits until they have stayed healthy a while).
    pub recovered: BTreeMap<IpAddr, Instant>,
}

impl HealthSnapshot {
    /// Whether a health checker has said something of `host` (always,
    /// without health checkers).
    pub fn probed(&self, host: &IpAddr) -> bool {
        self.probed
            .as_ref()
            .is_none_or(|probed| probed.contains(host))
    }

    pub fn state(&self, host: &IpAddr) -> State {
        if self.failed.contains(host) {
            State::Failed
        } else if self.questionable.contains(host) {
            State::Questionable
        } else {
            State::Healthy
        }
    }
}

/// Every plugin's verdicts per host, and the combined view, damped (see
/// `damping`). The one place a host's change of state is noticed: logged,
/// recorded as an event, and published to the reconciler.
pub struct HealthBoard {
    /// A host is a target only once a checker has a verdict on it.
    probe_first: bool,
    inner: Mutex<Inner>,
    snapshot: watch::Sender<HealthSnapshot>,
    events: Arc<EventLog>,
}

type Reports = BTreeMap<String, BTreeMap<IpAddr, HostReport>>;

#[derive(Default)]
struct Inner {
    reports: Reports,
    damping: Damping,
    /// Hosts held down now.
    held: BTreeSet<IpAddr>,
    drains: BTreeMap<IpAddr, Drain>,
}

impl Default for HealthBoard {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

impl HealthBoard {
    /// A board without health checkers: every host is taken as healthy
    /// until a report says otherwise.
    pub fn new(events: Arc<EventLog>) -> Self {
        Self::with_checkers(events, false)
    }

    /// With `checkers`, a host is a target only once one of them has a
    /// verdict on it: none is a target before its first probe. One
    /// checker's verdict is enough: a checker that never reports (hung,
    /// hostile) cannot keep every router out.
    pub fn with_checkers(events: Arc<EventLog>, checkers: bool) -> Self {
        let snapshot = HealthSnapshot {
            probed: checkers.then(BTreeSet::new),
            ..HealthSnapshot::default()
        };
        Self {
            probe_first: checkers,
            inner: Mutex::default(),
            snapshot: watch::Sender::new(snapshot),
            events,
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<HealthSnapshot> {
        self.snapshot.subscribe()
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        self.snapshot.borrow().clone()
    }

    /// Each plugin's latest report per host (for the state views).
    pub fn reports(&self) -> Reports {
        self.lock().reports.clone()
    }

    /// The hosts held down for flapping, and how long until each is let go
    /// if it flaps no more (for the state views).
    pub fn held(&self) -> BTreeMap<IpAddr, Duration> {
        let inner = self.lock();
        let now = Instant::now();
        inner
            .held
            .iter()
            .filter_map(|host| Some((*host, inner.damping.release_in(host, now)?)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("health board lock")
    }

    /// Replace `plugin`'s view with its latest round. Hosts it no longer
    /// reports (gone from the working set) lose its opinion.
    pub fn report(&self, plugin: &str, round: Vec<HostReport>) {
        let mut inner = self.lock();
        let latest: BTreeMap<IpAddr, HostReport> = round.into_iter().map(|r| (r.host, r)).collect();
        inner.reports.insert(plugin.to_string(), latest);
        self.publish(&mut inner, Instant::now());
    }

    /// Take `plugin`'s verdicts on some hosts now, in the middle of a round
    /// (the round's full report follows and replaces them).
    pub fn merge(&self, plugin: &str, verdicts: Vec<HostReport>) {
        let mut inner = self.lock();
        let view = inner.reports.entry(plugin.to_string()).or_default();
        for verdict in verdicts {
            view.insert(verdict.host, verdict);
        }
        self.publish(&mut inner, Instant::now());
    }

    /// Drain `host` (see `drain`): its routes move to confirmed hosts at
    /// the next pass. A drain with an end is lifted then. Returns the drain
    /// it replaced.
    pub fn drain(self: &Arc<Self>, host: IpAddr, drain: Drain) -> Option<Drain> {
        let mut inner = self.lock();
        let until = (drain.until).map(|t| humantime::format_rfc3339_seconds(t).to_string());
        tracing::warn!(%host, reason = drain.reason, until, "host drained");
        let reason = match drain.until {
            Some(until) => format!(
                "drained until {}: {}",
                humantime::format_rfc3339_seconds(until),
                drain.reason
            ),
            None => format!("drained: {}", drain.reason),
        };
        self.events
            .record(EventKind::HostDrain, host.to_string(), reason, None);
        if let Some(until) = drain.until {
            let (board, since) = (Arc::downgrade(self), drain.since);
            let left = until.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::spawn(async move {
                tokio::time::sleep(left).await;
                if let Some(board) = board.upgrade() {
                    board.lift(host, since, "its time is up");
                }
            });
        }
        let before = inner.drains.insert(host, drain);
        self.publish(&mut inner, Instant::now());
        before
    }

    /// Undrain `host`: eligible again, nothing moves back. The drain
    /// lifted, if there was one.
    pub fn undrain(&self, host: IpAddr) -> Option<Drain> {
        let since = self.lock().drains.get(&host)?.since;
        self.lift(host, since, "undrained by the operator")
    }

    /// Make the drains in force `kept` (those kept elsewhere): the ones
    /// missing or different are drained, the others lifted for `why`.
    pub fn restore(self: &Arc<Self>, kept: &BTreeMap<IpAddr, Drain>, why: &str) {
        let now = self.lock().drains.clone();
        for (host, drain) in &now {
            if !kept.contains_key(host) {
                self.lift(*host, drain.since, why);
            }
        }
        for (host, drain) in kept {
            if now.get(host) != Some(drain) {
                self.drain(*host, drain.clone());
            }
        }
    }

    /// Lift `host`'s drain made at `since` (not one made after it).
    fn lift(&self, host: IpAddr, since: SystemTime, why: &str) -> Option<Drain> {
        let mut inner = self.lock();
        inner.drains.get(&host).filter(|d| d.since == since)?;
        let lifted = inner.drains.remove(&host);
        tracing::info!(%host, why, "host no longer drained");
        self.events.record(
            EventKind::HostDrain,
            host.to_string(),
            format!("no longer drained: {why}"),
            None,
        );
        self.publish(&mut inner, Instant::now());
        lifted
    }

    fn publish(&self, inner: &mut Inner, now: Instant) {
        let worst = worst(&inner.reports);
        let (held, changes) = inner.damping.update(&worst, now);
        inner.held = held;
        let mut combined = combine(&worst, &inner.held);
        combined.probed = self.probe_first.then(|| worst.keys().copied().collect());
        combined.drained = inner.drains.clone();
        self.snapshot.send_if_modified(|current| {
            combined.recovered = recoveries(current, &combined, now);
            if *current == combined {
                return false;
            }
            self.record_changes(current, &combined, &inner.reports, &inner.held);
            *current = combined;
            true
        });
        for change in changes {
            self.record_hold(&change, &inner.damping, now);
        }
    }
}

/// When each healthy host came back, if it did: now for those that were
/// failed or questionable `before`, as before for the others.
fn recoveries(
    before: &HealthSnapshot,
    after: &HealthSnapshot,
    now: Instant,
) -> BTreeMap<IpAddr, Instant> {
    let was_down =
        |host: &IpAddr| before.failed.contains(host) || before.questionable.contains(host);
    let healthy = (after.probed.iter().flatten())
        .chain(&before.failed)
        .chain(&before.questionable)
        .chain(before.recovered.keys())
        .filter(|host| after.probed(host) && after.state(host) == State::Healthy);
    healthy
        .filter_map(|host| match was_down(host) {
            true => Some((*host, now)),
            false => Some((*host, *before.recovered.get(host)?)),
        })
        .collect()
}

/// Each reported host's worst state over all plugins.
fn worst(reports: &Reports) -> BTreeMap<IpAddr, State> {
    let mut worst: BTreeMap<IpAddr, State> = BTreeMap::new();
    for report in reports.values().flat_map(BTreeMap::values) {
        let entry = worst.entry(report.host).or_insert(State::Healthy);
        *entry = (*entry).max(report.state);
    }
    worst
}

/// The published view: held hosts count as failed, whatever they report.
fn combine(worst: &BTreeMap<IpAddr, State>, held: &BTreeSet<IpAddr>) -> HealthSnapshot {
    let pick = |state| {
        worst
            .iter()
            .filter(|(host, s)| **s == state && !held.contains(host))
            .map(|(h, _)| *h)
            .collect::<BTreeSet<_>>()
    };
    let mut failed = pick(State::Failed);
    failed.extend(held.iter().copied());
    HealthSnapshot {
        failed,
        questionable: pick(State::Questionable),
        ..HealthSnapshot::default()
    }
}

impl HealthBoard {
    /// Log each host whose combined state changed, with the plugins that
    /// decided it, and record it as an event.
    fn record_changes(
        &self,
        before: &HealthSnapshot,
        after: &HealthSnapshot,
        reports: &Reports,
        held: &BTreeSet<IpAddr>,
    ) {
        let hosts: BTreeSet<&IpAddr> = before
            .failed
            .iter()
            .chain(&before.questionable)
            .chain(&after.failed)
            .chain(&after.questionable)
            .collect();
        for host in hosts {
            let (was, now) = (before.state(host), after.state(host));
            if was == now {
                continue;
            }
            let mut why: Vec<String> = reports
                .iter()
                .filter_map(|(plugin, r)| {
                    let report = r.get(host).filter(|r| r.state == now)?;
                    Some(format!(
                        "{plugin}: {}",
                        report.detail.as_deref().unwrap_or("ok")
                    ))
                })
                .collect();
            if held.contains(host) {
                why.push("held down for flapping".into());
            }
            let why = why.join("; ");
            let (kind, reason) = match now {
                State::Failed => {
                    tracing::warn!(%host, was = ?was, reason = why, "host failed");
                    (
                        EventKind::HostFailed,
                        format!("a health check failed: {why}"),
                    )
                }
                State::Questionable => {
                    tracing::warn!(%host, was = ?was, reason = why, "host questionable");
                    let reason = format!("a health check finds it degraded: {why}");
                    (EventKind::HostQuestionable, reason)
                }
                State::Healthy => {
                    tracing::info!(%host, was = ?was, "host healthy");
                    (EventKind::HostRecovered, "healthy again".to_string())
                }
            };
            self.events.record(kind, host.to_string(), reason, None);
        }
    }

    /// Log and record a host held down for flapping, or let go.
    fn record_hold(&self, change: &HoldChange, damping: &Damping, now: Instant) {
        match change {
            HoldChange::Held { host, penalty } => {
                let release_in = damping.release_in(host, now).unwrap_or_default();
                tracing::warn!(
                    %host,
                    penalty = format!("{penalty:.1}"),
                    release_in = ?release_in,
                    "host held down: it keeps failing and coming back; no route goes to it until it stays up"
                );
                self.events.record(
                    EventKind::HostHeld,
                    host.to_string(),
                    format!(
                        "held down for flapping (penalty {penalty:.1}); eligible again in about {} s if it stays up",
                        release_in.as_secs()
                    ),
                    None,
                );
            }
            HoldChange::Released { host } => {
                tracing::info!(%host, "host released from its hold-down");
                self.events.record(
                    EventKind::HostReleased,
                    host.to_string(),
                    "released from its hold-down (it stopped flapping)".to_string(),
                    None,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(host: &str, state: State) -> HostReport {
        HostReport {
            host: host.parse().unwrap(),
            state,
            rtt_us: None,
            detail: None,
        }
    }

    /// A host that comes back is recorded with when; one healthy from its
    /// first verdict is not; coming back again records the new time.
    #[test]
    fn recoveries_are_recorded_from_the_turn_back_to_healthy() {
        let board = HealthBoard::with_checkers(Arc::default(), true);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let round = |a_state, b_state| {
            board.report(
                "tcp",
                vec![report("10.0.0.1", a_state), report("10.0.0.2", b_state)],
            );
            board.snapshot().recovered
        };
        assert!(round(State::Healthy, State::Failed).is_empty());
        let first = round(State::Healthy, State::Healthy);
        assert_eq!(first.keys().copied().collect::<Vec<_>>(), [b]);
        assert_eq!(
            round(State::Healthy, State::Healthy),
            first,
            "kept while healthy"
        );
        assert!(round(State::Questionable, State::Failed).is_empty());
        let again = round(State::Healthy, State::Healthy);
        assert_eq!(again.keys().copied().collect::<Vec<_>>(), [a, b]);
        assert!(again[&b] >= first[&b]);
    }

    #[test]
    fn any_failed_plugin_fails_the_host() {
        let board = HealthBoard::default();
        let changes = board.subscribe();
        board.report(
            "icmpecho",
            vec![
                report("10.0.0.1", State::Healthy),
                report("10.0.0.2", State::Questionable),
            ],
        );
        board.report(
            "tcp",
            vec![
                report("10.0.0.1", State::Failed),
                report("10.0.0.2", State::Healthy),
            ],
        );
        assert!(changes.has_changed().unwrap());
        let now = board.snapshot();
        assert_eq!(now.state(&"10.0.0.1".parse().unwrap()), State::Failed);
        assert_eq!(now.state(&"10.0.0.2".parse().unwrap()), State::Questionable);
        assert_eq!(now.state(&"10.0.0.3".parse().unwrap()), State::Healthy);
    }

    #[test]
    fn unchanged_rounds_publish_nothing() {
        let board = HealthBoard::default();
        board.report("tcp", vec![report("10.0.0.1", State::Failed)]);
        let changes = board.subscribe();
        board.report("tcp", vec![report("10.0.0.1", State::Failed)]);
        assert!(!changes.has_changed().unwrap());
    }

    #[test]
    fn early_verdicts_count_at_once_and_the_round_replaces_them() {
        let events = Arc::new(EventLog::default());
        let board = HealthBoard::new(events.clone());
        board.report(
            "tcp",
            vec![
                report("10.0.0.1", State::Healthy),
                report("10.0.0.2", State::Healthy),
            ],
        );
        board.merge("tcp", vec![report("10.0.0.2", State::Failed)]);
        let now = board.snapshot();
        assert_eq!(now.state(&"10.0.0.2".parse().unwrap()), State::Failed);
        assert_eq!(now.state(&"10.0.0.1".parse().unwrap()), State::Healthy);
        // The change is recorded here, once, with the plugin that saw it.
        let recorded = events.latest(10);
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(recorded[0].kind, EventKind::HostFailed);
        assert_eq!(recorded[0].subject, "10.0.0.2");
        board.report("tcp", vec![report("10.0.0.1", State::Healthy)]);
        let after = board.snapshot();
        let recovered: Vec<IpAddr> = after.recovered.keys().copied().collect();
        assert_eq!(recovered, ["10.0.0.2".parse::<IpAddr>().unwrap()]);
        let rest = HealthSnapshot {
            recovered: BTreeMap::new(),
            ..after
        };
        assert_eq!(rest, HealthSnapshot::default());
        assert_eq!(events.latest(10)[0].kind, EventKind::HostRecovered);
    }

    /// With checkers, a host is a target only once one has said something
    /// of it: not before its first probe.
    #[test]
    fn hosts_are_probed_once_a_checker_has_a_verdict() {
        let board = HealthBoard::with_checkers(Arc::default(), true);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(!board.snapshot().probed(&a));
        board.merge("tcp", vec![report("10.0.0.1", State::Healthy)]);
        let now = board.snapshot();
        assert!(now.probed(&a) && !now.probed(&b));
        board.report("icmpecho", vec![report("10.0.0.2", State::Failed)]);
        assert!(board.snapshot().probed(&b));
        // Without checkers, every host counts as probed.
        assert!(HealthBoard::default().snapshot().probed(&b));
    }
}
