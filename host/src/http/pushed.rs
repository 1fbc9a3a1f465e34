//! `POST /health/{ip}`: a router reports its own health (see
//! `health::pushed`): `{"state": "healthy" | "questionable" | "failed",
//! "ttl": SECONDS, "reason": TEXT}`. Token-protected like every request
//! that changes something; only routers of the spec in force are taken.
//! Each replica keeps its own health view, so under HA an agent reports
//! to every replica (as each replica probes every router itself).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use std::net::IpAddr;

use super::{Shared, error, json_response};
use crate::health::{Pushed, State as Health};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum Said {
    Healthy,
    Questionable,
    Failed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    state: Said,
    ttl: u64,
    #[serde(default)]
    reason: String,
}

pub(super) async fn report(
    State(sources): State<Shared>,
    Path(given): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(host) = given.parse::<IpAddr>() else {
        let message = format!("{:?} is not an IP address", crate::text::clip(&given, 64));
        return error(StatusCode::BAD_REQUEST, &message);
    };
    let report: Report = match serde_json::from_slice(&body) {
        Ok(report) => report,
        Err(e) => {
            let message = format!(
                "the body must be JSON {{\"state\": \"healthy\" | \"questionable\" | \"failed\", \"ttl\": SECONDS, \"reason\": TEXT}}: {e}"
            );
            return error(StatusCode::BAD_REQUEST, &message);
        }
    };
    let state = match report.state {
        Said::Healthy => Health::Healthy,
        Said::Questionable => Health::Questionable,
        Said::Failed => Health::Failed,
    };
    let pushed = match Pushed::new(state, report.ttl, &report.reason) {
        Ok(pushed) => pushed,
        Err(problem) => return error(StatusCode::BAD_REQUEST, &problem),
    };
    let router = (sources.specs.current()).is_some_and(|spec| spec.hosts().contains(&host));
    if !router {
        let message = format!("{host} is not a router of the route spec in force");
        return error(StatusCode::NOT_FOUND, &message);
    }
    let ttl = pushed.ttl.as_secs();
    sources.pushed.report(host, pushed);
    json_response(
        StatusCode::OK,
        json!({ "host": host, "state": given_state(state), "ttl": ttl, "ips": "/ips" }),
    )
}

fn given_state(state: Health) -> &'static str {
    match state {
        Health::Healthy => "healthy",
        Health::Questionable => "questionable",
        Health::Failed => "failed",
    }
}
