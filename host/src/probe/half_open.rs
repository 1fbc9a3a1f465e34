//! Half-open TCP probes: a SYN to each host from a raw socket; a SYN-ACK
//! means a listener answered, a reset means refused. No connection is ever
//! completed: the source port is reserved by a bound, non-listening socket,
//! which incoming segments never match, so this machine's kernel resets
//! every SYN-ACK and the peer drops its half-open entry. A probe costs a few
//! packets and no socket or timer of its own, and SYNs go out and answers
//! come in 64 per system call: a sixth of a connect's CPU against remote
//! hosts (BENCHMARKS.md), and the service on the port never sees a
//! connection. Needs CAP_NET_RAW.
//!
//! The same answers a connect would see: a full accept queue drops the SYN
//! (timeout), no listener answers with a reset (refused). One SYN per
//! probe, as a connect with a timeout under the kernel's first
//! retransmission (1 s) sends.

use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

use super::exchange::{self, Exchange};
use super::socket::{checksum, per_family, register};
use super::{Outcome, Sink, Target};

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Whether this process may send half-open probes, or what to grant.
pub fn access() -> Result<(), String> {
    raw_socket(false).map(drop).map_err(|e| {
        format!(
            "cannot open a raw TCP socket ({e}); grant CAP_NET_RAW \
             (e.g. `setcap cap_net_raw+ep vpcrouter`)"
        )
    })
}

/// Probe `port` on each target once, each outcome to `sink` when known.
pub(super) async fn probe(targets: Vec<Target>, port: u16, sink: Sink) {
    per_family(targets, |v6, family| probe_family(v6, family, port, &sink)).await
}

/// The sockets of one batch: the raw socket, and the bound socket that
/// holds its source port for as long as answers may arrive.
struct Sockets {
    raw: AsyncFd<Socket>,
    source_port: u16,
    _reserved: Socket,
}

fn raw_socket(v6: bool) -> io::Result<Socket> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    Socket::new(domain, Type::RAW, Some(Protocol::TCP))
}

impl Sockets {
    fn open(v6: bool) -> io::Result<Self> {
        let unspecified: SocketAddr = if v6 {
            "[::]:0".parse().unwrap()
        } else {
            "0.0.0.0:0".parse().unwrap()
        };
        let domain = Domain::for_address(unspecified);
        let reserved = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        if v6 {
            reserved.set_only_v6(true)?;
        }
        reserved.bind(&unspecified.into())?;
        let source_port = reserved.local_addr()?.as_socket().map_or(0, |a| a.port());
        let raw = raw_socket(v6)?;
        if !v6 {
            raw.set_header_included_v4(true)?;
        }
        // A raw TCP socket is handed a copy of every TCP segment this
        // machine receives: only answers to this batch's port are queued.
        raw.attach_filter(&answer_filter(v6, source_port))?;
        let _ = raw.set_recv_buffer_size(1 << 20);
        Ok(Self {
            raw: register(raw)?,
            source_port,
            _reserved: reserved,
        })
    }
}

/// Classic BPF: accept segments to `port` with SYN+ACK or RST set, cut to
/// their headers. IPv4 raw sockets see the IP header (of variable length);
/// IPv6 ones see the TCP header first.
fn answer_filter(v6: bool, port: u16) -> Vec<SockFilter> {
    use libc::{
        BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_IND, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K,
        BPF_LD, BPF_LDX, BPF_MSH, BPF_RET,
    };
    let op = |code: u32| code as u16;
    // Loads relative to the TCP header.
    let (port_load, flags_load) = if v6 {
        (op(BPF_LD | BPF_H | BPF_ABS), op(BPF_LD | BPF_B | BPF_ABS))
    } else {
        (op(BPF_LD | BPF_H | BPF_IND), op(BPF_LD | BPF_B | BPF_IND))
    };
    let mut program = Vec::new();
    if !v6 {
        // X = IP header length.
        program.push(SockFilter::new(op(BPF_LDX | BPF_B | BPF_MSH), 0, 0, 0));
    }
    program.extend([
        SockFilter::new(port_load, 0, 0, 2),
        SockFilter::new(op(BPF_JMP | BPF_JEQ | BPF_K), 0, 5, u32::from(port)),
        SockFilter::new(flags_load, 0, 0, 13),
        SockFilter::new(op(BPF_JMP | BPF_JSET | BPF_K), 2, 0, u32::from(RST)),
        SockFilter::new(op(BPF_ALU | BPF_AND | BPF_K), 0, 0, u32::from(SYN | ACK)),
        SockFilter::new(op(BPF_JMP | BPF_JEQ | BPF_K), 0, 1, u32::from(SYN | ACK)),
        SockFilter::new(op(BPF_RET | BPF_K), 0, 0, 128),
        SockFilter::new(op(BPF_RET | BPF_K), 0, 0, 0),
    ]);
    program
}

async fn probe_family(v6: bool, targets: Vec<Target>, port: u16, sink: &Sink) {
    match Sockets::open(v6) {
        Ok(sockets) => {
            let hosts: Vec<IpAddr> = targets.iter().map(|t| t.host).collect();
            let exchange = HalfOpen {
                v6,
                port,
                source_port: sockets.source_port,
                first: fastrand::u32(..),
                sources: source_addresses(&hosts),
            };
            exchange::run(&sockets.raw, &exchange, &targets, sink).await
        }
        Err(e) => {
            for target in targets {
                let _ = sink.send((
                    target.index,
                    Outcome::failed(format!("raw TCP socket: {e}")),
                ));
            }
        }
    }
}

/// One batch's SYNs: probe i's sequence number is `first + i`, so an
/// answer acknowledges `first + i + 1`.
struct HalfOpen {
    v6: bool,
    port: u16,
    source_port: u16,
    first: u32,
    sources: Vec<io::Result<IpAddr>>,
}

impl Exchange for HalfOpen {
    fn request(&self, i: usize, host: IpAddr) -> Result<Vec<u8>, String> {
        let source = self.sources[i].as_ref().map_err(|e| e.to_string())?;
        let seq = self.first.wrapping_add(i as u32);
        Ok(syn(*source, host, self.source_port, self.port, seq)
            .as_bytes()
            .to_vec())
    }

    fn answer(&self, packet: &[u8]) -> Option<(usize, Result<(), &'static str>)> {
        let answer = parse_answer(self.v6, packet)?;
        if answer.to_port != self.source_port || answer.from_port != self.port {
            return None;
        }
        let i = answer.ack.wrapping_sub(1).wrapping_sub(self.first) as usize;
        Some((i, answer.accepted.then_some(()).ok_or("connection refused")))
    }
}

/// A SYN (with an MSS option, as any client sends) whose checksum covers
/// the pseudo-header of `source` -> `target`. IPv4 ones carry their IP
/// header (the socket is IP_HDRINCL): with an identifier of ours the
/// kernel skips choosing one, and builds no header of its own.
fn syn(source: IpAddr, target: IpAddr, from_port: u16, to_port: u16, seq: u32) -> Packet {
    let mut segment = [0u8; TCP_LEN];
    segment[0..2].copy_from_slice(&from_port.to_be_bytes());
    segment[2..4].copy_from_slice(&to_port.to_be_bytes());
    segment[4..8].copy_from_slice(&seq.to_be_bytes());
    segment[12] = ((TCP_LEN / 4) as u8) << 4; // header length in words
    segment[13] = SYN;
    segment[14..16].copy_from_slice(&64240u16.to_be_bytes());
    segment[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
    let sum = checksum(&[&pseudo_header(source, target, segment.len()), &segment]);
    segment[16..18].copy_from_slice(&sum.to_be_bytes());
    let mut packet = Packet {
        bytes: [0; IPV4_LEN + TCP_LEN],
        len: 0,
    };
    if let (IpAddr::V4(source), IpAddr::V4(target)) = (source, target) {
        let ip = &mut packet.bytes[..IPV4_LEN];
        ip[0] = 0x45; // version 4, 5 words
        ip[2..4].copy_from_slice(&((IPV4_LEN + TCP_LEN) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&(seq as u16).max(1).to_be_bytes());
        ip[6] = 0x40; // don't fragment
        ip[8] = 64; // TTL
        ip[9] = TCP;
        // The kernel always fills in the header checksum.
        ip[12..16].copy_from_slice(&source.octets());
        ip[16..20].copy_from_slice(&target.octets());
        packet.len = IPV4_LEN;
    }
    packet.bytes[packet.len..packet.len + TCP_LEN].copy_from_slice(&segment);
    packet.len += TCP_LEN;
    packet
}

const TCP: u8 = 6;
const IPV4_LEN: usize = 20;
const TCP_LEN: usize = 24;

/// One probe's packet: a SYN, after its IPv4 header if it has one.
struct Packet {
    bytes: [u8; IPV4_LEN + TCP_LEN],
    len: usize,
}

impl Packet {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

fn pseudo_header(source: IpAddr, target: IpAddr, tcp_len: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(40);
    match (source, target) {
        (IpAddr::V4(s), IpAddr::V4(t)) => {
            header.extend_from_slice(&s.octets());
            header.extend_from_slice(&t.octets());
            header.extend_from_slice(&[0, TCP]);
            header.extend_from_slice(&(tcp_len as u16).to_be_bytes());
        }
        (s, t) => {
            header.extend_from_slice(&to_v6(s).octets());
            header.extend_from_slice(&to_v6(t).octets());
            header.extend_from_slice(&(tcp_len as u32).to_be_bytes());
            header.extend_from_slice(&[0, 0, 0, TCP]);
        }
    }
    header
}

fn to_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Answer {
    from_port: u16,
    to_port: u16,
    ack: u32,
    /// SYN-ACK: a listener answered; else a reset.
    accepted: bool,
}

fn parse_answer(v6: bool, bytes: &[u8]) -> Option<Answer> {
    let tcp = if v6 {
        bytes
    } else {
        let header_len = usize::from(bytes.first()? & 0x0f) * 4;
        bytes.get(header_len..)?
    };
    let flags = *tcp.get(13)?;
    let accepted = flags & (SYN | ACK) == SYN | ACK;
    if !accepted && flags & (RST | ACK) != RST | ACK {
        return None;
    }
    Some(Answer {
        from_port: u16::from_be_bytes([tcp[0], tcp[1]]),
        to_port: u16::from_be_bytes([tcp[2], tcp[3]]),
        ack: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
        accepted,
    })
}

/// How long a looked-up source address is trusted: routes rarely change,
/// and a stale one only costs probes until it expires.
const SOURCE_TTL: Duration = Duration::from_secs(60);

/// The address this machine sends from to each host (the checksum covers
/// it): the kernel's choice, asked by connecting a UDP socket (which sends
/// nothing), remembered for a minute.
fn source_addresses(hosts: &[IpAddr]) -> Vec<io::Result<IpAddr>> {
    static CACHE: OnceLock<Mutex<HashMap<IpAddr, (IpAddr, Instant)>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let now = Instant::now();
    cache.retain(|_, (_, at)| now.duration_since(*at) < SOURCE_TTL);
    let mut lookup: Option<io::Result<[UdpSocket; 2]>> = None;
    hosts
        .iter()
        .map(|host| {
            if let Some((source, _)) = cache.get(host) {
                return Ok(*source);
            }
            let sockets = lookup.get_or_insert_with(|| {
                Ok([UdpSocket::bind("0.0.0.0:0")?, UdpSocket::bind("[::]:0")?])
            });
            let socket = match sockets {
                Ok(sockets) => &sockets[usize::from(host.is_ipv6())],
                Err(e) => return Err(io::Error::new(e.kind(), e.to_string())),
            };
            socket.connect((*host, 9))?;
            let source = socket.local_addr()?.ip();
            cache.insert(*host, (source, now));
            Ok(source)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Method;
    use std::net::TcpListener;

    #[test]
    fn a_syn_carries_a_valid_checksum_and_answers_are_parsed() {
        for (source, target, ip_len) in [("10.0.0.1", "10.0.0.2", 20), ("fd00::1", "fd00::2", 0)] {
            let (source, target): (IpAddr, IpAddr) =
                (source.parse().unwrap(), target.parse().unwrap());
            let packet = syn(source, target, 40000, 22, 7);
            let segment = &packet.as_bytes()[ip_len..];
            let header = pseudo_header(source, target, segment.len());
            assert_eq!(
                checksum(&[&header, segment]),
                0,
                "sums to zero with its checksum"
            );
            assert_eq!(segment[13], SYN);
            assert_eq!(
                parse_answer(source.is_ipv6(), packet.as_bytes()).map(|a| a.to_port),
                None
            );
        }
        let mut answer = [0u8; 20];
        answer[0..2].copy_from_slice(&22u16.to_be_bytes());
        answer[2..4].copy_from_slice(&40000u16.to_be_bytes());
        answer[8..12].copy_from_slice(&8u32.to_be_bytes());
        answer[13] = SYN | ACK;
        let expected = Answer {
            from_port: 22,
            to_port: 40000,
            ack: 8,
            accepted: true,
        };
        assert_eq!(parse_answer(true, &answer), Some(expected));
        let ip_header = [0x45u8; 20];
        let v4 = [&ip_header[..], &answer].concat();
        assert!(parse_answer(false, &v4).is_some_and(|a| a.accepted));
        answer[13] = RST | ACK;
        assert!(parse_answer(true, &answer).is_some_and(|a| !a.accepted));
        answer[13] = SYN;
        assert_eq!(
            parse_answer(true, &answer),
            None,
            "our own SYN is no answer"
        );
        assert_eq!(parse_answer(false, &[0x45; 30]), None, "too short");
    }

    #[tokio::test]
    async fn up_refused_and_silent_hosts_are_told_apart_on_both_families() {
        if let Err(why) = access() {
            crate::probe::cannot_run(&why);
            return;
        }
        let up4 = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = up4.local_addr().unwrap().port();
        let up6 = TcpListener::bind(("::1", port)).unwrap();
        // A listener with a full accept queue drops SYNs.
        let silent = socket2::Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        silent
            .bind(&SocketAddr::from(([127, 0, 0, 3], port)).into())
            .unwrap();
        silent.listen(0).unwrap();
        let _queued: Vec<_> = (0..4)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 3], port)),
                    Duration::from_millis(50),
                )
                .ok()
            })
            .collect();
        let hosts: Vec<IpAddr> = ["127.0.0.1", "::1", "127.0.0.2", "127.0.0.3", "127.0.0.1"]
            .iter()
            .map(|h| h.parse().unwrap())
            .collect();
        let started = Instant::now();
        let outcomes = Method::HalfOpen(port)
            .outcomes(&hosts, Duration::from_millis(300))
            .await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(outcomes[0].ok && outcomes[0].rtt.is_some(), "{outcomes:?}");
        assert!(outcomes[1].ok, "IPv6: {outcomes:?}");
        assert_eq!(outcomes[2], Outcome::failed("connection refused"));
        assert_eq!(outcomes[3].error.as_deref(), Some("no answer within 300ms"));
        assert!(outcomes[3].timed_out);
        assert!(outcomes[4].ok, "the same host twice: {outcomes:?}");
        drop(up6);
        let refused = Method::HalfOpen(port)
            .outcomes(&["::1".parse().unwrap()], Duration::from_secs(1))
            .await;
        assert_eq!(refused[0], Outcome::failed("connection refused"));
        // The listener never saw a connection.
        up4.set_nonblocking(true).unwrap();
        assert_eq!(
            up4.accept().map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::WouldBlock)
        );
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_in_flight_bound_is_paced_and_all_answered() {
        if let Err(why) = access() {
            crate::probe::cannot_run(&why);
            return;
        }
        let listener = socket2::Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        listener.listen(4096).unwrap();
        let port = listener.local_addr().unwrap().as_socket().unwrap().port();
        // 3,000 probes (the same host, each its own sequence number): more
        // than MAX_IN_FLIGHT at once and many send chunks.
        let hosts = vec![IpAddr::from([127, 0, 0, 1]); 3000];
        let outcomes = Method::HalfOpen(port)
            .outcomes(&hosts, Duration::from_secs(1))
            .await;
        crate::probe::assert_all_answered(&outcomes);
    }
}
