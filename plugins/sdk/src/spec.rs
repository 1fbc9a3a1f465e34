//! Route specs as JSON, the format of spec files and of `POST /route_spec`:
//! `{"10.55.16.0/24": ["10.33.20.142"], ...}`, where a CIDR may also name
//! the route tables it goes in:
//! `{"0.0.0.0/0": {"hosts": [...], "tables": ["rtb-...", "tag:KEY=VALUE", "main"]}}`.
//!
//! This only checks the shape; the host validates every spec it receives
//! (CIDRs, addresses, table names, limits) and names what is wrong.

use crate::daemon::{RouteTables, set_route_tables};
use crate::{Route, RouteSpec};
use serde_json::{Map, Value};

/// Parse a JSON route spec (config sources only: it hands the route
/// tables the spec names to the host, for the spec the current call
/// returns). The error names the offending key or value.
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
    let routes = entries
        .into_iter()
        .map(|(cidr, value)| {
            let hosts = match value {
                Value::Object(mut object) => {
                    if let Some(other) = object.keys().find(|k| *k != "hosts" && *k != "tables") {
                        return Err(format!(
                            "route spec entry {cidr:?}: unknown field {other:?} (hosts, tables)"
                        ));
                    }
                    if let Some(tables) = object.remove("tables") {
                        let tables = strings(&cidr, "tables", tables)?;
                        scopes.push(RouteTables {
                            cidr: cidr.clone(),
                            tables,
                        });
                    }
                    let hosts = object.remove("hosts").unwrap_or(Value::Null);
                    strings(&cidr, "hosts", hosts)?
                }
                value => strings(&cidr, "hosts", value)?,
            };
            Ok(Route { cidr, hosts })
        })
        .collect::<Result<RouteSpec, String>>()?;
    if !scopes.is_empty() {
        set_route_tables(&scopes);
    }
    Ok(routes)
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
