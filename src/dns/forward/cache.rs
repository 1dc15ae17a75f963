//! The cache of forwarded answers: bounded in answers and in bytes (least recently used entries
//! go first; an answer of thousands of records weighs what it takes), keyed by
//! question and the DO/CD bits, honouring record TTLs and RFC 2308 negative caching. Owned names
//! never reach it: the handler answers them before forwarding is considered.
//!
//! Serve-stale (RFC 8767): an expired entry is kept up to the stale window past its expiry (still
//! bounded by the capacity), never served as fresh, and handed out by [`AnswerCache::lookup_stale`]
//! with its original data and every TTL [`STALE_TTL`] when the forwarder could not refresh it.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use lru::LruCache;

use crate::dns::answer;

/// Longest time an answer is kept, whatever its TTL says (RFC 2181 §8 allows capping).
pub const MAX_CACHE_TTL: u32 = 86_400;
/// The TTL of every record of a stale answer (RFC 8767 §4 recommends 30 s).
pub const STALE_TTL: u32 = 30;

/// Whether an answer stored at `stored` for `ttl` seconds is stale at `now` and may still be
/// served as such: it has expired, and less than `stale_max_age` ago (a zero window: never).
pub fn stale_eligible(stored: Instant, ttl: u32, now: Instant, stale_max_age: Duration) -> bool {
    let expires = stored + Duration::from_secs(u64::from(ttl));
    now >= expires && now.saturating_duration_since(expires) < stale_max_age
}

/// What makes two queries share a cached answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    name: Name,
    query_type: RecordType,
    query_class: DNSClass,
    dnssec_ok: bool,
    checking_disabled: bool,
}

impl CacheKey {
    /// The key for a single-question query, or `None` for any other shape.
    pub fn for_request(request: &Message) -> Option<Self> {
        let [query] = request.queries.as_slice() else {
            return None;
        };
        Some(CacheKey {
            // `Name` compares and hashes case-insensitively.
            name: query.name().clone(),
            query_type: query.query_type(),
            query_class: query.query_class(),
            dnssec_ok: request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
            checking_disabled: request.metadata.checking_disabled,
        })
    }
}

#[derive(Debug, Clone)]
struct Entry {
    response: Message,
    stored: Instant,
    ttl: u32,
    /// What it weighs ([`entry_cost`]).
    cost: usize,
}

/// About how many bytes an answer takes in the cache: the entry, each record as a value, and
/// the answer's wire size for what the records hold beyond that (names, data). `None` when it
/// does not encode.
pub fn entry_cost(response: &Message) -> Option<usize> {
    let records = response.answers.len() + response.authorities.len() + response.additionals.len();
    let wire = response.to_vec().ok()?.len();
    Some(size_of::<Entry>() + size_of::<CacheKey>() + records * size_of::<Record>() + wire)
}

/// A bounded, thread-safe answer cache. A size of 0 disables it.
#[derive(Debug)]
pub struct AnswerCache {
    entries: Option<Mutex<LruCache<CacheKey, Entry>>>,
    /// How long past expiry an entry is kept for stale answers; zero: dropped at expiry.
    stale_max_age: Duration,
    /// The most the entries may weigh together, bytes.
    max_bytes: usize,
    /// What they weigh now; changed only with the entries' lock held.
    bytes: AtomicUsize,
    /// How many times the cache has changed: an answer stored (which may evict another), an
    /// expired one dropped, or everything cleared. The fast path's memo of cached answers is
    /// valid only while this stays the same.
    changes: AtomicU64,
}

/// A cached response as [`AnswerCache::lookup`] gives it, with the times the fast path needs
/// to age its own copy of the reply as the cache would.
#[derive(Debug, Clone)]
pub struct CachedAnswer {
    /// The response, re-addressed to the request and with its TTLs lowered by `age`.
    pub response: Message,
    /// How long the answer may be served from when it was stored; it expires then.
    pub lifetime: Duration,
    /// When it was stored.
    pub stored: Instant,
    /// Whole seconds between `stored` and the look-up: what its TTLs were lowered by.
    pub age: u32,
}

impl AnswerCache {
    /// A cache holding at most `capacity` answers, dropping them at expiry.
    #[cfg(test)]
    pub fn new(capacity: usize) -> Self {
        AnswerCache::with_stale(capacity, Duration::ZERO)
    }

    /// A cache holding at most `capacity` answers, keeping each up to `stale_max_age` past its
    /// expiry for [`AnswerCache::lookup_stale`].
    pub fn with_stale(capacity: usize, stale_max_age: Duration) -> Self {
        AnswerCache {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
            stale_max_age,
            max_bytes: usize::MAX,
            bytes: AtomicUsize::new(0),
            changes: AtomicU64::new(0),
        }
    }

    /// The same cache, its entries weighing at most `max_bytes` together.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// What the entries weigh now, bytes ([`entry_cost`]).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Counts an entry gone (evicted, expired, dropped); the entries' lock is held.
    fn gone(&self, entry: &Entry) {
        self.bytes.fetch_sub(entry.cost, Ordering::Relaxed);
    }

    /// Stores an upstream response if it may be cached: NOERROR with answers (the smallest
    /// TTL), or a negative answer (NXDOMAIN or NODATA) with an SOA (RFC 2308 §5: the smaller of
    /// the SOA's TTL and its MINIMUM). Truncated responses and errors are not cached.
    pub fn store(&self, key: CacheKey, response: &Message, now: Instant) {
        let Some(entries) = &self.entries else {
            return;
        };
        let Some(ttl) = cacheable_ttl(response) else {
            return;
        };
        if ttl == 0 {
            return;
        }
        let response = shareable(response.clone());
        let Some(cost) = entry_cost(&response).filter(|&cost| cost <= self.max_bytes) else {
            return;
        };
        let entry = Entry {
            response,
            stored: now,
            ttl: ttl.min(MAX_CACHE_TTL),
            cost,
        };
        if let Ok(mut entries) = entries.lock() {
            self.bytes.fetch_add(cost, Ordering::Relaxed);
            // The entry it replaced, or the one it evicted at the answer count.
            if let Some((_, old)) = entries.push(key, entry) {
                self.gone(&old);
            }
            while self.bytes() > self.max_bytes {
                let Some((_, old)) = entries.pop_lru() else {
                    break;
                };
                self.gone(&old);
            }
            self.changes.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The cached response for `request`, re-addressed to it (its ID, question as asked, RD
    /// and CD bits) with TTLs lowered by the time spent in the cache; `None` on a miss or when
    /// the entry has expired (an expired entry is dropped unless it may still serve stale
    /// answers). With it come when the answer was stored, how long it lives and the age its
    /// TTLs were lowered by.
    pub fn lookup(&self, request: &Message, now: Instant) -> Option<CachedAnswer> {
        let entries = self.entries.as_ref()?;
        let key = CacheKey::for_request(request)?;
        let entry = {
            let mut entries = entries.lock().ok()?;
            let entry = entries.get(&key)?;
            let age = now.saturating_duration_since(entry.stored);
            if age >= Duration::from_secs(u64::from(entry.ttl)) {
                if !stale_eligible(entry.stored, entry.ttl, now, self.stale_max_age) {
                    if let Some(old) = entries.pop(&key) {
                        self.gone(&old);
                    }
                    self.changes.fetch_add(1, Ordering::AcqRel);
                }
                return None;
            }
            entry.clone()
        };
        let age = u32::try_from(now.saturating_duration_since(entry.stored).as_secs())
            .unwrap_or(u32::MAX);
        let response = readdress(entry.response, request, |ttl| ttl.saturating_sub(age));
        Some(CachedAnswer {
            response,
            lifetime: Duration::from_secs(u64::from(entry.ttl)),
            stored: entry.stored,
            age,
        })
    }

    /// The expired answer to `request` when it may still be served stale at `now` (expired
    /// less than the stale window ago): re-addressed to the request, its records as the upstream
    /// gave them, every TTL [`STALE_TTL`]. `None` when there is none, or a fresh one (the caller
    /// asks [`AnswerCache::lookup`] first), or serving stale answers is off.
    pub fn lookup_stale(&self, request: &Message, now: Instant) -> Option<Message> {
        let entries = self.entries.as_ref()?;
        let key = CacheKey::for_request(request)?;
        let entry = {
            let mut entries = entries.lock().ok()?;
            let entry = entries.get(&key)?;
            if !stale_eligible(entry.stored, entry.ttl, now, self.stale_max_age) {
                return None;
            }
            entry.clone()
        };
        Some(readdress(entry.response, request, |_| STALE_TTL))
    }

    /// Drops every answer that holds a record owned by a name for which `is_owned` holds (or
    /// answers such a name): after the zones changed, an upstream's records for a name that is
    /// ours now must not be served. Returns how many were dropped.
    pub fn drop_owned(&self, is_owned: impl Fn(&Name) -> bool) -> usize {
        let Some(entries) = &self.entries else {
            return 0;
        };
        let Ok(mut entries) = entries.lock() else {
            return 0;
        };
        let owned: Vec<CacheKey> = entries
            .iter()
            .filter(|(key, entry)| {
                is_owned(&key.name)
                    || entry
                        .response
                        .answers
                        .iter()
                        .chain(&entry.response.authorities)
                        .chain(&entry.response.additionals)
                        .any(|record| is_owned(&record.name))
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in &owned {
            if let Some(old) = entries.pop(key) {
                self.gone(&old);
            }
        }
        if !owned.is_empty() {
            self.changes.fetch_add(1, Ordering::AcqRel);
        }
        owned.len()
    }

    /// How many times the cache has changed (see the field).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Forgets every answer.
    pub fn clear(&self) {
        if let Some(entries) = &self.entries
            && let Ok(mut entries) = entries.lock()
        {
            entries.clear();
            self.bytes.store(0, Ordering::Relaxed);
        }
        self.changes.fetch_add(1, Ordering::AcqRel);
    }
}

/// An upstream's reply as every client may share it: without its OPT record (its options, a
/// COOKIE echoing the client cookie we sent, NSID, padding, keepalive, client subnet, belong
/// to that one exchange) and without any signature (TSIG, SIG(0): meta-records of one
/// transaction, never cached, RFC 8945 §4.1). What stays is the header, the question and the
/// three sections; [`readdress`] makes it one client's answer.
pub(crate) fn shareable(mut response: Message) -> Message {
    response.edns = None;
    response.signature = None;
    response.additionals.retain(|record| {
        !matches!(
            record.record_type(),
            RecordType::OPT | RecordType::TSIG | RecordType::SIG
        )
    });
    response
}

/// An upstream or cached response made the answer to `request`: its ID, question as asked, RD
/// and CD bits, an OPT record exactly when the request had one (ours: see
/// [`answer::reply_edns`]), nothing that belonged to another client's or the upstream's
/// exchange ([`shareable`]), and every record's TTL mapped by `ttl`. A cache hit and a miss
/// both go through here, so they give a client the same EDNS.
pub(crate) fn readdress(response: Message, request: &Message, ttl: impl Fn(u32) -> u32) -> Message {
    let mut response = shareable(response);
    response.metadata.id = request.metadata.id;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.queries = request.queries.clone();
    for record in response
        .answers
        .iter_mut()
        .chain(response.authorities.iter_mut())
        .chain(response.additionals.iter_mut())
    {
        record.ttl = ttl(record.ttl);
    }
    response.edns = request.edns.as_ref().map(answer::reply_edns);
    response
}

fn soa_negative_ttl(record: &Record) -> Option<u32> {
    match &record.data {
        RData::SOA(soa) => Some(record.ttl.min(soa.minimum)),
        _ => None,
    }
}

/// How long `response` may be cached, or `None` when it must not be.
pub fn cacheable_ttl(response: &Message) -> Option<u32> {
    if response.metadata.truncation {
        return None;
    }
    let code = response.metadata.response_code;
    let positive = code == ResponseCode::NoError && !response.answers.is_empty();
    if positive {
        return response
            .answers
            .iter()
            .chain(response.authorities.iter())
            .map(|record| record.ttl)
            .min();
    }
    if code == ResponseCode::NoError || code == ResponseCode::NXDomain {
        return response.authorities.iter().find_map(soa_negative_ttl);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::{A, SOA};

    fn query(name: &str) -> Message {
        let mut message = Message::new(7, MessageType::Query, OpCode::Query);
        let name = Name::from_ascii(name).expect("literal name");
        message.queries.push(Query::query(name, RecordType::A));
        message
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let origin = Name::from_ascii("example.").expect("literal");
        Record::from_rdata(
            origin.clone(),
            ttl,
            RData::SOA(SOA::new(origin.clone(), origin, 1, 1, 1, 1, minimum)),
        )
    }

    fn response(code: ResponseCode, answers: &[u32], authority: Option<Record>) -> Message {
        let mut message = query("www.example.");
        message.metadata.message_type = MessageType::Response;
        message.metadata.response_code = code;
        let name = Name::from_ascii("www.example.").expect("literal");
        for ttl in answers {
            let data = RData::A(A::new(198, 51, 100, 1));
            message
                .answers
                .push(Record::from_rdata(name.clone(), *ttl, data));
        }
        message.authorities.extend(authority);
        message
    }

    #[test]
    fn what_is_cached_and_for_how_long_table() {
        let cases: Vec<(&str, Message, Option<u32>)> = vec![
            (
                "positive: smallest TTL",
                response(ResponseCode::NoError, &[300, 60], None),
                Some(60),
            ),
            (
                "NXDOMAIN: min(SOA ttl, minimum)",
                response(ResponseCode::NXDomain, &[], Some(soa(900, 30))),
                Some(30),
            ),
            (
                "NODATA: min(SOA ttl, minimum)",
                response(ResponseCode::NoError, &[], Some(soa(20, 600))),
                Some(20),
            ),
            (
                "negative without SOA: not cached",
                response(ResponseCode::NXDomain, &[], None),
                None,
            ),
            (
                "SERVFAIL: not cached",
                response(ResponseCode::ServFail, &[], Some(soa(60, 60))),
                None,
            ),
            (
                "REFUSED: not cached",
                response(ResponseCode::Refused, &[], None),
                None,
            ),
        ];
        for (what, message, expected) in cases {
            assert_eq!(cacheable_ttl(&message), expected, "{what}");
        }
        let mut truncated = response(ResponseCode::NoError, &[60], None);
        truncated.metadata.truncation = true;
        assert_eq!(cacheable_ttl(&truncated), None, "truncated");
    }

    #[test]
    fn hits_are_readdressed_aged_and_expire() {
        let cache = AnswerCache::new(8);
        let start = Instant::now();
        let upstream = response(ResponseCode::NoError, &[10], None);
        let key = CacheKey::for_request(&query("www.example.")).expect("one question");
        cache.store(key, &upstream, start);

        let mut asked = query("WWW.Example.");
        asked.metadata.id = 4242;
        let cached = cache
            .lookup(&asked, start + Duration::from_millis(3_500))
            .expect("hit within the TTL");
        assert_eq!(
            (cached.stored, cached.lifetime, cached.age),
            (start, Duration::from_secs(10), 3),
            "stored at the start, for the TTL, 3 whole seconds old"
        );
        let hit = cached.response;
        assert_eq!(hit.metadata.id, 4242);
        assert_eq!(hit.queries[0].name().to_string(), "WWW.Example.");
        assert_eq!(hit.answers[0].ttl, 7);
        assert!(
            cache
                .lookup(&asked, start + Duration::from_secs(10))
                .is_none()
        );
        assert!(
            cache.lookup(&asked, start).is_none(),
            "expired entries are removed"
        );
    }

    #[test]
    fn the_change_count_counts_every_change_and_no_hit() {
        let cache = AnswerCache::new(1);
        let start = Instant::now();
        let store = |name: &str| {
            let key = CacheKey::for_request(&query(name)).expect("one question");
            cache.store(key, &response(ResponseCode::NoError, &[10], None), start);
        };
        assert_eq!(cache.changes(), 0);
        store("a.example.");
        assert_eq!(cache.changes(), 1, "a store");
        assert!(cache.lookup(&query("a.example."), start).is_some());
        assert!(cache.lookup(&query("b.example."), start).is_none());
        assert_eq!(cache.changes(), 1, "hits and misses change nothing");
        store("b.example.");
        assert_eq!(cache.changes(), 2, "a store that evicts");
        let later = start + Duration::from_secs(10);
        assert!(cache.lookup(&query("b.example."), later).is_none());
        assert_eq!(cache.changes(), 3, "an expired answer dropped");
        cache.clear();
        assert_eq!(cache.changes(), 4, "a clear");
    }

    #[test]
    fn stale_eligibility_table() {
        let stored = Instant::now();
        let day = Duration::from_secs(86_400);
        let at = |seconds: u64| stored + Duration::from_secs(seconds);
        let cases = [
            ("fresh: never stale", 10, at(5), day, false),
            ("at expiry", 10, at(10), day, true),
            ("an hour past expiry", 10, at(3_610), day, true),
            ("just within the window", 10, at(10 + 86_399), day, true),
            ("at the end of the window", 10, at(10 + 86_400), day, false),
            ("past the window", 10, at(10 + 90_000), day, false),
            ("window off", 10, at(11), Duration::ZERO, false),
        ];
        for (what, ttl, now, window, expected) in cases {
            assert_eq!(stale_eligible(stored, ttl, now, window), expected, "{what}");
        }
    }

    #[test]
    fn expired_answers_are_kept_for_the_stale_window_and_served_stale_only() {
        let cache = AnswerCache::with_stale(8, Duration::from_secs(60));
        let start = Instant::now();
        let key = CacheKey::for_request(&query("www.example.")).expect("one question");
        cache.store(
            key,
            &response(ResponseCode::NoError, &[10, 300], None),
            start,
        );
        let negative_key = CacheKey::for_request(&query("nx.example.")).expect("one question");
        let mut negative = response(ResponseCode::NXDomain, &[], Some(soa(900, 5)));
        negative.queries = query("nx.example.").queries;
        cache.store(negative_key, &negative, start);

        let mut asked = query("www.example.");
        asked.metadata.id = 99;
        assert!(
            cache
                .lookup_stale(&asked, start + Duration::from_secs(5))
                .is_none(),
            "a fresh answer is not stale"
        );
        let expired = start + Duration::from_secs(20);
        let changes = cache.changes();
        assert!(cache.lookup(&asked, expired).is_none(), "never fresh again");
        assert_eq!(cache.changes(), changes, "kept, not dropped");
        let stale = cache.lookup_stale(&asked, expired).expect("stale answer");
        assert_eq!(stale.metadata.id, 99);
        assert_eq!(
            stale.answers.iter().map(|r| r.ttl).collect::<Vec<_>>(),
            [STALE_TTL, STALE_TTL],
            "every TTL 30"
        );
        assert_eq!(
            stale.answers[0].data,
            RData::A(A::new(198, 51, 100, 1)),
            "the original data"
        );
        let nx = cache
            .lookup_stale(&query("nx.example."), expired)
            .expect("negative answers go stale too");
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(nx.authorities[0].ttl, STALE_TTL);

        let past_window = start + Duration::from_secs(10 + 61);
        assert!(cache.lookup_stale(&asked, past_window).is_none());
        assert!(cache.lookup(&asked, past_window).is_none());
        assert_eq!(cache.changes(), changes + 1, "dropped past the window");

        let off = AnswerCache::new(8);
        let key = CacheKey::for_request(&query("www.example.")).expect("one question");
        off.store(key, &response(ResponseCode::NoError, &[10], None), start);
        assert!(off.lookup_stale(&asked, expired).is_none(), "stale off");
    }

    #[test]
    fn answers_holding_names_that_became_ours_are_dropped() {
        let cache = AnswerCache::new(8);
        let now = Instant::now();
        let store = |name: &str, owner: &str| {
            let mut answer = response(ResponseCode::NoError, &[60], None);
            answer.answers[0].name = Name::from_ascii(owner).expect("literal");
            let key = CacheKey::for_request(&query(name)).expect("one question");
            cache.store(key, &answer, now);
        };
        store("www.example.", "www.example.");
        store("alias.example.", "target.ours.");
        store("x.ours.", "x.ours.");
        let changes = cache.changes();
        let ours = Name::from_ascii("ours.").expect("literal");
        assert_eq!(cache.drop_owned(|name| ours.zone_of(name)), 2);
        assert!(cache.lookup(&query("www.example."), now).is_some());
        assert!(cache.lookup(&query("alias.example."), now).is_none());
        assert!(cache.lookup(&query("x.ours."), now).is_none());
        assert_eq!(cache.changes(), changes + 1);
        assert_eq!(cache.drop_owned(|name| ours.zone_of(name)), 0);
        assert_eq!(cache.changes(), changes + 1, "nothing dropped, no change");
    }

    #[test]
    fn the_cache_is_bounded_in_bytes_whatever_the_answers_weigh() {
        // Answers of 4,000 records each, in a cache that would take 10,000 of them.
        let big = |name: &str| {
            let mut answer = response(ResponseCode::NoError, &[], None);
            let owner = Name::from_ascii(name).expect("literal");
            for index in 0..4_000u32 {
                let [_, _, high, low] = index.to_be_bytes();
                let data = RData::A(A::new(198, 51, high, low));
                answer
                    .answers
                    .push(Record::from_rdata(owner.clone(), 60, data));
            }
            answer
        };
        let one = entry_cost(&big("a.example.")).expect("encodes");
        assert!(
            one > 4_000 * size_of::<Record>(),
            "weighs its records: {one}"
        );
        let cache = AnswerCache::new(10_000).with_max_bytes(3 * one + one / 2);
        let now = Instant::now();
        let names: Vec<String> = (0..20).map(|i| format!("n{i}.example.")).collect();
        for name in &names {
            let key = CacheKey::for_request(&query(name)).expect("one question");
            cache.store(key, &big(name), now);
            assert!(
                cache.bytes() <= 3 * one + one / 2,
                "{} bytes",
                cache.bytes()
            );
        }
        assert_eq!(cache.bytes(), 3 * one, "the three most recent");
        assert!(cache.lookup(&query("n19.example."), now).is_some());
        assert!(cache.lookup(&query("n16.example."), now).is_none());
        // Replacing, expiring and clearing give the bytes back.
        let key = CacheKey::for_request(&query("n19.example.")).expect("one question");
        cache.store(key, &big("n19.example."), now);
        assert_eq!(cache.bytes(), 3 * one);
        assert!(
            cache
                .lookup(&query("n18.example."), now + Duration::from_secs(60))
                .is_none()
        );
        assert_eq!(cache.bytes(), 2 * one, "an expired one dropped");
        cache.clear();
        assert_eq!(cache.bytes(), 0);
        // An answer heavier than the whole cache is not kept.
        let small = AnswerCache::new(10).with_max_bytes(one - 1);
        let key = CacheKey::for_request(&query("a.example.")).expect("one question");
        small.store(key, &big("a.example."), now);
        assert_eq!(small.bytes(), 0);
    }

    #[test]
    fn capacity_is_bounded_and_zero_disables() {
        let cache = AnswerCache::new(2);
        let now = Instant::now();
        for name in ["a.example.", "b.example.", "c.example."] {
            let key = CacheKey::for_request(&query(name)).expect("one question");
            cache.store(key, &response(ResponseCode::NoError, &[60], None), now);
        }
        assert!(
            cache.lookup(&query("a.example."), now).is_none(),
            "oldest evicted"
        );
        assert!(cache.lookup(&query("c.example."), now).is_some());

        let disabled = AnswerCache::new(0);
        let key = CacheKey::for_request(&query("a.example.")).expect("one question");
        disabled.store(key, &response(ResponseCode::NoError, &[60], None), now);
        assert!(disabled.lookup(&query("a.example."), now).is_none());
    }
}
