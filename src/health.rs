//! The live health table: per endpoint address, the last success, last failure, consecutive
//! failures and last RTT, fed by reports from the agent. A cheap `Clone` handle around a
//! concurrent map; a report is visible to the very next lookup.
//!
//! Reports are ordered by a global sequence number as well as wall-clock time, so "most recent"
//! and "oldest" are exact even for reports within the same clock tick.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

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

/// One outcome for one endpoint address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The endpoint address the outcome is for.
    pub address: IpAddr,
    /// Success or failure.
    pub outcome: Outcome,
    /// Round-trip time measured, if any.
    pub rtt: Option<Duration>,
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
    /// Last successful connection.
    pub last_success: Option<Stamp>,
    /// Last failed connection.
    pub last_failure: Option<Stamp>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// RTT of the last report that carried one.
    pub last_rtt: Option<Duration>,
    /// When the endpoint entered its current state (the report that changed it).
    pub state_since: Option<Stamp>,
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
    sequence: AtomicU64,
    /// Counts changes to the table, bumped after each one is applied (see [`HealthTable::changes`]).
    changes: AtomicU64,
}

impl HealthTable {
    /// An empty table: every endpoint is unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one outcome and returns the endpoint's new health. The caller decides which
    /// addresses are endpoints; the table records whatever it is given.
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

    /// What is known about `address` (all `None` when nothing was reported).
    pub fn get(&self, address: IpAddr) -> EndpointHealth {
        self.inner
            .entries
            .get(&address)
            .map(|entry| *entry)
            .unwrap_or_default()
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
        }
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
