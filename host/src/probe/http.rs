//! HTTP(S) probes: each host is asked for one path, over a connection of
//! its own, and the status and the start of the body are the outcome. The
//! whole exchange (connect, TLS, request, head and the body bytes asked
//! for) runs within the host's timeout; the rest of the body is never
//! read. What a status means (200 healthy, 429 questionable, ...) is the
//! plugin's to say.

use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::ClientConfig;

use super::{MAX_IN_FLIGHT, Outcome, ProbeShare, Sink, Target, connect_error};

/// The most of a body a probe hands back.
pub const MAX_BODY_BYTES: usize = 4096;
/// The longest path (with its query) a probe may ask for.
pub const MAX_PATH: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Head,
}

/// What every host of a round is asked.
#[derive(Clone)]
pub struct Check {
    pub verb: Verb,
    pub port: u16,
    path: String,
    /// HTTPS, verifying the router by the plugin's CA grant.
    pub tls: Option<Arc<ClientConfig>>,
    /// The name the certificate must carry and the `Host` header; the
    /// router's address when `None`.
    server_name: Option<String>,
    body_bytes: usize,
}

impl Check {
    /// A check as a plugin asked for it, or why it cannot be sent: a path
    /// that is not an origin-form request target, a server name that is
    /// not a DNS name or address. Body bytes over the bound are cut.
    pub fn new(
        verb: Verb,
        port: u16,
        path: String,
        server_name: Option<String>,
        body_bytes: u32,
    ) -> Result<Self, String> {
        if port == 0 {
            return Err("port 0".into());
        }
        if !path.starts_with('/')
            || path.len() > MAX_PATH
            || !path.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!(
                "path {:?}: expected '/' then printable ASCII, at most {MAX_PATH} bytes",
                crate::text::clip(&path, 64)
            ));
        }
        if let Some(name) = &server_name
            && rustls_pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            return Err(format!(
                "server name {:?}: not a DNS name or IP address",
                crate::text::clip(name, 64)
            ));
        }
        Ok(Self {
            verb,
            port,
            path,
            tls: None,
            server_name,
            body_bytes: (body_bytes as usize).min(MAX_BODY_BYTES),
        })
    }
}

/// What a host answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// At most the body bytes the check asked for.
    pub body: Vec<u8>,
}

/// Ask every target concurrently, each outcome sent to `sink` as soon as
/// it is known, within `share`'s connect slots.
pub async fn probe(targets: Vec<Target>, check: Arc<Check>, sink: Sink, share: &ProbeShare) {
    let mut probes = futures_util::stream::iter(targets)
        .map(|target| {
            let check = check.clone();
            async move {
                let addr = SocketAddr::new(target.host, check.port);
                (target.index, ask(addr, &check, target.timeout, share).await)
            }
        })
        .buffer_unordered(MAX_IN_FLIGHT);
    while let Some(result) = probes.next().await {
        if sink.send(result).is_err() {
            return;
        }
    }
}

async fn ask(addr: SocketAddr, check: &Check, timeout: Duration, share: &ProbeShare) -> Outcome {
    let _slot = share.0.acquire().await.expect("never closed");
    let start = Instant::now();
    match tokio::time::timeout(timeout, exchange(addr, check, start)).await {
        Ok(Ok((rtt, answer))) => Outcome {
            response: Some(answer),
            ..Outcome::answered(rtt)
        },
        Ok(Err(e)) => Outcome::failed(e),
        Err(_) => Outcome::silent(timeout),
    }
}

/// Connect, speak TLS if asked, send the request: the time to the
/// response's head and the answer.
async fn exchange(
    addr: SocketAddr,
    check: &Check,
    start: Instant,
) -> Result<(Duration, Answer), String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| connect_error(&e))?;
    let _ = tcp.set_nodelay(true);
    let name = check
        .server_name
        .clone()
        .unwrap_or_else(|| addr.ip().to_string());
    let authority = match addr {
        SocketAddr::V6(_) if check.server_name.is_none() => format!("[{name}]:{}", addr.port()),
        _ => format!("{name}:{}", addr.port()),
    };
    let request = hyper::Request::builder()
        .method(match check.verb {
            Verb::Get => hyper::Method::GET,
            Verb::Head => hyper::Method::HEAD,
        })
        .uri(check.path.as_str())
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, "vpcrouter-probe")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;
    match &check.tls {
        None => over(tcp, request, check.body_bytes, start).await,
        Some(config) => {
            let server = rustls_pki_types::ServerName::try_from(name)
                .map_err(|e| format!("TLS server name: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(server, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            over(tls, request, check.body_bytes, start).await
        }
    }
}

/// One request over an open connection; reads no more of the body than
/// `body_bytes`.
async fn over<S>(
    stream: S,
    request: hyper::Request<Empty<Bytes>>,
    body_bytes: usize,
    start: Instant,
) -> Result<(Duration, Answer), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(connection);
    let sent = sender.send_request(request).await;
    let rtt = start.elapsed();
    let response = match sent {
        Ok(response) => response,
        Err(e) => {
            driver.abort();
            return Err(http_error(&e));
        }
    };
    let status = response.status().as_u16();
    let mut body = Vec::new();
    let mut stream = response.into_body();
    while body.len() < body_bytes {
        match stream.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    body.extend_from_slice(data);
                }
            }
            Some(Err(e)) => {
                driver.abort();
                return Err(format!("response body: {}", http_error(&e)));
            }
            None => break,
        }
    }
    body.truncate(body_bytes);
    driver.abort();
    Ok((rtt, Answer { status, body }))
}

/// hyper's error with its cause ("connection reset by peer" rather than
/// "connection error").
fn http_error(e: &hyper::Error) -> String {
    use std::error::Error;
    match e.source() {
        Some(cause) => format!("HTTP: {e}: {cause}"),
        None => format!("HTTP: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A loopback server answering each connection with `reply` (after
    /// reading the request head); `None` resets the connection.
    fn server(reply: Option<&'static str>) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut connection in listener.incoming().flatten() {
                let mut head = [0u8; 1024];
                let _ = connection.read(&mut head);
                match reply {
                    Some(reply) => {
                        let _ = connection.write_all(reply.as_bytes());
                    }
                    None => {
                        let _ =
                            socket2::SockRef::from(&connection).set_linger(Some(Duration::ZERO));
                    }
                }
            }
        });
        addr
    }

    async fn outcome(addr: SocketAddr, check: Check, timeout: Duration) -> Outcome {
        let (sink, mut arrived) = tokio::sync::mpsc::unbounded_channel();
        let target = Target {
            index: 0,
            host: addr.ip(),
            timeout,
        };
        let check = Arc::new(Check {
            port: addr.port(),
            ..check
        });
        probe(vec![target], check, sink, &ProbeShare::default()).await;
        arrived.recv().await.unwrap().1
    }

    fn get(body_bytes: u32) -> Check {
        Check::new(Verb::Get, 1, "/healthz".into(), None, body_bytes).unwrap()
    }

    #[tokio::test]
    async fn statuses_and_the_start_of_the_body_come_back() {
        let ok = server(Some(
            "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
        ));
        let got = outcome(ok, get(5), Duration::from_secs(2)).await;
        assert!(got.ok && got.rtt.is_some(), "{got:?}");
        let answer = got.response.unwrap();
        assert_eq!(
            (answer.status, answer.body.as_slice()),
            (200, &b"hello"[..])
        );

        let busy = server(Some(
            "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n",
        ));
        let got = outcome(busy, get(0), Duration::from_secs(2)).await;
        assert_eq!(got.response.unwrap().status, 429);
    }

    #[tokio::test]
    async fn a_reset_a_refusal_and_silence_are_errors() {
        let reset = server(None);
        let got = outcome(reset, get(0), Duration::from_secs(2)).await;
        assert!(!got.ok && got.response.is_none(), "{got:?}");
        assert!(got.error.unwrap().starts_with("HTTP"));

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let got = outcome(addr, get(0), Duration::from_secs(2)).await;
        assert_eq!(got.error.as_deref(), Some("connection refused"));

        // Accepts, reads, never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let started = Instant::now();
        let got = outcome(addr, get(0), Duration::from_millis(300)).await;
        assert!(got.timed_out, "{got:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(silent);
    }

    #[test]
    fn requests_that_cannot_be_meant_are_refused() {
        let new = |path: &str, name: Option<&str>| {
            Check::new(Verb::Head, 80, path.into(), name.map(Into::into), 10)
        };
        assert!(new("/ok?x=1", None).is_ok());
        assert!(new("healthz", None).is_err());
        assert!(new("/a b", None).is_err());
        assert!(new("/a\r\nX-Evil: 1", None).is_err());
        assert!(new(&format!("/{}", "a".repeat(MAX_PATH)), None).is_err());
        assert!(new("/", Some("router.internal")).is_ok());
        assert!(new("/", Some("bad name")).is_err());
        let big = Check::new(Verb::Get, 80, "/".into(), None, u32::MAX).unwrap();
        assert_eq!(big.body_bytes, MAX_BODY_BYTES);
    }
}
