//! Reconciliation: planning route operations from the spec, health and the
//! observed VPC, and the task that carries them out.

pub mod plan;
mod run;

pub use run::Reconciler;

#[cfg(test)]
mod plan_tests;
