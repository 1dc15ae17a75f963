//! Turns what the handler decided into DNS: the health order of a name's permitted endpoints, the
//! response message, and its wire encoding within the client's size limit (TC when it does not
//! fit). Pure functions; no I/O.

use std::cmp::Reverse;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TSIG, TsigAlgorithm, TsigError, make_tsig_record};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::health::{EndpointHealth, State};
use crate::model::Endpoint;

/// The largest UDP payload we send, whatever the client advertises: the DNS Flag Day 2020 value,
/// which avoids IP fragmentation on ordinary paths.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// The UDP limit for a client that sent no EDNS OPT record (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// An endpoint in answer order, with the health that put it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderedEndpoint {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its health when the order was computed.
    pub health: EndpointHealth,
}

impl OrderedEndpoint {
    /// Up, unknown or down.
    pub fn state(&self) -> State {
        self.health.state()
    }
}

/// Where an endpoint's destination stands apart from its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// Ordered by health alone.
    #[default]
    ByHealth,
    /// A primary asset in a zone with `failback`: first as soon as it is up.
    FailbackPrimary,
    /// A draining destination (maintenance): after every other endpoint, still answered.
    Draining,
}

/// Orders permitted endpoints (given in configuration order) for an answer, deduplicated by
/// address:
/// - a `failback` primary that is up, first;
/// - up endpoints whose last success came from real traffic (agent, observer) since their last
///   failure, most recent success first: "prefer whichever path most recently worked";
/// - then up endpoints known alive only from probes, in configuration order (probes say a
///   path is alive, not that it is used, so they never reorder healthy paths);
/// - then unknown endpoints (no report yet), in configuration order;
/// - then down endpoints (a failure newer than any success), oldest failure first, so failed
///   paths are retried in rotation rather than abandoned;
/// - the endpoints of draining destinations after all of those, in the same order among
///   themselves.
pub fn order_endpoints(
    permitted: impl IntoIterator<Item = Endpoint>,
    health_of: impl Fn(IpAddr) -> EndpointHealth,
    placement_of: impl Fn(&Endpoint) -> Placement,
) -> Vec<OrderedEndpoint> {
    let mut ordered: Vec<OrderedEndpoint> = Vec::new();
    for endpoint in permitted {
        if ordered
            .iter()
            .any(|o| o.endpoint.address == endpoint.address)
        {
            continue;
        }
        let health = health_of(endpoint.address);
        ordered.push(OrderedEndpoint { endpoint, health });
    }
    // A stable sort keeps configuration order among equals. The placement is asked again at
    // each comparison rather than kept beside each endpoint: names have a handful of endpoints,
    // and a second vector would be a second allocation per answer.
    ordered.sort_by_key(|o| {
        let placement = placement_of(&o.endpoint);
        let draining = u8::from(placement == Placement::Draining);
        let never = Reverse(0);
        match o.state() {
            State::Up if placement == Placement::FailbackPrimary => (draining, 0, never, 0),
            // Traffic from before the last failure says nothing about the path since: an
            // endpoint that recovered through a probe or a re-check is "alive", not "in use".
            State::Up => match o.health.last_traffic_success.filter(|success| {
                o.health
                    .last_failure
                    .is_none_or(|failure| success.sequence > failure.sequence)
            }) {
                Some(success) => (draining, 1, Reverse(success.sequence), 0),
                None => (draining, 2, never, 0),
            },
            State::Unknown => (draining, 3, never, 0),
            State::Down => (
                draining,
                4,
                never,
                o.health.last_failure.map_or(0, |s| s.sequence),
            ),
        }
    });
    ordered
}

/// Address records for `qtype` from ordered endpoints, owned by the name as the client asked it.
/// `ANY` gets every address (RFC 8482 allows a subset; the addresses are what a client wants).
pub fn address_records(
    owner: &Name,
    qtype: RecordType,
    ordered: &[OrderedEndpoint],
    ttl: u32,
) -> Vec<Record> {
    ordered
        .iter()
        .filter_map(|o| match (o.endpoint.address, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(v4))),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(v6))),
            _ => None,
        })
        .map(|rdata| Record::from_rdata(owner.clone(), ttl, rdata))
        .collect()
}

/// PTR records naming `targets`, owned by the reverse name as asked.
pub fn ptr_records<'a>(
    owner: &Name,
    targets: impl IntoIterator<Item = &'a Name>,
    ttl: u32,
) -> Vec<Record> {
    targets
        .into_iter()
        .map(|target| Record::from_rdata(owner.clone(), ttl, RData::PTR(PTR(target.clone()))))
        .collect()
}

/// The answer to an owned name, or the error response, decided here without an upstream (a
/// query that goes upstream ends in a [`crate::dns::forward::ForwardResult`]).
#[derive(Debug, Clone, PartialEq)]
pub enum LocalAnswer {
    /// Authoritative data for an owned name.
    Answer {
        /// The answer section.
        records: Vec<Record>,
    },
    /// The name exists but has no data of the asked type: NOERROR, no answers, SOA.
    NoData {
        /// The zone's SOA for the authority section.
        soa: Record,
    },
    /// The name does not exist for this client: NXDOMAIN with SOA.
    NxDomain {
        /// The zone's SOA for the authority section.
        soa: Record,
    },
    /// Not ours to answer (outside the owned zones; forwarding is not configured).
    Refused,
    /// The query is malformed (no question, several questions).
    FormErr,
    /// An opcode we do not implement.
    NotImp,
    /// The client's EDNS version is higher than 0 (RFC 6891 §6.1.3).
    BadVersion,
    /// A signed query (TSIG or SIG(0)): we hold no key, so none can be verified. NOTAUTH with
    /// an unsigned TSIG record carrying BADKEY (RFC 8945 §5.2.2).
    NotAuth(Box<BadKey>),
    /// Forwarding failed: every upstream failed or timed out.
    ServFail,
}

impl LocalAnswer {
    /// A word for logs and counters.
    pub fn label(&self) -> &'static str {
        match self {
            LocalAnswer::Answer { .. } => "answer",
            LocalAnswer::NoData { .. } => "nodata",
            LocalAnswer::NxDomain { .. } => "nxdomain",
            LocalAnswer::Refused => "refused",
            LocalAnswer::FormErr => "formerr",
            LocalAnswer::NotImp => "notimp",
            LocalAnswer::BadVersion => "badvers",
            LocalAnswer::NotAuth(_) => "notauth",
            LocalAnswer::ServFail => "servfail",
        }
    }
}

/// What the TSIG record of a BADKEY reply says: the key and algorithm the query named, and the
/// time we signed nothing at.
#[derive(Debug, Clone, PartialEq)]
pub struct BadKey {
    /// The key name (the owner of the query's TSIG or SIG record).
    pub key: Name,
    /// The query's algorithm (a SIG(0) query has none of TSIG's: `hmac-sha256` stands in).
    pub algorithm: TsigAlgorithm,
    /// Seconds since the Unix epoch.
    pub time: u64,
}

/// The TSIG record of a BADKEY reply to a query with ID `id` (RFC 8945 §5.2.2, §5.3.2): the
/// query's key and algorithm, no MAC, error BADKEY, class ANY, TTL 0.
fn bad_key_record(id: u16, bad_key: BadKey) -> Record<TSIG> {
    let tsig = TSIG::new(
        bad_key.algorithm,
        bad_key.time,
        TSIG_FUDGE,
        Vec::new(),
        id,
        Some(TsigError::BadKey),
        Vec::new(),
    );
    make_tsig_record(bad_key.key, tsig)
}

/// The fudge of our TSIG records: RFC 8945 §10 recommends 300 s.
const TSIG_FUDGE: u16 = 300;

/// The transport a query came in on; it sets the response size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: limited by the client's EDNS payload size (512 without EDNS).
    Udp,
    /// TCP: up to 65535 bytes.
    Tcp,
}

/// The largest response the client accepts over `transport`.
pub fn size_limit(request: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => match &request.edns {
            Some(edns) => usize::from(
                edns.max_payload()
                    .clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD),
            ),
            None => usize::from(CLASSIC_UDP_PAYLOAD),
        },
    }
}

/// Builds the response message for `request`. `recursion_available` is the RA bit: set when
/// names outside the owned zones are forwarded.
pub fn build_response(request: &Message, local: LocalAnswer, recursion_available: bool) -> Message {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.recursion_available = recursion_available;
    let mut answers = Vec::new();
    let mut authorities = Vec::new();
    let mut signature = None;
    match local {
        LocalAnswer::Answer { records } => {
            metadata.authoritative = true;
            answers = records;
        }
        LocalAnswer::NoData { soa } => {
            metadata.authoritative = true;
            authorities.push(soa);
        }
        LocalAnswer::NxDomain { soa } => {
            metadata.authoritative = true;
            metadata.response_code = ResponseCode::NXDomain;
            authorities.push(soa);
        }
        LocalAnswer::Refused => metadata.response_code = ResponseCode::Refused,
        LocalAnswer::FormErr => metadata.response_code = ResponseCode::FormErr,
        LocalAnswer::NotImp => {
            // RD, CD and RA are defined for QUERY only: an opcode we do not know gets a bare
            // header, only QR with its opcode and ID (as nsd, knot and unbound answer).
            metadata = Metadata::new(metadata.id, MessageType::Response, metadata.op_code);
            metadata.response_code = ResponseCode::NotImp;
        }
        LocalAnswer::BadVersion => metadata.response_code = ResponseCode::BADVERS,
        LocalAnswer::NotAuth(bad_key) => {
            metadata.response_code = ResponseCode::NotAuth;
            signature = Some(Box::new(bad_key_record(metadata.id, *bad_key)));
        }
        LocalAnswer::ServFail => metadata.response_code = ResponseCode::ServFail,
    }
    let mut response = Message::new(metadata.id, MessageType::Response, metadata.op_code);
    response.metadata = metadata;
    response.queries = request.queries.clone();
    response.answers = answers;
    response.authorities = authorities;
    response.signature = signature;
    response.edns = request.edns.as_ref().map(reply_edns);
    response
}

/// The OPT record of every reply to a query that carried `asked` (RFC 6891 §7: a reply to a
/// query with OPT carries OPT, one without carries none): our own payload size, version 0, the
/// query's DO bit (RFC 3225 §3), and no option. Options belong to one conversation: a COOKIE
/// echoes one client's cookie, NSID, padding and keepalive describe one server's connection,
/// client subnet one client's network; we answer none of them, whoever asked.
pub fn reply_edns(asked: &Edns) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD);
    edns.set_version(0);
    edns.set_dnssec_ok(asked.flags().dnssec_ok);
    edns
}

/// Encodes `response` in at most `limit` bytes. When the full message does not fit, the
/// authority and additional sections are dropped, as many answers as fit are kept, and TC is
/// set so the client retries over TCP (RFC 1035 §4.2.1, RFC 2181 §9). The OPT record is kept
/// (RFC 6891 §7).
pub fn encode_response(response: &Message, limit: usize) -> Vec<u8> {
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => return bytes,
        Ok(_) => {}
        Err(_) => return servfail_bytes(response),
    }
    let mut truncated = response.clone();
    truncated.metadata.truncation = true;
    truncated.authorities.clear();
    truncated.additionals.clear();
    let answers = std::mem::take(&mut truncated.answers);
    // Binary search for the most answers that fit; encoding is monotonic in the answer count.
    let (mut fits, mut too_many) = (0usize, answers.len());
    while fits + 1 < too_many {
        let middle = fits + (too_many - fits) / 2;
        truncated.answers = answers[..middle].to_vec();
        match truncated.to_vec() {
            Ok(bytes) if bytes.len() <= limit => fits = middle,
            _ => too_many = middle,
        }
    }
    truncated.answers = answers[..fits].to_vec();
    match truncated.to_vec() {
        Ok(bytes) if bytes.len() <= limit => bytes,
        _ => {
            // Even the question does not fit (a 255-octet name into 512 bytes cannot happen, but
            // never send more than allowed): header only.
            truncated.queries.clear();
            truncated.answers.clear();
            truncated.edns = None;
            truncated
                .to_vec()
                .unwrap_or_else(|_| servfail_bytes(response))
        }
    }
}

/// A bare SERVFAIL header for `response`'s ID, used when encoding fails.
fn servfail_bytes(response: &Message) -> Vec<u8> {
    header_only(response.metadata.id, 0, ResponseCode::ServFail)
}

/// A reply to bytes that did not parse as a DNS message: FORMERR with the query's ID and opcode
/// and an empty question, or nothing when there is no complete header or the packet is itself a
/// response (answering responses invites packet loops, RUSTSEC-2023-0041).
pub fn formerr_for_unparsable(packet: &[u8]) -> Option<Vec<u8>> {
    let header = packet.get(..12)?;
    let is_response = header[2] & 0x80 != 0;
    if is_response {
        return None;
    }
    let id = u16::from_be_bytes([header[0], header[1]]);
    // Keep the opcode (bits 3–6) and RD (bit 0) of the third byte.
    let opcode_and_rd = header[2] & 0x79;
    Some(header_only(id, opcode_and_rd, ResponseCode::FormErr))
}

fn header_only(id: u16, opcode_and_rd: u8, code: ResponseCode) -> Vec<u8> {
    let [id_high, id_low] = id.to_be_bytes();
    vec![
        id_high,
        id_low,
        0x80 | opcode_and_rd,
        code.low(),
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{HealthTable, Outcome, Report, ReportSource};
    use crate::model::DestinationIndex;
    use std::net::Ipv4Addr;

    fn endpoint(last: u8) -> Endpoint {
        Endpoint {
            destination: DestinationIndex::new(usize::from(last)),
            address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)),
        }
    }

    /// A report in the ordering table: endpoint (last octet), outcome, source.
    type Seen = (u8, Outcome, ReportSource);

    fn order_after(
        reports: &[Seen],
        configured: &[u8],
        placement_of: impl Fn(u8) -> Placement,
    ) -> Vec<u8> {
        let table = HealthTable::new();
        for (last, outcome, source) in reports {
            table.report(Report {
                address: endpoint(*last).address,
                outcome: *outcome,
                rtt: None,
                source: *source,
            });
        }
        let last_octet = |address: IpAddr| match address {
            IpAddr::V4(v4) => v4.octets()[3],
            IpAddr::V6(_) => 0,
        };
        order_endpoints(
            configured.iter().map(|&l| endpoint(l)),
            |a| table.get(a),
            |e| placement_of(last_octet(e.address)),
        )
        .iter()
        .map(|o| last_octet(o.endpoint.address))
        .collect()
    }

    #[test]
    fn answer_order_table() {
        use Outcome::{Failure as F, Success as S};
        use ReportSource::{Agent as A, Observer as O, Probe as P, Recheck as R};
        // (what, reports, configured, draining, failback primary, expected)
        type Case<'a> = (
            &'a str,
            &'a [Seen],
            &'a [u8],
            &'a [u8],
            Option<u8>,
            &'a [u8],
        );
        let cases: &[Case] = &[
            (
                "nothing reported: configuration order",
                &[],
                &[1, 2, 3],
                &[],
                None,
                &[1, 2, 3],
            ),
            (
                "first fails: it goes last",
                &[(1, F, A)],
                &[1, 2, 3],
                &[],
                None,
                &[2, 3, 1],
            ),
            (
                "a success puts that one first",
                &[(3, S, A)],
                &[1, 2, 3],
                &[],
                None,
                &[3, 1, 2],
            ),
            (
                "most recent success first",
                &[(2, S, A), (3, S, O)],
                &[1, 2, 3],
                &[],
                None,
                &[3, 2, 1],
            ),
            (
                "several failures rotate oldest failure first",
                &[(1, F, A), (2, F, O), (3, F, P)],
                &[1, 2, 3],
                &[],
                None,
                &[1, 2, 3],
            ),
            (
                "a failed endpoint failing again goes behind the others",
                &[(1, F, A), (2, F, A), (3, F, A), (1, F, O)],
                &[1, 2, 3],
                &[],
                None,
                &[2, 3, 1],
            ),
            (
                "recovered endpoint is up again",
                &[(1, F, A), (1, S, A)],
                &[1, 2, 3],
                &[],
                None,
                &[1, 2, 3],
            ),
            (
                "up, then unknown, then down",
                &[(1, F, A), (3, S, A)],
                &[1, 2, 3, 4],
                &[],
                None,
                &[3, 2, 4, 1],
            ),
            (
                "duplicates by address collapse",
                &[],
                &[1, 2, 1, 2],
                &[],
                None,
                &[1, 2],
            ),
            ("no endpoints", &[(1, F, A)], &[], &[], None, &[]),
            (
                "probes on both, any order: configuration order",
                &[(2, S, P), (1, S, P), (2, S, P), (1, S, P), (2, S, P)],
                &[1, 2],
                &[],
                None,
                &[1, 2],
            ),
            (
                "traffic success beats probe-only",
                &[(1, S, P), (2, S, O), (1, S, P)],
                &[1, 2],
                &[],
                None,
                &[2, 1],
            ),
            (
                "probe-only up before unknown",
                &[(3, S, P)],
                &[1, 2, 3],
                &[],
                None,
                &[3, 1, 2],
            ),
            (
                "a later probe success does not refresh the traffic order",
                &[(1, S, A), (2, S, A), (1, S, P)],
                &[1, 2],
                &[],
                None,
                &[2, 1],
            ),
            (
                "recovered by re-check: up, behind the path that carried traffic since",
                &[(1, S, O), (1, F, O), (2, S, O), (1, S, R)],
                &[1, 2],
                &[],
                None,
                &[2, 1],
            ),
            (
                "recovered by re-check: behind the other path even with no new traffic on it",
                &[(2, S, O), (1, S, O), (1, F, O), (1, S, R)],
                &[1, 2],
                &[],
                None,
                &[2, 1],
            ),
            (
                "draining goes last even when it is the only one up",
                &[(1, S, A), (2, F, A)],
                &[1, 2, 3],
                &[1],
                None,
                &[3, 2, 1],
            ),
            (
                "several draining keep their health order among themselves",
                &[(1, F, A), (2, S, A)],
                &[1, 2, 3],
                &[1, 2],
                None,
                &[3, 2, 1],
            ),
            (
                "failback: the primary first as soon as it is up",
                &[(1, F, O), (2, S, O), (1, S, R), (2, S, O)],
                &[1, 2],
                &[],
                Some(1),
                &[1, 2],
            ),
            (
                "failback: a down primary still goes behind",
                &[(2, S, O), (1, F, O)],
                &[1, 2],
                &[],
                Some(1),
                &[2, 1],
            ),
            (
                "failback yields to drain",
                &[(1, S, A), (2, S, P)],
                &[1, 2],
                &[1],
                Some(1),
                &[2, 1],
            ),
        ];
        for (what, reports, configured, draining, failback, expected) in cases {
            let placement = |last: u8| {
                if draining.contains(&last) {
                    Placement::Draining
                } else if *failback == Some(last) {
                    Placement::FailbackPrimary
                } else {
                    Placement::ByHealth
                }
            };
            assert_eq!(
                &order_after(reports, configured, placement),
                expected,
                "{what}"
            );
        }
    }

    #[test]
    fn records_follow_the_asked_type() {
        let v6 = Endpoint {
            destination: DestinationIndex::new(9),
            address: "2001:db8::1".parse().expect("literal"),
        };
        let ordered = order_endpoints(
            [endpoint(1), v6],
            |_| EndpointHealth::default(),
            |_| Placement::ByHealth,
        );
        let owner = Name::from_ascii("App.Internal.").expect("literal");
        let count = |t| address_records(&owner, t, &ordered, 5).len();
        assert_eq!(
            (
                count(RecordType::A),
                count(RecordType::AAAA),
                count(RecordType::ANY),
                count(RecordType::MX)
            ),
            (1, 1, 2, 0)
        );
    }

    #[test]
    fn formerr_only_for_queries_with_a_header() {
        assert_eq!(formerr_for_unparsable(&[1, 2, 3]), None);
        let response_packet = [0u8, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(formerr_for_unparsable(&response_packet), None);
        let query = [0xab, 0xcd, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0];
        let reply = formerr_for_unparsable(&query).expect("a query gets FORMERR");
        let parsed = Message::from_vec(&reply).expect("FORMERR parses");
        assert_eq!(parsed.metadata.id, 0xabcd);
        assert_eq!(parsed.metadata.response_code, ResponseCode::FormErr);
        assert!(parsed.metadata.recursion_desired);
    }
}
