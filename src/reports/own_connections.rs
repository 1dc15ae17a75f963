//! The server's own TCP connections to endpoint addresses (active probes, the observer's
//! re-checks): made from a local port registered before the connect starts, so the connection
//! observer can tell them from the applications' connections and never counts a probe as
//! traffic. A port stays registered for a moment after its connection closed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::net::TcpSocket;

/// The local ports of the server's own connections in progress. Cheap to clone; all clones
/// share one registry.
#[derive(Debug, Clone, Default)]
pub struct OwnConnections {
    /// Local port → connections using it (the same port can serve an IPv4 and an IPv6 one).
    ports: Arc<DashMap<u16, u32>>,
}

impl OwnConnections {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `local_port` is the port of one of the server's own connections.
    pub fn contains(&self, local_port: u16) -> bool {
        !self.ports.is_empty() && self.ports.contains_key(&local_port)
    }

    /// Connects to `target` within `timeout` from a registered port, closes the connection and
    /// returns how long the connect took.
    pub async fn probe(&self, target: SocketAddr, timeout: Duration) -> std::io::Result<Duration> {
        let socket = match target.ip() {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        let any = match target.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        // Bound first, so the port is known (and registered) before the SYN leaves.
        socket.bind(SocketAddr::new(any, 0))?;
        let port = socket.local_addr()?.port();
        let registered = Registration::new(self.clone(), port);
        let started = Instant::now();
        let outcome = tokio::time::timeout(timeout, socket.connect(target)).await;
        // The port stays registered a while after the close: a look at the kernel's sockets
        // taken while the connection was open may be read only after it closed.
        tokio::spawn(async move {
            tokio::time::sleep(REGISTRATION_LINGER).await;
            drop(registered);
        });
        match outcome {
            Ok(Ok(stream)) => {
                let elapsed = started.elapsed();
                drop(stream);
                Ok(elapsed)
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} ms", timeout.as_millis()),
            )),
        }
    }
}

/// Whether a failed connect failed here, not on the path: out of descriptors, memory, buffers
/// or local ports. Such a failure says nothing about the endpoint and is never reported as
/// one.
pub fn is_local_failure(error: &std::io::Error) -> bool {
    const LOCAL: [i32; 5] = [
        24,  // EMFILE
        23,  // ENFILE
        105, // ENOBUFS
        12,  // ENOMEM
        99,  // EADDRNOTAVAIL: no local port left
    ];
    error
        .raw_os_error()
        .is_some_and(|errno| LOCAL.contains(&errno))
}

/// How long a port stays registered after its connection closed.
const REGISTRATION_LINGER: Duration = Duration::from_secs(2);

/// A registered port, released when dropped.
struct Registration {
    own: OwnConnections,
    port: u16,
}

impl Registration {
    fn new(own: OwnConnections, port: u16) -> Self {
        *own.ports.entry(port).or_insert(0) += 1;
        Registration { own, port }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.own.ports.remove_if_mut(&self.port, |_, count| {
            *count -= 1;
            *count == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ports_are_registered_only_while_connecting() {
        let own = OwnConnections::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let target = listener.local_addr().expect("address");
        let elapsed = own
            .probe(target, Duration::from_secs(5))
            .await
            .expect("connects");
        assert!(elapsed < Duration::from_secs(5));
        assert_eq!(own.ports.len(), 1, "still registered just after the probe");
        let released = async {
            while !own.ports.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(REGISTRATION_LINGER * 5, released)
            .await
            .expect("released a while after the probe");
        let first = Registration::new(own.clone(), 4000);
        let second = Registration::new(own.clone(), 4000);
        drop(first);
        assert!(own.contains(4000), "one user left");
        drop(second);
        assert!(!own.contains(4000));
        drop(listener);
        let refused = own.probe(target, Duration::from_secs(5)).await;
        assert!(refused.is_err(), "nothing listens any more");
    }
}
