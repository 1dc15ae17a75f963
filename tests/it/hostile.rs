//! Hostile input over UDP and TCP. Every request seed of the fuzz corpus (`fuzz/corpus/request/`:
//! valid queries of every type we answer, and hostile shapes — compression pointer loops, a
//! pointer into the header, labels over 63 octets, names over 255, truncated headers, counts that
//! do not match the sections, several or misplaced OPT records, unknown classes and opcodes,
//! responses) is sent to the real server. Any reply parses and echoes the query's ID, responses
//! are never answered, and a valid query right behind each packet is answered.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::harness::FUZZ_ZONE;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::support::Server;
use crate::support::wire::{self, REPLY_DEADLINE, Read1};

/// The ID of the valid query sent behind each hostile packet; no seed uses it.
const PROBE_ID: u16 = 0xBEEF;

fn request_seeds() -> Vec<(String, Vec<u8>)> {
    let seeds = wire::corpus("request", "seed-");
    assert!(seeds.len() >= 80, "the request seeds are checked in");
    assert!(
        seeds.iter().all(|(_, p)| wire::id_of(p) != Some(PROBE_ID)),
        "no seed uses the probe ID"
    );
    seeds
}

fn is_response(packet: &[u8]) -> bool {
    packet.get(2).is_some_and(|flags| flags & 0x80 != 0)
}

/// Checks a reply to `packet`: it parses, is a response, and echoes the ID.
fn check_reply(seed: &str, packet: &[u8], reply: &[u8]) -> Result<Message, String> {
    let message =
        Message::from_vec(reply).map_err(|e| format!("{seed}: reply does not parse: {e}"))?;
    if message.metadata.message_type != MessageType::Response {
        return Err(format!("{seed}: reply has QR=0"));
    }
    if wire::id_of(packet) != Some(message.metadata.id) {
        return Err(format!(
            "{seed}: reply ID {} does not echo {:?}",
            message.metadata.id,
            wire::id_of(packet)
        ));
    }
    if is_response(packet) {
        return Err(format!("{seed}: a response was answered"));
    }
    Ok(message)
}

/// What some seeds must get (the rest: anything that passes [`check_reply`], or no reply).
/// `None`: no reply at all.
fn expected_outcomes() -> BTreeMap<&'static str, Option<ResponseCode>> {
    BTreeMap::from([
        ("seed-valid-a", Some(ResponseCode::NoError)),
        ("seed-valid-ptr", Some(ResponseCode::NoError)),
        (
            "seed-valid-a-hidden-by-policy",
            Some(ResponseCode::NXDomain),
        ),
        ("seed-valid-a-not-owned", Some(ResponseCode::Refused)),
        ("seed-hostile-empty", None),
        ("seed-hostile-one-byte", None),
        ("seed-hostile-truncated-header-11", None),
        (
            "seed-hostile-question-cut-short",
            Some(ResponseCode::FormErr),
        ),
        ("seed-hostile-two-questions", Some(ResponseCode::FormErr)),
        (
            "seed-hostile-pointer-to-itself",
            Some(ResponseCode::FormErr),
        ),
        ("seed-hostile-label-64-octets", Some(ResponseCode::FormErr)),
        ("seed-hostile-name-256-octets", Some(ResponseCode::FormErr)),
        ("seed-hostile-edns-version-1", Some(ResponseCode::BADVERS)),
        ("seed-hostile-opcode-status", Some(ResponseCode::NotImp)),
        ("seed-hostile-class-chaos", Some(ResponseCode::Refused)),
        ("seed-hostile-qr1-response", None),
        ("seed-hostile-qr1-formerr", None),
        ("seed-hostile-qr1-unparsable", None),
        ("seed-hostile-qr1-header-only", None),
    ])
}

fn check_expected(
    seed: &str,
    got: Option<&Message>,
    expected: &BTreeMap<&str, Option<ResponseCode>>,
) -> Result<(), String> {
    let Some(want) = expected.get(seed) else {
        return Ok(());
    };
    // Compared by number: hickory parses 16 as BADSIG, which shares the code with BADVERS.
    let got_code = got.map(|m| m.metadata.response_code);
    if got_code.map(u16::from) == want.map(u16::from) {
        Ok(())
    } else {
        Err(format!("{seed}: got {got_code:?}, expected {want:?}"))
    }
}

#[test]
fn every_seed_over_udp_gets_a_sane_reply_or_none_and_the_next_query_is_answered() {
    let server = Server::start(&[("zone.toml", FUZZ_ZONE)], &[]);
    let address = server.listen_addresses()[0];
    let socket = wire::udp_to(address);
    let probe = wire::query(PROBE_ID, "app.internal", RecordType::A);
    let expected = expected_outcomes();
    let mut failures = Vec::new();
    for (seed, packet) in request_seeds() {
        socket.send(&packet).expect("send a seed");
        socket.send(&probe).expect("send the probe");
        // One socket's packets are handled in order, so the seed's reply (if any) comes first.
        let Some((answer, before)) =
            wire::udp_until_id(&socket, PROBE_ID, Instant::now() + REPLY_DEADLINE)
        else {
            failures.push(format!(
                "{seed}: the valid query behind it was not answered"
            ));
            continue;
        };
        if answer.answers.len() != 2 {
            failures.push(format!("{seed}: the probe got {answer:?}"));
        }
        let mut replies = Vec::new();
        for reply in &before {
            match check_reply(&seed, &packet, reply) {
                Ok(message) => replies.push(message),
                Err(problem) => failures.push(problem),
            }
        }
        if replies.len() > 1 {
            failures.push(format!("{seed}: {} replies to one packet", replies.len()));
        }
        if let Err(problem) = check_expected(&seed, replies.first(), &expected) {
            failures.push(problem);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Still serving, for dig too.
    assert_eq!(server.addresses("app.internal").len(), 2);
}

#[test]
fn every_seed_over_tcp_gets_a_sane_reply_or_none_and_the_next_query_is_answered() {
    let server = Server::start(&[("zone.toml", FUZZ_ZONE)], &[]);
    let address = server.listen_addresses()[0];
    let probe = wire::query(PROBE_ID, "app.internal", RecordType::A);
    let expected = expected_outcomes();
    let mut failures = Vec::new();
    let mut closed_by = Vec::new();
    for (seed, packet) in request_seeds() {
        // The seed and a valid query behind it, pipelined in one write.
        let mut stream = wire::tcp_to(address);
        let mut both = wire::framed(&packet);
        both.extend(wire::framed(&probe));
        stream.write_all(&both).expect("write a seed and the probe");
        let mut replies = Vec::new();
        let mut probe_answered = false;
        while !probe_answered {
            match wire::read_framed(&mut stream) {
                Read1::Message(reply) if wire::id_of(&reply) == Some(PROBE_ID) => {
                    probe_answered = true;
                }
                Read1::Message(reply) => match check_reply(&seed, &packet, &reply) {
                    Ok(message) => replies.push(message),
                    Err(problem) => failures.push(problem),
                },
                Read1::Closed => {
                    closed_by.push(seed.clone());
                    break;
                }
                Read1::Nothing => {
                    failures.push(format!("{seed}: no reply to the probe within the deadline"));
                    break;
                }
            }
        }
        if !probe_answered {
            // The connection is gone; the server must still answer a fresh one.
            let answer = wire::tcp_ask(address, &probe);
            if answer.answers.len() != 2 {
                failures.push(format!("{seed}: a fresh connection got {answer:?}"));
            }
        }
        if replies.len() > 1 {
            failures.push(format!("{seed}: {} replies to one message", replies.len()));
        }
        if let Err(problem) = check_expected(&seed, replies.first(), &expected) {
            failures.push(problem);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Only a zero-length message closes the connection; every other seed is survived.
    assert_eq!(closed_by, ["seed-hostile-empty"]);
    assert_eq!(server.addresses("app.internal").len(), 2);
}

#[test]
fn broken_tcp_framing_closes_only_that_connection() {
    let server = Server::start(
        &[("zone.toml", FUZZ_ZONE)],
        &["--tcp-idle-timeout-ms", "500"],
    );
    let address = server.listen_addresses()[0];
    let valid = wire::query(0x0101, "app.internal", RecordType::A);
    let cases: &[(&str, Vec<u8>)] = &[
        ("zero length", vec![0, 0]),
        ("half a length prefix", vec![0]),
        ("a length and no body", vec![0, 30]),
        ("a length longer than the body", {
            let mut bytes = vec![0x01, 0x00];
            bytes.extend(&valid);
            bytes
        }),
    ];
    for (what, bytes) in cases {
        let mut stream = wire::tcp_to(address);
        stream.write_all(bytes).expect("write");
        // Closed at once (zero length) or when the message does not complete within the
        // timeout.
        assert!(
            wire::closed_within(&mut stream, Duration::from_secs(20)),
            "{what}: the connection is closed"
        );
        let answer = wire::tcp_ask(address, &valid);
        assert_eq!(answer.answers.len(), 2, "{what}: others are still served");
    }
}
