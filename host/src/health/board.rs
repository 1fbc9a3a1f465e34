use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::events::{EventKind, EventLog};
use tokio::sync::watch;

/// One host's state, best first so that `max` combines plugins into the
/// worst. The plugin runtime turns the WIT `health-state` into it where a
/// verdict enters the daemon; nothing past that sees another form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Healthy,
    Questionable,
    Failed,
}

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
}

impl HealthSnapshot {
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

/// Every plugin's verdicts per host, and the combined view. The one place
/// a host's change of state is noticed: logged, recorded as an event, and
/// published to the reconciler.
pub struct HealthBoard {
    reports: Mutex<BTreeMap<String, BTreeMap<IpAddr, HostReport>>>,
    snapshot: watch::Sender<HealthSnapshot>,
    events: Arc<EventLog>,
}

impl Default for HealthBoard {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

impl HealthBoard {
    pub fn new(events: Arc<EventLog>) -> Self {
        Self {
            reports: Mutex::default(),
            snapshot: watch::Sender::new(HealthSnapshot::default()),
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
    pub fn reports(&self) -> BTreeMap<String, BTreeMap<IpAddr, HostReport>> {
        self.reports.lock().expect("health reports lock").clone()
    }

    /// Replace `plugin`'s view with its latest round. Hosts it no longer
    /// reports (gone from the working set) lose its opinion.
    pub fn report(&self, plugin: &str, round: Vec<HostReport>) {
        let mut reports = self.reports.lock().expect("health reports lock");
        let latest: BTreeMap<IpAddr, HostReport> = round.into_iter().map(|r| (r.host, r)).collect();
        reports.insert(plugin.to_string(), latest);
        self.publish(&reports);
    }

    /// Take `plugin`'s verdicts on some hosts now, in the middle of a round
    /// (the round's full report follows and replaces them).
    pub fn merge(&self, plugin: &str, verdicts: Vec<HostReport>) {
        let mut reports = self.reports.lock().expect("health reports lock");
        let view = reports.entry(plugin.to_string()).or_default();
        for verdict in verdicts {
            view.insert(verdict.host, verdict);
        }
        self.publish(&reports);
    }

    fn publish(&self, reports: &BTreeMap<String, BTreeMap<IpAddr, HostReport>>) {
        let combined = combine(reports);
        self.snapshot.send_if_modified(|current| {
            if *current == combined {
                return false;
            }
            self.record_changes(current, &combined, reports);
            *current = combined;
            true
        });
    }

    /// Forget a plugin's opinions (it stopped, or is being restarted and
    /// its view is stale). The last known health stays until then.
    pub fn forget(&self, plugin: &str) {
        let mut reports = self.reports.lock().expect("health reports lock");
        if reports.remove(plugin).is_some() {
            self.publish(&reports);
        }
    }
}

fn combine(reports: &BTreeMap<String, BTreeMap<IpAddr, HostReport>>) -> HealthSnapshot {
    let mut worst: BTreeMap<IpAddr, State> = BTreeMap::new();
    for report in reports.values().flat_map(BTreeMap::values) {
        let entry = worst.entry(report.host).or_insert(State::Healthy);
        *entry = (*entry).max(report.state);
    }
    let pick = |state| {
        worst
            .iter()
            .filter(|(_, s)| **s == state)
            .map(|(h, _)| *h)
            .collect()
    };
    HealthSnapshot {
        failed: pick(State::Failed),
        questionable: pick(State::Questionable),
    }
}

impl HealthBoard {
    /// Log each host whose combined state changed, with the plugins that
    /// decided it, and record it as an event.
    fn record_changes(
        &self,
        before: &HealthSnapshot,
        after: &HealthSnapshot,
        reports: &BTreeMap<String, BTreeMap<IpAddr, HostReport>>,
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
            let why: Vec<String> = reports
                .iter()
                .filter_map(|(plugin, r)| {
                    let report = r.get(host).filter(|r| r.state == now)?;
                    Some(format!(
                        "{plugin}: {}",
                        report.detail.as_deref().unwrap_or("ok")
                    ))
                })
                .collect();
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
    fn unchanged_rounds_publish_nothing_and_forgetting_clears() {
        let board = HealthBoard::default();
        board.report("tcp", vec![report("10.0.0.1", State::Failed)]);
        let changes = board.subscribe();
        board.report("tcp", vec![report("10.0.0.1", State::Failed)]);
        assert!(!changes.has_changed().unwrap());
        board.forget("tcp");
        assert!(changes.has_changed().unwrap());
        assert_eq!(board.snapshot(), HealthSnapshot::default());
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
        assert_eq!(board.snapshot(), HealthSnapshot::default());
        assert_eq!(events.latest(10)[0].kind, EventKind::HostRecovered);
    }
}
