//! Router host health as the daemon sees it: every health-check plugin's
//! latest report, combined per host (failed if ANY plugin says failed,
//! questionable if any says questionable). A change is published the moment
//! the round that saw it completes.

mod board;
mod exchange;
pub mod half_open;
pub mod icmp;
pub mod probe;
mod socket;

pub use board::{HealthBoard, HealthSnapshot, HostReport, State};
