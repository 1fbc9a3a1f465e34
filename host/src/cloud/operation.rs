//! The route operations a backend carries out, and their names. The planner
//! decides them; backends, the cache and the views only read them.

use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Replace,
    Delete,
}

impl Action {
    /// Lower case, for metrics labels and events: `create`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Replace => "replace",
            Action::Delete => "delete",
        }
    }

    /// Past tense, for logs and the route views: `created`.
    pub fn done(self) -> &'static str {
        match self {
            Action::Create => "created",
            Action::Replace => "replaced",
            Action::Delete => "deleted",
        }
    }

    /// The EC2 API call that carries it out.
    pub fn api_call(self) -> &'static str {
        match self {
            Action::Create => "CreateRoute",
            Action::Replace => "ReplaceRoute",
            Action::Delete => "DeleteRoute",
        }
    }
}

/// Why an operation is needed, as far as it changes how urgent it is and
/// how it is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Traffic moves off a failed or questionable host.
    Failover,
    /// The route is missing, dangling, foreign to the spec or not the
    /// chosen host's.
    Repair,
    /// The operator asked to restore the balanced spread.
    Rebalance,
    /// Traffic moves off a host drained on purpose, before it goes (or one
    /// CIDR off a host the operator asked it off).
    Drain,
}

impl Cause {
    /// Lower case, for the plan view: `failover`.
    pub fn name(self) -> &'static str {
        match self {
            Cause::Failover => "failover",
            Cause::Repair => "repair",
            Cause::Rebalance => "rebalance",
            Cause::Drain => "drain",
        }
    }
}

/// The router a created or replaced route points at: the ENI that carries
/// the host's address (EC2 routes to ENIs), and the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterTarget {
    pub eni: String,
    pub host: IpAddr,
}

/// Where a created or replaced route points: a router, or the CIDR's
/// fallback gateway while no router is eligible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    Router(RouterTarget),
    /// A NAT gateway, transit gateway, internet gateway or peering
    /// connection, by id.
    Gateway(String),
}

impl RouteTarget {
    /// The router host, unless it is a gateway.
    pub fn host(&self) -> Option<IpAddr> {
        match self {
            RouteTarget::Router(router) => Some(router.host),
            RouteTarget::Gateway(_) => None,
        }
    }

    /// The router's ENI, unless it is a gateway.
    pub fn eni(&self) -> Option<&str> {
        match self {
            RouteTarget::Router(router) => Some(&router.eni),
            RouteTarget::Gateway(_) => None,
        }
    }

    /// The gateway id, unless it is a router.
    pub fn gateway(&self) -> Option<&str> {
        match self {
            RouteTarget::Router(_) => None,
            RouteTarget::Gateway(id) => Some(id),
        }
    }
}

impl std::fmt::Display for RouteTarget {
    /// The host, or the gateway id: what views and events name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteTarget::Router(router) => router.host.fmt(f),
            RouteTarget::Gateway(id) => f.write_str(id),
        }
    }
}

/// One route operation and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub action: Action,
    pub table: String,
    pub destination: IpNet,
    /// The new target (create, replace).
    pub target: Option<RouteTarget>,
    pub reason: String,
    pub cause: Cause,
}

impl Operation {
    /// Order of carrying out when calls are short (lowest first): failovers
    /// (traffic is being lost), drains (it soon will be: a Spot notice
    /// gives two minutes), other replacements, creations, deletions, and
    /// the operator's rebalancing last.
    pub fn urgency(&self) -> u8 {
        match (self.cause, self.action) {
            (Cause::Failover, _) => 0,
            (Cause::Drain, _) => 1,
            (Cause::Repair, Action::Replace) => 2,
            (Cause::Repair, Action::Create) => 3,
            (Cause::Repair, Action::Delete) => 4,
            (Cause::Rebalance, _) => 5,
        }
    }
}
