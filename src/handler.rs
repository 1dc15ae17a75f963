//! The request path, top to bottom: bytes → parse → shape checks → zone lookup → policy filter →
//! health order → response → bytes. Every stage is a call into its own module; this file only
//! says in which order they run.

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, RecordType};
use tracing::debug;

use crate::answer::{self, Decision, Transport};
use crate::health::HealthTable;
use crate::snapshot::{SharedSnapshot, Snapshot};
use crate::zones::Lookup;

/// Answers DNS queries from the current snapshot and the health table. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handler {
    snapshot: SharedSnapshot,
    health: HealthTable,
}

impl Handler {
    /// A handler over `snapshot` ordered by `health`.
    pub fn new(snapshot: SharedSnapshot, health: HealthTable) -> Self {
        Handler { snapshot, health }
    }

    /// The snapshot handle (for reload and status).
    pub fn snapshot(&self) -> &SharedSnapshot {
        &self.snapshot
    }

    /// The health table (for reports and status).
    pub fn health(&self) -> &HealthTable {
        &self.health
    }

    /// Handles one DNS message from a client and returns the bytes to send back, or `None` when
    /// the packet must be dropped (it is a response, or too short to carry an ID).
    pub fn handle(&self, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let request = match Message::from_vec(packet) {
            Ok(request) => request,
            Err(error) => {
                debug!(%error, "unparsable query");
                return answer::formerr_for_unparsable(packet);
            }
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let decision = self.decide(&request);
        debug!(
            id = request.metadata.id,
            question = ?request.queries.first().map(|q| q.to_string()),
            outcome = decision.label(),
            "query"
        );
        let response = answer::build_response(&request, decision);
        Some(answer::encode_response(
            &response,
            answer::size_limit(&request, transport),
        ))
    }

    /// Decides the answer for a parsed query.
    pub fn decide(&self, request: &Message) -> Decision {
        if request.metadata.op_code != OpCode::Query {
            return Decision::NotImp;
        }
        if request.edns.as_ref().is_some_and(|edns| edns.version() > 0) {
            return Decision::BadVersion;
        }
        let [query] = request.queries.as_slice() else {
            return Decision::FormErr;
        };
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            return Decision::Refused;
        }
        let snapshot = self.snapshot.load();
        answer_query(&snapshot, &self.health, query)
    }
}

/// Zone lookup → policy filter → health order → records, for one question.
fn answer_query(snapshot: &Snapshot, health: &HealthTable, query: &Query) -> Decision {
    let qname = query.name();
    let qtype = query.query_type();
    let owned = match snapshot.zones.lookup(qname) {
        Lookup::Owned(owned) => owned,
        Lookup::NotOwned => return reverse_lookup(snapshot, query).unwrap_or(Decision::Refused),
    };
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
        return Decision::Answer { records };
    }
    let soa = zone.soa_record.clone();
    // The name exists for this client when it has visible data, is the apex, or lies above a
    // visible name (an empty non-terminal, RFC 8020); else it does not exist for this client.
    let exists = visible_name.is_some()
        || owned.is_apex
        || owned.below.iter().any(|&index| snapshot.is_visible(index));
    if exists {
        Decision::NoData { soa }
    } else {
        Decision::NxDomain { soa }
    }
}

/// PTR for an endpoint address: the shared names carrying it that this client may see.
fn reverse_lookup(snapshot: &Snapshot, query: &Query) -> Option<Decision> {
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
    Some(Decision::Answer {
        records: answer::ptr_records(query.name(), targets, ttl),
    })
}
