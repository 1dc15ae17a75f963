//! The connection observer: failover with no agent. Every poll interval (every second at most
//! while no application has a connection to an endpoint address) it asks the kernel
//! (`sock_diag`, unprivileged) for this network namespace's TCP sockets to endpoint addresses,
//! and turns what the applications' own connections did into reports with source `observer`:
//! - a connect still in SYN-SENT whose SYN was retransmitted `syn_retransmits` times is a
//!   failure (about one second without an answer, at the default of 1);
//! - a connection that reached ESTABLISHED since the last poll is a success, with the RTT from
//!   `tcp_info`.
//!
//! Each socket counts once per outcome (by its kernel cookie). The server's own connections
//! (probes, re-checks) are left out by their registered local port.
//!
//! An endpoint the observer saw fail is re-checked with a TCP connect to the port the failed
//! connection used, backing off from 1 s to 30 s, until it answers (a `recheck` success) or
//! something else reports it up. Only addresses applications connected to are re-checked.
//!
//! With fail fast (CAP_NET_ADMIN), connects still waiting on an endpoint that is down, whose
//! SYN went unanswered, are aborted (`SOCK_DESTROY`) when a name carrying the endpoint has
//! another endpoint that is not down: the application's connect fails at once and it moves on
//! to the next address. Nothing else is ever touched.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::config::settings::ObserveSettings;
use crate::feed::sock_diag::{
    DiagSocket, SockDiag, TCP_ESTABLISHED, TCP_SYN_SENT, destination_filter, has_net_admin,
};
use crate::feed::{Feed, ReportTarget};
use crate::health::{Outcome, ReportSource, State};
use crate::metrics::Metrics;

/// The longest wait between two looks while no application has a connection to an endpoint
/// address, open or in progress. A connect that is going to fail stays in SYN-SENT for a
/// second before its first retransmission, so a look at least every second sees it while it
/// waits and switches back to the poll interval in time: failures are seen as soon as with
/// constant polling, at a fraction of the cost (each look walks the kernel's whole socket
/// table, whatever the filter).
const IDLE_INTERVAL: Duration = Duration::from_secs(1);

/// The wait before the next look: the poll interval while applications have connections to
/// endpoint addresses (`busy`, or the last look failed), else up to [`IDLE_INTERVAL`] (never
/// shorter than the interval itself).
fn next_wait(interval: Duration, busy: bool) -> Duration {
    if busy {
        interval
    } else {
        interval.max(IDLE_INTERVAL)
    }
}

/// The first wait before a re-check, doubled after each one that fails.
const FIRST_RECHECK: Duration = Duration::from_secs(1);
/// The longest wait between two re-checks.
const LAST_RECHECK: Duration = Duration::from_secs(30);
/// How long a re-check's connect may take.
const RECHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What one poll saw of one endpoint address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// The endpoint address.
    pub address: IpAddr,
    /// The remote port of the connection (for failures: the port to re-check).
    pub port: u16,
    /// A new connection completed, or a connect went unanswered.
    pub outcome: Outcome,
    /// The connection's RTT, for successes.
    pub rtt: Option<Duration>,
}

/// Turns successive dumps of sockets into observations, each socket counted once per outcome.
/// Its sets and buffers are reused from poll to poll: no allocation in the steady state.
#[derive(Debug)]
pub struct ConnectionTracker {
    syn_retransmits: u8,
    /// Whether a poll has been seen: connections already established at the first poll are
    /// remembered, not reported (they say nothing about the paths now).
    primed: bool,
    established: HashSet<u64>,
    next_established: HashSet<u64>,
    failed: HashSet<u64>,
    next_failed: HashSet<u64>,
    observations: Vec<Observation>,
}

impl ConnectionTracker {
    /// A tracker that counts a connect as failed after `syn_retransmits` SYN retransmissions.
    pub fn new(syn_retransmits: u8) -> Self {
        ConnectionTracker {
            syn_retransmits,
            primed: false,
            established: HashSet::new(),
            next_established: HashSet::new(),
            failed: HashSet::new(),
            next_failed: HashSet::new(),
            observations: Vec::new(),
        }
    }

    /// The observations of one poll that saw `sockets` (the applications' sockets to endpoint
    /// addresses): at most one observation per address, a success when some connection to it
    /// completed (the path works, whatever else waits), else a failure.
    pub fn poll(&mut self, sockets: &[DiagSocket]) -> &[Observation] {
        self.observations.clear();
        self.next_established.clear();
        self.next_failed.clear();
        for socket in sockets {
            let outcome = match socket.state {
                TCP_ESTABLISHED => {
                    self.next_established.insert(socket.cookie);
                    if self.established.contains(&socket.cookie) || !self.primed {
                        continue;
                    }
                    Outcome::Success
                }
                TCP_SYN_SENT if socket.retransmits >= self.syn_retransmits => {
                    self.next_failed.insert(socket.cookie);
                    if self.failed.contains(&socket.cookie) {
                        continue;
                    }
                    Outcome::Failure
                }
                _ => continue,
            };
            let rtt = match outcome {
                Outcome::Success => socket.rtt,
                Outcome::Failure => None,
            };
            let seen = self
                .observations
                .iter_mut()
                .find(|o| o.address == socket.remote);
            match seen {
                Some(observation) if observation.outcome == outcome => {
                    observation.rtt = observation.rtt.or(rtt);
                }
                Some(observation) => {
                    if outcome == Outcome::Success {
                        *observation = Observation {
                            address: socket.remote,
                            port: socket.remote_port,
                            outcome,
                            rtt,
                        };
                    }
                }
                None => self.observations.push(Observation {
                    address: socket.remote,
                    port: socket.remote_port,
                    outcome,
                    rtt,
                }),
            }
        }
        std::mem::swap(&mut self.established, &mut self.next_established);
        std::mem::swap(&mut self.failed, &mut self.next_failed);
        self.primed = true;
        &self.observations
    }
}

/// The running observer. [`Observer::stop`] stops it and waits for its thread; dropping it
/// stops it without waiting (within one poll interval), along with its re-checks.
#[derive(Debug)]
pub struct Observer {
    stop: Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Observer {
    /// Stops the observer and waits until its thread (and every re-check) is gone, so nothing
    /// it reports lands after this returns. Blocks for at most one poll.
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// Starts the observer on a thread of its own, as `settings` say, reporting into `feed`;
/// `None` (with a log line saying why) when it is off or cannot run.
pub fn start(settings: &ObserveSettings, feed: Feed, metrics: Metrics) -> Option<Observer> {
    if !settings.enabled {
        if settings.fail_fast {
            warn!("fail fast needs the connection observer, which is off: fail fast is off");
        }
        info!("connection observer: off");
        return None;
    }
    let diag = match SockDiag::open() {
        Ok(diag) => diag,
        Err(error) => {
            warn!(%error, "connection observer: cannot open sock_diag netlink; off");
            return None;
        }
    };
    let fail_fast = settings.fail_fast
        && {
            let allowed = has_net_admin();
            if !allowed {
                warn!(
                    "fail fast needs CAP_NET_ADMIN to abort waiting connects, and this process lacks it: fail fast is off (the observer still runs)"
                );
            }
            allowed
        };
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let (stop, stopped) = std::sync::mpsc::channel();
    let poller = Poller {
        diag,
        tracker: ConnectionTracker::new(settings.syn_retransmits),
        interval: settings.interval,
        syn_retransmits: settings.syn_retransmits,
        fail_fast,
        rechecks: Rechecks {
            feed: feed.clone(),
            runtime,
            tasks: Arc::new(Mutex::new(JoinSet::new())),
            active: Arc::new(Mutex::new(HashSet::new())),
        },
        feed,
        metrics,
        outbound_ports: ephemeral_ports(),
        watched_changes: None,
        addresses: HashSet::new(),
        filter: Filter::Nothing,
        sockets: Vec::new(),
        down_before: Vec::new(),
        failing: false,
    };
    let thread = std::thread::Builder::new()
        .name("observer".to_string())
        .spawn(move || poller.run(stopped));
    let thread = match thread {
        Ok(thread) => thread,
        Err(error) => {
            warn!(%error, "connection observer: cannot start its thread; off");
            return None;
        }
    };
    info!(
        interval_ms = settings.interval.as_millis(),
        syn_retransmits = settings.syn_retransmits,
        fail_fast,
        "connection observer: watching this machine's TCP connections to endpoint addresses"
    );
    Some(Observer { stop, thread })
}

/// The local ports connects are made from (`ip_local_port_range`). A socket to an endpoint
/// address from another local port is not an application's connect (a connection the endpoint
/// host opened to a service here, say) and is not observed.
fn ephemeral_ports() -> std::ops::RangeInclusive<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut numbers = text.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some(numbers.next()??..=numbers.next()??)
        });
    // Linux's default when the file cannot be read.
    range.unwrap_or(32_768..=60_999)
}

/// What to ask the kernel for.
#[derive(Debug)]
enum Filter {
    /// No endpoint address: no dump.
    Nothing,
    /// Sockets to the endpoint addresses, filtered in the kernel.
    Program(Vec<u8>),
    /// Too many addresses for a kernel program: every socket, filtered here.
    Everything,
}

struct Poller {
    diag: SockDiag,
    tracker: ConnectionTracker,
    interval: Duration,
    syn_retransmits: u8,
    fail_fast: bool,
    rechecks: Rechecks,
    feed: Feed,
    metrics: Metrics,
    outbound_ports: std::ops::RangeInclusive<u16>,
    /// The snapshot change count the filters were built for.
    watched_changes: Option<u64>,
    addresses: HashSet<IpAddr>,
    filter: Filter,
    sockets: Vec<DiagSocket>,
    /// Endpoints already down when the poll began (fail fast acts on those only).
    down_before: Vec<IpAddr>,
    /// Whether the last dump failed (logged once, until one works again).
    failing: bool,
}

impl Poller {
    fn run(mut self, stopped: Receiver<()>) {
        let mut wait = self.interval;
        // Stops when the `Observer` is dropped (the channel disconnects).
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
            self.poll();
            wait = next_wait(self.interval, !self.sockets.is_empty() || self.failing);
        }
        debug!("connection observer stopped");
    }

    fn refresh_filters(&mut self) {
        let changes = self.feed.snapshot().changes();
        if self.watched_changes == Some(changes) {
            return;
        }
        self.watched_changes = Some(changes);
        let snapshot = self.feed.snapshot().load();
        self.addresses = snapshot
            .zones
            .data()
            .names
            .iter()
            .flat_map(|name| name.endpoints.iter().map(|endpoint| endpoint.address))
            .collect();
        let addresses: Vec<IpAddr> = self.addresses.iter().copied().collect();
        self.filter = match destination_filter(&addresses) {
            Some(program) => Filter::Program(program),
            None if !addresses.is_empty() => {
                warn!(
                    addresses = addresses.len(),
                    "connection observer: too many endpoint addresses for a kernel filter; every socket is read and filtered here"
                );
                Filter::Everything
            }
            None => Filter::Nothing,
        };
    }

    fn poll(&mut self) {
        self.refresh_filters();
        if self.addresses.is_empty() {
            return;
        }
        self.sockets.clear();
        let states = (1u32 << TCP_ESTABLISHED) | (1u32 << TCP_SYN_SENT);
        let own = self.feed.own_connections();
        let program = match &self.filter {
            Filter::Nothing => return,
            Filter::Program(program) => Some(program.as_slice()),
            Filter::Everything => None,
        };
        let (addresses, sockets, outbound) =
            (&self.addresses, &mut self.sockets, &self.outbound_ports);
        // One walk of the kernel's table for both families.
        let result = self.diag.dump_tcp(states, program, |socket| {
            if addresses.contains(&socket.remote)
                && outbound.contains(&socket.local_port)
                && !own.contains(socket.local_port)
            {
                sockets.push(*socket);
            }
        });
        match (result, self.failing) {
            (Ok(()), true) => {
                info!("connection observer: reading sockets works again");
                self.failing = false;
            }
            (Err(error), failing) => {
                if !failing {
                    warn!(%error, "connection observer: cannot read the kernel's sockets");
                    self.failing = true;
                }
                // A dump cut short may still be running in the kernel, which refuses the next
                // one on this socket: start afresh.
                if let Ok(diag) = SockDiag::open() {
                    self.diag = diag;
                }
                return;
            }
            (Ok(()), false) => {}
        }
        let health = self.feed.health().clone();
        self.down_before.clear();
        for socket in &self.sockets {
            if socket.state == TCP_SYN_SENT && health.get(socket.remote).state() == State::Down {
                self.down_before.push(socket.remote);
            }
        }
        let observations = self.tracker.poll(&self.sockets);
        for observation in observations {
            let reported = self.feed.report(
                &ReportTarget::Address(observation.address),
                observation.outcome,
                observation.rtt,
                ReportSource::Observer,
            );
            if reported.is_ok() && observation.outcome == Outcome::Failure {
                self.rechecks
                    .start(SocketAddr::new(observation.address, observation.port));
            }
        }
        if self.fail_fast && !self.down_before.is_empty() {
            self.abort_waiting_connects();
        }
    }

    /// Fail fast: aborts the applications' connects whose SYN went unanswered to endpoints
    /// that were already down when this poll began (not on the strength of the very connect
    /// being aborted), when a name carrying the endpoint has another endpoint not down.
    fn abort_waiting_connects(&mut self) {
        let health = self.feed.health().clone();
        let snapshot = self.feed.snapshot().load();
        for socket in &self.sockets {
            if socket.state != TCP_SYN_SENT
                || socket.retransmits < self.syn_retransmits
                || !self.down_before.contains(&socket.remote)
                || health.get(socket.remote).state() != State::Down
            {
                continue;
            }
            let has_alternative = snapshot
                .zones
                .name_indexes_with_address(socket.remote)
                .iter()
                .filter_map(|&index| snapshot.zones.name(index))
                .any(|name| {
                    snapshot
                        .answer_order(name, &health)
                        .iter()
                        .any(|o| o.endpoint.address != socket.remote && o.state() != State::Down)
                });
            if !has_alternative {
                continue;
            }
            match self.diag.destroy(socket) {
                Ok(()) => {
                    self.metrics.aborted_connect();
                    info!(
                        address = %socket.remote,
                        port = socket.remote_port,
                        local_port = socket.local_port,
                        "fail fast: aborted a connect waiting on a down endpoint"
                    );
                }
                Err(error) => match error.raw_os_error() {
                    // Gone by itself in the meantime.
                    Some(errno) if errno == rustix::io::Errno::NOENT.raw_os_error() => {}
                    Some(errno)
                        if errno == rustix::io::Errno::PERM.raw_os_error()
                            || errno == rustix::io::Errno::OPNOTSUPP.raw_os_error() =>
                    {
                        warn!(%error, "fail fast: the kernel refuses to abort connects (it needs CAP_NET_ADMIN and a kernel with INET_DIAG_DESTROY); fail fast is off");
                        self.fail_fast = false;
                        return;
                    }
                    _ => {
                        warn!(%error, address = %socket.remote, "fail fast: could not abort a waiting connect");
                        // The reply may still be on its way: a fresh socket for the next poll.
                        if let Ok(diag) = SockDiag::open() {
                            self.diag = diag;
                        }
                        return;
                    }
                },
            }
        }
    }
}

/// The re-checks in progress: one task per (address, port) the observer saw fail.
struct Rechecks {
    feed: Feed,
    runtime: tokio::runtime::Handle,
    tasks: Arc<Mutex<JoinSet<()>>>,
    active: Arc<Mutex<HashSet<SocketAddr>>>,
}

impl Rechecks {
    fn start(&self, target: SocketAddr) {
        let Ok(mut active) = self.active.lock() else {
            return;
        };
        if !active.insert(target) {
            return;
        }
        drop(active);
        let Ok(mut tasks) = self.tasks.lock() else {
            return;
        };
        // Reap the finished ones.
        while tasks.try_join_next().is_some() {}
        tasks.spawn_on(
            recheck(target, self.feed.clone(), Arc::clone(&self.active)),
            &self.runtime,
        );
    }
}

/// Re-checks `target` with back-off until it answers or the endpoint is no longer down.
async fn recheck(target: SocketAddr, feed: Feed, active: Arc<Mutex<HashSet<SocketAddr>>>) {
    let mut wait = FIRST_RECHECK;
    loop {
        tokio::time::sleep(wait).await;
        let address = target.ip();
        if feed.health().get(address).state() != State::Down
            || !feed.snapshot().load().zones.is_endpoint_address(address)
        {
            break;
        }
        match feed
            .own_connections()
            .probe(target, RECHECK_TIMEOUT.min(wait))
            .await
        {
            Ok(rtt) => {
                info!(%target, rtt_ms = rtt.as_secs_f64() * 1000.0, "re-check: the endpoint answers again");
                let _ = feed.report(
                    &ReportTarget::Address(address),
                    Outcome::Success,
                    Some(rtt),
                    ReportSource::Recheck,
                );
                break;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(cookie: u64, last: u8, state: u8, retransmits: u8) -> DiagSocket {
        DiagSocket::for_tests(
            state,
            retransmits,
            SocketAddr::new(IpAddr::from([192, 0, 2, last]), 443),
            cookie,
            Some(Duration::from_millis(u64::from(last))),
        )
    }

    fn seen(tracker: &mut ConnectionTracker, sockets: &[DiagSocket]) -> Vec<String> {
        tracker
            .poll(sockets)
            .iter()
            .map(|o| format!("{:?} {} {:?}", o.outcome, o.address, o.rtt))
            .collect()
    }

    #[test]
    fn each_socket_counts_once_per_outcome_table() {
        let mut tracker = ConnectionTracker::new(1);
        let before_start = socket(9, 1, TCP_ESTABLISHED, 0);
        assert!(
            seen(&mut tracker, &[before_start]).is_empty(),
            "connections open before the first look are not news"
        );
        let established = socket(1, 1, TCP_ESTABLISHED, 0);
        let fresh_syn = socket(2, 2, TCP_SYN_SENT, 0);
        let waiting = socket(3, 2, TCP_SYN_SENT, 1);
        assert_eq!(
            seen(&mut tracker, &[before_start, established, fresh_syn]),
            ["Success 192.0.2.1 Some(1ms)"],
            "a SYN not retransmitted yet is no failure"
        );
        assert!(
            seen(&mut tracker, &[established, fresh_syn]).is_empty(),
            "the same connection is not counted twice"
        );
        assert_eq!(
            seen(&mut tracker, &[established, waiting]),
            ["Failure 192.0.2.2 None"]
        );
        let waiting_longer = socket(3, 2, TCP_SYN_SENT, 3);
        assert!(seen(&mut tracker, &[waiting_longer]).is_empty());
        let answered_late = socket(3, 2, TCP_ESTABLISHED, 0);
        assert_eq!(
            seen(&mut tracker, &[answered_late]),
            ["Success 192.0.2.2 Some(2ms)"],
            "the same socket completing after all is a success"
        );
        let again = socket(1, 1, TCP_ESTABLISHED, 0);
        assert_eq!(
            seen(&mut tracker, &[again]),
            ["Success 192.0.2.1 Some(1ms)"],
            "gone for a poll, then seen again: a new connection with a reused cookie is rare, but counts"
        );
    }

    #[test]
    fn looks_slow_down_only_while_no_endpoint_connection_exists_table() {
        let ms = Duration::from_millis;
        for (interval, busy, expected) in [
            (ms(250), true, ms(250)),
            (ms(250), false, ms(1000)),
            (ms(100), false, ms(1000)),
            (ms(2000), false, ms(2000)),
            (ms(2000), true, ms(2000)),
        ] {
            assert_eq!(next_wait(interval, busy), expected, "{interval:?} {busy}");
        }
    }

    #[test]
    fn one_report_per_address_and_a_completed_connection_wins() {
        let mut tracker = ConnectionTracker::new(2);
        assert!(seen(&mut tracker, &[]).is_empty());
        let sockets = [
            socket(12, 1, TCP_SYN_SENT, 2),
            socket(10, 1, TCP_ESTABLISHED, 0),
            socket(11, 1, TCP_ESTABLISHED, 0),
            socket(13, 3, TCP_SYN_SENT, 1),
            socket(14, 3, TCP_SYN_SENT, 5),
            socket(15, 3, TCP_SYN_SENT, 2),
        ];
        assert_eq!(
            seen(&mut tracker, &sockets),
            ["Success 192.0.2.1 Some(1ms)", "Failure 192.0.2.3 None"]
        );
    }
}
