//! A batch of probes as the host runs it for a plugin: which distinct hosts
//! are probed and why the others are not, and a probe round (0.1.2) whose
//! outcomes wait here until the plugin asks. Nothing here knows the WIT
//! bindings (which name `ProbeRound` as the resource's host type).

use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::mpsc;

use super::limits::MAX_PROBES_PER_HOST;
use crate::probe::Outcome;

/// Longest timeout a probe may have; longer requests are cut to it. With
/// [`crate::spec::MAX_WORKING_SET`] silent hosts and 1,024 probes in
/// flight, a round takes at most ten of these (see `MAX_HOST_WAIT`).
pub const MAX_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Probe rounds one plugin may have open at once.
pub const MAX_OPEN_ROUNDS: usize = 4;

/// Why a host of a batch is not probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    NotAnAddress,
    OutsideWorkingSet,
    ProbedEnough,
    TooManyRounds,
    /// An HTTPS probe without a `tls-ca` grant to verify the host by.
    NoTlsGrant,
    /// An HTTP probe's request the host will not send (logged).
    BadRequest,
}

impl Refusal {
    pub(super) fn outcome(self) -> Outcome {
        Outcome::failed(match self {
            Refusal::NotAnAddress => "not an IP address".to_string(),
            Refusal::OutsideWorkingSet => "probe denied: not in the working set".to_string(),
            Refusal::ProbedEnough => {
                format!("probe refused: already probed {MAX_PROBES_PER_HOST} times in this call")
            }
            Refusal::TooManyRounds => {
                format!("probe refused: {MAX_OPEN_ROUNDS} rounds are open; drop one first")
            }
            Refusal::NoTlsGrant => {
                "probe refused: HTTPS needs the plugin's tls-ca option (a CA to verify routers by)"
                    .to_string()
            }
            Refusal::BadRequest => "probe refused: the HTTP check is malformed".to_string(),
        })
    }
}

/// How long each host may stay silent, as the plugin asked.
#[derive(Debug, Clone, Copy)]
pub(super) enum Timeout {
    Fixed(Duration),
    /// From the host's measured round trips, at most this.
    Adaptive(Duration),
}

impl Timeout {
    pub(super) fn cut(ms: u32) -> Duration {
        Duration::from_millis(ms.into()).min(MAX_PROBE_TIMEOUT)
    }
}

/// A batch split into the distinct hosts to probe and, per position, either
/// the index of its host in that list or why it is refused.
pub(super) struct Plan {
    pub(super) hosts: Vec<String>,
    pub(super) distinct: Vec<IpAddr>,
    pub(super) slots: Vec<Result<usize, Refusal>>,
}

impl Plan {
    /// The positions of each distinct host in the batch.
    pub(super) fn positions(&self) -> Vec<Vec<usize>> {
        let mut positions = vec![Vec::new(); self.distinct.len()];
        for (position, slot) in self.slots.iter().enumerate() {
            if let Ok(i) = slot {
                positions[*i].push(position);
            }
        }
        positions
    }
}

/// A probe round a plugin started (`probes.start-round`): its probes run
/// in a task of their own, and their outcomes wait here until the plugin
/// asks. Dropping it stops the probes.
pub struct ProbeRound {
    pub(super) plan: Plan,
    pub(super) positions: Vec<Vec<usize>>,
    /// Refusals by position in the batch, handed over at the first `next`.
    pub(super) refused: Vec<(usize, Refusal)>,
    pub(super) arrived: mpsc::UnboundedReceiver<(usize, Outcome)>,
    /// Distinct hosts whose outcome has not arrived.
    pub(super) pending: usize,
    pub(super) probing: Option<tokio::task::JoinHandle<()>>,
}

/// A round of HTTP probes (`probes.start-http-round`, 0.1.5): a probe
/// round whose outcomes carry responses.
pub struct HttpRound(pub(super) ProbeRound);

impl Drop for ProbeRound {
    fn drop(&mut self) {
        if let Some(probing) = &self.probing {
            probing.abort();
        }
    }
}
