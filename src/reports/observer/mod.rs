//! The connection observer: failover with no agent. It asks the kernel (`sock_diag`) for this
//! network namespace's TCP sockets to endpoint addresses and listens to its announcements of
//! destroyed sockets, and turns what the applications' own connections did into reports with
//! source `observer` (the rules are in `rules`):
//! - a connect still in SYN-SENT past its deadline (twice the endpoint's largest recent RTT
//!   plus 100 ms, 250 ms to 1 s; with no RTT history, `syn_retransmits` SYN retransmissions)
//!   is a failure, and so is one an application gave up after waiting that long;
//! - an established session whose data in flight went unacknowledged for `stall_retransmits`
//!   retransmissions in a row, or whose keepalives went unanswered, is a failure;
//! - a connection that completed is a success, with the RTT from `tcp_info`, and so is one that
//!   carried data and closed between two looks.
//!
//! A failure counts against the endpoint only when the port it happened on is one applications
//! use, or no port of the address works (`evidence`). The server's own connections (probes,
//! re-checks) are left out by their registered local port. An endpoint seen failing is
//! re-checked (`recheck`).
//!
//! When it looks: once a second while nothing is going on; every poll interval while a
//! connect waits or a session looks stalled (at a waiting connect's deadline, if sooner); and
//! right after an endpoint name was answered, when a connect is about to start.
//!
//! With fail fast (CAP_NET_ADMIN), sockets of applications that meet a failure rule (a connect
//! past its deadline, a stalled session) to an endpoint that is down are aborted
//! (`SOCK_DESTROY`) when a name carrying the endpoint has another endpoint that is not down:
//! the application's connect or read fails at once and it moves on, re-resolving. Nothing that
//! moves data, nothing on a path that is up or unknown, nothing with nowhere else to go.

mod evidence;
mod recheck;
mod rules;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::config::settings::ObserveSettings;
use crate::health::{Outcome, ReportSource, State};
use crate::metrics::{AbortedState, Metrics};
use crate::reports::sock_diag::{
    DestroyedSockets, DiagSocket, SockDiag, TCP_ESTABLISHED, TCP_SYN_SENT, destination_filter,
    has_net_admin,
};
use crate::reports::{ReportTarget, Reports};

use evidence::Evidence;
use recheck::Rechecks;
use rules::{ConnectionTracker, Observation, Thresholds};

/// The longest wait between two looks while nothing is outstanding. A connect that is going
/// to fail without RTT history stays in SYN-SENT for a second before its first
/// retransmission, and a stalled session needs more than a second to stall, so a look at
/// least every second sees either in time and switches to the poll interval.
const IDLE_INTERVAL: Duration = Duration::from_secs(1);
/// How often the thread wakes between looks: to read the destroy announcements, to notice an
/// answered endpoint name, and to stop.
const WAKE: Duration = Duration::from_millis(50);
/// After an endpoint name was answered, the look that finds the connect it leads to: soon,
/// but late enough for the connect to have started.
const AFTER_ANSWER: Duration = Duration::from_millis(20);
/// The least time between two looks that answered names ask for: a steady stream of answers
/// makes the observer look at most about seven times a second, and a connect that follows an
/// answer is still seen waiting before a client that staggers its attempts (after 200 ms, as
/// libcurl does) gives it up.
const ANSWER_LOOK_GAP: Duration = Duration::from_millis(150);
/// After an endpoint went down, with fail fast on: the look that aborts what waits on it.
const ABORT_FOLLOW_UP: Duration = Duration::from_millis(20);
/// The soonest a look can follow another, whatever asks.
const MIN_GAP: Duration = Duration::from_millis(10);
/// Fail fast aborts at most this many sockets per endpoint per second.
const MAX_ABORTS_PER_SECOND: u32 = 64;

/// The wait before the next look after one: the poll interval while something is outstanding
/// (or the last look failed), sooner when a waiting connect reaches its deadline first, else
/// up to [`IDLE_INTERVAL`] (never shorter than the interval itself).
fn next_wait(interval: Duration, outstanding: bool, next_deadline: Option<Duration>) -> Duration {
    let wait = if outstanding {
        interval
    } else {
        interval.max(IDLE_INTERVAL)
    };
    next_deadline.map_or(wait, |deadline| wait.min(deadline.max(MIN_GAP)))
}

/// The running observer. [`Observer::stop`] stops it and waits for its thread; dropping it
/// stops it without waiting (within [`WAKE`]), along with its re-checks.
#[derive(Debug)]
pub struct Observer {
    stop: Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Observer {
    /// Stops the observer and waits until its thread and every re-check are gone, so nothing
    /// it reports lands after this returns.
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// Starts the observer on a thread of its own, as `settings` say, reporting into `reports`;
/// `None` (with a log line saying why) when it is off or cannot run.
pub fn start(settings: &ObserveSettings, reports: Reports, metrics: Metrics) -> Option<Observer> {
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
    let privileged = has_net_admin();
    let fail_fast = settings.fail_fast
        && {
            if !privileged {
                warn!(
                    "fail fast needs CAP_NET_ADMIN to abort connects and sessions, and this process lacks it: fail fast is off (the observer still runs)"
                );
            }
            privileged
        };
    let destroyed = match DestroyedSockets::open() {
        Ok(destroyed) => Some(destroyed),
        Err(error) => {
            info!(
                %error,
                "connection observer: cannot hear of closed connections; connections that open and close between two looks, and connects given up early, go unseen"
            );
            None
        }
    };
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let (stop, stopped) = std::sync::mpsc::channel();
    let thresholds = Thresholds {
        syn_retransmits: settings.syn_retransmits,
        stall_retransmits: settings.stall_retransmits,
    };
    let listening = destroyed.is_some();
    let poller = Poller {
        diag,
        destroyed,
        tracker: ConnectionTracker::new(thresholds),
        evidence: Evidence::default(),
        interval: settings.interval,
        fail_fast,
        rechecks: Rechecks::new(reports.clone(), runtime),
        reports,
        metrics,
        outbound_ports: ephemeral_ports(),
        watched_changes: None,
        addresses: HashSet::new(),
        filter: Filter::Nothing,
        sockets: Vec::new(),
        observations: Vec::new(),
        down_before: HashSet::new(),
        aborts: HashMap::new(),
        failing: false,
        went_down: false,
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
        stall_retransmits = settings.stall_retransmits,
        fail_fast,
        closed_connections = listening,
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

/// The kernel's filter runs every condition for every socket, so its cost grows with the number
/// of endpoint addresses (with 10,000 unrelated sockets and four looks a second, 51.5 % of a
/// core at 3,000 addresses), while reading every socket and looking each up here costs about the
/// same whatever the number (5.9 % at 3,300). The two cross near 300 addresses.
const MAX_FILTERED_ADDRESSES: usize = 256;

/// The cheaper way to find the sockets to `addresses`.
fn filter_for(addresses: &[IpAddr]) -> Filter {
    let program = (addresses.len() <= MAX_FILTERED_ADDRESSES)
        .then(|| destination_filter(addresses))
        .flatten();
    match program {
        Some(program) => Filter::Program(program),
        None if !addresses.is_empty() => Filter::Everything,
        None => Filter::Nothing,
    }
}

struct Poller {
    diag: SockDiag,
    destroyed: Option<DestroyedSockets>,
    tracker: ConnectionTracker,
    evidence: Evidence,
    interval: Duration,
    fail_fast: bool,
    rechecks: Rechecks,
    reports: Reports,
    metrics: Metrics,
    outbound_ports: std::ops::RangeInclusive<u16>,
    /// The snapshot change count the filters were built for.
    watched_changes: Option<u64>,
    addresses: HashSet<IpAddr>,
    filter: Filter,
    sockets: Vec<DiagSocket>,
    observations: Vec<Observation>,
    /// Endpoints already down when the look began (fail fast acts on those only, never on
    /// the strength of the very socket it would abort).
    down_before: HashSet<IpAddr>,
    /// Per endpoint: the second the aborts are counted in, and how many so far.
    aborts: HashMap<IpAddr, (Instant, u32)>,
    /// Whether the last dump failed (logged once, until one works again).
    failing: bool,
    /// Whether an endpoint went down since the last look.
    went_down: bool,
}

impl Poller {
    fn run(mut self, stopped: Receiver<()>) {
        let mut next_look = Instant::now() + self.interval;
        let mut last_look = Instant::now();
        loop {
            let now = Instant::now();
            if self.reports.health().take_answered() {
                let soon = (now + AFTER_ANSWER).max(last_look + ANSWER_LOOK_GAP);
                next_look = next_look.min(soon);
            }
            if now >= next_look {
                self.look(now);
                last_look = now;
                let wait = if self.fail_fast && std::mem::take(&mut self.went_down) {
                    ABORT_FOLLOW_UP
                } else {
                    next_wait(
                        self.interval,
                        self.tracker.outstanding() || self.failing,
                        self.tracker.next_deadline(),
                    )
                };
                next_look = Instant::now() + wait;
            }
            let wait = next_look
                .saturating_duration_since(Instant::now())
                .min(WAKE);
            if self.wait_for_announcements(wait, &stopped) {
                break;
            }
        }
        self.rechecks.stop();
        debug!("connection observer stopped");
    }

    /// Waits up to `wait`, handling the destroy announcements that arrive meanwhile. Returns
    /// whether the observer was told to stop.
    fn wait_for_announcements(&mut self, wait: Duration, stopped: &Receiver<()>) -> bool {
        let Some(destroyed) = &self.destroyed else {
            return !matches!(stopped.recv_timeout(wait), Err(RecvTimeoutError::Timeout));
        };
        let timeout = rustix::event::Timespec::try_from(wait).unwrap_or_default();
        let fd = destroyed.fd();
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let polled = rustix::event::poll(&mut fds, Some(&timeout));
        match polled {
            Ok(ready) if ready > 0 => self.read_announcements(),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(error) => {
                warn!(%error, "connection observer: cannot wait for closed connections; looking only");
                self.destroyed = None;
            }
        }
        !matches!(stopped.try_recv(), Err(TryRecvError::Empty))
    }

    fn read_announcements(&mut self) {
        let Some(destroyed) = &mut self.destroyed else {
            return;
        };
        self.sockets.clear();
        let (addresses, sockets, outbound) =
            (&self.addresses, &mut self.sockets, &self.outbound_ports);
        let own = self.reports.own_connections();
        let result = destroyed.drain(|socket| {
            if addresses.contains(&socket.remote)
                && outbound.contains(&socket.local_port)
                && !own.contains(socket.local_port)
            {
                sockets.push(*socket);
            }
        });
        match result {
            Ok(false) => {}
            Ok(true) => {
                debug!("connection observer: some closed connections were missed (queue full)")
            }
            Err(error) => {
                warn!(%error, "connection observer: cannot read closed connections; looking only");
                self.destroyed = None;
            }
        }
        let now = Instant::now();
        self.observations.clear();
        for socket in &self.sockets {
            let max_rtt = self.evidence.max_rtt(socket.remote, now);
            if let Some(observation) = self.tracker.destroyed(socket, now, max_rtt) {
                self.observations.push(observation);
            }
        }
        self.report_observations(now);
    }

    fn refresh_filters(&mut self) {
        let changes = self.reports.snapshot().changes();
        if self.watched_changes == Some(changes) {
            return;
        }
        self.watched_changes = Some(changes);
        let snapshot = self.reports.snapshot().load();
        self.addresses = snapshot
            .zones
            .data()
            .names
            .iter()
            .flat_map(|name| name.endpoints.iter().map(|endpoint| endpoint.address))
            .collect();
        let addresses: Vec<IpAddr> = self.addresses.iter().copied().collect();
        self.filter = filter_for(&addresses);
        if matches!(self.filter, Filter::Everything) {
            debug!(
                addresses = addresses.len(),
                "connection observer: many endpoint addresses; every socket is read and filtered here"
            );
        }
    }

    /// One look at the kernel's sockets at `now`.
    fn look(&mut self, now: Instant) {
        self.refresh_filters();
        if self.addresses.is_empty() {
            return;
        }
        self.sockets.clear();
        let states = (1u32 << TCP_ESTABLISHED) | (1u32 << TCP_SYN_SENT);
        let own = self.reports.own_connections();
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
        let health = self.reports.health().clone();
        self.down_before.clear();
        for socket in &self.sockets {
            if health.get(socket.remote).state() == State::Down {
                self.down_before.insert(socket.remote);
            }
        }
        let evidence = &self.evidence;
        let observations = self
            .tracker
            .dump(&self.sockets, now, |address| evidence.max_rtt(address, now));
        self.observations.clear();
        self.observations.extend_from_slice(observations);
        tracing::trace!(
            sockets = self.sockets.len(),
            observations = self.observations.len(),
            outstanding = self.tracker.outstanding(),
            "connection observer: looked"
        );
        self.report_observations(now);
        if self.fail_fast && !self.down_before.is_empty() {
            self.abort_failing_sockets(now);
        }
    }

    /// Weighs `self.observations` against the per-port evidence and reports what counts, at
    /// most one report per address.
    fn report_observations(&mut self, now: Instant) {
        let evidence = &mut self.evidence;
        self.observations.retain(|observation| {
            let target = SocketAddr::new(observation.address, observation.port);
            match observation.outcome() {
                Outcome::Success => {
                    evidence.success(target, observation.rtt, now);
                    true
                }
                Outcome::Failure => {
                    let counts = evidence.failure(target, now);
                    if !counts {
                        debug!(%target, seen = observation.seen.label(), "connection observer: a failure on a port no application uses while another port works; not the endpoint's");
                    }
                    counts
                }
            }
        });
        rules::one_per_address(&mut self.observations);
        for observation in &self.observations {
            let reported = self.reports.report(
                &ReportTarget::Address(observation.address),
                observation.outcome(),
                observation.rtt,
                ReportSource::Observer,
            );
            let Ok(results) = reported else {
                continue;
            };
            if observation.outcome() == Outcome::Failure {
                // A look soon after, to abort what waits on an endpoint that just went down.
                self.went_down |= results
                    .iter()
                    .any(|r| r.previous != State::Down && r.state == State::Down);
                debug!(address = %observation.address, port = observation.port, seen = observation.seen.label(), "connection observer: failure");
                self.rechecks
                    .start(SocketAddr::new(observation.address, observation.port));
            }
        }
    }

    /// Fail fast: aborts the applications' sockets that meet a failure rule (a connect past its
    /// deadline, a stalled session) to endpoints that were already down when this look began,
    /// when a name carrying the endpoint has another endpoint not down. At most
    /// [`MAX_ABORTS_PER_SECOND`] per endpoint.
    fn abort_failing_sockets(&mut self, now: Instant) {
        let health = self.reports.health().clone();
        let snapshot = self.reports.snapshot().load();
        for index in 0..self.sockets.len() {
            let socket = self.sockets[index];
            let state = match socket.state {
                TCP_SYN_SENT => AbortedState::SynSent,
                TCP_ESTABLISHED => AbortedState::Established,
                _ => continue,
            };
            if !self.tracker.is_failing(socket.cookie)
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
            let (window, count) = self.aborts.entry(socket.remote).or_insert((now, 0));
            if now.saturating_duration_since(*window) >= Duration::from_secs(1) {
                (*window, *count) = (now, 0);
            }
            if *count >= MAX_ABORTS_PER_SECOND {
                continue;
            }
            *count += 1;
            match self.diag.destroy(&socket) {
                Ok(()) => {
                    self.metrics.aborted_connect(state);
                    match state {
                        AbortedState::SynSent => info!(
                            address = %socket.remote,
                            port = socket.remote_port,
                            local_port = socket.local_port,
                            "fail fast: aborted a connect waiting on a down endpoint"
                        ),
                        AbortedState::Established => info!(
                            address = %socket.remote,
                            port = socket.remote_port,
                            local_port = socket.local_port,
                            unacked = socket.info.unacked,
                            retransmits = socket.retransmits,
                            "fail fast: aborted a session stalled on a down endpoint"
                        ),
                    }
                }
                Err(error) => match error.raw_os_error() {
                    // Gone by itself in the meantime.
                    Some(errno) if errno == rustix::io::Errno::NOENT.raw_os_error() => {}
                    Some(errno)
                        if errno == rustix::io::Errno::PERM.raw_os_error()
                            || errno == rustix::io::Errno::OPNOTSUPP.raw_os_error() =>
                    {
                        warn!(%error, "fail fast: the kernel refuses to abort sockets (it needs CAP_NET_ADMIN and a kernel with INET_DIAG_DESTROY); fail fast is off, the observer goes on");
                        self.fail_fast = false;
                        return;
                    }
                    _ => {
                        warn!(%error, address = %socket.remote, "fail fast: could not abort a socket");
                        // The reply may still be on its way: a fresh socket for the next look.
                        if let Ok(diag) = SockDiag::open() {
                            self.diag = diag;
                        }
                        return;
                    }
                },
            }
        }
        let window_over = |(window, _): &(Instant, u32)| {
            now.saturating_duration_since(*window) < Duration::from_secs(1)
        };
        self.aborts.retain(|_, entry| window_over(entry));
    }
}

#[cfg(test)]
mod tests;
