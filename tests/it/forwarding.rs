//! Forwarding names outside the owned zones to real upstreams (`unbound`, started by the test on
//! loopback): faithful answers, TCP when the upstream truncates, timeouts and the next upstream,
//! hold-down, SERVFAIL when all fail, the cache (counted at the upstream), and loop avoidance.

use std::time::{Duration, Instant};

use crate::support::upstream::{CookieUpstream, SilentUpstream, Unbound, free_port};
use crate::support::wire;
use crate::support::zones::APP_PRIMARY_ONLY_ZONE;
use crate::support::{Dig, Server, wait_for};

const RECORDS: &[&str] = &[
    "www.example.test. 300 IN A 198.51.100.7",
    "www.example.test. 300 IN TXT \\\"hello upstream\\\"",
    "www.example.test. 300 IN MX 10 mail.example.test.",
    "mail.example.test. 300 IN A 198.51.100.25",
];

fn start_forwarding(upstreams: &[String], extra: &[&str]) -> Server {
    let mut args: Vec<&str> = Vec::new();
    for upstream in upstreams {
        args.extend(["--upstream", upstream.as_str()]);
    }
    args.extend(extra);
    Server::start(&[("zone.toml", APP_PRIMARY_ONLY_ZONE)], &args)
}

/// What must be identical between the upstream's own reply and ours.
fn comparable(reply: &Dig) -> String {
    format!(
        "status={} flags={:?} question={:?} answers={:?} authority={:?} additional={:?} edns={}",
        reply.status,
        reply.flags,
        reply.question,
        reply.answers,
        reply.authority,
        reply.additional,
        reply.edns_udp.is_some()
    )
}

#[test]
fn forwarded_replies_carry_the_upstreams_rcode_flags_and_sections() {
    let unbound = Unbound::start(RECORDS);
    let server = start_forwarding(&[unbound.upstream_arg()], &[]);
    assert_eq!(
        server.forwarding_line(),
        format!("forwarding to {}", unbound.address)
    );
    let cases: &[&[&str]] = &[
        &["www.example.test", "A"],
        &["WWW.Example.TEST", "A", "+dnssec"],
        &["www.example.test", "AAAA"],
        &["www.example.test", "TXT", "+cdflag"],
        &["www.example.test", "MX"],
        &["nx.example.test", "A"],
        &["nx.example.test", "A", "+noedns"],
        &["www.example.test", "A", "+norecurse"],
        &["mail.example.test", "A", "+tcp"],
    ];
    for ask in cases {
        let direct = unbound.dig(ask).expect("unbound answers directly");
        let forwarded = server.dig(ask);
        assert_eq!(
            comparable(&forwarded),
            comparable(&direct),
            "dig {}: forwarded reply differs from the upstream's\n--- forwarded ---\n{forwarded}\n--- direct ---\n{direct}",
            ask.join(" ")
        );
    }
    // The answers are real ones, not two identical errors.
    let www = server.dig(&["www.example.test", "A"]);
    assert_eq!(www.answer_data(), ["198.51.100.7"]);
    let nx = server.dig(&["nx.example.test", "A"]);
    assert_eq!(nx.status, "NXDOMAIN");
    assert_eq!(nx.authority.len(), 1, "NXDOMAIN carries the upstream SOA");
    assert!(server.dig(&["mail.example.test", "A", "+tcp"]).transport == "TCP");
}

#[test]
fn owned_names_are_never_forwarded() {
    let unbound = Unbound::start(RECORDS);
    let server = start_forwarding(&[unbound.upstream_arg()], &[]);
    for ask in [
        ["app.internal", "A"],
        ["app.internal", "AAAA"],
        ["app.internal", "HTTPS"],
        ["nope.internal", "A"],
    ] {
        let reply = server.dig(&ask);
        assert!(reply.has_flag("aa"), "owned answers are ours: {reply}");
        assert!(reply.has_flag("ra"), "recursion is available now: {reply}");
    }
    assert!(
        !unbound.log().contains("internal."),
        "unbound saw an owned name:\n{}",
        unbound.log()
    );
}

#[test]
fn a_truncated_udp_reply_from_upstream_is_retried_over_tcp() {
    let records: Vec<String> = (1..=40)
        .map(|i| format!("big.example.test. 300 IN A 198.51.100.{i}"))
        .collect();
    let records: Vec<&str> = records.iter().map(String::as_str).collect();
    let unbound = Unbound::start_on("127.0.0.1", None, &records, &["max-udp-size: 512"]);
    let direct = unbound
        .dig(&["big.example.test", "A", "+bufsize=1232", "+ignore"])
        .expect("unbound answers");
    assert!(
        direct.has_flag("tc"),
        "the upstream truncates over UDP:\n{direct}"
    );
    let server = start_forwarding(&[unbound.upstream_arg()], &[]);
    let reply = server.dig(&["big.example.test", "A", "+bufsize=1232", "+ignore"]);
    assert!(!reply.has_flag("tc"), "{reply}");
    assert_eq!(reply.transport, "UDP");
    assert_eq!(reply.answers.len(), 40, "{reply}");
}

#[test]
fn a_silent_upstream_times_out_the_next_answers_and_it_is_then_held_down() {
    let silent = SilentUpstream::start();
    let unbound = Unbound::start(RECORDS);
    let server = start_forwarding(
        &[silent.address.to_string(), unbound.upstream_arg()],
        &["--upstream-timeout-ms", "300"],
    );
    // Two failures in a row put the silent upstream on hold; distinct names, so no cache hit.
    for name in ["www.example.test", "mail.example.test"] {
        let reply = server.dig(&[name, "A"]);
        assert_eq!(reply.status, "NOERROR", "{reply}");
        assert_eq!(reply.answers.len(), 1, "{reply}");
    }
    assert_eq!(silent.received(), 2, "the first upstream is tried first");
    for name in ["nx1.example.test", "nx2.example.test", "nx3.example.test"] {
        let reply = server.dig(&[name, "A"]);
        assert_eq!(reply.status, "NXDOMAIN", "{reply}");
    }
    assert_eq!(
        silent.received(),
        2,
        "a held-down upstream is skipped while another answers"
    );
    // The second attempt at the silent upstream loses the race to the answering one and times
    // out in the background, after the answer went out: the hold-down follows it.
    wait_for("the hold-down is logged", &server, || {
        server.stderr().contains("holding it down").then_some(())
    });
}

#[test]
fn an_upstream_that_refuses_is_skipped_for_the_next() {
    let refusing = Unbound::start_on(
        "127.0.0.1",
        None,
        &[],
        &["local-zone: \"other.test.\" refuse"],
    );
    let answering = Unbound::start_on(
        "127.0.0.1",
        None,
        &["other.test. 300 IN A 198.51.100.99"],
        &["local-zone: \"other.test.\" static"],
    );
    assert_eq!(
        refusing
            .dig(&["other.test", "A"])
            .expect("unbound answers")
            .status,
        "REFUSED"
    );
    let refused_before = refusing.queries_for("other.test.", "A");
    // A port nothing listens on: the connection is refused at once.
    let closed = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let server = start_forwarding(
        &[closed, refusing.upstream_arg(), answering.upstream_arg()],
        &[],
    );
    let reply = server.dig(&["other.test", "A"]);
    assert_eq!(reply.status, "NOERROR", "{reply}");
    assert_eq!(reply.answer_data(), ["198.51.100.99"]);
    assert_eq!(
        refusing.queries_for("other.test.", "A"),
        refused_before + 1,
        "the refusing upstream was asked before the answering one"
    );
}

/// SERVFAIL is about a name: a primary that answers it for a few names is still asked first
/// for every other name, and names only it knows never come back NXDOMAIN from a backup.
#[test]
fn an_upstreams_servfail_for_some_names_does_not_hold_it_down() {
    let primary = CookieUpstream::start();
    let backup = Unbound::start(RECORDS);
    let server = start_forwarding(
        &[primary.address.to_string()],
        &["--backup-upstream", &backup.upstream_arg()],
    );
    for name in [
        "servfail.example.test",
        "servfail2.example.test",
        "servfail3.example.test",
    ] {
        // The backup is asked once the primary failed for the name: it has no such name.
        let reply = server.dig(&[name, "A"]);
        assert_eq!(reply.status, "NXDOMAIN", "{reply}");
    }
    // Only the primary knows this one (it answers every other name).
    let reply = server.dig(&["only-primary.example.test", "A"]);
    assert_eq!(reply.status, "NOERROR", "{reply}");
    assert_eq!(reply.answer_data(), ["198.51.100.7"], "{reply}");
    assert_eq!(backup.queries_for("only-primary.example.test.", "A"), 0);
}

#[test]
fn when_every_upstream_fails_the_client_gets_servfail_in_bounded_time_and_owned_names_answer() {
    let first = SilentUpstream::start();
    let second = SilentUpstream::start();
    let server = start_forwarding(
        &[first.address.to_string(), second.address.to_string()],
        &["--upstream-timeout-ms", "200"],
    );
    let started = Instant::now();
    let reply = server.dig(&["www.example.test", "A", "+time=9"]);
    let took = started.elapsed();
    assert_eq!(reply.status, "SERVFAIL", "{reply}");
    assert!(
        took < Duration::from_secs(6),
        "SERVFAIL within the 5 s forwarding bound, took {took:?}"
    );
    assert_eq!((first.received(), second.received()), (1, 1));
    let owned = server.dig(&["app.internal", "A"]);
    assert_eq!(owned.answer_data(), ["100.64.1.10"]);
    let nodata = server.dig(&["app.internal", "AAAA"]);
    assert_eq!(
        (nodata.status.as_str(), nodata.answers.len()),
        ("NOERROR", 0)
    );
}

#[test]
fn repeated_questions_are_answered_from_the_cache() {
    let unbound = Unbound::start(RECORDS);
    let server = start_forwarding(&[unbound.upstream_arg()], &[]);
    for _ in 0..3 {
        assert_eq!(
            server.dig(&["www.example.test", "A"]).answer_data(),
            ["198.51.100.7"]
        );
        assert_eq!(server.dig(&["Nx.Example.Test", "A"]).status, "NXDOMAIN");
        assert_eq!(server.dig(&["www.example.test", "AAAA"]).status, "NOERROR");
    }
    assert_eq!(unbound.queries_for("www.example.test.", "A"), 1, "positive");
    assert_eq!(unbound.queries_for("nx.example.test.", "A"), 1, "NXDOMAIN");
    assert_eq!(
        unbound.queries_for("www.example.test.", "AAAA"),
        1,
        "NODATA"
    );
    // A cached answer is re-addressed: the question as asked, TTL counting down from 300.
    let cached = server.dig(&["WWW.example.test", "A"]);
    let question = cached.question.expect("question echoed");
    assert_eq!(question.name, "WWW.example.test.");
    assert!(cached.answers[0].ttl <= 300);

    let uncached = start_forwarding(&[unbound.upstream_arg()], &["--cache-size", "0"]);
    for _ in 0..2 {
        uncached.dig(&["mail.example.test", "A"]);
    }
    assert_eq!(
        unbound.queries_for("mail.example.test.", "A"),
        2,
        "--cache-size 0 disables the cache"
    );
}

/// A reload that adds a zone makes its names ours: a cached upstream answer that carries records
/// of those names (the tail of a `CNAME` chain) is not served again.
#[test]
fn a_reload_that_adds_a_zone_drops_cached_upstream_records_for_its_names() {
    let upstream = CookieUpstream::start();
    let server = start_forwarding(&[upstream.address.to_string()], &[]);
    let owners =
        |reply: &Dig| -> Vec<String> { reply.answers.iter().map(|r| r.name.clone()).collect() };
    let before = server.dig(&["alias.example.test", "A"]);
    assert_eq!(
        owners(&before),
        ["alias.example.test.", "target.example.test."],
        "the upstream follows the CNAME:\n{before}"
    );
    std::fs::write(
        server.zones_dir().join("target.toml"),
        "[[zone]]\norigin = \"target.example.test\"\n",
    )
    .expect("write a zone file");
    let output = server.cli(&["reload"]);
    assert!(output.status.success(), "reload: {output:?}");
    let after = server.dig(&["alias.example.test", "A"]);
    assert_eq!(
        owners(&after),
        ["alias.example.test."],
        "no upstream record for a name now ours:\n{after}"
    );
    let ours = server.dig(&["target.example.test", "A"]);
    assert!(ours.has_flag("aa"), "{ours}");
}

/// Repeats of the same query bytes (only the ID changes, as a stub resolver sends them) are
/// answered from the fast path's memo of cached answers: their TTL still counts down with the
/// answer's age, and the upstream is asked once.
#[test]
fn repeated_query_bytes_get_the_cached_answer_with_its_ttl_counting_down() {
    let unbound = Unbound::start(&["aged.example.test. 30 IN A 198.51.100.9"]);
    let server = start_forwarding(&[unbound.upstream_arg()], &[]);
    let address = server
        .listen_addresses()
        .first()
        .copied()
        .expect("a listen address");
    let ask = |id: u16| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let reply = wire::udp_ask(address, id, "aged.example.test.", deadline)
            .unwrap_or_else(|| panic!("query {id} answered"));
        assert_eq!(reply.metadata.id, id);
        let [answer] = reply.answers.as_slice() else {
            panic!("one answer for query {id}: {reply:?}");
        };
        answer.ttl
    };
    let first = ask(1);
    assert!((1..=30).contains(&first), "TTL {first}");
    // The first repeat is memoised from the cache; the next ones come from the memo. Ask until
    // a whole second has passed since the answer was cached and the TTL shows it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut id = 2;
    let mut ttls = Vec::new();
    loop {
        let ttl = ask(id);
        ttls.push(ttl);
        assert!(ttl <= first, "the TTL never grows: {ttls:?}");
        if ttl < first {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the TTL did not count down: {ttls:?}"
        );
        id += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(unbound.queries_for("aged.example.test.", "A"), 1);
}

#[test]
fn the_servers_own_listen_address_is_never_an_upstream() {
    let unbound = Unbound::start(RECORDS);
    let own = format!("127.0.0.81:{}", free_port("127.0.0.81"));
    let server = start_forwarding(
        &[own.clone(), unbound.upstream_arg()],
        &["--listen", own.as_str()],
    );
    assert_eq!(
        server.forwarding_line(),
        format!("forwarding to {}", unbound.address)
    );
    assert!(
        server.stderr().contains(&format!(
            "upstream {own} is this server's own listen address"
        )),
        "the dropped upstream is logged:\n{}",
        server.stderr()
    );
    assert_eq!(
        server.dig(&["www.example.test", "A"]).answer_data(),
        ["198.51.100.7"]
    );
}
