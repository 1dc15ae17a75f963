//! The kernel's view of this network namespace's TCP sockets, through `sock_diag` netlink
//! (what `ss` uses): a dump of the sockets in chosen states whose remote address is one of a
//! set, filtered in the kernel by a bytecode program (`INET_DIAG_REQ_BYTECODE`), with each
//! socket's identity, retransmit timer and the `tcp_info` fields the observer judges by;
//! `SOCK_DESTROY` of one socket (what `ss -K` does, CAP_NET_ADMIN); and the kernel's
//! announcement of every TCP socket it destroys, with its final `tcp_info` (the
//! `SKNLGRP_INET*_TCP_DESTROY` multicast groups that `ss -E` listens to, open to any process).
//!
//! Written against the kernel's UAPI (`linux/inet_diag.h`, `linux/sock_diag.h`) rather than a
//! netlink crate: the crates build owned messages (a vector of attributes per socket) and have no
//! bytecode filter, and the observer looks up to several times a second on machines with thousands of
//! unrelated sockets. Here the kernel sends only the sockets to endpoint addresses, parsed in
//! place from one reused buffer: no allocation per poll.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

/// `SOCK_DIAG_BY_FAMILY`: the per-family dump request, and each socket of its reply.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `TCPDIAG_GETSOCK`: the original TCP dump request (`struct inet_diag_req`), and each socket
/// of its reply, the one used here. The kernel walks its socket table once for both address
/// families with it, where `SOCK_DIAG_BY_FAMILY` takes one walk per family; the walk visits every bucket of the
/// established table (262,144 on a machine with a few GB) whatever the filter, so one walk
/// instead of two halves the observer's cost.
const TCPDIAG_GETSOCK: u16 = 18;
/// Length of `struct inet_diag_req`.
const COMPAT_REQUEST_LEN: usize = 60;
/// `SOCK_DESTROY`: abort one socket.
const SOCK_DESTROY: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HEADER_LEN: usize = 16;
const REQUEST_LEN: usize = 56;
const DIAG_MESSAGE_LEN: usize = 72;
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// The `tcp_info` attribute of a reply.
const INET_DIAG_INFO: u16 = 2;
const INET_DIAG_BC_JMP: u8 = 1;
const INET_DIAG_BC_D_COND: u8 = 8;
const IPPROTO_TCP: u8 = 6;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// Offset of `tcpi_retransmits` in `struct tcp_info`: the retransmissions of the current
/// segment (for a socket in SYN-SENT, of its SYN), filled whatever timer is pending, unlike
/// `idiag_retrans` of the message header, which is 0 while the retransmit timer is re-armed.
const TCP_INFO_RETRANSMITS_OFFSET: usize = 2;
/// Offset of `tcpi_probes`: unanswered zero-window or keepalive probes in a row.
const TCP_INFO_PROBES_OFFSET: usize = 3;
/// Offset of `tcpi_rto` (microseconds): the retransmission timeout now in force.
const TCP_INFO_RTO_OFFSET: usize = 8;
/// Offset of `tcpi_unacked`: segments sent and not acknowledged.
const TCP_INFO_UNACKED_OFFSET: usize = 24;
/// Offset of `tcpi_rtt` (microseconds) in `struct tcp_info`.
const TCP_INFO_RTT_OFFSET: usize = 68;
/// Offset of `tcpi_total_retrans`: retransmissions over the socket's life.
const TCP_INFO_TOTAL_RETRANS_OFFSET: usize = 100;
/// Offset of `tcpi_bytes_acked` (u64): data the peer acknowledged.
const TCP_INFO_BYTES_ACKED_OFFSET: usize = 120;
/// Offset of `tcpi_bytes_received` (u64): data received from the peer.
const TCP_INFO_BYTES_RECEIVED_OFFSET: usize = 128;
/// Offset of `tcpi_segs_in`: segments received, the SYN-ACK included.
const TCP_INFO_SEGS_IN_OFFSET: usize = 140;
/// Offset of `tcpi_notsent_bytes`: data queued and not sent yet.
const TCP_INFO_NOTSENT_OFFSET: usize = 144;
/// `idiag_timer` of a socket whose retransmit timer is pending.
pub const TIMER_RETRANSMIT: u8 = 1;
/// `SKNLGRP_INET_TCP_DESTROY`: destroyed IPv4 TCP sockets.
const SKNLGRP_INET_TCP_DESTROY: u32 = 1;
/// `SKNLGRP_INET6_TCP_DESTROY`: destroyed IPv6 TCP sockets.
const SKNLGRP_INET6_TCP_DESTROY: u32 = 3;
/// Both groups as a bind mask (bit `group - 1`).
const DESTROY_GROUPS: u32 =
    (1 << (SKNLGRP_INET_TCP_DESTROY - 1)) | (1 << (SKNLGRP_INET6_TCP_DESTROY - 1));
/// The largest bytecode an attribute can carry (its length is 16 bits, with its header).
const MAX_BYTECODE_LEN: usize = 65_000;

/// TCP states as the kernel numbers them.
pub const TCP_ESTABLISHED: u8 = 1;
/// A connect whose SYN has not been answered yet.
pub const TCP_SYN_SENT: u8 = 2;
/// A socket closed (how destroyed sockets are announced).
#[cfg(test)]
pub const TCP_CLOSE: u8 = 7;

/// The `tcp_info` fields the observer judges by, beyond the retransmissions and the RTT; all
/// zero when the kernel sent none (or an older, shorter structure lacks them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// The retransmission timeout now in force (`tcpi_rto`).
    pub rto: Duration,
    /// Segments sent and not acknowledged (`tcpi_unacked`).
    pub unacked: u32,
    /// Unanswered zero-window or keepalive probes in a row (`tcpi_probes`).
    pub probes: u8,
    /// Data queued and not sent yet (`tcpi_notsent_bytes`).
    pub notsent: u32,
    /// Retransmissions over the socket's life (`tcpi_total_retrans`).
    pub total_retrans: u32,
    /// Data the peer acknowledged (`tcpi_bytes_acked`).
    pub bytes_acked: u64,
    /// Data received from the peer (`tcpi_bytes_received`).
    pub bytes_received: u64,
    /// Segments received, the SYN-ACK included (`tcpi_segs_in`): 0 for a connect nobody
    /// answered.
    pub segs_in: u32,
}

/// One socket of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagSocket {
    /// TCP state (`TCP_ESTABLISHED`, `TCP_SYN_SENT`, …).
    pub state: u8,
    /// Retransmissions of the current segment: for a socket in SYN-SENT, of its SYN.
    pub retransmits: u8,
    /// The remote address (an IPv4-mapped IPv6 address is given as IPv4).
    pub remote: IpAddr,
    /// The remote port.
    pub remote_port: u16,
    /// The local port.
    pub local_port: u16,
    /// The kernel's unique id of the socket.
    pub cookie: u64,
    /// Smoothed RTT from `tcp_info`, when the kernel sent it.
    pub rtt: Option<Duration>,
    /// The pending timer (`idiag_timer`: [`TIMER_RETRANSMIT`], …), 0 when none.
    pub timer: u8,
    /// Time left on the pending timer.
    pub expires: Duration,
    /// What else `tcp_info` says.
    pub info: TcpInfo,
    /// The raw socket identity (`struct inet_diag_sockid`), for `SOCK_DESTROY`.
    id: [u8; 48],
    family: u8,
}

#[cfg(test)]
impl DiagSocket {
    /// A socket as a dump would give it, for tests of what is made of dumps.
    pub fn for_tests(
        state: u8,
        retransmits: u8,
        remote: std::net::SocketAddr,
        cookie: u64,
        rtt: Option<Duration>,
    ) -> DiagSocket {
        DiagSocket {
            state,
            retransmits,
            remote: remote.ip(),
            remote_port: remote.port(),
            local_port: 40_000,
            cookie,
            rtt,
            timer: 0,
            expires: Duration::ZERO,
            info: TcpInfo {
                rto: Duration::from_secs(1),
                ..TcpInfo::default()
            },
            id: [0; 48],
            family: AF_INET,
        }
    }
}

/// Kernel bytecode that accepts a socket when its remote address is one of `addresses` (any
/// port). An IPv4 condition also matches an IPv6 socket connected to the IPv4-mapped address
/// (the kernel does that by itself), so an IPv4 connection made from a dual-stack socket is
/// seen. `None` when there is nothing to match or the program would not fit an attribute.
pub fn destination_filter(addresses: &[IpAddr]) -> Option<Vec<u8>> {
    let conditions: Vec<(u8, u8, Vec<u8>)> = addresses
        .iter()
        .map(|address| match address {
            IpAddr::V4(v4) => (AF_INET, 32, v4.octets().to_vec()),
            IpAddr::V6(v6) => (AF_INET6, 128, v6.octets().to_vec()),
        })
        .collect();
    if conditions.is_empty() {
        return None;
    }
    // Each condition but the last: [D_COND yes→JMP, no→next condition][JMP → accept (the end)].
    // The last: [D_COND yes→the end (accept), no→4 bytes past it (reject)]. `yes` is 8 bits, so
    // long jumps go through the JMP op's 16-bit `no`, as `ss` does.
    let condition_len = |address: &[u8]| 4 + 8 + address.len();
    let total: usize = conditions
        .iter()
        .map(|(_, _, address)| condition_len(address) + 4)
        .sum::<usize>()
        - 4;
    if total > MAX_BYTECODE_LEN {
        return None;
    }
    let mut code = Vec::with_capacity(total);
    let count = conditions.len();
    for (index, (family, prefix_len, address)) in conditions.iter().enumerate() {
        let length = condition_len(address);
        let last = index + 1 == count;
        // Past the JMP to the next condition, or (for the last) 4 past the end: reject.
        let no = length + 4;
        code.push(INET_DIAG_BC_D_COND);
        code.push(u8::try_from(length).ok()?);
        code.extend_from_slice(&u16::try_from(no).ok()?.to_ne_bytes());
        // struct inet_diag_hostcond { u8 family; u8 prefix_len; int port; u8 addr[]; }
        code.push(*family);
        code.push(*prefix_len);
        code.extend_from_slice(&[0, 0]);
        code.extend_from_slice(&(-1i32).to_ne_bytes());
        code.extend_from_slice(address);
        if !last {
            let to_end = total - code.len();
            code.push(INET_DIAG_BC_JMP);
            code.push(4);
            code.extend_from_slice(&u16::try_from(to_end).ok()?.to_ne_bytes());
        }
    }
    Some(code)
}

/// A netlink socket to the kernel's socket diagnostics, with a reused receive buffer.
#[derive(Debug)]
pub struct SockDiag {
    socket: OwnedFd,
    request: Vec<u8>,
    buffer: Vec<u8>,
    sequence: u32,
}

impl SockDiag {
    /// Opens the netlink socket.
    pub fn open() -> std::io::Result<SockDiag> {
        let socket = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(rustix::net::netlink::SOCK_DIAG),
        )?;
        // A reply that never comes must not stall the observer.
        rustix::net::sockopt::set_socket_timeout(
            &socket,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_secs(2)),
        )?;
        Ok(SockDiag {
            socket,
            request: Vec::with_capacity(NLMSG_HEADER_LEN + REQUEST_LEN + 4 + 1024),
            buffer: vec![0; 64 * 1024],
            sequence: 0,
        })
    }

    /// Dumps the TCP sockets of both address families (one walk of the kernel's table) in
    /// `states` (a bit per state: `1 << TCP_SYN_SENT`, …) that `filter` accepts (no filter: all),
    /// calling `visit` for each.
    pub fn dump_tcp(
        &mut self,
        states: u32,
        filter: Option<&[u8]>,
        mut visit: impl FnMut(&DiagSocket),
    ) -> std::io::Result<()> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        // idiag_ext: bit (INET_DIAG_INFO - 1) asks for tcp_info.
        let extensions = 1u8 << (INET_DIAG_INFO - 1);
        // struct inet_diag_req: family (a dump of this kind covers both), src_len, dst_len,
        // ext, the socket id, states, dbs.
        self.build_request(TCPDIAG_GETSOCK, NLM_F_REQUEST | NLM_F_DUMP, sequence);
        self.request.extend_from_slice(&[AF_INET, 0, 0, extensions]);
        self.request.extend_from_slice(&[0; 48]);
        self.request.extend_from_slice(&states.to_ne_bytes());
        self.request.extend_from_slice(&0u32.to_ne_bytes());
        debug_assert_eq!(self.request.len(), NLMSG_HEADER_LEN + COMPAT_REQUEST_LEN);
        if let Some(code) = filter {
            let attribute_len = u16::try_from(4 + code.len())
                .map_err(|_| std::io::Error::other("sock_diag filter too long"))?;
            self.request.extend_from_slice(&attribute_len.to_ne_bytes());
            self.request
                .extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
            self.request.extend_from_slice(code);
        }
        self.send_request()?;
        loop {
            let length = self.receive()?;
            let received = self.buffer.get(..length).unwrap_or_default();
            match parse_dump_part(received, sequence, &mut visit)? {
                DumpPart::More => continue,
                DumpPart::Done => return Ok(()),
            }
        }
    }

    /// Aborts `socket` (`SOCK_DESTROY`): a connect waiting on it fails at once with
    /// `ECONNABORTED`. Needs CAP_NET_ADMIN, and a kernel built with `INET_DIAG_DESTROY`.
    pub fn destroy(&mut self, socket: &DiagSocket) -> std::io::Result<()> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        self.build_request(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, sequence);
        self.request
            .extend_from_slice(&[socket.family, IPPROTO_TCP, 0, 0]);
        self.request
            .extend_from_slice(&(1u32 << socket.state).to_ne_bytes());
        self.request.extend_from_slice(&socket.id);
        self.send_request()?;
        loop {
            let length = self.receive()?;
            let received = self.buffer.get(..length).unwrap_or_default();
            if let Some(result) = acknowledgement(received, sequence) {
                return result;
            }
        }
    }

    /// One datagram of the reply, retried when a signal interrupts the wait.
    fn receive(&mut self) -> std::io::Result<usize> {
        loop {
            match rustix::net::recv(&self.socket, &mut self.buffer, RecvFlags::empty()) {
                Ok((length, _)) => return Ok(length),
                Err(rustix::io::Errno::INTR) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }

    fn build_request(&mut self, message_type: u16, flags: u16, sequence: u32) {
        self.request.clear();
        // The length is patched in by `send_request`.
        self.request.extend_from_slice(&0u32.to_ne_bytes());
        self.request.extend_from_slice(&message_type.to_ne_bytes());
        self.request.extend_from_slice(&flags.to_ne_bytes());
        self.request.extend_from_slice(&sequence.to_ne_bytes());
        self.request.extend_from_slice(&0u32.to_ne_bytes());
    }

    fn send_request(&mut self) -> std::io::Result<()> {
        let length = u32::try_from(self.request.len())
            .map_err(|_| std::io::Error::other("sock_diag request too long"))?;
        self.request[..4].copy_from_slice(&length.to_ne_bytes());
        rustix::net::send(&self.socket, &self.request, SendFlags::empty())?;
        Ok(())
    }
}

/// The kernel's announcements of destroyed TCP sockets (both families), each with its final
/// `tcp_info`: how a connection that opened and closed between two dumps, or a connect given
/// up before any dump saw it, is still seen. Any process may join the groups (sock_diag lets
/// unprivileged sockets receive them).
#[derive(Debug)]
pub struct DestroyedSockets {
    socket: OwnedFd,
    buffer: Vec<u8>,
}

impl DestroyedSockets {
    /// Joins the destroy groups. The socket does not block: read it when
    /// [`DestroyedSockets::fd`] polls readable.
    pub fn open() -> std::io::Result<DestroyedSockets> {
        let socket = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(rustix::net::netlink::SOCK_DIAG),
        )?;
        // A burst of closes must not overflow the queue between two reads.
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, 1 << 20);
        rustix::net::bind(
            &socket,
            &rustix::net::netlink::SocketAddrNetlink::new(0, DESTROY_GROUPS),
        )?;
        Ok(DestroyedSockets {
            socket,
            buffer: vec![0; 64 * 1024],
        })
    }

    /// The descriptor to wait on.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.socket.as_fd()
    }

    /// Calls `visit` for every socket announced since the last call, without waiting. Returns
    /// whether announcements were lost (the queue overflowed: `ENOBUFS`).
    pub fn drain(&mut self, mut visit: impl FnMut(&DiagSocket)) -> std::io::Result<bool> {
        let mut lost = false;
        loop {
            let length = match rustix::net::recv(&self.socket, &mut self.buffer, RecvFlags::empty())
            {
                Ok((length, _)) => length,
                Err(rustix::io::Errno::AGAIN) => return Ok(lost),
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::NOBUFS) => {
                    lost = true;
                    continue;
                }
                Err(error) => return Err(error.into()),
            };
            let mut received = self.buffer.get(..length).unwrap_or_default();
            while received.len() >= NLMSG_HEADER_LEN {
                let Some(message_length) = u32_at(received, 0).map(|l| l as usize) else {
                    break;
                };
                if message_length < NLMSG_HEADER_LEN || message_length > received.len() {
                    break;
                }
                if u16_at(received, 4) == Some(SOCK_DIAG_BY_FAMILY)
                    && let Some(socket) = parse_socket(&received[NLMSG_HEADER_LEN..message_length])
                {
                    visit(&socket);
                }
                received = received.get(aligned(message_length)..).unwrap_or_default();
            }
        }
    }
}

enum DumpPart {
    More,
    Done,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn i32_at(bytes: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Netlink messages are aligned to 4 bytes.
fn aligned(length: usize) -> usize {
    (length + 3) & !3
}

/// Walks the netlink messages of one datagram of a dump reply.
fn parse_dump_part(
    mut received: &[u8],
    sequence: u32,
    visit: &mut impl FnMut(&DiagSocket),
) -> std::io::Result<DumpPart> {
    let malformed = || std::io::Error::other("malformed sock_diag reply");
    while received.len() >= NLMSG_HEADER_LEN {
        let length = u32_at(received, 0).ok_or_else(malformed)? as usize;
        let message_type = u16_at(received, 4).ok_or_else(malformed)?;
        let message_sequence = u32_at(received, 8).ok_or_else(malformed)?;
        if length < NLMSG_HEADER_LEN || length > received.len() {
            return Err(malformed());
        }
        let payload = &received[NLMSG_HEADER_LEN..length];
        if message_sequence == sequence {
            match message_type {
                NLMSG_DONE => {
                    // A dump the kernel could not finish ends with a negative errno here.
                    return match i32_at(payload, 0) {
                        Some(errno) if errno < 0 => {
                            Err(std::io::Error::from_raw_os_error(errno.saturating_neg()))
                        }
                        _ => Ok(DumpPart::Done),
                    };
                }
                NLMSG_ERROR => {
                    let errno = i32_at(payload, 0).ok_or_else(malformed)?;
                    return Err(std::io::Error::from_raw_os_error(errno.saturating_neg()));
                }
                SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => {
                    if let Some(socket) = parse_socket(payload) {
                        visit(&socket);
                    }
                }
                _ => {}
            }
        }
        received = received.get(aligned(length)..).unwrap_or_default();
    }
    Ok(DumpPart::More)
}

/// The acknowledgement of request `sequence` in `received`, if it is there: `Ok` or the error
/// the kernel returned.
fn acknowledgement(mut received: &[u8], sequence: u32) -> Option<std::io::Result<()>> {
    while received.len() >= NLMSG_HEADER_LEN {
        let length = u32_at(received, 0)? as usize;
        if length < NLMSG_HEADER_LEN || length > received.len() {
            return Some(Err(std::io::Error::other("malformed sock_diag reply")));
        }
        if u16_at(received, 4)? == NLMSG_ERROR && u32_at(received, 8)? == sequence {
            let errno = i32_at(received, NLMSG_HEADER_LEN)?;
            return Some(if errno == 0 {
                Ok(())
            } else {
                Err(std::io::Error::from_raw_os_error(errno.saturating_neg()))
            });
        }
        received = received.get(aligned(length)..).unwrap_or_default();
    }
    None
}

/// One `struct inet_diag_msg` and its attributes.
fn parse_socket(payload: &[u8]) -> Option<DiagSocket> {
    let header = payload.get(..DIAG_MESSAGE_LEN)?;
    let family = header[0];
    let id: [u8; 48] = header.get(4..52)?.try_into().ok()?;
    // struct inet_diag_sockid: be16 sport, be16 dport, be32 src[4], be32 dst[4], u32 if,
    // u32 cookie[2].
    let local_port = u16::from_be_bytes([id[0], id[1]]);
    let remote_port = u16::from_be_bytes([id[2], id[3]]);
    let remote = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(id[20], id[21], id[22], id[23])),
        AF_INET6 => {
            let octets: [u8; 16] = id.get(20..36)?.try_into().ok()?;
            let v6 = Ipv6Addr::from(octets);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    let cookie = u64::from(u32_at(&id, 40)?) | (u64::from(u32_at(&id, 44)?) << 32);
    let mut socket = DiagSocket {
        state: header[1],
        retransmits: header[3],
        remote,
        remote_port,
        local_port,
        cookie,
        rtt: None,
        timer: header[2],
        expires: Duration::from_millis(u64::from(u32_at(header, 52)?)),
        info: TcpInfo::default(),
        id,
        family,
    };
    let mut attributes = payload.get(DIAG_MESSAGE_LEN..).unwrap_or_default();
    while attributes.len() >= 4 {
        let length = usize::from(u16_at(attributes, 0)?);
        let kind = u16_at(attributes, 2)?;
        if length < 4 || length > attributes.len() {
            break;
        }
        if kind == INET_DIAG_INFO {
            read_tcp_info(&attributes[4..length], &mut socket);
        }
        attributes = attributes.get(aligned(length)..).unwrap_or_default();
    }
    Some(socket)
}

/// Fills `socket` from its `struct tcp_info`. An older kernel's shorter structure leaves the
/// fields it lacks at zero.
fn read_tcp_info(info: &[u8], socket: &mut DiagSocket) {
    let u32_or_zero = |at| u32_at(info, at).unwrap_or(0);
    let u64_or_zero = |at| u64_at(info, at).unwrap_or(0);
    // No RTT sample yet (a SYN retransmitted without timestamps) reads as 0.
    socket.rtt = u32_at(info, TCP_INFO_RTT_OFFSET)
        .filter(|micros| *micros > 0)
        .map(|micros| Duration::from_micros(u64::from(micros)));
    if let Some(count) = info.get(TCP_INFO_RETRANSMITS_OFFSET) {
        socket.retransmits = *count;
    }
    socket.info.probes = info.get(TCP_INFO_PROBES_OFFSET).copied().unwrap_or(0);
    socket.info.rto = Duration::from_micros(u64::from(u32_or_zero(TCP_INFO_RTO_OFFSET)));
    socket.info.unacked = u32_or_zero(TCP_INFO_UNACKED_OFFSET);
    socket.info.total_retrans = u32_or_zero(TCP_INFO_TOTAL_RETRANS_OFFSET);
    socket.info.bytes_acked = u64_or_zero(TCP_INFO_BYTES_ACKED_OFFSET);
    socket.info.bytes_received = u64_or_zero(TCP_INFO_BYTES_RECEIVED_OFFSET);
    socket.info.segs_in = u32_or_zero(TCP_INFO_SEGS_IN_OFFSET);
    socket.info.notsent = u32_or_zero(TCP_INFO_NOTSENT_OFFSET);
}

/// Whether this process may destroy sockets (CAP_NET_ADMIN in its effective set).
pub fn has_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|capabilities| capabilities & (1 << CAP_NET_ADMIN) != 0)
}

#[cfg(test)]
mod tests;
