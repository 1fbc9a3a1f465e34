//! The planner: a pure function from (route spec, host health, observed
//! VPC) to the route operations that make the VPC match the spec.
//!
//! Rules (README, "Routes"):
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
//! - the spread is balanced and sticky: a CIDR keeps its current healthy
//!   target, and CIDRs that need a host go, in CIDR order, to the host of
//!   highest rendezvous weight still below the bound ceil(R/H) (R CIDRs, H
//!   hosts they may use). So one host's death moves only its routes, spread
//!   within the bound over the survivors, and recovery moves nothing back.
//!   Only on request (`rebalance`) do routes leave hosts above the bound:
//!   the fewest that restore it, each host keeping its highest-weight CIDRs.
//!   Deterministic: replicas and restarts choose alike from the same state.

use ipnet::IpNet;
// Planning hashes only the VPC's own identifiers, many thousand times per
// plan: a fast non-cryptographic hash is enough.
use rustc_hash::FxHashMap as HashMap;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::cloud::model::{Interface, Route, RouteTable, Target, VpcIndex, VpcState};
use crate::cloud::operation::{Action, Cause, Operation};
use crate::health::{HealthSnapshot, State};
use crate::spec::RouteSpec;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Routes inside these are never touched.
    pub ignore_routes: Vec<IpNet>,
    /// Prefer a healthy host in the route table's own AZ.
    pub az_affinity: bool,
    /// Move routes off hosts above the balanced bound (the operator asked).
    pub rebalance: bool,
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
struct Candidate<'v> {
    host: IpAddr,
    interface: &'v Interface,
    state: State,
    az: Option<&'v str>,
}

/// A managed route table with its routes by destination.
struct Managed<'v> {
    table: &'v RouteTable,
    az: Option<&'v str>,
    routes: HashMap<IpNet, &'v Route>,
}

impl<'v> Managed<'v> {
    /// Which spread the table follows: its AZ's with affinity, else the
    /// one of all tables (`None`).
    fn spread(&self, az_affinity: bool) -> Option<&'v str> {
        self.az.filter(|_| az_affinity)
    }
}

/// A spec CIDR to route, with the hosts it may use and where its routes
/// point now.
struct Wanted<'p, 'v> {
    cidr: IpNet,
    /// Its eligible hosts, sorted (the spec keeps host lists sorted).
    hosts: &'p [IpAddr],
    /// The eligible hosts that exist and run.
    candidates: Vec<&'p Candidate<'v>>,
    /// Per managed table: the usable eligible host its route points at.
    current: Vec<Option<IpAddr>>,
}

impl<'p, 'v> Wanted<'p, 'v> {
    /// The usable eligible host an interface carries, if any (host lists
    /// are sorted, so eligibility is a binary search).
    fn candidate_of(
        &self,
        interface: &Interface,
        usable: &'p HashMap<IpAddr, Candidate<'v>>,
    ) -> Option<&'p Candidate<'v>> {
        interface.ips.iter().find_map(|ip| {
            self.hosts
                .binary_search(ip)
                .ok()
                .and_then(|_| usable.get(ip))
        })
    }
}

/// A host above the balanced bound, with how far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Overload {
    host: IpAddr,
    load: usize,
    bound: usize,
}

/// Where a CIDR's routes go in one scope.
#[derive(Clone, Copy)]
struct Choice<'p, 'v> {
    host: &'p Candidate<'v>,
    /// It leaves this overloaded host on the operator's request.
    rebalanced_from: Option<Overload>,
}

/// One scope's choice for every wanted CIDR (parallel to them), and the
/// hosts left above the bound because nothing asked to move their routes.
struct Spread<'p, 'v> {
    choices: Vec<Option<Choice<'p, 'v>>>,
    overloaded: Vec<Overload>,
}

pub fn plan<'v>(
    spec: &RouteSpec,
    health: &HealthSnapshot,
    vpc: &'v VpcState,
    settings: &Settings,
) -> Plan {
    let mut plan = Plan::default();
    let index = VpcIndex::new(vpc);
    let managed = managed_tables(spec, vpc, &index);
    let usable = usable_hosts(spec, health, vpc, &index);
    let ignored = |cidr: &IpNet| settings.ignore_routes.iter().any(|i| i.contains(cidr));

    let mut wanted = Vec::with_capacity(spec.len());
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
        let mut cidr = Wanted {
            cidr: *cidr,
            hosts,
            candidates: hosts.iter().filter_map(|h| usable.get(h)).collect(),
            current: Vec::with_capacity(managed.len()),
        };
        cidr.current = managed
            .iter()
            .map(|m| {
                let route = m.routes.get(&cidr.cidr).filter(|r| !r.blackhole)?;
                let interface = index.target(&route.target)?;
                cidr.candidate_of(interface, &usable).map(|c| c.host)
            })
            .collect();
        wanted.push(cidr);
    }

    // Tables share a spread: with AZ affinity those of one AZ, over the
    // hosts that AZ may use; without, all of them.
    let scope_of = |m: &Managed<'v>| m.spread(settings.az_affinity);
    let scopes: BTreeSet<Option<&str>> = managed.iter().map(scope_of).collect();
    let spreads: BTreeMap<Option<&str>, Spread> = scopes
        .into_iter()
        .map(|az| {
            let follows: Vec<bool> = managed.iter().map(|m| scope_of(m) == az).collect();
            (az, spread(&wanted, az, &follows, settings.rebalance))
        })
        .collect();

    for (i, cidr) in wanted.iter().enumerate() {
        if cidr.candidates.iter().all(|c| c.state == State::Failed) {
            plan.notice(
                cidr.cidr,
                "no usable eligible host (all failed or unknown); routes left as they are",
            );
            continue;
        }
        for managed in &managed {
            // Every scope falls back to any usable host, so there is one.
            if let Some(choice) = spreads[&scope_of(managed)].choices[i] {
                plan.route(cidr, managed, &choice, &index, &usable);
            }
        }
    }
    plan.delete_unwanted(spec, &managed, ignored);
    plan.warn_about_limits(&managed);
    plan.warn_about_source_dest_checks(&usable);
    plan.warn_about_overloads(spreads.values());
    plan
}

/// Tables associated with a subnet where a spec host lives.
fn managed_tables<'v>(
    spec: &RouteSpec,
    vpc: &'v VpcState,
    index: &VpcIndex<'v>,
) -> Vec<Managed<'v>> {
    let cluster_subnets: BTreeSet<&str> = spec
        .hosts()
        .iter()
        .filter_map(|h| index.at(h).map(|i| i.subnet.as_str()))
        .collect();
    vpc.route_tables
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
        .collect()
}

/// Spec hosts whose ENI exists and whose instance runs, with health and AZ.
fn usable_hosts<'v>(
    spec: &RouteSpec,
    health: &HealthSnapshot,
    vpc: &'v VpcState,
    index: &VpcIndex<'v>,
) -> HashMap<IpAddr, Candidate<'v>> {
    let subnet_az: HashMap<&str, &str> = vpc
        .subnets
        .iter()
        .map(|s| (s.id.as_str(), s.az.as_str()))
        .collect();
    spec.hosts()
        .iter()
        .filter_map(|host| {
            let interface = index.at(host)?;
            interface.running.then(|| Candidate {
                host: *host,
                interface,
                state: health.state(host),
                az: subnet_az.get(interface.subnet.as_str()).copied(),
            })
        })
        .map(|c| (c.host, c))
        .collect()
}

/// Choose a host for every wanted CIDR for the tables that `follow` (by
/// index) this spread: a healthy host in `az` when it has one, else
/// healthy before questionable (failed never); a current target kept; the
/// rest placed by rendezvous weight under the bound ceil(R/H).
fn spread<'p, 'v>(
    wanted: &[Wanted<'p, 'v>],
    az: Option<&str>,
    follows: &[bool],
    rebalance: bool,
) -> Spread<'p, 'v> {
    let eligible: Vec<Vec<&'p Candidate<'v>>> = wanted
        .iter()
        .map(|w| {
            let local = |c: &&&Candidate| c.state == State::Healthy && c.az == az;
            if az.is_some() && w.candidates.iter().any(|c| local(&c)) {
                return w.candidates.iter().filter(local).copied().collect();
            }
            let usable = |c: &&&Candidate| c.state != State::Failed;
            let best = w.candidates.iter().filter(usable).map(|c| c.state).min();
            (w.candidates.iter())
                .filter(|c| usable(c) && Some(c.state) == best)
                .copied()
                .collect()
        })
        .collect();
    let hosts: BTreeSet<IpAddr> = eligible.iter().flatten().map(|c| c.host).collect();
    let routed = eligible.iter().filter(|e| !e.is_empty()).count();
    let bound = routed.div_ceil(hosts.len().max(1));
    let mut load: HashMap<IpAddr, usize> = HashMap::default();
    let mut choices: Vec<Option<Choice>> = vec![None; wanted.len()];

    // Sticky: a CIDR stays on the current target most of the scope's
    // tables use, if that host is among its best.
    for (i, (w, eligible)) in wanted.iter().zip(&eligible).enumerate() {
        let mut uses: Vec<(IpAddr, usize)> = Vec::new();
        for (t, current) in w.current.iter().enumerate() {
            if let Some(host) = current
                && follows[t]
            {
                match uses.iter_mut().find(|(h, _)| h == host) {
                    Some((_, n)) => *n += 1,
                    None => uses.push((*host, 1)),
                }
            }
        }
        let kept = uses
            .iter()
            .filter_map(|(host, n)| Some((*n, *eligible.iter().find(|c| c.host == *host)?)))
            .max_by_key(|(n, c)| (*n, rendezvous(&w.cidr, &c.host)));
        if let Some((_, host)) = kept {
            choices[i] = Some(Choice {
                host,
                rebalanced_from: None,
            });
            *load.entry(host.host).or_default() += 1;
        }
    }

    // Hosts above the bound keep their routes unless asked; then each
    // keeps its `bound` CIDRs of highest weight and the rest are placed
    // again: the fewest moves that restore the bound.
    let mut overloaded: Vec<Overload> = load
        .iter()
        .filter(|(_, load)| **load > bound)
        .map(|(host, load)| Overload {
            host: *host,
            load: *load,
            bound,
        })
        .collect();
    overloaded.sort_by_key(|o| o.host);
    let mut released: Vec<Option<Overload>> = vec![None; wanted.len()];
    if rebalance {
        for over in overloaded.drain(..) {
            let mut carried: Vec<usize> = (0..wanted.len())
                .filter(|i| choices[*i].is_some_and(|c| c.host.host == over.host))
                .collect();
            carried.sort_by_key(|i| Reverse(rendezvous(&wanted[*i].cidr, &over.host)));
            for i in carried.split_off(bound) {
                choices[i] = None;
                released[i] = Some(over);
            }
            load.insert(over.host, bound);
        }
    }

    // The rest, in CIDR order: the highest-weight host below the bound,
    // else (all its hosts are full) the least loaded.
    let mut placed = Vec::new();
    for (i, eligible) in eligible.iter().enumerate() {
        if choices[i].is_some() || eligible.is_empty() {
            continue;
        }
        placed.push(i);
        let cidr = &wanted[i].cidr;
        let load_of = |c: &Candidate| load.get(&c.host).copied().unwrap_or(0);
        let host = eligible
            .iter()
            .filter(|c| load_of(c) < bound)
            .max_by_key(|c| rendezvous(cidr, &c.host))
            .or_else(|| {
                eligible
                    .iter()
                    .min_by_key(|c| (load_of(c), Reverse(rendezvous(cidr, &c.host))))
            })
            .copied()
            .expect("eligible is not empty");
        *load.entry(host.host).or_default() += 1;
        choices[i] = Some(Choice {
            host,
            rebalanced_from: released[i],
        });
    }
    relieve(&eligible, &mut choices, &mut load, bound, &placed);
    Spread {
        choices,
        overloaded,
    }
}

/// Placing in CIDR order can leave a host above the bound while others
/// have room, when host lists differ per CIDR. Move CIDRs `placed` in this
/// pass (never a kept one) along a chain of hosts, each CIDR to another of
/// its own, until a host with room takes one: the bound then holds
/// wherever the host lists allow it.
fn relieve<'p, 'v>(
    eligible: &[Vec<&'p Candidate<'v>>],
    choices: &mut [Option<Choice<'p, 'v>>],
    load: &mut HashMap<IpAddr, usize>,
    bound: usize,
    placed: &[usize],
) {
    let mut on: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    for &i in placed {
        let host = choices[i].expect("placed").host.host;
        on.entry(host).or_default().push(i);
    }
    let full: Vec<IpAddr> = (on.keys())
        .filter(|h| load.get(*h).is_some_and(|l| *l > bound))
        .copied()
        .collect();
    for start in full {
        while load[&start] > bound {
            // Breadth first over hosts: `via[y] = (i, x)`: CIDR i may go
            // from x to y.
            let mut via: HashMap<IpAddr, (usize, IpAddr)> = HashMap::default();
            let mut queue = std::collections::VecDeque::from([start]);
            let mut room = None;
            'search: while let Some(x) = queue.pop_front() {
                for &i in on.get(&x).into_iter().flatten() {
                    for candidate in &eligible[i] {
                        let y = candidate.host;
                        if y == start || via.contains_key(&y) {
                            continue;
                        }
                        via.insert(y, (i, x));
                        if load.get(&y).copied().unwrap_or(0) < bound {
                            room = Some(y);
                            break 'search;
                        }
                        queue.push_back(y);
                    }
                }
            }
            let Some(mut to) = room else { break };
            *load.entry(to).or_default() += 1;
            *load.get_mut(&start).expect("loaded") -= 1;
            while to != start {
                let (i, from) = via[&to];
                let host = *eligible[i].iter().find(|c| c.host == to).expect("eligible");
                choices[i] = choices[i].map(|choice| Choice { host, ..choice });
                on.get_mut(&from).expect("placed").retain(|j| *j != i);
                on.entry(to).or_default().push(i);
                to = from;
            }
        }
    }
}

/// Why a route must point elsewhere, and how urgent that is; `None` when
/// it may stay.
fn replacement(
    route: &Route,
    pointed: Option<&Interface>,
    current: Option<&Candidate>,
    choice: &Choice,
) -> Option<(String, Cause)> {
    let chosen = choice.host;
    let why = match pointed {
        _ if route.blackhole => ("its target is gone (blackhole)".to_string(), Cause::Repair),
        None => ("its target no longer exists".to_string(), Cause::Repair),
        Some(i) if !i.running => (format!("{} is not running", i.id), Cause::Repair),
        Some(i) if i.id == chosen.interface.id => return None,
        Some(i) => match current {
            None => (
                format!("{} is not an eligible host for this CIDR", i.id),
                Cause::Repair,
            ),
            Some(c) if c.state == State::Failed => (format!("{} failed", c.host), Cause::Failover),
            Some(c) if c.state == State::Questionable && chosen.state == State::Healthy => {
                (format!("{} is questionable", c.host), Cause::Failover)
            }
            Some(c) => match choice.rebalanced_from {
                Some(over) if over.host == c.host => (
                    format!(
                        "rebalancing: {} carries {} CIDRs, above the bound of {}",
                        c.host, over.load, over.bound
                    ),
                    Cause::Rebalance,
                ),
                _ if c.state == chosen.state => (
                    format!("{} differs from the host chosen for every table", c.host),
                    Cause::Repair,
                ),
                _ => return None,
            },
        },
    };
    Some(why)
}

impl Plan {
    /// The operation, if any, that points `managed`'s route for `cidr` at
    /// the chosen host.
    fn route<'p, 'v>(
        &mut self,
        cidr: &Wanted<'p, 'v>,
        managed: &Managed<'v>,
        choice: &Choice<'p, 'v>,
        index: &VpcIndex<'v>,
        usable: &'p HashMap<IpAddr, Candidate<'v>>,
    ) {
        let chosen = choice.host;
        let table = managed.table;
        let target = Some((chosen.interface.id.clone(), chosen.host));
        let Some(route) = managed.routes.get(&cidr.cidr).copied() else {
            let reason = format!("missing; pointing at {}", chosen.host);
            self.push(
                Action::Create,
                table,
                cidr.cidr,
                target,
                reason,
                Cause::Repair,
            );
            return;
        };
        if let Target::Other(other) = &route.target {
            let message = format!("{} routes it to {other}, not ours to change", table.id);
            self.notice(cidr.cidr, &message);
            return;
        }
        let pointed = index.target(&route.target);
        let current = pointed.and_then(|i| cidr.candidate_of(i, usable));
        if let Some((why, cause)) = replacement(route, pointed, current, choice) {
            let reason = format!("{why}; moving to {}", chosen.host);
            self.push(Action::Replace, table, cidr.cidr, target, reason, cause);
        }
    }

    /// Managed routes to interfaces or instances whose CIDR the spec lacks.
    fn delete_unwanted(
        &mut self,
        spec: &RouteSpec,
        managed: &[Managed],
        ignored: impl Fn(&IpNet) -> bool,
    ) {
        for Managed { table, .. } in managed {
            for route in &table.routes {
                let ours = matches!(route.target, Target::Interface(_) | Target::Instance(_));
                if ours
                    && !spec.routes().contains_key(&route.destination)
                    && !ignored(&route.destination)
                {
                    let reason = "not in the route spec".to_string();
                    self.push(
                        Action::Delete,
                        table,
                        route.destination,
                        None,
                        reason,
                        Cause::Repair,
                    );
                }
            }
        }
    }

    /// Tables that will be near or over EC2's route limits once the plan is
    /// carried out (`RouteLimitExceeded` otherwise comes as a surprise).
    fn warn_about_limits(&mut self, managed: &[Managed]) {
        for Managed { table, .. } in managed {
            let change = |action: Action| {
                self.operations
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
            self.notice(&table.id, &message);
        }
    }

    /// Eligible hosts that cannot route for others.
    fn warn_about_source_dest_checks(&mut self, usable: &HashMap<IpAddr, Candidate>) {
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
            self.notice(candidate.host, &message);
            self.source_dest_checked
                .push(candidate.interface.id.clone());
        }
    }

    /// Hosts that keep more CIDRs than the bound (after recoveries: routes
    /// do not move back on their own).
    fn warn_about_overloads<'s>(&mut self, spreads: impl Iterator<Item = &'s Spread<'s, 's>>) {
        let mut overloaded: Vec<Overload> = spreads
            .into_iter()
            .flat_map(|s| s.overloaded.iter().copied())
            .collect();
        overloaded.sort_by_key(|o| (o.host, Reverse(o.load)));
        overloaded.dedup_by_key(|o| o.host);
        for over in overloaded {
            let message = format!(
                "carries {} CIDRs, above the balanced bound of {}; routes stay where they work (POST /rebalance or --rebalance moves the fewest)",
                over.load, over.bound
            );
            self.notice(over.host, &message);
        }
    }

    fn push(
        &mut self,
        action: Action,
        table: &RouteTable,
        destination: IpNet,
        target: Option<(String, IpAddr)>,
        reason: String,
        cause: Cause,
    ) {
        self.operations.push(Operation {
            action,
            table: table.id.clone(),
            destination,
            target,
            reason,
            cause,
        });
    }

    fn notice(&mut self, subject: impl ToString, message: &str) {
        self.notices.push(Notice {
            subject: subject.to_string(),
            message: message.into(),
        });
    }
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
