//! Measures the answer path in process, bytes in → bytes out (`Handler::handle` over UDP: parse,
//! zone lookup, policy filter, health order, response encoding), with no sockets:
//!
//! - `answer_path/*`: one query type each against 1,000 shared names of 4 A + 2 AAAA endpoints,
//!   with health ordering active (the asked name has its primary reported down and a virtual
//!   asset reported up): A (with and without EDNS), AAAA, AAAA NODATA, NXDOMAIN;
//! - `answer_path_scale/*`: A and NXDOMAIN queries rotating over 1,024 different names, at 1,000
//!   and at 100,000 shared names, to show that the per-query cost does not grow with the zone;
//! - `forwarded_from_cache/*`: a name outside the zone answered from the forwarder's cache
//!   (filled once from a fake upstream on 127.0.0.1): `a` through the general path, `a_memoised`
//!   through the fast path (the memo ages the cached answer's TTLs itself);
//! - `forwarded_stale/*`: the serve-stale look-up (RFC 8767) of an answer that expired a minute
//!   ago (`stale`: found, re-addressed, every TTL set to 30, encoded) next to the fresh cache
//!   look-up of the same answer (`fresh`), both straight on the forwarder, no upstream involved;
//! - `answer_path_memoised/*`: the fast path (`Handler::handle_memoised`, as the UDP loop calls
//!   it), A and NXDOMAIN queries rotating over 1,024 names at 1,000 and 100,000 names, the memo
//!   warm: what a repeated query costs in user space.
//!
//! Run with `cargo bench --bench answer_path`. Under `cargo test` each runs once, on 1,000 and
//! 2,000 names.

mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::time::Duration;

use common::{answer, answer_addresses, handler, query, shared_name, summary};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use failover_dns::internals::AnswerMemo;
use failover_dns::internals::ForwardSettings;
use failover_dns::internals::Handler;
use failover_dns::internals::HealthTable;
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

/// The small zone size.
const SMALL: usize = 1_000;
/// How many different names the scale benchmarks rotate through.
const ROTATION: usize = 1_024;

fn single_queries(c: &mut Criterion) {
    let handler = handler(SMALL);
    let name = shared_name(0);
    let cases = [
        ("a_4_endpoints", query(1, &name, RecordType::A, false)),
        ("a_4_endpoints_edns", query(2, &name, RecordType::A, true)),
        ("aaaa_2_endpoints", query(3, &name, RecordType::AAAA, false)),
        (
            "aaaa_nodata",
            query(4, common::V4_ONLY, RecordType::AAAA, false),
        ),
        (
            "nxdomain",
            query(5, "nope.bench.internal", RecordType::A, false),
        ),
    ];
    // The answers are what the benchmark claims they are.
    let a = answer_addresses(&answer(&handler, &cases[0].1));
    assert_eq!(a.len(), 4, "4 A endpoints");
    assert_eq!(a[0], common::second_v4(0), "reported-up endpoint first");
    assert_eq!(a[3], common::primary_v4(0), "reported-down endpoint last");
    assert_eq!(
        summary(&answer(&handler, &cases[2].1)),
        (ResponseCode::NoError, 2)
    );
    assert_eq!(
        summary(&answer(&handler, &cases[3].1)),
        (ResponseCode::NoError, 0)
    );
    assert_eq!(
        summary(&answer(&handler, &cases[4].1)),
        (ResponseCode::NXDomain, 0)
    );

    let mut group = c.benchmark_group("answer_path");
    group.throughput(Throughput::Elements(1));
    for (label, packet) in &cases {
        group.bench_function(*label, |b| {
            b.iter(|| answer(&handler, black_box(packet)));
        });
    }
    group.finish();
}

/// Queries for `ROTATION` names spread over `0..names` (a fixed stride, so every size touches
/// names all over its table, not only the first thousand).
fn rotation(names: usize, qtype: RecordType, existing: bool) -> Vec<Vec<u8>> {
    let stride = (names / ROTATION).max(1);
    (0..ROTATION)
        .map(|k| {
            let i = (k * stride) % names;
            let id = u16::try_from(k).expect("ROTATION fits u16");
            let name = if existing {
                shared_name(i)
            } else {
                format!("x{i}.{}", common::ORIGIN)
            };
            query(id, &name, qtype, false)
        })
        .collect()
}

/// The two rotations the scale benchmarks run: A for existing names, A for missing ones.
fn rotations(names: usize) -> [(&'static str, Vec<Vec<u8>>); 2] {
    [
        ("a", rotation(names, RecordType::A, true)),
        ("nxdomain", rotation(names, RecordType::A, false)),
    ]
}

fn scale(c: &mut Criterion) {
    let mut group = c.benchmark_group("answer_path_scale");
    group.throughput(Throughput::Elements(1));
    for names in [SMALL, common::large_size()] {
        let handler = handler(names);
        for (label, packets) in rotations(names) {
            let expected = if label == "a" {
                ResponseCode::NoError
            } else {
                ResponseCode::NXDomain
            };
            for packet in packets.iter().take(8) {
                assert_eq!(summary(&answer(&handler, packet)).0, expected);
            }
            group.bench_with_input(BenchmarkId::new(label, names), &packets, |b, packets| {
                let mut next = 0usize;
                b.iter(|| {
                    next = (next + 1) % packets.len();
                    answer(&handler, black_box(&packets[next]))
                });
            });
        }
    }
    group.finish();
}

/// A one-shot fake upstream on 127.0.0.1: answers the first query it gets with one A record
/// (TTL one hour), then exits. Bounded: gives up after 5 seconds.
fn fake_upstream() -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a timeout");
    let address = socket.local_addr().expect("bound address");
    let thread = std::thread::spawn(move || {
        let mut buffer = [0u8; 1500];
        let Ok((length, peer)) = socket.recv_from(&mut buffer) else {
            return;
        };
        let Ok(request) = Message::from_vec(&buffer[..length]) else {
            return;
        };
        let mut response = request.clone();
        response.metadata.message_type = MessageType::Response;
        response.metadata.recursion_available = true;
        if let Some(q) = request.queries.first() {
            response.answers.push(Record::from_rdata(
                q.name().clone(),
                3600,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            ));
        }
        if let Ok(bytes) = response.to_vec() {
            let _ = socket.send_to(&bytes, peer);
        }
    });
    (address, thread)
}

fn forwarded_from_cache(c: &mut Criterion) {
    let (upstream, thread) = fake_upstream();
    let forwarder = ForwardSettings {
        upstreams: vec![failover_dns::UpstreamSpec::plain(upstream)],
        ..ForwardSettings::default()
    };
    let snapshot = failover_dns::internals::Snapshot::new(
        common::zone_data(SMALL),
        failover_dns::Identity::default(),
    );
    let handler = Handler::standalone(
        failover_dns::internals::SharedSnapshot::new(snapshot),
        HealthTable::new(),
        forwarder,
    );
    let packet = query(9, "www.example.com", RecordType::A, false);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let first = runtime
        .block_on(common::respond(&handler, &packet))
        .expect("the fake upstream answers");
    thread.join().expect("fake upstream thread");
    assert_eq!(
        answer_addresses(&first),
        [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))]
    );
    // From now on the answer comes from the cache (the fake upstream has exited).
    assert_eq!(answer_addresses(&answer(&handler, &packet)).len(), 1);

    let mut memo = AnswerMemo::new();
    for _ in 0..2 {
        common::answer_memoised(&handler, &mut memo, &packet);
    }
    let hits_before = memo.hits();
    assert_eq!(
        answer_addresses(&common::answer_memoised(&handler, &mut memo, &packet)),
        answer_addresses(&answer(&handler, &packet)),
    );
    assert_eq!(
        memo.hits(),
        hits_before + 1,
        "the cached answer comes from the memo"
    );

    let mut group = c.benchmark_group("forwarded_from_cache");
    group.throughput(Throughput::Elements(1));
    group.bench_function("a", |b| b.iter(|| answer(&handler, black_box(&packet))));
    group.bench_function("a_memoised", |b| {
        let mut buffer = Vec::new();
        b.iter(|| {
            buffer = common::answer_memoised_into(
                &handler,
                &mut memo,
                black_box(&packet),
                std::mem::take(&mut buffer),
            );
            buffer.len()
        });
    });
    group.finish();
}

fn forwarded_stale(c: &mut Criterion) {
    let handler = Handler::standalone(
        failover_dns::internals::SharedSnapshot::new(failover_dns::internals::Snapshot::new(
            common::zone_data(SMALL),
            failover_dns::Identity::default(),
        )),
        HealthTable::new(),
        ForwardSettings::default(),
    );
    let forwarder = handler.forwarder();
    let packet = query(11, "www.example.com", RecordType::A, true);
    let request = Message::from_vec(&packet).expect("the query parses");
    let mut response = request.clone();
    response.metadata.message_type = MessageType::Response;
    if let Some(q) = request.queries.first() {
        response.answers.push(Record::from_rdata(
            q.name().clone(),
            60,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
        ));
    }
    let now = std::time::Instant::now();
    let two_minutes_ago = now
        .checked_sub(Duration::from_secs(120))
        .expect("the clock has run two minutes");
    forwarder.cache_response(&request, &response, two_minutes_ago);
    let limit =
        failover_dns::internals::size_limit(&request, failover_dns::internals::Transport::Udp);
    let stale = forwarder.stale_at(&request, now).expect("a stale answer");
    assert!(stale.answers.iter().all(|r| r.ttl == 30), "TTL 30");
    assert!(forwarder.cached_at(&request, now).is_none(), "never fresh");
    let fresh = {
        let fresh_request = Message::from_vec(&query(12, "fresh.example.com", RecordType::A, true))
            .expect("the query parses");
        let mut fresh_response = response.clone();
        fresh_response.queries = fresh_request.queries.clone();
        forwarder.cache_response(&fresh_request, &fresh_response, now);
        fresh_request
    };
    assert!(forwarder.cached_at(&fresh, now).is_some());

    let mut group = c.benchmark_group("forwarded_stale");
    group.throughput(Throughput::Elements(1));
    group.bench_function("stale", |b| {
        b.iter(|| {
            let stale = forwarder.stale_at(black_box(&request), now);
            stale.map(|m| failover_dns::internals::encode_response(&m, limit).len())
        })
    });
    group.bench_function("fresh", |b| {
        b.iter(|| {
            let cached = forwarder.cached_at(black_box(&fresh), now);
            cached.map(|c| failover_dns::internals::encode_response(&c.response, limit).len())
        })
    });
    group.finish();
}

fn memoised(c: &mut Criterion) {
    let mut group = c.benchmark_group("answer_path_memoised");
    group.throughput(Throughput::Elements(1));
    for names in [SMALL, common::large_size()] {
        let handler = handler(names);
        for (label, packets) in rotations(names) {
            let mut memo = AnswerMemo::new();
            // Warm: every packet through the general path (twice: the first pass may lose a
            // few answers to collisions while the table grows). Then every memoised answer must
            // be the general path's, and nearly all must come from the memo (a few keys that
            // share a pair of slots keep replacing each other).
            for packet in packets.iter().chain(&packets) {
                common::answer_memoised(&handler, &mut memo, packet);
            }
            let hits_before = memo.hits();
            for packet in &packets {
                assert_eq!(
                    common::answer_memoised(&handler, &mut memo, packet),
                    answer(&handler, packet)
                );
            }
            let hits = memo.hits() - hits_before;
            assert!(
                hits * 100 >= packets.len() as u64 * 97,
                "{hits} of {} answered from the memo",
                packets.len()
            );
            group.bench_with_input(BenchmarkId::new(label, names), &packets, |b, packets| {
                let (mut next, mut buffer) = (0usize, Vec::new());
                b.iter(|| {
                    next = (next + 1) % packets.len();
                    let packet = black_box(&packets[next]);
                    buffer = common::answer_memoised_into(
                        &handler,
                        &mut memo,
                        packet,
                        std::mem::take(&mut buffer),
                    );
                    buffer.len()
                });
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    single_queries,
    scale,
    forwarded_from_cache,
    forwarded_stale,
    memoised
);
criterion_main!(benches);
