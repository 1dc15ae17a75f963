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
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tracing::warn;

use crate::config::load_zone_dir;
use crate::config::settings::Settings;
use crate::control::{ControlContext, ControlSocket};
use crate::dns::forward::{ForwardSettings, Forwarder};
use crate::dns::handler::Handler;
use crate::dns::snapshot::{SharedSnapshot, Snapshot};
use crate::health::events::{Event, Events};
use crate::health::{HealthTable, Outcome, ReportSource};
use crate::location::ConfigError;
use crate::metrics::Metrics;
use crate::model::ZoneData;
use crate::net::server::DnsListener;
use crate::ops::status::StatusReport;
use crate::reload::{ReloadError, ReloadSummary, Reloader, SettingsLoader, Trigger};
use crate::reports::probe::Probes;
use crate::reports::{ReportError, ReportResult, ReportTarget, Reports};

/// An embedded failover-dns. Cheap to clone; all clones are the same server.
#[derive(Debug, Clone)]
pub struct FailoverDns {
    inner: Arc<Inner>,
}

/// The services a server is made of, built once in [`FailoverDns::build`] (the one place they
/// are wired together) and shared by every socket loop, the control socket and the probes.
#[derive(Debug)]
struct Inner {
    settings: Settings,
    /// The query path: snapshot, health table, forwarder, counters.
    handler: Handler,
    /// Reports in (it shares the handler's snapshot and health table), and the event bus.
    reports: Reports,
    reloader: Reloader,
}

impl FailoverDns {
    /// Builds from `settings`, loading the zone data from `settings.zones_dir`. A reload re-reads
    /// that directory with the same settings.
    pub fn from_settings(settings: Settings) -> Result<Self, ConfigError> {
        let fixed = settings.clone();
        FailoverDns::with_settings_loader(settings, Arc::new(move || Ok(fixed.clone())))
    }

    /// Builds from `settings`, loading the zone data from `settings.zones_dir`; every reload
    /// takes its settings from `load_settings` (the CLI re-reads its settings file there).
    pub fn with_settings_loader(
        settings: Settings,
        load_settings: SettingsLoader,
    ) -> Result<Self, ConfigError> {
        let data = load_zone_dir(&settings.zones_dir)?;
        Ok(FailoverDns::build(settings, data, load_settings))
    }

    /// Builds from `settings` and zone data the agent already holds (for example received as
    /// JSON and parsed with [`crate::config::load_zone_text`]). Replace it later with
    /// [`FailoverDns::replace_zone_data`].
    pub fn from_zone_data(settings: Settings, data: ZoneData) -> Self {
        let fixed = settings.clone();
        FailoverDns::build(settings, data, Arc::new(move || Ok(fixed.clone())))
    }

    fn build(settings: Settings, data: ZoneData, load_settings: SettingsLoader) -> Self {
        let (forward_settings, notes) = ForwardSettings::from_settings(&settings);
        for note in notes {
            warn!("{note}");
        }
        let metrics = Metrics::new();
        let events = Events::new();
        let forwarder = Forwarder::new(forward_settings, &metrics);
        let snapshot = SharedSnapshot::new(Snapshot::new(data, settings.identity.clone()));
        for warning in snapshot.load().warnings() {
            warn!("{warning}");
        }
        let health = HealthTable::new();
        let reloader = Reloader::new(
            snapshot.clone(),
            health.clone(),
            settings.clone(),
            load_settings,
            events.clone(),
            metrics.clone(),
        );
        let reports = Reports::new(snapshot.clone(), health.clone(), events, metrics.clone());
        let handler = Handler::new(snapshot, health, forwarder, metrics)
            .with_forward_allow(settings.forward_allow.clone());
        if settings.forward_allow.allows_everyone()
            && settings.listen.iter().any(|a| !a.ip().is_loopback())
        {
            warn!(
                "forward_allow admits every address and a listen address is not loopback: this is an open resolver"
            );
        }
        if let Some(path) = &settings.state_file {
            let current = handler.snapshot().load();
            let is_endpoint = |address| current.zones.names_with_address(address).is_some();
            crate::health::persist::restore_at_start(handler.health(), is_endpoint, path);
        }
        FailoverDns {
            inner: Arc::new(Inner {
                settings,
                handler,
                reports,
                reloader,
            }),
        }
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The request handler (the DNS path; for custom socket loops and tests).
    pub fn handler(&self) -> &Handler {
        &self.inner.handler
    }

    /// The reloader (what triggers call).
    pub fn reloader(&self) -> &Reloader {
        &self.inner.reloader
    }

    /// The reports: reports in, and the event bus.
    pub fn reports(&self) -> &Reports {
        &self.inner.reports
    }

    /// What the control socket acts on, for an embedder that serves the protocol itself
    /// ([`crate::control::handle_line`]).
    pub fn control_context(&self) -> ControlContext {
        ControlContext {
            reports: self.inner.reports.clone(),
            reloader: Some(self.inner.reloader.clone()),
            forwarder: Some(self.inner.handler.forwarder().clone()),
        }
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
        self.inner.reports.report(target, outcome, rtt, source)
    }

    /// Drains the destination `id` for maintenance (`true`) or ends its drain (`false`): its
    /// endpoints go after every other endpoint, still answered. Kept in the state file. Returns
    /// whether anything changed.
    pub fn set_draining(&self, id: &str, draining: bool) -> Result<bool, ReportError> {
        self.inner.reports.set_draining(id, draining)
    }

    /// The addresses `name` resolves to for this client now, in answer order (A and AAAA
    /// together); `None` when it is not a shared name (or not a valid name).
    pub fn answer_order(&self, name: &str) -> Option<Vec<IpAddr>> {
        let name = crate::config::parse_name(name).ok()?;
        self.inner.reports.answer_order(&name)
    }

    /// Re-reads the zone files (and settings) and swaps them in; on error the last good
    /// configuration keeps serving.
    pub async fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        self.inner.reloader.reload(Trigger::Control).await
    }

    /// Swaps in zone data the agent received, at once, as a reload does (the generation goes
    /// up, the reload is counted and published as an event); health is kept for addresses that
    /// are still endpoints.
    pub fn replace_zone_data(&self, data: ZoneData) -> ReloadSummary {
        self.inner.reloader.install_zone_data(data)
    }

    /// A receiver of every event from now on (state changes, failovers, reloads).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.reports.events().subscribe()
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        self.inner.handler.metrics()
    }

    /// Every shared name with its answer order and endpoint health.
    pub fn status(&self) -> StatusReport {
        crate::control::status(&self.control_context())
    }

    /// Serves DNS on `listeners` (and the control socket and metrics listener, if given), runs
    /// the active probes and keeps the health state file, until `shutdown` completes; then
    /// stops everything and saves the health state one last time.
    pub async fn serve(
        &self,
        listeners: Vec<DnsListener>,
        control: Option<ControlSocket>,
        metrics: Option<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) {
        let handler = self.inner.handler.clone();
        let mut background = tokio::task::JoinSet::new();
        background.spawn(run_probes(self.inner.reports.clone()));
        #[cfg(target_os = "linux")]
        let observer = crate::reports::observer::start(
            &self.inner.settings.observe,
            self.inner.reports.clone(),
            handler.metrics().clone(),
        );
        #[cfg(not(target_os = "linux"))]
        if self.inner.settings.observe.enabled {
            tracing::info!("connection observer: not available on this system (Linux only); off");
        }
        if let Some(socket) = control {
            let context = self.control_context();
            let limits = self.inner.settings.limits.clone();
            // The task owns the socket; aborting it at shutdown drops it, which removes its file.
            background.spawn(async move { socket.serve_with_limits(context, &limits).await });
        }
        if let Some(listener) = metrics {
            background.spawn(crate::ops::metrics_http::serve(
                listener,
                handler.metrics().clone(),
            ));
        }
        let state_file: Option<PathBuf> = self.inner.settings.state_file.clone();
        if let Some(path) = &state_file {
            background.spawn(crate::health::persist::save_periodically(
                handler.health().clone(),
                path.clone(),
                self.inner.reports.events().clone(),
            ));
        }
        crate::net::server::run(
            handler.clone(),
            listeners,
            self.inner.settings.limits.clone(),
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
        if let Some(path) = &state_file {
            crate::health::persist::save_logged(handler.health(), path);
        }
    }
}

/// Runs the active probes of the current configuration, and starts them anew after every
/// successful reload.
async fn run_probes(reports: Reports) {
    let mut events = reports.events().subscribe();
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
