//! The probe engine: the host probes router hosts on behalf of health-check
//! plugins, a whole batch at once, concurrently on tokio with a timeout per
//! host and a bound on probes in flight, so one plugin call covers thousands
//! of hosts without a thread per host. Each outcome is handed over the
//! moment it is known. Which hosts a plugin may probe is the plugin
//! runtime's business (`plugin::host::probes`); what an outcome means is the
//! plugin's.

use futures_util::StreamExt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

pub mod half_open;
pub mod http;
pub mod icmp;
pub mod rtt;

mod exchange;
mod socket;

/// Probes of one batch in flight at once (each holds a socket).
pub const MAX_IN_FLIGHT: usize = 1024;

/// TCP connects one health-check plugin may have in flight, whatever the
/// number of its rounds: each holds a descriptor. A probe waits for a slot
/// before its timeout starts, so waiting delays a verdict but never fails
/// a router.
pub const MAX_CONNECTS: usize = MAX_IN_FLIGHT;

/// One plugin's share of the probe capacity: its own connect slots, shared
/// by its rounds, batches and instances. Shares are never pooled: a plugin
/// holding all its slots on silent hosts delays only its own probes, never
/// another plugin's (and so never the bundled checker's failover).
#[derive(Debug, Clone)]
pub struct ProbeShare(std::sync::Arc<tokio::sync::Semaphore>);

impl Default for ProbeShare {
    fn default() -> Self {
        Self(std::sync::Arc::new(tokio::sync::Semaphore::new(
            MAX_CONNECTS,
        )))
    }
}

/// The outcome of probing one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    pub rtt: Option<Duration>,
    pub error: Option<String>,
    /// No answer came in time (rather than a refusal or an error).
    pub timed_out: bool,
    /// An HTTP probe's response (`ok` then means "a response came",
    /// whatever its status: what a status means is the plugin's).
    pub response: Option<http::Answer>,
}

impl Outcome {
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            ok: false,
            rtt: None,
            error: Some(error.into()),
            timed_out: false,
            response: None,
        }
    }

    fn answered(rtt: Duration) -> Self {
        Self {
            ok: true,
            rtt: Some(rtt),
            error: None,
            timed_out: false,
            response: None,
        }
    }

    fn silent(timeout: Duration) -> Self {
        Self {
            timed_out: true,
            ..Self::failed(format!("no answer within {timeout:?}"))
        }
    }
}

/// One host of a batch, with how long it may stay silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Its position in the caller's batch, handed back with its outcome.
    pub index: usize,
    pub host: IpAddr,
    pub timeout: Duration,
}

/// Where outcomes go the moment each is known: (target index, outcome).
/// Probing stops early when the receiver is gone.
pub type Sink = mpsc::UnboundedSender<(usize, Outcome)>;

/// How a host is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// A TCP handshake on this port, then a reset.
    Tcp(u16),
    /// A SYN to this port: SYN-ACK or reset (raw socket).
    HalfOpen(u16),
    /// An ICMP echo request.
    Icmp,
}

impl Method {
    /// Probe every target concurrently, each outcome sent to `sink` as soon
    /// as it is known (a silent host holds back no other), within `share`.
    pub async fn run(self, targets: Vec<Target>, sink: Sink, share: &ProbeShare) {
        match self {
            Method::Tcp(port) => tcp(targets, port, sink, share).await,
            Method::HalfOpen(port) => half_open::probe(targets, port, sink).await,
            Method::Icmp => icmp::echo(targets, sink).await,
        }
    }

    /// Every host's outcome, in the order given, with one timeout.
    pub async fn outcomes(self, hosts: &[IpAddr], timeout: Duration) -> Vec<Outcome> {
        let targets = hosts
            .iter()
            .enumerate()
            .map(|(index, &host)| Target {
                index,
                host,
                timeout,
            })
            .collect();
        let (sink, mut arrived) = mpsc::unbounded_channel();
        self.run(targets, sink, &ProbeShare::default()).await;
        let mut outcomes = vec![None; hosts.len()];
        while let Ok((i, outcome)) = arrived.try_recv() {
            outcomes[i] = Some(outcome);
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::failed("not probed")))
            .collect()
    }
}

/// TCP connect to `port` on each target.
async fn tcp(targets: Vec<Target>, port: u16, sink: Sink, share: &ProbeShare) {
    let mut probes = futures_util::stream::iter(targets)
        .map(|target| async move {
            let addr = SocketAddr::new(target.host, port);
            (target.index, tcp_one(addr, target.timeout, share).await)
        })
        .buffer_unordered(MAX_IN_FLIGHT);
    while let Some(result) = probes.next().await {
        if sink.send(result).is_err() {
            return;
        }
    }
}

async fn tcp_one(addr: SocketAddr, timeout: Duration, share: &ProbeShare) -> Outcome {
    let _slot = share.0.acquire().await.expect("never closed");
    let start = Instant::now();
    // `timeout` polls the connect first: a handshake that completed while
    // this task waited for a thread is an answer, not a timeout.
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(connection)) => {
            let rtt = start.elapsed();
            // Close with a reset, as load balancers' health checks do: no FIN
            // exchange and no TIME_WAIT entry per probe on either side.
            let _ = connection.set_zero_linger();
            Outcome::answered(rtt)
        }
        Ok(Err(e)) => Outcome::failed(connect_error(&e)),
        Err(_) => Outcome::silent(timeout),
    }
}

fn connect_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => e.to_string(),
    }
}

/// For tests that need ICMP or raw sockets: under CI, which permits them
/// (it runs as root), their absence is a failure; elsewhere the test says
/// what is missing and the caller returns.
#[cfg(test)]
fn cannot_run(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run every test, but here: {why}"
    );
    eprintln!("skipped: {why}");
}

/// For tests: every outcome is an answer.
#[cfg(test)]
fn assert_all_answered(outcomes: &[Outcome]) {
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.ok).collect();
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {:?}",
        failed.len(),
        failed[0]
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn up_refused_and_silent_hosts_are_told_apart_in_order() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = full_listener("127.0.0.2");
        let silent_addr = silent.0.local_addr().unwrap().as_socket().unwrap();

        let localhost: IpAddr = "127.0.0.1".parse().unwrap();
        let up = Method::Tcp(port)
            .outcomes(&[localhost], Duration::from_secs(1))
            .await;
        assert!(up[0].ok && up[0].rtt.is_some(), "{up:?}");
        drop(listener);
        let refused = Method::Tcp(port)
            .outcomes(&[localhost], Duration::from_secs(1))
            .await;
        assert_eq!(refused[0], Outcome::failed("connection refused"));
        let started = Instant::now();
        let silent = Method::Tcp(silent_addr.port())
            .outcomes(&[silent_addr.ip()], Duration::from_millis(200))
            .await;
        assert_eq!(silent[0].error.as_deref(), Some("no answer within 200ms"));
        assert!(silent[0].timed_out);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// A silent host holds back no other outcome: the refused one arrives
    /// at once, the silent one at its own timeout.
    #[tokio::test]
    async fn outcomes_arrive_as_they_are_known() {
        let silent = full_listener("127.0.0.3");
        let silent_addr = silent.0.local_addr().unwrap().as_socket().unwrap();
        let (sink, mut arrived) = mpsc::unbounded_channel();
        let targets = vec![
            Target {
                index: 0,
                host: silent_addr.ip(),
                timeout: Duration::from_millis(1500),
            },
            Target {
                index: 1,
                host: "127.0.0.1".parse().unwrap(),
                timeout: Duration::from_millis(1500),
            },
        ];
        // The silent listener's port, for both: nothing listens on it at
        // 127.0.0.1 (the listener is bound to 127.0.0.3).
        let started = Instant::now();
        let share = ProbeShare::default();
        let probing = tokio::spawn(async move {
            Method::Tcp(silent_addr.port())
                .run(targets, sink, &share)
                .await
        });
        let (first, outcome) = arrived.recv().await.unwrap();
        assert_eq!(first, 1);
        assert_eq!(outcome, Outcome::failed("connection refused"));
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        let (second, outcome) = arrived.recv().await.unwrap();
        assert_eq!(second, 0);
        assert!(!outcome.ok);
        assert!(started.elapsed() >= Duration::from_millis(1500));
        probing.await.unwrap();
    }

    /// A listener on `ip` whose accept queue is full: it never completes a
    /// handshake (the queued connections are kept alive with it).
    fn full_listener(ip: &str) -> (socket2::Socket, Vec<std::net::TcpStream>) {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
        socket.bind(&addr.into()).unwrap();
        socket.listen(0).unwrap();
        let bound = socket.local_addr().unwrap().as_socket().unwrap();
        let queued = (0..4)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&bound, Duration::from_millis(50)).ok()
            })
            .collect();
        (socket, queued)
    }
}
