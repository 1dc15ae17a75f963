//! Batched UDP I/O for the receive threads (Linux): up to [`BATCH`] datagrams per `recvmmsg`
//! system call, and the replies to them in one `sendmmsg`, instead of a `recvfrom` and a
//! `sendto` per query. Under load several queries wait in the socket buffer at once, and the
//! per-call kernel cost (entry, file look-up, wake-ups) is paid once for all of them; with one
//! query waiting a batch is one query, as before.
//!
//! The socket is in blocking mode: [`ReceiveBatch::receive`] sleeps in `recvmmsg` until a
//! datagram arrives (`MSG_WAITFORONE`: then it takes what is waiting without sleeping again),
//! and sends never sleep (`MSG_DONTWAIT`; on a full send buffer [`send_all`] waits for room in
//! `poll`, bounded by [`SEND_WAIT`], like unbound). See [`crate::net::udp_loop`] for why.
//!
//! The calls go through crates' safe wrappers (`nix` for `recvmmsg`, `rustix` for `sendmmsg`,
//! `sendto` and `poll`); this module only owns the buffers and the conversion of addresses.
//!
//! [`prepare`] also sets `IP_PMTUDISC_PROBE` on an IPv4 socket: replies carry DF (don't
//! fragment) with IP ID 0, which spares the kernel a keyed hash per reply to pick an ID, and it
//! ignores learned path MTUs (no spoofed ICMP can shrink our replies). Replies over UDP are at
//! most 1,232 bytes (the DNS Flag Day size, which fits every path that carries IPv6's 1,280),
//! so they never need fragmenting.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny, sendmmsg, sendto};

/// Most datagrams one receive (and one send) call moves.
pub const BATCH: usize = 32;
/// The receive buffer of each datagram. DNS queries are far smaller (a question and an OPT
/// record); a longer datagram is cut to this length and answered FORMERR.
pub const DATAGRAM_BUFFER: usize = 4096;
/// How long [`send_all`] waits for room in a full send buffer before it drops the batch's
/// remaining replies (their clients ask again).
pub const SEND_WAIT: Duration = Duration::from_millis(200);

/// Readies a UDP socket for serving (see the module documentation); a failure only costs
/// speed, so it is logged and serving goes on.
pub fn prepare(socket: &UdpSocket) {
    if socket.local_addr().is_ok_and(|address| address.is_ipv4()) {
        let probe = rustix::net::sockopt::Ipv4PathMtuDiscovery::PROBE;
        if let Err(error) = rustix::net::sockopt::set_ip_mtu_discover(socket, probe) {
            tracing::debug!(%error, "IP_MTU_DISCOVER not set");
        }
    }
}

/// One received datagram: where it came from, and how much of its buffer it filled.
#[derive(Debug, Clone, Copy)]
struct Received {
    length: usize,
    peer: Option<SocketAddr>,
}

/// The buffers of one receive loop, reused for every batch.
#[derive(Debug)]
pub struct ReceiveBatch {
    buffers: Vec<Vec<u8>>,
    received: Vec<Received>,
}

impl Default for ReceiveBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl ReceiveBatch {
    /// [`BATCH`] buffers of [`DATAGRAM_BUFFER`] bytes.
    pub fn new() -> Self {
        ReceiveBatch {
            buffers: vec![vec![0; DATAGRAM_BUFFER]; BATCH],
            received: Vec::with_capacity(BATCH),
        }
    }

    /// Sleeps until the (blocking) `socket` has a datagram, then receives as many as are
    /// waiting, up to [`BATCH`]; returns how many (see [`ReceiveBatch::datagram`]). A socket
    /// shut down for reading returns at once, with datagrams that have no sender; a signal
    /// that lands while it sleeps returns `Interrupted`.
    pub fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let ReceiveBatch { buffers, received } = self;
        received.clear();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(buffers.len(), None);
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
            .iter_mut()
            .map(|buffer| [IoSliceMut::new(buffer)])
            .collect();
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        )
        .map_err(io::Error::from)?;
        for message in results {
            received.push(Received {
                length: message.bytes.min(DATAGRAM_BUFFER),
                peer: message.address.as_ref().and_then(socket_address),
            });
        }
        Ok(received.len())
    }

    /// The `index`th datagram of the last [`ReceiveBatch::receive`]: its bytes and sender;
    /// `None` past the end or when the kernel gave no sender address.
    pub fn datagram(&self, index: usize) -> Option<(&[u8], SocketAddr)> {
        let received = self.received.get(index)?;
        let bytes = self.buffers.get(index)?.get(..received.length)?;
        Some((bytes, received.peer?))
    }
}

/// A sender's address as the standard library spells it.
fn socket_address(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

/// Sends each reply to its address, [`BATCH`] per `sendmmsg`. While the send buffer is full it
/// waits for room, at most [`SEND_WAIT`] at a time; after that the rest of the replies are
/// dropped (and logged at debug level). A reply the kernel refuses (for instance an
/// unreachable address) is logged at debug level and skipped; the rest are still sent.
pub fn send_all(socket: &UdpSocket, replies: &[(Vec<u8>, SocketAddr)]) {
    let mut next = 0;
    while let Some(pending) = replies.get(next..).filter(|rest| !rest.is_empty()) {
        match send_now(socket, pending) {
            Ok(sent) => next += sent.max(1),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                if !wait_for_room(socket) {
                    tracing::debug!(
                        dropped = pending.len(),
                        "udp send buffer full for {SEND_WAIT:?}; replies dropped"
                    );
                    return;
                }
            }
            Err(error) => {
                if let Some((_, peer)) = pending.first() {
                    tracing::debug!(%error, %peer, "udp send failed");
                }
                next += 1;
            }
        }
    }
}

/// Sends one reply without waiting (for the tasks that answer forwarded queries, which must
/// not block their runtime thread); a full send buffer drops it, and the client asks again.
pub fn send_one(socket: &UdpSocket, reply: &[u8], peer: SocketAddr) {
    if let Err(error) = sendto(socket, reply, SendFlags::DONTWAIT, &peer) {
        tracing::debug!(%error, %peer, "udp send failed");
    }
}

/// Waits until `socket` can take a datagram, at most [`SEND_WAIT`]; whether it can.
fn wait_for_room(socket: &UdpSocket) -> bool {
    let Ok(timeout) = Timespec::try_from(SEND_WAIT) else {
        return false;
    };
    let mut fds = [PollFd::new(socket, PollFlags::OUT)];
    loop {
        match poll(&mut fds, Some(&timeout)) {
            Ok(ready) => return ready > 0,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}

/// One `sendmmsg` of up to [`BATCH`] replies that does not wait; how many the kernel took.
fn send_now(socket: &UdpSocket, replies: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    let replies = replies.get(..BATCH.min(replies.len())).unwrap_or_default();
    let addresses: Vec<SocketAddrAny> = replies
        .iter()
        .map(|(_, peer)| SocketAddrAny::from(*peer))
        .collect();
    let slices: Vec<[IoSlice<'_>; 1]> = replies
        .iter()
        .map(|(reply, _)| [IoSlice::new(reply)])
        .collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = replies
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut messages: Vec<MMsgHdr<'_>> = addresses
        .iter()
        .zip(&slices)
        .zip(controls.iter_mut())
        .map(|((address, slice), control)| MMsgHdr::new_with_addr(address, slice, control))
        .collect();
    Ok(sendmmsg(
        socket.as_fd(),
        &mut messages,
        SendFlags::DONTWAIT,
    )?)
}
