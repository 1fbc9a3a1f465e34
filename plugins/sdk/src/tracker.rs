//! Per-host health bookkeeping shared by health-check plugins: fall and rise
//! thresholds and the old daemon's "failed for a window" rule.
//!
//! - A host is `failed` after `fall` consecutive failed probes; before that,
//!   a host with failed probes is `questionable` (avoided as a new target).
//! - A failed host is not probed for `window` rounds and stays failed
//!   meanwhile (the old daemon: 10 intervals).
//! - After the window it is probed again and is `healthy` after `rise`
//!   consecutive successes; a failure starts a new window.

use std::collections::BTreeMap;

use crate::probes::{self, ProbeMethod, ProbeResult, ProbeTimeout};
use crate::{HealthState, HostHealth, Options, verdicts};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub fall: u32,
    pub rise: u32,
    /// Rounds a failed host is left alone.
    pub window: u32,
}

impl Default for Thresholds {
    /// The old daemon's behaviour: one failure fails a host for 10 rounds.
    fn default() -> Self {
        Self {
            fall: 1,
            rise: 1,
            window: 10,
        }
    }
}

impl Thresholds {
    /// Read `<prefix>_fall`, `<prefix>_rise` and `<prefix>_window` options
    /// (see [`Thresholds::options`]).
    pub fn from_options(options: &Options, prefix: &str) -> Result<Self, String> {
        let number = |name: &str, min: u32| -> Result<u32, String> {
            let key = format!("{prefix}_{name}");
            let value = options.require(&key)?;
            value
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= min)
                .ok_or_else(|| format!("--{key} {value:?}: expected a whole number >= {min}"))
        };
        Ok(Self {
            fall: number("fall", 1)?,
            rise: number("rise", 1)?,
            window: number("window", 0)?,
        })
    }

    /// The option declarations matching [`Thresholds::from_options`].
    pub fn options(prefix: &str) -> Vec<crate::OptionSpec> {
        let d = Self::default();
        vec![
            crate::OptionSpec::text(
                &format!("{prefix}_fall"),
                "Consecutive failed probes before a host is failed",
            )
            .default_value(&d.fall.to_string()),
            crate::OptionSpec::text(
                &format!("{prefix}_rise"),
                "Consecutive good probes before a failed host is healthy again",
            )
            .default_value(&d.rise.to_string()),
            crate::OptionSpec::text(
                &format!("{prefix}_window"),
                "Rounds a failed host stays failed without being probed",
            )
            .default_value(&d.window.to_string()),
        ]
    }
}

#[derive(Debug, Clone, Default)]
struct Record {
    failures: u32,
    successes: u32,
    /// Failed, and not probed until this round.
    failed_until: Option<u64>,
    /// Failed (window over), waiting for `rise` successes.
    recovering: bool,
    last: Option<ProbeResult>,
    /// The state last handed out for the host.
    reported: Option<HealthState>,
}

#[derive(Debug, Default)]
pub struct Tracker {
    thresholds: Thresholds,
    round: u64,
    hosts: BTreeMap<String, Record>,
    /// The working set `hosts` was built from.
    working_set: Vec<String>,
}

impl Tracker {
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            ..Self::default()
        }
    }

    /// Start a round over `working_set`: forgets hosts no longer in it and
    /// returns the hosts to probe (failed hosts inside their window are not).
    pub fn begin_round(&mut self, working_set: &[String]) -> Vec<String> {
        self.round += 1;
        // Most rounds see the working set of the round before: rebuild the
        // records only when it changed.
        if working_set != self.working_set {
            let mut kept = BTreeMap::new();
            for host in working_set {
                kept.insert(host.clone(), self.hosts.remove(host).unwrap_or_default());
            }
            self.hosts = kept;
            self.working_set = working_set.to_vec();
        }
        let round = self.round;
        self.hosts
            .iter()
            .filter(|(_, r)| r.failed_until.is_none_or(|until| round >= until))
            .map(|(host, _)| host.clone())
            .collect()
    }

    /// Probe the round's hosts with `method`, taking each result as it
    /// arrives and handing the host (`verdicts.report`) every verdict that
    /// changed at once, so that a failed router is failed over without
    /// waiting for the slowest probe; the state of every host in the
    /// working set at the end.
    pub fn run_round(
        &mut self,
        working_set: &[String],
        method: ProbeMethod,
        timeout: ProbeTimeout,
    ) -> Vec<HostHealth> {
        let to_probe = self.begin_round(working_set);
        if !to_probe.is_empty() {
            let round = probes::start_round(method, &to_probe, timeout);
            loop {
                let results = round.next();
                if results.is_empty() {
                    break;
                }
                let changed = self.record(results);
                if !changed.is_empty() {
                    verdicts::report(&changed);
                }
            }
        }
        self.states()
    }

    /// Record this round's probe results (any order, in one or several
    /// calls; a result for no host of the round is ignored); the verdicts
    /// that changed.
    pub fn record(&mut self, results: Vec<ProbeResult>) -> Vec<HostHealth> {
        let Thresholds { fall, rise, window } = self.thresholds;
        let mut changed = Vec::new();
        for result in results {
            let Some(record) = self.hosts.get_mut(&result.host) else {
                continue;
            };
            let host = result.host.clone();
            if result.ok {
                record.failures = 0;
                record.successes += 1;
                if record.failed_until.is_some() && record.successes >= rise {
                    record.failed_until = None;
                }
                record.recovering = record.failed_until.is_some();
            } else {
                record.successes = 0;
                record.failures += 1;
                if record.failures >= fall {
                    record.failed_until = Some(self.round + 1 + u64::from(window));
                }
            }
            record.last = Some(result);
            let now = health(&host, record, fall);
            if record.reported.replace(now.state) != Some(now.state) {
                changed.push(now);
            }
        }
        changed
    }

    /// The state of every host of the working set.
    pub fn states(&self) -> Vec<HostHealth> {
        let fall = self.thresholds.fall;
        self.hosts
            .iter()
            .map(|(host, record)| health(host, record, fall))
            .collect()
    }

    /// Record a whole round's results and return [`Tracker::states`].
    pub fn end_round(&mut self, results: Vec<ProbeResult>) -> Vec<HostHealth> {
        self.record(results);
        self.states()
    }
}

fn health(host: &str, record: &Record, fall: u32) -> HostHealth {
    let state = if record.failed_until.is_some() {
        HealthState::Failed
    } else if record.failures > 0 {
        HealthState::Questionable
    } else {
        HealthState::Healthy
    };
    let last = record.last.as_ref();
    let detail = match state {
        HealthState::Failed if record.recovering => {
            Some("recovering: waiting for good probes".into())
        }
        HealthState::Questionable => Some(format!(
            "{} of {fall} failed probes: {}",
            record.failures,
            last.and_then(|l| l.error.clone()).unwrap_or_default()
        )),
        _ => last.and_then(|l| l.error.clone()),
    };
    HostHealth {
        host: host.to_string(),
        state,
        rtt_us: last.and_then(|l| l.rtt_us),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(host: &str, ok: bool) -> ProbeResult {
        ProbeResult {
            host: host.into(),
            ok,
            rtt_us: ok.then_some(100),
            error: (!ok).then(|| "connection refused".into()),
        }
    }

    /// Run rounds where `down` rounds fail for host "a"; the states seen and
    /// whether "a" was probed in each round.
    fn run(thresholds: Thresholds, outcome: &[bool]) -> Vec<(HealthState, bool)> {
        let mut tracker = Tracker::new(thresholds);
        let hosts = vec!["a".to_string()];
        outcome
            .iter()
            .map(|ok| {
                let probe = tracker.begin_round(&hosts);
                let probed = !probe.is_empty();
                let results = probe.iter().map(|h| result(h, *ok)).collect();
                (tracker.end_round(results)[0].state, probed)
            })
            .collect()
    }

    use HealthState::{Failed as F, Healthy as H, Questionable as Q};

    #[test]
    fn old_semantics_fail_at_once_skip_the_window_then_probe_again() {
        let t = Thresholds {
            fall: 1,
            rise: 1,
            window: 2,
        };
        let seen = run(t, &[true, false, true, true, true, true]);
        assert_eq!(
            seen,
            [
                (H, true),
                (F, true),
                (F, false),
                (F, false),
                (H, true),
                (H, true)
            ]
        );
    }

    #[test]
    fn fall_threshold_makes_hosts_questionable_first() {
        let t = Thresholds {
            fall: 3,
            rise: 1,
            window: 0,
        };
        let seen = run(t, &[false, false, true, false, false, false]);
        let states: Vec<_> = seen.iter().map(|s| s.0).collect();
        assert_eq!(states, [Q, Q, H, Q, Q, F]);
    }

    #[test]
    fn rise_threshold_needs_consecutive_successes() {
        let t = Thresholds {
            fall: 1,
            rise: 2,
            window: 0,
        };
        let seen = run(t, &[false, true, false, true, true, true]);
        let states: Vec<_> = seen.iter().map(|s| s.0).collect();
        assert_eq!(states, [F, F, F, F, H, H]);
    }

    #[test]
    fn hosts_leaving_the_working_set_are_forgotten() {
        let mut tracker = Tracker::new(Thresholds::default());
        let both = vec!["a".to_string(), "b".to_string()];
        let probe = tracker.begin_round(&both);
        tracker.end_round(probe.iter().map(|h| result(h, false)).collect());
        assert_eq!(
            tracker.begin_round(&["b".to_string()]),
            Vec::<String>::new()
        );
        let states = tracker.end_round(vec![]);
        assert_eq!(states.len(), 1);
        assert_eq!(states[0].host, "b");
        // "a" comes back with a clean record.
        assert_eq!(tracker.begin_round(&both), vec!["a".to_string()]);
    }

    #[test]
    fn results_for_hosts_outside_the_round_are_ignored() {
        let mut tracker = Tracker::new(Thresholds::default());
        let hosts = vec!["a".to_string(), "c".to_string(), "e".to_string()];
        let probe = tracker.begin_round(&hosts);
        assert_eq!(probe, hosts);
        let results = vec![
            result("a", true),
            result("b", false),
            result("c", false),
            result("d", false),
            result("e", true),
        ];
        let states: Vec<_> = tracker
            .end_round(results)
            .into_iter()
            .map(|h| (h.host, h.state))
            .collect();
        assert_eq!(states, [("a".into(), H), ("c".into(), F), ("e".into(), H)]);
    }

    #[test]
    fn results_in_any_order_hand_over_only_changed_verdicts() {
        let mut tracker = Tracker::new(Thresholds::default());
        let hosts = vec!["a".to_string(), "b".to_string()];
        tracker.begin_round(&hosts);
        let first = tracker.record(vec![result("b", false)]);
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].host.as_str(), first[0].state), ("b", F));
        let second = tracker.record(vec![result("a", true)]);
        assert_eq!((second[0].host.as_str(), second[0].state), ("a", H));
        let states: Vec<_> = tracker.states().into_iter().map(|h| h.state).collect();
        assert_eq!(states, [H, F]);
        // Nothing changed for "a" in the next round: nothing to hand over.
        tracker.begin_round(&hosts);
        assert!(tracker.record(vec![result("a", true)]).is_empty());
    }
}
