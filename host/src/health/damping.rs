//! Damping of flapping hosts, as BGP damps flapping routes (RFC 2439): a
//! host that keeps failing and coming back would move its routes with every
//! flap, and each move is EC2 writes out of the budget real failovers need.
//! Every turn for the worse (healthy to questionable or failed,
//! questionable to failed) adds one to the host's penalty, which halves
//! every [`HALF_LIFE`]. A host whose penalty reaches [`SUPPRESS`] is held
//! down: shown as failed, so nothing is routed to it, whatever its checks
//! say, until its penalty decays below [`REUSE`] (flaps while held add to
//! it, up to [`MAX_PENALTY`]). A failure is never delayed: the first one
//! takes effect at once, and a single failure and recovery is not held.
//!
//! What this bounds: three failures in quick succession hold a router
//! (failures a few half-lives apart never add up); after a hold it is let
//! go with a penalty just under [`REUSE`], so its second failure after
//! that holds it again. A hold lasts at least `HALF_LIFE *
//! log2(SUPPRESS / REUSE)` (~40 s) and, for a router flapping throughout,
//! `HALF_LIFE * log2(MAX_PENALTY / REUSE)` (90 s) after its last flap. So a
//! router flapping as fast as a plugin can make it moves its routes away
//! three times, then at most twice per ~40 s: a handful of writes per
//! route a minute, not hundreds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::State;

pub const HALF_LIFE: Duration = Duration::from_secs(30);
pub const SUPPRESS: f64 = 2.5;
pub const REUSE: f64 = 1.0;
pub const MAX_PENALTY: f64 = 8.0;

/// Below this a host's record is forgotten.
const FORGET: f64 = 0.05;

#[derive(Debug, Clone)]
struct Record {
    penalty: f64,
    /// When `penalty` was last brought up to date.
    at: Instant,
    /// The host's state as its checks last said (before damping).
    state: State,
    held: bool,
}

impl Record {
    fn decay(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.penalty *= 0.5f64.powf(elapsed / HALF_LIFE.as_secs_f64());
        self.at = now;
    }
}

/// A change of hold, for the board to report.
#[derive(Debug, Clone, PartialEq)]
pub enum HoldChange {
    /// Held from now on (its penalty).
    Held {
        host: IpAddr,
        penalty: f64,
    },
    Released {
        host: IpAddr,
    },
}

/// Penalties and holds of every host that flapped lately.
#[derive(Debug, Default)]
pub struct Damping {
    records: BTreeMap<IpAddr, Record>,
}

impl Damping {
    /// Take the hosts' states as their checks say now (hosts not named are
    /// healthy); the hosts held down, and what changed.
    pub fn update(
        &mut self,
        states: &BTreeMap<IpAddr, State>,
        now: Instant,
    ) -> (BTreeSet<IpAddr>, Vec<HoldChange>) {
        let mut changes = Vec::new();
        for (&host, &state) in states {
            let record = match self.records.get_mut(&host) {
                Some(record) => record,
                None if state == State::Healthy => continue,
                None => self.records.entry(host).or_insert(Record {
                    penalty: 0.0,
                    at: now,
                    state: State::Healthy,
                    held: false,
                }),
            };
            if state > record.state {
                record.decay(now);
                record.penalty = (record.penalty + 1.0).min(MAX_PENALTY);
            }
            record.state = state;
        }
        for (&host, record) in &mut self.records {
            if !states.contains_key(&host) {
                record.state = State::Healthy;
            }
            record.decay(now);
            if !record.held && record.penalty >= SUPPRESS {
                record.held = true;
                changes.push(HoldChange::Held {
                    host,
                    penalty: record.penalty,
                });
            } else if record.held && record.penalty < REUSE {
                record.held = false;
                changes.push(HoldChange::Released { host });
            }
        }
        self.records
            .retain(|_, r| r.held || r.state != State::Healthy || r.penalty >= FORGET);
        let held = self
            .records
            .iter()
            .filter(|(_, r)| r.held)
            .map(|(h, _)| *h)
            .collect();
        (held, changes)
    }

    /// When a held host is let go if it flaps no more.
    pub fn release_in(&self, host: &IpAddr, now: Instant) -> Option<Duration> {
        let record = self.records.get(host).filter(|r| r.held)?;
        let elapsed = now.saturating_duration_since(record.at).as_secs_f64();
        let penalty = record.penalty * 0.5f64.powf(elapsed / HALF_LIFE.as_secs_f64());
        let halvings = (penalty / REUSE).log2().max(0.0);
        Some(HALF_LIFE.mul_f64(halvings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(failed: &[&str]) -> BTreeMap<IpAddr, State> {
        ["10.0.0.1", "10.0.0.2"]
            .iter()
            .map(|h| {
                let state = match failed.contains(h) {
                    true => State::Failed,
                    false => State::Healthy,
                };
                (h.parse().unwrap(), state)
            })
            .collect()
    }

    #[test]
    fn one_failure_and_recovery_is_never_held() {
        let mut damping = Damping::default();
        let t0 = Instant::now();
        let (held, _) = damping.update(&states(&["10.0.0.1"]), t0);
        assert!(held.is_empty());
        let (held, changes) = damping.update(&states(&[]), t0 + Duration::from_millis(100));
        assert!(held.is_empty() && changes.is_empty());
    }

    /// A host flipped every 100 ms for ten minutes is held from its third
    /// failure on: its routes move at most three times, not three thousand.
    #[test]
    fn a_host_flapping_without_end_is_held_after_three_failures() {
        let mut damping = Damping::default();
        let t0 = Instant::now();
        let host: IpAddr = "10.0.0.1".parse().unwrap();
        let mut effective_failures = 0;
        let mut was_failed = false;
        for tick in 0..6000u32 {
            let now = t0 + Duration::from_millis(100) * tick;
            let failing = tick % 2 == 0;
            let raw = states(if failing { &["10.0.0.1"] } else { &[] });
            let (held, _) = damping.update(&raw, now);
            let failed = failing || held.contains(&host);
            if failed && !was_failed {
                effective_failures += 1;
            }
            was_failed = failed;
        }
        assert_eq!(effective_failures, 3);
        // Once it stops, it is let go within the longest hold.
        let stopped = t0 + Duration::from_secs(600);
        let longest = HALF_LIFE.mul_f64((MAX_PENALTY / REUSE).log2()) + Duration::from_secs(1);
        let (held, _) = damping.update(&states(&[]), stopped + longest / 2);
        assert!(held.contains(&host));
        let (held, changes) = damping.update(&states(&[]), stopped + longest);
        assert!(held.is_empty(), "{held:?}");
        assert_eq!(changes, vec![HoldChange::Released { host }]);
    }

    /// Failures far apart (a router rebooted now and then) never add up.
    #[test]
    fn failures_far_apart_are_not_held() {
        let mut damping = Damping::default();
        let t0 = Instant::now();
        for i in 0..20u32 {
            let at = t0 + HALF_LIFE * 3 * i;
            let (held, _) = damping.update(&states(&["10.0.0.2"]), at);
            assert!(held.is_empty(), "failure {i}");
            damping.update(&states(&[]), at + Duration::from_secs(1));
        }
    }

    #[test]
    fn healthy_hosts_leave_no_record() {
        let mut damping = Damping::default();
        let now = Instant::now();
        damping.update(&states(&[]), now);
        assert!(damping.records.is_empty());
        damping.update(&states(&["10.0.0.1"]), now);
        damping.update(&states(&[]), now + HALF_LIFE * 10);
        assert!(damping.records.is_empty());
    }
}
