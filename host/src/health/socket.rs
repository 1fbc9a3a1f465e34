//! Non-blocking raw/datagram sockets on tokio, shared by the ICMP and
//! half-open TCP probes: one socket per batch, packets matched by hand.

use socket2::{SockAddr, Socket};
use std::io;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use tokio::io::unix::AsyncFd;

use super::probe::Outcome;

pub(super) fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    socket.set_nonblocking(true)?;
    // SAFETY: the AsyncFd owns the socket, so its descriptor stays open and
    // the same for the AsyncFd's whole life.
    unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)
}

pub(super) async fn send(socket: &AsyncFd<Socket>, packet: &[u8], to: &SockAddr) -> io::Result<()> {
    loop {
        let mut ready = socket.writable().await?;
        match ready.try_io(|s| s.get_ref().send_to(packet, to)) {
            Ok(result) => return result.map(drop),
            Err(_would_block) => continue,
        }
    }
}

pub(super) async fn recv<'b>(
    socket: &AsyncFd<Socket>,
    buf: &'b mut [MaybeUninit<u8>],
) -> io::Result<(&'b [u8], SockAddr)> {
    loop {
        let mut ready = socket.readable().await?;
        match ready.try_io(|s| s.get_ref().recv_from(buf)) {
            Ok(result) => {
                let (len, from) = result?;
                return Ok((initialised(buf, len), from));
            }
            Err(_would_block) => continue,
        }
    }
}

/// A packet already queued, without waiting.
pub(super) fn try_recv<'b>(
    socket: &AsyncFd<Socket>,
    buf: &'b mut [MaybeUninit<u8>],
) -> Option<(&'b [u8], SockAddr)> {
    let (len, from) = socket.get_ref().recv_from(buf).ok()?;
    Some((initialised(buf, len), from))
}

fn initialised(buf: &[MaybeUninit<u8>], len: usize) -> &[u8] {
    // SAFETY: recv_from initialised the first `len` bytes.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) }
}

/// Run `batch` once per address family present in `hosts` (each family
/// needs sockets of its own), giving it the hosts' positions; results in
/// the order of `hosts`.
pub(super) async fn per_family<F>(
    hosts: &[IpAddr],
    mut batch: impl FnMut(bool, Vec<(usize, IpAddr)>) -> F,
) -> Vec<Outcome>
where
    F: Future<Output = Vec<(usize, Outcome)>>,
{
    let mut outcomes: Vec<Option<Outcome>> = vec![None; hosts.len()];
    for v6 in [false, true] {
        let family: Vec<(usize, IpAddr)> = hosts
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, h)| h.is_ipv6() == v6)
            .collect();
        if family.is_empty() {
            continue;
        }
        for (i, outcome) in batch(v6, family).await {
            outcomes[i] = Some(outcome);
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::failed("not probed")))
        .collect()
}

/// The Internet checksum (RFC 1071) over several pieces.
pub(super) fn checksum(pieces: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for byte in pieces.iter().flat_map(|p| p.iter().copied()) {
        match odd.take() {
            Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
            None => odd = Some(byte),
        }
    }
    if let Some(high) = odd {
        sum += u32::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
