//! Live reload: build a new snapshot from the settings file and the zone files, validate it
//! whole, swap it in atomically, and keep the old one on error. Owns the three triggers (the
//! debounced file watcher on `zones/` and the settings file, `SIGHUP`, and the control socket's
//! `reload` request, which calls [`Reloader::reload`]) and what `status` says about the
//! configuration in force.
//!
//! A reload runs on the configuration load thread ([`crate::reload::load_thread`]), never on a runtime
//! worker, so queries keep being answered from the old snapshot while a large zone loads; they
//! switch to the new one in a single atomic store. Reloads run one at a time, and one whose
//! settings and zone files have not changed since the last build rebuilds nothing. Health survives for every address that is still some
//! endpoint's. Settings that would need new sockets or a new forwarder (listen addresses,
//! control path, upstreams, the zones directory) keep their running values until a restart.

pub mod load_thread;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::keys::SettingsLayer;
use crate::config::settings::Settings;
use crate::config::{is_zone_file_name, load_zone_dir};
use crate::dns::snapshot::{SharedSnapshot, Snapshot};
use crate::health::HealthTable;
use crate::health::events::Events;
use crate::location::ConfigError;
use crate::metrics::Metrics;
use crate::ops::readiness::ServiceManager;
use crate::ops::status::ConfigStatus;
use crate::time::{now_unix_ms, unix_ms};

/// How long the watched files must stay quiet before a reload starts: an editor's
/// write-rename-delete sequence, or a console pushing several files, reloads once.
pub const DEBOUNCE_QUIET: Duration = Duration::from_millis(150);
/// The longest a reload waits for quiet while changes keep coming.
pub const DEBOUNCE_MAX_WAIT: Duration = Duration::from_secs(1);

/// Produces the server's settings as they are now: the settings file re-read, with the command
/// line's flags applied over it, exactly as at startup.
pub type SettingsLoader = Arc<dyn Fn() -> Result<Settings, ConfigError> + Send + Sync>;

/// What asked for a reload (for the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A watched file changed.
    FileChange,
    /// The process received `SIGHUP`.
    Signal,
    /// A `{"op":"reload"}` request on the control socket.
    Control,
    /// Zone data an embedder handed over (`FailoverDns::replace_zone_data`).
    Embedding,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::FileChange => "watcher",
            Trigger::Signal => "SIGHUP",
            Trigger::Control => "control",
            Trigger::Embedding => "embedding API",
        })
    }
}

/// What a successful reload put in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// The new configuration's generation.
    pub generation: u64,
    /// Owned zones.
    pub zones: usize,
    /// Shared names.
    pub names: usize,
    /// Settings that changed but keep their running value until a restart.
    pub restart_needed: Vec<String>,
    /// What `check` would warn about in the new configuration (skipped files, policies that
    /// leave a shared name without failover).
    pub warnings: Vec<String>,
}

/// Why a reload kept the old configuration.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The settings or zone files are invalid; every problem is located.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The reload task itself failed (a bug: it panicked).
    #[error("reload failed: {0}")]
    Task(String),
    /// The server was not started with a settings source, so there is nothing to reload from.
    #[error("reload is not available in this server")]
    Unavailable,
}

/// Rebuilds and swaps the configuration. A cheap `Clone` handle; all clones share one state.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    snapshot: SharedSnapshot,
    health: HealthTable,
    load_settings: SettingsLoader,
    /// The settings the server started with; the restart-only ones stay in force.
    running: Settings,
    /// Held for the whole of a reload, so reloads never interleave; holds what the last
    /// configuration built by a reload was read from, and the snapshot generation it was
    /// stored at (its change count: zone data swapped in through the embedding API makes it stale).
    last_build: Mutex<Option<(InputStamp, u64)>>,
    state: Mutex<State>,
    /// Where reload outcomes are published.
    events: Events,
    /// Where reload outcomes are counted.
    metrics: Metrics,
    /// Told `RELOADING=1` and `READY=1` around every reload, once attached.
    service_manager: std::sync::OnceLock<ServiceManager>,
}

#[derive(Debug, Clone)]
struct State {
    generation: u64,
    loaded_at: SystemTime,
    last_error: Option<(String, SystemTime)>,
    restart_needed: Vec<String>,
}

impl fmt::Debug for Reloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloader")
            .field("zones_dir", &self.inner.running.zones_dir)
            .field("state", &*self.state())
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader for the configuration `snapshot` serves (generation 1, loaded now), which was
    /// built from `running`; later reloads take their settings from `load_settings`, and
    /// publish their outcome on `events` and count it in `metrics`.
    pub fn new(
        snapshot: SharedSnapshot,
        health: HealthTable,
        running: Settings,
        load_settings: SettingsLoader,
        events: Events,
        metrics: Metrics,
    ) -> Self {
        Reloader {
            inner: Arc::new(Inner {
                snapshot,
                health,
                load_settings,
                running,
                last_build: Mutex::new(None),
                events,
                metrics,
                service_manager: std::sync::OnceLock::new(),
                state: Mutex::new(State {
                    generation: 1,
                    loaded_at: SystemTime::now(),
                    last_error: None,
                    restart_needed: Vec::new(),
                }),
            }),
        }
    }

    /// Tells `service_manager` when each reload starts and ends (the first call wins).
    pub fn tell_service_manager(&self, service_manager: ServiceManager) {
        let _ = self.inner.service_manager.set(service_manager);
    }

    /// `READY=1` after a failed reload: the last good configuration serves on.
    fn tell_ready_after_failure(&self) {
        if let Some(manager) = self.inner.service_manager.get() {
            let current = self.inner.snapshot.load();
            let data = current.zones.data();
            manager.ready(&format!(
                "reload failed, still serving the last good configuration: {} shared names in {} zones",
                data.names.len(),
                data.zones.len()
            ));
        }
    }

    fn notify(&self, trigger: Trigger, outcome: Result<(usize, usize), String>) {
        let (events, metrics) = (&self.inner.events, &self.inner.metrics);
        metrics.reload(outcome.is_ok());
        let trigger = trigger.to_string();
        let at_unix_ms = now_unix_ms();
        events.publish(match outcome {
            Ok((zones, names)) => crate::health::events::Event::ReloadSucceeded {
                names,
                zones,
                trigger,
                at_unix_ms,
            },
            Err(error) => crate::health::events::Event::ReloadFailed {
                error,
                trigger,
                at_unix_ms,
            },
        });
    }

    /// Reloads on the configuration load thread and returns the outcome; the runtime's workers
    /// keep answering queries meanwhile. The outcome is logged and recorded for `status` even when
    /// the caller stops waiting.
    pub async fn reload(&self, trigger: Trigger) -> Result<ReloadSummary, ReloadError> {
        let reloader = self.clone();
        match crate::reload::load_thread::run(move || reloader.reload_blocking(trigger)).await {
            Ok(outcome) => outcome,
            Err(join_error) => {
                let message = format!("reload task failed: {join_error}");
                error!(%trigger, "{message}");
                self.record_failure(message.clone());
                self.tell_ready_after_failure();
                Err(ReloadError::Task(message))
            }
        }
    }

    /// Reloads on the calling thread, which blocks while the files load: build the new
    /// snapshot, validate it, swap it in and drop health entries of addresses that are no
    /// endpoint's any more; or, on any error, keep serving the old snapshot and remember the
    /// error. Logs one info line on success, one error line per problem on failure.
    pub fn reload_blocking(&self, trigger: Trigger) -> Result<ReloadSummary, ReloadError> {
        let mut last_build = self
            .inner
            .last_build
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let service_manager = self.inner.service_manager.get();
        if let Some(manager) = service_manager {
            manager.reloading();
        }
        // Taken before the files are read: a change while they load makes the next reload
        // build again.
        let stamp = InputStamp::take(&*self.inner.load_settings, &self.inner.running.zones_dir);
        let unchanged = match (&stamp, &*last_build) {
            (Some(now), Some((built_from, generation))) => {
                now == built_from && *generation == self.inner.snapshot.changes()
            }
            _ => false,
        };
        let built = if unchanged {
            Ok(None)
        } else {
            build(&*self.inner.load_settings, &self.inner.running).map(Some)
        };
        match built {
            Ok(built) => {
                let summary = match built {
                    Some(built) => {
                        let summary = self.install(built, trigger);
                        *last_build = stamp.map(|stamp| (stamp, self.inner.snapshot.changes()));
                        summary
                    }
                    None => self.reinstate(trigger),
                };
                self.notify(trigger, Ok((summary.zones, summary.names)));
                if let Some(manager) = service_manager {
                    manager.ready(&format!(
                        "serving {} shared names in {} zones (configuration generation {})",
                        summary.names, summary.zones, summary.generation
                    ));
                }
                Ok(summary)
            }
            Err(config_error) => {
                self.notify(trigger, Err(config_error.to_string()));
                self.tell_ready_after_failure();
                for diagnostic in &config_error.diagnostics {
                    error!(%trigger, "{diagnostic}");
                }
                let generation = self.state().generation;
                warn!(
                    %trigger,
                    generation,
                    problems = config_error.diagnostics.len(),
                    "reload failed; still serving the last good configuration"
                );
                self.record_failure(config_error.to_string());
                Err(ReloadError::Config(config_error))
            }
        }
    }

    /// Swaps in zone data an embedder received, under the identity in force, as a reload
    /// swaps in what the files say: health of addresses that are no endpoint's any more is
    /// dropped, the generation is bumped, and the reload is counted, logged and published.
    pub fn install_zone_data(&self, data: crate::model::ZoneData) -> ReloadSummary {
        let identity = self.inner.snapshot.load().identity.clone();
        let built = Built {
            snapshot: Snapshot::new(data, identity),
            restart_needed: Vec::new(),
        };
        let summary = self.install(built, Trigger::Embedding);
        self.notify(Trigger::Embedding, Ok((summary.zones, summary.names)));
        summary
    }

    fn install(&self, built: Built, trigger: Trigger) -> ReloadSummary {
        self.inner.snapshot.store(built.snapshot);
        let current = self.inner.snapshot.load();
        let forgotten = self
            .inner
            .health
            .retain_endpoints(|address| current.zones.is_endpoint_address(address));
        self.count_installed(trigger, built.restart_needed, forgotten, false)
    }

    /// A reload whose settings and zone files are exactly those the configuration in force was
    /// built from: nothing is rebuilt (a storm of `SIGHUP`s costs no memory), and the reload
    /// counts as one all the same.
    fn reinstate(&self, trigger: Trigger) -> ReloadSummary {
        let restart_needed = self.state().restart_needed.clone();
        self.count_installed(trigger, restart_needed, 0, true)
    }

    /// Records and logs that the configuration in force was (re)installed.
    fn count_installed(
        &self,
        trigger: Trigger,
        restart_needed: Vec<String>,
        forgotten: usize,
        unchanged: bool,
    ) -> ReloadSummary {
        let current = self.inner.snapshot.load();
        let data = current.zones.data();
        let (zones, names) = (data.zones.len(), data.names.len());
        let warnings = current.warnings();
        for warning in &warnings {
            warn!("{warning}");
        }
        let generation = {
            let mut state = self.state();
            state.generation += 1;
            state.loaded_at = SystemTime::now();
            state.last_error = None;
            state.restart_needed.clone_from(&restart_needed);
            state.generation
        };
        for setting in &restart_needed {
            warn!(
                setting = setting.as_str(),
                "{setting} changed in the settings file; keeping the running value until a restart"
            );
        }
        info!(
            %trigger,
            generation,
            zones,
            names,
            health_forgotten = forgotten,
            unchanged,
            "configuration reloaded"
        );
        ReloadSummary {
            generation,
            zones,
            names,
            restart_needed,
            warnings,
        }
    }

    fn record_failure(&self, message: String) {
        self.state().last_error = Some((message, SystemTime::now()));
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is plain data, always consistent between statements: a panic elsewhere
        // while it was locked leaves nothing half-written.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The configuration in force and the last reload's error, for `status`.
    pub fn config_status(&self) -> ConfigStatus {
        let state = self.state().clone();
        ConfigStatus {
            generation: state.generation,
            loaded_at_unix_ms: unix_ms(state.loaded_at),
            last_error_at_unix_ms: state.last_error.as_ref().map(|(_, at)| unix_ms(*at)),
            last_error: state.last_error.map(|(message, _)| message),
            restart_needed: state.restart_needed,
        }
    }

    /// The zones directory being served (it never changes without a restart).
    pub fn zones_dir(&self) -> &Path {
        &self.inner.running.zones_dir
    }
}

/// A validated new configuration, not yet in force.
struct Built {
    snapshot: Snapshot,
    restart_needed: Vec<String>,
}

/// What a reload reads, without reading the zone files: the settings as loaded, and for every
/// entry of the zones directory named like a zone file, which file it is and when it last
/// changed. Equal stamps mean equal input, short of a file rewritten within the same
/// nanosecond of its change time.
#[derive(Debug, PartialEq)]
struct InputStamp {
    settings: Settings,
    files: Vec<FileStamp>,
}

#[derive(Debug, PartialEq)]
struct FileStamp {
    name: std::ffi::OsString,
    device: u64,
    inode: u64,
    mode: u32,
    length: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl InputStamp {
    /// The stamp of what a reload would read now; `None` when anything cannot be looked at
    /// (the build then runs and reports it).
    fn take(
        load_settings: &(dyn Fn() -> Result<Settings, ConfigError> + Send + Sync),
        zones_dir: &Path,
    ) -> Option<InputStamp> {
        use std::os::unix::fs::MetadataExt;
        let settings = load_settings().ok()?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(zones_dir).ok()? {
            let entry = entry.ok()?;
            let name = entry.file_name();
            if !is_zone_file_name(&name) {
                continue;
            }
            // Through symbolic links, as the loader reads the file.
            let metadata = std::fs::metadata(entry.path()).ok()?;
            files.push(FileStamp {
                name,
                device: metadata.dev(),
                inode: metadata.ino(),
                mode: metadata.mode(),
                length: metadata.len(),
                modified: (metadata.mtime(), metadata.mtime_nsec()),
                changed: (metadata.ctime(), metadata.ctime_nsec()),
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Some(InputStamp { settings, files })
    }
}

/// Reads the settings and the zone files and evaluates the policies. Restart-only settings come
/// from `running`, so the zone data is read from the directory being served and watched.
fn build(
    load_settings: &(dyn Fn() -> Result<Settings, ConfigError> + Send + Sync),
    running: &Settings,
) -> Result<Built, ConfigError> {
    let settings = load_settings()?;
    let restart_needed = restart_only_changes(running, &settings);
    let data = load_zone_dir(&running.zones_dir)?;
    Ok(Built {
        snapshot: Snapshot::new(data, settings.identity),
        restart_needed,
    })
}

/// The settings (by their key in the settings file) that differ between `running` and `new`
/// but cannot change without a restart: they own sockets, the forwarder, the observer or the
/// watched directory. Only the identity is taken over by a reload; every other setting is
/// declared restart-only in [`crate::config::keys`].
pub fn restart_only_changes(running: &Settings, new: &Settings) -> Vec<String> {
    SettingsLayer::described()
        .into_iter()
        .filter(|setting| !setting.reloadable && (setting.differs)(running, new))
        .map(|setting| setting.name())
        .collect()
}

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
    use std::net::IpAddr;

    use crate::health::{Outcome, Report, ReportSource};

    const ZONE: &str = "[[zone]]\norigin = \"internal\"\n";
    const APP: &str = "[[asset]]\nid = \"app\"\nkind = \"primary\"\naddresses = [\"100.64.1.10\"]\nnames = [\"app.internal\"]\n[[policy]]\nid = \"p\"\nsources = [\"*\"]\ndestinations = [\"app\"]\n";

    #[test]
    fn restart_only_changes_table() {
        let running = Settings::default();
        type Change = fn(&mut Settings);
        let cases: &[(Change, &[&str])] = &[
            (|_| {}, &[]),
            (|s| s.identity.user = Some("bob".into()), &[]),
            (
                |s| s.listen = vec!["127.0.0.1:53".parse().expect("addr")],
                &["listen"],
            ),
            (
                |s| s.control = PathBuf::from("/elsewhere.sock"),
                &["control"],
            ),
            (|s| s.upstreams = Some(Vec::new()), &["upstreams"]),
            (|s| s.zones_dir = PathBuf::from("other"), &["zones"]),
            (
                |s| {
                    s.cache_size = 1;
                    s.upstream_timeout = Duration::from_millis(10);
                    s.resolv_conf = PathBuf::from("/x");
                },
                &["resolv_conf", "upstream_timeout_ms", "cache_size"],
            ),
            (
                |s| s.limits.max_tcp_connections = 1,
                &["limits.max_tcp_connections"],
            ),
            (|s| s.observe.fail_fast = true, &["fail_fast"]),
            (
                |s| s.state_file = Some(PathBuf::from("/x")),
                &["state_file"],
            ),
            (
                |s| {
                    s.identity.groups = vec!["ops".into()];
                    s.metrics = Some("127.0.0.1:9153".parse().expect("addr"));
                },
                &["metrics"],
            ),
        ];
        for (index, (change, expected)) in cases.iter().enumerate() {
            let mut new = running.clone();
            change(&mut new);
            assert_eq!(
                restart_only_changes(&running, &new),
                *expected,
                "case {index}"
            );
        }
    }

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

    struct Fixture {
        dir: tempfile::TempDir,
        reloader: Reloader,
        snapshot: SharedSnapshot,
        health: HealthTable,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let zones = dir.path().join("zones");
        std::fs::create_dir(&zones).expect("zones dir");
        std::fs::write(zones.join("a.toml"), format!("{ZONE}{APP}")).expect("write");
        let running = Settings {
            zones_dir: zones.clone(),
            ..Settings::default()
        };
        let data = load_zone_dir(&zones).expect("valid zones");
        let snapshot = SharedSnapshot::new(Snapshot::new(data, running.identity.clone()));
        let health = HealthTable::new();
        let loader_settings = running.clone();
        let reloader = Reloader::new(
            snapshot.clone(),
            health.clone(),
            running,
            Arc::new(move || Ok(loader_settings.clone())),
            Events::new(),
            Metrics::new(),
        );
        Fixture {
            dir,
            reloader,
            snapshot,
            health,
        }
    }

    fn address(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn good_reload_swaps_and_bad_reload_keeps_the_old_snapshot() {
        let f = fixture();
        let zones = f.dir.path().join("zones");
        f.health.report(Report {
            address: address("100.64.1.10"),
            outcome: Outcome::Failure,
            rtt: None,
            source: ReportSource::Agent,
        });
        let more = APP
            .replace("\"app\"", "\"db\"")
            .replace("app.internal", "db.internal")
            .replace("100.64.1.10", "100.64.1.20")
            .replace("id = \"p\"", "id = \"q\"");
        std::fs::write(zones.join("b.toml"), &more).expect("write");
        let summary = f
            .reloader
            .reload_blocking(Trigger::Control)
            .expect("good reload");
        assert_eq!((summary.generation, summary.names), (2, 2));
        assert_eq!(f.snapshot.load().zones.data().names.len(), 2);
        assert_eq!(
            f.health.get(address("100.64.1.10")).state(),
            crate::health::State::Down,
            "health survives for an endpoint that still exists"
        );

        std::fs::write(zones.join("b.toml"), "[[asset]\n").expect("write");
        let error = f
            .reloader
            .reload_blocking(Trigger::FileChange)
            .expect_err("bad reload");
        assert!(error.to_string().contains("b.toml:1:"), "{error}");
        assert_eq!(f.snapshot.load().zones.data().names.len(), 2, "old kept");
        let status = f.reloader.config_status();
        assert_eq!(status.generation, 2);
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("b.toml:1:")),
            "{status:?}"
        );

        std::fs::remove_file(zones.join("b.toml")).expect("remove");
        let summary = f
            .reloader
            .reload_blocking(Trigger::Signal)
            .expect("good again");
        assert_eq!((summary.generation, summary.names), (3, 1));
        assert_eq!(f.reloader.config_status().last_error, None);
    }

    #[test]
    fn health_of_removed_endpoints_is_forgotten() {
        let f = fixture();
        f.health.report(Report {
            address: address("100.64.1.10"),
            outcome: Outcome::Failure,
            rtt: None,
            source: ReportSource::Agent,
        });
        let zones = f.dir.path().join("zones");
        std::fs::write(
            zones.join("a.toml"),
            format!("{ZONE}{}", APP.replace("100.64.1.10", "100.64.1.11")),
        )
        .expect("write");
        f.reloader
            .reload_blocking(Trigger::Control)
            .expect("good reload");
        f.health.report(Report {
            address: address("100.64.1.11"),
            outcome: Outcome::Success,
            rtt: None,
            source: ReportSource::Agent,
        });
        // Put the old address back: it starts unknown, not down.
        std::fs::write(zones.join("a.toml"), format!("{ZONE}{APP}")).expect("write");
        f.reloader
            .reload_blocking(Trigger::Control)
            .expect("good reload");
        assert_eq!(
            f.health.get(address("100.64.1.10")).state(),
            crate::health::State::Unknown
        );
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

    #[tokio::test]
    async fn async_reload_runs_off_the_worker_and_reports_settings_errors() {
        let f = fixture();
        let failing = Reloader::new(
            f.snapshot.clone(),
            f.health.clone(),
            Settings::default(),
            Arc::new(|| {
                Err(ConfigError::one(
                    crate::location::Location::file(Path::new("settings.toml")),
                    "broken",
                ))
            }),
            Events::new(),
            Metrics::new(),
        );
        let error = failing
            .reload(Trigger::Control)
            .await
            .expect_err("settings error");
        assert_eq!(error.to_string(), "settings.toml: broken");
        let summary = f.reloader.reload(Trigger::Control).await.expect("good");
        assert_eq!(summary.generation, 2);
    }
}
