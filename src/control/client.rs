//! The client side of the control socket, as `report`, `status`, `watch` and `reload` use it:
//! it checks who serves the socket before it sends anything.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::ControlError;
use super::protocol::{ControlReply, ControlRequest};

/// The client end of the control socket of a running server (what `failover-dns report`,
/// `status`, `watch` and `reload` use). It talks only to a server of this user or root.
#[derive(Debug, Clone)]
pub struct ControlClient {
    path: PathBuf,
}

impl ControlClient {
    /// A client of the control socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ControlClient { path: path.into() }
    }

    /// Sends one request and waits for its reply; an error reply is [`ControlError::Rejected`].
    pub fn request(&self, request: &ControlRequest) -> Result<ControlReply, ControlError> {
        self::request(&self.path, request)
    }

    /// Streams events: calls `on_event` with each event line (one JSON object) until the server
    /// closes the connection or `on_event` returns false.
    pub fn watch(&self, on_event: impl FnMut(&str) -> bool) -> Result<(), ControlError> {
        self::watch(&self.path, on_event)
    }
}

/// Sends one request to the server at `path` and waits for its reply (client side).
fn request(path: &Path, request: &ControlRequest) -> Result<ControlReply, ControlError> {
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
fn watch(path: &Path, mut on_event: impl FnMut(&str) -> bool) -> Result<(), ControlError> {
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
        let own_uid = crate::os::current_uid();
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
