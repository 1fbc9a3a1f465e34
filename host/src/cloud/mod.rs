//! The VPC: the model the planner reads, and the backends that observe and
//! change it.

pub mod budget;
pub mod claims;
pub mod ec2;
pub mod lists;
pub mod model;
pub mod operation;
pub mod sim;

use claims::TagChange;
use model::{RouteError, VpcState};
use operation::Operation;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CloudError {
    /// The API refused the operation (the VPC is not as we thought).
    #[error("{0}")]
    Refused(#[from] RouteError),
    /// The API could not be reached or failed; nothing is known.
    #[error("{0}")]
    Unavailable(String),
}

/// Route operations in flight at once.
const CONCURRENT_OPERATIONS: usize = 8;

/// Routes of ours that a pass holds as they are, already on the router
/// chosen: (table, CIDR).
pub type Held = std::collections::BTreeSet<(String, ipnet::IpNet)>;

/// What one pass of [`VpcBackend::migrate`] did.
#[derive(Debug, Default)]
pub struct Migration {
    /// CIDRs now in the form the mode wants.
    pub moved: usize,
    /// CIDRs still to move.
    pub left: usize,
    /// Calls made (with some made or CIDRs left, look again soon: tidying
    /// follows the last move).
    pub calls: usize,
    /// A call that failed (observe again before going on).
    pub failed: Option<CloudError>,
}

/// Asked before each call of a batch: may this replica still write (with
/// HA, its lease may run out while a batch is under way)?
pub type MayWrite<'a> = dyn Fn() -> bool + Sync + 'a;

/// The few VPC calls vpcrouter makes.
pub trait VpcBackend: Send + Sync + 'static {
    /// Everything the planner needs, observed in full.
    fn describe(&self) -> impl Future<Output = Result<VpcState, CloudError>> + Send;
    /// One route operation.
    fn apply(&self, op: &Operation) -> impl Future<Output = Result<(), CloudError>> + Send;
    /// A batch of route operations, each with its outcome, a bounded
    /// number in flight, in order; none is sent once `may_write` says no.
    fn apply_all(
        &self,
        ops: Vec<Operation>,
        may_write: &MayWrite<'_>,
    ) -> impl Future<Output = Vec<(Operation, Result<(), CloudError>)>> + Send {
        use futures_util::StreamExt;
        futures_util::stream::iter(ops)
            .map(move |op| async move {
                if !may_write() {
                    let refused = CloudError::Unavailable("no longer the leader; not sent".into());
                    return (op, Err(refused));
                }
                let result = self.apply(&op).await;
                (op, result)
            })
            .buffered(CONCURRENT_OPERATIONS)
            .collect()
    }
    /// How many route operations may go out now without eating into what a
    /// failover would need (unbounded where calls are not rationed).
    fn spare_operations(&self) -> impl Future<Output = usize> + Send {
        async { usize::MAX }
    }
    /// Re-form a few `held` routes, with at most about `spare` calls,
    /// without moving their traffic: prefix-list mode moves per-CIDR
    /// routes into lists (`reconcile::lists`). Nothing by default.
    fn migrate(
        &self,
        held: &Held,
        spare: usize,
        may_write: &MayWrite<'_>,
    ) -> impl Future<Output = Migration> + Send {
        let _ = (held, spare, may_write);
        async { Migration::default() }
    }
    /// Since when the API has refused every call as throttled (none: it
    /// is answering).
    fn throttled_since(&self) -> Option<std::time::Instant> {
        None
    }
    /// Turn off source/destination checking on an ENI, so its host can
    /// route for others.
    fn disable_source_dest_check(
        &self,
        eni: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
    /// Set and remove tags of a route table (the claims of which routes
    /// are whose).
    fn write_tags(&self, change: &TagChange)
    -> impl Future<Output = Result<(), CloudError>> + Send;
}

/// The VPC the daemon manages, chosen once at start: the embedded one
/// (`--sim-vpc`) or EC2.
pub enum Vpc {
    Sim(sim::SimVpc),
    Ec2(ec2::Ec2Vpc),
}

impl Vpc {
    /// The VPC's id (`sim` for the embedded one), e.g. to name the HA
    /// election.
    pub fn id(&self) -> &str {
        match self {
            Self::Sim(_) => "sim",
            Self::Ec2(ec2) => ec2.vpc_id(),
        }
    }

    /// The region (none for the embedded VPC).
    pub fn region(&self) -> Option<&str> {
        match self {
            Self::Sim(_) => None,
            Self::Ec2(ec2) => Some(ec2.region()),
        }
    }

    /// EC2's call budget, where calls are rationed.
    pub fn budget(&self) -> Option<std::sync::Arc<budget::Budget>> {
        match self {
            Self::Sim(_) => None,
            Self::Ec2(ec2) => Some(ec2.budget()),
        }
    }
}

impl VpcBackend for Vpc {
    async fn describe(&self) -> Result<VpcState, CloudError> {
        match self {
            Self::Sim(sim) => sim.describe().await,
            Self::Ec2(ec2) => ec2.describe().await,
        }
    }

    async fn apply(&self, op: &Operation) -> Result<(), CloudError> {
        match self {
            Self::Sim(sim) => sim.apply(op).await,
            Self::Ec2(ec2) => ec2.apply(op).await,
        }
    }

    async fn spare_operations(&self) -> usize {
        match self {
            Self::Sim(sim) => sim.spare_operations().await,
            Self::Ec2(ec2) => ec2.spare_operations().await,
        }
    }

    fn throttled_since(&self) -> Option<std::time::Instant> {
        match self {
            Self::Sim(sim) => sim.throttled_since(),
            Self::Ec2(ec2) => ec2.throttled_since(),
        }
    }

    async fn disable_source_dest_check(&self, eni: &str) -> Result<(), CloudError> {
        match self {
            Self::Sim(sim) => sim.disable_source_dest_check(eni).await,
            Self::Ec2(ec2) => ec2.disable_source_dest_check(eni).await,
        }
    }

    async fn write_tags(&self, change: &TagChange) -> Result<(), CloudError> {
        match self {
            Self::Sim(sim) => sim.write_tags(change).await,
            Self::Ec2(ec2) => ec2.write_tags(change).await,
        }
    }
}

impl lists::ListBackend for Vpc {
    async fn describe_lists(&self) -> Result<lists::Lists, CloudError> {
        match self {
            Self::Sim(sim) => sim.describe_lists().await,
            Self::Ec2(ec2) => ec2.describe_lists().await,
        }
    }

    async fn apply_list(&self, call: &lists::ListCall) -> Result<Option<String>, CloudError> {
        match self {
            Self::Sim(sim) => sim.apply_list(call).await,
            Self::Ec2(ec2) => ec2.apply_list(call).await,
        }
    }
}
