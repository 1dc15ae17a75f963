//! Live reload: build a new snapshot from the settings file and the zone files, validate it
//! whole, swap it in atomically, and keep the old one on error; and what `status` says about the
//! configuration in force. What starts a reload lives in [`triggers`] (the watcher and `SIGHUP`;
//! the control socket calls [`Reloader::reload`]); [`stamp`] tells an unchanged input apart.
//!
//! A reload runs on the configuration load thread ([`load_thread`]), never on a runtime worker,
//! so queries keep being answered from the old snapshot while a large zone loads; they switch to
//! the new one in a single atomic store. Reloads run one at a time, and one whose settings and
//! zone files have not changed since the last build rebuilds nothing. Health survives for every
//! address that is still some endpoint's. Only the identity of new settings is taken over; the
//! others keep their running values until a restart (see [`restart_only_changes`]).

pub mod load_thread;
mod stamp;
pub mod triggers;

use stamp::InputStamp;

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tracing::{error, info, warn};

use crate::config::keys::SettingsLayer;
use crate::config::load_zone_dir;
use crate::config::settings::Settings;
use crate::dns::snapshot::{SharedSnapshot, Snapshot};
use crate::health::HealthTable;
use crate::health::events::Events;
use crate::location::ConfigError;
use crate::metrics::Metrics;
use crate::ops::readiness::ServiceManager;
use crate::ops::status::ConfigStatus;
use crate::time::{now_unix_ms, unix_ms};

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
    /// Told `RELOADING=1` and `READY=1` around every reload once the server announced itself
    /// ready (a manager from an environment without `NOTIFY_SOCKET` ignores them).
    service_manager: ServiceManager,
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
    /// built from `running`; later reloads take their settings from `load_settings`, publish
    /// their outcome on `events`, count it in `metrics` and tell `service_manager`.
    pub fn new(
        snapshot: SharedSnapshot,
        health: HealthTable,
        running: Settings,
        load_settings: SettingsLoader,
        events: Events,
        metrics: Metrics,
        service_manager: ServiceManager,
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
                service_manager,
                state: Mutex::new(State {
                    generation: 1,
                    loaded_at: SystemTime::now(),
                    last_error: None,
                    restart_needed: Vec::new(),
                }),
            }),
        }
    }

    /// The service manager, once the server told it that it is ready: reloads are announced
    /// only then (both ways: `RELOADING=1` and the `READY=1` that ends it).
    fn announced_manager(&self) -> Option<&ServiceManager> {
        Some(&self.inner.service_manager).filter(|manager| manager.has_announced_ready())
    }

    /// `READY=1` after a failed reload: the last good configuration serves on.
    fn tell_ready_after_failure(&self, manager: Option<&ServiceManager>) {
        if let Some(manager) = manager {
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
                self.tell_ready_after_failure(self.announced_manager());
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
        let service_manager = self.announced_manager();
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
                self.tell_ready_after_failure(service_manager);
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
    let described = SettingsLayer::described();
    let mut changed: Vec<String> = described
        .iter()
        .filter(|setting| !setting.reloadable && (setting.differs)(running, new))
        .map(|setting| setting.name())
        .collect();
    // A field of `Settings` that no declaration covers still needs a restart, and still gets
    // said: compare the rest of the settings with every reloadable one taken from `new`.
    let mut reloaded = running.clone();
    for setting in described.iter().filter(|setting| setting.reloadable) {
        (setting.take_over)(&mut reloaded, new);
    }
    if changed.is_empty() && reloaded != *new {
        changed.push("other server settings".to_string());
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::path::PathBuf;
    use std::time::Duration;

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

    struct Fixture {
        dir: tempfile::TempDir,
        reloader: Reloader,
        snapshot: SharedSnapshot,
        health: HealthTable,
    }

    fn fixture() -> Fixture {
        fixture_telling(ServiceManager::default())
    }

    /// A reloader over one zone file in a temporary directory that tells `service_manager`.
    fn fixture_telling(service_manager: ServiceManager) -> Fixture {
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
            service_manager,
        );
        Fixture {
            dir,
            reloader,
            snapshot,
            health,
        }
    }

    #[test]
    fn reloads_are_announced_to_the_service_manager_only_after_ready() {
        use std::os::unix::net::UnixDatagram;
        let socket_dir = tempfile::tempdir().expect("temp dir");
        let path = socket_dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let manager = ServiceManager::for_socket(path.to_str().expect("UTF-8")).expect("socket");
        let f = fixture_telling(manager.clone());
        let mut buffer = [0u8; 1024];
        let mut received = || {
            let mut messages = Vec::new();
            while let Ok(length) = listener.recv(&mut buffer) {
                let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
                messages.push(text.lines().next().unwrap_or_default().to_string());
            }
            messages
        };
        // Still starting: the manager waits for the first READY=1, so a reload says nothing.
        f.reloader
            .reload_blocking(Trigger::Control)
            .expect("reload");
        assert_eq!(received(), Vec::<String>::new());
        manager.ready("serving");
        assert_eq!(received(), ["READY=1"]);
        f.reloader
            .reload_blocking(Trigger::Control)
            .expect("reload");
        assert_eq!(received(), ["RELOADING=1", "READY=1"]);
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
            ServiceManager::default(),
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
