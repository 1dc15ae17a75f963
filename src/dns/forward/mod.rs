//! Upstream forwarding, the only outbound DNS I/O: sends a query for a name we do not own to the
//! upstream resolvers in order, with a per-upstream timeout, the next upstream on timeout, error,
//! SERVFAIL or REFUSED, a hold-down for upstreams that keep failing, TCP when the UDP answer is
//! truncated, and a bounded total time. Answers are cached (see `cache`).
//!
//! Every upstream query gets a fresh random ID and, over UDP, a fresh socket (a random source
//! port); a reply must match ID and question or it is ignored (RFC 5452).

pub mod cache;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::Name;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout_at;
use tracing::{debug, info, warn};

use crate::config::settings::{
    DEFAULT_CACHE_SIZE, DEFAULT_UPSTREAM_TIMEOUT, Settings, is_own_address, parse_resolv_conf,
};
use crate::dns::answer::Transport;
use crate::dns::forward::cache::{AnswerCache, CacheKey, CachedAnswer};
use crate::metrics::{Metrics, UpstreamOutcome};

/// How forwarding behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSettings {
    /// Upstream resolvers, in order of preference.
    pub upstreams: Vec<SocketAddr>,
    /// How long one upstream may take to answer.
    pub timeout: Duration,
    /// How long a forwarded query may take in all, across every upstream tried.
    pub total_timeout: Duration,
    /// Consecutive failures after which an upstream is held down.
    pub failures_before_hold_down: u32,
    /// How long a held-down upstream is skipped (unless every upstream is held down).
    pub hold_down: Duration,
    /// Most answers kept in the cache; 0 disables it.
    pub cache_size: usize,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        ForwardSettings {
            upstreams: Vec::new(),
            timeout: DEFAULT_UPSTREAM_TIMEOUT,
            total_timeout: Duration::from_secs(5),
            failures_before_hold_down: 2,
            hold_down: Duration::from_secs(30),
            cache_size: DEFAULT_CACHE_SIZE,
        }
    }
}

impl ForwardSettings {
    /// The forwarding settings `settings` give: the named upstreams, else the `nameserver`
    /// lines of its `resolv_conf`; either way without this server's own listen addresses (a
    /// forwarding loop). Returns them with one note per upstream dropped or problem found, for
    /// the log.
    pub fn from_settings(settings: &Settings) -> (ForwardSettings, Vec<String>) {
        let mut notes = Vec::new();
        let candidates = match &settings.upstreams {
            Some(upstreams) => upstreams.clone(),
            None => match std::fs::read_to_string(&settings.resolv_conf) {
                Ok(text) => parse_resolv_conf(&text),
                Err(error) => {
                    notes.push(format!(
                        "cannot read {}: {error}; names outside the zones will be refused",
                        settings.resolv_conf.display()
                    ));
                    Vec::new()
                }
            },
        };
        let mut upstreams = Vec::new();
        for upstream in candidates {
            if is_own_address(upstream, &settings.listen) {
                notes.push(format!(
                    "upstream {upstream} is this server's own listen address; dropped to avoid a forwarding loop"
                ));
            } else if !upstreams.contains(&upstream) {
                upstreams.push(upstream);
            }
        }
        let forward = ForwardSettings {
            upstreams,
            timeout: settings.upstream_timeout,
            cache_size: settings.cache_size,
            ..ForwardSettings::default()
        };
        (forward, notes)
    }
}

#[derive(Debug)]
struct Upstream {
    address: SocketAddr,
    health: Mutex<UpstreamHealth>,
}

#[derive(Debug, Default, Clone, Copy)]
struct UpstreamHealth {
    consecutive_failures: u32,
    held_until: Option<Instant>,
}

/// Why one attempt at one upstream did not give a usable answer.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("answered {0}")]
    Failed(ResponseCode),
    #[error("malformed reply: {0}")]
    Malformed(String),
}

/// The upstream resolvers and the answer cache. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: ForwardSettings,
    upstreams: Vec<Upstream>,
    cache: AnswerCache,
    /// Where attempts are counted.
    metrics: Metrics,
}

/// An upstream answer: the bytes as received (with the client's ID), and the parsed message.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The upstream's reply bytes with the client's ID written in, for pass-through.
    pub bytes: Vec<u8>,
    /// The parsed reply.
    pub message: Message,
}

impl Forwarder {
    /// A forwarder over `settings.upstreams` (may be empty: then nothing is forwarded),
    /// counting every upstream attempt in `metrics`.
    pub fn new(settings: ForwardSettings, metrics: &Metrics) -> Self {
        let upstreams = settings
            .upstreams
            .iter()
            .map(|&address| Upstream {
                address,
                health: Mutex::new(UpstreamHealth::default()),
            })
            .collect();
        Forwarder {
            inner: Arc::new(Inner {
                cache: AnswerCache::new(settings.cache_size),
                upstreams,
                settings,
                metrics: metrics.clone(),
            }),
        }
    }

    fn count(&self, upstream: SocketAddr, outcome: UpstreamOutcome, started: Instant) {
        self.inner
            .metrics
            .upstream(upstream, outcome, started.elapsed());
    }

    /// Whether any upstream is configured.
    pub fn is_enabled(&self) -> bool {
        !self.inner.upstreams.is_empty()
    }

    /// The upstream addresses, in order.
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.inner.upstreams.iter().map(|u| u.address).collect()
    }

    /// The cached answer to `request` at `now`, with its ages (see [`CachedAnswer`]).
    pub fn cached_at(&self, request: &Message, now: Instant) -> Option<CachedAnswer> {
        self.inner.cache.lookup(request, now)
    }

    /// How many times the cache has changed: answers stored, expired ones dropped, cleared.
    pub fn cache_changes(&self) -> u64 {
        self.inner.cache.changes()
    }

    /// Stores `response` as the answer to `request` at `now`, as a forward does (for tests
    /// that need cached answers without an upstream).
    #[cfg(test)]
    pub(crate) fn cache_response(&self, request: &Message, response: &Message, now: Instant) {
        if let Some(key) = CacheKey::for_request(request) {
            self.inner.cache.store(key, response, now);
        }
    }

    /// Forgets every cached answer.
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    /// Forwards `packet` (the client's query, parsed as `request`) to the upstreams in order and
    /// returns the first usable answer, or `None` when every upstream failed within the total
    /// time (the caller answers SERVFAIL).
    ///
    /// Records owned by names for which `is_owned` holds are dropped from a usable answer before
    /// it is cached or passed on ([`drop_owned_records`]).
    pub async fn forward(
        &self,
        request: &Message,
        packet: &[u8],
        transport: Transport,
        is_owned: impl Fn(&Name) -> bool,
    ) -> Option<Forwarded> {
        let deadline = Instant::now() + self.inner.settings.total_timeout;
        let mut last_failure: Option<Forwarded> = None;
        for upstream in self.attempt_order() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let attempt_deadline = deadline.min(now + self.inner.settings.timeout);
            let attempt = exchange(
                upstream.address,
                request,
                packet,
                transport,
                attempt_deadline,
            )
            .await;
            let outcome = match &attempt {
                Ok(forwarded)
                    if matches!(
                        forwarded.message.metadata.response_code,
                        ResponseCode::ServFail | ResponseCode::Refused
                    ) =>
                {
                    UpstreamOutcome::Failed
                }
                Ok(_) => UpstreamOutcome::Answered,
                Err(AttemptError::Timeout) => UpstreamOutcome::Timeout,
                Err(_) => UpstreamOutcome::Error,
            };
            self.count(upstream.address, outcome, now);
            match attempt {
                Ok(forwarded) => {
                    let code = forwarded.message.metadata.response_code;
                    if matches!(code, ResponseCode::ServFail | ResponseCode::Refused) {
                        self.failed(upstream, &AttemptError::Failed(code));
                        last_failure = Some(forwarded);
                        continue;
                    }
                    self.succeeded(upstream);
                    let mut forwarded = forwarded;
                    let dropped = drop_owned_records(&mut forwarded.message, &is_owned);
                    if dropped > 0 {
                        warn!(
                            %upstream.address,
                            dropped,
                            "upstream's reply carried records for names in our zones; dropped"
                        );
                        match forwarded.message.to_vec() {
                            Ok(bytes) => forwarded.bytes = bytes,
                            // The scrubbed reply cannot be sent: treat the upstream as failed.
                            Err(error) => {
                                debug!(%error, "scrubbed reply does not encode");
                                continue;
                            }
                        }
                    }
                    if let Some(key) = CacheKey::for_request(request) {
                        self.inner
                            .cache
                            .store(key, &forwarded.message, Instant::now());
                    }
                    return Some(forwarded);
                }
                Err(error) => self.failed(upstream, &error),
            }
        }
        // Every upstream failed. An upstream's own SERVFAIL is passed on as the answer.
        last_failure
    }

    /// Upstreams not held down, in configured order; when all are held down, all of them,
    /// the one whose hold-down ends first first.
    fn attempt_order(&self) -> Vec<&Upstream> {
        let now = Instant::now();
        let health = |u: &Upstream| u.health.lock().map(|h| *h).unwrap_or_default();
        let available: Vec<&Upstream> = self
            .inner
            .upstreams
            .iter()
            .filter(|u| health(u).held_until.is_none_or(|until| until <= now))
            .collect();
        if !available.is_empty() {
            return available;
        }
        let mut all: Vec<&Upstream> = self.inner.upstreams.iter().collect();
        all.sort_by_key(|u| health(u).held_until);
        all
    }

    fn succeeded(&self, upstream: &Upstream) {
        if let Ok(mut health) = upstream.health.lock() {
            if health.held_until.is_some() {
                info!(upstream = %upstream.address, "upstream answers again");
            }
            *health = UpstreamHealth::default();
        }
    }

    fn failed(&self, upstream: &Upstream, error: &AttemptError) {
        let Ok(mut health) = upstream.health.lock() else {
            return;
        };
        health.consecutive_failures = health.consecutive_failures.saturating_add(1);
        debug!(upstream = %upstream.address, %error, failures = health.consecutive_failures, "upstream attempt failed");
        if health.consecutive_failures >= self.inner.settings.failures_before_hold_down {
            let hold_down = self.inner.settings.hold_down;
            if health
                .held_until
                .is_none_or(|until| until <= Instant::now())
            {
                warn!(upstream = %upstream.address, %error, seconds = hold_down.as_secs(), "upstream keeps failing; holding it down");
            }
            health.held_until = Some(Instant::now() + hold_down);
        }
    }
}

/// Drops, from every section of an upstream's reply, the records owned by names for which
/// `is_owned` holds (names in our zones), and returns how many. Another server's claims about
/// our names (an `A` for a shared name in the additional section, an out-of-zone `CNAME` chain
/// that ends in our zone) must never reach a client or the cache; the rest of the reply is
/// left as it is, as resolvers scrub out-of-bailiwick data. The OPT record is not a section
/// record here and is kept.
pub fn drop_owned_records(message: &mut Message, is_owned: impl Fn(&Name) -> bool) -> usize {
    let mut dropped = 0;
    for section in [
        &mut message.answers,
        &mut message.authorities,
        &mut message.additionals,
    ] {
        let before = section.len();
        section.retain(|record| !is_owned(&record.name));
        dropped += before - section.len();
    }
    dropped
}

/// One query to one upstream: UDP (then TCP when the reply is truncated) or TCP.
async fn exchange(
    upstream: SocketAddr,
    request: &Message,
    packet: &[u8],
    transport: Transport,
    deadline: Instant,
) -> Result<Forwarded, AttemptError> {
    let upstream_id: u16 = rand::random();
    let mut query = packet.to_vec();
    let Some(id_bytes) = query.get_mut(..2) else {
        return Err(AttemptError::Malformed(
            "query shorter than a header".into(),
        ));
    };
    id_bytes.copy_from_slice(&upstream_id.to_be_bytes());
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut reply = match transport {
        Transport::Udp => {
            let reply = udp_exchange(upstream, &query, upstream_id, request, deadline).await?;
            if reply.message.metadata.truncation {
                debug!(%upstream, "truncated UDP reply; retrying over TCP");
                tcp_exchange(upstream, &query, upstream_id, request, deadline).await?
            } else {
                reply
            }
        }
        Transport::Tcp => tcp_exchange(upstream, &query, upstream_id, request, deadline).await?,
    };
    // Give the reply the client's ID, in both forms.
    let client_id = request.metadata.id;
    reply.message.metadata.id = client_id;
    if let Some(id_bytes) = reply.bytes.get_mut(..2) {
        id_bytes.copy_from_slice(&client_id.to_be_bytes());
    }
    Ok(reply)
}

/// Parses an upstream reply and checks that it answers our query: QR set, our ID, and the same
/// question (case-insensitively).
fn matching_reply(bytes: &[u8], id: u16, request: &Message) -> Option<Message> {
    let reply = Message::from_vec(bytes).ok()?;
    let same_question = reply.queries.len() == request.queries.len()
        && reply.queries.iter().zip(&request.queries).all(|(a, b)| {
            a.name() == b.name()
                && a.query_type() == b.query_type()
                && a.query_class() == b.query_class()
        });
    (reply.metadata.message_type == MessageType::Response
        && reply.metadata.id == id
        && same_question)
        .then_some(reply)
}

async fn udp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    request: &Message,
    deadline: tokio::time::Instant,
) -> Result<Forwarded, AttemptError> {
    let local: SocketAddr = match upstream.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buffer = vec![0u8; 65_535];
    loop {
        let length = timeout_at(deadline, socket.recv(&mut buffer))
            .await
            .map_err(|_| AttemptError::Timeout)??;
        let bytes = buffer.get(..length).unwrap_or_default();
        if let Some(message) = matching_reply(bytes, id, request) {
            return Ok(Forwarded {
                bytes: bytes.to_vec(),
                message,
            });
        }
        debug!(%upstream, "ignoring a UDP reply that does not match the query");
    }
}

async fn tcp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    request: &Message,
    deadline: tokio::time::Instant,
) -> Result<Forwarded, AttemptError> {
    let exchange = async {
        let mut stream = TcpStream::connect(upstream).await?;
        let length = u16::try_from(query.len())
            .map_err(|_| AttemptError::Malformed("query longer than 65535 bytes".into()))?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        let length = usize::from(stream.read_u16().await?);
        let mut bytes = vec![0u8; length];
        stream.read_exact(&mut bytes).await?;
        let message = matching_reply(&bytes, id, request)
            .ok_or_else(|| AttemptError::Malformed("TCP reply does not match the query".into()))?;
        Ok::<_, AttemptError>(Forwarded { bytes, message })
    };
    timeout_at(deadline, exchange)
        .await
        .map_err(|_| AttemptError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_for_our_names_are_dropped_from_every_section() {
        use hickory_proto::rr::{RData, Record, rdata};
        let name = |text: &str| Name::from_ascii(text).expect("literal name");
        let a = |owner: &str, octets: [u8; 4]| {
            Record::from_rdata(
                name(owner),
                60,
                RData::A(rdata::A::from(Ipv4Addr::from(octets))),
            )
        };
        let cname = |owner: &str, target: &str| {
            Record::from_rdata(name(owner), 60, RData::CNAME(rdata::CNAME(name(target))))
        };
        let mut message = Message::response(7, hickory_proto::op::OpCode::Query);
        message.answers = vec![
            cname("www.example.com.", "app.internal."),
            a("APP.Internal.", [6, 6, 6, 6]),
            a("www.example.com.", [192, 0, 2, 1]),
        ];
        message.authorities = vec![a("ns.sub.app.internal.", [6, 6, 6, 7])];
        message.additionals = vec![
            a("app.internal.", [6, 6, 6, 6]),
            a("ns.example.com.", [192, 0, 2, 53]),
        ];
        let zone = name("app.internal.");
        let dropped = drop_owned_records(&mut message, |owner| zone.zone_of(owner));
        assert_eq!(dropped, 3);
        let owners = |records: &[Record]| -> Vec<String> {
            records.iter().map(|r| r.name.to_ascii()).collect()
        };
        assert_eq!(
            owners(&message.answers),
            ["www.example.com.", "www.example.com."]
        );
        assert!(message.authorities.is_empty());
        assert_eq!(owners(&message.additionals), ["ns.example.com."]);
        assert_eq!(drop_owned_records(&mut message, |_| false), 0);
    }
}
