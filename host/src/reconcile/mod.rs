//! Reconciliation: planning route operations from the spec, health and the
//! observed VPC, and the task that carries them out.

pub mod plan;
pub mod report;
mod run;

pub use report::{LastAction, RouteReport};
pub use run::{Observers, Reconciler};

#[cfg(test)]
mod plan_tests;
