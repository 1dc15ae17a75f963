//! The reports: one connection outcome for an endpoint address, or for every address of a
//! destination, with its source, into the health table; and drains. The state changes and
//! failovers they cause are logged (one line each), published as events and counted. The
//! control socket, the embedding API, the probes and the connection observer all report
//! through here.

#[cfg(target_os = "linux")]
pub mod observer;
pub mod own_connections;
pub mod probe;
#[cfg(target_os = "linux")]
pub mod sock_diag;

use std::net::IpAddr;
use std::time::Duration;

use tracing::info;

use crate::dns::snapshot::{SharedSnapshot, Snapshot};
use crate::health::events::{Event, Events};
use crate::health::{HealthTable, Outcome, Report, ReportSource, State};
use crate::metrics::Metrics;
use crate::model::NameIndex;
use crate::reports::own_connections::OwnConnections;
use crate::time::now_unix_ms;

/// What a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportTarget {
    /// One endpoint address (every name carrying it).
    Address(IpAddr),
    /// Every endpoint address of a destination, by its id in the zone data.
    Destination(String),
}

/// What one report did to one address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportResult {
    /// The endpoint address.
    pub address: IpAddr,
    /// Its state before the report.
    pub previous: State,
    /// Its state now.
    pub state: State,
    /// Failures since its last success.
    pub consecutive_failures: u32,
    /// The shared names carrying the address.
    pub names: Vec<String>,
}

/// The longest round-trip time a report may carry. Anything longer is a broken measurement (or
/// a hostile one), not a path to rank.
pub const MAX_RTT: Duration = Duration::from_secs(3600);

/// Why a report was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    /// The address is no endpoint's.
    #[error("{0} is not the address of any endpoint")]
    UnknownAddress(IpAddr),
    /// No destination has that id.
    #[error("no destination has the id {0:?}")]
    UnknownDestination(String),
    /// The destination carries no shared name, so it has no endpoint.
    #[error("destination {0:?} has no endpoint (it carries no shared name)")]
    NoEndpoints(String),
    /// A negative, non-finite or implausibly long RTT.
    #[error("rtt_ms {0} is not a number of milliseconds from 0 to 3600000 (one hour)")]
    InvalidRtt(f64),
}

/// The reports. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reports {
    snapshot: SharedSnapshot,
    health: HealthTable,
    events: Events,
    metrics: Metrics,
    own_connections: OwnConnections,
}

impl Reports {
    /// Reports into `health`, resolving targets in `snapshot`.
    pub fn new(
        snapshot: SharedSnapshot,
        health: HealthTable,
        events: Events,
        metrics: Metrics,
    ) -> Self {
        Reports {
            snapshot,
            health,
            events,
            metrics,
            own_connections: OwnConnections::new(),
        }
    }

    /// The server's own connections to endpoints (probes, re-checks), which the connection
    /// observer leaves out.
    pub fn own_connections(&self) -> &OwnConnections {
        &self.own_connections
    }

    /// The configuration reports are resolved in.
    pub fn snapshot(&self) -> &SharedSnapshot {
        &self.snapshot
    }

    /// The health table reports land in.
    pub fn health(&self) -> &HealthTable {
        &self.health
    }

    /// The event bus state changes are published on.
    #[cfg(test)]
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Records `outcome` (with an optional RTT in milliseconds) for `target`. The next DNS answer
    /// already reflects it.
    pub fn report_ms(
        &self,
        target: &ReportTarget,
        outcome: Outcome,
        rtt_ms: Option<f64>,
        source: ReportSource,
    ) -> Result<Vec<ReportResult>, ReportError> {
        let rtt = match rtt_ms {
            None => None,
            Some(ms) => Some(
                Duration::try_from_secs_f64(ms / 1000.0)
                    .map_err(|_| ReportError::InvalidRtt(ms))?,
            ),
        };
        self.report(target, outcome, rtt, source)
    }

    /// Records `outcome` for `target`. The next DNS answer already reflects it.
    pub fn report(
        &self,
        target: &ReportTarget,
        outcome: Outcome,
        rtt: Option<Duration>,
        source: ReportSource,
    ) -> Result<Vec<ReportResult>, ReportError> {
        if let Some(rtt) = rtt.filter(|rtt| *rtt > MAX_RTT) {
            return Err(ReportError::InvalidRtt(rtt.as_secs_f64() * 1000.0));
        }
        let snapshot = self.snapshot.load();
        let addresses = resolve_target(&snapshot, target)?;
        let firsts = FirstEndpoints::before(self, &snapshot, &addresses);
        let mut results = Vec::new();
        for address in addresses {
            let previous = self.health.get(address).state();
            let health = self.health.report(Report {
                address,
                outcome,
                rtt,
                source,
            });
            self.metrics.report(outcome, source);
            let state = health.state();
            if state != previous {
                self.state_changed(address, previous, state, &health);
            }
            results.push(ReportResult {
                address,
                previous,
                state,
                consecutive_failures: health.consecutive_failures,
                names: snapshot
                    .zones
                    .names_with_address(address)
                    .unwrap_or_default(),
            });
        }
        firsts.publish_changes(self, &snapshot);
        Ok(results)
    }

    /// Starts (`draining = true`) or ends draining the destination `id`: its endpoints go after
    /// every other endpoint of their names, still answered. Returns whether that changed
    /// anything; the change is logged, published as an event and shows in the next answer. A
    /// drain that outlived its destination (a reload removed it) can still be ended.
    pub fn set_draining(&self, id: &str, draining: bool) -> Result<bool, ReportError> {
        let snapshot = self.snapshot.load();
        let destination = snapshot.zones.destination_index(id);
        if destination.is_none() && (draining || !self.health.is_draining(id)) {
            return Err(ReportError::UnknownDestination(id.to_string()));
        }
        let addresses = destination
            .map(|destination| snapshot.zones.addresses_of(destination))
            .unwrap_or_default();
        let firsts = FirstEndpoints::before(self, &snapshot, &addresses);
        let changed = self.health.set_draining(id, draining);
        if changed {
            info!(destination = id, draining, "destination drain changed");
            self.events.publish(if draining {
                Event::DestinationDrained {
                    destination: id.to_string(),
                    at_unix_ms: now_unix_ms(),
                }
            } else {
                Event::DestinationUndrained {
                    destination: id.to_string(),
                    at_unix_ms: now_unix_ms(),
                }
            });
            firsts.publish_changes(self, &snapshot);
        }
        Ok(changed)
    }

    fn state_changed(
        &self,
        address: IpAddr,
        previous: State,
        state: State,
        health: &crate::health::EndpointHealth,
    ) {
        let failures = health.consecutive_failures;
        let source = health.last_source.unwrap_or(ReportSource::Agent);
        info!(%address, %previous, %state, %source, consecutive_failures = failures, "endpoint state changed");
        let at_unix_ms = now_unix_ms();
        let event = match state {
            State::Up => Event::EndpointUp {
                address,
                previous,
                source,
                at_unix_ms,
            },
            State::Down => Event::EndpointDown {
                address,
                previous,
                consecutive_failures: failures,
                source,
                at_unix_ms,
            },
            State::Unknown => return,
        };
        self.events.publish(event);
    }

    fn first_endpoint(&self, snapshot: &Snapshot, index: NameIndex) -> Option<IpAddr> {
        let shared = snapshot.zones.name(index)?;
        snapshot
            .answer_order(shared, &self.health)
            .first()
            .map(|o| o.endpoint.address)
    }

    /// The addresses a name resolves to for this client now (A and AAAA together), in answer
    /// order; `None` when the name is not a shared name.
    pub fn answer_order(&self, name: &hickory_proto::rr::Name) -> Option<Vec<IpAddr>> {
        let snapshot = self.snapshot.load();
        let index = snapshot.zones.name_index(name)?;
        let shared = snapshot.zones.name(index)?;
        Some(
            snapshot
                .answer_order(shared, &self.health)
                .iter()
                .map(|o| o.endpoint.address)
                .collect(),
        )
    }
}

/// The first endpoint of every name that carries some addresses, taken before a change so the
/// failovers it causes can be logged and published after it.
struct FirstEndpoints {
    names: Vec<(NameIndex, Option<IpAddr>)>,
}

impl FirstEndpoints {
    fn before(reports: &Reports, snapshot: &Snapshot, addresses: &[IpAddr]) -> Self {
        let mut names: Vec<(NameIndex, Option<IpAddr>)> = Vec::new();
        for address in addresses {
            for &index in snapshot.zones.name_indexes_with_address(*address) {
                if !names.iter().any(|(seen, _)| *seen == index) {
                    names.push((index, reports.first_endpoint(snapshot, index)));
                }
            }
        }
        FirstEndpoints { names }
    }

    fn publish_changes(self, reports: &Reports, snapshot: &Snapshot) {
        for (index, before) in self.names {
            let after = reports.first_endpoint(snapshot, index);
            if after != before
                && let Some(shared) = snapshot.zones.name(index)
            {
                let name = shared.name.to_string();
                info!(%name, from = ?before, to = ?after, "first endpoint changed");
                reports.metrics.failover();
                reports.events.publish(Event::FirstEndpointChanged {
                    name,
                    from: before,
                    to: after,
                    at_unix_ms: now_unix_ms(),
                });
            }
        }
    }
}

fn resolve_target(snapshot: &Snapshot, target: &ReportTarget) -> Result<Vec<IpAddr>, ReportError> {
    match target {
        ReportTarget::Address(address) => {
            if snapshot.zones.names_with_address(*address).is_some() {
                Ok(vec![*address])
            } else {
                Err(ReportError::UnknownAddress(*address))
            }
        }
        ReportTarget::Destination(id) => {
            let destination = snapshot
                .zones
                .destination_index(id)
                .ok_or_else(|| ReportError::UnknownDestination(id.clone()))?;
            let addresses = snapshot.zones.addresses_of(destination);
            if addresses.is_empty() {
                Err(ReportError::NoEndpoints(id.clone()))
            } else {
                Ok(addresses)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_zone_text;
    use crate::testing::demo_identity;

    const ZONE: &str = r#"
[[zone]]
origin = "internal"
[[asset]]
id = "gw"
kind = "gateway"
[[asset]]
id = "app-host"
kind = "primary"
addresses = ["100.64.1.10", "fd7a:115c:a1e0::10"]
names = ["app.internal"]
[[virtual_asset]]
id = "app-via-gw"
gateway = "gw"
addresses = ["10.10.0.10"]
names = ["app.internal"]
[[policy]]
id = "p"
sources = ["*"]
destinations = ["app-host", "app-via-gw"]
"#;

    fn reports() -> (Reports, Metrics) {
        let data = load_zone_text("zone.toml", ZONE).expect("valid zone");
        let snapshot = SharedSnapshot::new(Snapshot::new(data, demo_identity()));
        let metrics = Metrics::new();
        let reports = Reports::new(snapshot, HealthTable::new(), Events::new(), metrics.clone());
        (reports, metrics)
    }

    fn address(text: &str) -> IpAddr {
        text.parse().expect("literal")
    }

    #[test]
    fn state_changes_and_failovers_become_events_once() {
        let (reports, metrics) = reports();
        let mut events = reports.events().subscribe();
        let primary = ReportTarget::Address(address("100.64.1.10"));
        reports
            .report(&primary, Outcome::Failure, None, ReportSource::Agent)
            .expect("known address");
        reports
            .report(&primary, Outcome::Failure, None, ReportSource::Agent)
            .expect("known address");
        let mut seen = Vec::new();
        while let Ok(event) = events.try_recv() {
            seen.push(match event {
                Event::EndpointDown { address, .. } => format!("down {address}"),
                Event::FirstEndpointChanged { from, to, .. } => format!("first {from:?} -> {to:?}"),
                other => format!("{other:?}"),
            });
        }
        assert_eq!(
            seen,
            [
                "down 100.64.1.10".to_string(),
                "first Some(100.64.1.10) -> Some(fd7a:115c:a1e0::10)".to_string(),
            ],
            "the second failure changes nothing"
        );
        assert!(metrics.render().contains("failover_dns_failovers_total 1"));
        assert!(
            metrics
                .render()
                .contains("failover_dns_reports_total{outcome=\"failure\",source=\"agent\"} 2")
        );
    }

    #[test]
    fn targets_resolve_or_are_rejected_table() {
        let (reports, _) = reports();
        let cases: Vec<(ReportTarget, Result<Vec<&str>, &str>)> = vec![
            (
                ReportTarget::Address(address("10.10.0.10")),
                Ok(vec!["10.10.0.10"]),
            ),
            (
                ReportTarget::Destination("app-host".into()),
                Ok(vec!["100.64.1.10", "fd7a:115c:a1e0::10"]),
            ),
            (
                ReportTarget::Address(address("192.0.2.1")),
                Err("not the address of any endpoint"),
            ),
            (
                ReportTarget::Destination("nope".into()),
                Err("no destination has the id"),
            ),
            (
                ReportTarget::Destination("gw".into()),
                Err("has no endpoint"),
            ),
        ];
        for (target, expected) in cases {
            let result = reports
                .report(&target, Outcome::Success, None, ReportSource::Agent)
                .map(|results| {
                    results
                        .iter()
                        .map(|r| r.address.to_string())
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.to_string());
            match (&result, &expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{target:?}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{target:?}: {got}"),
                _ => panic!("{target:?}: {result:?}, expected {expected:?}"),
            }
        }
        for (rtt_ms, accepted) in [
            (-1.0, false),
            (f64::NAN, false),
            (f64::INFINITY, false),
            (1.8e22, false),
            (3_600_000.5, false),
            (3_600_000.0, true),
            (0.0, true),
        ] {
            let result = reports.report_ms(
                &ReportTarget::Address(address("10.10.0.10")),
                Outcome::Success,
                Some(rtt_ms),
                ReportSource::Agent,
            );
            assert_eq!(result.is_ok(), accepted, "rtt_ms {rtt_ms}: {result:?}");
        }
        assert!(matches!(
            reports.report(
                &ReportTarget::Address(address("10.10.0.10")),
                Outcome::Success,
                Some(MAX_RTT + Duration::from_millis(1)),
                ReportSource::Agent,
            ),
            Err(ReportError::InvalidRtt(_))
        ));
        let name = hickory_proto::rr::Name::from_ascii("APP.internal.").expect("literal");
        assert_eq!(
            reports.answer_order(&name).map(|o| o.len()),
            Some(3),
            "both families, each address once"
        );
    }
}
