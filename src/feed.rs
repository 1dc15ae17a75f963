//! The agent feed: one connection outcome for an endpoint address, or for every address of a
//! destination, into the health table. The state changes and failovers it causes are logged
//! (one line each), published as events and counted. The control socket, the probes and the
//! embedding API all report through here.

use std::net::IpAddr;
use std::time::Duration;

use tracing::info;

use crate::events::{Event, Events, now_unix_ms};
use crate::health::{HealthTable, Outcome, Report, State};
use crate::metrics::Metrics;
use crate::snapshot::{SharedSnapshot, Snapshot};
use crate::zones::NameIndex;

/// What a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportTarget {
    /// One endpoint address (every name carrying it).
    Address(IpAddr),
    /// Every endpoint address of a destination, by its id in the zone data.
    Destination(String),
}

/// What one report did to one address.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Why a report was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedError {
    /// The address is no endpoint's.
    #[error("{0} is not the address of any endpoint")]
    UnknownAddress(IpAddr),
    /// No destination has that id.
    #[error("no destination has the id {0:?}")]
    UnknownDestination(String),
    /// The destination carries no shared name, so it has no endpoint.
    #[error("destination {0:?} has no endpoint (it carries no shared name)")]
    NoEndpoints(String),
    /// A negative or non-finite RTT.
    #[error("rtt_ms {0} is not a non-negative number of milliseconds")]
    InvalidRtt(f64),
}

/// The feed. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Feed {
    snapshot: SharedSnapshot,
    health: HealthTable,
    events: Events,
    metrics: Metrics,
}

impl Feed {
    /// A feed into `health`, resolving targets in `snapshot`.
    pub fn new(
        snapshot: SharedSnapshot,
        health: HealthTable,
        events: Events,
        metrics: Metrics,
    ) -> Self {
        Feed {
            snapshot,
            health,
            events,
            metrics,
        }
    }

    /// The event bus state changes are published on.
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
    ) -> Result<Vec<ReportResult>, FeedError> {
        let rtt = match rtt_ms {
            None => None,
            Some(ms) => Some(
                Duration::try_from_secs_f64(ms / 1000.0).map_err(|_| FeedError::InvalidRtt(ms))?,
            ),
        };
        self.report(target, outcome, rtt)
    }

    /// Records `outcome` for `target`. The next DNS answer already reflects it.
    pub fn report(
        &self,
        target: &ReportTarget,
        outcome: Outcome,
        rtt: Option<Duration>,
    ) -> Result<Vec<ReportResult>, FeedError> {
        let snapshot = self.snapshot.load();
        let addresses = resolve_target(&snapshot, target)?;
        let mut names: Vec<NameIndex> = Vec::new();
        for address in &addresses {
            for &index in snapshot.zones.name_indexes_with_address(*address) {
                if !names.contains(&index) {
                    names.push(index);
                }
            }
        }
        let first_before: Vec<Option<IpAddr>> = names
            .iter()
            .map(|&i| self.first_endpoint(&snapshot, i))
            .collect();
        let mut results = Vec::new();
        for address in addresses {
            let previous = self.health.get(address).state();
            let health = self.health.report(Report {
                address,
                outcome,
                rtt,
            });
            self.metrics.report(outcome);
            let state = health.state();
            if state != previous {
                self.state_changed(address, previous, state, health.consecutive_failures);
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
        for (&index, before) in names.iter().zip(first_before) {
            let after = self.first_endpoint(&snapshot, index);
            if after != before
                && let Some(shared) = snapshot.zones.name(index)
            {
                let name = shared.name.to_string();
                info!(%name, from = ?before, to = ?after, "first endpoint changed");
                self.metrics.failover();
                self.events.publish(Event::FirstEndpointChanged {
                    name,
                    from: before,
                    to: after,
                    at_unix_ms: now_unix_ms(),
                });
            }
        }
        Ok(results)
    }

    fn state_changed(&self, address: IpAddr, previous: State, state: State, failures: u32) {
        info!(%address, %previous, %state, consecutive_failures = failures, "endpoint state changed");
        let at_unix_ms = now_unix_ms();
        let event = match state {
            State::Up => Event::EndpointUp {
                address,
                previous,
                at_unix_ms,
            },
            State::Down => Event::EndpointDown {
                address,
                previous,
                consecutive_failures: failures,
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

fn resolve_target(snapshot: &Snapshot, target: &ReportTarget) -> Result<Vec<IpAddr>, FeedError> {
    match target {
        ReportTarget::Address(address) => {
            if snapshot.zones.names_with_address(*address).is_some() {
                Ok(vec![*address])
            } else {
                Err(FeedError::UnknownAddress(*address))
            }
        }
        ReportTarget::Destination(id) => {
            let destination = snapshot
                .zones
                .destination_id(id)
                .ok_or_else(|| FeedError::UnknownDestination(id.clone()))?;
            let addresses = snapshot.zones.addresses_of(destination);
            if addresses.is_empty() {
                Err(FeedError::NoEndpoints(id.clone()))
            } else {
                Ok(addresses)
            }
        }
    }
}
