//! The fast path over the real server's sockets: batches of UDP queries sent without waiting
//! are each answered correctly, a memoised answer (UDP or TCP) gives way to a report at once, a
//! datagram too long for the receive buffer is answered FORMERR rather than dropped. Queries
//! here are raw (no cookie, fixed bytes apart from the ID), so repeats are answered from the
//! memo; `dig` adds a fresh cookie to every query and would always miss it.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Instant;

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{RData, RecordType};

use crate::failover::{A, B, C};
use crate::support::Server;
use crate::support::wire::{self, REPLY_DEADLINE};
use crate::support::zones::APP_THREE_ENDPOINTS_ZONE;

/// The addresses of a reply's answer section, in order.
fn addresses(reply: &Message) -> Vec<String> {
    reply
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(aaaa) => Some(aaaa.0.to_string()),
            _ => None,
        })
        .collect()
}

fn udp_address(server: &Server) -> SocketAddr {
    server.listen_addresses()[0]
}

/// Sends every query at once, then reads every reply (matched by ID).
fn burst(address: SocketAddr, queries: &[(u16, &str, RecordType)]) -> Vec<Message> {
    let socket = wire::udp_to(address);
    for (id, name, qtype) in queries {
        socket
            .send(&wire::query(*id, name, *qtype))
            .expect("send a query");
    }
    let deadline = Instant::now() + REPLY_DEADLINE;
    let mut replies: Vec<Option<Message>> = vec![None; queries.len()];
    let mut buffer = vec![0u8; 65_535];
    while replies.iter().any(Option::is_none) {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("replies missing: {replies:?}"));
        socket.set_read_timeout(Some(left)).expect("set a timeout");
        let Ok(length) = socket.recv(&mut buffer) else {
            continue;
        };
        let reply = wire::parse(&buffer[..length]);
        let index = queries
            .iter()
            .position(|(id, _, _)| *id == reply.metadata.id)
            .unwrap_or_else(|| panic!("a reply with an unknown ID: {reply:?}"));
        replies[index] = Some(reply);
    }
    replies.into_iter().flatten().collect()
}

#[test]
fn queries_sent_in_bursts_are_each_answered_as_alone() {
    let server = Server::start(&[("zone.toml", APP_THREE_ENDPOINTS_ZONE)], &[]);
    let address = udp_address(&server);
    // Three rounds of the same 40 queries: the first goes the general path, the later ones are
    // answered from the memo, in batches.
    for round in 0u16..3 {
        let queries: Vec<(u16, &str, RecordType)> = (0u16..40)
            .map(|n| {
                let (name, qtype) = match n % 4 {
                    0 | 1 => ("app.internal.", RecordType::A),
                    2 => ("app.internal.", RecordType::AAAA),
                    _ => ("missing.internal.", RecordType::A),
                };
                (round * 100 + n, name, qtype)
            })
            .collect();
        let replies = burst(address, &queries);
        for ((id, name, qtype), reply) in queries.iter().zip(&replies) {
            assert_eq!(reply.metadata.id, *id);
            let question = &reply.queries[0];
            assert_eq!(question.name().to_ascii(), *name, "id {id}");
            assert_eq!(question.query_type(), *qtype, "id {id}");
            match (*name, *qtype) {
                ("app.internal.", RecordType::A) => {
                    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
                    assert_eq!(addresses(reply), [A, B, C], "id {id}");
                }
                ("app.internal.", _) => {
                    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
                    assert!(reply.answers.is_empty(), "NODATA, id {id}");
                }
                _ => assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain),
            }
        }
    }
}

#[test]
fn a_report_changes_the_very_next_answer_to_a_repeated_query() {
    let server = Server::start(&[("zone.toml", APP_THREE_ENDPOINTS_ZONE)], &[]);
    let address = udp_address(&server);
    let ask = |id: u16| {
        let deadline = Instant::now() + REPLY_DEADLINE;
        let reply = wire::udp_ask(address, id, "app.internal.", deadline)
            .unwrap_or_else(|| panic!("no reply to query {id}"));
        addresses(&reply)
    };
    // Over TCP, on one connection: the connections' shared memo.
    let mut stream = wire::tcp_to(address);
    let mut ask_tcp = |id: u16| {
        stream
            .write_all(&wire::framed(&wire::query(
                id,
                "app.internal.",
                RecordType::A,
            )))
            .expect("send over TCP");
        match wire::read_framed(&mut stream) {
            wire::Read1::Message(reply) => addresses(&wire::parse(&reply)),
            other => panic!("no TCP reply to query {id}: {other:?}"),
        }
    };
    // The same bytes (but the ID) twice: the second answer comes from the memo.
    assert_eq!(ask(1), [A, B, C]);
    assert_eq!(ask(2), [A, B, C]);
    assert_eq!(ask_tcp(11), [A, B, C]);
    assert_eq!(ask_tcp(12), [A, B, C]);
    server.report(false, A);
    assert_eq!(ask(3), [B, C, A], "the failure shows at once");
    assert_eq!(ask_tcp(13), [B, C, A], "the failure shows at once over TCP");
    assert_eq!(ask(4), [B, C, A]);
    assert_eq!(ask_tcp(14), [B, C, A]);
    server.report(true, C);
    assert_eq!(ask(5), [C, B, A], "the success shows at once");
    assert_eq!(ask_tcp(15), [C, B, A], "the success shows at once over TCP");
}

#[test]
fn a_datagram_longer_than_the_receive_buffer_is_answered_formerr() {
    let server = Server::start(&[("zone.toml", APP_THREE_ENDPOINTS_ZONE)], &[]);
    let address = udp_address(&server);
    // A valid query whose EDNS padding option (RFC 7830) makes it 6,000 bytes: the server
    // reads the first 4,096, which cut the OPT record.
    let mut message = wire::parse(&wire::query(77, "app.internal.", RecordType::A));
    let mut edns = Edns::new();
    edns.options_mut().insert(EdnsOption::Unknown(
        EdnsCode::Padding.into(),
        vec![0; 6_000],
    ));
    message.edns = Some(edns);
    let packet = message.to_vec().expect("the long query encodes");
    assert!(packet.len() > 6_000);
    let socket = wire::udp_to(address);
    socket.send(&packet).expect("send the long query");
    let (reply, _) = wire::udp_until_id(&socket, 77, Instant::now() + REPLY_DEADLINE)
        .expect("the long query is answered");
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    // And the socket goes on answering.
    let deadline = Instant::now() + REPLY_DEADLINE;
    let next = wire::udp_ask(address, 78, "app.internal.", deadline).expect("the next query");
    assert_eq!(addresses(&next), [A, B, C]);
}

/// How many UDP sockets are bound to `port`, as the most that any of up to 100 readings of
/// `/proc/net/udp` and `udp6` shows (stopping at `expected`). One reading can miss a socket: the
/// kernel walks its socket table in chunks, and the other tests open and close sockets
/// meanwhile; it cannot show one that is not there.
fn udp_sockets_on(port: u16, expected: usize) -> usize {
    let mut most = 0;
    for _ in 0..100 {
        most = most.max(udp_sockets_read_once(port));
        if most >= expected {
            break;
        }
    }
    most
}

/// One reading of `/proc/net/udp` and `udp6`: the sockets bound to `port`.
fn udp_sockets_read_once(port: u16) -> usize {
    let port = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|line| {
                    line.split_whitespace()
                        .nth(1)
                        .is_some_and(|local| local.ends_with(&port))
                })
                .count()
        })
        .sum()
}

/// The threads of process `pid` named as UDP receive loops (`udp-N`).
fn udp_receive_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
                .filter(|name| {
                    name.trim_end()
                        .strip_prefix("udp-")
                        .is_some_and(|n| n.parse::<u32>().is_ok())
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn each_worker_gets_a_udp_socket_and_every_socket_answers() {
    for (workers, sockets) in [("1", 1), ("3", 3)] {
        let server = Server::start(
            &[("zone.toml", APP_THREE_ENDPOINTS_ZONE)],
            &["--workers", workers],
        );
        let address = udp_address(&server);
        assert_eq!(
            udp_sockets_on(address.port(), sockets),
            sockets,
            "--workers {workers}"
        );
        // Linux: each socket is read by a thread of its own (src/udp_loop.rs).
        assert_eq!(
            udp_receive_threads(server.pid()),
            sockets,
            "--workers {workers}: receive threads"
        );
        // Clients on many source ports, which the kernel spreads over the sockets: all answered.
        for id in 0..24u16 {
            let deadline = Instant::now() + REPLY_DEADLINE;
            let reply = wire::udp_ask(address, id, "app.internal.", deadline)
                .unwrap_or_else(|| panic!("query {id} with --workers {workers}"));
            assert_eq!(addresses(&reply), [A, B, C]);
        }
    }
}
