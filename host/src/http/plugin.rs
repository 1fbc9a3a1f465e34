//! Paths config-source plugins serve (the http plugin's `/route_spec`),
//! passed to the plugin through its supervisor.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use crate::plugin::{HttpCall, HttpRequest};

/// How long a request waits for a plugin that is busy or restarting.
const PLUGIN_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn to_plugin(
    State(plugin): State<mpsc::Sender<HttpCall>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = HttpRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        headers: headers
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    };
    let (reply, answer) = oneshot::channel();
    if plugin.try_send(HttpCall { request, reply }).is_err() {
        return unavailable("plugin is overloaded or stopped");
    }
    match tokio::time::timeout(PLUGIN_REPLY_TIMEOUT, answer).await {
        Ok(Ok(response)) => {
            let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::BAD_GATEWAY);
            (
                status,
                [(header::CONTENT_TYPE, response.content_type)],
                response.body,
            )
                .into_response()
        }
        Ok(Err(_)) => unavailable("plugin stopped before answering"),
        Err(_) => unavailable("plugin did not answer in time"),
    }
}

fn unavailable(message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
