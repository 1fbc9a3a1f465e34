//! Route specs as JSON, the format of spec files and of `POST /route_spec`:
//! `{"10.55.16.0/24": ["10.33.20.142"], ...}`.
//!
//! This only checks the shape; the host validates every spec it receives
//! (CIDRs, addresses, limits) and names what is wrong.

use crate::{Route, RouteSpec};
use serde_json::{Map, Value};

/// Parse a JSON route spec. The error names the offending key or value.
pub fn from_json(bytes: &[u8]) -> Result<RouteSpec, String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("route spec is not valid JSON: {e}"))?;
    let Value::Object(entries) = value else {
        return Err(format!(
            "route spec must be a JSON object of CIDR -> list of hosts, got {}",
            json_kind(&value)
        ));
    };
    entries
        .into_iter()
        .map(|(cidr, hosts)| {
            let Value::Array(items) = hosts else {
                return Err(format!(
                    "route spec entry {cidr:?}: value must be a list of host IP strings, got {}",
                    json_kind(&hosts)
                ));
            };
            let hosts = items
                .into_iter()
                .map(|item| match item {
                    Value::String(host) => Ok(host),
                    other => Err(format!(
                        "route spec entry {cidr:?}: host {other} must be a string"
                    )),
                })
                .collect::<Result<_, _>>()?;
            Ok(Route { cidr, hosts })
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
