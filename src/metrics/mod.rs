//! Counters and histograms of what the server does, and their Prometheus text form (served by
//! `ops::metrics_http`). Recording is a few relaxed atomic adds into our own arrays of
//! `AtomicU64`: nothing on the query path waits for a lock. `prometheus-client` only encodes: a
//! [`Collector`] reads the atomics at scrape time and writes them through the crate's encoders
//! into the Prometheus text exposition format (version 0.0.4). The crate's own `Family` (a lock
//! per `get_or_create`) and `Histogram` (a lock per observation) are not used for that reason.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use hickory_proto::rr::RecordType;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet, prometheus_text,
};
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use crate::health::{Outcome, ReportSource};

/// The `Content-Type` of [`Metrics::render`]'s text: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Every metric's name starts with this (and `_`).
const PREFIX: &str = "failover_dns";

/// Query types counted by name; everything else is `other`.
const QUERY_TYPES: [&str; 12] = [
    "a", "aaaa", "any", "https", "svcb", "ptr", "soa", "mx", "txt", "ns", "srv", "other",
];

/// The kind of response a query got, as `queries_total{outcome}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
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
    /// An expired cached answer (RFC 8767), because no upstream answered in time.
    Stale,
    /// NOTAUTH: a signed query (TSIG, SIG(0)), and we hold no key.
    NotAuth,
}

const OUTCOMES: [&str; 10] = [
    "answer",
    "nxdomain",
    "nodata",
    "forwarded",
    "refused",
    "servfail",
    "formerr",
    "notimp",
    "stale",
    "notauth",
];

impl ResponseKind {
    fn index(self) -> usize {
        self as usize
    }
}

/// What one attempt at one upstream came to, as `upstream_queries_total{outcome}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
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

/// A latency histogram: one atomic per bucket, a count and a sum, each a relaxed add.
#[derive(Debug, Default)]
struct Histogram {
    /// Observations per bucket (not cumulative); those above the last bound are only counted.
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

    /// The values as of now, in the shape `prometheus-client`'s encoders take.
    fn snapshot(&self) -> HistogramSnapshot {
        let mut buckets = [(f64::INFINITY, 0); BUCKETS.len() + 1];
        let mut finite = 0u64;
        for ((slot, &bound), bucket) in buckets.iter_mut().zip(&BUCKETS).zip(&self.buckets) {
            let observed = bucket.load(Ordering::Relaxed);
            finite = finite.saturating_add(observed);
            *slot = (bound, observed);
        }
        // The count is added to after the bucket, and loads of separate atomics are not ordered:
        // an observation under way may be in its bucket and not yet in the count. Never expose a
        // `+Inf` bucket below a finite one.
        let count = self.count.load(Ordering::Relaxed).max(finite);
        if let Some(overflow) = buckets.last_mut() {
            *overflow = (f64::INFINITY, count - finite);
        }
        HistogramSnapshot {
            buckets,
            count,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// One reading of a [`Histogram`]: per-bucket (not cumulative) counts, the last bucket `+Inf`.
#[derive(Debug)]
struct HistogramSnapshot {
    buckets: [(f64, u64); BUCKETS.len() + 1],
    count: u64,
    sum_seconds: f64,
}

impl HistogramSnapshot {
    fn encode(&self, encoder: &mut MetricEncoder) -> fmt::Result {
        encoder.encode_histogram::<NoLabelSet>(self.sum_seconds, self.count, &self.buckets, None)
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        self.snapshot().encode(&mut encoder)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// One counter without labels.
#[derive(Debug, Default)]
struct Count(AtomicU64);

impl Count {
    fn add_one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl TypedMetric for Count {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Count {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.0.load(Ordering::Relaxed), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// What a socket fail fast aborted was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortedState {
    /// A connect waiting for its SYN-ACK.
    SynSent,
    /// An established session stalled.
    Established,
}

impl AbortedState {
    /// Every state, in the order the metrics list them.
    const ALL: [AbortedState; 2] = [AbortedState::SynSent, AbortedState::Established];

    /// The `state` label.
    pub fn label(self) -> &'static str {
        match self {
            AbortedState::SynSent => "syn-sent",
            AbortedState::Established => "established",
        }
    }
}

/// Sockets fail fast aborted, per `state` label, both always shown.
#[derive(Debug, Default)]
struct AbortedCounts([AtomicU64; AbortedState::ALL.len()]);

impl TypedMetric for AbortedCounts {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for AbortedCounts {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (state, counter) in AbortedState::ALL.iter().zip(&self.0) {
            encoder
                .encode_family(&[("state", state.label())])?
                .encode_counter::<NoLabelSet, _, u64>(&counter.load(Ordering::Relaxed), None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Health reports per `source` and `outcome` label, every pair always shown.
#[derive(Debug, Default)]
struct ReportCounts([[AtomicU64; 2]; ReportSource::ALL.len()]);

impl ReportCounts {
    fn add_one(&self, source: ReportSource, succeeded: bool) {
        let by_source = ReportSource::ALL
            .iter()
            .position(|s| *s == source)
            .and_then(|i| self.0.get(i));
        if let Some(counters) = by_source {
            counters[usize::from(!succeeded)].fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl TypedMetric for ReportCounts {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ReportCounts {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (source, counters) in ReportSource::ALL.iter().zip(&self.0) {
            for (outcome, counter) in ["success", "failure"].into_iter().zip(counters) {
                encoder
                    .encode_family(&[("outcome", outcome), ("source", source.label())])?
                    .encode_counter::<NoLabelSet, _, u64>(&counter.load(Ordering::Relaxed), None)?;
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A counter per `outcome` label: `success` and `failure`, both always shown.
#[derive(Debug, Default)]
struct BySuccess([AtomicU64; 2]);

impl BySuccess {
    fn add_one(&self, succeeded: bool) {
        self.0[usize::from(!succeeded)].fetch_add(1, Ordering::Relaxed);
    }
}

impl TypedMetric for BySuccess {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for BySuccess {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (outcome, counter) in ["success", "failure"].into_iter().zip(&self.0) {
            encoder
                .encode_family(&[("outcome", outcome)])?
                .encode_counter::<NoLabelSet, _, u64>(&counter.load(Ordering::Relaxed), None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Queries by `type` and `outcome`: a fixed table, only the pairs seen are shown.
#[derive(Debug, Default)]
struct QueryCounts([[AtomicU64; OUTCOMES.len()]; QUERY_TYPES.len()]);

impl TypedMetric for QueryCounts {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for QueryCounts {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (query_type, row) in QUERY_TYPES.into_iter().zip(&self.0) {
            for (outcome, counter) in OUTCOMES.into_iter().zip(row) {
                let value = counter.load(Ordering::Relaxed);
                if value > 0 {
                    encoder
                        .encode_family(&[("type", query_type), ("outcome", outcome)])?
                        .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
                }
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[derive(Debug, Default)]
struct UpstreamCounters {
    outcomes: [AtomicU64; UPSTREAM_OUTCOMES.len()],
    latency: Histogram,
}

/// One reading of every upstream's counters, in address order, taken before anything is encoded
/// (so no `DashMap` shard stays locked while the text is written).
#[derive(Debug)]
struct UpstreamSnapshot(Vec<(String, [u64; UPSTREAM_OUTCOMES.len()], HistogramSnapshot)>);

impl UpstreamSnapshot {
    fn of(upstreams: &DashMap<SocketAddr, UpstreamCounters>) -> Self {
        let mut read: Vec<_> = upstreams
            .iter()
            .map(|entry| {
                let counters = entry.value();
                let outcomes = std::array::from_fn(|outcome| {
                    counters.outcomes[outcome].load(Ordering::Relaxed)
                });
                (*entry.key(), outcomes, counters.latency.snapshot())
            })
            .collect();
        read.sort_by_key(|(address, ..)| *address);
        UpstreamSnapshot(
            read.into_iter()
                .map(|(address, outcomes, latency)| (address.to_string(), outcomes, latency))
                .collect(),
        )
    }

    /// `failover_dns_upstream_queries_total{upstream, outcome}`.
    fn queries(&self) -> impl EncodeMetric + '_ {
        Encode(MetricType::Counter, move |mut encoder: MetricEncoder| {
            for (upstream, outcomes, _) in &self.0 {
                for (outcome, value) in UPSTREAM_OUTCOMES.into_iter().zip(outcomes) {
                    encoder
                        .encode_family(&[("upstream", upstream.as_str()), ("outcome", outcome)])?
                        .encode_counter::<NoLabelSet, _, u64>(value, None)?;
                }
            }
            Ok(())
        })
    }

    /// `failover_dns_upstream_duration_seconds{upstream}`.
    fn durations(&self) -> impl EncodeMetric + '_ {
        Encode(MetricType::Histogram, move |mut encoder: MetricEncoder| {
            for (upstream, _, latency) in &self.0 {
                latency.encode(&mut encoder.encode_family(&[("upstream", upstream.as_str())])?)?;
            }
            Ok(())
        })
    }
}

/// A metric of the given type whose samples a closure encodes (for values read at scrape time).
struct Encode<F>(MetricType, F);

impl<F> fmt::Debug for Encode<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Encode")
            .field(&self.0)
            .finish_non_exhaustive()
    }
}

impl<F: Fn(MetricEncoder) -> fmt::Result> EncodeMetric for Encode<F> {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        (self.1)(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0
    }
}

#[derive(Debug, Default)]
struct Inner {
    queries: QueryCounts,
    handling: Histogram,
    failovers: Count,
    reports: ReportCounts,
    upstreams: DashMap<SocketAddr, UpstreamCounters>,
    reloads: BySuccess,
    cache_hits: Count,
    aborted_connects: AbortedCounts,
}

/// Encodes [`Inner`] at scrape time, registered in the [`Registry`] as a [`Collector`].
#[derive(Debug)]
struct Scrape(Arc<Inner>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let inner = &*self.0;
        let upstreams = UpstreamSnapshot::of(&inner.upstreams);
        let (upstream_queries, upstream_durations) = (upstreams.queries(), upstreams.durations());
        // Names without the prefix, the unit (appended to the name) and the `_total` a counter
        // gets from the encoder.
        let families: [(&str, &str, Option<Unit>, &dyn EncodeMetric); 9] = [
            (
                "queries",
                "DNS queries by type and outcome.",
                None,
                &inner.queries,
            ),
            (
                "query_duration",
                "Time from a query's arrival to its reply.",
                Some(Unit::Seconds),
                &inner.handling,
            ),
            (
                "failovers",
                "Times the first endpoint of a shared name's answer changed.",
                None,
                &inner.failovers,
            ),
            (
                "reports",
                "Health reports accepted, by outcome and source (agent, observer, probe, recheck).",
                None,
                &inner.reports,
            ),
            (
                "cache_hits",
                "Forwarded queries answered from the cache.",
                None,
                &inner.cache_hits,
            ),
            (
                "aborted_connects",
                "Sockets to a down endpoint that fail fast aborted: connects waiting (state syn-sent) and stalled sessions (established).",
                None,
                &inner.aborted_connects,
            ),
            (
                "upstream_queries",
                "Attempts at upstream resolvers, by outcome.",
                None,
                &upstream_queries,
            ),
            (
                "upstream_duration",
                "Time one upstream attempt took.",
                Some(Unit::Seconds),
                &upstream_durations,
            ),
            (
                "reloads",
                "Configuration reloads, by outcome.",
                None,
                &inner.reloads,
            ),
        ];
        for (name, help, unit, metric) in families {
            let metric_encoder =
                encoder.encode_descriptor(name, help, unit.as_ref(), metric.metric_type())?;
            metric.encode(metric_encoder)?;
        }
        Ok(())
    }
}

/// The server's metrics. Cheap to clone; all clones count into the same numbers.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
    /// What a scrape encodes: the build information and a [`Scrape`] of `inner`.
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
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
        let inner = Arc::new(Inner::default());
        let mut registry = Registry::with_prefix(PREFIX);
        // An info metric: `failover_dns_build_info{version}` 1 (the registry adds the `.`).
        registry.register(
            "build",
            "Build information",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register_collector(Box::new(Scrape(Arc::clone(&inner))));
        Metrics {
            inner,
            registry: Arc::new(registry),
        }
    }

    /// Counts one query of `query_type` (None: no parsable question) and its handling time.
    pub(crate) fn query(
        &self,
        query_type: Option<RecordType>,
        outcome: ResponseKind,
        elapsed: Duration,
    ) {
        let type_index = query_type.map_or(QUERY_TYPES.len() - 1, query_type_index);
        self.inner.queries.0[type_index][outcome.index()].fetch_add(1, Ordering::Relaxed);
        self.inner.handling.observe(elapsed);
    }

    /// Counts a forwarded query answered from the cache.
    pub(crate) fn cache_hit(&self) {
        self.inner.cache_hits.add_one();
    }

    /// Counts a socket fail fast aborted, by what it was doing.
    pub(crate) fn aborted_connect(&self, state: AbortedState) {
        let index = AbortedState::ALL
            .iter()
            .position(|s| *s == state)
            .unwrap_or_default();
        self.inner.aborted_connects.0[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a change of a name's first endpoint.
    pub(crate) fn failover(&self) {
        self.inner.failovers.add_one();
    }

    /// Counts a report accepted from `source`.
    pub(crate) fn report(&self, outcome: Outcome, source: ReportSource) {
        self.inner
            .reports
            .add_one(source, matches!(outcome, Outcome::Success));
    }

    /// Counts one attempt at one upstream and how long it took.
    pub(crate) fn upstream(&self, upstream: SocketAddr, outcome: AttemptResult, elapsed: Duration) {
        let record = |counters: &UpstreamCounters| {
            counters.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
            counters.latency.observe(elapsed);
        };
        // A known upstream (every attempt but the first) needs only the shard's read lock.
        if let Some(counters) = self.inner.upstreams.get(&upstream) {
            record(&counters);
        } else {
            record(&self.inner.upstreams.entry(upstream).or_default());
        }
    }

    /// Counts a reload by outcome.
    pub(crate) fn reload(&self, succeeded: bool) {
        self.inner.reloads.add_one(succeeded);
    }

    /// Queries counted so far with `outcome`, all types together (for tests and status).
    #[cfg(test)]
    pub(crate) fn queries_with(&self, outcome: ResponseKind) -> u64 {
        self.inner
            .queries
            .0
            .iter()
            .map(|row| row[outcome.index()].load(Ordering::Relaxed))
            .sum()
    }

    /// Everything, in the Prometheus text exposition format (version 0.0.4, [`CONTENT_TYPE`]).
    /// Encoding into a `String` cannot fail, and nothing here makes it fail: an error would be
    /// a bug, and comes back as such.
    pub fn try_render(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// [`Metrics::try_render`], empty on the error that cannot happen.
    pub fn render(&self) -> String {
        self.try_render().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
