//! Re-checks of the paths the observer saw fail: a TCP connect of the server's own to the port
//! the failed connection used, backing off from 1 s to 30 s, until it answers (a `recheck`
//! success) or something else reports the endpoint up. Bounded: at most [`MAX_RECHECKS`] at
//! once, one per address and port; a connect the server itself could not make (out of
//! descriptors or ports) is the server's failure, never the endpoint's.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::health::{Outcome, ReportSource, State};
use crate::reports::own_connections::is_local_failure;
use crate::reports::{ReportTarget, Reports};

/// The first wait before a re-check, doubled after each one that fails.
const FIRST_RECHECK: Duration = Duration::from_secs(1);
/// The longest wait between two re-checks.
const LAST_RECHECK: Duration = Duration::from_secs(30);
/// How long a re-check's connect may take.
const RECHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// The most re-checks running at once: each holds a descriptor while it connects.
pub const MAX_RECHECKS: usize = 64;

/// The re-checks in progress: one task per (address, port) the observer saw fail.
pub struct Rechecks {
    reports: Reports,
    runtime: tokio::runtime::Handle,
    tasks: Mutex<JoinSet<()>>,
    active: Arc<Mutex<HashSet<SocketAddr>>>,
}

impl Rechecks {
    /// Re-checks run on `runtime` and report into `reports`.
    pub fn new(reports: Reports, runtime: tokio::runtime::Handle) -> Self {
        Rechecks {
            reports,
            runtime,
            tasks: Mutex::new(JoinSet::new()),
            active: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Starts re-checking `target` unless it already is, or too many re-checks run.
    pub fn start(&self, target: SocketAddr) {
        let Ok(mut active) = self.active.lock() else {
            return;
        };
        if active.contains(&target) {
            return;
        }
        if active.len() >= MAX_RECHECKS {
            warn!(%target, limit = MAX_RECHECKS, "re-check: too many running; this path waits for traffic or another report");
            return;
        }
        active.insert(target);
        drop(active);
        let Ok(mut tasks) = self.tasks.lock() else {
            return;
        };
        // Reap the finished ones.
        while tasks.try_join_next().is_some() {}
        tasks.spawn_on(
            recheck(target, self.reports.clone(), Arc::clone(&self.active)),
            &self.runtime,
        );
    }
}

impl Rechecks {
    /// Aborts every re-check and waits until each has ended. Called from the observer's own
    /// thread, never from the runtime's.
    pub fn stop(&self) {
        let Ok(mut tasks) = self.tasks.lock() else {
            return;
        };
        tasks.abort_all();
        let tasks = &mut *tasks;
        self.runtime
            .block_on(async { while tasks.join_next().await.is_some() {} });
    }
}

/// Re-checks `target` with back-off until it answers or the endpoint is no longer down.
async fn recheck(target: SocketAddr, reports: Reports, active: Arc<Mutex<HashSet<SocketAddr>>>) {
    let mut wait = FIRST_RECHECK;
    loop {
        tokio::time::sleep(wait).await;
        let address = target.ip();
        if reports.health().get(address).state() != State::Down
            || !reports.snapshot().load().zones.is_endpoint_address(address)
        {
            break;
        }
        match reports
            .own_connections()
            .probe(target, RECHECK_TIMEOUT.min(wait))
            .await
        {
            Ok(rtt) => {
                info!(%target, rtt_ms = rtt.as_secs_f64() * 1000.0, "re-check: the endpoint answers again");
                let _ = reports.report(
                    &ReportTarget::Address(address),
                    Outcome::Success,
                    Some(rtt),
                    ReportSource::Recheck,
                );
                break;
            }
            Err(error) if is_local_failure(&error) => {
                warn!(%target, %error, "re-check: cannot open a connection here; trying again later");
            }
            Err(error) => {
                debug!(%target, %error, next_in_s = (wait * 2).min(LAST_RECHECK).as_secs(), "re-check failed");
            }
        }
        wait = (wait * 2).min(LAST_RECHECK);
    }
    if let Ok(mut active) = active.lock() {
        active.remove(&target);
    }
}
