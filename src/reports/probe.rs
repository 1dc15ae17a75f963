//! Optional active probes for setups without an agent: for each destination with a `probe`, a
//! TCP connect to the configured port on each of its endpoint addresses, every interval (with
//! jitter), reported through the same `Reports` as the agent's reports.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::task::JoinSet;

use crate::dns::snapshot::Snapshot;
use crate::health::{Outcome, ReportSource};
use crate::model::ProbeSpec;
use crate::reports::own_connections::is_local_failure;
use crate::reports::{ReportTarget, Reports};

/// The running probes. Dropping it stops them all.
#[derive(Debug, Default)]
pub struct Probes {
    #[expect(dead_code, reason = "held, never read: dropping it aborts every probe")]
    tasks: JoinSet<()>,
}

impl Probes {
    /// Starts a probe per (address, port) of every destination in `snapshot` that has one.
    pub fn start(snapshot: &Snapshot, reports: &Reports) -> Probes {
        let mut tasks = JoinSet::new();
        let mut started: std::collections::HashSet<(IpAddr, u16)> =
            std::collections::HashSet::new();
        for (index, destination) in snapshot.zones.data().destinations.iter().enumerate() {
            let Some(spec) = destination.probe.as_deref().copied() else {
                continue;
            };
            let id = crate::model::DestinationIndex::new(index);
            for address in snapshot.zones.addresses_of(id) {
                if !started.insert((address, spec.port)) {
                    continue;
                }
                tasks.spawn(probe_loop(address, spec, reports.clone()));
            }
        }
        if !started.is_empty() {
            tracing::info!(count = started.len(), "active probes started");
        }
        Probes { tasks }
    }
}

/// The wait before the next probe: the interval, plus or minus up to the jitter.
fn next_wait(spec: &ProbeSpec) -> Duration {
    let jitter_ms = u64::try_from(spec.jitter.as_millis()).unwrap_or(u64::MAX);
    if jitter_ms == 0 {
        return spec.interval;
    }
    let offset = rand::random::<u64>() % (2 * jitter_ms + 1);
    (spec.interval + Duration::from_millis(offset)).saturating_sub(spec.jitter)
}

async fn probe_loop(address: IpAddr, spec: ProbeSpec, reports: Reports) {
    let target = SocketAddr::new(address, spec.port);
    loop {
        // From a registered port: the connection observer must not count a probe as traffic.
        let (outcome, rtt) = match reports.own_connections().probe(target, spec.timeout).await {
            Ok(rtt) => (Outcome::Success, Some(rtt)),
            Err(error) if is_local_failure(&error) => {
                // This machine's failure (out of descriptors, say), not the path's.
                tracing::warn!(%target, %error, "probe: cannot open a connection here; not reported");
                tokio::time::sleep(next_wait(&spec)).await;
                continue;
            }
            Err(_) => (Outcome::Failure, None),
        };
        // The address may have left the zone data in a reload; the probe set is then replaced.
        let _ = reports.report(
            &ReportTarget::Address(address),
            outcome,
            rtt,
            ReportSource::Probe,
        );
        tokio::time::sleep(next_wait(&spec)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_stay_within_the_jitter() {
        let spec = ProbeSpec {
            port: 1,
            interval: Duration::from_millis(1000),
            timeout: Duration::from_millis(100),
            jitter: Duration::from_millis(200),
        };
        for _ in 0..200 {
            let wait = next_wait(&spec);
            assert!(
                (Duration::from_millis(800)..=Duration::from_millis(1200)).contains(&wait),
                "{wait:?}"
            );
        }
        let steady = ProbeSpec {
            jitter: Duration::ZERO,
            ..spec
        };
        assert_eq!(next_wait(&steady), Duration::from_millis(1000));
    }
}
