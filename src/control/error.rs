//! What can go wrong on the control socket, on either side.

use std::path::PathBuf;

/// Errors of the control socket, on either side.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket path holds something that is not a stale socket.
    #[error("{path}: exists and is not a socket; refusing to replace it")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The control socket's private directory is not safe to use.
    #[error(
        "{path}: refusing to use this directory for the control socket: it {reason} (remove it, or name another path with --control)"
    )]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another server answers on the socket.
    #[error("{path}: another failover-dns is already serving this control socket")]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// Nothing listens on the socket.
    #[error(
        "cannot reach failover-dns at {path}: {source} (is the server running? use --control PATH)"
    )]
    NotRunning {
        /// The path.
        path: PathBuf,
        /// Why the connection failed.
        source: std::io::Error,
    },
    /// The socket is served by a process of another user (neither this user nor root).
    #[error(
        "{path}: the process serving this socket runs as uid {server_uid}, neither this user nor root; refusing to talk to it (another user may have taken the path)"
    )]
    ForeignServer {
        /// The path.
        path: PathBuf,
        /// The user id the serving process runs as.
        server_uid: u32,
    },
    /// The server replied with an error.
    #[error("{0}")]
    Rejected(String),
    /// An I/O error on the socket.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The server's reply was not understood.
    #[error("unexpected reply from failover-dns: {0}")]
    BadReply(String),
}
