//! Wires the sockets to the handler: a UDP receive loop and a TCP accept loop per listen
//! address, the control socket, and shutdown. Sockets are bound by the caller (or by [`bind`])
//! so tests and embedders can use port 0.
//!
//! Every loop is bounded ([`Limits`]): each UDP socket has its own loop (on Linux its own
//! thread, [`crate::net::udp_loop`]; elsewhere a runtime task), so a flood on one cannot starve
//! another, and forwarded queries in flight are capped for the whole server; TCP
//! connections are capped in number (a connection gets a slot only once it has sent something,
//! and waits for that in a bounded waiting room, [`crate::net::tcp_slots`]; UDP is
//! unaffected), in idle time, in the time a started message or a reply write may take (a
//! client that trickles bytes or never reads is cut off), and in forwarded queries in flight
//! each (past that, or the server's bound, SERVFAIL at once: a connection never stops reading
//! for an upstream).
//! Owned names and cached forwarded answers go through the fast path ([`crate::dns::fastpath`]): one
//! answer memo per UDP socket, one shared by the server's TCP connections. On Linux each UDP
//! socket is read and written in batches ([`crate::net::udp_batch`]) by its own thread, and `serve`
//! binds one UDP socket per worker thread (`SO_REUSEPORT`, [`bind_sockets`]).
//!
//! Pipelined TCP queries are answered as they finish (RFC 7766 §6.2.1.1): owned names at once,
//! forwarded ones when their upstream answers, through one writer per connection that frames
//! every reply whole.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout, timeout_at};
use tracing::debug;

use crate::config::limits::Limits;
use crate::dns::answer::Transport;
use crate::dns::fastpath::AnswerMemo;
#[cfg(not(target_os = "linux"))]
use crate::dns::handler::ForwardJob;
use crate::dns::handler::{Client, Handler, Step};
use crate::net::accept::AcceptBackoff;
use crate::net::tcp_slots::{Slot, TcpSlots, WAITING_PER_SLOT, WaitingRoom};
/// The largest UDP datagram read; larger ones are cut by the kernel and fail to parse.
#[cfg(not(target_os = "linux"))]
const UDP_RECEIVE_BUFFER: usize = 65_535;

/// UDP sockets and a TCP listener on the same address.
#[derive(Debug)]
pub struct DnsListener {
    /// The UDP socket.
    pub udp: UdpSocket,
    /// Further UDP sockets on the same address (`SO_REUSEPORT`), each served by its own receive
    /// loop so that several worker threads answer UDP at once; the kernel spreads clients over
    /// them by address and port. Empty unless bound with [`bind_sockets`].
    pub more_udp: Vec<UdpSocket>,
    /// The TCP listener.
    pub tcp: TcpListener,
}

impl DnsListener {
    /// The address both listen on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// Binds UDP and TCP on `address`. Port 0 picks one free port for both.
pub async fn bind(address: SocketAddr) -> io::Result<DnsListener> {
    bind_sockets(address, 1).await
}

/// Binds `udp_sockets` UDP sockets (at least one; more share the address with `SO_REUSEPORT`,
/// so only this user's processes can join them) and one TCP listener on `address`. Port 0
/// picks one free port for all of them.
pub async fn bind_sockets(address: SocketAddr, udp_sockets: usize) -> io::Result<DnsListener> {
    let shared = udp_sockets > 1;
    if address.port() != 0 {
        return bind_at(address, udp_sockets, shared).await;
    }
    // The kernel picks a free UDP port; the same TCP port is usually free too, else try again.
    // The port is picked by a socket without SO_REUSEPORT: for one with it, the kernel also
    // offers a port another process of the same user holds with SO_REUSEPORT (unbound does),
    // and this server would then share that program's queries.
    let mut last_error = None;
    for _ in 0..32 {
        let first = udp_socket(address, false)?;
        let chosen = first.local_addr()?;
        drop(first);
        match bind_at(chosen, udp_sockets, shared).await {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free port for UDP and TCP")))
}

async fn bind_at(address: SocketAddr, udp_sockets: usize, shared: bool) -> io::Result<DnsListener> {
    let udp = udp_socket(address, shared)?;
    let more_udp = (1..udp_sockets)
        .map(|_| udp_socket(address, shared))
        .collect::<io::Result<Vec<_>>>()?;
    let tcp = TcpListener::bind(address).await?;
    Ok(DnsListener { udp, more_udp, tcp })
}

/// A non-blocking UDP socket bound to `address`, with `SO_REUSEPORT` when `shared`.
fn udp_socket(address: SocketAddr, shared: bool) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    #[cfg(unix)]
    if shared {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    let _ = shared;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    UdpSocket::from_std(socket.into())
}

/// Serves DNS on `listeners` within `limits` until `shutdown` completes.
pub async fn run(
    handler: Handler,
    listeners: Vec<DnsListener>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut tasks = JoinSet::new();
    // One pool of TCP connection slots and one of forward slots for every listen address.
    let connections = TcpSlots::new(limits.max_tcp_connections);
    let waiting = WaitingRoom::new(limits.max_tcp_connections.saturating_mul(WAITING_PER_SLOT));
    let forwards = Arc::new(Semaphore::new(limits.forwards_in_flight));
    let tcp_memo = Arc::new(std::sync::Mutex::new(AnswerMemo::new()));
    // Stops the UDP threads when this future ends, or is dropped before it ends.
    #[cfg(target_os = "linux")]
    let mut udp_loops = crate::net::udp_loop::UdpLoops::new();
    for listener in listeners {
        for udp in std::iter::once(listener.udp).chain(listener.more_udp) {
            #[cfg(target_os = "linux")]
            udp_loops.start(udp, handler.clone(), Arc::clone(&forwards));
            #[cfg(not(target_os = "linux"))]
            tasks.spawn(serve_udp(udp, handler.clone(), Arc::clone(&forwards)));
        }
        tasks.spawn(serve_tcp(
            listener.tcp,
            handler.clone(),
            Shared {
                connections: Arc::clone(&connections),
                waiting: Arc::clone(&waiting),
                forwards: Arc::clone(&forwards),
                limits: limits.clone(),
                memo: Arc::clone(&tcp_memo),
            },
        ));
    }
    shutdown.await;
    #[cfg(target_os = "linux")]
    udp_loops.stop().await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// The receive loop of one UDP socket, a datagram per system call, as a runtime task (systems
/// other than Linux; Linux has [`crate::net::udp_loop`]). It never waits on an upstream: forwarded
/// queries run in spawned tasks, each holding one of the server's `forwards` slots; with none
/// free the query is dropped. Owned names are answered through the socket's [`AnswerMemo`].
#[cfg(not(target_os = "linux"))]
async fn serve_udp(socket: UdpSocket, handler: Handler, forwards: Arc<Semaphore>) {
    let socket = Arc::new(socket);
    let mut buffer = vec![0u8; UDP_RECEIVE_BUFFER];
    let mut memo = AnswerMemo::new();
    loop {
        let (length, peer) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                debug!(%error, "udp receive failed");
                continue;
            }
        };
        let Some(packet) = buffer.get(..length) else {
            continue;
        };
        let client = Client {
            address: peer,
            transport: Transport::Udp,
        };
        match handler.handle_memoised(&mut memo, packet, client, Vec::new()) {
            Step::Reply(reply) => {
                if let Err(error) = socket.send_to(&reply, peer).await {
                    debug!(%error, %peer, "udp send failed");
                }
            }
            Step::Forward(job) => forward_udp(job, peer, &handler, &socket, &forwards),
            Step::Drop => {}
        }
    }
}

/// Runs a forwarded UDP query off the receive loop, bounded in number by `forwards`; past the
/// bound the query is dropped and the client retries.
#[cfg(not(target_os = "linux"))]
fn forward_udp(
    job: ForwardJob,
    peer: SocketAddr,
    handler: &Handler,
    socket: &Arc<UdpSocket>,
    forwards: &Arc<Semaphore>,
) {
    let Ok(permit) = Arc::clone(forwards).try_acquire_owned() else {
        debug!(%peer, "too many forwarded queries in flight; dropping");
        return;
    };
    let (handler, socket) = (handler.clone(), Arc::clone(socket));
    tokio::spawn(async move {
        let reply = handler.finish_forward(job).await;
        if let Err(error) = socket.send_to(&reply, peer).await {
            debug!(%error, %peer, "udp send failed");
        }
        drop(permit);
    });
}

/// What every TCP connection of the server shares.
#[derive(Clone)]
struct Shared {
    /// Connection slots, for every listen address together.
    connections: Arc<TcpSlots>,
    /// Where connections wait for their first bytes, without a slot.
    waiting: Arc<WaitingRoom>,
    /// Forward slots, shared with UDP.
    forwards: Arc<Semaphore>,
    limits: Limits,
    /// The fast path's memo for every TCP connection of the server. Taken with `try_lock`: a
    /// query that finds it busy goes the general path instead of waiting.
    memo: Arc<std::sync::Mutex<AnswerMemo>>,
}

/// The accept loop of one TCP listener. It never waits for anything but the next connection:
/// each waits for its first bytes in the [`WaitingRoom`] (without a slot; the one silent the
/// longest is closed when the room is full, every one after the idle timeout), then for a slot
/// ([`TcpSlots`]: a free one, or that of the connection idle the longest), so idle connections
/// can keep neither a new client out nor sit in the kernel's accept queue ahead of it.
async fn serve_tcp(listener: TcpListener, handler: Handler, shared: Shared) {
    let mut backoff = AcceptBackoff::new("tcp");
    loop {
        let (stream, peer) = backoff.accept(|| listener.accept()).await;
        let seat = shared.waiting.enter();
        let (handler, shared) = (handler.clone(), shared.clone());
        tokio::spawn(async move {
            let idle = shared.limits.tcp_idle_timeout;
            // A peek, not `readable()`: readiness may be reported with nothing to read.
            let mut first = [0u8; 1];
            tokio::select! {
                // A connection whose bytes came is served, even when its eviction is due too.
                biased;
                spoke = timeout(idle, stream.peek(&mut first)) => {
                    if !matches!(spoke, Ok(Ok(1..))) {
                        debug!(%peer, ?spoke, "tcp connection sent nothing before it closed or the idle timeout");
                        return;
                    }
                    seat.spoke();
                }
                () = seat.evicted() => {
                    debug!(%peer, "silent tcp connection closed for a new one");
                    return;
                }
            }
            // Still counted as waiting until it has its slot, so that connections sending a
            // byte each cannot pile up beyond the room.
            let slot = tokio::select! {
                slot = shared.connections.admit() => slot,
                () = seat.evicted() => return,
            };
            drop(seat);
            tokio::select! {
                () = serve_tcp_connection(stream, peer, handler, &slot, &shared) => {}
                () = slot.evicted() => debug!(%peer, "idle tcp connection closed for a new one"),
            }
        });
    }
}

/// Serves one TCP connection until the client closes it, stays idle for
/// `limits.tcp_idle_timeout`, sends a zero length, trickles a message too slowly, or stops
/// reading replies. Queries are read one after another; owned names are answered at once and
/// forwarded queries run concurrently (at most `limits.tcp_queries_in_flight`), their replies
/// sent when they finish. Replies go through one writer, so each is framed whole.
async fn serve_tcp_connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Handler,
    slot: &Slot,
    shared: &Shared,
) {
    let limits = &shared.limits;
    // Replies are small and often pipelined: do not hold them back for Nagle.
    let _ = stream.set_nodelay(true);
    let client = Client {
        address: peer,
        transport: Transport::Tcp,
    };
    let (reader, writer) = stream.into_split();
    let (replies, queue) = mpsc::channel(limits.tcp_queries_in_flight);
    let writing = write_replies(writer, queue, limits.tcp_idle_timeout, peer);
    let reading = read_queries(reader, client, handler, replies, slot, shared);
    tokio::pin!(writing);
    tokio::select! {
        // The writer gave up (the client does not read, or is gone): stop reading too. Forwards
        // still in flight finish on their own; their replies have nowhere to go.
        () = &mut writing => return,
        () = reading => {}
    }
    // No more queries: send the replies of those still in flight (each forward is bounded in
    // time), then close.
    writing.await;
}

/// Why a connection stopped reading queries (for the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// The client closed its side.
    Eof,
    /// No query began within the idle timeout.
    Idle,
    /// A zero length prefix: the client says it is done.
    ZeroLength,
    /// A message began but did not arrive whole within the timeout.
    SlowMessage,
    /// A read failed.
    Error,
}

/// Reads queries from one connection and hands each to the handler, until the connection is
/// done (see [`Closed`]).
async fn read_queries(
    mut reader: OwnedReadHalf,
    client: Client,
    handler: Handler,
    replies: mpsc::Sender<Vec<u8>>,
    slot: &Slot,
    shared: &Shared,
) {
    let limits = &shared.limits;
    let in_flight = Arc::new(Semaphore::new(limits.tcp_queries_in_flight));
    let mut message = Vec::new();
    let closed = loop {
        if let Err(closed) = read_message(&mut reader, &mut message, limits.tcp_idle_timeout).await
        {
            break closed;
        }
        slot.touch();
        let step = match shared.memo.try_lock() {
            Ok(mut memo) => handler.handle_memoised(&mut memo, &message, client, Vec::new()),
            // Busy (another connection is answering through it), or poisoned by a panic in
            // another task: the general path gives the same answer.
            Err(_) => handler.handle(&message, client),
        };
        match step {
            Step::Reply(reply) => {
                if replies.send(reply).await.is_err() {
                    return;
                }
            }
            Step::Forward(job) => {
                // At the per-connection bound, or the server's: SERVFAIL at once, and the next
                // query is read. Waiting for a forward to finish instead would hold every query
                // behind it, owned names included, for as long as an upstream that never answers
                // takes to time out.
                let permits = Arc::clone(&in_flight)
                    .try_acquire_owned()
                    .and_then(|permit| {
                        Arc::clone(&shared.forwards)
                            .try_acquire_owned()
                            .map(|server_permit| (permit, server_permit))
                    });
                let Ok((permit, server_permit)) = permits else {
                    debug!(peer = %client.address, "too many forwarded queries in flight; SERVFAIL");
                    if replies.send(handler.servfail(&job)).await.is_err() {
                        return;
                    }
                    continue;
                };
                let (handler, replies) = (handler.clone(), replies.clone());
                let in_flight = slot.query_in_flight();
                tokio::spawn(async move {
                    let reply = handler.finish_forward(job).await;
                    // The connection may be gone by now; then the reply is dropped.
                    let _ = replies.send(reply).await;
                    drop((permit, server_permit, in_flight));
                });
            }
            Step::Drop => {}
        }
    };
    debug!(peer = %client.address, ?closed, "tcp connection stops reading");
}

/// Reads one length-prefixed message (RFC 1035 §4.2.2) into `message`. The first byte may take
/// up to `idle` to come; from then on the whole message must arrive within `idle`, so a client
/// that sends a byte at a time cannot hold the connection much longer than that.
async fn read_message(
    reader: &mut OwnedReadHalf,
    message: &mut Vec<u8>,
    idle: Duration,
) -> Result<(), Closed> {
    let mut prefix = [0u8; 2];
    match timeout(idle, reader.read(&mut prefix[..1])).await {
        Err(_) => return Err(Closed::Idle),
        Ok(Ok(0)) => return Err(Closed::Eof),
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return Err(Closed::Error),
    }
    let deadline = Instant::now() + idle;
    let read_rest = |result: Result<io::Result<usize>, _>| match result {
        Err(_) => Err(Closed::SlowMessage),
        Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => Err(Closed::Eof),
        Ok(Err(_)) => Err(Closed::Error),
        Ok(Ok(_)) => Ok(()),
    };
    read_rest(timeout_at(deadline, reader.read_exact(&mut prefix[1..])).await)?;
    let length = usize::from(u16::from_be_bytes(prefix));
    if length == 0 {
        return Err(Closed::ZeroLength);
    }
    message.resize(length, 0);
    read_rest(timeout_at(deadline, reader.read_exact(message)).await)
}

/// Most bytes of replies written in one go when several are ready.
const WRITE_BATCH: usize = 16 * 1024;

/// The one writer of a connection: frames each reply with its length and writes it whole,
/// several at once when several are ready. Returns when every sender is gone, or when a write
/// does not complete within `write_timeout` (a client that does not read) or fails.
async fn write_replies(
    mut writer: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Vec<u8>>,
    write_timeout: Duration,
    peer: SocketAddr,
) {
    let mut framed = Vec::new();
    while let Some(reply) = queue.recv().await {
        framed.clear();
        push_framed(&mut framed, &reply);
        while framed.len() < WRITE_BATCH {
            let Ok(reply) = queue.try_recv() else {
                break;
            };
            push_framed(&mut framed, &reply);
        }
        match timeout(write_timeout, writer.write_all(&framed)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                debug!(%error, %peer, "tcp write failed");
                return;
            }
            Err(_) => {
                debug!(%peer, "tcp client does not read its replies; closing");
                return;
            }
        }
    }
    let _ = timeout(write_timeout, writer.shutdown()).await;
}

/// Appends `reply` with its two-byte length. Replies are encoded within 65535 bytes, so a
/// longer one cannot occur; it would be skipped rather than sent with a wrong length.
fn push_framed(framed: &mut Vec<u8>, reply: &[u8]) {
    let Ok(length) = u16::try_from(reply.len()) else {
        return;
    };
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(reply);
}
