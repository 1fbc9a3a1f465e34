//! Where each CIDR goes, per scope of tables (an AZ's with affinity, else
//! all): balanced and sticky placement by rendezvous weight under the
//! bound ceil(R*w/W) (ceil(R/H) with equal weights), tiers, the operator's
//! rebalancing, and the relief of hosts left above the bound.

use ipnet::IpNet;
use rustc_hash::FxHashMap as HashMap;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use super::Settings;
use super::index::{Candidate, Managed, Wanted};
use crate::health::State;

/// A host above the balanced bound, with how far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Overload {
    pub(super) host: IpAddr,
    pub(super) load: usize,
    pub(super) bound: usize,
}

/// Where a CIDR's routes go in one scope.
#[derive(Clone, Copy)]
pub(super) struct Choice<'p, 'v> {
    pub(super) host: &'p Candidate<'v>,
    /// It leaves this overloaded host on the operator's request.
    pub(super) rebalanced_from: Option<Overload>,
}

/// One scope's choice for every wanted CIDR (parallel to them), and the
/// hosts left above the bound because nothing asked to move their routes.
pub(super) struct Spread<'p, 'v> {
    pub(super) choices: Vec<Option<Choice<'p, 'v>>>,
    pub(super) overloaded: Vec<Overload>,
    /// When a CIDR kept on a later tier may return to an earlier one.
    pub(super) again_at: Option<Instant>,
}

/// One spread per scope: tables share a spread, with AZ affinity those of
/// one AZ over the hosts that AZ may use; without, all of them.
pub(super) fn spreads<'p, 'v>(
    wanted: &[Wanted<'p, 'v>],
    managed: &[Managed<'v>],
    settings: &Settings,
) -> BTreeMap<Option<&'v str>, Spread<'p, 'v>> {
    let scopes: BTreeSet<Option<&str>> = managed.iter().map(|m| m.scope(settings)).collect();
    scopes
        .into_iter()
        .map(|az| {
            let follows: Vec<bool> = managed.iter().map(|m| m.scope(settings) == az).collect();
            (az, spread(wanted, az, &follows, settings))
        })
        .collect()
}

/// Choose a host for every wanted CIDR for the tables that `follow` (by
/// index) this spread: a healthy host in `az` when it has one, else
/// healthy before questionable (failed never), the first tier; a current
/// target kept; the rest placed by rendezvous weight under the bound.
fn spread<'p, 'v>(
    wanted: &[Wanted<'p, 'v>],
    az: Option<&str>,
    follows: &[bool],
    settings: &Settings,
) -> Spread<'p, 'v> {
    let ranked = ranked(wanted, az);
    let eligible: Vec<Vec<&Candidate>> = (wanted.iter().zip(&ranked))
        .map(|(w, ranked)| first_tier(w, ranked))
        .collect();
    let (keepable, again_at) = keepable(wanted, &ranked, &eligible, settings);
    let bounds = Bounds::new(wanted, &eligible);
    let mut load: HashMap<IpAddr, usize> = HashMap::default();
    let mut choices = keep_current(wanted, &keepable, follows, &mut load);
    // Hosts above the bound keep their routes unless asked.
    let mut overloaded: Vec<Overload> = load
        .iter()
        .filter_map(|(host, load)| {
            let bound = bounds.of(host)?;
            (*load > bound).then_some(Overload {
                host: *host,
                load: *load,
                bound,
            })
        })
        .collect();
    overloaded.sort_by_key(|o| o.host);
    let mut released: Vec<Option<Overload>> = vec![None; wanted.len()];
    if settings.rebalance {
        for over in overloaded.drain(..) {
            release(wanted, over, &mut choices, &mut released);
            load.insert(over.host, over.bound);
        }
    }
    let placed = place_rest(
        wanted,
        &eligible,
        &released,
        &mut choices,
        &mut load,
        &bounds,
    );
    relieve(&eligible, &mut choices, &mut load, &bounds, &placed);
    Spread {
        choices,
        overloaded,
        again_at,
    }
}

/// Each host's balanced bound in a scope: ceil(R*w/W) for R CIDRs routed
/// and hosts of weights w summing to W (ceil(R/H) when weights are equal).
/// A host's weight is the largest it has for any CIDR it is eligible for.
struct Bounds {
    routed: u64,
    total: u64,
    weights: HashMap<IpAddr, u32>,
}

impl Bounds {
    fn new(wanted: &[Wanted], eligible: &[Vec<&Candidate>]) -> Self {
        let mut weights: HashMap<IpAddr, u32> = HashMap::default();
        for (w, eligible) in wanted.iter().zip(eligible) {
            for c in eligible {
                let weight = weights.entry(c.host).or_default();
                *weight = (*weight).max(w.preference(&c.host).weight);
            }
        }
        Self {
            routed: eligible.iter().filter(|e| !e.is_empty()).count() as u64,
            total: weights.values().map(|w| u64::from(*w)).sum(),
            weights,
        }
    }

    /// The bound of a host eligible for some CIDR of the scope.
    fn of(&self, host: &IpAddr) -> Option<usize> {
        let weight = u64::from(*self.weights.get(host)?);
        Some((self.routed * weight).div_ceil(self.total.max(1)) as usize)
    }

    fn has_room(&self, host: &IpAddr, load: usize) -> bool {
        self.of(host).is_some_and(|bound| load < bound)
    }
}

/// Per wanted CIDR, the hosts it may use in this scope, of any tier: a
/// healthy host in `az` that is not drained when it has one, else the
/// best-ranked usable hosts (`Candidate::rank`: a drained host only when
/// nothing better is usable; failed never). In address order, so that no
/// choice depends on how a list was given.
fn ranked<'p, 'v>(wanted: &[Wanted<'p, 'v>], az: Option<&str>) -> Vec<Vec<&'p Candidate<'v>>> {
    wanted
        .iter()
        .map(|w| {
            let fit = |c: &Candidate| w.rank(c).map(|(state, drained, _)| (state, drained));
            let local = |c: &&&Candidate| fit(c) == Some((State::Healthy, false)) && c.az == az;
            let mut ranked: Vec<&Candidate> =
                if az.is_some() && w.candidates.iter().any(|c| local(&c)) {
                    w.candidates.iter().filter(local).copied().collect()
                } else {
                    let best = w.candidates.iter().filter_map(|c| fit(c)).min();
                    (w.candidates.iter())
                        .filter(|c| best.is_some() && fit(c) == best)
                        .copied()
                        .collect()
                };
            // Already sorted when they come from the spec: a linear check.
            ranked.sort_by_key(|c| c.host);
            ranked
        })
        .collect()
}

/// The hosts of the first tier among `ranked`: those new routes go to.
fn first_tier<'p, 'v>(w: &Wanted, ranked: &[&'p Candidate<'v>]) -> Vec<&'p Candidate<'v>> {
    let tier = |c: &Candidate| w.preference(&c.host).tier;
    let first = ranked.iter().map(|c| tier(c)).min();
    (ranked.iter())
        .filter(|c| Some(tier(c)) == first)
        .copied()
        .collect()
}

/// Per wanted CIDR, the hosts a current route may stay on: the eligible
/// ones, and those of later tiers while the tier failback waits (`never`,
/// or every first-tier host came back less than `after` ago; when the
/// first of them will have waited enough is also returned). On request
/// (rebalance) only the eligible ones.
fn keepable<'p, 'v>(
    wanted: &[Wanted<'p, 'v>],
    ranked: &[Vec<&'p Candidate<'v>>],
    eligible: &[Vec<&'p Candidate<'v>>],
    settings: &Settings,
) -> (Vec<Vec<&'p Candidate<'v>>>, Option<Instant>) {
    let mut again_at: Option<Instant> = None;
    let keepable = (wanted.iter().zip(ranked).zip(eligible))
        .map(|((w, ranked), eligible)| {
            if settings.rebalance || ranked.len() == eligible.len() || w.preferences.is_none() {
                return eligible.clone();
            }
            let waits = match settings.tier_failback {
                None => true,
                Some(after) => {
                    let ends: Option<Vec<Instant>> = (eligible.iter())
                        .map(|c| c.held_until(after, settings.now))
                        .collect();
                    let first_end = ends.and_then(|ends| ends.into_iter().min());
                    if let Some(end) = first_end {
                        again_at = Some(again_at.map_or(end, |t| t.min(end)));
                    }
                    first_end.is_some()
                }
            };
            match waits {
                true => ranked.clone(),
                false => eligible.clone(),
            }
        })
        .collect();
    (keepable, again_at)
}

/// Sticky: a CIDR stays on the current target most of the scope's tables
/// use, if that host is among its eligible ones.
fn keep_current<'p, 'v>(
    wanted: &[Wanted<'p, 'v>],
    keepable: &[Vec<&'p Candidate<'v>>],
    follows: &[bool],
    load: &mut HashMap<IpAddr, usize>,
) -> Vec<Option<Choice<'p, 'v>>> {
    let mut choices: Vec<Option<Choice>> = vec![None; wanted.len()];
    for (i, (w, keepable)) in wanted.iter().zip(keepable).enumerate() {
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
            .filter_map(|(host, n)| Some((*n, *keepable.iter().find(|c| c.host == *host)?)))
            .max_by_key(|(n, c)| (*n, rendezvous(&w.cidr, &c.host)));
        if let Some((_, host)) = kept {
            choices[i] = Some(Choice {
                host,
                rebalanced_from: None,
            });
            *load.entry(host.host).or_default() += 1;
        }
    }
    choices
}

/// On the operator's request, an overloaded host keeps its `bound` CIDRs
/// of highest weight and releases the rest to be placed again: the fewest
/// moves that restore the bound.
fn release<'p, 'v>(
    wanted: &[Wanted<'p, 'v>],
    over: Overload,
    choices: &mut [Option<Choice<'p, 'v>>],
    released: &mut [Option<Overload>],
) {
    let mut carried: Vec<usize> = (0..wanted.len())
        .filter(|i| choices[*i].is_some_and(|c| c.host.host == over.host))
        .collect();
    carried.sort_by_key(|i| Reverse(rendezvous(&wanted[*i].cidr, &over.host)));
    for i in carried.split_off(over.bound) {
        choices[i] = None;
        released[i] = Some(over);
    }
}

/// The CIDRs without a choice, in CIDR order: the host of highest
/// (weighted) rendezvous score below its bound, else (all its hosts are
/// full) the least loaded. Which were placed.
fn place_rest<'p, 'v>(
    wanted: &[Wanted<'p, 'v>],
    eligible: &[Vec<&'p Candidate<'v>>],
    released: &[Option<Overload>],
    choices: &mut [Option<Choice<'p, 'v>>],
    load: &mut HashMap<IpAddr, usize>,
    bounds: &Bounds,
) -> Vec<usize> {
    let mut placed = Vec::new();
    for (i, eligible) in eligible.iter().enumerate() {
        if choices[i].is_some() || eligible.is_empty() {
            continue;
        }
        placed.push(i);
        let w = &wanted[i];
        let load_of = |c: &Candidate| load.get(&c.host).copied().unwrap_or(0);
        let score = |c: &Candidate| {
            let hash = rendezvous(&w.cidr, &c.host);
            (weighted(hash, w.preference(&c.host).weight), hash)
        };
        let cidr = &w.cidr;
        let host = eligible
            .iter()
            .filter(|c| bounds.has_room(&c.host, load_of(c)))
            .map(|c| (score(c), c))
            .max_by(|((a, ah), _), ((b, bh), _)| a.total_cmp(b).then(ah.cmp(bh)))
            .map(|(_, c)| c)
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
    placed
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
    bounds: &Bounds,
    placed: &[usize],
) {
    let over = |host: &IpAddr, load: usize| bounds.of(host).is_some_and(|b| load > b);
    let mut on: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    for &i in placed {
        let host = choices[i].expect("placed").host.host;
        on.entry(host).or_default().push(i);
    }
    let full: Vec<IpAddr> = (on.keys())
        .filter(|h| load.get(*h).is_some_and(|l| over(h, *l)))
        .copied()
        .collect();
    for start in full {
        while over(&start, load[&start]) {
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
                        if bounds.has_room(&y, load.get(&y).copied().unwrap_or(0)) {
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

/// A rendezvous hash as a score for a host of `weight`: `weight / -ln(u)`
/// for the hash as `u` in (0, 1), so that a host of weight 4 scores
/// highest for about four times the CIDRs (weighted rendezvous hashing).
/// With equal weights it orders hosts as the hash does.
fn weighted(hash: u64, weight: u32) -> f64 {
    let u = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -u.ln()
}

/// The rendezvous weight of `host` for `cidr`: each part hashed (FNV-1a
/// over its octets) and fully mixed (murmur3's fmix64) on its own, then
/// combined and mixed again, so the maximum over hosts spreads CIDRs evenly.
/// No allocation; stable across runs, machines and Rust versions.
pub(super) fn rendezvous(cidr: &IpNet, host: &IpAddr) -> u64 {
    pub(super) fn fnv(bytes: impl IntoIterator<Item = u8>) -> u64 {
        bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }
    pub(super) fn fmix(mut h: u64) -> u64 {
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    pub(super) fn octets(ip: IpAddr) -> ([u8; 16], usize) {
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
    use super::*;
    use crate::cloud::model::Interface;
    use crate::spec::Preference;
    use proptest::prelude::*;

    /// 1,000 CIDRs over 100 similar hosts: every host gets some, none more
    /// than twice its share (a weak hash left 76 hosts unused).
    #[test]
    fn rendezvous_spreads_cidrs_evenly() {
        let hosts: Vec<IpAddr> = (0..100)
            .map(|h| format!("10.0.0.{}", 10 + h).parse().unwrap())
            .collect();
        let mut load = BTreeMap::new();
        for c in 0..1000 {
            let cidr: IpNet = format!("10.{}.{}.0/24", 100 + c / 256, c % 256)
                .parse()
                .unwrap();
            let best = hosts.iter().max_by_key(|h| rendezvous(&cidr, h)).unwrap();
            *load.entry(*best).or_insert(0) += 1;
        }
        assert_eq!(load.len(), 100);
        assert!(*load.values().max().unwrap() <= 20, "{load:?}");
    }

    /// Weights share the CIDRs out in proportion, exactly when the bounds
    /// add up to the CIDRs: weights 4 and 1 over 50 CIDRs give 40 and 10,
    /// weights 1, 2, 3 over 60 give 10, 20, 30.
    #[test]
    fn weights_share_cidrs_in_proportion() {
        for (weights, expected) in [
            (vec![4, 1], vec![40, 10]),
            (vec![1, 2, 3], vec![10, 20, 30]),
        ] {
            let cidrs: usize = expected.iter().sum();
            let case = Case {
                hosts: vec![(State::Healthy, true, false); weights.len()],
                preferences: weights.iter().map(|w| (1, *w)).collect(),
                cidrs: vec![((0..weights.len()).collect(), None); cidrs],
                in_az: false,
                rebalance: false,
            };
            let loads = loads(&run(&case, false).chosen);
            assert_eq!(
                loads.values().copied().collect::<Vec<_>>(),
                expected,
                "{weights:?}"
            );
        }
    }

    /// A scope's hosts and CIDRs, generated: each host's health and AZ,
    /// each CIDR's host list (by index; never empty) and current target.
    #[derive(Debug, Clone)]
    struct Case {
        /// Each host's health, whether it is in the scope's AZ, whether
        /// it is drained.
        hosts: Vec<(State, bool, bool)>,
        /// Each host's tier and weight (the same for every CIDR).
        preferences: Vec<(u32, u32)>,
        cidrs: Vec<(Vec<usize>, Option<usize>)>,
        in_az: bool,
        rebalance: bool,
    }

    fn case(same_lists: bool) -> impl Strategy<Value = Case> {
        let state = prop_oneof![
            6 => Just(State::Healthy),
            1 => Just(State::Questionable),
            2 => Just(State::Failed),
        ];
        (
            prop::collection::vec((state, any::<bool>(), prop::bool::weighted(0.2)), 1..7),
            1..40usize,
            any::<bool>(),
        )
            .prop_flat_map(move |(hosts, n, preferred)| {
                let h = hosts.len();
                let list = prop::collection::btree_set(0..h, 1..=h)
                    .prop_map(|set| set.into_iter().collect::<Vec<_>>());
                let lists = if same_lists {
                    list.prop_map(move |l| vec![l; n]).boxed()
                } else {
                    prop::collection::vec(list, n).boxed()
                };
                let current = prop::collection::vec(prop::option::of(0..h), n);
                let preference = match preferred {
                    true => (1..=2u32, 1..=4u32).boxed(),
                    false => Just((1, 1)).boxed(),
                };
                let preferences = prop::collection::vec(preference, h);
                (lists, current, any::<bool>(), any::<bool>(), preferences).prop_map(
                    move |(lists, current, in_az, rebalance, preferences)| Case {
                        hosts: hosts.clone(),
                        preferences,
                        cidrs: lists.into_iter().zip(current).collect(),
                        in_az,
                        rebalance,
                    },
                )
            })
    }

    fn ip_of(h: usize) -> IpAddr {
        IpAddr::from([10, 0, 0, 10 + h as u8])
    }

    /// What `run` found: each CIDR's choice by host index, the hosts
    /// eligible for new routes, and those its current route may stay on
    /// (eligible ones and, the tier failback being `never`, later tiers'),
    /// by [`expected_eligible`].
    struct Outcome {
        chosen: Vec<Option<usize>>,
        eligible: Vec<Vec<usize>>,
        keepable: Vec<Vec<usize>>,
    }

    /// Runs `spread` over the case (one table, which follows this spread)
    /// with the host lists in order or reversed.
    fn run(case: &Case, shuffle: bool) -> Outcome {
        let interfaces: Vec<Interface> = (0..case.hosts.len())
            .map(|h| Interface {
                id: format!("eni-{h}"),
                instance: None,
                subnet: "subnet".into(),
                ips: vec![ip_of(h)],
                running: true,
                source_dest_check: false,
                instance_state: None,
                maintenance: None,
            })
            .collect();
        let candidates: Vec<Candidate> = case
            .hosts
            .iter()
            .enumerate()
            .map(|(h, (state, local, drained))| Candidate {
                host: ip_of(h),
                interface: &interfaces[h],
                state: *state,
                drained: *drained,
                az: Some(if *local { "local" } else { "other" }),
                recovered: None,
            })
            .collect();
        let preferences: BTreeMap<IpAddr, Preference> = (case.preferences.iter().enumerate())
            .map(|(h, (tier, weight))| (ip_of(h), Preference::new(*tier, *weight).unwrap()))
            .collect();
        let lists: Vec<Vec<IpAddr>> = (case.cidrs.iter())
            .map(|(list, _)| list.iter().map(|h| ip_of(*h)).collect())
            .collect();
        let wanted: Vec<Wanted> = (case.cidrs.iter().enumerate())
            .map(|(c, (list, current))| {
                let mut of: Vec<&Candidate> = list.iter().map(|h| &candidates[*h]).collect();
                if shuffle {
                    of.reverse();
                }
                Wanted {
                    cidr: format!("10.{}.0.0/16", 100 + c).parse().unwrap(),
                    hosts: &lists[c],
                    tables: None,
                    candidates: of,
                    current: vec![current.filter(|h| list.contains(h)).map(ip_of)],
                    set_aside: None,
                    preferences: Some(&preferences),
                    fallback: None,
                }
            })
            .collect();
        let az = case.in_az.then_some("local");
        let settings = Settings {
            rebalance: case.rebalance,
            ..Settings::default()
        };
        let spread = spread(&wanted, az, &[true], &settings);
        let index = |ip: IpAddr| (0..case.hosts.len()).find(|h| ip_of(*h) == ip).unwrap();
        let chosen: Vec<Option<usize>> = (spread.choices.iter())
            .map(|c| c.map(|c| index(c.host.host)))
            .collect();
        let (eligible, keepable) = (case.cidrs.iter())
            .map(|(list, _)| expected_eligible(case, list))
            .unzip();
        Outcome {
            chosen,
            eligible,
            keepable: match case.rebalance {
                true => Vec::new(),
                false => keepable,
            },
        }
    }

    /// The eligibility rule, said again plainly: a healthy local host not
    /// drained when there is one (with a scope AZ); else the healthy hosts
    /// not drained, else the healthy drained ones, else the questionable
    /// not drained, else the questionable drained ones. Of those, the
    /// first tier's are eligible; all of them may keep a route.
    fn expected_eligible(case: &Case, list: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let state = |h: usize| case.hosts[h].0;
        let local = |h: usize| case.hosts[h].1;
        let drained = |h: usize| case.hosts[h].2;
        let tier = |h: &usize| case.preferences[*h].0;
        let first_tier = |ranked: Vec<usize>| {
            let first = ranked.iter().map(tier).min();
            let eligible = ranked
                .iter()
                .copied()
                .filter(|h| Some(tier(h)) == first)
                .collect();
            (eligible, ranked)
        };
        let healthy_local: Vec<usize> = (list.iter().copied())
            .filter(|h| case.in_az && local(*h) && !drained(*h) && state(*h) == State::Healthy)
            .collect();
        if !healthy_local.is_empty() {
            return first_tier(healthy_local);
        }
        for wanted_state in [State::Healthy, State::Questionable] {
            for wanted_drained in [false, true] {
                let these: Vec<usize> = (list.iter().copied())
                    .filter(|h| state(*h) == wanted_state && drained(*h) == wanted_drained)
                    .collect();
                if !these.is_empty() {
                    return first_tier(these);
                }
            }
        }
        (Vec::new(), Vec::new())
    }

    /// Each host's bound: ceil(R*w/W) over the hosts eligible somewhere.
    fn bounds(case: &Case, eligible: &[Vec<usize>]) -> BTreeMap<usize, usize> {
        let routed = eligible.iter().filter(|e| !e.is_empty()).count();
        let hosts: BTreeSet<usize> = eligible.iter().flatten().copied().collect();
        let weight = |h: &usize| case.preferences[*h].1 as usize;
        let total: usize = hosts.iter().map(weight).sum();
        (hosts.iter())
            .map(|h| (*h, (routed * weight(h)).div_ceil(total.max(1))))
            .collect()
    }

    /// The CIDRs whose current target stays eligible, per host.
    fn kept(case: &Case, eligible: &[Vec<usize>]) -> BTreeMap<usize, usize> {
        let mut kept = BTreeMap::new();
        for ((_, current), eligible) in case.cidrs.iter().zip(eligible) {
            if let Some(h) = current.filter(|h| eligible.contains(h)) {
                *kept.entry(h).or_insert(0) += 1;
            }
        }
        kept
    }

    /// The CIDRs kept on a host of a later tier, per host.
    fn kept_on_later_tiers(
        case: &Case,
        eligible: &[Vec<usize>],
        keepable: &[Vec<usize>],
    ) -> BTreeMap<usize, usize> {
        let mut kept = BTreeMap::new();
        for (c, (_, current)) in case.cidrs.iter().enumerate() {
            let later = |h: &usize| {
                !eligible[c].contains(h) && keepable.get(c).is_some_and(|k| k.contains(h))
            };
            if let Some(h) = current.filter(later) {
                *kept.entry(h).or_insert(0) += 1;
            }
        }
        kept
    }

    fn loads(chosen: &[Option<usize>]) -> BTreeMap<usize, usize> {
        let mut loads = BTreeMap::new();
        for h in chosen.iter().flatten() {
            *loads.entry(*h).or_insert(0) += 1;
        }
        loads
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every CIDR with a usable host gets an eligible one (a healthy
        /// host of the scope's AZ first, failed never); one without gets
        /// none. Unasked, a current target that stays eligible is kept.
        #[test]
        fn choices_are_eligible_and_sticky(case in case(false)) {
            let Outcome { chosen, eligible, keepable } = run(&case, false);
            for (c, (choice, eligible)) in chosen.iter().zip(&eligible).enumerate() {
                let current = case.cidrs[c].1.filter(|h| {
                    eligible.contains(h) || keepable.get(c).is_some_and(|k| k.contains(h))
                });
                match choice {
                    None => prop_assert!(eligible.is_empty(), "cidr {c}: none of {eligible:?}"),
                    Some(h) => prop_assert!(
                        eligible.contains(h) || current == Some(*h),
                        "cidr {c}: {h} not in {eligible:?}"
                    ),
                }
                if let (Some(current), false) = (current, case.rebalance) {
                    prop_assert_eq!(*choice, Some(current), "cidr {} moved", c);
                }
            }
        }

        /// The same hosts for every CIDR: no host gains routes above its
        /// bound ceil(R*w/W); asked to rebalance, every host ends within
        /// it, and only the CIDRs above the bound moved. A host of a later
        /// tier only keeps what it had.
        #[test]
        fn the_bound_holds_and_a_rebalance_moves_the_fewest(case in case(true)) {
            let Outcome { chosen, eligible, keepable } = run(&case, false);
            let bounds = bounds(&case, &eligible);
            let kept = kept(&case, &eligible);
            let on_later_tiers = kept_on_later_tiers(&case, &eligible, &keepable);
            for (h, load) in loads(&chosen) {
                let before = kept.get(&h).copied().unwrap_or(0);
                match bounds.get(&h) {
                    None => prop_assert_eq!(Some(&load), on_later_tiers.get(&h), "host {}", h),
                    Some(&bound) if case.rebalance => prop_assert!(load <= bound, "host {h}: {load} > {bound}"),
                    Some(&bound) => prop_assert!(load <= bound.max(before), "host {h}: {load} > {bound} (kept {before})"),
                }
            }
            if case.rebalance {
                let moved = (case.cidrs.iter().zip(&chosen).zip(&eligible))
                    .filter(|(((_, current), choice), eligible)| {
                        current.is_some_and(|h| eligible.contains(&h)) && **choice != *current
                    })
                    .count();
                let over: usize = (kept.iter()).map(|(h, k)| k.saturating_sub(bounds[h])).sum();
                prop_assert_eq!(moved, over);
            }
        }

        /// The spread depends on the hosts, not on the order they are
        /// listed in.
        #[test]
        fn the_order_of_host_lists_does_not_matter(case in case(false)) {
            prop_assert_eq!(run(&case, false).chosen, run(&case, true).chosen);
        }
    }
}
