//! Per-host health bookkeeping shared by health-check plugins: fall and rise
//! thresholds and the old daemon's "failed for a window" rule.
//!
//! - A host is `failed` after `fall` consecutive failed probes; before that,
//!   a host with failed probes is `questionable` (avoided as a new target).
//! - A failed host is not probed for `window` rounds and stays failed
//!   meanwhile (the old daemon: 10 intervals).
//! - After the window it is probed again and is `healthy` after `rise`
//!   consecutive successes; a failure starts a new window.
//! - A `degraded` answer (an HTTP 429: the router answered but would not
//!   be asked) makes a host `questionable` while it lasts; it neither counts
//!   towards `fall` nor towards `rise`.

use std::collections::BTreeMap;

use crate::probes::{self, HttpCheck, HttpResult, ProbeMethod, ProbeResult, ProbeTimeout};
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

/// What one probe says of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Good,
    /// Answered, but not as a healthy host does (e.g. HTTP 429): why.
    Degraded(String),
    /// Why the probe failed.
    Bad(String),
}

/// One probe's result as the tracker counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub host: String,
    pub verdict: Verdict,
    pub rtt_us: Option<u32>,
}

impl From<ProbeResult> for Sample {
    fn from(result: ProbeResult) -> Self {
        let verdict = match (result.ok, result.error) {
            (true, _) => Verdict::Good,
            (false, error) => Verdict::Bad(error.unwrap_or_default()),
        };
        Self {
            host: result.host,
            verdict,
            rtt_us: result.rtt_us,
        }
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
    last: Option<Sample>,
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
            self.follow(|| round.next().into_iter().map(Sample::from).collect());
        }
        self.states()
    }

    /// As [`Tracker::run_round`], asking each host over HTTP (`check`);
    /// `judge` says what each answer means (see [`judge_status`]).
    pub fn run_http_round(
        &mut self,
        working_set: &[String],
        check: &HttpCheck,
        timeout: ProbeTimeout,
        judge: impl Fn(&HttpResult) -> Verdict,
    ) -> Vec<HostHealth> {
        let to_probe = self.begin_round(working_set);
        if !to_probe.is_empty() {
            let round = probes::start_http_round(check, &to_probe, timeout);
            self.follow(|| {
                round
                    .next()
                    .into_iter()
                    .map(|result| Sample {
                        verdict: judge(&result),
                        host: result.host,
                        rtt_us: result.rtt_us,
                    })
                    .collect()
            });
        }
        self.states()
    }

    /// Take a round's samples as they arrive (`next`, empty once all came),
    /// handing the host every verdict that changed at once.
    fn follow(&mut self, mut next: impl FnMut() -> Vec<Sample>) {
        loop {
            let samples = next();
            if samples.is_empty() {
                break;
            }
            let changed = self.record_samples(samples);
            if !changed.is_empty() {
                verdicts::report(&changed);
            }
        }
    }

    /// Record this round's probe results (any order, in one or several
    /// calls; a result for no host of the round is ignored); the verdicts
    /// that changed.
    pub fn record(&mut self, results: Vec<ProbeResult>) -> Vec<HostHealth> {
        self.record_samples(results.into_iter().map(Sample::from).collect())
    }

    /// As [`Tracker::record`], for samples a plugin judged itself.
    pub fn record_samples(&mut self, samples: Vec<Sample>) -> Vec<HostHealth> {
        let Thresholds { fall, rise, window } = self.thresholds;
        let mut changed = Vec::new();
        for sample in samples {
            let Some(record) = self.hosts.get_mut(&sample.host) else {
                continue;
            };
            let host = sample.host.clone();
            match sample.verdict {
                Verdict::Good => {
                    record.failures = 0;
                    record.successes += 1;
                    if record.failed_until.is_some() && record.successes >= rise {
                        record.failed_until = None;
                    }
                    record.recovering = record.failed_until.is_some();
                }
                Verdict::Degraded(_) => record.successes = 0,
                Verdict::Bad(_) => {
                    record.successes = 0;
                    record.failures += 1;
                    if record.failures >= fall {
                        record.failed_until = Some(self.round + 1 + u64::from(window));
                    }
                }
            }
            record.last = Some(sample);
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

/// What an HTTP answer means by its status: in `expected` (inclusive
/// ranges), good; 429 (Too Many Requests: the router answered, its check
/// endpoint is rate-limited), degraded, never failed; any other status or
/// no answer, bad.
pub fn judge_status(result: &HttpResult, expected: &[(u16, u16)]) -> Verdict {
    match result.status {
        Some(status)
            if expected
                .iter()
                .any(|(lo, hi)| (*lo..=*hi).contains(&status)) =>
        {
            Verdict::Good
        }
        Some(429) => Verdict::Degraded("HTTP 429: rate-limited".into()),
        Some(status) => Verdict::Bad(format!("HTTP {status}")),
        None => Verdict::Bad(result.error.clone().unwrap_or_else(|| "no answer".into())),
    }
}

fn health(host: &str, record: &Record, fall: u32) -> HostHealth {
    let last = record.last.as_ref();
    let degraded = match last.map(|l| &l.verdict) {
        Some(Verdict::Degraded(why)) => Some(why.clone()),
        _ => None,
    };
    let last_error = || match last.map(|l| &l.verdict) {
        Some(Verdict::Bad(why)) => Some(why.clone()),
        _ => None,
    };
    let state = if record.failed_until.is_some() {
        HealthState::Failed
    } else if record.failures > 0 || degraded.is_some() {
        HealthState::Questionable
    } else {
        HealthState::Healthy
    };
    let detail = match state {
        HealthState::Failed if record.recovering => {
            Some("recovering: waiting for good probes".into())
        }
        HealthState::Questionable if record.failures == 0 => degraded,
        HealthState::Questionable => Some(format!(
            "{} of {fall} failed probes: {}",
            record.failures,
            last_error().or(degraded).unwrap_or_default()
        )),
        _ => last_error(),
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

    fn sample(host: &str, verdict: Verdict) -> Sample {
        Sample {
            host: host.into(),
            verdict,
            rtt_us: Some(100),
        }
    }

    /// A 429 is questionable while it lasts, never failed however long,
    /// and holds back a failed host's recovery.
    #[test]
    fn degraded_answers_are_questionable_and_never_fail() {
        let t = Thresholds {
            fall: 2,
            rise: 1,
            window: 0,
        };
        let mut tracker = Tracker::new(t);
        let hosts = vec!["a".to_string()];
        let busy = || Verdict::Degraded("HTTP 429: rate-limited".into());
        let mut states = Vec::new();
        for verdict in [
            Verdict::Good,
            busy(),
            busy(),
            busy(),
            Verdict::Good,
            Verdict::Bad("HTTP 503".into()),
            busy(),
            Verdict::Bad("HTTP 503".into()),
            busy(),
            Verdict::Good,
        ] {
            tracker.begin_round(&hosts);
            tracker.record_samples(vec![sample("a", verdict)]);
            let health = tracker.states().remove(0);
            states.push((health.state, health.detail));
        }
        let only: Vec<_> = states.iter().map(|s| s.0).collect();
        assert_eq!(only, [H, Q, Q, Q, H, Q, Q, F, F, H]);
        assert_eq!(states[1].1.as_deref(), Some("HTTP 429: rate-limited"));
        assert_eq!(
            states[5].1.as_deref(),
            Some("1 of 2 failed probes: HTTP 503")
        );
    }

    #[test]
    fn statuses_are_judged_by_the_expected_ranges() {
        let result = |status: Option<u16>| HttpResult {
            host: "a".into(),
            status,
            body: vec![],
            rtt_us: None,
            error: status.is_none().then(|| "connection refused".into()),
        };
        let expected = [(200, 399)];
        assert_eq!(judge_status(&result(Some(204)), &expected), Verdict::Good);
        assert_eq!(judge_status(&result(Some(302)), &expected), Verdict::Good);
        assert!(matches!(
            judge_status(&result(Some(429)), &expected),
            Verdict::Degraded(_)
        ));
        assert_eq!(
            judge_status(&result(Some(503)), &expected),
            Verdict::Bad("HTTP 503".into())
        );
        assert_eq!(
            judge_status(&result(None), &expected),
            Verdict::Bad("connection refused".into())
        );
        // 429 expected: good.
        assert_eq!(
            judge_status(&result(Some(429)), &[(429, 429)]),
            Verdict::Good
        );
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
