//! Measures the health table in process, with no sockets:
//!
//! - `health_reports/single_thread`: reports per second into the `HealthTable` from one thread
//!   (alternating outcomes over the 6,000 endpoint addresses of 1,000 shared names);
//! - `health_reports/two_threads_while_answering`: the same from two reporting threads at once
//!   while a third thread answers queries through the full answer path without pause (the
//!   answering thread's rate is printed after the group);
//! - `report_to_answer/same_thread`: one report followed by the next answer, checked to have
//!   moved the reported endpoint (the in-process "report is in the next answer" cost);
//! - printed, not criterion: the report → visible-in-an-answer latency across threads (one
//!   thread answers in a loop, another reports; the time from the start of `report` to the end
//!   of the first answer that shows it), as p50/p99/max over many reports.
//!
//! Run with `cargo bench --bench health`. Under `cargo test` each runs once, briefly.

mod common;

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{addresses, answer, handler, query, report, shared_name};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use failover_dns::Outcome;
use failover_dns::internals::Handler;
use failover_dns::internals::HealthTable;
use hickory_proto::rr::RecordType;

/// Zone size for these benchmarks.
const NAMES: usize = 1_000;

/// Every endpoint address of the generated names `range`.
fn endpoint_addresses(range: std::ops::Range<usize>) -> Vec<IpAddr> {
    range.flat_map(addresses).collect()
}

/// Answers queries for rotating names until `stop`; counts answers in `answered`.
fn answer_until(handler: &Handler, stop: &AtomicBool, answered: &AtomicU64) {
    let packets: Vec<Vec<u8>> = (0..NAMES)
        .map(|i| {
            let id = u16::try_from(i).expect("NAMES fits u16");
            query(id, &shared_name(i), RecordType::A, false)
        })
        .collect();
    let mut count = 0u64;
    'outer: loop {
        for packet in &packets {
            black_box(answer(handler, packet));
            count += 1;
            if count.is_multiple_of(256) && stop.load(Ordering::Relaxed) {
                break 'outer;
            }
        }
    }
    answered.fetch_add(count, Ordering::Relaxed);
}

/// Outcome `k` of an alternating sequence.
fn outcome(k: u64) -> Outcome {
    if k.is_multiple_of(2) {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

fn reports(c: &mut Criterion) {
    let handler = handler(NAMES);
    let health: HealthTable = handler.health().clone();
    let all = endpoint_addresses(0..NAMES);
    let (first_half, second_half) = all.split_at(all.len() / 2);

    let mut group = c.benchmark_group("health_reports");
    group.throughput(Throughput::Elements(1));
    group.bench_function("single_thread", |b| {
        let mut k = 0u64;
        b.iter(|| {
            k += 1;
            let address = all[usize::try_from(k).unwrap_or(0) % all.len()];
            report(&health, black_box(address), outcome(k / 7));
        });
    });

    // A third thread answers queries for the whole measurement of this benchmark.
    let stop = AtomicBool::new(false);
    let answered = AtomicU64::new(0);
    let mut measured = Duration::ZERO;
    let mut reported = 0u64;
    std::thread::scope(|scope| {
        scope.spawn(|| answer_until(&handler, &stop, &answered));
        let started = Instant::now();
        group.bench_function("two_threads_while_answering", |b| {
            b.iter_custom(|iterations| {
                let per_thread = iterations.div_ceil(2);
                let barrier = Barrier::new(2);
                let run = |addresses: &[IpAddr]| {
                    barrier.wait();
                    let start = Instant::now();
                    for k in 0..per_thread {
                        let index = usize::try_from(k).unwrap_or(0) % addresses.len();
                        report(&health, addresses[index], outcome(k / 7));
                    }
                    start.elapsed()
                };
                let elapsed = std::thread::scope(|inner| {
                    let one = inner.spawn(|| run(first_half));
                    let two = inner.spawn(|| run(second_half));
                    let one = one.join().expect("reporter thread");
                    let two = two.join().expect("reporter thread");
                    one.max(two)
                });
                reported += per_thread * 2;
                // Criterion divides by `iterations`; report the wall time for that many reports.
                elapsed.mul_f64(iterations as f64 / (per_thread * 2) as f64)
            });
        });
        measured = started.elapsed();
        stop.store(true, Ordering::Relaxed);
    });
    group.finish();
    let answers = answered.load(Ordering::Relaxed);
    println!(
        "health_reports/two_threads_while_answering: the answering thread answered {answers} \
         queries in {:.1} s ({:.0} answers/s) while {reported} reports were made",
        measured.as_secs_f64(),
        answers as f64 / measured.as_secs_f64().max(1e-9),
    );
}

fn report_to_answer(c: &mut Criterion) {
    let handler = handler(NAMES);
    let health = handler.health().clone();
    // Name 1: its primary was not reported, so flipping it moves it between first and last.
    let packet = query(7, &shared_name(1), RecordType::A, false);
    let primary = common::primary_v4(1);
    let mut group = c.benchmark_group("report_to_answer");
    group.throughput(Throughput::Elements(1));
    group.bench_function("same_thread", |b| {
        let mut k = 0u64;
        b.iter(|| {
            k += 1;
            let failed = k.is_multiple_of(2);
            let outcome = if failed {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            report(&health, primary, outcome);
            let reply = answer(&handler, black_box(&packet));
            // Checked in test mode only: parsing would dominate the measurement.
            if cfg!(debug_assertions) {
                let order = common::answer_addresses(&reply);
                let position = order.iter().position(|&a| a == primary);
                let expected = if failed { Some(3) } else { Some(0) };
                assert_eq!(position, expected, "the report is in the next answer");
            }
            reply
        });
    });
    group.finish();
    cross_thread_visibility(&handler);
}

/// One thread answers the same query in a loop; another reports, alternately, a failure and a
/// success for the name's primary, each time waiting until the answering thread has seen it.
/// Prints the distribution of report-start → end-of-first-answer-showing-it.
fn cross_thread_visibility(handler: &Handler) {
    let samples_wanted = if common::measuring() { 20_000 } else { 200 };
    let health = handler.health().clone();
    let packet = query(8, &shared_name(1), RecordType::A, false);
    let primary = common::primary_v4(1);
    // The two possible answers, computed up front so the answering thread compares bytes only.
    report(&health, primary, Outcome::Success);
    let primary_first = answer(handler, &packet);
    report(&health, primary, Outcome::Failure);
    let primary_last = answer(handler, &packet);
    assert_ne!(primary_first, primary_last);

    let epoch = Instant::now();
    let reported_at = AtomicU64::new(0); // nanoseconds since epoch of the last report's start
    let seen = AtomicU64::new(0); // how many changes the answering thread has seen
    let stop = AtomicBool::new(false);
    let latencies = std::thread::scope(|scope| {
        let answering = scope.spawn(|| {
            let mut latencies = Vec::with_capacity(samples_wanted);
            let mut current_first = false; // the last report was a failure
            while !stop.load(Ordering::Relaxed) {
                let reply = answer(handler, &packet);
                let done = epoch.elapsed();
                let shows_first = if reply == primary_first {
                    true
                } else if reply == primary_last {
                    false
                } else {
                    panic!("unexpected answer")
                };
                if shows_first != current_first {
                    current_first = shows_first;
                    let started = Duration::from_nanos(reported_at.load(Ordering::Acquire));
                    latencies.push(done.saturating_sub(started));
                    seen.fetch_add(1, Ordering::Release);
                }
            }
            latencies
        });
        let give_up = Instant::now() + Duration::from_secs(60);
        for k in 1..=samples_wanted as u64 {
            // A short gap so the report lands at a random point of an answer in progress.
            let pause = Instant::now() + Duration::from_micros(5 + k % 17);
            while Instant::now() < pause {
                std::hint::spin_loop();
            }
            let start = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            reported_at.store(start, Ordering::Release);
            let outcome = if k % 2 == 1 {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            report(&health, primary, outcome);
            while seen.load(Ordering::Acquire) < k && Instant::now() < give_up {
                std::hint::spin_loop();
            }
        }
        stop.store(true, Ordering::Relaxed);
        answering.join().expect("answering thread")
    });
    let mut sorted = latencies;
    sorted.sort_unstable();
    let micros = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
    println!(
        "report_to_answer/cross_thread: {} reports; report start → end of the first answer \
         showing it: p50 {:.2} µs, p99 {:.2} µs, max {:.2} µs",
        sorted.len(),
        micros(common::quantile(&sorted, 0.50)),
        micros(common::quantile(&sorted, 0.99)),
        micros(sorted.last().copied()),
    );
}

fn config() -> Criterion {
    Criterion::default().configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = reports, report_to_answer
}
criterion_main!(benches);
