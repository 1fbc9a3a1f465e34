//! etcd v3 through its JSON gateway (`POST /v3/kv/range`), over the
//! outbound capability: the host connects and does TLS; this builds the
//! requests and reads the answers. Keys and values travel base64-encoded.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use vpcrouter_plugin_sdk::outbound::{self, OutboundRequest};

/// A request must be answered within this (the call's deadline is 2 s).
const TIMEOUT_MS: u32 = 1000;

/// What etcd holds under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Missing,
    /// The revision of its last change, and its value if it was asked for.
    Present {
        mod_revision: i64,
        value: Option<Vec<u8>>,
    },
}

/// Look `key` up; with `keys_only` the value is left out (a cheap check
/// of whether it changed).
pub fn get(key: &str, keys_only: bool) -> Result<Key, String> {
    let mut body = json!({ "key": BASE64.encode(key) });
    if keys_only {
        body["keys_only"] = true.into();
    }
    let response = outbound::send(&OutboundRequest {
        method: "POST".into(),
        path: "/v3/kv/range".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
        timeout_ms: TIMEOUT_MS,
    })
    .map_err(|e| format!("etcd unreachable: {e}"))?;
    let text = String::from_utf8_lossy(&response.body);
    if response.status != 200 {
        return Err(format!(
            "etcd answered {}: {}",
            response.status,
            text.trim()
        ));
    }
    let answer: Value =
        serde_json::from_str(&text).map_err(|e| format!("etcd answer is not JSON: {e}"))?;
    let Some(kv) = answer.get("kvs").and_then(|kvs| kvs.get(0)) else {
        return Ok(Key::Missing);
    };
    // int64 fields come as JSON strings from the gateway.
    let mod_revision = kv
        .get("mod_revision")
        .and_then(|r| r.as_str().and_then(|s| s.parse().ok()).or(r.as_i64()))
        .ok_or("etcd answer lacks mod_revision")?;
    let value = match kv.get("value").and_then(Value::as_str) {
        Some(encoded) => Some(
            BASE64
                .decode(encoded)
                .map_err(|e| format!("etcd value is not base64: {e}"))?,
        ),
        None if keys_only => None,
        // An empty value is left out of the answer.
        None => Some(Vec::new()),
    };
    Ok(Key::Present {
        mod_revision,
        value,
    })
}
