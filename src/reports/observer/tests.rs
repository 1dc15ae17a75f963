//! The observer's rules as tables: what each socket the kernel shows counts as.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::rules::{
    ConnectionTracker, Session, Thresholds, abandon_deadline, connect_deadline, one_per_address,
    session, syn_age,
};
use super::{Filter, MAX_FILTERED_ADDRESSES, filter_for, next_wait};
use crate::reports::sock_diag::{
    DiagSocket, TCP_CLOSE, TCP_ESTABLISHED, TCP_SYN_SENT, TIMER_RETRANSMIT,
};

const THRESHOLDS: Thresholds = Thresholds {
    syn_retransmits: 1,
    stall_retransmits: 3,
};

fn ms(milliseconds: u64) -> Duration {
    Duration::from_millis(milliseconds)
}

fn socket(cookie: u64, last: u8, state: u8, retransmits: u8) -> DiagSocket {
    DiagSocket::for_tests(
        state,
        retransmits,
        SocketAddr::new(IpAddr::from([192, 0, 2, last]), 443),
        cookie,
        Some(ms(u64::from(last))),
    )
}

/// A connect whose first SYN has waited `waited` (its timer shows the time left of 1 s).
fn waiting(cookie: u64, last: u8, waited: Duration) -> DiagSocket {
    let mut socket = socket(cookie, last, TCP_SYN_SENT, 0);
    socket.timer = TIMER_RETRANSMIT;
    socket.info.rto = Duration::from_secs(1);
    socket.expires = Duration::from_secs(1) - waited;
    socket.rtt = None;
    socket
}

fn dumped(
    tracker: &mut ConnectionTracker,
    sockets: &[DiagSocket],
    now: Instant,
    max_rtt: Option<Duration>,
) -> Vec<String> {
    tracker
        .dump(sockets, now, |_| max_rtt)
        .iter()
        .map(|o| format!("{} {} {:?}", o.seen.label(), o.address, o.rtt))
        .collect()
}

#[test]
fn each_socket_counts_once_per_outcome_table() {
    let now = Instant::now();
    let mut tracker = ConnectionTracker::new(THRESHOLDS);
    let before_start = socket(9, 1, TCP_ESTABLISHED, 0);
    assert!(
        dumped(&mut tracker, &[before_start], now, None).is_empty(),
        "connections open before the first look are not news"
    );
    let established = socket(1, 1, TCP_ESTABLISHED, 0);
    let fresh_syn = socket(2, 2, TCP_SYN_SENT, 0);
    let retransmitted = socket(3, 2, TCP_SYN_SENT, 1);
    assert_eq!(
        dumped(
            &mut tracker,
            &[before_start, established, fresh_syn],
            now,
            None
        ),
        ["connected 192.0.2.1 Some(1ms)"],
        "a SYN not retransmitted yet is no failure without RTT history"
    );
    assert!(
        dumped(&mut tracker, &[established, fresh_syn], now, None).is_empty(),
        "the same connection is not counted twice"
    );
    assert_eq!(
        dumped(&mut tracker, &[established, retransmitted], now, None),
        ["connect unanswered 192.0.2.2 None"]
    );
    let mut waiting_longer = retransmitted;
    waiting_longer.retransmits = 3;
    assert!(dumped(&mut tracker, &[waiting_longer], now, None).is_empty());
    let answered_late = socket(3, 2, TCP_ESTABLISHED, 0);
    assert_eq!(
        dumped(&mut tracker, &[answered_late], now, None),
        ["connected 192.0.2.2 Some(2ms)"],
        "the same socket completing after all is a success"
    );
}

#[test]
fn a_connect_fails_by_the_endpoints_rtt_table() {
    for (max_rtt, deadline) in [
        (ms(0), ms(250)),
        (ms(20), ms(250)),
        (ms(100), ms(300)),
        (ms(300), ms(700)),
        (ms(2000), ms(1000)),
    ] {
        assert_eq!(connect_deadline(max_rtt), deadline, "{max_rtt:?}");
    }
    for (max_rtt, deadline) in [(ms(0), ms(100)), (ms(50), ms(200)), (ms(900), ms(1000))] {
        assert_eq!(abandon_deadline(max_rtt), deadline, "{max_rtt:?}");
    }
    let now = Instant::now();
    for (waited, max_rtt, failed, why) in [
        (ms(100), Some(ms(1)), false, "before the deadline"),
        (ms(260), Some(ms(1)), true, "past 250 ms on a fast path"),
        (
            ms(260),
            Some(ms(100)),
            false,
            "a slower path has until 300 ms",
        ),
        (ms(320), Some(ms(100)), true, "and fails after"),
        (
            ms(900),
            None,
            false,
            "no history: only a retransmitted SYN counts",
        ),
    ] {
        let mut tracker = ConnectionTracker::new(THRESHOLDS);
        let seen = dumped(&mut tracker, &[waiting(1, 2, waited)], now, max_rtt);
        assert_eq!(!seen.is_empty(), failed, "{why}: {seen:?}");
        assert_eq!(tracker.is_failing(1), failed, "{why}");
        assert!(tracker.outstanding(), "{why}: a connect waits");
    }
    let mut tracker = ConnectionTracker::new(THRESHOLDS);
    dumped(&mut tracker, &[waiting(1, 2, ms(100))], now, Some(ms(1)));
    assert_eq!(
        tracker.next_deadline(),
        Some(ms(150)),
        "the next look is due when the connect reaches its deadline"
    );
    assert_eq!(
        dumped(
            &mut tracker,
            &[waiting(1, 2, ms(100))],
            now + ms(150),
            Some(ms(1))
        ),
        ["connect unanswered 192.0.2.2 None"],
        "the age is kept from the first sight, not read again"
    );
    let mut no_timer = waiting(2, 2, ms(100));
    no_timer.timer = 0;
    assert_eq!(syn_age(&no_timer), None);
    assert_eq!(syn_age(&waiting(2, 2, ms(100))), Some(ms(100)));
}

#[test]
fn only_unacknowledged_data_or_unanswered_keepalives_stall_a_session_table() {
    let base = socket(1, 1, TCP_ESTABLISHED, 0);
    let with = |unacked: u32, retransmits: u8, probes: u8, notsent: u32| {
        let mut socket = base;
        (
            socket.info.unacked,
            socket.retransmits,
            socket.info.probes,
            socket.info.notsent,
        ) = (unacked, retransmits, probes, notsent);
        socket
    };
    for (socket, expected, why) in [
        (with(0, 0, 0, 0), Session::Healthy, "idle"),
        (
            with(4, 0, 0, 0),
            Session::Healthy,
            "data in flight, acknowledged so far",
        ),
        (with(4, 1, 0, 0), Session::Suspect, "one retransmission"),
        (with(4, 2, 0, 0), Session::Suspect, "two"),
        (with(4, 3, 0, 0), Session::Stalled, "three in a row"),
        (
            with(0, 0, 3, 4096),
            Session::Healthy,
            "zero window: probes answered, data waits unsent",
        ),
        (
            with(0, 0, 1, 0),
            Session::Suspect,
            "one keepalive unanswered",
        ),
        (
            with(0, 0, 2, 0),
            Session::Stalled,
            "two keepalives unanswered",
        ),
    ] {
        assert_eq!(session(&socket, 3), expected, "{why}");
    }
    let now = Instant::now();
    let mut tracker = ConnectionTracker::new(THRESHOLDS);
    dumped(&mut tracker, &[], now, None);
    assert_eq!(
        dumped(&mut tracker, &[with(0, 0, 0, 0)], now, None),
        ["connected 192.0.2.1 Some(1ms)"]
    );
    assert!(dumped(&mut tracker, &[with(4, 2, 0, 0)], now, None).is_empty());
    assert!(
        tracker.outstanding(),
        "a suspect session is looked at again soon"
    );
    assert_eq!(
        dumped(&mut tracker, &[with(4, 3, 0, 0)], now, None),
        ["session stalled 192.0.2.1 None"]
    );
    assert!(
        dumped(&mut tracker, &[with(4, 4, 0, 0)], now, None).is_empty(),
        "once per stall"
    );
    assert!(dumped(&mut tracker, &[with(0, 0, 0, 0)], now, None).is_empty());
    assert_eq!(
        dumped(&mut tracker, &[with(2, 3, 0, 0)], now, None),
        ["session stalled 192.0.2.1 None"],
        "acknowledged in between: a new stall counts again"
    );
}

#[test]
fn destroyed_sockets_say_what_the_looks_missed_table() {
    let now = Instant::now();
    // As the kernel announces them: queues purged, so nothing unacknowledged.
    let ended = |segs_in: u32, retransmits: u8, probes: u8, notsent: u32, data: u64| {
        let mut socket = socket(5, 3, TCP_CLOSE, retransmits);
        socket.info.segs_in = segs_in;
        socket.info.total_retrans = u32::from(retransmits);
        (socket.info.probes, socket.info.notsent) = (probes, notsent);
        socket.info.bytes_received = data;
        socket
    };
    let history = Some(ms(1));
    for (socket, max_rtt, expected, why) in [
        (
            ended(4, 0, 0, 0, 120),
            history,
            Some("closed after carrying data"),
            "a short request",
        ),
        (ended(2, 0, 0, 0, 0), history, None, "no data either way"),
        (
            ended(4, 2, 0, 0, 120),
            history,
            None,
            "ended retransmitting, short of a stall: no success",
        ),
        (
            ended(4, 4, 0, 0, 120),
            history,
            Some("session stalled"),
            "ended stalled (an orphan giving up)",
        ),
        (
            ended(4, 0, 2, 0, 120),
            history,
            Some("session stalled"),
            "keepalives unanswered",
        ),
        (
            ended(4, 0, 0, 70, 120),
            history,
            None,
            "ended with data unsent",
        ),
        (
            ended(0, 0, 0, 0, 0),
            history,
            None,
            "given up at an unknown age",
        ),
        (
            ended(0, 1, 0, 0, 0),
            None,
            Some("connect given up unanswered"),
            "after a retransmitted SYN",
        ),
    ] {
        let mut tracker = ConnectionTracker::new(THRESHOLDS);
        let seen = tracker
            .destroyed(&socket, now, max_rtt)
            .map(|o| o.seen.label());
        assert_eq!(seen, expected, "{why}");
    }
    // A connect seen waiting, then given up: its age decides.
    for (given_up_after, expected) in [
        (ms(60), None),
        (ms(200), Some("connect given up unanswered")),
    ] {
        let mut tracker = ConnectionTracker::new(THRESHOLDS);
        dumped(&mut tracker, &[waiting(5, 3, ms(40))], now, history);
        let seen = tracker
            .destroyed(
                &ended(0, 0, 0, 0, 0),
                now + given_up_after - ms(40),
                history,
            )
            .map(|o| o.seen.label());
        assert_eq!(seen, expected, "given up after {given_up_after:?}");
    }
    // Already counted by a look: not again.
    let mut tracker = ConnectionTracker::new(THRESHOLDS);
    dumped(&mut tracker, &[], now, None);
    dumped(&mut tracker, &[socket(5, 3, TCP_ESTABLISHED, 0)], now, None);
    assert_eq!(
        tracker.destroyed(&ended(4, 0, 0, 0, 120), now, history),
        None
    );
    // A stall a look counted, then the end of that socket: neither a second failure nor a
    // success that would bring the dead path back.
    let mut stalled = socket(5, 3, TCP_ESTABLISHED, 3);
    stalled.info.unacked = 2;
    assert_eq!(
        dumped(&mut tracker, &[stalled], now, None),
        ["session stalled 192.0.2.3 None"]
    );
    assert_eq!(
        tracker.destroyed(&ended(4, 5, 0, 0, 120), now, history),
        None
    );
}

#[test]
fn fail_fast_may_act_only_on_a_stall_with_data_in_flight() {
    let now = Instant::now();
    let mut tracker = ConnectionTracker::new(THRESHOLDS);
    dumped(&mut tracker, &[], now, None);
    let mut data_stall = socket(1, 1, TCP_ESTABLISHED, 3);
    data_stall.info.unacked = 4;
    let mut keepalive_stall = socket(2, 2, TCP_ESTABLISHED, 0);
    keepalive_stall.info.probes = 2;
    assert_eq!(
        dumped(&mut tracker, &[data_stall, keepalive_stall], now, None),
        [
            "session stalled 192.0.2.1 None",
            "session stalled 192.0.2.2 None"
        ]
    );
    assert!(tracker.is_failing(1), "data in flight, unacknowledged");
    assert!(!tracker.is_failing(2), "nothing in flight: never aborted");
}

#[test]
fn looks_speed_up_only_while_something_is_outstanding_table() {
    for (interval, outstanding, deadline, expected) in [
        (ms(250), true, None, ms(250)),
        (ms(250), false, None, ms(1000)),
        (ms(100), false, None, ms(1000)),
        (ms(2000), false, None, ms(2000)),
        (ms(2000), true, None, ms(2000)),
        (ms(250), true, Some(ms(80)), ms(80)),
        (ms(250), true, Some(ms(0)), ms(10)),
    ] {
        assert_eq!(
            next_wait(interval, outstanding, deadline),
            expected,
            "{interval:?} {outstanding} {deadline:?}"
        );
    }
}

#[test]
fn one_report_per_address_and_a_completed_connection_wins() {
    let now = Instant::now();
    let mut tracker = ConnectionTracker::new(Thresholds {
        syn_retransmits: 2,
        stall_retransmits: 3,
    });
    assert!(dumped(&mut tracker, &[], now, None).is_empty());
    let sockets = [
        socket(12, 1, TCP_SYN_SENT, 2),
        socket(10, 1, TCP_ESTABLISHED, 0),
        socket(11, 1, TCP_ESTABLISHED, 0),
        socket(13, 3, TCP_SYN_SENT, 1),
        socket(14, 3, TCP_SYN_SENT, 5),
        socket(15, 3, TCP_SYN_SENT, 2),
    ];
    let mut observations = tracker.dump(&sockets, now, |_| None).to_vec();
    one_per_address(&mut observations);
    let seen: Vec<String> = observations
        .iter()
        .map(|o| format!("{} {}", o.seen.label(), o.address))
        .collect();
    assert_eq!(
        seen,
        ["connected 192.0.2.1", "connect unanswered 192.0.2.3"]
    );
}

#[test]
fn many_endpoint_addresses_are_filtered_here_not_in_the_kernel_table() {
    let addresses = |count: usize| -> Vec<IpAddr> {
        (0..count)
            .map(|i| IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]))
            .collect()
    };
    assert!(matches!(filter_for(&[]), Filter::Nothing));
    assert!(matches!(filter_for(&addresses(3)), Filter::Program(_)));
    assert!(matches!(
        filter_for(&addresses(MAX_FILTERED_ADDRESSES)),
        Filter::Program(_)
    ));
    assert!(matches!(
        filter_for(&addresses(MAX_FILTERED_ADDRESSES + 1)),
        Filter::Everything
    ));
}
