//! The VPC as the planner reads it: lookups built once per plan, the
//! managed tables, the spec hosts that exist and run, and the CIDRs to
//! route with where their routes point now.

use ipnet::IpNet;
use rustc_hash::FxHashMap as HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::Settings;
use crate::cloud::claims;
use crate::cloud::model::{Interface, Route, RouteTable, Target, VpcState};
use crate::health::{HealthSnapshot, State};
use crate::selector::{Selected, TableSelector};
use crate::spec::{Fallback, Preference, RouteSpec};
use std::time::{Duration, Instant};

/// Lookups over one observed VPC, built once so that whoever reads it
/// (the planner, the views) stays linear in its size; the one home of "an
/// instance target means the instance's first interface (its primary ENI)".
pub struct VpcIndex<'v> {
    by_ip: HashMap<IpAddr, &'v Interface>,
    by_id: HashMap<&'v str, &'v Interface>,
    by_instance: HashMap<&'v str, &'v Interface>,
}

impl<'v> VpcIndex<'v> {
    pub fn new(vpc: &'v VpcState) -> Self {
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

    /// The interface that has this address.
    pub fn at(&self, ip: &IpAddr) -> Option<&'v Interface> {
        self.by_ip.get(ip).copied()
    }

    /// The interface a route target points at.
    pub fn target(&self, target: &Target) -> Option<&'v Interface> {
        match target {
            Target::Interface(eni) => self.by_id.get(eni.as_str()).copied(),
            Target::Instance(instance) => self.by_instance.get(instance.as_str()).copied(),
            Target::Other(_) => None,
        }
    }
}

/// What the route rules read of the world beside the tables: the VPC's
/// lookups, the usable spec hosts, and health (who has been probed).
pub(super) struct Facts<'p, 'v> {
    pub(super) index: &'p VpcIndex<'v>,
    pub(super) usable: &'p HashMap<IpAddr, Candidate<'v>>,
    pub(super) health: &'p HealthSnapshot,
    pub(super) settings: &'p Settings,
}

/// A spec host that exists in the VPC, with what the choice needs.
pub(super) struct Candidate<'v> {
    pub(super) host: IpAddr,
    pub(super) interface: &'v Interface,
    pub(super) state: State,
    /// Drained on purpose: a target only while no better host is usable.
    pub(super) drained: bool,
    pub(super) az: Option<&'v str>,
    /// When it came back healthy after failing, if it did.
    pub(super) recovered: Option<Instant>,
}

impl Candidate<'_> {
    /// How good a target it is, best lowest: healthy, healthy but drained,
    /// questionable, questionable and drained; a failed host never is one.
    pub(super) fn rank(&self) -> Option<(State, bool)> {
        (self.state != State::Failed).then_some((self.state, self.drained))
    }

    /// When it will have been healthy for `hold` since it came back, if
    /// that is still to come at `now`.
    pub(super) fn held_until(&self, hold: Duration, now: Instant) -> Option<Instant> {
        self.recovered.map(|at| at + hold).filter(|end| *end > now)
    }
}

/// A managed route table with its routes by destination.
pub(super) struct Managed<'v> {
    pub(super) table: &'v RouteTable,
    /// Why it is managed.
    pub(super) why: Selected,
    /// Whether it takes every CIDR without tables of its own (else only
    /// those whose tables name it).
    pub(super) for_every_cidr: bool,
    /// The AZ of the subnets it serves, if they share one (the main table
    /// and tables spanning AZs prefer none).
    pub(super) az: Option<&'v str>,
    pub(super) routes: HashMap<IpNet, &'v Route>,
    /// In chosen tables: the CIDRs this daemon owns here, and those
    /// another owner claims (with the owner).
    pub(super) ours: BTreeSet<IpNet>,
    pub(super) theirs: BTreeMap<IpNet, &'v str>,
}

impl<'v> Managed<'v> {
    /// Whether a CIDR with these tables of its own (or none) goes in it.
    pub(super) fn takes(&self, tables: Option<&[TableSelector]>) -> bool {
        match tables {
            Some(selectors) => selectors.iter().any(|s| s.matches(self.table)),
            None => self.for_every_cidr,
        }
    }

    /// Whether a route to a gateway here is this daemon's: one to the
    /// CIDR's fallback, or (in a chosen table) one it claims.
    pub(super) fn owns_gateway_route(&self, route: &Route, fallback: Option<&Fallback>) -> bool {
        let Target::Other(gateway) = &route.target else {
            return false;
        };
        route.origin.is_create_route()
            && (fallback.and_then(Fallback::gateway) == Some(gateway.as_str())
                || (self.why != Selected::RouterSubnet && self.ours.contains(&route.destination)))
    }

    /// Which spread the table follows: its AZ's with affinity, else the
    /// one of all tables (`None`).
    pub(super) fn scope(&self, settings: &Settings) -> Option<&'v str> {
        self.az.filter(|_| settings.az_affinity)
    }
}

/// A spec CIDR to route, with the hosts it may use and where its routes
/// point now.
pub(super) struct Wanted<'p, 'v> {
    pub(super) cidr: IpNet,
    /// Its eligible hosts, sorted (the spec keeps host lists sorted).
    pub(super) hosts: &'p [IpAddr],
    /// The eligible hosts that exist and run.
    pub(super) candidates: Vec<&'p Candidate<'v>>,
    /// The route tables it goes in, if the spec says (else every table
    /// managed for all CIDRs).
    pub(super) tables: Option<&'p [TableSelector]>,
    /// Per managed table: the usable eligible host its route points at
    /// (none in a table it does not go in).
    pub(super) current: Vec<Option<IpAddr>>,
    /// The host the operator asked this CIDR off: ranked like a drained one.
    pub(super) set_aside: Option<IpAddr>,
    /// Hosts with a tier or weight of their own.
    pub(super) preferences: Option<&'p BTreeMap<IpAddr, Preference>>,
    /// Where its routes go while no host is eligible, if anywhere.
    pub(super) fallback: Option<&'p Fallback>,
}

impl<'p, 'v> Wanted<'p, 'v> {
    /// The usable eligible host an interface carries, if any (host lists
    /// are sorted, so eligibility is a binary search).
    pub(super) fn candidate_of(
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

impl Wanted<'_, '_> {
    /// How good a target `candidate` is for this CIDR (see
    /// `Candidate::rank`; one it was asked off counts as drained), then
    /// its tier.
    pub(super) fn rank(&self, candidate: &Candidate) -> Option<(State, bool, u32)> {
        let (state, drained) = candidate.rank()?;
        let drained = drained || self.set_aside == Some(candidate.host);
        Some((state, drained, self.preference(&candidate.host).tier))
    }

    /// A host's tier and weight for this CIDR.
    pub(super) fn preference(&self, host: &IpAddr) -> Preference {
        (self.preferences.and_then(|p| p.get(host)))
            .copied()
            .unwrap_or_default()
    }

    /// Whether a host of it exists and runs but has not been probed yet:
    /// nothing is known enough to fall back.
    pub(super) fn awaits_a_first_probe(&self, index: &VpcIndex, health: &HealthSnapshot) -> bool {
        self.hosts
            .iter()
            .any(|host| index.at(host).is_some_and(|i| i.running) && !health.probed(host))
    }

    /// The eligible host a live route points at that has not been probed
    /// yet, if any: such a route waits for the probe.
    pub(super) fn awaiting_probe(
        &self,
        route: &Route,
        interface: &Interface,
        health: &HealthSnapshot,
    ) -> Option<IpAddr> {
        if route.blackhole || !interface.running {
            return None;
        }
        (interface.ips.iter().copied()).find(|ip| {
            self.hosts.binary_search(ip).is_ok()
                && !health.probed(ip)
                && !health.failed.contains(ip)
        })
    }
}

/// The tables to manage and why: those the settings select (by id, tag,
/// or the main table); with no selection, the old rule: tables associated
/// with a subnet where a spec host lives.
pub(super) fn managed_tables<'v>(
    spec: &RouteSpec,
    vpc: &'v VpcState,
    index: &VpcIndex<'v>,
    settings: &Settings,
) -> Vec<Managed<'v>> {
    let router_subnets: BTreeSet<&str> = spec
        .hosts()
        .iter()
        .filter_map(|h| index.at(h).map(|i| i.subnet.as_str()))
        .collect();
    // Tables for every CIDR without tables of its own: the settings' choice,
    // or the old rule.
    let for_all = |table: &RouteTable| -> Option<Selected> {
        if settings.tables.is_empty() {
            let serves_a_router =
                (table.subnets.iter()).any(|s| router_subnets.contains(s.as_str()));
            return serves_a_router.then_some(Selected::RouterSubnet);
        }
        let selector = settings.tables.iter().find(|s| s.matches(table))?;
        Some(Selected::By(selector.clone()))
    };
    // Or only for the CIDRs whose own tables name it.
    let for_some = |table: &RouteTable| {
        let selector = spec.selectors().find(|s| s.matches(table))?;
        Some(Selected::By(selector.clone()))
    };
    vpc.route_tables
        .iter()
        .filter_map(|table| {
            let (why, for_every_cidr) = match for_all(table) {
                Some(why) => (why, true),
                None => (for_some(table)?, false),
            };
            let mut owners = match why {
                Selected::RouterSubnet => BTreeMap::new(),
                Selected::By(_) => claims::owners(&table.tags),
            };
            let ours = owners.remove(settings.owner.as_str()).unwrap_or_default();
            let theirs = (owners.into_iter())
                .flat_map(|(owner, cidrs)| cidrs.into_iter().map(move |c| (c, owner)))
                .collect();
            Some(Managed {
                table,
                why,
                for_every_cidr,
                az: one_az(table, vpc),
                routes: table.routes.iter().map(|r| (r.destination, r)).collect(),
                ours,
                theirs,
            })
        })
        .collect()
}

/// The AZ every subnet of the table is in; none for a table without
/// explicit subnets (the main table) or spanning AZs.
fn one_az<'v>(table: &RouteTable, vpc: &'v VpcState) -> Option<&'v str> {
    let mut azs = table.subnets.iter().filter_map(|s| vpc.az_of_subnet(s));
    let first = azs.next()?;
    azs.all(|az| az == first).then_some(first)
}

/// Spec hosts whose ENI exists, whose instance runs and that have been
/// probed (no route goes to a host before a probe said how it is), with
/// health and AZ.
pub(super) fn usable_hosts<'v>(
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
            (interface.running && health.probed(host)).then(|| Candidate {
                host: *host,
                interface,
                state: health.state(host),
                drained: health.drained.contains_key(host) || interface.maintenance.is_some(),
                az: subnet_az.get(interface.subnet.as_str()).copied(),
                recovered: health.recovered.get(host).copied(),
            })
        })
        .map(|c| (c.host, c))
        .collect()
}
