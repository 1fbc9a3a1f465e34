//! A small HTTP/1.1 client for the outside services the daemon talks to:
//! a plugin's granted endpoint (on its behalf) and etcd (for HA, on its
//! own). One connection per request, so a broken connection never carries
//! over; TLS by rustls from the operator's PEM files; response bodies
//! bounded. Callers bound the time.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// An outside service: host, port and how to speak TLS to it.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// TLS, set up by the host from the operator's PEM files.
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// The PEM files of an endpoint's TLS: a CA to verify it by (turns TLS
/// on), and a client certificate with its key to present.
#[derive(Debug, Default)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// The client configuration: verify the server by the CA bundle, and
    /// present the client certificate when one is given. `None` without a
    /// CA (plain HTTP).
    pub fn client_config(&self) -> Result<Option<Arc<tokio_rustls::rustls::ClientConfig>>, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls::{ClientConfig, RootCertStore};
        let Some(ca) = &self.ca else {
            if self.cert.is_some() || self.key.is_some() {
                return Err("a client certificate needs the CA option too (TLS)".into());
            }
            return Ok(None);
        };
        let shown = |path: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| shown(ca, &e))? {
            let cert = cert.map_err(|e| shown(ca, &e))?;
            roots.add(cert).map_err(|e| shown(ca, &e))?;
        }
        if roots.is_empty() {
            return Err(shown(ca, &"no certificate in the CA bundle"));
        }
        let builder = ClientConfig::builder().with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| shown(cert, &e))?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| shown(key, &e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("the client certificate and its key go together".into()),
        };
        Ok(Some(Arc::new(config)))
    }
}

/// An answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Send `request` (method, path and headers set; `Host` is set here) with
/// `body` to `endpoint`; bodies over `max_body` bytes are an error.
pub async fn send(
    endpoint: &Endpoint,
    request: hyper::http::request::Builder,
    body: Vec<u8>,
    max_body: usize,
) -> Result<Response, String> {
    let request = request
        .header(
            hyper::header::HOST,
            format!("{}:{}", endpoint.host, endpoint.port),
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("bad request: {e}"))?;
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    match &endpoint.tls {
        None => exchange(tcp, request, max_body).await,
        Some(config) => {
            let name = rustls_pki_types::ServerName::try_from(endpoint.host.clone())
                .map_err(|e| format!("TLS server name {:?}: {e}", endpoint.host))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(tls, request, max_body).await
        }
    }
}

/// One request and its response over an open connection.
async fn exchange<S>(
    stream: S,
    request: hyper::Request<Full<Bytes>>,
    max_body: usize,
) -> Result<Response, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let body = Limited::new(response.into_body(), max_body)
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?
        .to_bytes()
        .to_vec();
    driver.abort();
    Ok(Response {
        status,
        headers,
        body,
    })
}
