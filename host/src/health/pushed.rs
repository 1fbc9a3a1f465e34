//! Health a router reports itself (`POST /health/{ip}`): an agent on the
//! router knows best whether it forwards. Each report holds for its TTL;
//! one not renewed in time counts as failed, so an agent that dies fails
//! its router over like a failed probe. The reports go on the board as the
//! verdicts of a checker named [`PUSHED`], combined with the plugins'.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{HealthBoard, HostReport, State};

/// The checker name pushed reports go under (in `/ips`, logs, events).
pub const PUSHED: &str = "pushed";
/// The longest a report may hold.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// The longest reason kept, in bytes.
pub const MAX_PUSHED_REASON: usize = 256;

/// One report as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub state: State,
    pub ttl: Duration,
    pub reason: String,
}

impl Pushed {
    /// A report from the request's fields: the TTL from 1 s to
    /// [`MAX_TTL`], the reason printable and at most
    /// [`MAX_PUSHED_REASON`] bytes.
    pub fn new(state: State, ttl_seconds: u64, reason: &str) -> Result<Self, String> {
        if !(1..=MAX_TTL.as_secs()).contains(&ttl_seconds) {
            return Err(format!(
                "ttl {ttl_seconds} is out of range (1 to {} seconds)",
                MAX_TTL.as_secs()
            ));
        }
        if reason.len() > MAX_PUSHED_REASON || reason.chars().any(char::is_control) {
            return Err(format!(
                "reason must be printable text of at most {MAX_PUSHED_REASON} bytes"
            ));
        }
        Ok(Self {
            state,
            ttl: Duration::from_secs(ttl_seconds),
            reason: reason.to_string(),
        })
    }
}

/// The pushed reports in force: each host's latest, and which one its
/// expiry belongs to (a newer report outlives the older one's timer).
pub struct PushedHealth {
    board: Arc<HealthBoard>,
    latest: Mutex<BTreeMap<IpAddr, u64>>,
}

impl PushedHealth {
    pub fn new(board: Arc<HealthBoard>) -> Arc<Self> {
        Arc::new(Self {
            board,
            latest: Mutex::default(),
        })
    }

    /// Take `host`'s report now; unless another comes first, it expires
    /// (failed) after its TTL. The caller has checked `host` is a router.
    pub fn report(self: &Arc<Self>, host: IpAddr, pushed: Pushed) {
        let number = {
            let mut latest = self.latest.lock().expect("pushed lock");
            let number = latest.get(&host).map_or(0, |n| n + 1);
            latest.insert(host, number);
            number
        };
        let detail = match pushed.reason.is_empty() {
            true => format!("reported, for {} s", pushed.ttl.as_secs()),
            false => format!(
                "reported, for {} s: {}",
                pushed.ttl.as_secs(),
                pushed.reason
            ),
        };
        self.verdict(host, pushed.state, detail);
        let (health, ttl) = (Arc::downgrade(self), pushed.ttl);
        tokio::spawn(async move {
            tokio::time::sleep(ttl).await;
            if let Some(health) = health.upgrade() {
                health.expire(host, number, ttl);
            }
        });
    }

    fn expire(&self, host: IpAddr, number: u64, ttl: Duration) {
        if self.latest.lock().expect("pushed lock").get(&host) != Some(&number) {
            return;
        }
        let detail = format!("no report within its TTL of {} s", ttl.as_secs());
        self.verdict(host, State::Failed, detail);
    }

    fn verdict(&self, host: IpAddr, state: State, detail: String) {
        let report = HostReport {
            host,
            state,
            rtt_us: None,
            detail: Some(detail),
        };
        self.board.merge(PUSHED, vec![report]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_bounded() {
        assert!(Pushed::new(State::Healthy, 30, "ok").is_ok());
        assert!(
            Pushed::new(State::Healthy, 0, "")
                .unwrap_err()
                .contains("ttl 0")
        );
        assert!(
            Pushed::new(State::Healthy, 3601, "")
                .unwrap_err()
                .contains("ttl 3601")
        );
        assert!(Pushed::new(State::Failed, 5, &"x".repeat(257)).is_err());
        assert!(Pushed::new(State::Failed, 5, "a\nb").is_err());
    }

    /// A report holds for its TTL, then fails the host; a newer report
    /// outlives the older one's expiry.
    #[tokio::test]
    async fn an_expired_report_fails_the_host() {
        let board = Arc::new(HealthBoard::default());
        let pushed = PushedHealth::new(board.clone());
        let (renewed, left): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        pushed.report(
            renewed,
            Pushed::new(State::Healthy, 1, "forwarding").unwrap(),
        );
        pushed.report(
            renewed,
            Pushed::new(State::Healthy, 600, "forwarding").unwrap(),
        );
        pushed.report(left, Pushed::new(State::Healthy, 1, "forwarding").unwrap());
        let mut waited = Duration::ZERO;
        while board.snapshot().state(&left) != State::Failed {
            assert!(waited < Duration::from_secs(20), "never expired");
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += Duration::from_millis(20);
        }
        // The first report's timer has fired too (same TTL, started first).
        assert_eq!(board.snapshot().state(&renewed), State::Healthy, "renewed");
        let detail = board.reports()[PUSHED][&left].detail.clone().unwrap();
        assert_eq!(detail, "no report within its TTL of 1 s");
    }
}
