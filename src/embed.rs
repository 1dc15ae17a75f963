//! The library API for an agent that embeds failover-dns in its own tokio runtime: build it from
//! settings and zone data (files, or values the agent received as JSON), serve on sockets the
//! caller bound, report connection outcomes, read a name's current answer order, reload or
//! replace the zone data, watch events, and shut down gracefully. The `failover-dns serve`
//! command is a thin user of this API.
//!
//! ```no_run
//! # async fn agent() -> Result<(), Box<dyn std::error::Error>> {
//! use failover_dns::FailoverDns;
//! use failover_dns::ReportTarget;
//! use failover_dns::Outcome;
//! use failover_dns::ReportSource;
//! use failover_dns::Settings;
//!
//! let dns = FailoverDns::from_settings(Settings::default())?;
//! let listener = failover_dns::bind("127.0.0.1:0".parse()?).await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let serving = tokio::spawn({
//!     let dns = dns.clone();
//!     async move { dns.serve(vec![listener], None, None, async { let _ = stopped.await; }).await }
//! });
//! let primary = ReportTarget::Address("100.64.1.10".parse()?);
//! dns.report(&primary, Outcome::Failure, None, ReportSource::Agent)?;
//! println!("{:?}", dns.answer_order("app.internal"));
//! let _ = stop.send(());
//! serving.await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::broadcast;

use crate::config::load_zone_dir;
use crate::config::settings::{Settings, UpstreamSpec};
use crate::control::{ControlReply, ControlSocket};
use crate::health::events::Event;
use crate::health::{Outcome, ReportSource};
use crate::location::ConfigError;
use crate::metrics::Metrics;
use crate::model::ZoneData;
use crate::net::server::DnsListener;
use crate::ops::readiness::ServiceManager;
use crate::ops::status::StatusReport;
use crate::reload::triggers::ReloadTriggers;
use crate::reload::{ReloadError, ReloadSummary, SettingsLoader, Trigger};
use crate::reports::probe::Probes;
use crate::reports::{ReportError, ReportResult, ReportTarget, Reports};
use crate::services::Services;

/// An embedded failover-dns. Cheap to clone; all clones are the same server.
#[derive(Debug, Clone)]
pub struct FailoverDns {
    services: Arc<Services>,
}

/// How a server is built, beyond its settings and zone data: where reloads take their settings
/// from, and whether the service manager is told about readiness. From
/// [`FailoverDns::builder`].
#[must_use]
pub struct Builder {
    settings: Settings,
    load_settings: Option<SettingsLoader>,
    service_manager: ServiceManager,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("settings", &self.settings)
            .field("reload_settings", &self.load_settings.is_some())
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// Every reload takes its settings from `load_settings` (the command line re-reads its
    /// settings file there); without it, a reload keeps the settings the server was built with
    /// and re-reads only the zone files.
    pub fn reload_settings_with(mut self, load_settings: SettingsLoader) -> Self {
        self.load_settings = Some(load_settings);
        self
    }

    /// Tells the service manager that started this process (systemd's `NOTIFY_SOCKET`) when
    /// the server is ready, reloading and stopping. Off by default: an agent that embeds the
    /// server owns its own readiness.
    pub fn notify_service_manager(mut self) -> Self {
        self.service_manager = ServiceManager::from_env();
        self
    }

    /// Builds the server, loading the zone data from the settings' zones directory.
    pub fn build(self) -> Result<FailoverDns, ConfigError> {
        let data = load_zone_dir(&self.settings.zones_dir)?;
        Ok(self.build_with_zone_data(data))
    }

    /// [`Builder::build`] on the configuration load thread, the thread every reload builds on
    /// (so all configurations share one allocator arena); the runtime's workers go on meanwhile.
    pub async fn load(self) -> Result<FailoverDns, ConfigError> {
        let zones_dir = self.settings.zones_dir.clone();
        crate::reload::load_thread::run(move || self.build())
            .await
            .unwrap_or_else(|error| {
                Err(ConfigError::one(
                    crate::location::Location::file(&zones_dir),
                    error.to_string(),
                ))
            })
    }

    /// Builds the server on zone data the agent already holds (for example received as JSON
    /// and parsed with [`crate::load_zone_text`]); replace it later with
    /// [`FailoverDns::replace_zone_data`].
    pub fn build_with_zone_data(self, data: ZoneData) -> FailoverDns {
        let load_settings = self.load_settings.unwrap_or_else(|| {
            let fixed = self.settings.clone();
            Arc::new(move || Ok(fixed.clone()))
        });
        FailoverDns {
            services: Arc::new(Services::build(
                self.settings,
                data,
                load_settings,
                self.service_manager,
            )),
        }
    }
}

impl FailoverDns {
    /// A builder for a server with `settings`.
    pub fn builder(settings: Settings) -> Builder {
        Builder {
            settings,
            load_settings: None,
            service_manager: ServiceManager::default(),
        }
    }

    /// Builds from `settings`, loading the zone data from `settings.zones_dir`. A reload re-reads
    /// that directory with the same settings.
    pub fn from_settings(settings: Settings) -> Result<Self, ConfigError> {
        FailoverDns::builder(settings).build()
    }

    /// Builds from `settings` and zone data the agent already holds. Replace it later with
    /// [`FailoverDns::replace_zone_data`].
    pub fn from_zone_data(settings: Settings, data: ZoneData) -> Self {
        FailoverDns::builder(settings).build_with_zone_data(data)
    }

    /// Its query path, for the fuzz targets (through [`crate::internals::handler_of`]).
    pub(crate) fn handler(&self) -> &crate::dns::handler::Handler {
        &self.services.handler
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &Settings {
        &self.services.settings
    }

    /// Carries out one request line of the control protocol (`docs/control-protocol.md`), for an
    /// embedder that serves the protocol itself; `watch` is served only on the control socket. A
    /// `reload` blocks the calling thread while the files load.
    pub fn handle_control_line(&self, line: &[u8]) -> ControlReply {
        crate::control::handle_line(line, &self.services)
    }

    /// Starts reloading on its own: at `SIGHUP`, and when a zone file or `settings_file`
    /// changes (debounced). The triggers stop when the returned value is dropped. Must run
    /// inside the Tokio runtime.
    pub fn start_reload_triggers(
        &self,
        settings_file: Option<&std::path::Path>,
    ) -> std::io::Result<ReloadTriggers> {
        crate::reload::triggers::start_triggers(&self.services.reloader, settings_file)
    }

    /// How many zones and shared names the configuration in force has.
    pub fn zone_counts(&self) -> (usize, usize) {
        let snapshot = self.services.snapshot.load();
        let data = snapshot.zones.data();
        (data.zones.len(), data.names.len())
    }

    /// The upstreams names outside the zones are forwarded to, and the backups; both empty when
    /// forwarding is off.
    pub fn upstreams(&self) -> (Vec<UpstreamSpec>, Vec<UpstreamSpec>) {
        let forwarder = &self.services.forwarder;
        (forwarder.upstreams(), forwarder.backup_upstreams())
    }

    /// Records a connection outcome for an address or for every address of a destination; the
    /// very next DNS answer reflects it. `source` says who saw it: the agent's own connections
    /// ([`ReportSource::Agent`]) reorder healthy paths, a probe's ([`ReportSource::Probe`]) only
    /// says the path is alive.
    pub fn report(
        &self,
        target: &ReportTarget,
        outcome: Outcome,
        rtt: Option<Duration>,
        source: ReportSource,
    ) -> Result<Vec<ReportResult>, ReportError> {
        self.services.reports.report(target, outcome, rtt, source)
    }

    /// Drains the destination `id` for maintenance (`true`) or ends its drain (`false`): its
    /// endpoints go after every other endpoint, still answered. Kept in the state file. Returns
    /// whether anything changed.
    pub fn set_draining(&self, id: &str, draining: bool) -> Result<bool, ReportError> {
        self.services.reports.set_draining(id, draining)
    }

    /// The addresses `name` resolves to for this client now, in answer order (A and AAAA
    /// together); `None` when it is not a shared name (or not a valid name).
    pub fn answer_order(&self, name: &str) -> Option<Vec<IpAddr>> {
        let name = crate::config::parse_name(name).ok()?;
        self.services.reports.answer_order(&name)
    }

    /// Re-reads the zone files (and settings) and swaps them in; on error the last good
    /// configuration keeps serving.
    pub async fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        self.services.reloader.reload(Trigger::Control).await
    }

    /// Swaps in zone data the agent received, at once, as a reload does (the generation goes
    /// up, the reload is counted and published as an event); health is kept for addresses that
    /// are still endpoints.
    pub fn replace_zone_data(&self, data: ZoneData) -> ReloadSummary {
        self.services.reloader.install_zone_data(data)
    }

    /// A receiver of every event from now on (state changes, failovers, reloads).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.services.events.subscribe()
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.services.metrics
    }

    /// Every shared name with its answer order and endpoint health.
    pub fn status(&self) -> StatusReport {
        self.services.status()
    }

    /// Serves DNS on `listeners` (and the control socket and metrics listener, if given), runs
    /// the active probes, the connection observer and the health state file, until `shutdown`
    /// completes; then stops everything and saves the health state one last time. With
    /// [`Builder::notify_service_manager`], the service manager is told `READY=1` once this
    /// runs and `STOPPING=1` when `shutdown` completes.
    pub async fn serve(
        &self,
        listeners: Vec<DnsListener>,
        control: Option<ControlSocket>,
        metrics: Option<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) {
        let services = &self.services;
        let settings = &services.settings;
        let mut background = tokio::task::JoinSet::new();
        background.spawn(run_probes(
            services.reports.clone(),
            services.events.clone(),
        ));
        #[cfg(target_os = "linux")]
        let observer = crate::reports::observer::start(
            &settings.observe,
            services.reports.clone(),
            services.metrics.clone(),
        );
        #[cfg(not(target_os = "linux"))]
        if settings.observe.enabled {
            tracing::info!("connection observer: not available on this system (Linux only); off");
        }
        if let Some(socket) = control {
            let services = Arc::clone(&self.services);
            let limits = settings.limits.clone();
            // The task owns the socket; aborting it at shutdown drops it, which removes its file.
            background.spawn(async move { socket.serve(services, &limits).await });
        }
        if let Some(listener) = metrics {
            background.spawn(crate::ops::metrics_http::serve(
                listener,
                services.metrics.clone(),
            ));
        }
        if let Some(path) = &settings.state_file {
            background.spawn(crate::health::persist::save_periodically(
                services.health.clone(),
                path.clone(),
                services.events.clone(),
            ));
        }
        services
            .service_manager
            .ready(&self.serving_status(&listeners));
        let shutdown = async {
            shutdown.await;
            services.service_manager.stopping();
        };
        crate::net::server::run(
            services.handler.clone(),
            listeners,
            settings.limits.clone(),
            shutdown,
        )
        .await;
        // Stopped and waited for, so none of its reports lands after the final save.
        #[cfg(target_os = "linux")]
        if let Some(observer) = observer {
            let _ = tokio::task::spawn_blocking(move || observer.stop()).await;
        }
        background.abort_all();
        while background.join_next().await.is_some() {}
        if let Some(path) = &settings.state_file {
            crate::health::persist::save_logged(&services.health, path);
        }
    }

    /// What the service manager shows while the server serves `listeners`.
    fn serving_status(&self, listeners: &[DnsListener]) -> String {
        let snapshot = self.services.snapshot.load();
        let data = snapshot.zones.data();
        let addresses: Vec<String> = listeners
            .iter()
            .filter_map(|listener| listener.local_addr().ok())
            .map(|address| address.to_string())
            .collect();
        format!(
            "serving {} shared names in {} zones on {}",
            data.names.len(),
            data.zones.len(),
            addresses.join(", ")
        )
    }
}

/// Runs the active probes of the current configuration, and starts them anew after every
/// successful reload.
async fn run_probes(reports: Reports, events: crate::health::events::Events) {
    let mut events = events.subscribe();
    loop {
        let probes = Probes::start(&reports.snapshot().load(), &reports);
        loop {
            match events.recv().await {
                Ok(Event::ReloadSucceeded { .. }) => break,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
        drop(probes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_zone_data_is_a_reload_the_status_shows() {
        let settings = Settings {
            // No upstream: nothing to read from the machine.
            resolv_conf: std::path::PathBuf::from("/dev/null"),
            ..Settings::default()
        };
        let dns = FailoverDns::from_zone_data(settings, crate::testing::test_zone_data());
        let before = dns.status();
        let config = before
            .config
            .as_ref()
            .expect("the API's status has the configuration");
        assert_eq!(config.generation, 1);
        let mut events = dns.subscribe();
        let summary = dns.replace_zone_data(crate::testing::test_zone_data());
        assert_eq!(summary.generation, 2, "a replacement is a reload");
        let after = dns.status();
        assert_eq!(after.config.map(|c| c.generation), Some(2));
        match events.try_recv() {
            Ok(Event::ReloadSucceeded { trigger, .. }) => assert_eq!(trigger, "embedding API"),
            other => panic!("expected a reload event, got {other:?}"),
        }
    }
}
