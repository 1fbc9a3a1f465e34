//! One request packet per host from one raw/datagram socket, answers
//! matched by hand: what ICMP echo and half-open TCP probes share. Requests
//! go out 64 per system call with at most MAX_IN_FLIGHT unanswered (a batch
//! of thousands is never one burst into this machine's or the network's
//! queues), and answers are taken in between, 64 per system call, so the
//! socket's receive buffer never overflows.

use socket2::{SockAddr, Socket};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

use super::probe::{MAX_IN_FLIGHT, Outcome};
use super::socket::{Inbox, send_many};

/// Requests per system call, and between two looks at the answers.
const SEND_CHUNK: usize = 64;

/// Answers taken per system call, cut to 128 bytes (headers and a little).
type Answers = Inbox<SEND_CHUNK, 128>;

/// A protocol probed with one request per host.
pub(super) trait Exchange {
    /// Probe `i`'s request to `host`, or why it cannot be sent.
    fn request(&self, i: usize, host: IpAddr) -> Result<Vec<u8>, String>;

    /// The probe a received packet answers, and what it says: `Ok` for up,
    /// `Err` with the reason for down. `None`: not an answer of this batch.
    fn answer(&self, packet: &[u8]) -> Option<(usize, Result<(), &'static str>)>;
}

/// Send every host its request and collect the answers that come from that
/// host within `timeout` of its request; results in the order of `hosts`.
pub(super) async fn run(
    socket: &AsyncFd<Socket>,
    exchange: &impl Exchange,
    hosts: &[IpAddr],
    timeout: Duration,
) -> Vec<Outcome> {
    let mut batch = Batch {
        hosts,
        timeout,
        sent_at: vec![None; hosts.len()],
        results: vec![None; hosts.len()],
        waiting: 0,
        in_flight: VecDeque::with_capacity(MAX_IN_FLIGHT + SEND_CHUNK),
        inbox: Answers::new(),
    };
    let indices: Vec<usize> = (0..hosts.len()).collect();
    for chunk in indices.chunks(SEND_CHUNK) {
        batch.make_room(socket, exchange).await;
        let mut requests = Vec::with_capacity(chunk.len());
        for &i in chunk {
            match exchange.request(i, hosts[i]) {
                Ok(packet) => requests.push((i, packet)),
                Err(e) => batch.results[i] = Some(Outcome::failed(e)),
            }
        }
        let packets: Vec<(&[u8], SockAddr)> = requests
            .iter()
            .map(|(i, packet)| (&packet[..], SocketAddr::new(hosts[*i], 0).into()))
            .collect();
        let sent_at = Instant::now();
        let sent = send_many(socket, &packets, timeout).await;
        for ((i, _), sent) in requests.iter().zip(sent) {
            match sent {
                Ok(()) => {
                    batch.sent_at[*i] = Some(sent_at);
                    batch.waiting += 1;
                    batch.in_flight.push_back(*i);
                }
                Err(e) => batch.results[*i] = Some(Outcome::failed(e.to_string())),
            }
        }
    }
    let deadline = tokio::time::Instant::now() + timeout;
    while batch.waiting > 0 {
        let taken = tokio::time::timeout_at(deadline, batch.inbox.wait_take(socket)).await;
        let Ok(Ok(_)) = taken else { break };
        batch.take_answers(exchange);
    }
    let no_answer = format!("no answer within {timeout:?}");
    batch
        .results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Outcome::failed(no_answer.clone())))
        .collect()
}

/// One batch's probes in flight.
struct Batch<'h> {
    hosts: &'h [IpAddr],
    timeout: Duration,
    sent_at: Vec<Option<Instant>>,
    results: Vec<Option<Outcome>>,
    waiting: usize,
    /// Probes sent, oldest first, until answered or timed out.
    in_flight: VecDeque<usize>,
    inbox: Answers,
}

impl Batch<'_> {
    /// Take in the answers queued so far, then wait (for answers, or for
    /// the oldest probe to time out) until fewer than MAX_IN_FLIGHT are
    /// unanswered.
    async fn make_room(&mut self, socket: &AsyncFd<Socket>, exchange: &impl Exchange) {
        while self.inbox.take(socket.get_ref()).is_ok_and(|n| n > 0) {
            self.take_answers(exchange);
        }
        loop {
            while let Some(&oldest) = self.in_flight.front() {
                let expires = self.sent_at[oldest].map(|t| t + self.timeout);
                if self.results[oldest].is_some() || expires.is_none_or(|t| t <= Instant::now()) {
                    self.in_flight.pop_front();
                } else {
                    break;
                }
            }
            let Some(expires) = self
                .in_flight
                .front()
                .filter(|_| self.in_flight.len() >= MAX_IN_FLIGHT)
                .and_then(|&oldest| self.sent_at[oldest])
                .map(|t| t + self.timeout)
            else {
                return;
            };
            let until = tokio::time::Instant::from_std(expires);
            if let Ok(Ok(_)) = tokio::time::timeout_at(until, self.inbox.wait_take(socket)).await {
                self.take_answers(exchange);
            }
        }
    }

    /// Record the packets just taken that answer a probe of this batch, from
    /// its host, in time.
    fn take_answers(&mut self, exchange: &impl Exchange) {
        for (packet, from) in self.inbox.packets() {
            let Some((i, says)) = exchange.answer(packet) else {
                continue;
            };
            if i >= self.hosts.len() || from != Some(self.hosts[i]) || self.results[i].is_some() {
                continue;
            }
            let Some(rtt) = self.sent_at[i].map(|t| t.elapsed()) else {
                continue;
            };
            if rtt > self.timeout {
                continue;
            }
            self.results[i] = Some(match says {
                Ok(()) => Outcome {
                    ok: true,
                    rtt: Some(rtt),
                    error: None,
                },
                Err(reason) => Outcome::failed(reason),
            });
            self.waiting -= 1;
        }
    }
}
