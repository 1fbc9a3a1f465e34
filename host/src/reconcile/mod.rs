//! Reconciliation: planning route operations from the spec, health and the
//! observed VPC (`plan`, pure), and the task that carries them out (`run`:
//! the loop; `apply`: writing; `rebalance`: pacing the operator's
//! rebalancing; `report`: what the views are told).

mod apply;
pub mod lists;
mod moves;
pub mod plan;
mod rebalance;
pub mod report;
mod run;

pub use moves::{MoveOff, MoveRequests};
pub use report::{LastAction, RouteReport};
pub use run::{Observers, Reconciler};
