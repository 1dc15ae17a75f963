//! Bounded resources, against the real binary: the TCP connection limit and idle timeout,
//! pipelined TCP queries answered as they finish, slow and silent clients, a UDP flood on one
//! socket, the control socket's limits, and the forwarding allow-list. Outcomes are asserted,
//! not timings: every wait is a bounded poll, and the only time bounds are generous ones.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::wire::{self, REPLY_DEADLINE, Read1};
use crate::support::zones::APP_PRIMARY_ONLY_ZONE;
use crate::support::{Server, expect_answers, wait_for};

/// The zone of a second failover-dns that plays the upstream resolver.
const UPSTREAM_ZONE: &str = r#"
[[zone]]
origin = "upstream.test"

[[asset]]
id = "www-host"
kind = "primary"
addresses = ["192.0.2.80"]
names = ["www.upstream.test"]

[[policy]]
id = "www"
sources = ["*"]
destinations = ["www-host"]
"#;

fn first_address(server: &Server) -> SocketAddr {
    server.listen_addresses()[0]
}

/// Checks that a UDP query for app.internal is answered.
fn assert_udp_answers(server: &Server, id: u16) {
    let reply = wire::udp_ask(
        first_address(server),
        id,
        "app.internal",
        Instant::now() + REPLY_DEADLINE,
    )
    .expect("a UDP query is answered");
    assert_eq!(reply.answers.len(), 1, "{reply:?}");
}

/// Opens a TCP connection, asks for `app.internal` with `id` and checks the answer.
fn tcp_asked(address: SocketAddr, id: u16) -> std::net::TcpStream {
    let mut stream = wire::tcp_to(address);
    stream
        .write_all(&wire::framed(&wire::query(
            id,
            "app.internal",
            RecordType::A,
        )))
        .expect("write");
    match wire::read_framed(&mut stream) {
        Read1::Message(reply) => assert_eq!(wire::id_of(&reply), Some(id)),
        other => panic!("query {id} over TCP is answered: {other:?}"),
    }
    stream
}

#[test]
fn at_the_tcp_limit_a_new_connection_takes_the_idlest_slot_and_busy_ones_are_kept() {
    // An upstream that takes TCP connections (TCP queries go upstream over TCP) and never
    // answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind a silent upstream");
    silent.set_nonblocking(true).expect("non-blocking");
    let silent_address = silent.local_addr().expect("address").to_string();
    let server = Server::start(
        &[("zone.toml", APP_PRIMARY_ONLY_ZONE)],
        &[
            "--max-tcp-connections",
            "2",
            "--tcp-idle-timeout-ms",
            "120000",
            "--upstream",
            &silent_address,
            "--upstream-timeout-ms",
            "3000",
        ],
    );
    let address = first_address(&server);
    // Two idle connections take both slots.
    let mut oldest = tcp_asked(address, 100);
    let mut older = tcp_asked(address, 101);
    // A third is served at once; the connection idle the longest is closed for it, the other
    // is kept.
    let newest = tcp_asked(address, 102);
    assert!(
        wire::closed_within(&mut oldest, REPLY_DEADLINE),
        "the idlest is closed"
    );
    assert!(
        !wire::closed_within(&mut older, Duration::from_millis(300)),
        "only one connection is closed"
    );
    // A connection whose query waits for an upstream is never the one closed.
    let mut busy = wire::tcp_to(address);
    busy.write_all(&wire::framed(&wire::query(
        300,
        "slow.example.test",
        RecordType::A,
    )))
    .expect("write");
    let _upstream_side = wait_for("the forwarded query reaches the upstream", &server, || {
        silent.accept().ok()
    });
    assert!(
        wire::closed_within(&mut older, REPLY_DEADLINE),
        "{}",
        server.stderr()
    );
    drop(newest);
    for id in 400..403 {
        drop(tcp_asked(address, id));
    }
    // UDP is not affected by TCP being full.
    assert_udp_answers(&server, 7);
    expect_answers(
        &server,
        &[(&["app.internal", "A"], "NOERROR", &["100.64.1.10"])],
    );
    // The busy connection gets its answer (SERVFAIL once the upstream timed out).
    busy.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    match wire::read_framed(&mut busy) {
        Read1::Message(reply) => {
            assert_eq!(wire::id_of(&reply), Some(300));
            assert_eq!(
                wire::parse(&reply).metadata.response_code,
                ResponseCode::ServFail
            );
        }
        other => panic!("the busy connection is answered: {other:?}"),
    }
}

#[test]
fn idle_and_half_sent_tcp_connections_are_closed_after_the_idle_timeout() {
    let server = Server::start(
        &[("zone.toml", APP_PRIMARY_ONLY_ZONE)],
        &["--tcp-idle-timeout-ms", "300"],
    );
    let address = first_address(&server);
    let query = wire::query(9, "app.internal", RecordType::A);
    let cases: &[(&str, Vec<u8>)] = &[
        ("says nothing", vec![]),
        ("one byte of the length", vec![0]),
        ("the length and half the message", {
            let framed = wire::framed(&query);
            framed[..framed.len() / 2].to_vec()
        }),
    ];
    for (what, bytes) in cases {
        let mut stream = wire::tcp_to(address);
        stream.write_all(bytes).expect("write");
        assert!(
            wire::closed_within(&mut stream, Duration::from_secs(20)),
            "a connection that {what} is closed"
        );
    }
    // A connection that is used stays open across queries shorter apart than the timeout.
    let mut stream = wire::tcp_to(address);
    for id in 1..=3u16 {
        stream
            .write_all(&wire::framed(&wire::query(
                id,
                "app.internal",
                RecordType::A,
            )))
            .expect("write");
        let Read1::Message(reply) = wire::read_framed(&mut stream) else {
            panic!("query {id} on a live connection is answered");
        };
        assert_eq!(wire::id_of(&reply), Some(id));
    }
}

#[test]
fn pipelined_queries_in_one_write_are_all_answered() {
    let server = Server::start(&[("zone.toml", APP_PRIMARY_ONLY_ZONE)], &[]);
    let address = first_address(&server);
    let asks: Vec<(u16, &str, RecordType)> = (0..40u16)
        .map(|i| {
            let (name, qtype) = match i % 4 {
                0 => ("app.internal", RecordType::A),
                1 => ("app.internal", RecordType::AAAA),
                2 => ("nothing.internal", RecordType::A),
                _ => ("example.com", RecordType::A),
            };
            (1000 + i, name, qtype)
        })
        .collect();
    let mut all = Vec::new();
    for (id, name, qtype) in &asks {
        all.extend(wire::framed(&wire::query(*id, name, *qtype)));
    }
    let mut stream = wire::tcp_to(address);
    stream.write_all(&all).expect("write every query at once");
    let mut codes = std::collections::BTreeMap::new();
    for _ in &asks {
        let Read1::Message(reply) = wire::read_framed(&mut stream) else {
            panic!(
                "every pipelined query is answered; got {} replies",
                codes.len()
            );
        };
        let message = wire::parse(&reply);
        codes.insert(message.metadata.id, message.metadata.response_code);
    }
    for (id, name, qtype) in &asks {
        let expected = match (*name, qtype) {
            ("nothing.internal", _) => ResponseCode::NXDomain,
            ("example.com", _) => ResponseCode::Refused,
            _ => ResponseCode::NoError,
        };
        assert_eq!(codes.get(id), Some(&expected), "{id} {name} {qtype}");
    }
}

#[test]
fn a_slow_forwarded_query_does_not_hold_up_an_owned_answer_behind_it() {
    // An upstream that accepts TCP connections (the kernel's backlog does) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind a silent upstream");
    let upstream = silent.local_addr().expect("its address").to_string();
    let server = Server::start(
        &[("zone.toml", APP_PRIMARY_ONLY_ZONE)],
        &["--upstream", &upstream, "--upstream-timeout-ms", "1500"],
    );
    let mut stream = wire::tcp_to(first_address(&server));
    let mut both = wire::framed(&wire::query(1, "slow.example", RecordType::A));
    both.extend(wire::framed(&wire::query(2, "app.internal", RecordType::A)));
    stream.write_all(&both).expect("write both queries at once");
    let mut order = Vec::new();
    for _ in 0..2 {
        let Read1::Message(reply) = wire::read_framed(&mut stream) else {
            panic!("both queries are answered; got {order:?}");
        };
        let message = wire::parse(&reply);
        order.push((message.metadata.id, message.metadata.response_code));
    }
    // The owned name is answered first, out of order; the forward fails later with SERVFAIL.
    assert_eq!(
        order,
        [(2, ResponseCode::NoError), (1, ResponseCode::ServFail)]
    );
    drop(silent);
}

/// Past the forward bound (the connection's or the server's) a forwarded query gets SERVFAIL at
/// once and the connection is read on: owned names behind queries an upstream never answers are
/// answered at once, not after those time out.
#[test]
fn owned_names_behind_more_forwards_than_the_bound_are_answered_at_once() {
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind a silent upstream");
    let upstream = silent.local_addr().expect("its address").to_string();
    let server = Server::start(
        &[("zone.toml", APP_PRIMARY_ONLY_ZONE)],
        &[
            "--upstream",
            &upstream,
            "--upstream-timeout-ms",
            "4000",
            "--forwards-in-flight",
            "2",
        ],
    );
    let mut stream = wire::tcp_to(first_address(&server));
    let mut pipelined = Vec::new();
    for id in 1..=4 {
        pipelined.extend(wire::framed(&wire::query(
            id,
            "slow.example",
            RecordType::A,
        )));
    }
    for id in 11..=13 {
        pipelined.extend(wire::framed(&wire::query(
            id,
            "app.internal",
            RecordType::A,
        )));
    }
    let started = Instant::now();
    stream
        .write_all(&pipelined)
        .expect("write every query at once");
    let mut answered = Vec::new();
    while answered.len() < 5 {
        let Read1::Message(reply) = wire::read_framed(&mut stream) else {
            panic!("the first five replies come; got {answered:?}");
        };
        let message = wire::parse(&reply);
        answered.push((message.metadata.id, message.metadata.response_code));
    }
    let took = started.elapsed();
    answered.sort_unstable_by_key(|(id, _)| *id);
    assert_eq!(
        answered,
        [
            (3, ResponseCode::ServFail),
            (4, ResponseCode::ServFail),
            (11, ResponseCode::NoError),
            (12, ResponseCode::NoError),
            (13, ResponseCode::NoError),
        ],
        "the two forwards over the bound fail at once, the owned names are answered"
    );
    assert!(
        took < Duration::from_secs(2),
        "not after the upstream timeout: {took:?}"
    );
    drop(silent);
}

#[test]
fn slow_and_silent_clients_do_not_hold_up_others() {
    let server = Server::start(
        &[("zone.toml", APP_PRIMARY_ONLY_ZONE)],
        &["--tcp-idle-timeout-ms", "1000"],
    );
    let address = first_address(&server);
    // Twenty connections that say nothing, and one that sends a query a byte at a time.
    let silent: Vec<_> = (0..20).map(|_| wire::tcp_to(address)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let trickler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut stream = wire::tcp_to(address);
            let bytes = wire::framed(&wire::query(77, "app.internal", RecordType::A));
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut sent = 0;
            for byte in &bytes {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                if stream.write_all(&[*byte]).is_err() {
                    break;
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            // The whole message takes ~6 s at this pace, far over the 1 s allowed for it: the
            // server closes the connection instead of waiting.
            let closed = wire::closed_within(&mut stream, Duration::from_secs(20));
            (sent, bytes.len(), closed)
        })
    };
    // Meanwhile everyone else is answered, over TCP and UDP.
    for id in 0..5u16 {
        let reply = wire::tcp_ask(
            address,
            &wire::query(300 + id, "app.internal", RecordType::A),
        );
        assert_eq!(reply.answers.len(), 1, "{reply:?}");
        assert_udp_answers(&server, 400 + id);
    }
    expect_answers(
        &server,
        &[(&["+tcp", "app.internal", "A"], "NOERROR", &["100.64.1.10"])],
    );
    let (sent, total, closed) = trickler.join().expect("the trickler thread");
    stop.store(true, Ordering::Relaxed);
    assert!(closed, "the trickling connection is closed");
    assert!(
        sent < total,
        "it was cut off before it finished ({sent}/{total} bytes)"
    );
    drop(silent);
}

#[test]
fn a_udp_flood_on_one_socket_does_not_starve_the_other_socket_or_the_control_socket() {
    let server = Server::start(
        &[("zone.toml", APP_PRIMARY_ONLY_ZONE)],
        &["--listen", "127.0.0.1:0"],
    );
    let addresses = server.listen_addresses();
    let [flooded, other] = addresses[..] else {
        panic!("two listen addresses: {addresses:?}");
    };
    assert_ne!(flooded, other);
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..2)
        .map(|n| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                // Bounded in count and time; stops early when the test is done.
                let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
                let query = wire::query(n, "app.internal", RecordType::A);
                let garbage = [0xffu8; 40];
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut sent = 0u64;
                while sent < 2_000_000 && !stop.load(Ordering::Relaxed) && Instant::now() < deadline
                {
                    let packet: &[u8] = if sent.is_multiple_of(2) {
                        &query
                    } else {
                        &garbage
                    };
                    if socket.send_to(packet, flooded).is_ok() {
                        sent += 1;
                    }
                }
                sent
            })
        })
        .collect();
    // While the flood runs: the other socket answers, and so does the control socket.
    let mut answered = 0;
    for id in 0..10u16 {
        let reply = wire::udp_ask(
            other,
            500 + id,
            "app.internal",
            Instant::now() + REPLY_DEADLINE,
        );
        if reply.is_some_and(|r| r.answers.len() == 1) {
            answered += 1;
        }
    }
    let status = server.cli(&["status", "--json"]);
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = flooders
        .into_iter()
        .map(|f| f.join().expect("a flooder thread"))
        .sum();
    assert_eq!(
        answered, 10,
        "the other socket answered during a flood of {sent} packets"
    );
    assert!(
        status.status.success(),
        "control answered during the flood: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(sent > 1000, "the flood ran ({sent} packets)");
    // And the flooded socket serves again once the flood is over.
    let reply = wire::udp_ask(
        flooded,
        600,
        "app.internal",
        Instant::now() + REPLY_DEADLINE,
    );
    assert!(reply.is_some(), "the flooded socket recovers");
}

/// A control connection with a read timeout.
fn control(server: &Server) -> (UnixStream, BufReader<UnixStream>) {
    let stream = UnixStream::connect(server.control_path()).expect("connect to control");
    stream
        .set_read_timeout(Some(REPLY_DEADLINE))
        .expect("set a read timeout");
    let reader = BufReader::new(stream.try_clone().expect("clone"));
    (stream, reader)
}

/// Reads one line; `None` when the server closed the connection.
fn read_line(reader: &mut BufReader<UnixStream>) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => None,
        Ok(_) => Some(line),
        Err(error) => panic!("read a control line: {error}"),
    }
}

#[test]
fn an_oversize_control_line_gets_an_error_and_the_connection_closes() {
    let server = Server::start(&[("zone.toml", APP_PRIMARY_ONLY_ZONE)], &[]);
    let (mut stream, mut reader) = control(&server);
    let mut line = vec![b'x'; 64 * 1024 + 10];
    line.push(b'\n');
    // The server may close before reading everything; that is the point.
    let _ = stream.write_all(&line);
    let reply = read_line(&mut reader).expect("an error line before the close");
    assert!(
        reply.contains("\"reply\":\"error\"") && reply.contains("longer than"),
        "{reply}"
    );
    assert_eq!(
        read_line(&mut reader),
        None,
        "then the connection is closed"
    );
    // DNS and new control connections are unaffected.
    expect_answers(
        &server,
        &[(&["app.internal", "A"], "NOERROR", &["100.64.1.10"])],
    );
    let (mut stream, mut reader) = control(&server);
    stream.write_all(b"garbage\n").expect("write");
    let reply = read_line(&mut reader).expect("a reply");
    assert!(reply.contains("\"reply\":\"error\""), "{reply}");
    stream.write_all(b"{\"op\":\"status\"}\n").expect("write");
    let reply = read_line(&mut reader).expect("a reply");
    assert!(reply.contains("\"reply\":\"status\""), "{reply}");
}

#[test]
fn control_connections_over_the_limit_are_told_so_and_closed() {
    let server = Server::start(
        &[("zone.toml", APP_PRIMARY_ONLY_ZONE)],
        &["--max-control-connections", "2"],
    );
    // Two connections are served; a third is told why it is closed.
    let (mut first, mut first_reader) = control(&server);
    let (second, second_reader) = control(&server);
    first.write_all(b"{\"op\":\"status\"}\n").expect("write");
    assert!(read_line(&mut first_reader).is_some_and(|r| r.contains("status")));
    let (_third, mut third_reader) = control(&server);
    let refused = read_line(&mut third_reader).expect("an error line");
    assert!(
        refused.contains("too many control connections"),
        "{refused}"
    );
    assert_eq!(read_line(&mut third_reader), None);
    // DNS is unaffected.
    expect_answers(
        &server,
        &[(&["app.internal", "A"], "NOERROR", &["100.64.1.10"])],
    );
    // Once one closes, the control socket serves again (the server notices the close a
    // moment later, hence the bounded retry).
    drop((second, second_reader));
    let deadline = Instant::now() + REPLY_DEADLINE;
    loop {
        let output = server.cli(&["status", "--json"]);
        if output.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "control serves again: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn idle_control_connections_are_closed() {
    let server = Server::start(
        &[("zone.toml", APP_PRIMARY_ONLY_ZONE)],
        &["--control-idle-timeout-ms", "300"],
    );
    let (_silent, mut silent_reader) = control(&server);
    assert_eq!(
        read_line(&mut silent_reader),
        None,
        "a silent connection is closed"
    );
    // Half a line and then nothing is closed too.
    let (mut half, mut half_reader) = control(&server);
    half.write_all(b"{\"op\":").expect("write");
    assert_eq!(read_line(&mut half_reader), None, "a half line is closed");
    expect_answers(
        &server,
        &[(&["app.internal", "A"], "NOERROR", &["100.64.1.10"])],
    );
}

#[test]
fn forwarding_is_only_for_clients_the_allow_list_permits() {
    let upstream = Server::start(&[("upstream.toml", UPSTREAM_ZONE)], &[]);
    let upstream_address = first_address(&upstream).to_string();
    // The default allow-list (loopback) forwards for a 127.0.0.1 client.
    let open = Server::start(
        &[("zone.toml", APP_PRIMARY_ONLY_ZONE)],
        &["--upstream", &upstream_address],
    );
    assert_eq!(
        open.forwarding_line(),
        format!("forwarding to {upstream_address}")
    );
    let reply = open.dig(&["www.upstream.test", "A"]);
    assert_eq!(reply.status, "NOERROR", "{reply}");
    assert_eq!(reply.answer_data(), ["192.0.2.80"], "{reply}");
    // An allow-list without 127.0.0.1: names outside the zones are refused, owned ones answered.
    let closed = Server::start(
        &[("zone.toml", APP_PRIMARY_ONLY_ZONE)],
        &[
            "--upstream",
            &upstream_address,
            "--forward-allow",
            "10.0.0.0/8",
            "--forward-allow",
            "::1/128",
        ],
    );
    expect_answers(
        &closed,
        &[
            (&["www.upstream.test", "A"], "REFUSED", &[]),
            (&["-x", "192.0.2.80"], "REFUSED", &[]),
            (&["app.internal", "A"], "NOERROR", &["100.64.1.10"]),
        ],
    );
    let refused = closed.dig(&["www.upstream.test", "A"]);
    assert!(!refused.has_flag("ra"), "no recursion offered: {refused}");
    // Over TCP as well, and a cached answer is not a way around it: the open server has
    // www.upstream.test cached by now, the closed one never forwarded it.
    let reply = wire::tcp_ask(
        first_address(&closed),
        &wire::query(5, "www.upstream.test", RecordType::A),
    );
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
}
