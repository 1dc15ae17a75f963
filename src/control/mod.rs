//! The local control socket: a Unix domain socket (mode 0600, owner only) speaking
//! newline-delimited JSON, through which an agent out of process feeds reports and asks for
//! status. Also the client side used by `failover-dns report` and `status`.
//!
//! Protocol: one JSON object per line each way.
//! - `{"op":"report","address":"10.0.0.1","outcome":"failure","rtt_ms":12.5}` (or
//!   `"destination":"app-host"` for every address of a destination) →
//!   `{"reply":"reported","results":[{"address":"10.0.0.1","previous":"unknown","state":"down","consecutive_failures":1,"names":["app.internal."]}]}`
//! - `{"op":"status"}` → `{"reply":"status","names":[...],"config":{...}}`
//! - `{"op":"explain","name":"app.internal"}` → `{"reply":"explanation",...}`: why each endpoint
//!   is permitted or hidden, its state since when, its place in the order
//! - `{"op":"watch"}` → `{"reply":"watching"}`, then one event per line (`{"event":...}`) until
//!   the client closes the connection
//! - `{"op":"reload"}` → `{"reply":"reloaded","generation":2,"zones":1,"names":5,"restart_needed":[],"warnings":[]}`
//!   once the new configuration serves, or an error reply naming FILE:LINE:COLUMN of each problem
//!   while the last good configuration keeps serving.
//! - anything else → `{"reply":"error","error":"..."}`; the connection stays open.

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::config::limits::Limits;
use crate::feed::Feed;
use crate::feed::ReportTarget;
use crate::health::{Outcome, State};
use crate::net::accept::AcceptBackoff;
use crate::ops::explain::{Explanation, explain};
use crate::ops::status::{StatusReport, status_report};
use crate::reload::{ReloadError, ReloadSummary, Reloader, Trigger};

/// What one report did to one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedAddress {
    /// The endpoint address.
    pub address: IpAddr,
    /// Its state before the report.
    pub previous: State,
    /// Its state now.
    pub state: State,
    /// Failures since its last success.
    pub consecutive_failures: u32,
    /// The shared names that carry the address.
    pub names: Vec<String>,
}

/// Longest request line accepted; a longer one gets an error reply and the connection closes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    /// One connection outcome for an endpoint address, or for every address of a destination.
    Report {
        /// The endpoint address (give this or `destination`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<IpAddr>,
        /// The destination id (give this or `address`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination: Option<String>,
        /// `success` or `failure`.
        outcome: Outcome,
        /// Measured round-trip time in milliseconds, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rtt_ms: Option<f64>,
    },
    /// Every shared name with its answer order and endpoint health.
    Status {},
    /// Why one name resolves the way it does.
    Explain {
        /// The shared name.
        name: String,
    },
    /// Stream events (state changes, failovers, reloads) until the client disconnects.
    Watch {},
    /// Re-read the settings and zone files and swap the new configuration in.
    Reload {},
}

/// A reply on the control socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ControlReply {
    /// The report was recorded, for one address or every address of a destination.
    Reported {
        /// What it did to each address.
        results: Vec<ReportedAddress>,
    },
    /// Why a name resolves the way it does.
    Explanation(Explanation),
    /// Events follow, one per line.
    Watching {},
    /// The status of every shared name.
    Status(StatusReport),
    /// The new configuration is serving.
    Reloaded {
        /// Its generation (1 is the configuration loaded at startup).
        generation: u64,
        /// Owned zones.
        zones: usize,
        /// Shared names.
        names: usize,
        /// Settings that changed but keep their running value until a restart.
        restart_needed: Vec<String>,
        /// Warnings about the new configuration (as `check` prints them).
        #[serde(default)]
        warnings: Vec<String>,
    },
    /// The request was not understood or not accepted.
    Error {
        /// What was wrong.
        error: String,
    },
}

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

/// What control requests act on: the feed (reports, and through it the snapshot, the health
/// table and the events) and the reloader, when the server has one (an embedder that swaps zone
/// data itself has none, and `reload` says so).
#[derive(Debug, Clone)]
pub struct ControlContext {
    /// Where reports go.
    pub feed: Feed,
    /// What `reload` calls.
    pub reloader: Option<Reloader>,
}

/// A bound control socket. Dropping it removes the socket file.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `path` with mode 0600. A stale socket left by a crashed server is replaced; a live
    /// one, or any other kind of file, is an error. The default path's private directory is
    /// created or checked first ([`ensure_private_dir`]).
    pub fn bind(path: &Path) -> Result<Self, ControlError> {
        let io_error = |source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        };
        // The directory first: what is in it is only worth a look once nobody else controls it.
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if crate::config::settings::private_control_dir().as_deref() == Some(parent) {
                ensure_private_dir(parent)?;
            } else {
                std::fs::create_dir_all(parent).map_err(io_error)?;
                warn_if_others_may_write(parent);
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(metadata) if metadata.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(ControlError::InUse {
                        path: path.to_path_buf(),
                    });
                }
                info!(path = %path.display(), "removing stale control socket");
                std::fs::remove_file(path).map_err(io_error)?;
            }
            Ok(_) => {
                return Err(ControlError::NotASocket {
                    path: path.to_path_buf(),
                });
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(error)),
        }
        // Bind under a temporary name, restrict it, then move it into place, so the socket is
        // never reachable at its real path with wider permissions.
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(format!(".{}.tmp", std::process::id()));
        let temporary = PathBuf::from(temporary);
        let _ = std::fs::remove_file(&temporary);
        let listener = UnixListener::bind(&temporary).map_err(io_error)?;
        let restrict = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
            .and_then(|()| std::fs::rename(&temporary, path));
        if let Err(error) = restrict {
            let _ = std::fs::remove_file(&temporary);
            return Err(io_error(error));
        }
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections and serves them, within the default [`Limits`], until the task is
    /// dropped.
    pub async fn serve(&self, context: ControlContext) {
        self.serve_with_limits(context, &Limits::default()).await;
    }

    /// Accepts connections and serves them until the task is dropped: at most
    /// `limits.max_control_connections` at once (one more gets an error line and is closed),
    /// each closed when it stays silent for `limits.control_idle_timeout`. Control connections
    /// run in tasks of their own, so nothing on this socket can hold up DNS.
    pub async fn serve_with_limits(&self, context: ControlContext, limits: &Limits) {
        let own_uid = crate::config::settings::current_uid();
        let connections = Arc::new(Semaphore::new(limits.max_control_connections));
        let idle = limits.control_idle_timeout;
        let mut backoff = AcceptBackoff::new("control");
        loop {
            let (stream, _) = backoff.accept(|| self.listener.accept()).await;
            if let Ok(credentials) = stream.peer_cred() {
                let peer = credentials.uid();
                if peer != 0 && Some(peer) != own_uid {
                    warn!(
                        peer_uid = peer,
                        "control connection from another user refused"
                    );
                    continue;
                }
            }
            let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                warn!("too many control connections; refusing one");
                tokio::spawn(refuse_connection(stream, idle));
                continue;
            };
            let context = context.clone();
            tokio::spawn(async move {
                serve_connection(stream, context, idle).await;
                drop(permit);
            });
        }
    }
}

/// Makes sure `directory` is this user's private directory, creating it (mode 0700) when it is
/// missing: a real directory (not a symbolic link), owned by this user, that no group or other
/// user may enter. Anything else may have been planted by another user to take the control
/// socket's path, and is refused.
pub fn ensure_private_dir(directory: &Path) -> Result<(), ControlError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let unsafe_directory = |reason: String| ControlError::UnsafeDirectory {
        path: directory.to_path_buf(),
        reason,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(directory) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(ControlError::Io {
                path: directory.to_path_buf(),
                source,
            });
        }
    }
    let metadata = std::fs::symlink_metadata(directory).map_err(|source| ControlError::Io {
        path: directory.to_path_buf(),
        source,
    })?;
    if metadata.file_type().is_symlink() {
        return Err(unsafe_directory("is a symbolic link".to_string()));
    }
    if !metadata.is_dir() {
        return Err(unsafe_directory("is not a directory".to_string()));
    }
    let own_uid = crate::config::settings::current_uid();
    if Some(metadata.uid()) != own_uid {
        return Err(unsafe_directory(format!(
            "is owned by uid {}, not by this user",
            metadata.uid()
        )));
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(unsafe_directory(format!(
            "has mode {mode:o}: other users may enter it (expected 700)"
        )));
    }
    Ok(())
}

/// A control socket in a directory other users may write to can be replaced or preceded by
/// theirs; `--control` names it, so it is allowed, with a warning.
fn warn_if_others_may_write(directory: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(metadata) = std::fs::metadata(directory)
        && metadata.mode() & 0o022 != 0
    {
        warn!(
            directory = %directory.display(),
            "the control socket's directory is writable by other users, who could take the \
             socket's path; prefer a directory of the server's own user"
        );
    }
}

/// Tells a connection over the limit why it is closed (within `idle`, so a client that never
/// reads cannot hold even this).
async fn refuse_connection(mut stream: UnixStream, idle: Duration) {
    let reply = ControlReply::Error {
        error: "too many control connections; try again later".to_string(),
    };
    let mut bytes = serde_json::to_vec(&reply).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    let _ = tokio::time::timeout(idle, stream.write_all(&bytes)).await;
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            warn!(path = %self.path.display(), %error, "could not remove control socket");
        }
    }
}

/// Serves request lines on one connection until the client closes it, stays silent for `idle`
/// (or takes longer than that to send one line), sends a line over [`MAX_LINE_BYTES`], or does
/// not read its replies within `idle`.
async fn serve_connection(stream: UnixStream, context: ControlContext, idle: Duration) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = AsyncBufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_LINE_BYTES as u64 + 1);
        let read = limited.read_until(b'\n', &mut line);
        let Ok(read) = tokio::time::timeout(idle, read).await else {
            debug!("control connection idle; closing");
            return;
        };
        let too_long = line.len() > MAX_LINE_BYTES;
        let reply = match read {
            Ok(0) => return,
            Ok(_) if too_long => ControlReply::Error {
                error: format!("request line longer than {MAX_LINE_BYTES} bytes"),
            },
            Ok(_) if is_watch(&line) => {
                stream_events(reader, &mut writer, &context, idle).await;
                return;
            }
            Ok(_) => respond(&line, &context).await,
            Err(error) => {
                debug!(%error, "control connection read failed");
                return;
            }
        };
        let mut bytes = serde_json::to_vec(&reply).unwrap_or_else(|_| b"{}".to_vec());
        bytes.push(b'\n');
        if !write_within(&mut writer, &bytes, idle).await || too_long {
            return;
        }
    }
}

fn is_watch(line: &[u8]) -> bool {
    matches!(parse_line(line), Ok(ControlRequest::Watch {}))
}

/// Answers `watch`: a `watching` line, then every event as a JSON line until the client goes
/// away. A watcher that falls too far behind is told how many events it missed.
///
/// The client is gone as soon as its side of the connection reads end-of-file (an interrupted
/// `failover-dns watch`), not only when the next event fails to write: with no events for hours,
/// a watcher that left would otherwise keep its connection slot, and enough of them would lock
/// out every report. Each event must be written within `write_timeout`, so a watcher that stops
/// reading loses its slot too.
async fn stream_events<R>(
    mut reader: R,
    writer: &mut tokio::net::unix::OwnedWriteHalf,
    context: &ControlContext,
    write_timeout: Duration,
) where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut events = context.feed.events().subscribe();
    let mut line = serde_json::to_vec(&ControlReply::Watching {}).unwrap_or_default();
    line.push(b'\n');
    if !write_within(writer, &line, write_timeout).await {
        return;
    }
    // Anything the watcher sends after its request is read and ignored; end-of-file or an error
    // ends the watch.
    let mut ignored = [0u8; 256];
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            read = reader.read(&mut ignored) => match read {
                Ok(0) | Err(_) => {
                    debug!("watcher closed its connection");
                    return;
                }
                Ok(_) => continue,
            },
        };
        let mut line = match event {
            Ok(event) => serde_json::to_vec(&event).unwrap_or_default(),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                serde_json::to_vec(&serde_json::json!({ "event": "missed", "count": missed }))
                    .unwrap_or_default()
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        line.push(b'\n');
        if !write_within(writer, &line, write_timeout).await {
            debug!("watcher does not read its events; closing");
            return;
        }
    }
}

/// Writes `bytes` whole within `limit`; false when the write failed or took too long.
async fn write_within(
    writer: &mut tokio::net::unix::OwnedWriteHalf,
    bytes: &[u8],
    limit: Duration,
) -> bool {
    matches!(
        tokio::time::timeout(limit, writer.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// Handles one request line on the socket: like [`handle_line`], except that a reload runs on
/// the configuration load thread so the runtime's workers keep answering queries while it loads.
async fn respond(line: &[u8], context: &ControlContext) -> ControlReply {
    match parse_line(line) {
        Ok(ControlRequest::Reload {}) => reload_reply(match context.reloader.as_ref() {
            Some(reloader) => reloader.reload(Trigger::Control).await,
            None => Err(ReloadError::Unavailable),
        }),
        Ok(request) => handle_request(request, context),
        Err(reply) => reply,
    }
}

/// Handles one request line (the part of the protocol that does not touch the socket).
pub fn handle_line(line: &[u8], context: &ControlContext) -> ControlReply {
    match parse_line(line) {
        Ok(request) => handle_request(request, context),
        Err(reply) => reply,
    }
}

/// Parses one request line, or says what is wrong with it.
fn parse_line(line: &[u8]) -> Result<ControlRequest, ControlReply> {
    let text = match std::str::from_utf8(line) {
        Ok(text) => text.trim(),
        Err(_) => {
            return Err(ControlReply::Error {
                error: "request is not UTF-8".to_string(),
            });
        }
    };
    if text.is_empty() {
        return Err(ControlReply::Error {
            error: "empty request line".to_string(),
        });
    }
    serde_json::from_str::<ControlRequest>(text).map_err(|error| ControlReply::Error {
        error: format!("invalid request: {error}"),
    })
}

fn reload_reply(outcome: Result<ReloadSummary, ReloadError>) -> ControlReply {
    match outcome {
        Ok(summary) => ControlReply::Reloaded {
            generation: summary.generation,
            zones: summary.zones,
            names: summary.names,
            restart_needed: summary.restart_needed,
            warnings: summary.warnings,
        },
        Err(error) => ControlReply::Error {
            error: error.to_string(),
        },
    }
}

/// Carries out one control request.
pub fn handle_request(request: ControlRequest, context: &ControlContext) -> ControlReply {
    match request {
        ControlRequest::Report {
            address,
            destination,
            outcome,
            rtt_ms,
        } => {
            let target = match (address, destination) {
                (Some(address), None) => ReportTarget::Address(address),
                (None, Some(destination)) => ReportTarget::Destination(destination),
                _ => {
                    return ControlReply::Error {
                        error: "a report names exactly one of \"address\" and \"destination\""
                            .to_string(),
                    };
                }
            };
            match context.feed.report_ms(&target, outcome, rtt_ms) {
                Ok(results) => ControlReply::Reported {
                    results: results
                        .into_iter()
                        .map(|r| ReportedAddress {
                            address: r.address,
                            previous: r.previous,
                            state: r.state,
                            consecutive_failures: r.consecutive_failures,
                            names: r.names,
                        })
                        .collect(),
                },
                Err(error) => ControlReply::Error {
                    error: error.to_string(),
                },
            }
        }
        ControlRequest::Explain { name } => {
            let Ok(parsed) = crate::config::parse_name(&name) else {
                return ControlReply::Error {
                    error: format!("{name:?} is not a DNS name"),
                };
            };
            let snapshot = context.feed.snapshot().load();
            match explain(&snapshot, context.feed.health(), &parsed) {
                Some(explanation) => ControlReply::Explanation(explanation),
                None => ControlReply::Error {
                    error: format!("{name} is not a shared name"),
                },
            }
        }
        ControlRequest::Watch {} => ControlReply::Error {
            error: "watch streams events and is only served on the control socket".to_string(),
        },
        ControlRequest::Status {} => {
            let snapshot = context.feed.snapshot().load();
            let mut report = status_report(&snapshot, context.feed.health());
            report.config = context.reloader.as_ref().map(Reloader::config_status);
            ControlReply::Status(report)
        }
        // Blocks the calling thread while the files load; the socket server takes the async
        // path in `respond` instead.
        ControlRequest::Reload {} => reload_reply(match context.reloader.as_ref() {
            Some(reloader) => reloader.reload_blocking(Trigger::Control),
            None => Err(ReloadError::Unavailable),
        }),
    }
}

/// Sends one request to the server at `path` and waits for its reply (client side).
pub fn request(path: &Path, request: &ControlRequest) -> Result<ControlReply, ControlError> {
    let connection = ClientConnection::open(path, Some(Duration::from_secs(10)))?;
    let (first, _) = connection.send(request)?;
    let reply: ControlReply = serde_json::from_str(first.trim())
        .map_err(|e| ControlError::BadReply(format!("{e}: {first:?}")))?;
    match reply {
        ControlReply::Error { error } => Err(ControlError::Rejected(error)),
        reply => Ok(reply),
    }
}

/// Streams events from the server at `path` (client side of `watch`): calls `on_event` with
/// each event line until the server closes the connection or `on_event` returns false.
pub fn watch(path: &Path, mut on_event: impl FnMut(&str) -> bool) -> Result<(), ControlError> {
    let connection = ClientConnection::open(path, None)?;
    let (first, lines) = connection.send(&ControlRequest::Watch {})?;
    match serde_json::from_str::<ControlReply>(first.trim()) {
        Ok(ControlReply::Watching {}) => {}
        Ok(ControlReply::Error { error }) => return Err(ControlError::Rejected(error)),
        _ => return Err(ControlError::BadReply(first)),
    }
    for line in lines.lines() {
        let line = line.map_err(|source| connection.io_error(source))?;
        if !on_event(&line) {
            break;
        }
    }
    Ok(())
}

/// The client's side of one control connection, to a server it has checked.
struct ClientConnection<'a> {
    stream: std::os::unix::net::UnixStream,
    path: &'a Path,
}

impl<'a> ClientConnection<'a> {
    /// Connects to `path` and checks who serves it before anything is sent: the server must run
    /// as this user or as root, so a socket another user planted at the path (in a shared
    /// directory) gets neither our request nor our trust in its reply.
    fn open(path: &'a Path, timeout: Option<Duration>) -> Result<Self, ControlError> {
        let stream = std::os::unix::net::UnixStream::connect(path).map_err(|source| {
            ControlError::NotRunning {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let connection = ClientConnection { stream, path };
        connection.check_server_user()?;
        let io_error = |source| connection.io_error(source);
        connection
            .stream
            .set_read_timeout(timeout)
            .map_err(io_error)?;
        connection
            .stream
            .set_write_timeout(timeout)
            .map_err(io_error)?;
        Ok(connection)
    }

    #[cfg(target_os = "linux")]
    fn check_server_user(&self) -> Result<(), ControlError> {
        let server = rustix::net::sockopt::socket_peercred(&self.stream)
            .map_err(|errno| self.io_error(errno.into()))?;
        let server_uid = server.uid.as_raw();
        let own_uid = crate::config::settings::current_uid();
        if server_uid == 0 || Some(server_uid) == own_uid {
            Ok(())
        } else {
            Err(ControlError::ForeignServer {
                path: self.path.to_path_buf(),
                server_uid,
            })
        }
    }

    /// Elsewhere the socket's directory (mode 0700, owned by this user) is the only guard.
    #[cfg(not(target_os = "linux"))]
    fn check_server_user(&self) -> Result<(), ControlError> {
        Ok(())
    }

    fn io_error(&self, source: std::io::Error) -> ControlError {
        ControlError::Io {
            path: self.path.to_path_buf(),
            source,
        }
    }

    /// Sends `request` and reads the first reply line; returns it with a reader for the rest.
    ///
    /// A server that refuses the connection (too many control connections) sends its reason and
    /// closes without reading the request, so the write may fail with a broken pipe while the
    /// reason waits to be read: the reason is what the user sees, the write error only when
    /// there is none.
    fn send(
        &self,
        request: &ControlRequest,
    ) -> Result<(String, BufReader<&std::os::unix::net::UnixStream>), ControlError> {
        let mut line =
            serde_json::to_vec(request).map_err(|e| ControlError::BadReply(e.to_string()))?;
        line.push(b'\n');
        let written = (&self.stream).write_all(&line);
        let mut reader = BufReader::new(&self.stream);
        let mut first = String::new();
        match (written, reader.read_line(&mut first)) {
            (_, Ok(read)) if read > 0 => Ok((first, reader)),
            (Err(error), _) | (Ok(()), Err(error)) => Err(self.io_error(error)),
            (Ok(()), Ok(_)) => Err(ControlError::BadReply(
                "the server closed the connection without a reply".to_string(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_table() {
        let cases = [
            (r#"{"op":"status"}"#, true),
            (
                r#"{"op":"report","address":"10.0.0.1","outcome":"success"}"#,
                true,
            ),
            (
                r#"{"op":"report","address":"::1","outcome":"failure","rtt_ms":1.5}"#,
                true,
            ),
            (r#"{"op":"status","extra":1}"#, false),
            (r#"{"op":"reload"}"#, true),
            (r#"{"op":"reload","force":true}"#, false),
            (
                r#"{"op":"report","address":"10.0.0.1","outcome":"success","x":1}"#,
                false,
            ),
            (
                r#"{"op":"report","address":"10.0.0.300","outcome":"success"}"#,
                false,
            ),
            (
                r#"{"op":"report","address":"10.0.0.1","outcome":"maybe"}"#,
                false,
            ),
            (r#"{"op":"reboot"}"#, false),
            ("garbage", false),
        ];
        for (line, valid) in cases {
            let parsed = serde_json::from_str::<ControlRequest>(line);
            assert_eq!(parsed.is_ok(), valid, "{line}: {parsed:?}");
        }
    }

    #[test]
    fn the_private_directory_is_created_or_refused() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().expect("temporary directory");
        let fresh = base.path().join("fresh");
        ensure_private_dir(&fresh).expect("created");
        let mode = std::fs::metadata(&fresh)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        ensure_private_dir(&fresh).expect("an existing private directory is fine");

        let open = base.path().join("open");
        std::fs::create_dir(&open).expect("mkdir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&fresh, &link).expect("symlink");
        let file = base.path().join("file");
        std::fs::write(&file, "").expect("write");
        let mut refused = vec![
            (open, "mode 755"),
            (link, "symbolic link"),
            (file, "not a directory"),
        ];
        let foreign = base.path().join("foreign");
        if crate::config::settings::current_uid() == Some(0) {
            std::fs::DirBuilder::new().create(&foreign).expect("mkdir");
            std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o700))
                .expect("chmod");
            std::os::unix::fs::chown(&foreign, Some(65534), None).expect("chown");
            refused.push((foreign, "uid 65534"));
        } else {
            eprintln!("skipped: needs root (a directory of another user)");
        }
        for (path, reason) in refused {
            let error = ensure_private_dir(&path).expect_err("refused");
            let message = error.to_string();
            assert!(
                matches!(error, ControlError::UnsafeDirectory { .. }) && message.contains(reason),
                "{}: {message}",
                path.display()
            );
        }
    }
}
