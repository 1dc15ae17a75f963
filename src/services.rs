//! The services one server is made of, built once and held once: the settings it started with,
//! the snapshot in force, the health table, the counters, the event bus, the forwarder, the
//! reports path, the reloader and the query handler. [`Services::build`] is the one place they
//! are wired together; each service gets the handles it needs there (they are cheap clones of
//! shared state), and the embedding API and the control socket act on the same `Services`.

use tracing::warn;

use crate::config::settings::Settings;
use crate::dns::forward::{ForwardSettings, Forwarder};
use crate::dns::handler::Handler;
use crate::dns::snapshot::{SharedSnapshot, Snapshot};
use crate::health::HealthTable;
use crate::health::events::Events;
use crate::metrics::Metrics;
use crate::model::ZoneData;
use crate::ops::readiness::ServiceManager;
use crate::ops::status::StatusReport;
use crate::reload::{Reloader, SettingsLoader};
use crate::reports::Reports;

/// Every service of one server.
#[derive(Debug)]
pub struct Services {
    /// The settings the server started with (the restart-only ones stay in force).
    pub(crate) settings: Settings,
    /// The configuration in force, swapped whole by a reload.
    pub(crate) snapshot: SharedSnapshot,
    /// What is known about each endpoint address.
    pub(crate) health: HealthTable,
    /// The counters.
    pub(crate) metrics: Metrics,
    /// State changes, failovers, drains and reloads, for `watch` and embedders.
    pub(crate) events: Events,
    /// Names outside the zones.
    pub(crate) forwarder: Forwarder,
    /// Reports in, from every source.
    pub(crate) reports: Reports,
    /// Builds and swaps in new configurations.
    pub(crate) reloader: Reloader,
    /// The service manager told about readiness (one that ignores every message unless the
    /// server was built to notify it).
    pub(crate) service_manager: ServiceManager,
    /// The query path: what one query needs (the snapshot, the health table, the forwarder,
    /// the counters).
    pub(crate) handler: Handler,
}

impl Services {
    /// Builds every service for `settings` and `data`; reloads take their settings from
    /// `load_settings` and are announced to `service_manager`. With a state file, the health
    /// saved there is restored for addresses that are still endpoints.
    pub(crate) fn build(
        settings: Settings,
        data: ZoneData,
        load_settings: SettingsLoader,
        service_manager: ServiceManager,
    ) -> Services {
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
            service_manager.clone(),
        );
        let reports = Reports::new(
            snapshot.clone(),
            health.clone(),
            events.clone(),
            metrics.clone(),
        );
        let handler = Handler::new(
            snapshot.clone(),
            health.clone(),
            forwarder.clone(),
            metrics.clone(),
        )
        .with_forward_allow(settings.forward_allow.clone());
        if settings.forward_allow.allows_everyone()
            && settings.listen.iter().any(|a| !a.ip().is_loopback())
        {
            warn!(
                "forward_allow admits every address and a listen address is not loopback: this is an open resolver"
            );
        }
        if let Some(path) = &settings.state_file {
            let current = snapshot.load();
            let is_endpoint = |address| current.zones.names_with_address(address).is_some();
            crate::health::persist::restore_at_start(&health, is_endpoint, path);
        }
        Services {
            settings,
            snapshot,
            health,
            metrics,
            events,
            forwarder,
            reports,
            reloader,
            service_manager,
            handler,
        }
    }

    /// What `status` shows, the same for the control socket and the embedding API: every
    /// shared name with its order and endpoint health, the configuration in force, and
    /// forwarding when it is on.
    pub(crate) fn status(&self) -> StatusReport {
        let snapshot = self.snapshot.load();
        let mut report = crate::ops::status::status_report(&snapshot, &self.health);
        report.config = Some(self.reloader.config_status());
        report.forwarding = Some(&self.forwarder)
            .filter(|forwarder| forwarder.is_enabled())
            .map(|forwarder| Box::new(forwarder.status()));
        report
    }
}
