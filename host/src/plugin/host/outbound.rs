//! The outbound capability: HTTP/1.1 requests to the one endpoint the
//! operator granted, TLS done here (the plugin never sees keys). The host
//! owns the request's framing (`Host`, `Content-Length`, the connection
//! headers); the plugin chooses the method, an origin-form path, its other
//! headers and a bounded body. One connection per request: the bundled
//! users poll a few times a second at most, and a fresh connection never
//! carries a broken state over.

use std::time::Duration;

use super::super::bindings::config::vpcrouter::plugin::outbound::{
    Host, OutboundRequest, OutboundResponse,
};
use super::super::grants::Endpoint;
use super::super::instance::HostState;
use super::super::limits::MAX_OUTBOUND_PER_CALL;
use crate::http_client;

/// Longest a request may take: a call's [`MAX_OUTBOUND_PER_CALL`] requests,
/// one after another, fit in the host time a call may wait (`MAX_HOST_WAIT`).
const MAX_TIMEOUT: Duration = Duration::from_millis(1500);
/// Largest response body accepted.
const MAX_RESPONSE_BYTES: usize = 8 << 20;
/// Largest request body, and most headers, a plugin may send.
const MAX_REQUEST_BYTES: usize = 1 << 20;
const MAX_REQUEST_HEADERS: usize = 64;

/// Headers the host sets or forbids: framing and connection management.
/// A plugin's own would put a second `Host` or a wrong length on the wire.
const FRAMING: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

impl Host for HostState {
    async fn send(
        &mut self,
        request: OutboundRequest,
    ) -> wasmtime::Result<Result<OutboundResponse, String>> {
        let Some(endpoint) = self.grants.endpoint.clone() else {
            tracing::warn!(
                plugin = &*self.plugin,
                "denied: outbound request without a granted endpoint"
            );
            return Ok(Err("no endpoint granted to this plugin".into()));
        };
        if !self.usage.outbound() {
            return Ok(Err(format!(
                "refused: at most {MAX_OUTBOUND_PER_CALL} outbound requests per call"
            )));
        }
        if let Err(e) = check(&request) {
            return Ok(Err(format!("bad request: {e}")));
        }
        let timeout = Duration::from_millis(request.timeout_ms.into()).min(MAX_TIMEOUT);
        let sent = tokio::time::timeout(timeout, send(&endpoint, request));
        let answer = match self.usage.wait(sent).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        };
        Ok(answer.map_err(|e| format!("{endpoint:?}: {e}")))
    }
}

/// What the plugin chose must fit in a well-formed request to the granted
/// endpoint: an origin-form path (never an absolute URL), few headers, a
/// bounded body.
fn check(request: &OutboundRequest) -> Result<(), String> {
    if !request.path.starts_with('/') || request.path.starts_with("//") {
        return Err("the path must start with a single '/'".into());
    }
    if request.headers.len() > MAX_REQUEST_HEADERS {
        return Err(format!("more than {MAX_REQUEST_HEADERS} headers"));
    }
    if request.body.len() > MAX_REQUEST_BYTES {
        return Err(format!("a body over {MAX_REQUEST_BYTES} bytes"));
    }
    Ok(())
}

async fn send(endpoint: &Endpoint, request: OutboundRequest) -> Result<OutboundResponse, String> {
    let mut builder = hyper::Request::builder()
        .method(request.method.as_str())
        .uri(&request.path);
    let own = request
        .headers
        .iter()
        .filter(|(name, _)| !FRAMING.contains(&name.trim().to_ascii_lowercase().as_str()));
    for (name, value) in own {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let response = http_client::send(endpoint, builder, request.body, MAX_RESPONSE_BYTES).await?;
    Ok(OutboundResponse {
        status: response.status,
        headers: response.headers,
        body: response.body,
    })
}
