//! Non-blocking raw/datagram sockets on tokio, shared by the ICMP and
//! half-open TCP probes: registration, batched sends and receives
//! (sendmmsg/recvmmsg), the per-family split and the Internet checksum.

use socket2::{SockAddr, Socket};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

use super::Target;

pub(super) fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    socket.set_nonblocking(true)?;
    // SAFETY: the AsyncFd owns the socket, so its descriptor stays open and
    // the same for the AsyncFd's whole life.
    unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)
}

/// Run `batch` for each address family present in `targets`, both at once
/// (each family needs sockets of its own).
pub(super) async fn per_family<F>(targets: Vec<Target>, batch: impl Fn(bool, Vec<Target>) -> F)
where
    F: Future<Output = ()>,
{
    let (v6, v4): (Vec<Target>, Vec<Target>) = targets.into_iter().partition(|t| t.host.is_ipv6());
    let run = |v6: bool, family: Vec<Target>| {
        let batch = &batch;
        async move {
            if !family.is_empty() {
                batch(v6, family).await;
            }
        }
    };
    tokio::join!(run(false, v4), run(true, v6));
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

/// Send each packet to its address, as many per system call as the kernel
/// takes (sendmmsg); one result per packet. A full queue on this machine
/// (ENOBUFS: a burst met a device or backlog queue) says nothing about the
/// hosts, so it is retried every millisecond for up to `patience`; any
/// other error fails that packet and the rest go on.
pub(super) async fn send_many(
    socket: &AsyncFd<Socket>,
    packets: &[(&[u8], SockAddr)],
    patience: Duration,
) -> Vec<io::Result<()>> {
    let give_up = Instant::now() + patience;
    let mut results = Vec::with_capacity(packets.len());
    while results.len() < packets.len() {
        let rest = &packets[results.len()..];
        let mut ready = match socket.writable().await {
            Ok(ready) => ready,
            Err(e) => {
                results.extend(
                    rest.iter()
                        .map(|_| Err(io::Error::new(e.kind(), e.to_string()))),
                );
                break;
            }
        };
        match ready.try_io(|s| sendmmsg(s.get_ref(), rest)) {
            Ok(Ok(sent)) => results.extend((0..sent).map(|_| Ok(()))),
            Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) && Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Ok(Err(e)) => results.push(Err(e)),
            Err(_would_block) => continue,
        }
    }
    results
}

fn sendmmsg(socket: &Socket, packets: &[(&[u8], SockAddr)]) -> io::Result<usize> {
    let mut iovecs: Vec<libc::iovec> = packets
        .iter()
        .map(|(packet, _)| libc::iovec {
            iov_base: packet.as_ptr().cast_mut().cast(),
            iov_len: packet.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = packets
        .iter()
        .zip(iovecs.iter_mut())
        .map(|((_, to), iovec)| {
            // SAFETY: all-zero is a valid mmsghdr (null pointers, no lengths).
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_name = to.as_ptr().cast_mut().cast();
            header.msg_hdr.msg_namelen = to.len();
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
            header
        })
        .collect();
    // SAFETY: every header points at an iovec and an address that outlive
    // the call, and the count is the headers' length.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            headers.len() as libc::c_uint,
            0,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

/// Buffers for receiving up to `SLOTS` packets per system call (recvmmsg),
/// each cut to `SIZE` bytes.
pub(super) struct Inbox<const SLOTS: usize, const SIZE: usize> {
    buffers: Box<[[u8; SIZE]; SLOTS]>,
    sources: Box<[libc::sockaddr_storage; SLOTS]>,
    lengths: [usize; SLOTS],
    received: usize,
}

impl<const SLOTS: usize, const SIZE: usize> Inbox<SLOTS, SIZE> {
    pub(super) fn new() -> Self {
        Self {
            buffers: Box::new([[0; SIZE]; SLOTS]),
            // SAFETY: all-zero is a valid sockaddr_storage.
            sources: Box::new([unsafe { std::mem::zeroed() }; SLOTS]),
            lengths: [0; SLOTS],
            received: 0,
        }
    }

    /// The packets taken by the last call, with their sources.
    pub(super) fn packets(&self) -> impl Iterator<Item = (&[u8], Option<IpAddr>)> {
        (0..self.received).map(|i| {
            let len = self.lengths[i];
            (&self.buffers[i][..len], ip_of(&self.sources[i]))
        })
    }

    /// Take the packets queued now, without waiting; how many.
    pub(super) fn take(&mut self, socket: &Socket) -> io::Result<usize> {
        let mut iovecs: Vec<libc::iovec> = self
            .buffers
            .iter_mut()
            .map(|buffer| libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: SIZE,
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .zip(self.sources.iter_mut())
            .map(|(iovec, source)| {
                // SAFETY: all-zero is a valid mmsghdr (null pointers, no lengths).
                let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                header.msg_hdr.msg_name = (source as *mut libc::sockaddr_storage).cast();
                header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                header.msg_hdr.msg_iov = iovec;
                header.msg_hdr.msg_iovlen = 1;
                header
            })
            .collect();
        self.received = 0;
        // SAFETY: every header points at a buffer and an address slot of
        // this inbox, which outlive the call; MSG_DONTWAIT never blocks.
        let received = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                SLOTS as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        self.received = received as usize;
        for (slot, header) in self.lengths.iter_mut().zip(&headers[..self.received]) {
            // A packet longer than SIZE is cut (the filter keeps headers).
            *slot = (header.msg_len as usize).min(SIZE);
        }
        Ok(self.received)
    }

    /// Wait until packets are queued and take them.
    pub(super) async fn wait_take(&mut self, socket: &AsyncFd<Socket>) -> io::Result<usize> {
        loop {
            let mut ready = socket.readable().await?;
            match ready.try_io(|s| self.take(s.get_ref())) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

/// The address of an IPv4 or IPv6 socket address the kernel wrote.
fn ip_of(source: &libc::sockaddr_storage) -> Option<IpAddr> {
    let storage: *const libc::sockaddr_storage = source;
    match i32::from(source.ss_family) {
        // SAFETY: the family says which sockaddr this storage holds, and
        // sockaddr_storage is large and aligned enough for either.
        libc::AF_INET => {
            let v4 = unsafe { &*storage.cast::<libc::sockaddr_in>() };
            Some(IpAddr::from(v4.sin_addr.s_addr.to_ne_bytes()))
        }
        libc::AF_INET6 => {
            let v6 = unsafe { &*storage.cast::<libc::sockaddr_in6>() };
            Some(IpAddr::from(v6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}
