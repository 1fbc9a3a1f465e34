//! The daemon's HTTP interface: read-only state views (`/`, `/ips`,
//! `/plugins`, `/route_info`, `/vpc`, `/events`), `/metrics`, `/healthz`,
//! `/readyz`, `POST /plugins/reload`, `POST /rebalance`, `POST` and
//! `DELETE /hosts/{ip}/drain`, and the paths
//! config-source plugins serve. Views answer in
//! JSON, indented text or HTML by the `Accept` header. Bodies are bounded,
//! slow requests time out, and a bearer token guards what must be guarded.

mod auth;
mod drain;
mod failover;
mod metrics;
mod negotiate;
mod page;
pub(crate) mod plugin;
mod pushed;
mod serve;
pub mod views;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

pub use auth::{AuthError, AuthPolicy, read_token};
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
    pub reloads: Option<crate::plugin::reload::Reloads>,
    /// Where `POST /rebalance` asks for the balanced spread back.
    pub rebalance: watch::Sender<u64>,
    /// Drains, changed through `POST`/`DELETE /hosts/{ip}/drain`.
    pub drains: Arc<crate::health::Drains>,
    /// Where `POST /routes/{cidr}/failover` asks a CIDR off its router.
    pub moves: crate::reconcile::MoveRequests,
    /// Health routers report themselves (`POST /health/{ip}`).
    pub pushed: Arc<crate::health::PushedHealth>,
}

type Shared = Arc<Sources>;

pub fn router(sources: Sources, handles: &[&PluginHandle], auth: AuthPolicy) -> Router {
    let shared: Shared = Arc::new(sources);
    let router = Router::new()
        .route("/", get(index))
        .route("/ips", get(ips))
        .route("/plugins", get(plugins))
        .route("/plugins/reload", post(reload_plugins).get(reload_status))
        .route("/rebalance", post(rebalance))
        .route(
            "/hosts/{ip}/drain",
            post(drain::drain).delete(drain::undrain),
        )
        .route("/health/{ip}", post(pushed::report))
        .route("/routes/{cidr}/failover", post(failover::escaped))
        .route("/routes/{address}/{length}/failover", post(failover::split))
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

/// Views built and serialised at once: a few clients asking for the whole
/// state of a large spec wait their turn instead of taking every thread.
const VIEW_RENDERS: usize = 2;

fn view_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| tokio::sync::Semaphore::new(VIEW_RENDERS))
}

/// A view in the format the client asked for: JSON, indented JSON as text,
/// or HTML (the status page for `/`, the JSON in a page for the others).
/// Built and serialised on a blocking thread, [`VIEW_RENDERS`] at a time:
/// the runtime's workers stay free for `/healthz`, the probes and the
/// reconciler however many clients ask and however large the state is.
async fn view(
    sources: Shared,
    headers: HeaderMap,
    title: &'static str,
    build: fn(&Sources) -> serde_json::Value,
) -> Response {
    let Ok(_slot) = view_slots().acquire().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    };
    let rendered = tokio::task::spawn_blocking(move || {
        let format = negotiate::format(&headers);
        if format == Format::Html && title == "status" {
            let page = page::status(&views::Snapshot::take(&sources));
            return html(page.into_string());
        }
        let value = build(&sources);
        match format {
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
            Format::Html => html(page::json(title, &value).into_string()),
        }
    });
    rendered.await.unwrap_or_else(|e| {
        tracing::error!("a view failed: {e}");
        error(StatusCode::INTERNAL_SERVER_ERROR, "the view failed")
    })
}

fn html(page: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

async fn index(State(sources): State<Shared>, headers: HeaderMap) -> Response {
    view(sources, headers, "status", views::index).await
}

async fn ips(State(sources): State<Shared>, headers: HeaderMap) -> Response {
    view(sources, headers, "ips", |s| {
        views::ips(&views::Snapshot::take(s))
    })
    .await
}

async fn plugins(State(sources): State<Shared>, headers: HeaderMap) -> Response {
    view(sources, headers, "plugins", views::plugins).await
}

/// The longest `POST /plugins/reload?wait=SECONDS` may wait for the
/// outcome: well within [`REQUEST_TIMEOUT`].
const RELOAD_WAIT_MAX: Duration = Duration::from_secs(8);

#[derive(serde::Deserialize)]
struct ReloadQuery {
    /// Seconds to wait for the outcome before answering 202.
    wait: Option<f64>,
}

/// Reload every plugin whose file changed. Answers 202 at once with the
/// request's number and where to watch; with `?wait=SECONDS` (at most 8)
/// it waits that long for the outcome per plugin (200) first. A request
/// made while a reload runs is answered by the next one (requests are
/// coalesced, never queued one reload each).
async fn reload_plugins(
    State(sources): State<Shared>,
    Query(query): Query<ReloadQuery>,
) -> Response {
    let Some(reloads) = &sources.reloads else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "reloading is not available",
        );
    };
    let wait = match query.wait {
        None => None,
        Some(s) if s.is_finite() && s >= 0.0 => {
            Some(Duration::from_secs_f64(s).min(RELOAD_WAIT_MAX))
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "wait must be a number of seconds (at most 8)",
            );
        }
    };
    let asked = reloads.request();
    let waited = match wait {
        // Not even looked at: without `wait` the answer is always 202.
        None => Err(()),
        Some(wait) => tokio::time::timeout(wait, reloads.outcome(asked))
            .await
            .map_err(drop),
    };
    match waited {
        Ok(Some(outcomes)) => {
            let body = serde_json::json!({ "request": asked, "plugins": &*outcomes });
            json_response(StatusCode::OK, body)
        }
        Ok(None) => error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping"),
        Err(_) => {
            let body = serde_json::json!({
                "reload": "accepted",
                "request": asked,
                "outcome": "GET /plugins/reload: done once its \"answered\" reaches this request; \
                            also in /plugins (reload_error), /events and the log",
            });
            json_response(StatusCode::ACCEPTED, body)
        }
    }
}

/// Where reloading stands: the last request and the last reload's outcome.
async fn reload_status(State(sources): State<Shared>) -> Response {
    match &sources.reloads {
        Some(reloads) => json_response(StatusCode::OK, serde_json::json!(reloads.latest())),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "reloading is not available",
        ),
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Under HA, a replica that does not write routes refuses what would move
/// them, naming the leader to ask.
fn not_leader(sources: &Sources) -> Option<Response> {
    let status = sources.ha.as_ref()?.borrow().clone();
    (status.role != crate::ha::Role::Leader).then(|| {
        let leader = status.leader.as_deref().unwrap_or("unknown");
        let message = format!(
            "this replica ({}) does not write routes; ask the leader ({leader})",
            status.id
        );
        error(StatusCode::CONFLICT, &message)
    })
}

/// Ask the reconciler to move the fewest routes that bring every router
/// within the balanced bound; it does so over the next passes.
async fn rebalance(State(sources): State<Shared>) -> Response {
    if let Some(refused) = not_leader(&sources) {
        return refused;
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
    view(sources, headers, "route_info", |s| {
        views::route_info(&views::Snapshot::take(s), &s.planning.ignore_routes)
    })
    .await
}

async fn vpc(State(sources): State<Shared>, headers: HeaderMap) -> Response {
    view(sources, headers, "vpc", |s| {
        views::vpc(&views::Snapshot::take(s))
    })
    .await
}

async fn plan(State(sources): State<Shared>, headers: HeaderMap) -> Response {
    view(sources, headers, "plan", |s| {
        views::plan(&views::Snapshot::take(s), &s.planning)
    })
    .await
}

async fn events(State(sources): State<Shared>, headers: HeaderMap) -> Response {
    view(
        sources,
        headers,
        "events",
        |s| serde_json::json!({ "events": s.events.latest(crate::events::CAPACITY) }),
    )
    .await
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
