//! The planner: a pure function from (route spec, host health, observed
//! VPC) to the route operations that make the VPC match the spec.
//!
//! Rules (SPEC.md, Reconciliation):
//! - only routes to interfaces/instances are ours; gateway, NAT, peering
//!   and local routes are never touched;
//! - only tables associated with subnets where spec hosts live are managed;
//! - each CIDR points at one chosen host in every managed table (with AZ
//!   affinity: a healthy host in the table's own AZ when there is one),
//!   targeting the ENI that carries the host's address;
//! - a route is replaced when its target is gone (blackhole, unknown ENI,
//!   stopped instance), is not eligible for the CIDR, is failed, or is
//!   questionable while a healthy alternative exists;
//! - when no eligible host is usable, the route is left as it is: never
//!   deleted, never pointed at a failed host;
//! - managed routes whose CIDR is not in the spec are deleted, unless inside
//!   `ignore_routes`, which are never touched at all;
//! - the choice is deterministic and spreads CIDRs across hosts
//!   (rendezvous hashing), and sticks with a current healthy target, so one
//!   host's death moves only its own routes and recovery moves nothing back.

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::cloud::model::{Interface, Target, VpcState};
use crate::health::{HealthSnapshot, State};
use crate::spec::RouteSpec;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Routes inside these are never touched.
    pub ignore_routes: Vec<IpNet>,
    /// Prefer a healthy host in the route table's own AZ.
    pub az_affinity: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    Replace,
    Delete,
}

/// One route operation and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub action: Action,
    pub table: String,
    pub destination: IpNet,
    /// The new target (create, replace): the ENI and the host it carries.
    pub target: Option<(String, IpAddr)>,
    pub reason: String,
}

/// Something the operator should know that needs no operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub destination: IpNet,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub operations: Vec<Operation>,
    pub notices: Vec<Notice>,
}

/// A spec host that exists in the VPC, with what the choice needs.
struct Candidate<'a> {
    host: IpAddr,
    interface: &'a Interface,
    state: State,
    az: Option<&'a str>,
}

pub fn plan(
    spec: &RouteSpec,
    health: &HealthSnapshot,
    vpc: &VpcState,
    settings: &Settings,
) -> Plan {
    let mut plan = Plan::default();
    let by_ip: BTreeMap<IpAddr, &Interface> = vpc
        .interfaces
        .iter()
        .flat_map(|i| i.ips.iter().map(move |ip| (*ip, i)))
        .collect();
    let cluster_subnets: BTreeSet<&str> = spec
        .hosts()
        .iter()
        .filter_map(|h| by_ip.get(h).map(|i| i.subnet.as_str()))
        .collect();
    let managed: Vec<_> = vpc
        .route_tables
        .iter()
        .filter(|t| {
            t.subnets
                .iter()
                .any(|s| cluster_subnets.contains(s.as_str()))
        })
        .collect();
    let ignored = |cidr: &IpNet| settings.ignore_routes.iter().any(|i| i.contains(cidr));

    for (cidr, hosts) in spec.routes() {
        if ignored(cidr) {
            continue;
        }
        if hosts.is_empty() {
            plan.notice(
                *cidr,
                "no eligible router in the spec; existing routes left alone",
            );
            continue;
        }
        let candidates: Vec<Candidate> = hosts
            .iter()
            .filter_map(|host| {
                let interface = *by_ip.get(host)?;
                interface.running.then(|| Candidate {
                    host: *host,
                    interface,
                    state: health.state(host),
                    az: vpc.az_of_subnet(&interface.subnet),
                })
            })
            .collect();
        let current: Vec<IpAddr> = managed
            .iter()
            .filter_map(|t| {
                t.routes
                    .iter()
                    .find(|r| r.destination == *cidr && !r.blackhole)
            })
            .filter_map(|r| vpc.target_interface(&r.target))
            .filter_map(|i| {
                candidates
                    .iter()
                    .find(|c| c.interface.id == i.id)
                    .map(|c| c.host)
            })
            .collect();
        let Some(global) = choose(cidr, &candidates, &current, None) else {
            plan.notice(
                *cidr,
                "no usable eligible host (all failed or unknown); routes left as they are",
            );
            continue;
        };
        for table in &managed {
            let table_az = table.subnets.iter().find_map(|s| vpc.az_of_subnet(s));
            let chosen = match (settings.az_affinity, table_az) {
                (true, Some(az)) => choose(cidr, &candidates, &current, Some(az))
                    .filter(|c| c.state == State::Healthy && c.az == Some(az))
                    .unwrap_or(global),
                _ => global,
            };
            let existing = table.routes.iter().find(|r| r.destination == *cidr);
            let target = Some((chosen.interface.id.clone(), chosen.host));
            let Some(route) = existing else {
                plan.operations.push(Operation {
                    action: Action::Create,
                    table: table.id.clone(),
                    destination: *cidr,
                    target,
                    reason: format!("missing; pointing at {}", chosen.host),
                });
                continue;
            };
            if let Target::Other(other) = &route.target {
                plan.notice(
                    *cidr,
                    &format!("{} routes it to {other}, not ours to change", table.id),
                );
                continue;
            }
            let pointed = vpc.target_interface(&route.target);
            let why = match pointed {
                _ if route.blackhole => Some("its target is gone (blackhole)".to_string()),
                None => Some("its target no longer exists".to_string()),
                Some(i) if !i.running => Some(format!("{} is not running", i.id)),
                Some(i) if i.id == chosen.interface.id => None,
                Some(i) => match candidates.iter().find(|c| c.interface.id == i.id) {
                    None => Some(format!("{} is not an eligible host for this CIDR", i.id)),
                    Some(c) if c.state == State::Failed => Some(format!("{} failed", c.host)),
                    Some(c) if c.state == State::Questionable && chosen.state == State::Healthy => {
                        Some(format!("{} is questionable", c.host))
                    }
                    Some(c) if c.state == chosen.state => Some(format!(
                        "{} differs from the host chosen for every table",
                        c.host
                    )),
                    Some(_) => None,
                },
            };
            if let Some(why) = why {
                plan.operations.push(Operation {
                    action: Action::Replace,
                    table: table.id.clone(),
                    destination: *cidr,
                    target,
                    reason: format!("{why}; moving to {}", chosen.host),
                });
            }
        }
    }

    for table in &managed {
        for route in &table.routes {
            let ours = matches!(route.target, Target::Interface(_) | Target::Instance(_));
            if ours
                && !spec.routes().contains_key(&route.destination)
                && !ignored(&route.destination)
            {
                plan.operations.push(Operation {
                    action: Action::Delete,
                    table: table.id.clone(),
                    destination: route.destination,
                    target: None,
                    reason: "not in the route spec".into(),
                });
            }
        }
    }
    plan
}

impl Plan {
    fn notice(&mut self, destination: IpNet, message: &str) {
        self.notices.push(Notice {
            destination,
            message: message.into(),
        });
    }
}

/// The host for `cidr`: healthy before questionable (failed never); among
/// those, the one most managed tables already use (no needless moves),
/// else the highest rendezvous hash. With `az`, only hosts in that AZ.
fn choose<'c, 'a>(
    cidr: &IpNet,
    candidates: &'c [Candidate<'a>],
    current: &[IpAddr],
    az: Option<&str>,
) -> Option<&'c Candidate<'a>> {
    let usable = |c: &&Candidate| c.state != State::Failed && az.is_none_or(|az| c.az == Some(az));
    let best_state = candidates.iter().filter(usable).map(|c| c.state).min()?;
    candidates
        .iter()
        .filter(usable)
        .filter(|c| c.state == best_state)
        .max_by_key(|c| {
            (
                current.iter().filter(|h| **h == c.host).count(),
                rendezvous(cidr, &c.host),
            )
        })
}

/// FNV-1a of the CIDR and host: stable across runs and machines.
fn rendezvous(cidr: &IpNet, host: &IpAddr) -> u64 {
    format!("{cidr}|{host}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
}
