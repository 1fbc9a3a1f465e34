//! Router host health as the daemon sees it: every health-check plugin's
//! verdicts, combined per host (failed if ANY plugin says failed,
//! questionable if any says questionable). The board is the one place a
//! host's change of state is noticed, logged and published, the moment a
//! verdict that changes it arrives; with the hosts drained on purpose
//! (`drain`) and the health routers report themselves (`pushed`). The
//! probing is `crate::probe`'s.

mod board;
mod damping;
mod drain;
mod drain_store;
mod pushed;

pub use board::{HealthBoard, HealthSnapshot, HostReport};
pub use damping::{HALF_LIFE, MAX_PENALTY, REUSE, SUPPRESS};
pub use drain::{Drain, MAX_DRAINS, MAX_REASON};
pub use drain_store::{DrainStore, Drains, StoreError};
pub use pushed::{MAX_TTL, PUSHED, Pushed, PushedHealth};

/// One host's state, best first so that `max` combines plugins into the
/// worst. The plugin runtime turns the WIT `health-state` into it where a
/// verdict enters the daemon; nothing past that sees another form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Healthy,
    Questionable,
    Failed,
}
