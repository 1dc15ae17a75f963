//! What a client that checks its answers strictly sees: every forwarded answer, cached or not,
//! built for the client that asked (OPT exactly when its query had one, our payload size, its
//! DO bit, no option from another client or the upstream: no foreign COOKIE, NSID, padding),
//! and no client option passed upstream.

use crate::support::upstream::{CookieUpstream, Unbound};
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
