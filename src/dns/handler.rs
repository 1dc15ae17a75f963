//! The request path, top to bottom: bytes → parse → shape checks → zone lookup → policy filter →
//! health order → response → bytes; or, for a name we do not own: → cache → forwarder → bytes.
//! Every stage is a call into its own module; this file only says in which order they run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use tracing::debug;

use crate::config::limits::ForwardAllow;
use crate::dns::answer::{self, BadKey, LocalAnswer, Transport};
use crate::dns::fastpath::{AnswerMemo, AnswerState, CacheAging, MemoCounts};
use crate::dns::forward::{ForwardResult, ForwardSettings, Forwarder, IsOwned, cache};
use crate::dns::snapshot::{SharedSnapshot, Snapshot};
use crate::dns::zones::Lookup;
use crate::health::HealthTable;
use crate::metrics::{Metrics, ResponseKind};

/// Answers DNS queries from the current snapshot and the health table, and forwards the rest.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handler {
    snapshot: SharedSnapshot,
    health: HealthTable,
    forwarder: Forwarder,
    /// Which clients names outside the zones are forwarded for.
    forward_allow: ForwardAllow,
    /// What the server counts.
    metrics: Metrics,
}

/// Who sent a query, and how: the transport sets the response size limit, the address decides
/// whether names outside the zones are forwarded for it ([`ForwardAllow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The client's address and port as the socket saw them.
    pub address: SocketAddr,
    /// UDP or TCP.
    pub transport: Transport,
}

/// What the socket loop does next with a packet: the synchronous part of the request path's
/// verdict.
#[derive(Debug)]
pub enum Step {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not ours and not cached: finish with [`Handler::finish_forward`], off the receive loop.
    Forward(ForwardJob),
    /// Send nothing (the packet is a response, or has no complete header).
    Drop,
}

/// A query to forward upstream.
#[derive(Debug)]
pub struct ForwardJob {
    request: Message,
    transport: Transport,
    /// When the query arrived, for the handling-time histogram.
    started: Instant,
}

/// How a local answer is counted.
fn response_kind(local: &LocalAnswer) -> ResponseKind {
    match local {
        LocalAnswer::Answer { .. } => ResponseKind::Answer,
        LocalAnswer::NoData { .. } => ResponseKind::NoData,
        LocalAnswer::NxDomain { .. } => ResponseKind::NxDomain,
        LocalAnswer::Refused => ResponseKind::Refused,
        LocalAnswer::FormErr => ResponseKind::FormErr,
        LocalAnswer::NotImp | LocalAnswer::BadVersion => ResponseKind::NotImplemented,
        LocalAnswer::ServFail => ResponseKind::ServFail,
        LocalAnswer::NotAuth(_) => ResponseKind::NotAuth,
    }
}

/// Where a query goes.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "a short-lived stack value; boxing the local answer would allocate on every query"
)]
enum Route {
    /// Answered here.
    Local(LocalAnswer),
    /// Forwarded upstream.
    Forward,
}

impl Handler {
    /// A handler over `snapshot` ordered by `health`, forwarding through `forwarder`, counting
    /// in `metrics`. The server builds one ([`crate::embed`]); its clones share everything.
    pub fn new(
        snapshot: SharedSnapshot,
        health: HealthTable,
        forwarder: Forwarder,
        metrics: Metrics,
    ) -> Self {
        Handler {
            snapshot,
            health,
            forwarder,
            forward_allow: ForwardAllow::default(),
            metrics,
        }
    }

    /// A handler of its own, for tests, benchmarks and tools: over `snapshot` and `health`,
    /// forwarding as `forward` says, with counters nobody reads.
    pub fn standalone(
        snapshot: SharedSnapshot,
        health: HealthTable,
        forward: ForwardSettings,
    ) -> Self {
        let metrics = Metrics::new();
        Handler::new(snapshot, health, Forwarder::new(forward, &metrics), metrics)
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The same handler, forwarding only for clients `allow` permits (the default: loopback).
    pub fn with_forward_allow(mut self, allow: ForwardAllow) -> Self {
        self.forward_allow = allow;
        self
    }

    /// The snapshot handle (for reload and status).
    pub fn snapshot(&self) -> &SharedSnapshot {
        &self.snapshot
    }

    /// The health table (for reports and status).
    pub fn health(&self) -> &HealthTable {
        &self.health
    }

    /// The forwarder.
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// Handles one DNS message as far as it can without waiting: owned names, cached forwarded
    /// answers and every error are answered at once; the rest becomes a [`ForwardJob`]. Always
    /// the general path (see [`Handler::handle_memoised`] for the fast one).
    pub fn handle(&self, packet: &[u8], client: Client) -> Step {
        self.handle_at(packet, client, Instant::now())
    }

    /// [`Handler::handle`] at the moment `now` (cached answers are aged to it).
    pub(crate) fn handle_at(&self, packet: &[u8], client: Client, now: Instant) -> Step {
        self.handle_general(packet, client, now).0
    }

    /// [`Handler::handle`] through `memo`: a query whose bytes (after the ID) were answered
    /// before, in the same state of snapshot and health table, gets that answer with its own ID
    /// without being parsed; any other goes the general path, and its answer is memoised when it
    /// came from the zones or the forwarding cache. See [`crate::dns::fastpath`] for why the two give
    /// the same bytes.
    ///
    /// A memoised reply is written into `recycled` (cleared first), so a caller that hands back
    /// the buffers of replies it has sent answers without allocating; `Vec::new()` will do.
    pub fn handle_memoised(
        &self,
        memo: &mut AnswerMemo,
        packet: &[u8],
        client: Client,
        recycled: Vec<u8>,
    ) -> Step {
        self.handle_memoised_at(memo, packet, client, recycled, Instant::now())
    }

    /// [`Handler::handle_memoised`] at the moment `now` (cached answers are aged to it).
    pub(crate) fn handle_memoised_at(
        &self,
        memo: &mut AnswerMemo,
        packet: &[u8],
        client: Client,
        recycled: Vec<u8>,
        now: Instant,
    ) -> Step {
        let started = now;
        // Read before answering: a change after this point makes the memo stale, never wrong.
        let state = AnswerState {
            snapshot_changes: self.snapshot.changes(),
            health_changes: self.health.changes(),
            transport: client.transport,
            may_forward: self.may_forward(client),
            cache_changes: self.forwarder.cache_changes(),
        };
        let mut reply = recycled;
        reply.clear();
        if let Some(counts) = memo.answer(packet, &state, now, &mut reply) {
            debug!(outcome = ?counts.outcome, "query answered from the memo");
            if counts.aging.is_some() {
                self.metrics.cache_hit();
            }
            if counts.outcome == ResponseKind::Answer {
                self.health.note_answered();
            }
            self.metrics
                .query(counts.query_type, counts.outcome, started.elapsed());
            return Step::Reply(reply);
        }
        let (step, counts) = self.handle_general(packet, client, started);
        if let (Step::Reply(bytes), Some(counts)) = (&step, counts) {
            memo.remember(packet, state, counts, bytes);
        }
        step
    }

    /// The general path at `started` (also the moment cached answers are aged to); the counts
    /// come back when the reply may be memoised (it was decided from the zones alone, or came
    /// from the forwarding cache).
    fn handle_general(
        &self,
        packet: &[u8],
        client: Client,
        started: Instant,
    ) -> (Step, Option<MemoCounts>) {
        let transport = client.transport;
        let request = match Message::from_vec(packet) {
            Ok(request) => request,
            Err(error) => {
                debug!(%error, "unparsable query");
                let reply = answer::formerr_for_unparsable(packet);
                if reply.is_some() {
                    self.metrics
                        .query(None, ResponseKind::FormErr, started.elapsed());
                }
                return (reply.map_or(Step::Drop, Step::Reply), None);
            }
        };
        let query_type = request.queries.first().map(Query::query_type);
        if request.metadata.message_type != MessageType::Query {
            return (Step::Drop, None);
        }
        let limit = answer::size_limit(&request, transport);
        // RA tells the client whether we recurse for it: only when we would forward for it.
        let may_forward = self.may_forward(client);
        let local = match self.route(&request, may_forward) {
            Route::Local(local) => local,
            Route::Forward => {
                // The count first: a reload after it is seen again by the next query.
                let changes = self.snapshot.changes();
                let snapshot = self.snapshot.load();
                self.forwarder
                    .forget_now_owned(changes, |name| snapshot.zones.zone_of(name).is_some());
                if let Some(cached) = self.forwarder.cached_at(&request, started) {
                    debug!(id = request.metadata.id, "forwarded answer from cache");
                    self.metrics.cache_hit();
                    let reply = answer::encode_response(&cached.response, limit);
                    self.metrics
                        .query(query_type, ResponseKind::Forwarded, started.elapsed());
                    // A TSIG record would be encoded with its TTL unchanged: not memoised.
                    let counts = cached.response.signature.is_none().then_some(MemoCounts {
                        query_type,
                        outcome: ResponseKind::Forwarded,
                        aging: Some(CacheAging {
                            stored: cached.stored,
                            lifetime: cached.lifetime,
                            age: cached.age,
                        }),
                    });
                    return (Step::Reply(reply), counts);
                }
                let job = ForwardJob {
                    request,
                    transport,
                    started,
                };
                return (Step::Forward(job), None);
            }
        };
        debug!(
            id = request.metadata.id,
            question = ?request.queries.first().map(|q| q.to_string()),
            outcome = local.label(),
            "query"
        );
        let outcome = response_kind(&local);
        if outcome == ResponseKind::Answer {
            // A connect to one of the endpoints is likely to follow: the observer looks.
            self.health.note_answered();
        }
        // A BADKEY reply carries the time it was made: never replayed from the memo.
        let memoisable = !matches!(local, LocalAnswer::NotAuth(_));
        let response = answer::build_response(&request, local, may_forward);
        let reply = answer::encode_response(&response, limit);
        self.metrics.query(query_type, outcome, started.elapsed());
        let counts = memoisable.then_some(MemoCounts {
            query_type,
            outcome,
            aging: None,
        });
        (Step::Reply(reply), counts)
    }

    /// Forwards a query upstream and returns the reply for the client: the upstream's answer
    /// made this client's ([`forwarded_reply`]), truncated to its limit; SERVFAIL when every
    /// upstream failed.
    pub async fn finish_forward(&self, job: ForwardJob) -> Vec<u8> {
        let ForwardJob {
            request,
            transport,
            started,
        } = job;
        let query_type = request.queries.first().map(Query::query_type);
        // The zones when the answer comes, not when the query left: a reload in between may
        // have made its names ours.
        let snapshot = self.snapshot.clone();
        let is_owned: IsOwned =
            Arc::new(move |name: &Name| snapshot.load().zones.zone_of(name).is_some());
        let resolution = self.forwarder.resolve(&request, transport, is_owned).await;
        if let ForwardResult::Failed(None) = resolution {
            debug!(id = request.metadata.id, "every upstream failed");
        }
        let (reply, outcome) = forwarded_reply(&request, resolution, transport);
        self.metrics.query(query_type, outcome, started.elapsed());
        reply
    }

    /// SERVFAIL for a query that cannot be forwarded now (every forward slot is taken), counted.
    pub fn servfail(&self, job: &ForwardJob) -> Vec<u8> {
        let request = &job.request;
        let response = answer::build_response(request, LocalAnswer::ServFail, true);
        let query_type = request.queries.first().map(Query::query_type);
        self.metrics
            .query(query_type, ResponseKind::ServFail, job.started.elapsed());
        answer::encode_response(&response, answer::size_limit(request, job.transport))
    }

    /// The whole request path, waiting for upstreams when needed.
    pub async fn respond(&self, packet: &[u8], client: Client) -> Option<Vec<u8>> {
        match self.handle(packet, client) {
            Step::Reply(bytes) => Some(bytes),
            Step::Forward(job) => Some(self.finish_forward(job).await),
            Step::Drop => None,
        }
    }

    /// Whether names outside the zones are forwarded for `client`: an upstream is configured
    /// and the allow-list permits the client (never an open resolver).
    fn may_forward(&self, client: Client) -> bool {
        self.forwarder.is_enabled() && self.forward_allow.permits(client.address.ip())
    }

    /// Decides where a parsed query goes; `may_forward` says whether this client's names
    /// outside the zones go upstream or are refused.
    fn route(&self, request: &Message, may_forward: bool) -> Route {
        if request.metadata.op_code != OpCode::Query {
            return Route::Local(LocalAnswer::NotImp);
        }
        if let Some(bad_key) = signed_by(request) {
            debug!(id = request.metadata.id, key = %bad_key.key, "signed query; we hold no key");
            return Route::Local(LocalAnswer::NotAuth(Box::new(bad_key)));
        }
        if request.edns.as_ref().is_some_and(|edns| edns.version() > 0) {
            return Route::Local(LocalAnswer::BadVersion);
        }
        let [query] = request.queries.as_slice() else {
            return Route::Local(LocalAnswer::FormErr);
        };
        let snapshot = self.snapshot.load();
        if let Some(local) = answer_owned(&snapshot, &self.health, query) {
            return Route::Local(local);
        }
        if may_forward {
            Route::Forward
        } else {
            if self.forwarder.is_enabled() {
                debug!(id = request.metadata.id, "client may not forward; refused");
            }
            Route::Local(LocalAnswer::Refused)
        }
    }
}

/// The key a signed query names (its TSIG or SIG(0) record, RFC 8945, RFC 2931), for the BADKEY
/// reply; `None` for an unsigned query. We hold no key, so a signed query is never answered as
/// if it were plain (its sender wants its answer verified) nor forwarded (its MAC covers its
/// own bytes, which we do not send upstream).
fn signed_by(request: &Message) -> Option<BadKey> {
    let time = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    // The parser keeps a TSIG apart from the additional section where it recognises it.
    if let Some(signature) = &request.signature {
        return Some(BadKey {
            key: signature.name.clone(),
            algorithm: signature.data.algorithm.clone(),
            time,
        });
    }
    let record = request
        .additionals
        .iter()
        .find(|record| matches!(record.record_type(), RecordType::TSIG | RecordType::SIG))?;
    let algorithm = match &record.data {
        RData::TSIG(tsig) => tsig.algorithm.clone(),
        _ => TsigAlgorithm::HmacSha256,
    };
    Some(BadKey {
        key: record.name.clone(),
        algorithm,
        time,
    })
}

/// The bytes a forwarded query's client gets for `resolution`, and how it is counted. Every
/// upstream answer is rebuilt for the client ([`cache::readdress`]: its ID, question, EDNS), as a
/// cache hit is, so the two never differ in what belongs to the client.
pub(crate) fn forwarded_reply(
    request: &Message,
    resolution: ForwardResult,
    transport: Transport,
) -> (Vec<u8>, ResponseKind) {
    let limit = answer::size_limit(request, transport);
    let (response, outcome) = match resolution {
        // An upstream's own SERVFAIL or REFUSED is passed on as its answer.
        ForwardResult::Answered(forwarded) | ForwardResult::Failed(Some(forwarded)) => (
            cache::readdress(forwarded.message, request, |ttl| ttl),
            ResponseKind::Forwarded,
        ),
        ForwardResult::Refreshed(message) => (message, ResponseKind::Forwarded),
        ForwardResult::Stale(message) => (message, ResponseKind::Stale),
        ForwardResult::Failed(None) => (
            answer::build_response(request, LocalAnswer::ServFail, true),
            ResponseKind::ServFail,
        ),
    };
    (answer::encode_response(&response, limit), outcome)
}

/// Zone lookup → policy filter → health order → records, for one question; `None` when the
/// name is not ours.
fn answer_owned(snapshot: &Snapshot, health: &HealthTable, query: &Query) -> Option<LocalAnswer> {
    let qname = query.name();
    let qtype = query.query_type();
    let owned = match snapshot.zones.lookup(qname) {
        Lookup::Owned(owned) => owned,
        Lookup::NotOwned => return reverse_lookup(snapshot, query),
    };
    // Other classes, and zone transfers (this is no primary server), are not served.
    if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY)
        || matches!(qtype, RecordType::AXFR | RecordType::IXFR)
    {
        return Some(LocalAnswer::Refused);
    }
    let zone = owned.zone;
    let mut records = Vec::new();
    let visible_name = owned
        .shared
        .filter(|&(index, _)| snapshot.is_visible(index));
    if let Some((_, name)) = visible_name {
        let ordered = snapshot.answer_order(name, health);
        records = answer::address_records(qname, qtype, &ordered, zone.answer_ttl);
    }
    if owned.is_apex && matches!(qtype, RecordType::SOA | RecordType::ANY) {
        records.push(zone.soa_record.clone());
    }
    if !records.is_empty() {
        return Some(LocalAnswer::Answer { records });
    }
    let soa = zone.soa_record.clone();
    // The name exists for this client when it has visible data, is the apex, or lies above a
    // visible name (an empty non-terminal, RFC 8020); else it does not exist for this client.
    let exists = visible_name.is_some()
        || owned.is_apex
        || owned.below.iter().any(|&index| snapshot.is_visible(index));
    Some(if exists {
        LocalAnswer::NoData { soa }
    } else {
        LocalAnswer::NxDomain { soa }
    })
}

/// PTR for an endpoint address: the shared names carrying it that this client may see.
fn reverse_lookup(snapshot: &Snapshot, query: &Query) -> Option<LocalAnswer> {
    if !matches!(query.query_type(), RecordType::PTR) {
        return None;
    }
    let (address, names) = snapshot.zones.reverse(query.name())?;
    let mut ttl = u32::MAX;
    let mut targets = Vec::new();
    for &index in names {
        let Some(shared) = snapshot.zones.name(index) else {
            continue;
        };
        let visible = snapshot
            .permitted_endpoints(shared)
            .any(|endpoint| endpoint.address == address);
        if visible {
            if let Some(zone) = snapshot.zones.data().zones.get(shared.zone) {
                ttl = ttl.min(zone.answer_ttl);
            }
            targets.push(&shared.name);
        }
    }
    if targets.is_empty() {
        return None;
    }
    Some(LocalAnswer::Answer {
        records: answer::ptr_records(query.name(), targets, ttl),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_handler;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::Name;

    fn ask(name: &str, qtype: RecordType) -> Message {
        let handler = test_handler();
        let mut query = Message::query();
        query.add_query(Query::query(
            Name::from_ascii(name).expect("literal"),
            qtype,
        ));
        let client = Client {
            address: SocketAddr::from(([127, 0, 0, 1], 5353)),
            transport: Transport::Tcp,
        };
        match handler.handle(&query.to_vec().expect("encodes"), client) {
            Step::Reply(bytes) => Message::from_vec(&bytes).expect("reply parses"),
            other => panic!("{name} {qtype}: {other:?}"),
        }
    }

    #[test]
    fn zone_transfers_are_refused_other_types_answered_table() {
        let cases = [
            (RecordType::AXFR, ResponseCode::Refused),
            (RecordType::IXFR, ResponseCode::Refused),
            (RecordType::SOA, ResponseCode::NoError),
            (RecordType::NS, ResponseCode::NoError),
        ];
        for (qtype, expected) in cases {
            let reply = ask("internal.", qtype);
            assert_eq!(reply.metadata.response_code, expected, "{qtype}");
        }
    }
}
