//! The UDP receive loops on Linux: one OS thread per UDP socket, asleep in `recvmmsg` until
//! queries arrive, answering owned names through its own [`AnswerMemo`] and handing forwarded
//! queries to the tokio runtime. [`UdpLoops`] starts them and stops them.
//!
//! Why threads and not runtime tasks: a socket registered with the runtime's epoll has an
//! epoll callback on its wait queue, and the kernel runs that callback for every datagram it
//! sends (the send buffer's "writable again" wake-up) and for every one it receives. A socket
//! that only a thread sleeping in `recvmmsg` waits on has no callback: a sent reply wakes
//! nobody, and while the thread is busy an arriving query wakes nobody either. At saturation on
//! loopback that is 7–8% less CPU per query, and 7% more queries per second, than the same
//! batched loop as a runtime task (`scripts/bench-peers.sh`; docs/development.md, "Performance").
//!
//! Stopping: [`UdpLoops::stop`] (or dropping the [`UdpLoops`]) marks the loops as stopping and
//! shuts each socket down for reading (`shutdown(SHUT_RD)`), which wakes a thread asleep in
//! `recvmmsg` and keeps every later call from sleeping; the thread sees the mark and ends,
//! closing its socket when the last forwarded query's task lets go of it.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, error, warn};

use crate::dns::answer::Transport;
use crate::dns::fastpath::AnswerMemo;
use crate::dns::handler::{Client, ForwardJob, Handler, Step};
use crate::net::udp_batch::{BATCH, ReceiveBatch, prepare, send_all, send_one};

/// How long a loop pauses after a receive error other than a signal, so that an error that
/// repeats cannot spin a CPU.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// The running receive threads of a server; stops them when dropped.
#[derive(Debug)]
pub struct UdpLoops {
    sockets: Vec<Arc<UdpSocket>>,
    stopping: Arc<AtomicBool>,
    /// Each loop holds a clone of this sender until it ends; `None` once [`UdpLoops::stop`]
    /// has let go of the original.
    running: Option<mpsc::Sender<()>>,
    /// Closes when every loop has ended.
    ended: mpsc::Receiver<()>,
}

impl Default for UdpLoops {
    fn default() -> Self {
        Self::new()
    }
}

impl UdpLoops {
    /// No loops yet.
    pub fn new() -> Self {
        let (running, ended) = mpsc::channel(1);
        UdpLoops {
            sockets: Vec::new(),
            stopping: Arc::new(AtomicBool::new(false)),
            running: Some(running),
            ended,
        }
    }

    /// Starts a receive thread for `socket` (taken off the runtime's reactor and made
    /// blocking). Must be called within a tokio runtime: forwarded queries run on it. A socket
    /// that cannot be readied or a thread that cannot start is logged as an error, and that
    /// socket is not served (the server's other sockets and TCP are).
    pub fn start(
        &mut self,
        socket: tokio::net::UdpSocket,
        handler: Handler,
        forwards: Arc<Semaphore>,
    ) {
        let Some(running) = self.running.clone() else {
            return;
        };
        let address = socket.local_addr().ok();
        let socket = match socket.into_std().and_then(|socket| {
            socket.set_nonblocking(false)?;
            Ok(socket)
        }) {
            Ok(socket) => Arc::new(socket),
            Err(error) => {
                error!(%error, ?address, "udp socket could not be readied; it is not served");
                return;
            }
        };
        prepare(&socket);
        self.sockets.push(Arc::clone(&socket));
        let receive_loop = ReceiveLoop {
            socket,
            handler,
            forwards,
            runtime: Handle::current(),
            stopping: Arc::clone(&self.stopping),
            _running: running,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("udp-{}", self.sockets.len()))
            .spawn(move || receive_loop.run());
        if let Err(error) = spawned {
            error!(%error, ?address, "udp receive thread could not start; the socket is not served");
        }
    }

    /// Stops every loop and waits until they have ended; their sockets are closed then (unless
    /// a forwarded query's task still holds one, to send its answer).
    pub async fn stop(&mut self) {
        self.signal_stop();
        self.running = None;
        while self.ended.recv().await.is_some() {}
        self.sockets.clear();
    }

    fn signal_stop(&self) {
        self.stopping.store(true, Ordering::Release);
        for socket in &self.sockets {
            // Linux answers ENOTCONN for an unconnected UDP socket, and shuts it down for
            // reading all the same (waking its sleeping reader).
            let _ = rustix::net::shutdown(&**socket, rustix::net::Shutdown::Read);
        }
    }
}

impl Drop for UdpLoops {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// One socket's loop and what it needs.
struct ReceiveLoop {
    socket: Arc<UdpSocket>,
    handler: Handler,
    forwards: Arc<Semaphore>,
    runtime: Handle,
    stopping: Arc<AtomicBool>,
    /// Dropped when the loop ends (see [`UdpLoops::stop`]).
    _running: mpsc::Sender<()>,
}

impl ReceiveLoop {
    fn run(self) {
        // The general path may spawn tasks (events, probes): give it the runtime.
        let _runtime = self.runtime.enter();
        let mut batch = ReceiveBatch::new();
        let mut memo = AnswerMemo::new();
        let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
        // The buffers of sent replies, refilled by the next batch's memoised answers.
        let mut spare: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
        while !self.stopping.load(Ordering::Acquire) {
            let count = match batch.receive(&self.socket) {
                Ok(count) => count,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    if !self.stopping.load(Ordering::Acquire) {
                        warn!(%error, "udp receive failed");
                        std::thread::sleep(ERROR_PAUSE);
                    }
                    continue;
                }
            };
            if self.stopping.load(Ordering::Acquire) {
                break;
            }
            for index in 0..count {
                let Some((packet, peer)) = batch.datagram(index) else {
                    continue;
                };
                let client = Client {
                    address: peer,
                    transport: Transport::Udp,
                };
                let buffer = spare.pop().unwrap_or_default();
                match self
                    .handler
                    .handle_memoised(&mut memo, packet, client, buffer)
                {
                    Step::Reply(reply) => replies.push((reply, peer)),
                    Step::Forward(job) => self.forward(job, peer),
                    Step::Drop => {}
                }
            }
            send_all(&self.socket, &replies);
            spare.extend(replies.drain(..).map(|(buffer, _)| buffer));
        }
        debug!("udp receive loop stopped");
    }

    /// Runs a forwarded query on the runtime, bounded in number by the server's forward
    /// slots; past the bound the query is dropped and the client retries.
    fn forward(&self, job: ForwardJob, peer: SocketAddr) {
        let Ok(permit) = Arc::clone(&self.forwards).try_acquire_owned() else {
            debug!(%peer, "too many forwarded queries in flight; dropping");
            return;
        };
        let (handler, socket) = (self.handler.clone(), Arc::clone(&self.socket));
        self.runtime.spawn(async move {
            let reply = handler.finish_forward(job).await;
            send_one(&socket, &reply, peer);
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A query for `example.` A with ID 0x1234 and RD.
    const QUERY: &[u8] = &[
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p', b'l',
        b'e', 0, 0, 1, 0, 1,
    ];

    /// A loop on a fresh socket of 127.0.0.1, and the socket's address.
    async fn started() -> (UdpLoops, SocketAddr) {
        let handler = crate::testing::test_handler().clone();
        let listener = crate::net::server::bind("127.0.0.1:0".parse().expect("literal"))
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let mut loops = UdpLoops::new();
        loops.start(listener.udp, handler, Arc::new(Semaphore::new(8)));
        (loops, address)
    }

    /// Sends the query to `server` and returns the reply's ID.
    fn ask(server: SocketAddr) -> Option<[u8; 2]> {
        let client = UdpSocket::bind("127.0.0.1:0").ok()?;
        client.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        client.send_to(QUERY, server).ok()?;
        let mut reply = [0u8; 512];
        let length = client.recv(&mut reply).ok()?;
        (length >= 12).then(|| [reply[0], reply[1]])
    }

    /// Whether `address` can be bound again, that is whether the loop's socket is closed.
    fn is_free(address: SocketAddr) -> bool {
        UdpSocket::bind(address).is_ok()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_loop_answers_and_stop_ends_it_and_closes_its_socket() {
        let (mut loops, address) = started().await;
        let id = tokio::task::spawn_blocking(move || ask(address))
            .await
            .expect("joins");
        assert_eq!(
            id,
            Some([0x12, 0x34]),
            "the loop answers with the query's ID"
        );
        assert!(!is_free(address), "the loop holds its socket while it runs");
        tokio::time::timeout(Duration::from_secs(10), loops.stop())
            .await
            .expect("stop returns once the thread, asleep in recvmmsg, has ended");
        assert!(is_free(address), "the socket is closed when stop returns");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn dropping_the_loops_ends_them_too() {
        let (loops, address) = started().await;
        drop(loops);
        // Without `stop` nothing waits for the thread: look until its socket is closed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_free(address) {
            assert!(
                Instant::now() < deadline,
                "the thread kept its socket after the drop"
            );
            tokio::task::yield_now().await;
        }
    }
}
