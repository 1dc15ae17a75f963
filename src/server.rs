//! Wires the sockets to the handler: a UDP receive loop and a TCP accept loop per listen
//! address, the control socket, and shutdown. Sockets are bound by the caller (or by [`bind`])
//! so tests and embedders can use port 0.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::answer::Transport;
use crate::control::ControlSocket;
use crate::handler::{Handler, Step};

/// How long a TCP connection may stay idle between queries (RFC 7766 §6.2.3 suggests seconds).
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many TCP connections are served at once; more wait in the kernel's backlog.
pub const MAX_TCP_CONNECTIONS: usize = 256;
/// How many forwarded UDP queries may wait for upstreams at once, per socket.
pub const MAX_UDP_FORWARDS_IN_FLIGHT: usize = 1024;
/// The largest UDP datagram read; larger ones are cut by the kernel and fail to parse.
const UDP_RECEIVE_BUFFER: usize = 65_535;

/// A UDP socket and a TCP listener on the same address.
#[derive(Debug)]
pub struct DnsListener {
    /// The UDP socket.
    pub udp: UdpSocket,
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
    if address.port() != 0 {
        let udp = UdpSocket::bind(address).await?;
        let tcp = TcpListener::bind(address).await?;
        return Ok(DnsListener { udp, tcp });
    }
    // The kernel picks a free UDP port; the same TCP port is usually free too, else try again.
    let mut last_error = None;
    for _ in 0..32 {
        let udp = UdpSocket::bind(address).await?;
        let chosen = udp.local_addr()?;
        match TcpListener::bind(chosen).await {
            Ok(tcp) => return Ok(DnsListener { udp, tcp }),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no free port for UDP and TCP")))
}

/// Serves DNS on `listeners` (and the control socket, if any) until `shutdown` completes.
pub async fn run(
    handler: Handler,
    listeners: Vec<DnsListener>,
    control: Option<ControlSocket>,
    shutdown: impl Future<Output = ()>,
) {
    let mut tasks = JoinSet::new();
    let connections = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    for listener in listeners {
        tasks.spawn(serve_udp(listener.udp, handler.clone()));
        tasks.spawn(serve_tcp(
            listener.tcp,
            handler.clone(),
            Arc::clone(&connections),
        ));
    }
    let control_task = control.map(|socket| {
        let handler = handler.clone();
        tokio::spawn(async move {
            socket.serve(handler).await;
            socket
        })
    });
    shutdown.await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    if let Some(task) = control_task {
        // Aborting drops the socket, which removes its file.
        task.abort();
        let _ = task.await;
    }
}

async fn serve_udp(socket: UdpSocket, handler: Handler) {
    let socket = Arc::new(socket);
    let forwards = Arc::new(Semaphore::new(MAX_UDP_FORWARDS_IN_FLIGHT));
    let mut buffer = vec![0u8; UDP_RECEIVE_BUFFER];
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
        match handler.handle(packet, Transport::Udp) {
            Step::Reply(reply) => {
                if let Err(error) = socket.send_to(&reply, peer).await {
                    debug!(%error, %peer, "udp send failed");
                }
            }
            Step::Forward(job) => {
                // Upstream round trips run off the receive loop, bounded in number; past the
                // bound the query is dropped and the client retries.
                let Ok(permit) = Arc::clone(&forwards).try_acquire_owned() else {
                    debug!(%peer, "too many forwarded queries in flight; dropping");
                    continue;
                };
                let (handler, socket) = (handler.clone(), Arc::clone(&socket));
                tokio::spawn(async move {
                    let reply = handler.finish_forward(job).await;
                    if let Err(error) = socket.send_to(&reply, peer).await {
                        debug!(%error, %peer, "udp send failed");
                    }
                    drop(permit);
                });
            }
            Step::Drop => {}
        }
    }
}

async fn serve_tcp(listener: TcpListener, handler: Handler, connections: Arc<Semaphore>) {
    loop {
        let Ok(permit) = Arc::clone(&connections).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(error) = serve_tcp_connection(stream, &handler).await {
                debug!(%error, %peer, "tcp connection ended");
            }
            drop(permit);
        });
    }
}

/// Serves length-prefixed queries (RFC 1035 §4.2.2) on one connection, in order, until the
/// client closes it, stays idle too long, or sends a zero length.
async fn serve_tcp_connection(mut stream: TcpStream, handler: &Handler) -> io::Result<()> {
    let mut message = Vec::new();
    loop {
        let length = match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_u16()).await {
            Err(_) => return Ok(()),
            Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(result) => usize::from(result?),
        };
        if length == 0 {
            return Ok(());
        }
        message.resize(length, 0);
        tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut message))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "query body timed out"))??;
        let Some(reply) = handler.respond(&message, Transport::Tcp).await else {
            continue;
        };
        let Ok(reply_length) = u16::try_from(reply.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_length.to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}
