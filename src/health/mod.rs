//! The live health table: per endpoint address, the last success (and the last one that came
//! from real traffic), last failure, consecutive failures, last RTT and the source of the last
//! report; and the set of draining destinations. A cheap `Clone` handle around a concurrent
//! map; a report or a drain is visible to the very next lookup.
//!
//! Reports are ordered by a global sequence number as well as wall-clock time, so "most recent"
//! and "oldest" are exact even for reports within the same clock tick.

pub mod events;
pub mod persist;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

/// The outcome the agent saw for one connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The connection worked.
    Success,
    /// The connection failed.
    Failure,
}

/// Who saw an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportSource {
    /// The agent's connection layer (through the control socket or the embedding API): real
    /// traffic.
    Agent,
    /// The connection observer: an application's own connection, as the kernel saw it.
    Observer,
    /// An active probe: the path is alive, which does not make it the one in use.
    Probe,
    /// The observer's re-check of a path it saw fail (a connect of the server's own): alive,
    /// not in use.
    Recheck,
}

impl ReportSource {
    /// Every source, in the order the metrics list them.
    pub const ALL: [ReportSource; 4] = [
        ReportSource::Agent,
        ReportSource::Observer,
        ReportSource::Probe,
        ReportSource::Recheck,
    ];

    /// Whether a success from this source means applications use the path (agent, observer),
    /// rather than only that it answers (probe, re-check). Only those reorder healthy paths.
    pub fn carries_traffic(self) -> bool {
        matches!(self, ReportSource::Agent | ReportSource::Observer)
    }

    /// The source's name in `status`, events and metrics.
    pub fn label(self) -> &'static str {
        match self {
            ReportSource::Agent => "agent",
            ReportSource::Observer => "observer",
            ReportSource::Probe => "probe",
            ReportSource::Recheck => "recheck",
        }
    }
}

impl std::fmt::Display for ReportSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// One outcome for one endpoint address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The endpoint address the outcome is for.
    pub address: IpAddr,
    /// Success or failure.
    pub outcome: Outcome,
    /// Round-trip time measured, if any.
    pub rtt: Option<Duration>,
    /// Who saw it.
    pub source: ReportSource,
}

/// When something happened: a sequence number that totally orders reports, and the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    /// Position in the total order of reports.
    pub sequence: u64,
    /// Wall-clock time of the report (for display).
    pub at: SystemTime,
}

/// What is known about one endpoint address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointHealth {
    /// Last successful connection, from any source.
    pub last_success: Option<Stamp>,
    /// Last successful connection from a source that carries traffic (agent, observer).
    pub last_traffic_success: Option<Stamp>,
    /// Last failed connection.
    pub last_failure: Option<Stamp>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// RTT of the last report that carried one.
    pub last_rtt: Option<Duration>,
    /// When the endpoint entered its current state (the report that changed it).
    pub state_since: Option<Stamp>,
    /// Who made the last report.
    pub last_source: Option<ReportSource>,
}

/// The state an endpoint is in, derived from its reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// A success newer than any failure.
    Up,
    /// No report yet.
    Unknown,
    /// A failure newer than any success.
    Down,
}

impl EndpointHealth {
    /// Derives the state from the last success and failure.
    pub fn state(&self) -> State {
        match (self.last_success, self.last_failure) {
            (None, None) => State::Unknown,
            (Some(_), None) => State::Up,
            (None, Some(_)) => State::Down,
            (Some(success), Some(failure)) => {
                if success.sequence > failure.sequence {
                    State::Up
                } else {
                    State::Down
                }
            }
        }
    }

    fn apply(&mut self, report: &Report, stamp: Stamp) {
        let previous = self.state();
        match report.outcome {
            Outcome::Success => {
                self.last_success = Some(stamp);
                if report.source.carries_traffic() {
                    self.last_traffic_success = Some(stamp);
                }
                self.consecutive_failures = 0;
            }
            Outcome::Failure => {
                self.last_failure = Some(stamp);
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            }
        }
        if report.rtt.is_some() {
            self.last_rtt = report.rtt;
        }
        self.last_source = Some(report.source);
        if self.state() != previous {
            self.state_since = Some(stamp);
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Up => "up",
            State::Unknown => "unknown",
            State::Down => "down",
        })
    }
}

/// The shared health table. Cloning it is cheap; all clones see the same table.
#[derive(Debug, Clone, Default)]
pub struct HealthTable {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: DashMap<IpAddr, EndpointHealth>,
    /// Ids of the destinations being drained, sorted. Replaced whole on the rare change, read
    /// without a lock by every answer.
    draining: ArcSwap<Vec<String>>,
    sequence: AtomicU64,
    /// Counts changes to the table, bumped after each one is applied (see [`HealthTable::changes`]).
    changes: AtomicU64,
    /// Set when an endpoint name was answered, cleared by whoever watches for it (the
    /// connection observer). A flag, not a counter: answering writes it only when it is clear,
    /// so the query path does not contend for its cache line.
    answered: AtomicBool,
}

impl HealthTable {
    /// An empty table: every endpoint is unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one outcome and returns the endpoint's new health. The caller decides which
    /// addresses are endpoints; the table records whatever it is given. This is the table alone:
    /// every report of the server goes through `Reports` (and so `FailoverDns::report`), which
    /// also logs a state change, publishes it and counts it; only benchmarks and tests write
    /// here directly.
    pub fn report(&self, report: Report) -> EndpointHealth {
        let mut entry = self.inner.entries.entry(report.address).or_default();
        // Taking the sequence number while holding the entry's lock keeps per-address order and
        // sequence order the same.
        let sequence = self.inner.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        let stamp = Stamp {
            sequence,
            at: SystemTime::now(),
        };
        entry.apply(&report, stamp);
        let health = *entry;
        drop(entry);
        self.changed();
        health
    }

    /// How many changes the table has seen. A reader that takes the change count before reading
    /// entries and finds it unchanged later knows that nothing it read has changed since;
    /// every change bumps it after it is applied, so the next reader sees the change.
    pub fn changes(&self) -> u64 {
        self.inner.changes.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.inner.changes.fetch_add(1, Ordering::Release);
    }

    /// Notes that an endpoint name was just answered: an application is about to connect to
    /// one of its endpoints, and the connection observer looks at once.
    pub fn note_answered(&self) {
        if !self.inner.answered.load(Ordering::Relaxed) {
            self.inner.answered.store(true, Ordering::Relaxed);
        }
    }

    /// Whether an endpoint name was answered since the last call.
    pub fn take_answered(&self) -> bool {
        self.inner.answered.load(Ordering::Relaxed)
            && self.inner.answered.swap(false, Ordering::Relaxed)
    }

    /// What is known about `address` (all `None` when nothing was reported).
    pub fn get(&self, address: IpAddr) -> EndpointHealth {
        self.inner
            .entries
            .get(&address)
            .map(|entry| *entry)
            .unwrap_or_default()
    }

    /// Whether the destination with id `id` is draining.
    pub fn is_draining(&self, id: &str) -> bool {
        let draining = self.inner.draining.load();
        !draining.is_empty() && draining.binary_search_by(|d| d.as_str().cmp(id)).is_ok()
    }

    /// Whether any destination is draining (lets answers skip the per-endpoint check).
    pub fn any_draining(&self) -> bool {
        !self.inner.draining.load().is_empty()
    }

    /// The ids of the draining destinations, sorted.
    pub fn draining(&self) -> Vec<String> {
        self.inner.draining.load().as_ref().clone()
    }

    /// Starts (`true`) or ends (`false`) draining the destination `id`. Returns whether that
    /// changed anything. Destinations are named by id, so a drain survives reloads.
    pub fn set_draining(&self, id: &str, draining: bool) -> bool {
        let mut changed = false;
        self.inner.draining.rcu(|current| {
            let mut next = current.as_ref().clone();
            changed = match (next.binary_search_by(|d| d.as_str().cmp(id)), draining) {
                (Ok(_), true) | (Err(_), false) => false,
                (Err(at), true) => {
                    next.insert(at, id.to_string());
                    true
                }
                (Ok(at), false) => {
                    next.remove(at);
                    true
                }
            };
            next
        });
        if changed {
            self.changed();
        }
        changed
    }

    /// Forgets every report.
    pub fn clear(&self) {
        self.inner.entries.clear();
        self.changed();
    }

    /// Every address with a report, and what is known about it (for saving the table).
    pub fn entries(&self) -> Vec<(IpAddr, EndpointHealth)> {
        self.inner
            .entries
            .iter()
            .map(|entry| (*entry.key(), *entry.value()))
            .collect()
    }

    /// Puts saved entries back (at start, before any report). Later reports are ordered after
    /// every restored one.
    pub fn restore(&self, entries: impl IntoIterator<Item = (IpAddr, EndpointHealth)>) {
        let mut highest = 0;
        for (address, health) in entries {
            for stamp in [health.last_success, health.last_failure]
                .into_iter()
                .flatten()
            {
                highest = highest.max(stamp.sequence);
            }
            self.inner.entries.insert(address, health);
        }
        self.inner.sequence.fetch_max(highest, Ordering::Relaxed);
        self.changed();
    }

    /// Forgets the addresses for which `is_endpoint` is false and returns how many were
    /// dropped. A reload calls it after swapping in a new configuration, so health survives
    /// for addresses that are still some endpoint's and the table does not grow with every
    /// address that was ever configured.
    pub fn retain_endpoints(&self, is_endpoint: impl Fn(IpAddr) -> bool) -> usize {
        let before = self.inner.entries.len();
        self.inner
            .entries
            .retain(|address, _| is_endpoint(*address));
        self.changed();
        before.saturating_sub(self.inner.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn report(last: u8, outcome: Outcome) -> Report {
        Report {
            address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
            outcome,
            rtt: None,
            source: ReportSource::Agent,
        }
    }

    #[test]
    fn only_traffic_sources_stamp_the_traffic_success() {
        let table = HealthTable::new();
        let probe = Report {
            source: ReportSource::Probe,
            ..report(1, Outcome::Success)
        };
        let health = table.report(probe);
        assert_eq!(health.state(), State::Up);
        assert_eq!(health.last_traffic_success, None);
        assert_eq!(health.last_source, Some(ReportSource::Probe));
        let health = table.report(Report {
            source: ReportSource::Observer,
            ..probe
        });
        assert_eq!(health.last_traffic_success, health.last_success);
    }

    #[test]
    fn drains_are_kept_by_id_and_counted_as_changes() {
        let table = HealthTable::new();
        let before = table.changes();
        assert!(table.set_draining("gw-b", true));
        assert!(table.set_draining("gw-a", true));
        assert!(!table.set_draining("gw-a", true), "already draining");
        assert_eq!(table.draining(), ["gw-a", "gw-b"]);
        assert!(table.is_draining("gw-b") && !table.is_draining("gw-c"));
        assert!(table.set_draining("gw-b", false));
        assert!(!table.set_draining("gw-b", false), "not draining");
        assert_eq!(table.draining(), ["gw-a"]);
        assert_eq!(table.changes(), before + 3, "three real changes");
    }

    #[test]
    fn state_follows_the_newest_report_table() {
        use Outcome::{Failure as F, Success as S};
        let cases: &[(&[Outcome], State, u32)] = &[
            (&[], State::Unknown, 0),
            (&[S], State::Up, 0),
            (&[F], State::Down, 1),
            (&[S, F], State::Down, 1),
            (&[F, S], State::Up, 0),
            (&[F, F, F], State::Down, 3),
            (&[F, F, S, F], State::Down, 1),
        ];
        for (outcomes, state, failures) in cases {
            let table = HealthTable::new();
            for outcome in *outcomes {
                table.report(report(1, *outcome));
            }
            let health = table.get(report(1, Outcome::Success).address);
            assert_eq!(health.state(), *state, "{outcomes:?}");
            assert_eq!(health.consecutive_failures, *failures, "{outcomes:?}");
        }
    }

    #[test]
    fn rtt_is_kept_from_the_last_report_that_had_one() {
        let table = HealthTable::new();
        let mut first = report(1, Outcome::Success);
        first.rtt = Some(Duration::from_millis(12));
        table.report(first);
        let health = table.report(report(1, Outcome::Failure));
        assert_eq!(health.last_rtt, Some(Duration::from_millis(12)));
    }

    #[test]
    fn retain_endpoints_keeps_health_of_addresses_still_configured() {
        let table = HealthTable::new();
        table.report(report(1, Outcome::Failure));
        table.report(report(2, Outcome::Success));
        let kept = report(1, Outcome::Success).address;
        let dropped = table.retain_endpoints(|address| address == kept);
        assert_eq!(dropped, 1);
        assert_eq!(table.get(kept).state(), State::Down);
        assert_eq!(
            table.get(report(2, Outcome::Success).address).state(),
            State::Unknown
        );
    }

    #[test]
    fn sequence_numbers_order_reports_across_addresses() {
        let table = HealthTable::new();
        let a = table.report(report(1, Outcome::Failure));
        let b = table.report(report(2, Outcome::Failure));
        let (Some(a), Some(b)) = (a.last_failure, b.last_failure) else {
            panic!("failures must be stamped");
        };
        assert!(a.sequence < b.sequence);
    }
}
