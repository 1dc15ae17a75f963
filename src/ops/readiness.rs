//! Readiness for the service manager (systemd's `Type=notify`): the `sd_notify` protocol, one
//! datagram of `KEY=VALUE` lines to the Unix socket that `NOTIFY_SOCKET` names — a path, or an
//! abstract name when it starts with `@`. `serve` says `READY=1` once every listener is bound and
//! the first configuration is loaded, `RELOADING=1` and `READY=1` around every reload, `STOPPING=1`
//! at shutdown, and `STATUS=` with what it serves. Without `NOTIFY_SOCKET` every call does
//! nothing.
//!
//! By hand rather than the `sd-notify` crate: the protocol is one `send` of a few lines, and the
//! reload messages need `MONOTONIC_USEC` from the same clock systemd reads, which this file
//! takes with one `rustix` call.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::warn;

/// The environment variable the service manager names its notification socket in.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// The service manager that started this process, told about its state. Cheap to clone; a
/// manager from an environment without `NOTIFY_SOCKET` ignores every message.
#[derive(Debug, Clone, Default)]
pub struct ServiceManager {
    socket: Option<Arc<NotifySocket>>,
}

#[derive(Debug)]
struct NotifySocket {
    /// Unbound: the service manager identifies the sender by its process, not its address.
    sender: UnixDatagram,
    address: SocketAddr,
    /// The name as given, for log lines.
    name: String,
    /// Whether `READY=1` was sent: reloads are announced only after it.
    announced_ready: AtomicBool,
}

impl ServiceManager {
    /// The manager `NOTIFY_SOCKET` names, or one that ignores every message when the variable is
    /// unset or empty. A name that cannot be used is logged once and then ignored.
    pub fn from_env() -> Self {
        match std::env::var_os(NOTIFY_SOCKET) {
            Some(name) if !name.is_empty() => {
                let name = name.to_string_lossy();
                ServiceManager::for_socket(&name).unwrap_or_else(|error| {
                    warn!(
                        socket = %name,
                        "cannot use {NOTIFY_SOCKET}: {error}; the service manager is not told about readiness"
                    );
                    ServiceManager::default()
                })
            }
            _ => ServiceManager::default(),
        }
    }

    /// The manager listening on the Unix datagram socket `name`: a path, or an abstract name
    /// when it starts with `@` (Linux).
    pub fn for_socket(name: &str) -> io::Result<Self> {
        let address = socket_address(name)?;
        let sender = UnixDatagram::unbound()?;
        Ok(ServiceManager {
            socket: Some(Arc::new(NotifySocket {
                sender,
                address,
                name: name.to_string(),
                announced_ready: AtomicBool::new(false),
            })),
        })
    }

    /// Whether messages go anywhere.
    #[cfg(test)]
    pub fn is_listening(&self) -> bool {
        self.socket.is_some()
    }

    /// `READY=1` with `status`: every listener is bound and the configuration loaded (at start),
    /// or a reload is over (whatever its outcome: the server serves either way).
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
        if let Some(socket) = &self.socket {
            socket.announced_ready.store(true, Ordering::Relaxed);
        }
    }

    /// Whether `READY=1` was sent: a reload before it (while the server is still starting) is
    /// not announced, since the manager still waits for the first `READY=1`.
    pub fn has_announced_ready(&self) -> bool {
        self.socket
            .as_ref()
            .is_some_and(|socket| socket.announced_ready.load(Ordering::Relaxed))
    }

    /// `RELOADING=1`: a reload started; [`ServiceManager::ready`] follows when it is over.
    pub fn reloading(&self) {
        let mut message = String::from("RELOADING=1");
        if let Some(now) = monotonic_microseconds() {
            message.push_str(&format!("\nMONOTONIC_USEC={now}"));
        }
        self.send(&message);
    }

    /// `STOPPING=1`: shutdown began.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    /// Sends one message; a failure is logged, never fatal (the server serves either way).
    fn send(&self, message: &str) {
        let Some(socket) = &self.socket else {
            return;
        };
        if let Err(error) = socket
            .sender
            .send_to_addr(message.as_bytes(), &socket.address)
        {
            warn!(
                socket = %socket.name,
                "cannot notify the service manager: {error}"
            );
        }
    }
}

/// The status text on one line (`STATUS=` ends at the newline).
fn one_line(status: &str) -> String {
    status.replace('\n', " ")
}

fn socket_address(name: &str) -> io::Result<SocketAddr> {
    if let Some(abstract_name) = name.strip_prefix('@') {
        abstract_address(abstract_name.as_bytes())
    } else if name.starts_with('/') {
        SocketAddr::from_pathname(name)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor an abstract name starting with '@'",
        ))
    }
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_address(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist on Linux only",
    ))
}

/// `CLOCK_MONOTONIC` in microseconds, which systemd compares reload messages with.
#[cfg(target_os = "linux")]
fn monotonic_microseconds() -> Option<u128> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let seconds = u128::try_from(now.tv_sec).ok()?;
    let nanoseconds = u128::try_from(now.tv_nsec).ok()?;
    Some(seconds * 1_000_000 + nanoseconds / 1_000)
}

#[cfg(not(target_os = "linux"))]
fn monotonic_microseconds() -> Option<u128> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(listener: &UnixDatagram) -> String {
        let mut buffer = [0u8; 1024];
        let length = listener.recv(&mut buffer).expect("a datagram");
        String::from_utf8_lossy(&buffer[..length]).into_owned()
    }

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let manager = ServiceManager::for_socket(path.to_str().expect("UTF-8")).expect("socket");
        assert!(manager.is_listening());
        manager.ready("serving 3 shared names\nin 1 zone");
        assert_eq!(
            received(&listener),
            "READY=1\nSTATUS=serving 3 shared names in 1 zone"
        );
        manager.reloading();
        let reloading = received(&listener);
        let mut lines = reloading.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let monotonic = lines
            .next()
            .and_then(|line| line.strip_prefix("MONOTONIC_USEC="))
            .and_then(|value| value.parse::<u128>().ok());
        assert!(monotonic.is_some_and(|usec| usec > 0), "{reloading:?}");
        manager.stopping();
        assert_eq!(received(&listener), "STOPPING=1\nSTATUS=stopping");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!("failover-dns-readiness-test-{}", std::process::id());
        let address = abstract_address(name.as_bytes()).expect("abstract address");
        let listener = UnixDatagram::bind_addr(&address).expect("bind");
        let manager = ServiceManager::for_socket(&format!("@{name}")).expect("socket");
        manager.stopping();
        assert_eq!(received(&listener), "STOPPING=1\nSTATUS=stopping");
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        let manager = ServiceManager::default();
        assert!(!manager.is_listening());
        manager.ready("serving");
        manager.reloading();
        manager.stopping();
    }

    #[test]
    fn relative_names_are_refused_and_a_vanished_socket_is_not_fatal() {
        assert!(ServiceManager::for_socket("notify.sock").is_err());
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("gone.sock");
        let manager = ServiceManager::for_socket(path.to_str().expect("UTF-8")).expect("socket");
        // Nobody listens there: logged, not an error.
        manager.ready("serving");
    }
}
