//! One request packet per host from one raw/datagram socket, answers
//! matched by hand: what ICMP echo and half-open TCP probes share. Requests
//! go out 64 per system call with at most MAX_IN_FLIGHT unanswered (a batch
//! of thousands is never one burst into this machine's or the network's
//! queues), and answers are taken in between, 64 per system call, so the
//! socket's receive buffer never overflows.

use socket2::{SockAddr, Socket};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::unix::AsyncFd;

use super::socket::{Inbox, send_many};
use super::{MAX_IN_FLIGHT, Outcome, Sink, Target};

/// Requests per system call, and between two looks at the answers.
const SEND_CHUNK: usize = 64;

/// Answers taken per system call, cut to 128 bytes (headers and a little).
type Answers = Inbox<SEND_CHUNK, 128>;

/// A protocol probed with one request per host.
pub(super) trait Exchange {
    /// Probe `i`'s request to `host`, or why it cannot be sent.
    fn request(&self, i: usize, host: std::net::IpAddr) -> Result<Vec<u8>, String>;

    /// The probe a received packet answers, and what it says: `Ok` for up,
    /// `Err` with the reason for down. `None`: not an answer of this batch.
    fn answer(&self, packet: &[u8]) -> Option<(usize, Result<(), &'static str>)>;
}

/// Send every target its request and hand each outcome to `sink` when it is
/// known: an answer from that host, or its timeout passing. Answers already
/// queued on the socket are always taken before a probe is called silent,
/// so a daemon slow to look is not mistaken for a silent host.
pub(super) async fn run(
    socket: &AsyncFd<Socket>,
    exchange: &impl Exchange,
    targets: &[Target],
    sink: &Sink,
) {
    let mut batch = Batch {
        targets,
        sink,
        sent_at: vec![None; targets.len()],
        done: vec![false; targets.len()],
        waiting: 0,
        expiries: BinaryHeap::with_capacity(targets.len()),
        inbox: Answers::new(),
    };
    let indices: Vec<usize> = (0..targets.len()).collect();
    for chunk in indices.chunks(SEND_CHUNK) {
        batch.make_room(socket, exchange).await;
        let mut requests = Vec::with_capacity(chunk.len());
        for &i in chunk {
            match exchange.request(i, targets[i].host) {
                Ok(packet) => requests.push((i, packet)),
                Err(e) => batch.finish(i, Outcome::failed(e)),
            }
        }
        let packets: Vec<(&[u8], SockAddr)> = requests
            .iter()
            .map(|(i, packet)| (&packet[..], SocketAddr::new(targets[*i].host, 0).into()))
            .collect();
        let longest = chunk
            .iter()
            .map(|&i| targets[i].timeout)
            .max()
            .unwrap_or_default();
        let sent_at = Instant::now();
        let sent = send_many(socket, &packets, longest).await;
        for ((i, _), sent) in requests.iter().zip(sent) {
            match sent {
                Ok(()) => {
                    batch.sent_at[*i] = Some(sent_at);
                    batch.waiting += 1;
                    batch
                        .expiries
                        .push(Reverse((sent_at + targets[*i].timeout, *i)));
                }
                Err(e) => batch.finish(*i, Outcome::failed(e.to_string())),
            }
        }
    }
    while batch.waiting > 0 && !sink.is_closed() && batch.step(socket, exchange).await {}
    // A receive error: whatever has not answered has not.
    for (i, target) in targets.iter().enumerate() {
        if !batch.done[i] {
            batch.finish(i, Outcome::silent(target.timeout));
        }
    }
}

/// One batch's probes in flight.
struct Batch<'t> {
    targets: &'t [Target],
    sink: &'t Sink,
    sent_at: Vec<Option<Instant>>,
    done: Vec<bool>,
    /// Probes sent and not yet answered.
    waiting: usize,
    /// When each probe sent times out, soonest first (answered ones are
    /// skipped as they come up).
    expiries: BinaryHeap<Reverse<(Instant, usize)>>,
    inbox: Answers,
}

impl Batch<'_> {
    fn finish(&mut self, i: usize, outcome: Outcome) {
        if !std::mem::replace(&mut self.done[i], true) {
            let _ = self.sink.send((self.targets[i].index, outcome));
        }
    }

    /// Take the answers already queued, then call the probes whose time has
    /// passed silent.
    fn expire(&mut self, socket: &AsyncFd<Socket>, exchange: &impl Exchange) {
        while self.inbox.take(socket.get_ref()).is_ok_and(|n| n > 0) {
            self.take_answers(exchange);
        }
        let now = Instant::now();
        while let Some(&Reverse((expires, i))) = self.expiries.peek() {
            if expires > now {
                break;
            }
            self.expiries.pop();
            if !self.done[i] {
                self.waiting -= 1;
                self.finish(i, Outcome::silent(self.targets[i].timeout));
            }
        }
    }

    /// Take in the answers queued so far and the timeouts due, then wait
    /// (for answers, or for the next probe to time out) until fewer than
    /// MAX_IN_FLIGHT are unanswered.
    async fn make_room(&mut self, socket: &AsyncFd<Socket>, exchange: &impl Exchange) {
        self.expire(socket, exchange);
        while self.waiting >= MAX_IN_FLIGHT && self.step(socket, exchange).await {}
    }

    /// Wait for answers or the next probe's timeout, whichever comes first,
    /// and take in what came; false if nothing is in flight or the socket
    /// failed.
    async fn step(&mut self, socket: &AsyncFd<Socket>, exchange: &impl Exchange) -> bool {
        let Some(&Reverse((expires, _))) = self.expiries.peek() else {
            return false;
        };
        let until = tokio::time::Instant::from_std(expires);
        match tokio::time::timeout_at(until, self.inbox.wait_take(socket)).await {
            Ok(Ok(_)) => self.take_answers(exchange),
            Ok(Err(_)) => return false,
            Err(_) => self.expire(socket, exchange),
        }
        true
    }

    /// Record the packets just taken that answer a probe of this batch still
    /// waiting, from its host.
    fn take_answers(&mut self, exchange: &impl Exchange) {
        let mut answered = Vec::new();
        for (packet, from) in self.inbox.packets() {
            let Some((i, says)) = exchange.answer(packet) else {
                continue;
            };
            if i >= self.targets.len() || from != Some(self.targets[i].host) || self.done[i] {
                continue;
            }
            let Some(rtt) = self.sent_at[i].map(|t| t.elapsed()) else {
                continue;
            };
            answered.push((
                i,
                match says {
                    Ok(()) => Outcome::answered(rtt),
                    Err(reason) => Outcome::failed(reason),
                },
            ));
        }
        for (i, outcome) in answered {
            if !self.done[i] {
                self.waiting -= 1;
                self.finish(i, outcome);
            }
        }
    }
}
