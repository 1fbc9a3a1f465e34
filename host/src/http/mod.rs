//! The daemon's HTTP interface: read-only state views (`/`, `/ips`,
//! `/plugins`, `/route_info`, `/vpc`, `/events`), `/metrics`, `/healthz`,
//! `/readyz`, `POST /plugins/reload` and `POST /rebalance`, and the paths
//! config-source plugins serve. Views answer in
//! JSON, indented text or HTML by the `Accept` header. Bodies are bounded,
//! slow requests time out, and a bearer token guards what must be guarded.

mod auth;
mod metrics;
mod negotiate;
mod page;
pub(crate) mod plugin;
mod serve;
pub mod views;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot, watch};

pub use auth::{AuthError, AuthPolicy};
pub use serve::serve;

use crate::cloud::budget::Budget;
use crate::events::EventLog;
use crate::health::HealthBoard;
use crate::plugin::{PluginHandle, PluginKind, PluginStatus};
use crate::reconcile::RouteReport;
use crate::spec::MAX_SPEC_BYTES;
use crate::spec_store::SpecStore;
use negotiate::Format;

/// A request, body included, must be done within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A loaded plugin as the views show it.
pub struct PluginView {
    pub name: String,
    pub kind: PluginKind,
    pub file: PathBuf,
    /// The version running, its state and figures.
    pub status: watch::Receiver<PluginStatus>,
}

/// Everything the views read; shared by all requests.
pub struct Sources {
    pub started: SystemTime,
    /// The main command-line parameters, for `/`.
    pub params: serde_json::Value,
    pub plugins: Vec<PluginView>,
    pub specs: Arc<SpecStore>,
    pub board: Arc<HealthBoard>,
    pub routes: watch::Receiver<RouteReport>,
    pub events: Arc<EventLog>,
    /// The EC2 call budget (absent on the embedded VPC).
    pub budget: Option<Arc<Budget>>,
    /// The planner's settings, for `/plan` (and `ignore_routes` for views).
    pub planning: crate::reconcile::plan::Settings,
    /// This replica's view of the HA election, when HA is on.
    pub ha: Option<watch::Receiver<crate::ha::HaStatus>>,
    /// Where `POST /plugins/reload` asks for a reload.
    pub reloads: Option<mpsc::Sender<crate::plugin::reload::ReloadRequest>>,
    /// Where `POST /rebalance` asks for the balanced spread back.
    pub rebalance: watch::Sender<u64>,
}

type Shared = Arc<Sources>;

pub fn router(sources: Sources, handles: &[&PluginHandle], auth: AuthPolicy) -> Router {
    let shared: Shared = Arc::new(sources);
    let router = Router::new()
        .route("/", get(index))
        .route("/ips", get(ips))
        .route("/plugins", get(plugins))
        .route("/plugins/reload", post(reload_plugins))
        .route("/rebalance", post(rebalance))
        .route("/route_info", get(route_info))
        .route("/vpc", get(vpc))
        .route("/plan", get(plan))
        .route("/events", get(events))
        .route("/metrics", get(metrics::scrape))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(shared);
    let mut plugin_paths = std::collections::HashMap::new();
    for handle in handles {
        for path in &handle.http_paths {
            plugin_paths.insert(path.clone(), handle.http());
        }
    }
    let auth = auth.guarding(plugin_paths.keys().cloned());
    router
        .fallback_service(any(plugin::dispatch).with_state(Arc::new(plugin_paths)))
        .layer(middleware::from_fn_with_state(Arc::new(auth), auth::check))
        .layer(middleware::from_fn(deadline))
        .layer(DefaultBodyLimit::max(MAX_SPEC_BYTES))
}

/// Slow clients (a body trickling in, a plugin that does not answer) get
/// 408 instead of holding a request open.
async fn deadline(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(StatusCode::REQUEST_TIMEOUT, "request took too long"),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A view in the format the client asked for: JSON, indented JSON as text,
/// or HTML (the status page for `/`, the JSON in a page for the others).
fn respond(
    headers: &HeaderMap,
    title: &str,
    value: serde_json::Value,
    sources: &Sources,
) -> Response {
    match negotiate::format(headers) {
        Format::Json => (
            [(header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
            .into_response(),
        Format::Text => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            serde_json::to_string_pretty(&value).expect("JSON") + "\n",
        )
            .into_response(),
        Format::Html => {
            let html = match title {
                "status" => page::status(&views::Snapshot::take(sources)),
                _ => page::json(title, &value),
            };
            (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html.into_string(),
            )
                .into_response()
        }
    }
}

async fn index(State(sources): State<Shared>, headers: HeaderMap) -> Response {
    let view = views::index(&sources);
    respond(&headers, "status", view, &sources)
}

async fn ips(State(sources): State<Shared>, headers: HeaderMap) -> Response {
    let view = views::ips(&views::Snapshot::take(&sources));
    respond(&headers, "ips", view, &sources)
}

async fn plugins(State(sources): State<Shared>, headers: HeaderMap) -> Response {
    let view = views::plugins(&sources);
    respond(&headers, "plugins", view, &sources)
}

/// Reload every plugin whose file changed; the outcome per plugin.
async fn reload_plugins(State(sources): State<Shared>) -> Response {
    let Some(reloads) = &sources.reloads else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "reloading is not available",
        );
    };
    let (reply, outcomes) = oneshot::channel();
    if reloads.send(Some(reply)).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    match outcomes.await {
        Ok(outcomes) => {
            let body = serde_json::json!({ "plugins": outcomes });
            (
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the reload was cut short"),
    }
}

/// Ask the reconciler to move the fewest routes that bring every router
/// within the balanced bound; it does so over the next passes.
async fn rebalance(State(sources): State<Shared>) -> Response {
    if let Some(ha) = &sources.ha {
        let status = ha.borrow();
        if status.role != crate::ha::Role::Leader {
            let leader = status.leader.as_deref().unwrap_or("unknown");
            let message = format!(
                "this replica ({}) does not write routes; ask the leader ({leader})",
                status.id
            );
            return error(StatusCode::CONFLICT, &message);
        }
    }
    sources.rebalance.send_modify(|requests| *requests += 1);
    let body = serde_json::json!({
        "rebalance": "requested",
        "events": "/events",
    });
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn route_info(State(sources): State<Shared>, headers: HeaderMap) -> Response {
    let view = views::route_info(
        &views::Snapshot::take(&sources),
        &sources.planning.ignore_routes,
    );
    respond(&headers, "route_info", view, &sources)
}

async fn vpc(State(sources): State<Shared>, headers: HeaderMap) -> Response {
    let view = views::vpc(&views::Snapshot::take(&sources));
    respond(&headers, "vpc", view, &sources)
}

async fn plan(State(sources): State<Shared>, headers: HeaderMap) -> Response {
    let view = views::plan(&views::Snapshot::take(&sources), &sources.planning);
    respond(&headers, "plan", view, &sources)
}

async fn events(State(sources): State<Shared>, headers: HeaderMap) -> Response {
    let view = serde_json::json!({ "events": sources.events.latest(crate::events::CAPACITY) });
    respond(&headers, "events", view, &sources)
}

/// The process is alive and serving.
async fn healthz() -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], "ok\n").into_response()
}

/// Ready: a spec is in force, the VPC has been observed, and the last
/// reconcile round succeeded. 503 with the reasons otherwise.
async fn readyz(State(sources): State<Shared>) -> Response {
    let readiness = views::readiness(&views::Snapshot::take(&sources));
    let status = match readiness["ready"].as_bool() {
        Some(true) => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        readiness.to_string(),
    )
        .into_response()
}
