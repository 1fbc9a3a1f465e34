//! `POST /routes/{cidr}/failover` (the CIDR's slash escaped as `%2F`, or
//! `/routes/{address}/{length}/failover`): move one CIDR off the router its
//! routes point at, now, to a router a probe has confirmed, as a drain
//! would. Refused, saying why, when no such router can take it or the next
//! pass would move it back (AZ affinity). Like every
//! request that changes something it needs the token when one is set; under
//! HA only the leader takes it.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeSet;
use std::net::IpAddr;

use super::views::{RouteTarget, Snapshot};
use super::{Shared, error, json_response, not_leader};
use crate::cloud::operation::Cause;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FailoverRequest {
    /// The router to move it off, where its tables point at several.
    from: Option<IpAddr>,
}

pub(super) async fn escaped(
    State(sources): State<Shared>,
    Path(cidr): Path<String>,
    body: Bytes,
) -> Response {
    failover(&sources, &cidr, &body)
}

pub(super) async fn split(
    State(sources): State<Shared>,
    Path((address, length)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    failover(&sources, &format!("{address}/{length}"), &body)
}

fn failover(sources: &Shared, given: &str, body: &[u8]) -> Response {
    if let Some(refused) = not_leader(sources) {
        return refused;
    }
    let Ok(cidr) = given.parse::<IpNet>() else {
        let message = format!("{:?} is not a CIDR", crate::text::clip(given, 64));
        return error(StatusCode::BAD_REQUEST, &message);
    };
    let request: FailoverRequest = match body.is_empty() {
        true => FailoverRequest::default(),
        false => match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(e) => {
                let message = format!("the body must be JSON {{\"from\": IP}} (optional): {e}");
                return error(StatusCode::BAD_REQUEST, &message);
            }
        },
    };
    let snap = Snapshot::take(sources);
    let (Some(spec), Some(vpc)) = (&snap.spec, &snap.routes.vpc) else {
        let message = "no route spec in force or the VPC not observed yet";
        return error(StatusCode::CONFLICT, message);
    };
    if !spec.routes().contains_key(&cidr) {
        let message = format!("{cidr} is not a CIDR of the route spec in force");
        return error(StatusCode::NOT_FOUND, &message);
    }
    // The routers its managed tables point it at now.
    let lookup = snap.lookup(vpc);
    let routers: BTreeSet<IpAddr> = (snap.routes.managed.keys())
        .filter_map(|table| match lookup.target(table, &cidr)? {
            RouteTarget::Router { ip, .. } => ip,
            RouteTarget::Other(_) => None,
        })
        .collect();
    let from = match (request.from, routers.len()) {
        (Some(from), _) if routers.contains(&from) => from,
        (Some(from), _) => {
            let message = format!("no route of {cidr} points at {from}");
            return error(StatusCode::CONFLICT, &message);
        }
        (None, 0) => {
            let message = format!("no route of {cidr} points at a router yet");
            return error(StatusCode::CONFLICT, &message);
        }
        (None, 1) => *routers.first().expect("one router"),
        (None, _) => {
            let message = format!(
                "{cidr} points at {} in different tables: say which to move it off with {{\"from\": IP}}",
                (routers.iter().map(ToString::to_string))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return error(StatusCode::CONFLICT, &message);
        }
    };
    // What the next pass will do with it, from the same state.
    let mut settings = sources.planning.clone();
    settings.now = std::time::Instant::now();
    let unasked = settings.clone();
    settings.move_off.insert(cidr, from);
    let planned = crate::reconcile::plan::plan(spec, &snap.health, vpc, &settings);
    let moves: Vec<_> = (planned.operations.iter())
        .filter(|op| op.destination == cidr && op.cause == Cause::Drain)
        .filter_map(|op| Some((op.table.clone(), op.target.as_ref()?.host()?)))
        .collect();
    if moves.is_empty() {
        let message = format!(
            "no other router of {cidr} that a probe has confirmed can take it; it stays on {from}"
        );
        return error(StatusCode::CONFLICT, &message);
    }
    // A move the pass after would undo (with AZ affinity, a healthy router
    // keeps its own AZ's tables) costs two writes for nothing.
    let mut moved = (**vpc).clone();
    for op in planned
        .operations
        .iter()
        .filter(|op| op.destination == cidr)
    {
        let _ = moved.apply(op);
    }
    let after = crate::reconcile::plan::plan(spec, &snap.health, &moved, &unasked);
    let undone = (after.operations.iter()).any(|op| {
        op.destination == cidr && op.target.as_ref().is_some_and(|t| t.host() == Some(from))
    });
    if undone {
        let message = format!(
            "{cidr} would return to {from} at the next pass (with --az-affinity a healthy router keeps its own AZ's tables): drain {from} instead"
        );
        return error(StatusCode::CONFLICT, &message);
    }
    if let Err(problem) = sources.moves.ask(cidr, from) {
        return error(StatusCode::SERVICE_UNAVAILABLE, &problem);
    }
    tracing::info!(%cidr, %from, "failover requested");
    let to: BTreeSet<IpAddr> = moves.iter().map(|(_, host)| *host).collect();
    let body = json!({
        "cidr": cidr.to_string(),
        "from": from,
        "to": to,
        "tables": moves.iter().map(|(table, _)| table).collect::<Vec<_>>(),
        "events": "/events",
    });
    json_response(StatusCode::ACCEPTED, body)
}
