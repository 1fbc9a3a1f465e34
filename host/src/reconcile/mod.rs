//! Reconciliation: planning route operations from the spec, health and the
//! observed VPC.

pub mod plan;

#[cfg(test)]
mod plan_tests;
