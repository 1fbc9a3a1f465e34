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
// Planning hashes only the VPC's own identifiers, many thousand times per
// plan: a fast non-cryptographic hash is enough.
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::cloud::model::{Interface, Route, RouteTable, Target, VpcState};
use crate::health::{HealthSnapshot, State};
use crate::spec::RouteSpec;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Routes inside these are never touched.
    pub ignore_routes: Vec<IpNet>,
    /// Prefer a healthy host in the route table's own AZ.
    pub az_affinity: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// A replacement moving traffic off a failed or questionable host.
    pub failover: bool,
}

/// Something the operator should know that needs no operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What it is about: a CIDR, a router host or a route table.
    pub subject: String,
    pub message: String,
}

/// EC2's default route limit per table, and the most it grants on request.
const ROUTES_PER_TABLE_DEFAULT: usize = 50;
const ROUTES_PER_TABLE_MAX: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub operations: Vec<Operation>,
    pub notices: Vec<Notice>,
    /// ENIs of eligible hosts with source/destination check on (each also
    /// has a notice); `--disable-source-dest-check` turns it off for them.
    pub source_dest_checked: Vec<String>,
}

/// A spec host that exists in the VPC, with what the choice needs.
struct Candidate<'a> {
    host: IpAddr,
    interface: &'a Interface,
    state: State,
    az: Option<&'a str>,
}

/// Lookups built once per plan, so planning is linear in the VPC's size.
struct Index<'a> {
    by_ip: HashMap<IpAddr, &'a Interface>,
    by_id: HashMap<&'a str, &'a Interface>,
    /// An instance target means the instance's first interface (its primary).
    by_instance: HashMap<&'a str, &'a Interface>,
}

impl<'a> Index<'a> {
    fn new(vpc: &'a VpcState) -> Self {
        let mut by_instance = HashMap::default();
        for interface in &vpc.interfaces {
            if let Some(instance) = &interface.instance {
                by_instance.entry(instance.as_str()).or_insert(interface);
            }
        }
        Self {
            by_ip: vpc
                .interfaces
                .iter()
                .flat_map(|i| i.ips.iter().map(move |ip| (*ip, i)))
                .collect(),
            by_id: vpc.interfaces.iter().map(|i| (i.id.as_str(), i)).collect(),
            by_instance,
        }
    }

    fn target(&self, target: &Target) -> Option<&'a Interface> {
        match target {
            Target::Interface(eni) => self.by_id.get(eni.as_str()).copied(),
            Target::Instance(instance) => self.by_instance.get(instance.as_str()).copied(),
            Target::Other(_) => None,
        }
    }
}

/// A managed route table with its routes by destination.
struct Managed<'a> {
    table: &'a RouteTable,
    az: Option<&'a str>,
    routes: HashMap<IpNet, &'a Route>,
}

pub fn plan(
    spec: &RouteSpec,
    health: &HealthSnapshot,
    vpc: &VpcState,
    settings: &Settings,
) -> Plan {
    let mut plan = Plan::default();
    let index = Index::new(vpc);
    let cluster_subnets: BTreeSet<&str> = spec
        .hosts()
        .iter()
        .filter_map(|h| index.by_ip.get(h).map(|i| i.subnet.as_str()))
        .collect();
    let managed: Vec<Managed> = vpc
        .route_tables
        .iter()
        .filter(|t| {
            t.subnets
                .iter()
                .any(|s| cluster_subnets.contains(s.as_str()))
        })
        .map(|table| Managed {
            table,
            az: table.subnets.iter().find_map(|s| vpc.az_of_subnet(s)),
            routes: table.routes.iter().map(|r| (r.destination, r)).collect(),
        })
        .collect();
    let ignored = |cidr: &IpNet| settings.ignore_routes.iter().any(|i| i.contains(cidr));
    let subnet_az: HashMap<&str, &str> = vpc
        .subnets
        .iter()
        .map(|s| (s.id.as_str(), s.az.as_str()))
        .collect();
    let usable: HashMap<IpAddr, Candidate> = spec
        .hosts()
        .iter()
        .filter_map(|host| {
            let interface = *index.by_ip.get(host)?;
            interface.running.then(|| Candidate {
                host: *host,
                interface,
                state: health.state(host),
                az: subnet_az.get(interface.subnet.as_str()).copied(),
            })
        })
        .map(|c| (c.host, c))
        .collect();

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
        // Eligible hosts that exist and run, with their health and AZ.
        let candidates: Vec<&Candidate> = hosts.iter().filter_map(|h| usable.get(h)).collect();
        // The eligible host a table's route points at, if any (host lists
        // are sorted, so eligibility is a binary search).
        let candidate_of = |interface: &Interface| {
            interface
                .ips
                .iter()
                .find_map(|ip| hosts.binary_search(ip).ok().and_then(|_| usable.get(ip)))
        };
        let current: Vec<IpAddr> = managed
            .iter()
            .filter_map(|m| m.routes.get(cidr).filter(|r| !r.blackhole))
            .filter_map(|r| index.target(&r.target))
            .filter_map(|i| candidate_of(i).map(|c| c.host))
            .collect();
        let Some(global) = choose(cidr, &candidates, &current, None) else {
            plan.notice(
                *cidr,
                "no usable eligible host (all failed or unknown); routes left as they are",
            );
            continue;
        };
        for Managed {
            table,
            az: table_az,
            routes,
        } in &managed
        {
            let chosen = match (settings.az_affinity, *table_az) {
                (true, Some(az)) => choose(cidr, &candidates, &current, Some(az))
                    .filter(|c| c.state == State::Healthy && c.az == Some(az))
                    .unwrap_or(global),
                _ => global,
            };
            let existing = routes.get(cidr).copied();
            let target = Some((chosen.interface.id.clone(), chosen.host));
            let Some(route) = existing else {
                let reason = format!("missing; pointing at {}", chosen.host);
                plan.push(Action::Create, table, *cidr, target, reason);
                continue;
            };
            if let Target::Other(other) = &route.target {
                plan.notice(
                    *cidr,
                    &format!("{} routes it to {other}, not ours to change", table.id),
                );
                continue;
            }
            let pointed = index.target(&route.target);
            // (why, whether it is a failover)
            let why = match pointed {
                _ if route.blackhole => Some(("its target is gone (blackhole)".to_string(), false)),
                None => Some(("its target no longer exists".to_string(), false)),
                Some(i) if !i.running => Some((format!("{} is not running", i.id), false)),
                Some(i) if i.id == chosen.interface.id => None,
                Some(i) => match candidate_of(i) {
                    None => Some((
                        format!("{} is not an eligible host for this CIDR", i.id),
                        false,
                    )),
                    Some(c) if c.state == State::Failed => {
                        Some((format!("{} failed", c.host), true))
                    }
                    Some(c) if c.state == State::Questionable && chosen.state == State::Healthy => {
                        Some((format!("{} is questionable", c.host), true))
                    }
                    Some(c) if c.state == chosen.state => Some((
                        format!("{} differs from the host chosen for every table", c.host),
                        false,
                    )),
                    Some(_) => None,
                },
            };
            if let Some((why, failover)) = why {
                let reason = format!("{why}; moving to {}", chosen.host);
                plan.push(Action::Replace, table, *cidr, target, reason);
                plan.operations.last_mut().expect("just pushed").failover = failover;
            }
        }
    }

    for Managed { table, .. } in &managed {
        for route in &table.routes {
            let ours = matches!(route.target, Target::Interface(_) | Target::Instance(_));
            if ours
                && !spec.routes().contains_key(&route.destination)
                && !ignored(&route.destination)
            {
                let reason = "not in the route spec".to_string();
                plan.push(Action::Delete, table, route.destination, None, reason);
            }
        }
    }
    warn_about_limits(&mut plan, &managed);
    let mut cannot_route: Vec<&Candidate> = usable
        .values()
        .filter(|c| c.interface.source_dest_check)
        .collect();
    cannot_route.sort_by_key(|c| c.host);
    for candidate in cannot_route {
        let message = format!(
            "{} has source/destination check enabled, so it cannot route for others; disable it on the ENI (or run with --disable-source-dest-check)",
            candidate.interface.id
        );
        plan.notice(candidate.host, &message);
        plan.source_dest_checked
            .push(candidate.interface.id.clone());
    }
    plan
}

/// Tables that will be near or over EC2's route limits once the plan is
/// carried out (`RouteLimitExceeded` otherwise comes as a surprise).
fn warn_about_limits(plan: &mut Plan, managed: &[Managed]) {
    for Managed { table, .. } in managed {
        let change = |action: Action| {
            plan.operations
                .iter()
                .filter(|o| o.table == table.id && o.action == action)
                .count()
        };
        let routes = table.routes.len() + change(Action::Create) - change(Action::Delete);
        let message = if routes > ROUTES_PER_TABLE_MAX {
            format!(
                "will need {routes} routes; EC2 allows at most {ROUTES_PER_TABLE_MAX} per table"
            )
        } else if routes * 10 > ROUTES_PER_TABLE_DEFAULT * 9 {
            format!(
                "will hold {routes} routes; EC2's default limit is {ROUTES_PER_TABLE_DEFAULT} per table ({ROUTES_PER_TABLE_MAX} on request)"
            )
        } else {
            continue;
        };
        plan.notice(&table.id, &message);
    }
}

impl Plan {
    fn push(
        &mut self,
        action: Action,
        table: &RouteTable,
        destination: IpNet,
        target: Option<(String, IpAddr)>,
        reason: String,
    ) {
        self.operations.push(Operation {
            action,
            table: table.id.clone(),
            destination,
            target,
            reason,
            failover: false,
        });
    }

    fn notice(&mut self, subject: impl ToString, message: &str) {
        self.notices.push(Notice {
            subject: subject.to_string(),
            message: message.into(),
        });
    }
}

/// The host for `cidr`: healthy before questionable (failed never); among
/// those, the one most managed tables already use (no needless moves),
/// else the highest rendezvous hash. With `az`, only hosts in that AZ.
fn choose<'c, 'a>(
    cidr: &IpNet,
    candidates: &[&'c Candidate<'a>],
    current: &[IpAddr],
    az: Option<&str>,
) -> Option<&'c Candidate<'a>> {
    let usable = |c: &&&Candidate| c.state != State::Failed && az.is_none_or(|az| c.az == Some(az));
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
        .copied()
}

/// The rendezvous weight of `host` for `cidr`: each part hashed (FNV-1a
/// over its octets) and fully mixed (murmur3's fmix64) on its own, then
/// combined and mixed again, so the maximum over hosts spreads CIDRs evenly.
/// No allocation; stable across runs, machines and Rust versions.
fn rendezvous(cidr: &IpNet, host: &IpAddr) -> u64 {
    fn fnv(bytes: impl IntoIterator<Item = u8>) -> u64 {
        bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }
    fn fmix(mut h: u64) -> u64 {
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    fn octets(ip: IpAddr) -> ([u8; 16], usize) {
        match ip {
            IpAddr::V4(v4) => {
                let mut bytes = [0; 16];
                bytes[..4].copy_from_slice(&v4.octets());
                (bytes, 4)
            }
            IpAddr::V6(v6) => (v6.octets(), 16),
        }
    }
    let (net, net_len) = octets(cidr.network());
    let (ip, ip_len) = octets(*host);
    let cidr = fmix(fnv(net[..net_len]
        .iter()
        .copied()
        .chain([cidr.prefix_len()])));
    let host = fmix(fnv(ip[..ip_len].iter().copied()).wrapping_add(0x9e37_79b9_7f4a_7c15));
    fmix(cidr ^ host)
}

#[cfg(test)]
mod tests {
    use super::rendezvous;
    use std::collections::BTreeMap;
    use std::net::IpAddr;

    /// 1,000 CIDRs over 100 similar hosts: every host gets some, none more
    /// than twice its share (a weak hash left 76 hosts unused).
    #[test]
    fn rendezvous_spreads_cidrs_evenly() {
        let hosts: Vec<IpAddr> = (0..100)
            .map(|h| format!("10.0.0.{}", 10 + h).parse().unwrap())
            .collect();
        let mut load = BTreeMap::new();
        for c in 0..1000 {
            let cidr: ipnet::IpNet = format!("10.{}.{}.0/24", 100 + c / 256, c % 256)
                .parse()
                .unwrap();
            let best = hosts.iter().max_by_key(|h| rendezvous(&cidr, h)).unwrap();
            *load.entry(*best).or_insert(0) += 1;
        }
        assert_eq!(load.len(), 100);
        assert!(*load.values().max().unwrap() <= 20, "{load:?}");
    }
}
