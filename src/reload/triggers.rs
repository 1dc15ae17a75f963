//! The reload triggers that run on their own: `SIGHUP`, and a watcher on the zones directory and
//! the settings file whose bursts of changes are debounced into one reload. (The control socket's
//! `reload` request calls [`Reloader::reload`] directly.)
//!
//! The debouncer is by hand rather than `notify-debouncer-*`: a few lines on the channel the
//! watcher already feeds, where those crates run a thread of their own and report per path.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::is_zone_file_name;
use crate::reload::{Reloader, Trigger};

/// How long the watched files must stay quiet before a reload starts: an editor's
/// write-rename-delete sequence, or a console pushing several files, reloads once.
pub const DEBOUNCE_QUIET: Duration = Duration::from_millis(150);
/// The longest a reload waits for quiet while changes keep coming.
pub const DEBOUNCE_MAX_WAIT: Duration = Duration::from_secs(1);

/// Keeps the reload triggers alive: the file watcher and the tasks behind it and `SIGHUP`.
/// Dropping it stops them.
pub struct ReloadTriggers {
    _watcher: Option<RecommendedWatcher>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for ReloadTriggers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadTriggers")
            .field("watching", &self._watcher.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for ReloadTriggers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the triggers: `SIGHUP` (installed before this returns, so a signal right after
/// startup reloads instead of killing the process) and a watcher on the zones directory and
/// `settings_file`. A watcher that cannot start (no inotify instances left, say) is logged and
/// left out; the other triggers still work. Must run inside the Tokio runtime.
pub fn start_triggers(
    reloader: &Reloader,
    settings_file: Option<&Path>,
) -> std::io::Result<ReloadTriggers> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())?;
    let mut tasks = Vec::new();
    let on_signal = reloader.clone();
    tasks.push(tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            // The outcome is logged and recorded by the reload itself.
            let _ = on_signal.reload(Trigger::Signal).await;
        }
    }));
    let (changed, changes) = mpsc::channel(1);
    let watcher = match watch_files(reloader.zones_dir(), settings_file, changed) {
        Ok(watcher) => {
            let on_change = reloader.clone();
            tasks.push(tokio::spawn(debounced(changes, move || {
                let reloader = on_change.clone();
                async move {
                    // The outcome is logged and recorded by the reload itself.
                    let _ = reloader.reload(Trigger::FileChange).await;
                }
            })));
            Some(watcher)
        }
        Err(error) => {
            warn!(
                %error,
                "cannot watch the configuration files; reload with SIGHUP or `failover-dns reload`"
            );
            None
        }
    };
    Ok(ReloadTriggers {
        _watcher: watcher,
        tasks,
    })
}

/// What the watcher looks at, resolved once so event paths compare exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Watched {
    zones_dir: PathBuf,
    settings_file: Option<PathBuf>,
}

impl Watched {
    /// Whether `event` may change the configuration: a zone file (or the directory itself) or
    /// the settings file was created, written, renamed or removed. Opens and reads are not
    /// changes (the reload's own reads would otherwise trigger the next reload).
    fn is_change(&self, event: &Event) -> bool {
        match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
            EventKind::Access(_) => return false,
            _ => {}
        }
        event.need_rescan() || event.paths.iter().any(|path| self.is_watched_path(path))
    }

    fn is_watched_path(&self, path: &Path) -> bool {
        if path == self.zones_dir || self.settings_file.as_deref() == Some(path) {
            return true;
        }
        path.parent() == Some(self.zones_dir.as_path())
            && path.file_name().is_some_and(is_zone_file_name)
    }
}

/// Watches the zones directory (and the settings file's directory) and signals `changed` for
/// every relevant event; a full channel already holds a pending change, so bursts coalesce.
fn watch_files(
    zones_dir: &Path,
    settings_file: Option<&Path>,
    changed: mpsc::Sender<()>,
) -> notify::Result<RecommendedWatcher> {
    let zones_dir = zones_dir.canonicalize().map_err(notify::Error::io)?;
    let settings_file = match settings_file {
        Some(file) => Some(file.canonicalize().map_err(notify::Error::io)?),
        None => None,
    };
    let watched = Watched {
        zones_dir: zones_dir.clone(),
        settings_file: settings_file.clone(),
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        match event {
            Ok(event) if watched.is_change(&event) => {
                // Full: a change is already pending. Closed: the server is stopping.
                let _ = changed.try_send(());
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "file watcher error"),
        }
    })?;
    watcher.watch(&zones_dir, RecursiveMode::NonRecursive)?;
    if let Some(directory) = settings_file.as_deref().and_then(Path::parent)
        && directory != zones_dir
    {
        watcher.watch(directory, RecursiveMode::NonRecursive)?;
    }
    info!(zones = %zones_dir.display(), "watching configuration files for changes");
    Ok(watcher)
}

/// Calls `on_burst` once per burst of changes: after [`DEBOUNCE_QUIET`] without a change, or
/// after [`DEBOUNCE_MAX_WAIT`] when changes keep coming. A change while `on_burst` runs starts
/// another burst, so the last change is never missed. Returns when the sender is gone.
///
/// By hand rather than `notify-debouncer-*`: a few lines on the channel the watcher already
/// feeds, where those crates run a thread of their own and report per path, while a reload
/// wants one call per burst across every file, with a bound on how long a burst may defer it.
async fn debounced<F, Fut>(mut changes: mpsc::Receiver<()>, mut on_burst: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    while changes.recv().await.is_some() {
        let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX_WAIT;
        loop {
            let quiet_until = (tokio::time::Instant::now() + DEBOUNCE_QUIET).min(deadline);
            match tokio::time::timeout_at(quiet_until, changes.recv()).await {
                Ok(Some(())) if tokio::time::Instant::now() < deadline => {}
                Ok(Some(())) | Err(_) => break,
                Ok(None) => return,
            }
        }
        on_burst().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};
    use std::sync::{Arc, Mutex};

    #[test]
    fn watched_paths_table() {
        let watched = Watched {
            zones_dir: PathBuf::from("/srv/zones"),
            settings_file: Some(PathBuf::from("/etc/fdns/settings.toml")),
        };
        let modify = EventKind::Modify(ModifyKind::Any);
        let cases = [
            (modify, "/srv/zones/app.toml", true),
            (
                EventKind::Create(CreateKind::File),
                "/srv/zones/new.toml",
                true,
            ),
            (
                EventKind::Remove(RemoveKind::File),
                "/srv/zones/app.toml",
                true,
            ),
            (
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                "/srv/zones/app.toml",
                true,
            ),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                "/srv/zones/app.toml",
                true,
            ),
            (EventKind::Remove(RemoveKind::Folder), "/srv/zones", true),
            (modify, "/etc/fdns/settings.toml", true),
            // The reload's own reads, editor swap and backup files, other files nearby.
            (
                EventKind::Access(AccessKind::Open(AccessMode::Any)),
                "/srv/zones/app.toml",
                false,
            ),
            (modify, "/srv/zones/.app.toml.swp", false),
            (modify, "/srv/zones/.#app.toml", false),
            (modify, "/srv/zones/app.toml~", false),
            (modify, "/srv/zones/sub/app.toml", false),
            (modify, "/etc/fdns/other.toml", false),
            (modify, "/srv/other/app.toml", false),
        ];
        for (kind, path, relevant) in cases {
            let event = Event::new(kind).add_path(PathBuf::from(path));
            assert_eq!(watched.is_change(&event), relevant, "{kind:?} {path}");
        }
    }

    /// Sends a change every `every` for `count` times, as the watcher does (a full channel
    /// already holds one).
    async fn changes(sender: &mpsc::Sender<()>, count: usize, every: Duration) {
        for _ in 0..count {
            let _ = sender.try_send(());
            tokio::time::sleep(every).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bursts_of_changes_reload_once_and_never_miss_the_last() {
        let (sender, receiver) = mpsc::channel(1);
        let bursts = Arc::new(Mutex::new(Vec::new()));
        let start = tokio::time::Instant::now();
        let seen = Arc::clone(&bursts);
        let task = tokio::spawn(debounced(receiver, move || {
            let seen = Arc::clone(&seen);
            async move {
                let at = tokio::time::Instant::now() - start;
                seen.lock().expect("bursts").push(at.as_millis());
            }
        }));
        let ms = Duration::from_millis;
        // An editor's write-rename-delete: three changes within 100 ms reload once, 150 ms
        // after the last.
        changes(&sender, 3, ms(50)).await;
        tokio::time::sleep(ms(500)).await;
        assert_eq!(*bursts.lock().expect("bursts"), [250]);
        // Changes every 90 ms from 675 ms to 2835 ms never leave 150 ms of quiet: they still
        // reload once a second (1675, 2755), and once more 150 ms after the last (2985).
        tokio::time::sleep(ms(25)).await;
        changes(&sender, 25, ms(90)).await;
        tokio::time::sleep(ms(500)).await;
        drop(sender);
        task.await.expect("the debouncer ends with its sender");
        assert_eq!(*bursts.lock().expect("bursts"), [250, 1675, 2755, 2985]);
    }
}
