//! Counters and histograms of what the server does, and their Prometheus text form (served by
//! `ops::metrics_http`). Recording is a few relaxed atomic adds: nothing on the query path waits
//! for a lock.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use hickory_proto::rr::RecordType;

use crate::health::Outcome;

/// Query types counted by name; everything else is `other`.
const QUERY_TYPES: [&str; 12] = [
    "a", "aaaa", "any", "https", "svcb", "ptr", "soa", "mx", "txt", "ns", "srv", "other",
];

/// What became of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryOutcome {
    /// Answered with records from the owned zones.
    Answer,
    /// NXDOMAIN for an owned name.
    NxDomain,
    /// NODATA for an owned name.
    NoData,
    /// Answered by an upstream (or from the cache of upstream answers).
    Forwarded,
    /// REFUSED.
    Refused,
    /// SERVFAIL (every upstream failed).
    ServFail,
    /// FORMERR (malformed query).
    FormErr,
    /// NOTIMP or BADVERS.
    NotImplemented,
}

const OUTCOMES: [&str; 8] = [
    "answer",
    "nxdomain",
    "nodata",
    "forwarded",
    "refused",
    "servfail",
    "formerr",
    "notimp",
];

impl QueryOutcome {
    fn index(self) -> usize {
        self as usize
    }
}

/// What became of one attempt at one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// A usable answer.
    Answered,
    /// No answer in time.
    Timeout,
    /// A network or protocol error.
    Error,
    /// SERVFAIL or REFUSED.
    Failed,
}

const UPSTREAM_OUTCOMES: [&str; 4] = ["answered", "timeout", "error", "failed"];

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let separator = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

#[derive(Debug, Default)]
struct UpstreamCounters {
    outcomes: [AtomicU64; UPSTREAM_OUTCOMES.len()],
    latency: Histogram,
}

#[derive(Debug, Default)]
struct Inner {
    queries: [[AtomicU64; OUTCOMES.len()]; QUERY_TYPES.len()],
    handling: Histogram,
    failovers: AtomicU64,
    reports: [AtomicU64; 2],
    upstreams: DashMap<SocketAddr, UpstreamCounters>,
    reloads: [AtomicU64; 2],
    cache_hits: AtomicU64,
}

/// The server's metrics. Cheap to clone; all clones count into the same numbers.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Inner>,
}

fn query_type_index(query_type: RecordType) -> usize {
    let name = match query_type {
        RecordType::A => "a",
        RecordType::AAAA => "aaaa",
        RecordType::ANY => "any",
        RecordType::HTTPS => "https",
        RecordType::SVCB => "svcb",
        RecordType::PTR => "ptr",
        RecordType::SOA => "soa",
        RecordType::MX => "mx",
        RecordType::TXT => "txt",
        RecordType::NS => "ns",
        RecordType::SRV => "srv",
        _ => "other",
    };
    QUERY_TYPES
        .iter()
        .position(|&t| t == name)
        .unwrap_or(QUERY_TYPES.len() - 1)
}

impl Metrics {
    /// Fresh counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one query of `query_type` (None: no parsable question) and its handling time.
    pub fn query(&self, query_type: Option<RecordType>, outcome: QueryOutcome, elapsed: Duration) {
        let type_index = query_type.map_or(QUERY_TYPES.len() - 1, query_type_index);
        self.inner.queries[type_index][outcome.index()].fetch_add(1, Ordering::Relaxed);
        self.inner.handling.observe(elapsed);
    }

    /// Counts a forwarded query answered from the cache.
    pub fn cache_hit(&self) {
        self.inner.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a change of a name's first endpoint.
    pub fn failover(&self) {
        self.inner.failovers.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a report accepted from the agent.
    pub fn report(&self, outcome: Outcome) {
        let index = match outcome {
            Outcome::Success => 0,
            Outcome::Failure => 1,
        };
        self.inner.reports[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one attempt at one upstream and how long it took.
    pub fn upstream(&self, upstream: SocketAddr, outcome: UpstreamOutcome, elapsed: Duration) {
        let counters = self.inner.upstreams.entry(upstream).or_default();
        counters.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        counters.latency.observe(elapsed);
    }

    /// Counts a reload by outcome.
    pub fn reload(&self, succeeded: bool) {
        self.inner.reloads[usize::from(!succeeded)].fetch_add(1, Ordering::Relaxed);
    }

    /// Queries counted so far with `outcome`, all types together (for tests and status).
    pub fn queries_with(&self, outcome: QueryOutcome) -> u64 {
        self.inner
            .queries
            .iter()
            .map(|row| row[outcome.index()].load(Ordering::Relaxed))
            .sum()
    }

    /// Everything, in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let inner = &self.inner;
        let mut out = String::new();
        out.push_str("# HELP failover_dns_build_info Build information.\n# TYPE failover_dns_build_info gauge\n");
        let _ = writeln!(
            out,
            "failover_dns_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        out.push_str("# HELP failover_dns_queries_total DNS queries by type and outcome.\n# TYPE failover_dns_queries_total counter\n");
        for (type_index, row) in inner.queries.iter().enumerate() {
            for (outcome_index, counter) in row.iter().enumerate() {
                let value = counter.load(Ordering::Relaxed);
                if value > 0 {
                    let _ = writeln!(
                        out,
                        "failover_dns_queries_total{{type=\"{}\",outcome=\"{}\"}} {value}",
                        QUERY_TYPES[type_index], OUTCOMES[outcome_index]
                    );
                }
            }
        }
        out.push_str("# HELP failover_dns_query_duration_seconds Time from a query's arrival to its reply.\n# TYPE failover_dns_query_duration_seconds histogram\n");
        inner
            .handling
            .render(&mut out, "failover_dns_query_duration_seconds", "");
        out.push_str("# HELP failover_dns_failovers_total Times the first endpoint of a shared name's answer changed.\n# TYPE failover_dns_failovers_total counter\n");
        let _ = writeln!(
            out,
            "failover_dns_failovers_total {}",
            inner.failovers.load(Ordering::Relaxed)
        );
        out.push_str("# HELP failover_dns_reports_total Health reports accepted, by outcome.\n# TYPE failover_dns_reports_total counter\n");
        for (label, counter) in ["success", "failure"].iter().zip(&inner.reports) {
            let _ = writeln!(
                out,
                "failover_dns_reports_total{{outcome=\"{label}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP failover_dns_cache_hits_total Forwarded queries answered from the cache.\n# TYPE failover_dns_cache_hits_total counter\n");
        let _ = writeln!(
            out,
            "failover_dns_cache_hits_total {}",
            inner.cache_hits.load(Ordering::Relaxed)
        );
        out.push_str("# HELP failover_dns_upstream_queries_total Attempts at upstream resolvers, by outcome.\n# TYPE failover_dns_upstream_queries_total counter\n");
        let mut upstreams: Vec<SocketAddr> = inner.upstreams.iter().map(|e| *e.key()).collect();
        upstreams.sort();
        for upstream in &upstreams {
            if let Some(counters) = inner.upstreams.get(upstream) {
                for (label, counter) in UPSTREAM_OUTCOMES.iter().zip(&counters.outcomes) {
                    let _ = writeln!(
                        out,
                        "failover_dns_upstream_queries_total{{upstream=\"{upstream}\",outcome=\"{label}\"}} {}",
                        counter.load(Ordering::Relaxed)
                    );
                }
            }
        }
        out.push_str("# HELP failover_dns_upstream_duration_seconds Time one upstream attempt took.\n# TYPE failover_dns_upstream_duration_seconds histogram\n");
        for upstream in &upstreams {
            if let Some(counters) = inner.upstreams.get(upstream) {
                let labels = format!("upstream=\"{upstream}\"");
                counters.latency.render(
                    &mut out,
                    "failover_dns_upstream_duration_seconds",
                    &labels,
                );
            }
        }
        out.push_str("# HELP failover_dns_reloads_total Configuration reloads, by outcome.\n# TYPE failover_dns_reloads_total counter\n");
        for (label, counter) in ["success", "failure"].iter().zip(&inner.reloads) {
            let _ = writeln!(
                out,
                "failover_dns_reloads_total{{outcome=\"{label}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_counters_table() {
        let metrics = Metrics::new();
        metrics.query(
            Some(RecordType::A),
            QueryOutcome::Answer,
            Duration::from_micros(20),
        );
        metrics.query(
            Some(RecordType::A),
            QueryOutcome::Answer,
            Duration::from_micros(20),
        );
        metrics.query(
            Some(RecordType::HTTPS),
            QueryOutcome::NoData,
            Duration::from_micros(3),
        );
        metrics.query(None, QueryOutcome::FormErr, Duration::from_micros(1));
        metrics.report(Outcome::Failure);
        metrics.failover();
        metrics.reload(false);
        let upstream: SocketAddr = "127.0.0.1:53".parse().expect("literal");
        metrics.upstream(upstream, UpstreamOutcome::Timeout, Duration::from_secs(2));
        let text = metrics.render();
        let expected = [
            "failover_dns_queries_total{type=\"a\",outcome=\"answer\"} 2",
            "failover_dns_queries_total{type=\"https\",outcome=\"nodata\"} 1",
            "failover_dns_queries_total{type=\"other\",outcome=\"formerr\"} 1",
            "failover_dns_query_duration_seconds_bucket{le=\"0.00001\"} 2",
            "failover_dns_query_duration_seconds_bucket{le=\"0.00005\"} 4",
            "failover_dns_query_duration_seconds_count 4",
            "failover_dns_reports_total{outcome=\"failure\"} 1",
            "failover_dns_reports_total{outcome=\"success\"} 0",
            "failover_dns_failovers_total 1",
            "failover_dns_reloads_total{outcome=\"failure\"} 1",
            "failover_dns_upstream_queries_total{upstream=\"127.0.0.1:53\",outcome=\"timeout\"} 1",
            "failover_dns_upstream_duration_seconds_bucket{upstream=\"127.0.0.1:53\",le=\"5\"} 1",
        ];
        for line in expected {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(metrics.queries_with(QueryOutcome::Answer), 2);
    }
}
