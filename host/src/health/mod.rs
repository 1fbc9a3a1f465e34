//! Router host health as the daemon sees it: every health-check plugin's
//! verdicts, combined per host (failed if ANY plugin says failed,
//! questionable if any says questionable). The board is the one place a
//! host's change of state is noticed, logged and published, the moment a
//! verdict that changes it arrives. The probing is `crate::probe`'s.

mod board;
mod damping;

pub use board::{HealthBoard, HealthSnapshot, HostReport, State};
pub use damping::{HALF_LIFE, MAX_PENALTY, REUSE, SUPPRESS};
