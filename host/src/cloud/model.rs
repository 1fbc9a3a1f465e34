//! The VPC as the planner sees it: route tables with their subnet
//! associations and routes, and the network interfaces (ENIs) that carry
//! router hosts' addresses. Backends fill it from EC2 or the simulator.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

use super::claims::TagChange;
use super::operation::{Action, Operation, RouteTarget};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcState {
    pub subnets: Vec<Subnet>,
    pub interfaces: Vec<Interface>,
    pub route_tables: Vec<RouteTable>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub az: String,
}

/// The instance states EC2 names on the way out: such a router is drained.
pub fn going_away(state: &str) -> bool {
    matches!(
        state,
        "stopping" | "shutting-down" | "stopped" | "terminated"
    )
}

/// An ENI and the instance it is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub id: String,
    pub instance: Option<String>,
    pub subnet: String,
    pub ips: Vec<IpAddr>,
    /// Attached to a running instance (a stopped or terminated one routes
    /// nothing).
    pub running: bool,
    /// Source/destination check on: this host cannot route for others.
    #[serde(default)]
    pub source_dest_check: bool,
    /// The instance's state as EC2 names it (`stopping`, `terminated`, ...),
    /// for the reasons and views; `running` is what the planner reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_state: Option<String>,
    /// An EC2 scheduled event of the instance that starts soon (a reboot,
    /// a retirement), said as the reason it is drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub id: String,
    /// Subnets explicitly associated with the table.
    pub subnets: Vec<String>,
    pub routes: Vec<Route>,
    /// The VPC's main table: it serves every subnet without an explicit
    /// association.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub main: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub destination: IpNet,
    pub target: Target,
    /// EC2 says the target is gone (`State: blackhole`).
    #[serde(default)]
    pub blackhole: bool,
    #[serde(default, skip_serializing_if = "RouteOrigin::is_create_route")]
    pub origin: RouteOrigin,
}

/// What made a route. Only `CreateRoute` routes are anybody's to replace
/// or delete: the table's `local` route, routes propagated from a virtual
/// private gateway and those a VPC Route Server installs are left alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteOrigin {
    #[default]
    CreateRoute,
    CreateRouteTable,
    EnableVgwRoutePropagation,
    /// Any other origin, as EC2 named it.
    Other(String),
}

impl RouteOrigin {
    pub fn is_create_route(&self) -> bool {
        *self == RouteOrigin::CreateRoute
    }

    /// As EC2 names it.
    pub fn name(&self) -> &str {
        match self {
            RouteOrigin::CreateRoute => "CreateRoute",
            RouteOrigin::CreateRouteTable => "CreateRouteTable",
            RouteOrigin::EnableVgwRoutePropagation => "EnableVgwRoutePropagation",
            RouteOrigin::Other(name) => name,
        }
    }
}

/// Where a route sends traffic. Only interface and instance targets are
/// vpcrouter's to manage.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Interface(String),
    Instance(String),
    /// A gateway, NAT gateway, peering connection, `local`, ...
    Other(String),
}

impl VpcState {
    pub fn interface(&self, id: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.id == id)
    }

    pub fn az_of_subnet(&self, subnet: &str) -> Option<&str> {
        self.subnets
            .iter()
            .find(|s| s.id == subnet)
            .map(|s| s.az.as_str())
    }
}

/// Why EC2 (or the simulator) refused a route operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("InvalidRouteTableID.NotFound: {0}")]
    NoSuchTable(String),
    #[error("RouteAlreadyExists: {0} in {1}")]
    AlreadyExists(IpNet, String),
    #[error("InvalidRoute.NotFound: {0} in {1}")]
    NoSuchRoute(IpNet, String),
    #[error("InvalidNetworkInterfaceID.NotFound: {0}")]
    NoSuchInterface(String),
    #[error("RouteLimitExceeded: {0} holds as many routes as EC2 allows")]
    LimitExceeded(String),
    /// Any other refusal, as EC2 worded it.
    #[error("{code}: {message}")]
    Other { code: String, message: String },
}

impl VpcState {
    /// Set and remove tags of a route table.
    pub fn write_tags(&mut self, change: &TagChange) -> Result<(), RouteError> {
        let table = (self.route_tables.iter_mut())
            .find(|t| t.id == change.table)
            .ok_or_else(|| RouteError::NoSuchTable(change.table.clone()))?;
        change.apply_to(&mut table.tags);
        Ok(())
    }

    pub fn table(&self, id: &str) -> Option<&RouteTable> {
        self.route_tables.iter().find(|t| t.id == id)
    }

    /// Carry out one route operation as EC2 would, with its errors.
    pub fn apply(&mut self, op: &Operation) -> Result<(), RouteError> {
        if let Some(eni) = op.target.as_ref().and_then(|t| t.eni())
            && self.interface(eni).is_none()
        {
            return Err(RouteError::NoSuchInterface(eni.to_string()));
        }
        let table = self
            .route_tables
            .iter_mut()
            .find(|t| t.id == op.table)
            .ok_or_else(|| RouteError::NoSuchTable(op.table.clone()))?;
        let existing = table
            .routes
            .iter()
            .position(|r| r.destination == op.destination);
        let target = || match op
            .target
            .as_ref()
            .expect("create and replace have a target")
        {
            RouteTarget::Router(router) => Target::Interface(router.eni.clone()),
            RouteTarget::Gateway(id) => Target::Other(id.clone()),
        };
        match (&op.action, existing) {
            (Action::Create, Some(_)) => {
                Err(RouteError::AlreadyExists(op.destination, op.table.clone()))
            }
            (Action::Create, None) => {
                table.routes.push(Route {
                    destination: op.destination,
                    target: target(),
                    blackhole: false,
                    origin: RouteOrigin::CreateRoute,
                });
                Ok(())
            }
            (Action::Replace, Some(i)) => {
                table.routes[i] = Route {
                    destination: op.destination,
                    target: target(),
                    blackhole: false,
                    origin: RouteOrigin::CreateRoute,
                };
                Ok(())
            }
            (Action::Delete, Some(i)) => {
                table.routes.remove(i);
                Ok(())
            }
            (Action::Replace | Action::Delete, None) => {
                Err(RouteError::NoSuchRoute(op.destination, op.table.clone()))
            }
        }
    }
}
