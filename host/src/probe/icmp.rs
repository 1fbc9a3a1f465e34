//! ICMP echo probes. An unprivileged ICMP datagram socket is used where
//! `net.ipv4.ping_group_range` allows it, else a raw socket (CAP_NET_RAW).
//! A batch sends one echo request per host from one socket and matches the
//! replies by identifier, sequence number and source address.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::IpAddr;

use super::exchange::{self, Exchange};
use super::socket::{checksum, per_family, register};
use super::{Outcome, Sink, Target};

/// Which kind of ICMP socket this process may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Datagram,
    Raw,
}

/// The socket kind usable here, or what to grant.
pub fn access() -> Result<Access, String> {
    if open(Access::Datagram, Domain::IPV4).is_ok() {
        return Ok(Access::Datagram);
    }
    match open(Access::Raw, Domain::IPV4) {
        Ok(_) => Ok(Access::Raw),
        Err(e) => Err(format!(
            "cannot open an ICMP socket ({e}); allow unprivileged ICMP with \
             `sysctl net.ipv4.ping_group_range=\"0 2147483647\"` or grant CAP_NET_RAW \
             (e.g. `setcap cap_net_raw+ep vpcrouter`)"
        )),
    }
}

fn open(access: Access, domain: Domain) -> io::Result<Socket> {
    let protocol = if domain == Domain::IPV6 {
        Protocol::ICMPV6
    } else {
        Protocol::ICMPV4
    };
    let kind = match access {
        Access::Datagram => Type::DGRAM,
        Access::Raw => Type::RAW,
    };
    let socket = Socket::new(domain, kind, Some(protocol))?;
    // Replies of a large batch arrive at once.
    let _ = socket.set_recv_buffer_size(4 << 20);
    Ok(socket)
}

/// Echo each target once, each outcome to `sink` when known.
pub(super) async fn echo(targets: Vec<Target>, sink: Sink) {
    let access = match access() {
        Ok(access) => access,
        Err(e) => return fail_all(&targets, &sink, &e),
    };
    per_family(targets, |v6, family| {
        let sink = &sink;
        async move {
            // Sequence numbers are 16 bits: large batches go in chunks.
            for chunk in family.chunks(u16::MAX as usize) {
                echo_batch(access, v6, chunk, sink).await;
            }
        }
    })
    .await
}

fn fail_all(targets: &[Target], sink: &Sink, why: &str) {
    for target in targets {
        let _ = sink.send((target.index, Outcome::failed(why)));
    }
}

async fn echo_batch(access: Access, v6: bool, targets: &[Target], sink: &Sink) {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    match open(access, domain).and_then(register) {
        Ok(socket) => {
            // Raw sockets see every echo reply on the machine, concurrent
            // batches' included: each batch has an identifier of its own.
            let echo = Echo {
                access,
                v6,
                ident: next_ident(),
            };
            exchange::run(&socket, &echo, targets, sink).await
        }
        Err(e) => fail_all(targets, sink, &format!("ICMP socket: {e}")),
    }
}

/// One batch's echo requests: probe i's sequence number is i.
struct Echo {
    access: Access,
    v6: bool,
    ident: u16,
}

impl Exchange for Echo {
    fn request(&self, i: usize, _host: IpAddr) -> Result<Vec<u8>, String> {
        Ok(echo_request(self.v6, self.ident, i as u16))
    }

    fn answer(&self, packet: &[u8]) -> Option<(usize, Result<(), &'static str>)> {
        let seq = parse_reply(self.v6, self.access, self.ident, packet)?;
        Some((usize::from(seq), Ok(())))
    }
}

fn next_ident() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    (std::process::id() as u16).wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
const PAYLOAD: &[u8] = b"vpcrouter-probe";

fn echo_request(v6: bool, ident: u16, seq: u16) -> Vec<u8> {
    let kind = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    let mut packet = vec![kind, 0, 0, 0];
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(PAYLOAD);
    // The kernel fills in the ICMPv6 checksum (it covers a pseudo-header).
    if !v6 {
        let sum = checksum(&[&packet]);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The sequence number of an echo reply that is ours. Raw IPv4 sockets
/// deliver the IP header too; datagram sockets have the kernel rewrite the
/// identifier, and deliver only replies to this socket.
fn parse_reply(v6: bool, access: Access, ident: u16, bytes: &[u8]) -> Option<u16> {
    let icmp = if !v6 && access == Access::Raw {
        let header_len = usize::from(bytes.first()? & 0x0f) * 4;
        bytes.get(header_len..)?
    } else {
        bytes
    };
    let reply = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    if icmp.len() < 8 || icmp[0] != reply || !icmp[8..].starts_with(PAYLOAD) {
        return None;
    }
    let their_ident = u16::from_be_bytes([icmp[4], icmp[5]]);
    if access == Access::Raw && their_ident != ident {
        return None;
    }
    Some(u16::from_be_bytes([icmp[6], icmp[7]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn requests_carry_a_valid_checksum_and_replies_are_matched() {
        let request = echo_request(false, 0x1234, 7);
        assert_eq!(
            checksum(&[&request]),
            0,
            "a packet with its checksum sums to zero"
        );
        let mut reply = request.clone();
        reply[0] = ECHO_REPLY_V4;
        assert_eq!(parse_reply(false, Access::Datagram, 0, &reply), Some(7));
        assert_eq!(
            parse_reply(
                false,
                Access::Raw,
                0x1234,
                &[&[0x45; 20][..], &reply].concat()
            ),
            Some(7)
        );
        assert_eq!(
            parse_reply(
                false,
                Access::Raw,
                0x9999,
                &[&[0x45; 20][..], &reply].concat()
            ),
            None
        );
        assert_eq!(
            parse_reply(false, Access::Datagram, 0, &request),
            None,
            "a request is not a reply"
        );
    }

    #[tokio::test]
    async fn loopback_answers_when_icmp_is_permitted() {
        if let Err(why) = access() {
            crate::probe::cannot_run(&why);
            return;
        }
        let hosts = vec![
            "127.0.0.1".parse().unwrap(),
            "127.0.0.77".parse().unwrap(),
            "::1".parse().unwrap(),
        ];
        let outcomes = crate::probe::Method::Icmp
            .outcomes(&hosts, Duration::from_secs(1))
            .await;
        for outcome in &outcomes {
            assert!(outcome.ok && outcome.rtt.is_some(), "{outcomes:?}");
        }
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_in_flight_bound_is_paced_and_all_answered() {
        if let Err(why) = access() {
            crate::probe::cannot_run(&why);
            return;
        }
        let hosts = vec![IpAddr::from([127, 0, 0, 1]); 3000];
        let outcomes = crate::probe::Method::Icmp
            .outcomes(&hosts, Duration::from_secs(1))
            .await;
        crate::probe::assert_all_answered(&outcomes);
    }
}
