//! The outbound capability: HTTP/1.1 requests to the one endpoint the
//! operator granted, TLS done here (the plugin never sees keys). The host
//! owns the request's framing (`Host`, `Content-Length`, the connection
//! headers); the plugin chooses the method, an origin-form path, its other
//! headers and a bounded body. One connection per request: the bundled
//! users poll a few times a second at most, and a fresh connection never
//! carries a broken state over.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::super::bindings::config::vpcrouter::plugin::outbound::{
    Host, OutboundRequest, OutboundResponse,
};
use super::super::grants::Endpoint;
use super::super::instance::HostState;
use super::super::limits::MAX_OUTBOUND_PER_CALL;

/// Longest a request may take, below the plugin call deadline (2 s).
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
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    match &endpoint.tls {
        None => exchange(tcp, endpoint, request).await,
        Some(config) => {
            let name = rustls_pki_types::ServerName::try_from(endpoint.host.clone())
                .map_err(|e| format!("TLS server name {:?}: {e}", endpoint.host))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(tls, endpoint, request).await
        }
    }
}

/// One request and its response over an open connection.
async fn exchange<S>(
    stream: S,
    endpoint: &Endpoint,
    request: OutboundRequest,
) -> Result<OutboundResponse, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(connection);
    let mut builder = hyper::Request::builder()
        .method(request.method.as_str())
        .uri(&request.path)
        .header(
            hyper::header::HOST,
            format!("{}:{}", endpoint.host, endpoint.port),
        );
    let own = request
        .headers
        .iter()
        .filter(|(name, _)| !FRAMING.contains(&name.trim().to_ascii_lowercase().as_str()));
    for (name, value) in own {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let outgoing = builder
        .body(Full::new(Bytes::from(request.body)))
        .map_err(|e| format!("bad request: {e}"))?;
    let response = sender
        .send_request(outgoing)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?
        .to_bytes()
        .to_vec();
    driver.abort();
    Ok(OutboundResponse {
        status,
        headers,
        body,
    })
}
