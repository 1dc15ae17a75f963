//! The server side of the control socket: binding it (mode 0600, in a checked private directory
//! by default), accepting within the limits, serving request lines and `watch` streams.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::error::ControlError;
use super::protocol::{
    ControlReply, ControlRequest, MAX_LINE_BYTES, handle_request, parse_line, reload_reply,
};
use crate::config::limits::Limits;
use crate::net::accept::AcceptBackoff;
use crate::reload::Trigger;
use crate::services::Services;

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
            if crate::os::private_control_dir().as_deref() == Some(parent) {
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

    /// Accepts connections and serves them until the task is dropped: at most
    /// `limits.max_control_connections` at once (one more gets an error line and is closed),
    /// each closed when it stays silent for `limits.control_idle_timeout`. Control connections
    /// run in tasks of their own, so nothing on this socket can hold up DNS.
    pub(crate) async fn serve(&self, services: Arc<Services>, limits: &Limits) {
        let own_uid = crate::os::current_uid();
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
            let services = Arc::clone(&services);
            tokio::spawn(async move {
                serve_connection(stream, services, idle).await;
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
    let own_uid = crate::os::current_uid();
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
async fn serve_connection(stream: UnixStream, services: Arc<Services>, idle: Duration) {
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
                stream_events(reader, &mut writer, &services, idle).await;
                return;
            }
            Ok(_) => respond(&line, &services).await,
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
    services: &Services,
    write_timeout: Duration,
) where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut events = services.events.subscribe();
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
async fn respond(line: &[u8], services: &Services) -> ControlReply {
    match parse_line(line) {
        Ok(ControlRequest::Reload {}) => {
            reload_reply(services.reloader.reload(Trigger::Control).await)
        }
        Ok(request) => handle_request(request, services),
        Err(reply) => reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        if crate::testing::needs_root("a directory of another user") {
            std::fs::DirBuilder::new().create(&foreign).expect("mkdir");
            std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o700))
                .expect("chmod");
            std::os::unix::fs::chown(&foreign, Some(65534), None).expect("chown");
            refused.push((foreign, "uid 65534"));
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
