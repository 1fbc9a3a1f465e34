//! Route specs as JSON, the format of spec files and of `POST /route_spec`:
//! `{"10.55.16.0/24": ["10.33.20.142"], ...}`, where a CIDR may also name
//! the route tables it goes in, a fallback, and its routers' tiers and
//! weights:
//! `{"0.0.0.0/0": {"hosts": ["10.1.1.1", {"ip": "10.1.2.1", "tier": 2, "weight": 1}],
//!   "tables": ["rtb-...", "tag:KEY=VALUE", "main"], "fallback": "nat-..."}}`.
//!
//! This only checks the shape; the host validates every spec it receives
//! (CIDRs, addresses, table names, limits) and names what is wrong.

use crate::daemon::{
    RouteOptions, RouteTables, RouterPreference, set_route_options, set_route_tables,
};
use crate::{Route, RouteSpec};
use serde_json::{Map, Value};

/// Parse a JSON route spec (config sources only: it hands the route
/// tables and options the spec names to the host, for the spec the current
/// call returns). The error names the offending key or value.
pub fn from_json(bytes: &[u8]) -> Result<RouteSpec, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("route spec is not valid JSON: {e}"))?;
    let Value::Object(entries) = value else {
        return Err(format!(
            "route spec must be a JSON object of CIDR -> list of hosts, got {}",
            json_kind(&value)
        ));
    };
    let mut scopes = Vec::new();
    let mut options = Vec::new();
    let routes = entries
        .into_iter()
        .map(|(cidr, value)| {
            let hosts = match value {
                Value::Object(mut object) => {
                    let known = ["hosts", "tables", "fallback"];
                    if let Some(other) = object.keys().find(|k| !known.contains(&k.as_str())) {
                        return Err(format!(
                            "route spec entry {cidr:?}: unknown field {other:?} (hosts, tables, fallback)"
                        ));
                    }
                    if let Some(tables) = object.remove("tables") {
                        let tables = strings(&cidr, "tables", tables)?;
                        scopes.push(RouteTables {
                            cidr: cidr.clone(),
                            tables,
                        });
                    }
                    let fallback = match object.remove("fallback") {
                        None => None,
                        Some(Value::String(fallback)) => Some(fallback),
                        Some(other) => {
                            return Err(format!(
                                "route spec entry {cidr:?}: fallback must be a string, got {}",
                                json_kind(&other)
                            ));
                        }
                    };
                    let hosts = object.remove("hosts").unwrap_or(Value::Null);
                    let (hosts, routers) = routers(&cidr, hosts)?;
                    if fallback.is_some() || !routers.is_empty() {
                        options.push(RouteOptions {
                            cidr: cidr.clone(),
                            fallback,
                            routers,
                        });
                    }
                    hosts
                }
                value => strings(&cidr, "hosts", value)?,
            };
            Ok(Route { cidr, hosts })
        })
        .collect::<Result<RouteSpec, String>>()?;
    if !scopes.is_empty() {
        set_route_tables(&scopes);
    }
    if !options.is_empty() {
        set_route_options(&options);
    }
    Ok(routes)
}

/// The hosts of the object form: each an address, or `{"ip": ADDRESS,
/// "tier": N, "weight": N}` (tier and weight 1 unless given); the
/// addresses, and the routers with a tier or weight.
fn routers(cidr: &str, hosts: Value) -> Result<(Vec<String>, Vec<RouterPreference>), String> {
    let Value::Array(items) = hosts else {
        return Err(format!(
            "route spec entry {cidr:?}: hosts must be a list, got {}",
            json_kind(&hosts)
        ));
    };
    let mut addresses = Vec::with_capacity(items.len());
    let mut routers = Vec::new();
    for item in items {
        let mut object = match item {
            Value::String(ip) => {
                addresses.push(ip);
                continue;
            }
            Value::Object(object) => object,
            other => {
                return Err(format!(
                    "route spec entry {cidr:?}: {other} in hosts must be an address or an object"
                ));
            }
        };
        if let Some(other) = object
            .keys()
            .find(|k| !["ip", "tier", "weight"].contains(&k.as_str()))
        {
            return Err(format!(
                "route spec entry {cidr:?}: unknown host field {other:?} (ip, tier, weight)"
            ));
        }
        let Some(Value::String(ip)) = object.remove("ip") else {
            return Err(format!(
                "route spec entry {cidr:?}: a host object needs \"ip\": ADDRESS"
            ));
        };
        let mut number = |field: &str| match object.remove(field) {
            None => Ok(1),
            Some(n) => (n.as_u64())
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    format!(
                        "route spec entry {cidr:?}: host {ip:?}: {field} must be a whole number"
                    )
                }),
        };
        let (tier, weight) = (number("tier")?, number("weight")?);
        if (tier, weight) != (1, 1) {
            routers.push(RouterPreference {
                host: ip.clone(),
                tier,
                weight,
            });
        }
        addresses.push(ip);
    }
    Ok((addresses, routers))
}

/// A list of strings, or an error naming the entry and the field.
fn strings(cidr: &str, field: &str, value: Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "route spec entry {cidr:?}: {field} must be a list of strings, got {}",
            json_kind(&value)
        ));
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(text) => Ok(text),
            other => Err(format!(
                "route spec entry {cidr:?}: {other} in {field} must be a string"
            )),
        })
        .collect()
}

/// Render a route spec as the same JSON object.
pub fn to_json(spec: &[Route]) -> Value {
    let map: Map<String, Value> = spec
        .iter()
        .map(|r| (r.cidr.clone(), Value::from(r.hosts.clone())))
        .collect();
    Value::Object(map)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
