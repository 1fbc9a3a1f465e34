//! Paths config-source plugins serve (the http plugin's `/route_spec`),
//! matched exactly and passed to the plugin through its supervisor. The
//! request a plugin sees carries no credentials, and what it answers is
//! checked before it goes out.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use crate::plugin::{HttpCall, HttpRequest, HttpResponse};

/// How long a request waits for a plugin that is busy or restarting.
const PLUGIN_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest response body a plugin may send back.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Headers a plugin never sees: the operator's bearer token and anything
/// else that authenticates the client.
const CREDENTIALS: [header::HeaderName; 3] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
];

/// Exact path -> the plugin serving it.
pub type PluginPaths = Arc<HashMap<String, mpsc::Sender<HttpCall>>>;

/// Every path no view claims: a plugin's exact path, or 404.
pub async fn dispatch(
    State(paths): State<PluginPaths>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(plugin) = paths.get(uri.path()) else {
        return super::error(StatusCode::NOT_FOUND, "no such path");
    };
    let request = HttpRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        headers: headers
            .iter()
            .filter(|(name, _)| !CREDENTIALS.contains(name))
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body: body.to_vec(),
    };
    let (reply, answer) = oneshot::channel();
    if plugin.try_send(HttpCall { request, reply }).is_err() {
        return super::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "plugin is overloaded or stopped",
        );
    }
    match tokio::time::timeout(PLUGIN_REPLY_TIMEOUT, answer).await {
        Ok(Ok(response)) => checked(response),
        Ok(Err(_)) => super::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "plugin stopped before answering",
        ),
        Err(_) => super::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "plugin did not answer in time",
        ),
    }
}

/// A plugin's answer as a response, or 502 saying what was wrong with it:
/// a status outside 200-599 (no informational or protocol-switching
/// answers), a content type that is not a valid header value, a body over
/// [`MAX_RESPONSE_BYTES`].
pub fn checked(response: HttpResponse) -> Response {
    let status = StatusCode::from_u16(response.status)
        .ok()
        .filter(|s| (200..600).contains(&s.as_u16()));
    let Some(status) = status else {
        return super::error(
            StatusCode::BAD_GATEWAY,
            &format!("plugin answered with status {}", response.status),
        );
    };
    let content_type = HeaderValue::from_str(&response.content_type)
        .ok()
        .filter(|v| v.len() <= 256);
    let Some(content_type) = content_type else {
        return super::error(
            StatusCode::BAD_GATEWAY,
            "plugin answered with an invalid content type",
        );
    };
    if response.body.len() > MAX_RESPONSE_BYTES {
        return super::error(
            StatusCode::BAD_GATEWAY,
            &format!(
                "plugin answered with {} bytes; at most {MAX_RESPONSE_BYTES}",
                response.body.len()
            ),
        );
    }
    (
        status,
        [(header::CONTENT_TYPE, content_type)],
        response.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, content_type: &str, body: usize) -> Response {
        checked(HttpResponse {
            status,
            content_type: content_type.into(),
            body: vec![b'x'; body],
        })
    }

    #[test]
    fn only_well_formed_answers_go_out() {
        assert_eq!(answer(200, "text/plain", 2).status(), StatusCode::OK);
        assert_eq!(answer(404, "application/json", 0).status(), 404);
        for bad in [
            answer(101, "text/plain", 0),
            answer(99, "text/plain", 0),
            answer(600, "text/plain", 0),
            answer(200, "text/plain\r\nSet-Cookie: a=b", 0),
            answer(200, "text/plain", MAX_RESPONSE_BYTES + 1),
        ] {
            assert_eq!(bad.status(), StatusCode::BAD_GATEWAY);
        }
    }
}
