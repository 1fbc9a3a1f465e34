//! Probes run by the host on behalf of health-check plugins: a whole batch
//! per call, concurrently on tokio with a per-probe timeout and a bound on
//! probes in flight, so one plugin call covers thousands of hosts without a
//! thread per host.

use futures_util::StreamExt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Probes of one batch in flight at once (each holds a socket).
pub const MAX_IN_FLIGHT: usize = 1024;

/// The outcome of probing one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    pub rtt: Option<Duration>,
    pub error: Option<String>,
}

impl Outcome {
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            ok: false,
            rtt: None,
            error: Some(error.into()),
        }
    }
}

/// TCP connect to `port` on each host; results in the order given.
pub async fn tcp(hosts: Vec<IpAddr>, port: u16, timeout: Duration) -> Vec<Outcome> {
    futures_util::stream::iter(hosts)
        .map(|host| tcp_one(SocketAddr::new(host, port), timeout))
        .buffered(MAX_IN_FLIGHT)
        .collect()
        .await
}

async fn tcp_one(addr: SocketAddr, timeout: Duration) -> Outcome {
    let start = Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(connection)) => {
            let rtt = start.elapsed();
            // Close with a reset, as load balancers' health checks do: no FIN
            // exchange and no TIME_WAIT entry per probe on either side.
            let _ = connection.set_zero_linger();
            Outcome {
                ok: true,
                rtt: Some(rtt),
                error: None,
            }
        }
        Ok(Err(e)) => Outcome::failed(connect_error(&e)),
        Err(_) => Outcome::failed(format!("no answer within {timeout:?}")),
    }
}

fn connect_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn up_refused_and_silent_hosts_are_told_apart_in_order() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // A listener with a full accept queue never completes a handshake.
        let silent =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        silent
            .bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        silent.listen(0).unwrap();
        let silent_addr = silent.local_addr().unwrap().as_socket().unwrap();
        let _queued: Vec<_> = (0..4)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&silent_addr, Duration::from_millis(50)).ok()
            })
            .collect();

        let up = tcp(
            vec!["127.0.0.1".parse().unwrap()],
            port,
            Duration::from_secs(1),
        )
        .await;
        assert!(up[0].ok && up[0].rtt.is_some(), "{up:?}");
        drop(listener);
        let refused = tcp(
            vec!["127.0.0.1".parse().unwrap()],
            port,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(refused[0], Outcome::failed("connection refused"));
        let started = Instant::now();
        let silent = tcp(
            vec![silent_addr.ip()],
            silent_addr.port(),
            Duration::from_millis(200),
        )
        .await;
        assert_eq!(silent[0], Outcome::failed("no answer within 200ms"));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
