use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;
use tokio::sync::watch;

/// One host's state, worst first so that `max` combines plugins.
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

pub struct HealthBoard {
    reports: Mutex<BTreeMap<String, BTreeMap<IpAddr, HostReport>>>,
    snapshot: watch::Sender<HealthSnapshot>,
}

impl Default for HealthBoard {
    fn default() -> Self {
        Self {
            reports: Mutex::default(),
            snapshot: watch::Sender::new(HealthSnapshot::default()),
        }
    }
}

impl HealthBoard {
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
        let combined = combine(&reports);
        self.snapshot.send_if_modified(|current| {
            if *current == combined {
                return false;
            }
            log_changes(current, &combined, &reports);
            *current = combined;
            true
        });
    }

    /// Forget a plugin's opinions (it stopped, or is being restarted and
    /// its view is stale). The last known health stays until then.
    pub fn forget(&self, plugin: &str) {
        let mut reports = self.reports.lock().expect("health reports lock");
        if reports.remove(plugin).is_some() {
            let combined = combine(&reports);
            self.snapshot.send_if_modified(|current| {
                let changed = *current != combined;
                *current = combined;
                changed
            });
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

fn log_changes(
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
        match now {
            State::Failed => tracing::warn!(%host, was = ?was, why, "host failed"),
            State::Questionable => tracing::warn!(%host, was = ?was, why, "host questionable"),
            State::Healthy => tracing::info!(%host, was = ?was, "host healthy"),
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
}
