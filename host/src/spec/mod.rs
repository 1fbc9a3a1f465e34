//! The route spec: destination CIDR -> eligible router hosts.
//!
//! Every spec any plugin produces passes through [`RouteSpec::from_entries`];
//! a spec that fails is rejected whole with an error naming the bad key or
//! value, and the spec in force stays.

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::OnceLock;

use crate::selector::TableSelector;

mod options;
pub use options::{Fallback, MAX_TIER, MAX_WEIGHT, Preference, RouteOptions};

/// Largest spec accepted, in bytes of JSON (files and HTTP bodies).
pub const MAX_SPEC_BYTES: usize = 1024 * 1024;
/// A VPC route table holds at most 1,000 routes, so more CIDRs can never fit.
pub const MAX_ROUTES: usize = 1000;
/// Eligible hosts for one CIDR.
pub const MAX_HOSTS_PER_ROUTE: usize = 1000;
/// Table selectors for one CIDR.
pub const MAX_TABLES_PER_ROUTE: usize = 16;
/// Distinct hosts in a whole spec: the working set the health checkers
/// probe every round. The bundled checkers probe this many silent hosts
/// within the longest call (see `plugin::limits::MAX_HOST_WAIT`).
pub const MAX_WORKING_SET: usize = 10_000;
/// Longest CIDR or host text quoted back in an error.
const MAX_QUOTED: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("route spec is not valid JSON: {0}")]
    Json(String),
    #[error("route spec must be a JSON object of CIDR -> list of host IPs")]
    NotAnObject,
    #[error(
        "{key:?}: value must be a list of host IP strings, or {{\"hosts\": [...], \"tables\": [...]}}"
    )]
    NotAList { key: String },
    #[error("route spec is larger than {MAX_SPEC_BYTES} bytes as JSON")]
    TooLarge,
    #[error("route spec has {count} routes; at most {MAX_ROUTES} are allowed")]
    TooManyRoutes { count: usize },
    #[error("{key:?}: {count} hosts; at most {MAX_HOSTS_PER_ROUTE} are allowed per CIDR")]
    TooManyHosts { key: String, count: usize },
    #[error("route spec names {count} distinct hosts; at most {MAX_WORKING_SET} are allowed")]
    TooManyDistinctHosts { count: usize },
    #[error("{key:?} is not a CIDR (expected ADDRESS/PREFIX, e.g. 10.55.16.0/24)")]
    BadCidr { key: String },
    #[error("{key:?} is not a network address; did you mean {network}?")]
    NotNetworkAddress { key: String, network: IpNet },
    #[error("{key:?} appears more than once")]
    DuplicateCidr { key: String },
    #[error("{key:?}: host {host:?} is not an IP address")]
    BadHost { key: String, host: String },
    #[error("{key:?}: {problem}")]
    BadTables { key: String, problem: String },
    #[error("{key:?}: {problem}")]
    BadOptions { key: String, problem: String },
    #[error("{key:?}: host {host} cannot be a router ({why})")]
    UnusableHost {
        key: String,
        host: IpAddr,
        why: &'static str,
    },
}

/// What a source gives beside a spec's entries, checked with them:
/// (cidr, tables) as named, and options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecDetails {
    pub tables: Vec<(String, Vec<String>)>,
    pub options: Vec<RouteOptions>,
}

/// A validated route spec. CIDRs are network addresses, each host list is
/// sorted with duplicates removed; iteration order is by CIDR.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSpec {
    routes: BTreeMap<IpNet, Vec<IpAddr>>,
    /// The route tables a CIDR goes in, when the spec says (the object
    /// form); any other CIDR goes in the tables the daemon manages.
    tables: BTreeMap<IpNet, Vec<TableSelector>>,
    /// Where a CIDR's routes go while none of its routers is eligible, when
    /// the spec says (else the daemon's `--fallback`, if any).
    fallbacks: BTreeMap<IpNet, Fallback>,
    /// Routers of a CIDR that are not tier 1, weight 1.
    preferences: BTreeMap<IpNet, BTreeMap<IpAddr, Preference>>,
    /// Every host named, kept for the health checkers and probe grants.
    hosts: BTreeSet<IpAddr>,
    /// The same hosts as plugins see them, made on first use.
    working_set: OnceLock<WorkingSet>,
}

/// The working set in the text form health-check plugins are given, and
/// the way back: a host a plugin names is looked up, not parsed again,
/// whatever part of the host it reaches (probes, verdicts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkingSet {
    names: Vec<String>,
    addresses: HashMap<String, IpAddr>,
}

impl WorkingSet {
    pub fn new(hosts: &BTreeSet<IpAddr>) -> Self {
        let names: Vec<String> = hosts.iter().map(ToString::to_string).collect();
        let addresses = names.iter().cloned().zip(hosts.iter().copied()).collect();
        Self { names, addresses }
    }

    /// Every host, in address order, as text.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The address of a host of the working set named by a plugin: as it was
    /// given (the usual case), or in another spelling of the same address
    /// (`2001:DB8::1`, surrounding spaces). `None` if it is not one.
    pub fn lookup(&self, name: &str) -> Option<IpAddr> {
        if let Some(ip) = self.addresses.get(name) {
            return Some(*ip);
        }
        let ip: IpAddr = name.trim().parse().ok()?;
        self.addresses.get(ip.to_string().as_str()).copied()
    }
}

impl RouteSpec {
    /// Validate `(cidr, hosts)` entries as a plugin returned them.
    ///
    /// A CIDR that is not its own network address (`10.1.2.3/24`) is an
    /// error rather than silently normalised: it is almost always a typo,
    /// and a route for the wrong network is worse than no change.
    pub fn from_entries<I, H>(entries: I) -> Result<Self, SpecError>
    where
        I: IntoIterator<Item = (String, H)>,
        H: IntoIterator<Item = String>,
    {
        let mut entries = entries.into_iter();
        let mut routes = BTreeMap::new();
        // The spec's size as compact JSON, so that a plugin's spec is held
        // to the same limit as a file or an HTTP body.
        let mut json_bytes = 2;
        while let Some((key, hosts)) = entries.next() {
            if routes.len() == MAX_ROUTES {
                return Err(SpecError::TooManyRoutes {
                    count: MAX_ROUTES + 1 + entries.count(),
                });
            }
            json_bytes += key.len() + 6;
            let cidr = parse_cidr(&key)?;
            let hosts = parse_hosts(&key, hosts, &mut json_bytes)?;
            if json_bytes > MAX_SPEC_BYTES {
                return Err(SpecError::TooLarge);
            }
            if routes.insert(cidr, hosts).is_some() {
                return Err(SpecError::DuplicateCidr { key: quoted(&key) });
            }
        }
        let hosts: BTreeSet<IpAddr> = routes.values().flatten().copied().collect();
        if hosts.len() > MAX_WORKING_SET {
            return Err(SpecError::TooManyDistinctHosts { count: hosts.len() });
        }
        Ok(Self {
            routes,
            hosts,
            ..Self::default()
        })
    }

    /// Say which route tables CIDRs go in: `(cidr, selectors)` with
    /// selectors as `rtb-...`, `tag:KEY=VALUE` or `main`, each CIDR one of
    /// the spec's, once; at most [`MAX_TABLES_PER_ROUTE`] selectors.
    pub fn with_tables<I, T>(mut self, scopes: I) -> Result<Self, SpecError>
    where
        I: IntoIterator<Item = (String, T)>,
        T: IntoIterator<Item = String>,
    {
        for (key, selectors) in scopes.into_iter().take(MAX_ROUTES + 1) {
            let bad = |problem: String| SpecError::BadTables {
                key: quoted(&key),
                problem,
            };
            let cidr = parse_cidr(&key)?;
            if !self.routes.contains_key(&cidr) {
                return Err(bad("tables given for a CIDR the spec does not route".into()));
            }
            let selectors: Vec<String> = selectors
                .into_iter()
                .take(MAX_TABLES_PER_ROUTE + 1)
                .collect();
            if selectors.is_empty() || selectors.len() > MAX_TABLES_PER_ROUTE {
                return Err(bad(format!(
                    "\"tables\" must name 1 to {MAX_TABLES_PER_ROUTE} route tables"
                )));
            }
            let selectors = (selectors.iter())
                .map(|s| TableSelector::parse(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad)?;
            if self.tables.insert(cidr, selectors).is_some() {
                return Err(bad("tables given twice".into()));
            }
        }
        Ok(self)
    }

    /// Give CIDRs a fallback and their routers tiers and weights, each
    /// CIDR one of the spec's, once; each host one of the CIDR's.
    pub fn with_options(
        mut self,
        options: impl IntoIterator<Item = RouteOptions>,
    ) -> Result<Self, SpecError> {
        for given in options.into_iter().take(MAX_ROUTES + 1) {
            let bad = |problem: String| SpecError::BadOptions {
                key: quoted(&given.cidr),
                problem,
            };
            let cidr = parse_cidr(&given.cidr)?;
            let Some(hosts) = self.routes.get(&cidr) else {
                return Err(bad(
                    "options given for a CIDR the spec does not route".into()
                ));
            };
            if self.fallbacks.contains_key(&cidr) || self.preferences.contains_key(&cidr) {
                return Err(bad("options given twice".into()));
            }
            if let Some(fallback) = &given.fallback {
                let fallback = Fallback::parse(fallback).map_err(bad)?;
                self.fallbacks.insert(cidr, fallback);
            }
            let mut preferences = BTreeMap::new();
            for (host, tier, weight) in given.hosts.into_iter().take(MAX_HOSTS_PER_ROUTE + 1) {
                let ip: IpAddr = host
                    .trim()
                    .parse()
                    .ok()
                    .filter(|ip| hosts.binary_search(ip).is_ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "tier and weight given for {:?}, not one of its hosts",
                            quoted(&host)
                        ))
                    })?;
                let preference = Preference::new(tier, weight)
                    .map_err(|problem| bad(format!("host {ip}: {problem}")))?;
                if preference != Preference::default() {
                    preferences.insert(ip, preference);
                }
            }
            if !preferences.is_empty() {
                self.preferences.insert(cidr, preferences);
            }
        }
        Ok(self)
    }

    /// Where `cidr`'s routes go while none of its routers is eligible, if
    /// the spec says.
    pub fn fallback_of(&self, cidr: &IpNet) -> Option<&Fallback> {
        self.fallbacks.get(cidr)
    }

    /// A router's tier and weight for `cidr` (tier 1, weight 1 unless the
    /// spec says).
    pub fn preference(&self, cidr: &IpNet, host: &IpAddr) -> Preference {
        (self.preferences.get(cidr))
            .and_then(|p| p.get(host))
            .copied()
            .unwrap_or_default()
    }

    /// The routers of `cidr` with a tier or weight of their own.
    pub fn preferences_of(&self, cidr: &IpNet) -> Option<&BTreeMap<IpAddr, Preference>> {
        self.preferences.get(cidr)
    }

    /// With the tables and options a source gave beside the entries.
    pub fn with_details(self, details: SpecDetails) -> Result<Self, SpecError> {
        self.with_tables(details.tables)?
            .with_options(details.options)
    }

    /// The route tables `cidr` goes in, if the spec says.
    pub fn tables_of(&self, cidr: &IpNet) -> Option<&[TableSelector]> {
        self.tables.get(cidr).map(Vec::as_slice)
    }

    /// Every table selector the spec names.
    pub fn selectors(&self) -> impl Iterator<Item = &TableSelector> {
        self.tables.values().flatten()
    }

    /// Parse the JSON form (`{"10.55.16.0/24": ["10.33.20.142"]}`).
    pub fn from_json(bytes: &[u8]) -> Result<Self, SpecError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| SpecError::Json(e.to_string()))?;
        let serde_json::Value::Object(map) = value else {
            return Err(SpecError::NotAnObject);
        };
        let mut entries = Vec::with_capacity(map.len());
        let mut scopes = Vec::new();
        let mut options = Vec::new();
        for (key, value) in map {
            let strings = |value: &serde_json::Value| -> Option<Vec<String>> {
                (value.as_array()?.iter())
                    .map(|h| h.as_str().map(String::from))
                    .collect()
            };
            let not_a_list = || SpecError::NotAList { key: quoted(&key) };
            let hosts = match &value {
                serde_json::Value::Object(object) => {
                    if let Some(other) = object
                        .keys()
                        .find(|k| !["hosts", "tables", "fallback"].contains(&k.as_str()))
                    {
                        return Err(SpecError::BadTables {
                            key: quoted(&key),
                            problem: format!(
                                "unknown field {:?} (hosts, tables, fallback)",
                                quoted(other)
                            ),
                        });
                    }
                    if let Some(tables) = object.get("tables") {
                        scopes.push((key.clone(), strings(tables).ok_or_else(not_a_list)?));
                    }
                    let hosts = object.get("hosts").ok_or_else(not_a_list)?;
                    let (hosts, mut given) = json_hosts(&key, hosts)?;
                    given.fallback = match object.get("fallback") {
                        None => None,
                        Some(serde_json::Value::String(f)) => Some(f.clone()),
                        Some(_) => {
                            return Err(SpecError::BadOptions {
                                key: quoted(&key),
                                problem: "\"fallback\" must be a string".into(),
                            });
                        }
                    };
                    if given.fallback.is_some() || !given.hosts.is_empty() {
                        options.push(given);
                    }
                    hosts
                }
                value => strings(value).ok_or_else(not_a_list)?,
            };
            entries.push((key, hosts));
        }
        Self::from_entries(entries)?
            .with_tables(scopes)?
            .with_options(options)
    }

    pub fn routes(&self) -> &BTreeMap<IpNet, Vec<IpAddr>> {
        &self.routes
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Every host named in the spec: the health checkers' working set.
    pub fn hosts(&self) -> &BTreeSet<IpAddr> {
        &self.hosts
    }

    /// The working set as plugins name it (see [`WorkingSet`]).
    pub fn working_set(&self) -> &WorkingSet {
        self.working_set
            .get_or_init(|| WorkingSet::new(&self.hosts))
    }

    /// The canonical JSON form, as accepted by [`RouteSpec::from_json`]:
    /// a CIDR with tables of its own in the object form.
    pub fn to_json(&self) -> serde_json::Value {
        self.routes
            .iter()
            .map(|(cidr, hosts)| {
                let tables = self.tables.get(cidr);
                let fallback = self.fallbacks.get(cidr);
                if tables.is_none() && fallback.is_none() && !self.preferences.contains_key(cidr) {
                    let names = hosts.iter().map(ToString::to_string);
                    return (cidr.to_string(), names.collect());
                }
                let mut value = serde_json::Map::new();
                let hosts = hosts.iter().map(|host| {
                    let p = self.preference(cidr, host);
                    match p == Preference::default() {
                        true => serde_json::Value::from(host.to_string()),
                        false => serde_json::json!({
                            "ip": host.to_string(), "tier": p.tier, "weight": p.weight,
                        }),
                    }
                });
                value.insert("hosts".into(), hosts.collect());
                if let Some(tables) = tables {
                    let tables = tables.iter().map(ToString::to_string);
                    value.insert("tables".into(), tables.collect());
                }
                if let Some(fallback) = fallback {
                    value.insert("fallback".into(), fallback.to_string().into());
                }
                let value = serde_json::Value::Object(value);
                (cidr.to_string(), value)
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// A CIDR's host list in the object form: each host an address, or
/// `{"ip": ADDRESS, "tier": N, "weight": N}` (both optional); the
/// addresses, and the tiers and weights as options.
fn json_hosts(
    key: &str,
    hosts: &serde_json::Value,
) -> Result<(Vec<String>, RouteOptions), SpecError> {
    let not_a_list = || SpecError::NotAList { key: quoted(key) };
    let bad = |problem: String| SpecError::BadOptions {
        key: quoted(key),
        problem,
    };
    let mut options = RouteOptions {
        cidr: key.to_string(),
        ..RouteOptions::default()
    };
    let mut addresses = Vec::new();
    for host in hosts.as_array().ok_or_else(not_a_list)? {
        let object = match host {
            serde_json::Value::String(ip) => {
                addresses.push(ip.clone());
                continue;
            }
            serde_json::Value::Object(object) => object,
            _ => return Err(not_a_list()),
        };
        if let Some(other) =
            (object.keys()).find(|k| !["ip", "tier", "weight"].contains(&k.as_str()))
        {
            return Err(bad(format!(
                "unknown host field {:?} (ip, tier, weight)",
                quoted(other)
            )));
        }
        let ip = (object.get("ip").and_then(|ip| ip.as_str()))
            .ok_or_else(|| bad("a host object needs \"ip\": ADDRESS".into()))?;
        let number = |field: &str| -> Result<u32, SpecError> {
            match object.get(field) {
                None => Ok(1),
                Some(n) => (n.as_u64())
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "host {:?}: {field} must be a whole number",
                            quoted(ip)
                        ))
                    }),
            }
        };
        options
            .hosts
            .push((ip.to_string(), number("tier")?, number("weight")?));
        addresses.push(ip.to_string());
    }
    Ok((addresses, options))
}

/// A key or host as an error quotes it: bounded, whatever a plugin sent.
fn quoted(text: &str) -> String {
    crate::text::clip(text, MAX_QUOTED).into_owned()
}

fn parse_cidr(key: &str) -> Result<IpNet, SpecError> {
    let bad = || SpecError::BadCidr { key: quoted(key) };
    if !key.contains('/') {
        return Err(bad());
    }
    let cidr: IpNet = key.trim().parse().map_err(|_| bad())?;
    if cidr.network() != cidr.addr() {
        return Err(SpecError::NotNetworkAddress {
            key: quoted(key),
            network: cidr.trunc(),
        });
    }
    Ok(cidr)
}

/// `json_bytes` grows by each host's share of the spec as JSON.
fn parse_hosts(
    key: &str,
    hosts: impl IntoIterator<Item = String>,
    json_bytes: &mut usize,
) -> Result<Vec<IpAddr>, SpecError> {
    let mut hosts = hosts.into_iter();
    let mut parsed = BTreeSet::new();
    let mut given = 0;
    while let Some(host) = hosts.next() {
        given += 1;
        if given > MAX_HOSTS_PER_ROUTE {
            return Err(SpecError::TooManyHosts {
                key: quoted(key),
                count: given + hosts.count(),
            });
        }
        *json_bytes += host.len() + 3;
        let ip: IpAddr = host.trim().parse().map_err(|_| SpecError::BadHost {
            key: quoted(key),
            host: quoted(&host),
        })?;
        if let Some(why) = unusable(ip) {
            return Err(SpecError::UnusableHost {
                key: quoted(key),
                host: ip,
                why,
            });
        }
        parsed.insert(ip);
    }
    Ok(parsed.into_iter().collect())
}

/// Addresses no EC2 instance can have.
fn unusable(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("unspecified address")
    } else if ip.is_multicast() {
        Some("multicast address")
    } else if matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()) {
        Some("broadcast address")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<RouteSpec, SpecError> {
        RouteSpec::from_json(json.as_bytes())
    }

    #[test]
    fn hosts_are_sorted_and_deduplicated() {
        let s =
            spec(r#"{"10.66.17.0/24": ["10.33.30.22", "10.33.20.93", "10.33.30.22"]}"#).unwrap();
        assert_eq!(
            s.to_json(),
            serde_json::json!({"10.66.17.0/24": ["10.33.20.93", "10.33.30.22"]})
        );
    }

    #[test]
    fn ipv6_cidrs_and_hosts_are_accepted() {
        let s = spec(r#"{"2001:db8:1::/64": ["fd00::5", "10.1.0.5"]}"#).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.hosts().len(), 2);
    }

    #[test]
    fn empty_host_list_is_kept() {
        let s = spec(r#"{"10.0.0.0/16": []}"#).unwrap();
        assert!(s.routes()[&"10.0.0.0/16".parse::<IpNet>().unwrap()].is_empty());
    }

    #[test]
    fn each_bad_input_names_the_culprit() {
        let cases = [
            ("[1]", "JSON object"),
            ("{", "not valid JSON"),
            (
                r#"{"10.1.0.0/16": "10.1.0.5"}"#,
                "\"10.1.0.0/16\": value must be a list",
            ),
            (
                r#"{"10.1.0.0/16": [5]}"#,
                "\"10.1.0.0/16\": value must be a list",
            ),
            (r#"{"10.1.0.0": []}"#, "\"10.1.0.0\" is not a CIDR"),
            (r#"{"10.1.0.0/33": []}"#, "\"10.1.0.0/33\" is not a CIDR"),
            (r#"{"banana/8": []}"#, "\"banana/8\" is not a CIDR"),
            (r#"{"10.1.2.3/16": []}"#, "did you mean 10.1.0.0/16"),
            (
                r#"{"10.1.0.0/16": ["10.1.0.300"]}"#,
                "host \"10.1.0.300\" is not an IP",
            ),
            (r#"{"10.1.0.0/16": ["0.0.0.0"]}"#, "unspecified"),
            (r#"{"10.1.0.0/16": ["224.0.0.1"]}"#, "multicast"),
            (r#"{"10.1.0.0/16": ["255.255.255.255"]}"#, "broadcast"),
        ];
        for (input, expected) in cases {
            let err = spec(input).expect_err(input).to_string();
            assert!(
                err.contains(expected),
                "{input}: {err:?} lacks {expected:?}"
            );
        }
    }

    #[test]
    fn duplicate_cidrs_in_entries_are_refused() {
        let entries = vec![
            ("10.1.0.0/16".to_string(), vec![]),
            ("10.1.0.0/16".to_string(), vec!["10.1.0.5".to_string()]),
        ];
        let err = RouteSpec::from_entries(entries).unwrap_err();
        assert_eq!(
            err,
            SpecError::DuplicateCidr {
                key: "10.1.0.0/16".into()
            }
        );
    }

    #[test]
    fn size_limits_are_enforced() {
        // Counts in messages are the real ones, not the limit plus one.
        let too_many = (0..2000).map(|i| (format!("10.{}.{}.0/24", i / 256, i % 256), vec![]));
        assert_eq!(
            RouteSpec::from_entries(too_many),
            Err(SpecError::TooManyRoutes { count: 2000 })
        );
        let hosts = (0..1500).map(|i| format!("10.9.{}.{}", i / 250, i % 250 + 1));
        let err = RouteSpec::from_entries([("10.0.0.0/16".to_string(), hosts)]).unwrap_err();
        assert!(matches!(err, SpecError::TooManyHosts { count: 1500, .. }));
        // 20 CIDRs of 1,000 hosts each: 20,000 distinct hosts.
        let many = (0..20).map(|c| {
            let hosts = (0..1000).map(move |i| format!("10.{c}.{}.{}", i / 250, i % 250 + 1));
            (format!("10.{}.0.0/16", 100 + c), hosts)
        });
        assert_eq!(
            RouteSpec::from_entries(many),
            Err(SpecError::TooManyDistinctHosts { count: 20_000 })
        );
        // 1,000 CIDRs of 100 hosts each fit the counts but not 1 MiB.
        let big = (0..1000).map(|c| {
            let hosts = (0..100).map(|i| format!("10.200.0.{}", i + 1));
            (format!("10.{}.{}.0/24", c / 256, c % 256), hosts)
        });
        assert_eq!(RouteSpec::from_entries(big), Err(SpecError::TooLarge));
        // Keys and hosts are quoted bounded.
        let long = "1".repeat(100_000);
        let err = RouteSpec::from_entries([(long.clone(), Vec::<String>::new())]).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
        let at_limit =
            (0..MAX_ROUTES).map(|i| (format!("10.{}.{}.0/24", i / 256, i % 256), vec![]));
        assert_eq!(RouteSpec::from_entries(at_limit).unwrap().len(), MAX_ROUTES);
    }

    #[test]
    fn json_round_trips() {
        let input = r#"{"10.55.16.0/24": ["10.33.20.142"], "fd00:1::/48": ["fd00::1"]}"#;
        let s = spec(input).unwrap();
        assert_eq!(spec(&s.to_json().to_string()).unwrap(), s);
    }

    /// The object form scopes a CIDR to route tables; the list form stays
    /// valid beside it, and both round-trip.
    #[test]
    fn a_cidr_may_name_its_route_tables() {
        let s = spec(
            r#"{"0.0.0.0/0": {"hosts": ["10.40.1.10", "10.40.2.10"], "tables": ["rtb-1a", "tag:vpcrouter=egress", "main"]},
                "10.55.0.0/16": ["10.40.1.10"]}"#,
        )
        .unwrap();
        let default: IpNet = "0.0.0.0/0".parse().unwrap();
        assert_eq!(
            s.tables_of(&default).unwrap(),
            [
                TableSelector::Id("rtb-1a".into()),
                TableSelector::Tag {
                    key: "vpcrouter".into(),
                    value: "egress".into()
                },
                TableSelector::Main
            ]
        );
        assert_eq!(s.tables_of(&"10.55.0.0/16".parse().unwrap()), None);
        assert_eq!(spec(&s.to_json().to_string()).unwrap(), s);
        for (input, expected) in [
            (
                r#"{"0.0.0.0/0": {"hosts": [], "tables": []}}"#,
                "1 to 16 route tables",
            ),
            (
                r#"{"0.0.0.0/0": {"hosts": [], "tables": ["igw-1"]}}"#,
                "not a route table id",
            ),
            (
                r#"{"0.0.0.0/0": {"hosts": [], "tables": "main"}}"#,
                "value must be a list",
            ),
            (
                r#"{"0.0.0.0/0": {"tables": ["main"]}}"#,
                "value must be a list",
            ),
            (
                r#"{"0.0.0.0/0": {"hosts": [], "table": ["main"]}}"#,
                "unknown field \"table\"",
            ),
        ] {
            let err = spec(input).expect_err(input).to_string();
            assert!(
                err.contains(expected),
                "{input}: {err:?} lacks {expected:?}"
            );
        }
        let many: Vec<String> = (0..17).map(|i| format!("rtb-{i:x}a")).collect();
        let base =
            RouteSpec::from_entries([("0.0.0.0/0".to_string(), Vec::<String>::new())]).unwrap();
        assert!(
            base.clone()
                .with_tables([("0.0.0.0/0".to_string(), many)])
                .is_err()
        );
        let elsewhere = [("10.0.0.0/8".to_string(), vec!["main".to_string()])];
        assert!(base.with_tables(elsewhere).is_err());
    }

    /// The object form gives a CIDR a fallback and its hosts tiers and
    /// weights; defaults are not kept, and the form round-trips.
    #[test]
    fn a_cidr_may_name_a_fallback_and_router_tiers() {
        let s = spec(
            r#"{"0.0.0.0/0": {"hosts": [{"ip": "10.40.1.10", "tier": 1, "weight": 4}, "10.40.2.10",
                                        {"ip": "10.40.3.10", "tier": 2}, {"ip": "10.40.4.10"}],
                              "fallback": "nat-0123456789abcdef0"},
                "10.55.0.0/16": {"hosts": ["10.40.1.10"], "fallback": "withdraw"},
                "10.56.0.0/16": ["10.40.1.10"]}"#,
        )
        .unwrap();
        let default: IpNet = "0.0.0.0/0".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            s.fallback_of(&default),
            Some(&Fallback::Gateway("nat-0123456789abcdef0".into()))
        );
        assert_eq!(
            s.fallback_of(&"10.55.0.0/16".parse().unwrap()),
            Some(&Fallback::Withdraw)
        );
        assert_eq!(s.fallback_of(&"10.56.0.0/16".parse().unwrap()), None);
        assert_eq!(s.preference(&default, &ip("10.40.1.10")).weight, 4);
        assert_eq!(s.preference(&default, &ip("10.40.3.10")).tier, 2);
        assert_eq!(
            s.preference(&default, &ip("10.40.4.10")),
            Preference::default()
        );
        assert_eq!(s.routes()[&default].len(), 4);
        assert_eq!(spec(&s.to_json().to_string()).unwrap(), s);
        let json = s.to_json();
        assert_eq!(json["0.0.0.0/0"]["hosts"][1], "10.40.2.10");
        assert_eq!(json["10.56.0.0/16"], serde_json::json!(["10.40.1.10"]));
        for (input, expected) in [
            (
                r#"{"0.0.0.0/0": {"hosts": [], "fallback": "eni-0123abcd"}}"#,
                "is not a NAT gateway",
            ),
            (
                r#"{"0.0.0.0/0": {"hosts": [], "fallback": 5}}"#,
                "must be a string",
            ),
            (
                r#"{"0.0.0.0/0": {"hosts": [{"ip": "10.1.1.1", "tier": 0}]}}"#,
                "tier 0 is out of range",
            ),
            (
                r#"{"0.0.0.0/0": {"hosts": [{"ip": "10.1.1.1", "weight": 1000}]}}"#,
                "weight 1000",
            ),
            (
                r#"{"0.0.0.0/0": {"hosts": [{"ip": "10.1.1.1", "weight": -1}]}}"#,
                "whole number",
            ),
            (
                r#"{"0.0.0.0/0": {"hosts": [{"ip": "10.1.1.1", "prio": 1}]}}"#,
                "unknown host field \"prio\"",
            ),
            (r#"{"0.0.0.0/0": {"hosts": [{"tier": 1}]}}"#, "needs \"ip\""),
            (
                r#"{"0.0.0.0/0": {"hosts": [{"ip": "banana"}]}}"#,
                "not an IP",
            ),
            (r#"{"0.0.0.0/0": {"hosts": [[1]]}}"#, "value must be a list"),
        ] {
            let err = spec(input).expect_err(input).to_string();
            assert!(
                err.contains(expected),
                "{input}: {err:?} lacks {expected:?}"
            );
        }
        // Options for a host or CIDR outside the spec, or twice.
        let base =
            RouteSpec::from_entries([("0.0.0.0/0".to_string(), vec!["10.1.1.1".to_string()])])
                .unwrap();
        let options = |cidr: &str, host: &str| RouteOptions {
            cidr: cidr.into(),
            fallback: None,
            hosts: vec![(host.into(), 2, 1)],
        };
        let err = base
            .clone()
            .with_options([options("0.0.0.0/0", "10.9.9.9")])
            .unwrap_err();
        assert!(err.to_string().contains("not one of its hosts"), "{err}");
        let err = base
            .clone()
            .with_options([options("10.0.0.0/8", "10.1.1.1")])
            .unwrap_err();
        assert!(err.to_string().contains("does not route"), "{err}");
        let twice = [
            options("0.0.0.0/0", "10.1.1.1"),
            options("0.0.0.0/0", "10.1.1.1"),
        ];
        assert!(
            base.with_options(twice)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }
}
