//! `POST /hosts/{ip}/drain` and `DELETE /hosts/{ip}/drain`: take a router
//! out of service on purpose (see `health::Drain`), and put it back. Like
//! every request that changes something, they need the token when one is
//! set; under HA only the leader, which writes the routes, takes them.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use std::net::IpAddr;
use std::time::SystemTime;

use super::{Shared, error, json_response, not_leader};
use crate::health::{Drain, MAX_DRAINS};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DrainRequest {
    #[serde(default)]
    reason: String,
    /// RFC 3339, e.g. `2026-12-03T06:00:00Z`.
    until: Option<String>,
}

fn host(given: &str) -> Result<IpAddr, String> {
    given
        .parse()
        .map_err(|_| format!("{:?} is not an IP address", crate::text::clip(given, 64)))
}

pub(super) async fn drain(
    State(sources): State<Shared>,
    Path(given): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(refused) = not_leader(&sources) {
        return refused;
    }
    let host = match host(&given) {
        Ok(host) => host,
        Err(problem) => return error(StatusCode::BAD_REQUEST, &problem),
    };
    let request: DrainRequest = match body.is_empty() {
        true => DrainRequest::default(),
        false => match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                let message = format!(
                    "the body must be JSON {{\"reason\": TEXT, \"until\": RFC 3339 time}} (both optional): {e}"
                );
                return error(StatusCode::BAD_REQUEST, &message);
            }
        },
    };
    let until = match request.until.as_deref().map(humantime::parse_rfc3339_weak) {
        None => None,
        Some(Ok(until)) => Some(until),
        Some(Err(e)) => {
            let message = format!("until: {e} (e.g. 2026-12-03T06:00:00Z)");
            return error(StatusCode::BAD_REQUEST, &message);
        }
    };
    let drain = match Drain::new(&request.reason, until) {
        Ok(drain) => drain,
        Err(problem) => return error(StatusCode::BAD_REQUEST, &problem),
    };
    let drained = &sources.board.snapshot().drained;
    if drained.len() >= MAX_DRAINS && !drained.contains_key(&host) {
        let message = format!("{MAX_DRAINS} hosts are drained already; undrain one first");
        return error(StatusCode::CONFLICT, &message);
    }
    let router = (sources.specs.current()).is_some_and(|spec| spec.hosts().contains(&host));
    let shown = shown(&drain);
    if let Err(e) = sources.drains.drain(host, drain).await {
        return not_kept(&e);
    }
    let mut body = json!({ "host": host, "drain": shown, "events": "/events" });
    if !router {
        body["note"] = json!("not a router of the route spec in force: nothing moves now");
    }
    json_response(StatusCode::OK, body)
}

pub(super) async fn undrain(State(sources): State<Shared>, Path(given): Path<String>) -> Response {
    if let Some(refused) = not_leader(&sources) {
        return refused;
    }
    let host = match host(&given) {
        Ok(host) => host,
        Err(problem) => return error(StatusCode::BAD_REQUEST, &problem),
    };
    match sources.drains.undrain(host).await {
        Ok(Some(_)) => json_response(
            StatusCode::OK,
            json!({ "host": host, "drain": null, "note": "eligible again; no route moves back (POST /rebalance spreads them)" }),
        ),
        Ok(None) => error(StatusCode::NOT_FOUND, &format!("{host} is not drained")),
        Err(e) => not_kept(&e),
    }
}

/// A change that could not be kept is not made: a drain must outlive the
/// process that took it.
fn not_kept(problem: &crate::health::StoreError) -> Response {
    let message = format!("cannot keep the change, so nothing changed: {problem}");
    tracing::warn!(problem = %problem, "drain change refused");
    error(StatusCode::SERVICE_UNAVAILABLE, &message)
}

/// A drain as the views show it.
pub fn shown(drain: &Drain) -> serde_json::Value {
    let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    json!({
        "reason": drain.reason,
        "since": time(drain.since),
        "until": drain.until.map(time),
    })
}
