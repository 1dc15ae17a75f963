//! Upstream forwarding, the only outbound DNS I/O, for names we do not own: a race of the
//! upstreams (`race`: staggered starts, the first usable answer wins, backups only once every
//! primary failed), per-upstream timeouts and hold-down, plain DNS (`transport`: UDP, TCP when
//! truncated) or DNS over TLS (`tls`), the cache of answers (`cache`) and serve-stale (RFC 8767):
//! an expired answer, with TTL 30, when every upstream fails, refreshed in the background.
//!
//! Every upstream query gets a fresh random ID and, over UDP, a fresh socket (a random source
//! port); a reply must match ID and question or it is ignored (RFC 5452). Attempts that lose a
//! race are not waited for: they finish in the background (up to their timeout), so a dead
//! upstream is still seen failing and held down.

pub mod cache;
mod settings;
mod upstream;

pub use settings::ForwardSettings;
pub use upstream::{ForwardingStatus, Role, UpstreamStatus};
use upstream::{Outstanding, Upstream, UpstreamHealth};
pub mod race;
mod stale;
pub mod tls;
pub mod transport;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::Name;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::settings::UpstreamSpec;
use crate::dns::answer::Transport;
use crate::dns::forward::cache::{AnswerCache, CacheKey, CachedAnswer};
use crate::dns::forward::race::{Due, Schedule};
use crate::dns::forward::stale::Refreshes;
use crate::dns::forward::tls::DotUpstream;
pub use crate::dns::forward::transport::Forwarded;
use crate::dns::forward::transport::{AttemptError, exchange};
use crate::metrics::{AttemptResult, Metrics};

/// What forwarding a query came to.
#[derive(Debug, Clone)]
pub enum ForwardResult {
    /// An upstream's answer, passed on.
    Answered(Forwarded),
    /// A fresh answer a refresh this query waited for brought (re-addressed to the query).
    Refreshed(Message),
    /// An expired answer from the cache, every TTL 30, because no upstream answered in time.
    Stale(Message),
    /// Every upstream failed: an upstream's own SERVFAIL or REFUSED when one gave it, else
    /// nothing (the caller answers SERVFAIL).
    Failed(Option<Forwarded>),
}

/// Whether a name is one of ours (its records never come from an upstream); shared with the
/// background tasks of a query.
pub type IsOwned = Arc<dyn Fn(&Name) -> bool + Send + Sync>;

/// The upstream resolvers and the answer cache. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: ForwardSettings,
    /// Primaries then backups, in configured order.
    upstreams: Vec<Upstream>,
    cache: AnswerCache,
    /// Where attempts are counted.
    metrics: Metrics,
    /// One permit per upstream query outstanding, racing or left in the background
    /// ([`ForwardSettings::max_outstanding`]).
    outstanding: Arc<Semaphore>,
    /// The configuration change count the cache was last checked against for names that became
    /// ours ([`Forwarder::forget_now_owned`]).
    zones_checked: AtomicU64,
    /// The background refresh of each stale answer being refreshed: at most one per question.
    refreshing: Refreshes,
    stale_answers: AtomicU64,
}

/// What one attempt reports to its race: a usable answer, or a failure (with the upstream's own
/// SERVFAIL/REFUSED reply when that was the failure).
type AttemptReport = (usize, Result<Forwarded, Option<Forwarded>>);

impl Forwarder {
    /// A forwarder over `settings.upstreams` and `settings.backup_upstreams` (may be empty:
    /// then nothing is forwarded), counting every upstream attempt in `metrics`.
    pub fn new(settings: ForwardSettings, metrics: &Metrics) -> Self {
        let any_tls = settings
            .upstreams
            .iter()
            .chain(&settings.backup_upstreams)
            .any(|u| u.tls.is_some());
        let tls_config = any_tls.then(|| {
            let (config, notes) = tls::client_config(settings.upstream_ca_file.as_deref());
            for note in notes {
                warn!("DNS over TLS: {note}");
            }
            config
        });
        let upstream = |spec: &UpstreamSpec, role: Role| Upstream {
            tls: spec
                .tls
                .as_ref()
                .zip(tls_config.as_ref())
                .map(|(name, config)| DotUpstream::new(spec.address, name, Arc::clone(config))),
            spec: spec.clone(),
            role,
            health: Mutex::new(UpstreamHealth::default()),
            outstanding: Arc::new(AtomicUsize::new(0)),
            answered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            won: AtomicU64::new(0),
        };
        let upstreams = settings
            .upstreams
            .iter()
            .map(|spec| upstream(spec, Role::Primary))
            .chain(
                settings
                    .backup_upstreams
                    .iter()
                    .map(|spec| upstream(spec, Role::Backup)),
            )
            .collect();
        let outstanding = Arc::new(Semaphore::new(settings.max_outstanding));
        Forwarder {
            inner: Arc::new(Inner {
                cache: AnswerCache::with_stale(settings.cache_size, settings.stale_max_age)
                    .with_max_bytes(settings.cache_max_bytes),
                upstreams,
                settings,
                metrics: metrics.clone(),
                outstanding,
                zones_checked: AtomicU64::new(0),
                refreshing: Refreshes::default(),
                stale_answers: AtomicU64::new(0),
            }),
        }
    }

    /// Whether any upstream is configured.
    pub fn is_enabled(&self) -> bool {
        !self.inner.upstreams.is_empty()
    }

    /// The primary upstreams, in order.
    pub fn upstreams(&self) -> Vec<UpstreamSpec> {
        self.role_specs(Role::Primary)
    }

    /// The backup upstreams, in order.
    pub fn backup_upstreams(&self) -> Vec<UpstreamSpec> {
        self.role_specs(Role::Backup)
    }

    fn role_specs(&self, role: Role) -> Vec<UpstreamSpec> {
        self.inner
            .upstreams
            .iter()
            .filter(|u| u.role == role)
            .map(|u| u.spec.clone())
            .collect()
    }

    /// The cached answer to `request` at `now`, with its ages (see [`CachedAnswer`]).
    pub fn cached_at(&self, request: &Message, now: Instant) -> Option<CachedAnswer> {
        self.inner.cache.lookup(request, now)
    }

    /// Once per configuration (`changes`, the snapshot's change count, read before the snapshot
    /// `is_owned` describes): drops the cached answers that hold records of names now ours, so a
    /// reload that adds a zone never leaves an upstream's records for its names in the cache.
    /// Costs one atomic load while the configuration stays the same.
    pub fn forget_now_owned(&self, changes: u64, is_owned: impl Fn(&Name) -> bool) {
        let checked = self.inner.zones_checked.load(Ordering::Acquire);
        if checked == changes {
            return;
        }
        let claimed = self
            .inner
            .zones_checked
            .compare_exchange(checked, changes, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if claimed {
            let dropped = self.inner.cache.drop_owned(is_owned);
            if dropped > 0 {
                info!(
                    dropped,
                    "cached upstream answers holding names now ours dropped"
                );
            }
        }
    }

    /// How many times the cache has changed: answers stored, expired ones dropped, cleared.
    pub fn cache_changes(&self) -> u64 {
        self.inner.cache.changes()
    }

    /// Stores `response` as the answer to `request` at `now`, as a forward does (for tests and
    /// benchmarks that need cached answers without an upstream).
    pub fn cache_response(&self, request: &Message, response: &Message, now: Instant) {
        if let Some(key) = CacheKey::for_request(request) {
            self.inner.cache.store(key, response, now);
        }
    }

    /// The stale answer to `request` at `now`, if the cache may serve one (for benchmarks and
    /// tests; queries get one through [`Forwarder::resolve`]).
    pub fn stale_at(&self, request: &Message, now: Instant) -> Option<Message> {
        self.inner.cache.lookup_stale(request, now)
    }

    /// Forgets every cached answer.
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    /// Every upstream's state and the stale-answer count, for `status`.
    pub fn status(&self) -> ForwardingStatus {
        let now = Instant::now();
        let unix_ms = |at: Option<SystemTime>| at.map(crate::time::unix_ms);
        let upstreams = self
            .inner
            .upstreams
            .iter()
            .map(|u| {
                let health = u.health.lock().map(|h| h.clone()).unwrap_or_default();
                let held = health.held_until.filter(|until| *until > now);
                let state = if held.is_some() {
                    "held-down"
                } else if health.consecutive_failures > 0 {
                    "failing"
                } else {
                    "ok"
                };
                UpstreamStatus {
                    upstream: u.spec.to_string(),
                    role: u.role,
                    state: state.to_string(),
                    consecutive_failures: health.consecutive_failures,
                    held_down_ms: held.map(|until| {
                        u64::try_from(until.saturating_duration_since(now).as_millis())
                            .unwrap_or(u64::MAX)
                    }),
                    last_error: health.last_error,
                    last_success_unix_ms: unix_ms(health.last_success),
                    last_failure_unix_ms: unix_ms(health.last_failure),
                    answered: u.answered.load(Ordering::Relaxed),
                    won: u.won.load(Ordering::Relaxed),
                    failed: u.failed.load(Ordering::Relaxed),
                }
            })
            .collect();
        ForwardingStatus {
            upstreams,
            stale_answers: self.inner.stale_answers.load(Ordering::Relaxed),
            refreshes_in_flight: self.inner.refreshing.len(),
        }
    }

    /// Forwards `request`, as our own query ([`transport::upstream_query`]: the client's bytes
    /// never go upstream): the upstreams race ([`race`]) and the first usable answer is the
    /// result. When the cache holds an expired answer that may still be served (RFC 8767), the
    /// upstreams are asked by a background refresh (one per question at a time) and the query
    /// waits for it at most the stale answer delay (not at all when every upstream is held
    /// down), then gets the stale answer.
    ///
    /// Records owned by names for which `is_owned` holds are dropped from a usable answer before
    /// it is cached or passed on ([`drop_owned_records`]).
    pub async fn resolve(
        &self,
        request: &Message,
        transport: Transport,
        is_owned: IsOwned,
    ) -> ForwardResult {
        let packet = match transport::upstream_query(request) {
            Ok(packet) => packet,
            Err(error) => {
                debug!(%error, "cannot forward");
                return ForwardResult::Failed(None);
            }
        };
        let packet = packet.as_slice();
        if let Some(stale) = self.inner.cache.lookup_stale(request, Instant::now())
            && let Some(key) = CacheKey::for_request(request)
        {
            return self
                .resolve_stale(key, stale, request, packet, transport, is_owned)
                .await;
        }
        match self
            .race(
                Arc::new(request.clone()),
                Arc::from(packet),
                transport,
                &is_owned,
            )
            .await
        {
            Ok(forwarded) => ForwardResult::Answered(forwarded),
            Err(failure) => ForwardResult::Failed(failure),
        }
    }

    /// Answers a query whose cached answer expired: the refresh of it (started now, or already
    /// running for another query) if it comes within the stale answer delay, else the stale
    /// answer (at once when every upstream is held down).
    async fn resolve_stale(
        &self,
        key: CacheKey,
        stale: Message,
        request: &Message,
        packet: &[u8],
        transport: Transport,
        is_owned: IsOwned,
    ) -> ForwardResult {
        let (refresh, started) = self.inner.refreshing.join(key);
        if let Some(started) = started {
            let forwarder = self.clone();
            let request = Arc::new(request.clone());
            let packet: Arc<[u8]> = Arc::from(packet);
            tokio::spawn(async move {
                let outcome = forwarder
                    .race(Arc::clone(&request), packet, transport, &is_owned)
                    .await;
                if outcome.is_err() {
                    debug!(
                        name = %request.queries.first().map(|q| q.name().to_string()).unwrap_or_default(),
                        "refreshing a stale answer failed: every upstream failed"
                    );
                }
                let fresh = outcome.ok().map(|forwarded| forwarded.message);
                forwarder.inner.refreshing.finish(started, fresh);
            });
        }
        let delay =
            (!self.every_upstream_held_down()).then_some(self.inner.settings.stale_answer_delay);
        if let Some(fresh) = refresh.fresh_within(delay).await {
            let fresh = cache::readdress((*fresh).clone(), request, |ttl| ttl);
            return ForwardResult::Refreshed(fresh);
        }
        self.inner.stale_answers.fetch_add(1, Ordering::Relaxed);
        debug!(
            name = %request.queries.first().map(|q| q.name().to_string()).unwrap_or_default(),
            "no upstream answered in time; serving the stale answer"
        );
        ForwardResult::Stale(stale)
    }

    /// Whether every upstream is held down now (then a stale answer goes out at once).
    fn every_upstream_held_down(&self) -> bool {
        let now = Instant::now();
        self.inner.upstreams.iter().all(|u| {
            u.health
                .lock()
                .map(|h| h.held_until.is_some_and(|until| until > now))
                .unwrap_or(false)
        })
    }

    /// Races the upstreams for one query: candidates start as the [`Schedule`] says, the first
    /// usable answer wins (scrubbed of our names, cached, returned); the rest go on in the
    /// background. `Err` when every candidate failed or the total time ran out, with an
    /// upstream's own SERVFAIL/REFUSED reply when one gave it.
    async fn race(
        &self,
        request: Arc<Message>,
        packet: Arc<[u8]>,
        transport: Transport,
        is_owned: &IsOwned,
    ) -> Result<Forwarded, Option<Forwarded>> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.inner.settings.total_timeout);
        let (candidates, primaries) = self.attempt_order();
        let mut schedule = Schedule::new(
            primaries,
            candidates.len() - primaries,
            self.inner.settings.stagger,
        );
        let (reports, mut received) = mpsc::unbounded_channel::<AttemptReport>();
        let mut attempts: Vec<JoinHandle<()>> = Vec::new();
        let mut last_failure = None;
        let outcome = loop {
            let now = Instant::now();
            while let Some(slot) = schedule.start_due(now) {
                let Some(&upstream) = candidates.get(slot) else {
                    schedule.failed(slot);
                    continue;
                };
                // Neither is the upstream's failure: its health is left alone.
                let over_share = self.inner.upstreams.get(upstream).is_some_and(|u| {
                    u.outstanding.load(Ordering::Relaxed) >= self.inner.share_of_one()
                });
                if over_share {
                    debug!(
                        "this upstream holds its share of the upstream query slots; not asking it"
                    );
                    schedule.failed(slot);
                    continue;
                }
                let Ok(permit) = Arc::clone(&self.inner.outstanding).try_acquire_owned() else {
                    debug!("every upstream query slot is taken; not asking this upstream");
                    schedule.failed(slot);
                    continue;
                };
                let counted = self
                    .inner
                    .upstreams
                    .get(upstream)
                    .map(|u| Outstanding::take(&u.outstanding));
                attempts.push(tokio::spawn(attempt(
                    (permit, counted),
                    Arc::clone(&self.inner),
                    upstream,
                    slot,
                    Arc::clone(&request),
                    Arc::clone(&packet),
                    transport,
                    deadline,
                    reports.clone(),
                )));
            }
            if schedule.exhausted() {
                break Err(last_failure);
            }
            let wake = match schedule.next_start() {
                Some(Due::At(at)) => tokio::time::Instant::from_std(at).min(deadline),
                _ => deadline,
            };
            tokio::select! {
                report = received.recv() => match report {
                    Some((slot, Ok(forwarded))) => {
                        let forwarded = self.accept(forwarded, &request, is_owned);
                        if let Some(upstream) = candidates.get(slot).and_then(|&i| self.inner.upstreams.get(i)) {
                            upstream.won.fetch_add(1, Ordering::Relaxed);
                        }
                        break Ok(forwarded);
                    }
                    Some((slot, Err(failure))) => {
                        schedule.failed(slot);
                        if failure.is_some() {
                            last_failure = failure;
                        }
                    }
                    None => break Err(last_failure),
                },
                () = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        debug!("forwarding ran out of time");
                        break Err(last_failure);
                    }
                }
            }
        };
        // The losers are left to finish in the background (their outcome still counts for their
        // upstream's health), each still holding its permit: they are bounded with the rest.
        drop(attempts);
        outcome
    }

    /// A usable answer scrubbed of records for our names, cached as the answer to `request`.
    fn accept(&self, mut forwarded: Forwarded, request: &Message, is_owned: &IsOwned) -> Forwarded {
        let dropped = drop_owned_records(&mut forwarded.message, |name| is_owned(name));
        if dropped > 0 {
            warn!(
                dropped,
                "upstream's reply carried records for names in our zones; dropped"
            );
        }
        if let Some(key) = CacheKey::for_request(request) {
            self.inner
                .cache
                .store(key, &forwarded.message, Instant::now());
        }
        forwarded
    }

    /// The candidates of one query, as indexes into the upstreams, and how many of them are
    /// primaries: the primaries not held down, then the backups not held down, each by fewest
    /// recent failures, then configured order. When every upstream is held down: all of them,
    /// primaries then backups, the one whose hold-down ends first first.
    fn attempt_order(&self) -> (Vec<usize>, usize) {
        let now = Instant::now();
        let health = |u: &Upstream| u.health.lock().map(|h| h.clone()).unwrap_or_default();
        let available = |role: Role| {
            let mut list: Vec<(u32, usize)> = self
                .inner
                .upstreams
                .iter()
                .enumerate()
                .filter(|(_, u)| u.role == role)
                .map(|(i, u)| (i, health(u)))
                .filter(|(_, h)| h.held_until.is_none_or(|until| until <= now))
                .map(|(i, h)| (h.consecutive_failures, i))
                .collect();
            list.sort();
            list.into_iter().map(|(_, i)| i).collect::<Vec<usize>>()
        };
        let (primaries, backups) = (available(Role::Primary), available(Role::Backup));
        if !primaries.is_empty() || !backups.is_empty() {
            let count = primaries.len();
            return (primaries.into_iter().chain(backups).collect(), count);
        }
        let held = |role: Role| {
            let mut list: Vec<(Option<Instant>, usize)> = self
                .inner
                .upstreams
                .iter()
                .enumerate()
                .filter(|(_, u)| u.role == role)
                .map(|(i, u)| (health(u).held_until, i))
                .collect();
            list.sort();
            list.into_iter().map(|(_, i)| i).collect::<Vec<usize>>()
        };
        let primaries = held(Role::Primary);
        let count = primaries.len();
        (
            primaries.into_iter().chain(held(Role::Backup)).collect(),
            count,
        )
    }
}

/// One attempt at upstream `index` (slot `slot` of its race): the exchange, its outcome counted
/// and recorded in the upstream's health, and the result reported to the race (if it still
/// listens).
#[allow(clippy::too_many_arguments)]
async fn attempt(
    // The server-wide upstream query slot and the upstream's own count, held to the end.
    _held: (OwnedSemaphorePermit, Option<Outstanding>),
    inner: Arc<Inner>,
    index: usize,
    slot: usize,
    request: Arc<Message>,
    packet: Arc<[u8]>,
    transport: Transport,
    race_deadline: tokio::time::Instant,
    reports: mpsc::UnboundedSender<AttemptReport>,
) {
    let Some(upstream) = inner.upstreams.get(index) else {
        let _ = reports.send((slot, Err(None)));
        return;
    };
    let started = Instant::now();
    let deadline = race_deadline.min(tokio::time::Instant::now() + inner.settings.timeout);
    let result = match &upstream.tls {
        Some(dot) => dot.exchange(&request, &packet, deadline).await,
        None if upstream.spec.tls.is_some() => Err(AttemptError::Tls(
            "no TLS settings for this upstream".to_string(),
        )),
        None => {
            exchange(
                upstream.spec.address,
                &request,
                &packet,
                transport,
                deadline,
            )
            .await
        }
    };
    let (outcome, report) = match result {
        Ok(forwarded) => match forwarded.message.metadata.response_code {
            // SERVFAIL is about the name (its servers are broken or its signatures do not
            // validate), not the upstream, which answered: the race goes on to the next upstream,
            // but a few broken names never hold a working upstream down.
            ResponseCode::ServFail => {
                upstream.answered_unusable(&AttemptError::Failed(ResponseCode::ServFail));
                (AttemptResult::Failed, Err(Some(forwarded)))
            }
            // REFUSED is the upstream turning us away, whatever the name.
            code @ ResponseCode::Refused => {
                upstream.failed(&AttemptError::Failed(code), &inner.settings);
                (AttemptResult::Failed, Err(Some(forwarded)))
            }
            _ => {
                upstream.succeeded();
                (AttemptResult::Answered, Ok(forwarded))
            }
        },
        // An answer we cannot use (it does not parse, or does not match): the upstream is
        // alive and answered about this name; like SERVFAIL, it does not count towards a
        // hold-down, or one name with an unreadable record would hold the upstream down for
        // every other name.
        Err(error @ AttemptError::Malformed(_)) => {
            upstream.answered_unusable(&error);
            (AttemptResult::Error, Err(None))
        }
        Err(error) => {
            upstream.failed(&error, &inner.settings);
            let outcome = match error {
                AttemptError::Timeout => AttemptResult::Timeout,
                _ => AttemptResult::Error,
            };
            (outcome, Err(None))
        }
    };
    inner
        .metrics
        .upstream(upstream.spec.address, outcome, started.elapsed());
    let _ = reports.send((slot, report));
}

impl Inner {
    /// The most upstream query slots one upstream may hold while there are others: half of
    /// them. An upstream that never answers keeps each query it gets for the whole timeout, and
    /// racing sends it one per client query; without a share it would take every slot before
    /// its first timeout could hold it down, and the upstreams that do answer could be asked
    /// nothing.
    fn share_of_one(&self) -> usize {
        if self.upstreams.len() > 1 {
            (self.settings.max_outstanding / 2).max(1)
        } else {
            usize::MAX
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

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::Ipv4Addr;

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
