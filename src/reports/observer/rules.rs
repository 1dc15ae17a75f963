//! What the kernel's view of one socket says about its path: the connection observer's rules,
//! as pure functions of the socket's `tcp_info` and the endpoint's recent RTTs, and the tracker
//! that applies them to successive dumps and to the kernel's announcements of destroyed
//! sockets, counting each socket once per outcome (once per stall for a session).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::health::Outcome;
use crate::reports::sock_diag::{DiagSocket, TCP_ESTABLISHED, TCP_SYN_SENT, TIMER_RETRANSMIT};

/// The shortest wait a connect is allowed before it counts as failed by its RTT (RFC 8305's
/// recommended connection attempt delay): a path that answers at all answers within it.
const CONNECT_FLOOR: Duration = Duration::from_millis(250);
/// The longest: by then the SYN has been retransmitted (the kernel's first RTO is 1 s).
const CONNECT_CEILING: Duration = Duration::from_secs(1);
/// Slack on top of twice the largest recent RTT, for a busy peer's accept queue and jitter.
const RTT_SLACK: Duration = Duration::from_millis(100);
/// The kernel's first SYN timeout (`TCP_TIMEOUT_INIT`): a retransmitted SYN waited this long.
const FIRST_SYN_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a connect to an endpoint whose recent RTTs peak at `max_rtt` may wait for its
/// SYN-ACK before it counts as failed: `clamp(2 × max_rtt + 100 ms, 250 ms, 1 s)`.
pub fn connect_deadline(max_rtt: Duration) -> Duration {
    (max_rtt * 2 + RTT_SLACK).clamp(CONNECT_FLOOR, CONNECT_CEILING)
}

/// How long an application must have waited on a connect before giving it up says the path is
/// failing: `min(2 × max_rtt + 100 ms, 1 s)`. No 250 ms floor here: the application already
/// decided to move on (libcurl does after 200 ms), and nothing is aborted on its strength; a
/// connect given up within twice the RTT (a client racing every address) says nothing.
pub fn abandon_deadline(max_rtt: Duration) -> Duration {
    (max_rtt * 2 + RTT_SLACK).min(CONNECT_CEILING)
}

/// How long a socket in SYN-SENT has waited, read from its retransmit timer while its first
/// SYN is unanswered (the timeout in force minus the time left); at least the first timeout
/// once the SYN was retransmitted; `None` when the dump carries no timer.
pub fn syn_age(socket: &DiagSocket) -> Option<Duration> {
    if socket.retransmits > 0 {
        return Some(FIRST_SYN_TIMEOUT);
    }
    (socket.timer == TIMER_RETRANSMIT && !socket.info.rto.is_zero())
        .then(|| socket.info.rto.saturating_sub(socket.expires))
}

/// What an established connection's `tcp_info` says about its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// Moving data, idle, or alive but not reading (zero window: its probes are answered).
    Healthy,
    /// Unacknowledged after a retransmission, or an unanswered keepalive: not yet a stall, so
    /// the observer looks again soon.
    Suspect,
    /// Data unacknowledged after `stall_retransmits` retransmissions in a row, or two
    /// keepalives unanswered: the path is dead.
    Stalled,
}

/// Judges an established connection. Only data in flight that goes unacknowledged, or
/// keepalives that go unanswered, count: a peer that stopped reading answers its zero-window
/// probes (data waits unsent, nothing in flight), and an idle connection or a slow server only
/// age `tcpi_last_ack_recv`. Keepalives are sent only with nothing in flight or queued, which
/// tells their probes from zero-window ones.
pub fn session(socket: &DiagSocket, stall_retransmits: u8) -> Session {
    let in_flight = socket.info.unacked > 0;
    let keepalive_only = !in_flight && socket.info.notsent == 0;
    if (in_flight && socket.retransmits >= stall_retransmits)
        || (keepalive_only && socket.info.probes >= 2)
    {
        Session::Stalled
    } else if (in_flight && socket.retransmits >= 1) || (keepalive_only && socket.info.probes >= 1)
    {
        Session::Suspect
    } else {
        Session::Healthy
    }
}

/// What became of a path, and how it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A connect completed.
    Connected,
    /// A connection that completed and carried data closed (announced when destroyed).
    Closed,
    /// A connect waited past its deadline (retransmitted SYNs, or the RTT rule).
    ConnectTimedOut,
    /// An application gave up a connect that had waited past the abandon deadline.
    Abandoned,
    /// An established session stalled.
    Stalled,
}

impl Seen {
    /// The outcome this counts as.
    pub fn outcome(self) -> Outcome {
        match self {
            Seen::Connected | Seen::Closed => Outcome::Success,
            Seen::ConnectTimedOut | Seen::Abandoned | Seen::Stalled => Outcome::Failure,
        }
    }

    /// For logs.
    pub fn label(self) -> &'static str {
        match self {
            Seen::Connected => "connected",
            Seen::Closed => "closed after carrying data",
            Seen::ConnectTimedOut => "connect unanswered",
            Seen::Abandoned => "connect given up unanswered",
            Seen::Stalled => "session stalled",
        }
    }
}

/// One thing the observer saw of one connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// The endpoint address.
    pub address: IpAddr,
    /// The connection's remote port (for failures: the port to re-check).
    pub port: u16,
    /// What was seen.
    pub seen: Seen,
    /// The connection's RTT, for successes.
    pub rtt: Option<Duration>,
}

impl Observation {
    /// What `socket` was `seen` doing; the RTT goes with successes only.
    fn of(socket: &DiagSocket, seen: Seen) -> Observation {
        Observation {
            address: socket.remote,
            port: socket.remote_port,
            seen,
            rtt: match seen.outcome() {
                Outcome::Success => socket.rtt,
                Outcome::Failure => None,
            },
        }
    }

    /// Success or failure.
    pub fn outcome(&self) -> Outcome {
        self.seen.outcome()
    }
}

/// The thresholds the rules take from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// SYN retransmissions after which a connect counts as failed whatever the RTT history.
    pub syn_retransmits: u8,
    /// Retransmissions in a row of data in flight after which a session counts as stalled.
    pub stall_retransmits: u8,
}

/// What the tracker remembers of one socket.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    /// When its connect started (estimated from the retransmit timer when first seen).
    connect_started: Option<Instant>,
    /// Its success was counted (or it was open before the first look).
    success_counted: bool,
    /// Its connect's failure, or its current stall, was counted.
    failure_counted: bool,
    /// Whether it meets a failure rule now (a connect past its deadline, a stalled session).
    failing: bool,
    /// The dump it was last seen in.
    last_dump: u64,
}

/// How many dumps a socket may be missing from before it is forgotten (its destroy
/// announcement, read before each dump, has normally removed it already).
const FORGET_AFTER_DUMPS: u64 = 2;

/// Turns dumps and destroy announcements into observations, each socket counted once per
/// outcome. Its map and buffer are reused: no allocation in the steady state.
#[derive(Debug)]
pub struct ConnectionTracker {
    thresholds: Thresholds,
    /// Whether a dump has been seen: connections already established at the first dump are
    /// remembered, not reported (they say nothing about the paths now).
    primed: bool,
    dumps: u64,
    sockets: HashMap<u64, Tracked>,
    observations: Vec<Observation>,
    /// After the last dump: the soonest a connect still waiting reaches its deadline.
    next_deadline: Option<Duration>,
    /// After the last dump: whether something is outstanding (a connect waiting, a session
    /// suspect or stalled), so the observer keeps looking at its fast rate.
    outstanding: bool,
}

impl ConnectionTracker {
    /// A tracker applying `thresholds`.
    pub fn new(thresholds: Thresholds) -> Self {
        ConnectionTracker {
            thresholds,
            primed: false,
            dumps: 0,
            sockets: HashMap::new(),
            observations: Vec::new(),
            next_deadline: None,
            outstanding: false,
        }
    }

    /// The observations of one dump taken at `now` that saw `sockets` (the applications'
    /// sockets to endpoint addresses); `max_rtt` gives an endpoint's largest recent RTT, if it
    /// has any history.
    pub fn dump(
        &mut self,
        sockets: &[DiagSocket],
        now: Instant,
        max_rtt: impl Fn(IpAddr) -> Option<Duration>,
    ) -> &[Observation] {
        self.observations.clear();
        self.dumps += 1;
        self.next_deadline = None;
        self.outstanding = false;
        let primed = self.primed;
        for socket in sockets {
            let fresh = !self.sockets.contains_key(&socket.cookie);
            let tracked = self.sockets.entry(socket.cookie).or_insert(Tracked {
                connect_started: None,
                success_counted: false,
                failure_counted: false,
                failing: false,
                last_dump: 0,
            });
            tracked.last_dump = self.dumps;
            tracked.failing = false;
            let seen = match socket.state {
                TCP_ESTABLISHED => {
                    let mut seen = None;
                    if !tracked.success_counted {
                        tracked.success_counted = true;
                        // Open before the first look: not news.
                        if primed || !fresh {
                            seen = Some(Seen::Connected);
                        }
                    }
                    match session(socket, self.thresholds.stall_retransmits) {
                        Session::Stalled => {
                            // Fail fast aborts a stall with data in flight only: an unanswered
                            // keepalive is a failure, but nothing waits on it.
                            tracked.failing = socket.info.unacked > 0;
                            self.outstanding = true;
                            if !tracked.failure_counted {
                                tracked.failure_counted = true;
                                seen = Some(Seen::Stalled);
                            }
                        }
                        Session::Suspect => self.outstanding = true,
                        // Acknowledged again: a later stall counts anew.
                        Session::Healthy => tracked.failure_counted = false,
                    }
                    seen
                }
                TCP_SYN_SENT => {
                    let age = syn_age(socket);
                    if tracked.connect_started.is_none() {
                        tracked.connect_started = Some(
                            now.checked_sub(age.unwrap_or(Duration::ZERO))
                                .unwrap_or(now),
                        );
                    }
                    let waited = tracked.connect_started.map_or(Duration::ZERO, |started| {
                        now.saturating_duration_since(started)
                    });
                    let deadline = max_rtt(socket.remote).map(connect_deadline);
                    let timed_out = socket.retransmits >= self.thresholds.syn_retransmits
                        || deadline.is_some_and(|deadline| waited >= deadline);
                    self.outstanding = true;
                    if timed_out {
                        tracked.failing = true;
                        (!std::mem::replace(&mut tracked.failure_counted, true))
                            .then_some(Seen::ConnectTimedOut)
                    } else {
                        if let Some(deadline) = deadline {
                            let left = deadline.saturating_sub(waited);
                            self.next_deadline =
                                Some(self.next_deadline.map_or(left, |soonest| soonest.min(left)));
                        }
                        None
                    }
                }
                _ => None,
            };
            if let Some(seen) = seen {
                self.observations.push(Observation::of(socket, seen));
            }
        }
        let dumps = self.dumps;
        self.sockets
            .retain(|_, tracked| dumps - tracked.last_dump <= FORGET_AFTER_DUMPS);
        self.primed = true;
        &self.observations
    }

    /// What the destroyed `socket`'s final `tcp_info` says, announced at `now`: a connect
    /// nobody answered that an application gave up after waiting past its abandon deadline (or
    /// whose SYN was retransmitted), a session that ended stalled, or a connection that carried
    /// data and ended cleanly. Each at most once per socket, counting what its dumps already
    /// counted. The kernel announces a socket after purging its queues (`tcpi_unacked` reads 0),
    /// so a stall shows in the retransmissions that survive the purge, and a socket that ended
    /// retransmitting or probing (an orphan giving up on a dead path) is no success.
    pub fn destroyed(
        &mut self,
        socket: &DiagSocket,
        now: Instant,
        max_rtt: Option<Duration>,
    ) -> Option<Observation> {
        let tracked = self.sockets.remove(&socket.cookie);
        let failure_counted = tracked.is_some_and(|t| t.failure_counted);
        let success_counted = tracked.is_some_and(|t| t.success_counted);
        let seen = if socket.info.segs_in == 0 {
            // Never answered: no SYN-ACK, nothing at all.
            let waited = tracked
                .and_then(|t| t.connect_started)
                .map(|started| now.saturating_duration_since(started));
            let gave_up_late = match (waited, max_rtt) {
                (Some(waited), Some(rtt)) => waited >= abandon_deadline(rtt),
                _ => false,
            };
            let retransmitted =
                socket.info.total_retrans >= u32::from(self.thresholds.syn_retransmits);
            (!failure_counted && (gave_up_late || retransmitted)).then_some(Seen::Abandoned)
        } else if socket.retransmits >= self.thresholds.stall_retransmits
            || (socket.info.notsent == 0 && socket.info.probes >= 2)
        {
            (!failure_counted).then_some(Seen::Stalled)
        } else if socket.retransmits == 0
            && socket.info.probes == 0
            && socket.info.notsent == 0
            && (socket.info.bytes_acked > 0 || socket.info.bytes_received > 0)
        {
            (!success_counted).then_some(Seen::Closed)
        } else {
            None
        }?;
        Some(Observation::of(socket, seen))
    }

    /// Whether the socket `cookie` met a failure rule in the last dump (fail fast acts on
    /// those only).
    pub fn is_failing(&self, cookie: u64) -> bool {
        self.sockets.get(&cookie).is_some_and(|t| t.failing)
    }

    /// After the last dump: the soonest a connect still waiting reaches its deadline.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.next_deadline
    }

    /// After the last dump: whether a connect is waiting or a session is suspect or stalled.
    pub fn outstanding(&self) -> bool {
        self.outstanding
    }
}

/// Keeps at most one observation per address, a success when some connection to it worked
/// (the path works, whatever else waits), else its first failure. Order is kept.
pub fn one_per_address(observations: &mut Vec<Observation>) {
    let mut kept: Vec<Observation> = Vec::with_capacity(observations.len());
    for observation in observations.drain(..) {
        match kept.iter_mut().find(|o| o.address == observation.address) {
            Some(existing) => {
                if existing.outcome() == Outcome::Failure
                    && observation.outcome() == Outcome::Success
                {
                    *existing = observation;
                } else if existing.outcome() == observation.outcome() {
                    existing.rtt = existing.rtt.or(observation.rtt);
                }
            }
            None => kept.push(observation),
        }
    }
    *observations = kept;
}
