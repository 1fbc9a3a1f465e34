//! The VPC: the model the planner reads, and the backends that observe and
//! change it.

pub mod budget;
pub mod ec2;
pub mod model;
pub mod operation;
pub mod sim;

use model::{RouteError, VpcState};
use operation::Operation;

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The API refused the operation (the VPC is not as we thought).
    #[error("{0}")]
    Refused(#[from] RouteError),
    /// The API could not be reached or failed; nothing is known.
    #[error("{0}")]
    Unavailable(String),
}

/// The few VPC calls vpcrouter makes.
pub trait VpcBackend: Send + Sync + 'static {
    /// Everything the planner needs, observed in full.
    fn describe(&self) -> impl Future<Output = Result<VpcState, CloudError>> + Send;
    /// One route operation.
    fn apply(&self, op: &Operation) -> impl Future<Output = Result<(), CloudError>> + Send;
    /// How many route operations may go out now without eating into what a
    /// failover would need (unbounded where calls are not rationed).
    fn spare_operations(&self) -> impl Future<Output = usize> + Send {
        async { usize::MAX }
    }
    /// Turn off source/destination checking on an ENI, so its host can
    /// route for others.
    fn disable_source_dest_check(
        &self,
        eni: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
}
