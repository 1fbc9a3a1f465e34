//! Round-trip estimates per host, for adaptive probe timeouts: the way TCP
//! sets its retransmission timer (RFC 6298), so that a silent host is
//! called silent after a few of its own round trips instead of a fixed
//! second. A probe that times out doubles the host's next timeout (up to
//! the plugin's maximum) until an answer gives a new sample: a host whose
//! round trips grew is learnt, not failed forever.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// The shortest adaptive timeout: below this, scheduling jitter on a busy
/// machine (not the network) would decide.
pub const FLOOR: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy)]
struct Estimate {
    srtt: Duration,
    rttvar: Duration,
    /// Timeouts in a row since the last answer.
    backoff: u32,
}

/// Estimates for the hosts one plugin probes (bounded by its working set:
/// hosts gone from it are dropped by [`RttTable::retain`]).
#[derive(Debug, Default)]
pub struct RttTable {
    hosts: HashMap<IpAddr, Estimate>,
}

impl RttTable {
    /// How long `host` may stay silent: srtt + 4 x rttvar, doubled per
    /// timeout in a row, within [FLOOR, max]; `max` for a host never
    /// measured.
    pub fn timeout(&self, host: &IpAddr, max: Duration) -> Duration {
        let Some(e) = self.hosts.get(host) else {
            return max;
        };
        let base = (e.srtt + 4 * e.rttvar).max(FLOOR);
        base.saturating_mul(1 << e.backoff.min(16))
            .min(max)
            .max(FLOOR.min(max))
    }

    /// Learn from a probe of `host`: its round trip, or that it was silent.
    pub fn record(&mut self, host: IpAddr, rtt: Option<Duration>, silent: bool) {
        match (rtt, self.hosts.get_mut(&host)) {
            (Some(rtt), None) => {
                self.hosts.insert(
                    host,
                    Estimate {
                        srtt: rtt,
                        rttvar: rtt / 2,
                        backoff: 0,
                    },
                );
            }
            (Some(rtt), Some(e)) => {
                let error = e.srtt.abs_diff(rtt);
                e.rttvar = (e.rttvar * 3 + error) / 4;
                e.srtt = (e.srtt * 7 + rtt) / 8;
                e.backoff = 0;
            }
            (None, Some(e)) if silent => e.backoff = e.backoff.saturating_add(1),
            (None, _) => {}
        }
    }

    /// Forget hosts for which `keep` is false.
    pub fn retain(&mut self, keep: impl Fn(&IpAddr) -> bool) {
        self.hosts.retain(|host, _| keep(host));
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn unmeasured_hosts_get_the_maximum_and_fast_ones_the_floor() {
        let mut table = RttTable::default();
        let host: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(table.timeout(&host, MAX), MAX);
        for _ in 0..20 {
            table.record(host, Some(Duration::from_micros(80)), false);
        }
        assert_eq!(table.timeout(&host, MAX), FLOOR);
        // A maximum under the floor wins: the plugin asked for it.
        assert_eq!(table.timeout(&host, ms(20)), ms(20));
    }

    #[test]
    fn slow_and_jittery_hosts_get_room() {
        let mut table = RttTable::default();
        let host: IpAddr = "10.0.0.1".parse().unwrap();
        for rtt in [40, 120, 60, 140, 50, 130] {
            table.record(host, Some(ms(rtt)), false);
        }
        let timeout = table.timeout(&host, MAX);
        assert!(timeout > ms(200) && timeout < MAX, "{timeout:?}");
    }

    #[test]
    fn timeouts_back_off_until_an_answer_is_learnt() {
        let mut table = RttTable::default();
        let host: IpAddr = "10.0.0.1".parse().unwrap();
        table.record(host, Some(ms(1)), false);
        let first = table.timeout(&host, MAX);
        assert_eq!(first, FLOOR);
        table.record(host, None, true);
        assert_eq!(table.timeout(&host, MAX), FLOOR * 2);
        for _ in 0..10 {
            table.record(host, None, true);
        }
        assert_eq!(table.timeout(&host, MAX), MAX);
        // A refusal is an answer of sorts but no round trip: no change.
        table.record(host, None, false);
        assert_eq!(table.timeout(&host, MAX), MAX);
        table.record(host, Some(ms(150)), false);
        let learnt = table.timeout(&host, MAX);
        assert!(learnt >= ms(150) && learnt < MAX, "{learnt:?}");
    }
}
