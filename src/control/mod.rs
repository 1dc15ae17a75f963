//! The local control socket: a Unix domain socket (mode 0600, owner only) speaking
//! newline-delimited JSON, through which an agent out of process feeds reports and asks for
//! status. Also the client side used by `failover-dns report` and `status`.
//!
//! Protocol: one JSON object per line each way.
//! - `{"op":"report","address":"10.0.0.1","outcome":"failure","rtt_ms":12.5}` (or
//!   `"destination":"app-host"` for every address of a destination; optional `"source"`:
//!   `agent`, the default, or `probe`) →
//!   `{"reply":"reported","results":[{"address":"10.0.0.1","previous":"unknown","state":"down","consecutive_failures":1,"names":["app.internal."]}]}`
//! - `{"op":"status"}` → `{"reply":"status","names":[...],"config":{...}}`
//! - `{"op":"explain","name":"app.internal"}` → `{"reply":"explanation",...}`: why each endpoint
//!   is permitted or hidden, its state since when, its place in the order
//! - `{"op":"watch"}` → `{"reply":"watching"}`, then one event per line (`{"event":...}`) until
//!   the client closes the connection
//! - `{"op":"drain","destination":"gw-berlin"}` / `{"op":"undrain",...}` →
//!   `{"reply":"drain","destination":"gw-berlin","draining":true,"changed":true}`: a destination
//!   answered last (maintenance), or back in its place
//! - `{"op":"reload"} → `{"reply":"reloaded","generation":2,"zones":1,"names":5,"restart_needed":[],"warnings":[]}`
//!   once the new configuration serves, or an error reply naming FILE:LINE:COLUMN of each problem
//!   while the last good configuration keeps serving.
//! - anything else → `{"reply":"error","error":"..."}`; the connection stays open.

mod client;
mod protocol;
mod server;

use std::path::PathBuf;

pub use client::{request, watch};
pub use protocol::{ControlReply, ControlRequest, handle_line};
pub use server::{ControlContext, ControlSocket};

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
