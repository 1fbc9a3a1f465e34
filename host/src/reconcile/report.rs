//! What the reconciler tells the rest of the daemon: the VPC as last
//! observed (and kept up to date with the operations since), whether the
//! last round succeeded, and per route table and CIDR the last action taken
//! and why. Published on a watch channel for the HTTP views.

use ipnet::IpNet;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::cloud::model::VpcState;

#[derive(Debug, Clone, Default)]
pub struct RouteReport {
    /// `None` until the VPC has been observed, and while it cannot be.
    pub vpc: Option<Arc<VpcState>>,
    pub observed_at: Option<SystemTime>,
    /// When a round last ended with the VPC as planned.
    pub last_success: Option<SystemTime>,
    /// Why the last round did not, if it did not.
    pub last_error: Option<String>,
    /// (route table, CIDR) -> the last action taken there.
    pub actions: BTreeMap<(String, IpNet), LastAction>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastAction {
    /// created, replaced, deleted.
    pub action: &'static str,
    pub reason: String,
    /// RFC 3339, UTC.
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The error, if the operation failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
