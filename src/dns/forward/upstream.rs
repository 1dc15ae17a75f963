//! One upstream resolver as the forwarder keeps it: its role, its TLS side, its run of failures
//! and hold-down, its counters, and how `status` shows it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::config::settings::UpstreamSpec;
use crate::dns::forward::settings::ForwardSettings;
use crate::dns::forward::tls::DotUpstream;
use crate::dns::forward::transport::AttemptError;

/// Primary or backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Tried for every query.
    Primary,
    /// Tried only once every primary has failed for a query.
    Backup,
}

#[derive(Debug)]
pub(super) struct Upstream {
    pub(super) spec: UpstreamSpec,
    pub(super) role: Role,
    /// The TLS side, for a DNS-over-TLS upstream.
    pub(super) tls: Option<DotUpstream>,
    pub(super) health: Mutex<UpstreamHealth>,
    /// Its queries outstanding now (see [`Inner::share_of_one`]).
    pub(super) outstanding: Arc<AtomicUsize>,
    /// Usable answers, failed attempts, answers that won a race.
    pub(super) answered: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) won: AtomicU64,
}

#[derive(Debug, Default, Clone)]
pub(super) struct UpstreamHealth {
    pub(super) consecutive_failures: u32,
    pub(super) held_until: Option<Instant>,
    pub(super) last_error: Option<String>,
    pub(super) last_failure: Option<SystemTime>,
    pub(super) last_success: Option<SystemTime>,
}

/// One upstream as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    /// The upstream as configured (`ADDR:PORT`, `tls://ADDR:PORT#NAME`).
    pub upstream: String,
    /// Primary or backup.
    pub role: Role,
    /// `ok`, `failing` (failed last, not held down) or `held-down`.
    pub state: String,
    /// Failed attempts since the last usable answer.
    pub consecutive_failures: u32,
    /// How much longer it is held down, milliseconds.
    pub held_down_ms: Option<u64>,
    /// Why its last failed attempt failed.
    pub last_error: Option<String>,
    /// Last usable answer, milliseconds since the Unix epoch.
    pub last_success_unix_ms: Option<u64>,
    /// Last failure, milliseconds since the Unix epoch.
    pub last_failure_unix_ms: Option<u64>,
    /// Usable answers it gave.
    pub answered: u64,
    /// Answers of its that a client got (it won the race).
    pub won: u64,
    /// Attempts that failed (timeout, error, SERVFAIL, REFUSED).
    pub failed: u64,
}

/// Forwarding as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardingStatus {
    /// Every upstream, primaries then backups, in configured order.
    pub upstreams: Vec<UpstreamStatus>,
    /// Expired answers served because every upstream failed (RFC 8767).
    pub stale_answers: u64,
    /// Refreshes of stale answers running now.
    pub refreshes_in_flight: usize,
}

/// Counts one query outstanding at an upstream until dropped. Taken before the attempt is
/// spawned, so a race on another thread sees it at once.
pub(super) struct Outstanding(Arc<AtomicUsize>);

impl Outstanding {
    /// Counts one more query outstanding at `counter`.
    pub(super) fn take(counter: &Arc<AtomicUsize>) -> Outstanding {
        counter.fetch_add(1, Ordering::Relaxed);
        Outstanding(Arc::clone(counter))
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Upstream {
    /// A usable answer: its run of failures ends, and a hold-down with it.
    pub(super) fn succeeded(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut health) = self.health.lock() {
            if health.held_until.is_some() {
                info!(upstream = %self.spec, "upstream answers again");
            }
            *health = UpstreamHealth {
                last_success: Some(SystemTime::now()),
                last_failure: health.last_failure,
                last_error: health.last_error.take(),
                ..UpstreamHealth::default()
            };
        }
    }

    /// An answer that is no use for this name (SERVFAIL, or a reply that does not parse):
    /// counted as a failed attempt, but the upstream is alive, so its run of failures ends as
    /// with any answer.
    pub(super) fn answered_unusable(&self, reason: &AttemptError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut health) = self.health.lock() {
            health.consecutive_failures = 0;
            health.held_until = None;
            health.last_error = Some(reason.to_string());
        }
    }

    /// A failed attempt: after `settings.failures_before_hold_down` in a row, held down for
    /// `settings.hold_down`.
    pub(super) fn failed(&self, error: &AttemptError, settings: &ForwardSettings) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let Ok(mut health) = self.health.lock() else {
            return;
        };
        health.consecutive_failures = health.consecutive_failures.saturating_add(1);
        health.last_error = Some(error.to_string());
        health.last_failure = Some(SystemTime::now());
        debug!(upstream = %self.spec, %error, failures = health.consecutive_failures, "upstream attempt failed");
        if health.consecutive_failures >= settings.failures_before_hold_down {
            let hold_down = settings.hold_down;
            if health
                .held_until
                .is_none_or(|until| until <= Instant::now())
            {
                warn!(upstream = %self.spec, %error, seconds = hold_down.as_secs(), "upstream keeps failing; holding it down");
            }
            health.held_until = Some(Instant::now() + hold_down);
        }
    }
}
