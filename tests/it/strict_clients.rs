//! What a client that checks its answers strictly sees: every forwarded answer, cached or not,
//! built for the client that asked (OPT exactly when its query had one, our payload size, its
//! DO bit, no option from another client or the upstream: no foreign COOKIE, NSID, padding),
//! and no client option passed upstream; an opcode other than QUERY gets a bare NOTIMP header;
//! a signed query (TSIG, SIG(0)) gets NOTAUTH with an unsigned BADKEY TSIG, never an answer.

use std::time::{Instant, SystemTime};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::NULL;
use hickory_proto::rr::rdata::tsig::{TSIG, TsigAlgorithm, TsigError, make_tsig_record};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::support::upstream::{CookieUpstream, Unbound};
use crate::support::wire;
use crate::support::zones::APP_PRIMARY_ONLY_ZONE;
use crate::support::{Dig, Server, dig_at};

const RECORDS: &[&str] = &["www.example.test. 300 IN A 198.51.100.7"];

fn forwarding_to(upstream: &str) -> Server {
    Server::start(
        &[("zone.toml", APP_PRIMARY_ONLY_ZONE)],
        &["--upstream", upstream],
    )
}

/// An OPT record as a strict client reads it: payload, flags, options.
type Opt = (u16, Vec<String>, Vec<String>);

/// The OPT record of `reply`, if it has one.
fn opt(reply: &Dig) -> Option<Opt> {
    reply
        .edns_udp
        .map(|udp| (udp, reply.edns_flags.clone(), reply.edns_options.clone()))
}

#[test]
fn a_cached_answer_carries_opt_exactly_when_the_query_did() {
    let unbound = Unbound::start(RECORDS);
    let server = forwarding_to(&unbound.upstream_arg());
    let none = None;
    let ours = Some((1232, Vec::new(), Vec::new()));
    let ours_do = Some((1232, vec!["do".to_string()], Vec::new()));
    // (query options, OPT expected); the first query of each DO bit fills the cache.
    let cases: &[(&[&str], &Option<Opt>)] = &[
        (&["+noedns"], &none),
        (&["+edns=0"], &ours),
        (&["+noedns"], &none),
        (&["+edns=0", "+bufsize=4096"], &ours),
        (&["+edns=0", "+bufsize=512", "+nocookie"], &ours),
        (
            &["+nsid", "+cookie", "+subnet=192.0.2.0/24", "+padding=128"],
            &ours,
        ),
        (&["+dnssec"], &ours_do),
        (&["+noedns"], &none),
        (&["+dnssec", "+nsid", "+cookie"], &ours_do),
        (&["+tcp", "+nsid"], &ours),
        (&["+tcp", "+noedns"], &none),
    ];
    for (options, expected) in cases {
        let mut args = vec!["www.example.test", "A"];
        args.extend_from_slice(options);
        let reply = server.dig(&args);
        assert_eq!(reply.answer_data(), ["198.51.100.7"], "{reply}");
        assert_eq!(
            &opt(&reply),
            *expected,
            "dig {}:\n{reply}",
            options.join(" ")
        );
    }
    assert_eq!(
        unbound.queries_for("www.example.test.", "A"),
        2,
        "one upstream query per DO bit; every other answer came from the cache"
    );
}

#[test]
fn clients_with_different_cookies_never_see_each_others() {
    // Debian's unbound 1.17 has no `answer-cookie`: the test's own upstream answers cookies.
    let upstream = CookieUpstream::start();
    let direct = dig_at(
        "127.0.0.1",
        upstream.address.port(),
        &["www.example.test", "A", "+cookie=0102030405060708"],
    )
    .expect("the upstream answers");
    assert!(
        direct.edns_options.iter().any(|o| o == "COOKIE"),
        "the upstream answers cookies:\n{direct}"
    );
    let server = forwarding_to(&upstream.address.to_string());
    for cookie in [
        "0102030405060708",
        "1112131415161718",
        "2122232425262728",
        "0102030405060708",
    ] {
        for transport in ["+notcp", "+tcp"] {
            let option = format!("+cookie={cookie}");
            // A reply echoing another client's cookie makes dig warn ("Client COOKIE
            // mismatch"), which the parser rejects.
            let reply = server.dig(&["www.example.test", "A", &option, transport]);
            assert_eq!(reply.answer_data(), ["198.51.100.7"], "{reply}");
            assert_eq!(opt(&reply), Some((1232, Vec::new(), Vec::new())), "{reply}");
        }
    }
}

#[test]
fn the_upstream_never_receives_a_clients_cookie_or_options() {
    let upstream = CookieUpstream::start();
    let server = forwarding_to(&upstream.address.to_string());
    let asks: &[&[&str]] = &[
        &["one.example.test", "A", "+cookie=0102030405060708"],
        &["two.example.test", "A", "+nsid", "+subnet=192.0.2.0/24"],
        &["three.example.test", "A", "+noedns"],
        &[
            "four.example.test",
            "A",
            "+dnssec",
            "+cookie",
            "+padding=64",
        ],
    ];
    for ask in asks {
        let reply = server.dig(ask);
        assert_eq!(reply.answer_data(), ["198.51.100.7"], "{reply}");
        assert!(
            reply.edns_options.is_empty(),
            "no upstream option reaches the client:\n{reply}"
        );
    }
    let received = upstream.received();
    assert_eq!(received.len(), asks.len(), "one upstream query per name");
    for query in &received {
        let edns = query.edns.as_ref().expect("we always send our own OPT");
        assert!(
            edns.options().as_ref().is_empty(),
            "the upstream got client options: {:?}",
            edns.options()
        );
    }
    let dnssec_ok: Vec<bool> = received
        .iter()
        .filter_map(|q| q.edns.as_ref().map(|e| e.flags().dnssec_ok))
        .collect();
    assert_eq!(
        dnssec_ok,
        [false, false, false, true],
        "the client's DO bit"
    );
}

#[test]
fn an_unknown_opcode_gets_notimp_with_only_qr_set() {
    let upstream = CookieUpstream::start();
    let server = forwarding_to(&upstream.address.to_string());
    // IQUERY, STATUS, NOTIFY, 6 (DSO) and 15 (unassigned), with the flags a client may set.
    for opcode in ["1", "2", "4", "6", "15"] {
        for flags in [&["+rec", "+cdflag"][..], &["+norec", "+noedns"][..]] {
            let option = format!("+opcode={opcode}");
            let mut args = vec!["app.internal", "A", option.as_str()];
            args.extend_from_slice(flags);
            let reply = server.dig(&args);
            assert_eq!(reply.status, "NOTIMP", "{reply}");
            assert_eq!(reply.flags, ["qr"], "opcode {opcode}: only QR\n{reply}");
            assert!(reply.answers.is_empty(), "{reply}");
        }
    }
    assert!(upstream.received().is_empty(), "nothing forwarded");
}

/// A query for `name` signed with TSIG (key `key.example.`, a MAC we cannot check) or, when
/// `sig0`, with a SIG(0) record; with EDNS when `edns`.
fn signed_query(id: u16, name: &str, sig0: bool, edns: bool) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii(name).expect("literal"),
        RecordType::A,
    ));
    if edns {
        message.edns = Some(Edns::new());
    }
    let key = Name::from_ascii("key.example.").expect("literal");
    if sig0 {
        // type covered, algorithm 15, labels, original TTL, expiration, inception, key tag,
        // signer, signature: any bytes, since no key can check them.
        let mut rdata = vec![
            0, 0, 15, 0, 0, 0, 0, 0, 0x70, 0, 0, 0, 0x60, 0, 0, 0, 0x12, 0x34,
        ];
        rdata.extend_from_slice(b"\x03key\x07example\x00");
        rdata.extend_from_slice(&[0x5a; 64]);
        let mut record = Record::from_rdata(
            Name::root(),
            0,
            RData::Unknown {
                code: RecordType::SIG,
                rdata: NULL::with(rdata),
            },
        );
        record.dns_class = DNSClass::ANY;
        message.additionals.push(record);
    } else {
        let time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let tsig = TSIG::new(
            TsigAlgorithm::HmacSha256,
            time,
            300,
            vec![0x5a; 32],
            id,
            None,
            Vec::new(),
        );
        message.signature = Some(Box::new(make_tsig_record(key, tsig)));
    }
    message.to_vec().expect("a signed query encodes")
}

#[test]
fn a_signed_query_gets_notauth_with_an_unsigned_badkey_tsig_and_is_never_forwarded() {
    let upstream = CookieUpstream::start();
    let server = forwarding_to(&upstream.address.to_string());
    let address = server.listen_addresses()[0];
    let mut id = 0x4000;
    for name in ["app.internal.", "www.example.test."] {
        for (sig0, edns, tcp) in [
            (false, true, false),
            (false, false, true),
            (true, false, false),
            (true, true, true),
        ] {
            id += 1;
            let query = signed_query(id, name, sig0, edns);
            let reply = if tcp {
                wire::tcp_ask(address, &query)
            } else {
                let socket = wire::udp_to(address);
                socket.send(&query).expect("send the query");
                let deadline = Instant::now() + wire::REPLY_DEADLINE;
                wire::udp_until_id(&socket, id, deadline)
                    .expect("a reply over UDP")
                    .0
            };
            let what = format!("{name} sig0={sig0} edns={edns} tcp={tcp}: {reply}");
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NotAuth,
                "{what}"
            );
            assert!(
                reply.answers.is_empty() && reply.authorities.is_empty(),
                "{what}"
            );
            assert_eq!(reply.edns.is_some(), edns, "OPT as asked: {what}");
            let [tsig] = reply.additionals.as_slice() else {
                panic!("one TSIG record: {what}");
            };
            assert_eq!(
                tsig.name,
                Name::from_ascii(if sig0 { "." } else { "key.example." }).expect("literal")
            );
            assert_eq!(tsig.dns_class, DNSClass::ANY, "{what}");
            let RData::TSIG(tsig) = &tsig.data else {
                panic!("a TSIG record: {what}");
            };
            assert_eq!(tsig.error, Some(TsigError::BadKey), "{what}");
            assert!(tsig.mac.is_empty(), "unsigned: {what}");
            assert_eq!(tsig.oid, id, "{what}");
        }
    }
    assert!(upstream.received().is_empty(), "nothing forwarded");
}
