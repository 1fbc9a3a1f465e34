//! Routers that AWS says are about to go: the events queue (`--events-queue
//! URL`), an SQS queue EventBridge feeds with EC2's Spot interruption
//! warnings, rebalance recommendations and state changes, and Auto
//! Scaling's terminate lifecycle actions. A router named by one is drained
//! before it goes; an Auto Scaling hook is completed once no route points
//! at the instance. Only a leader reads the queue.

pub mod queue;
pub mod signal;

pub use signal::{LifecycleAction, Signal, Unusable};
