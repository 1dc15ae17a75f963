//! The property the fast path rests on: for random zones, policies, health reports, reloads,
//! answers in the forwarding cache, the passing of time and queries (with or without EDNS, a DO
//! bit and a client COOKIE; some with a question name that points into the header, the ID
//! included), [`Handler::handle_memoised`] gives exactly
//! the bytes [`Handler::handle`] (the general path) gives for the same query at the same
//! moment.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA, opt::EdnsOption};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use proptest::prelude::*;

use crate::config::load_zone_text;
use crate::config::settings::UpstreamSpec;
use crate::dns::answer::Transport;
use crate::dns::fastpath::AnswerMemo;
use crate::dns::forward::ForwardSettings;
use crate::dns::handler::{Client, Handler, Step};
use crate::dns::snapshot::{SharedSnapshot, Snapshot};
use crate::health::{HealthTable, Outcome, Report, ReportSource};
use crate::testing::demo_identity;

/// Endpoint addresses the zones draw from (none is ever contacted).
const ADDRESSES: [&str; 6] = [
    "100.64.0.1",
    "100.64.0.2",
    "100.64.0.3",
    "100.64.0.4",
    "fd7a:115c:a1e0::1",
    "fd7a:115c:a1e0::2",
];
/// Shared names the zones draw from: two under the apex, one below an empty non-terminal.
const SHARED_NAMES: [&str; 3] = ["a.test", "b.test", "c.d.test"];
/// What queries ask for: the shared names, the apex, the empty non-terminal, a name that does
/// not exist, one outside the zone, and the reverse name of an endpoint.
const QUERY_NAMES: [&str; 8] = [
    "a.test.",
    "b.test.",
    "c.d.test.",
    "test.",
    "d.test.",
    "nope.test.",
    "example.com.",
    "1.0.64.100.in-addr.arpa.",
];
const QUERY_TYPES: [RecordType; 8] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::ANY,
    RecordType::SOA,
    RecordType::NS,
    RecordType::PTR,
    RecordType::TXT,
    RecordType::AXFR,
];

/// One primary asset: which addresses it has and which shared names it carries (bit masks over
/// [`ADDRESSES`] and [`SHARED_NAMES`]), and whether the policy grants it.
#[derive(Debug, Clone)]
struct AssetSpec {
    addresses: u8,
    names: u8,
    granted: bool,
}

/// A zone file with up to four primary assets and one policy granting some of them.
fn zone_text(assets: &[AssetSpec], ttl: u32) -> String {
    let mut text = format!("[[zone]]\norigin = \"test\"\nttl = {ttl}\n");
    let mut granted = Vec::new();
    for (index, asset) in assets.iter().enumerate() {
        let pick = |mask: u8, from: &[&str]| -> Vec<String> {
            from.iter()
                .enumerate()
                .filter(|(bit, _)| mask & (1 << bit) != 0)
                .map(|(_, item)| format!("{item:?}"))
                .collect()
        };
        let addresses = pick(asset.addresses, &ADDRESSES);
        let names = pick(asset.names, &SHARED_NAMES);
        if addresses.is_empty() || names.is_empty() {
            continue;
        }
        text.push_str(&format!(
            "[[asset]]\nid = \"host{index}\"\nkind = \"primary\"\naddresses = [{}]\nnames = [{}]\n",
            addresses.join(", "),
            names.join(", ")
        ));
        if asset.granted {
            granted.push(format!("\"host{index}\""));
        }
    }
    if !granted.is_empty() {
        text.push_str(&format!(
            "[[policy]]\nid = \"p\"\nsources = [\"*\"]\ndestinations = [{}]\n",
            granted.join(", ")
        ));
    }
    text
}

fn asset_spec() -> impl Strategy<Value = AssetSpec> {
    (1u8..64, 1u8..8, any::<bool>()).prop_map(|(addresses, names, granted)| AssetSpec {
        addresses,
        names,
        granted,
    })
}

fn zone() -> impl Strategy<Value = String> {
    (prop::collection::vec(asset_spec(), 1..5), 1u32..=300)
        .prop_map(|(assets, ttl)| zone_text(&assets, ttl))
}

/// A query as bytes, with the knobs that change the answer or only its ID.
#[derive(Debug, Clone)]
struct QuerySpec {
    id: u16,
    name: usize,
    /// Which letters of the name are upper case (bit i: letter i).
    case: u16,
    query_type: usize,
    recursion_desired: bool,
    edns_payload: Option<u16>,
    /// With EDNS: the DO bit, and a client COOKIE (which no reply may carry back).
    dnssec_ok: bool,
    cookie: Option<u64>,
    transport: Transport,
    /// A loopback client (forwarded for) or another one (refused).
    loopback: bool,
    /// When set, the question name is replaced by a compression pointer to this offset, which
    /// may lie in the header, the ID included (hostile, but a client can send it).
    pointer: Option<u8>,
}

impl QuerySpec {
    fn packet(&self) -> Vec<u8> {
        let mut ascii: Vec<u8> = QUERY_NAMES[self.name].bytes().collect();
        for (index, byte) in ascii.iter_mut().enumerate() {
            if self.case & (1 << (index % 16)) != 0 {
                byte.make_ascii_uppercase();
            }
        }
        let text = String::from_utf8(ascii).expect("ASCII stays ASCII");
        let mut message = Message::new(self.id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = self.recursion_desired;
        message.queries.push(Query::query(
            Name::from_ascii(&text).expect("the query names are valid"),
            QUERY_TYPES[self.query_type],
        ));
        if let Some(payload) = self.edns_payload {
            let mut edns = Edns::new();
            edns.set_max_payload(payload);
            edns.set_dnssec_ok(self.dnssec_ok);
            if let Some(cookie) = self.cookie {
                edns.options_mut()
                    .insert(EdnsOption::Unknown(10, cookie.to_be_bytes().to_vec()));
            }
            message.edns = Some(edns);
        }
        let packet = message.to_vec().expect("a query encodes");
        match self.pointer {
            Some(offset) => with_question_name_as_pointer(&packet, offset),
            None => packet,
        }
    }

    fn client(&self) -> Client {
        let ip = if self.loopback {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))
        };
        Client {
            address: SocketAddr::new(ip, 40_000),
            transport: self.transport,
        }
    }
}

/// `packet` with its question name (uncompressed, at offset 12) replaced by a pointer to
/// `offset`.
fn with_question_name_as_pointer(packet: &[u8], offset: u8) -> Vec<u8> {
    const QUESTION: usize = 12;
    let mut end = QUESTION;
    while let Some(&length) = packet.get(end) {
        end += 1 + usize::from(length);
        if length == 0 {
            break;
        }
    }
    let mut out = packet.get(..QUESTION).unwrap_or_default().to_vec();
    out.extend_from_slice(&[0xC0, offset]);
    out.extend_from_slice(packet.get(end..).unwrap_or_default());
    out
}

prop_compose! {
    fn query_spec()(
        id in any::<u16>(),
        name in 0..QUERY_NAMES.len(),
        // Mostly one spelling, so that queries repeat and the memo is used.
        case in prop_oneof![4 => Just(0u16), 1 => any::<u16>()],
        query_type in 0..QUERY_TYPES.len(),
        recursion_desired in any::<bool>(),
        edns_payload in prop_oneof![Just(None), Just(Some(1232u16)), (0u16..4096).prop_map(Some)],
        dnssec_ok in prop_oneof![3 => Just(false), 1 => Just(true)],
        cookie in prop_oneof![3 => Just(None), 1 => (0u64..4).prop_map(Some)],
        transport in prop_oneof![Just(Transport::Udp), Just(Transport::Tcp)],
        loopback in any::<bool>(),
        // Mostly a plain name; sometimes a pointer into the header (0 and 1: into the ID).
        pointer in prop_oneof![6 => Just(None), 1 => (0u8..14).prop_map(Some)],
    ) -> QuerySpec {
        QuerySpec {
            id,
            name,
            case,
            query_type,
            recursion_desired,
            edns_payload,
            dnssec_ok,
            cookie,
            transport,
            loopback,
            pointer,
        }
    }
}

/// An upstream's answer for a name outside the zones, as the forwarding cache would keep it.
#[derive(Debug, Clone)]
struct CachedSpec {
    /// Which of [`QUERY_NAMES`] (the one outside the zone) and [`QUERY_TYPES`] it answers.
    query_type: usize,
    /// NXDOMAIN with an SOA, else NOERROR with `records` address records.
    negative: bool,
    records: u8,
    /// The smallest TTL; the others are a little longer.
    ttl: u32,
    /// An additional record with a TTL of 1 (it reaches 0 before the answer expires).
    short_additional: bool,
    edns: bool,
}

/// The index of `example.com.` in [`QUERY_NAMES`]: outside the zone, so forwarded.
const OUTSIDE: usize = 6;

impl CachedSpec {
    fn request(&self) -> Message {
        let mut request = Message::new(1, MessageType::Query, OpCode::Query);
        request.queries.push(Query::query(
            Name::from_ascii(QUERY_NAMES[OUTSIDE]).expect("literal"),
            QUERY_TYPES[self.query_type],
        ));
        request
    }

    fn response(&self) -> Message {
        let name = Name::from_ascii(QUERY_NAMES[OUTSIDE]).expect("literal");
        let mut response = self.request();
        response.metadata.message_type = MessageType::Response;
        response.metadata.recursion_available = true;
        if self.negative {
            response.metadata.response_code = ResponseCode::NXDomain;
            let origin = Name::from_ascii("com.").expect("literal");
            let soa = SOA::new(origin.clone(), origin.clone(), 1, 1, 1, 1, self.ttl);
            response
                .authorities
                .push(Record::from_rdata(origin, self.ttl + 10, RData::SOA(soa)));
        } else {
            for index in 0..self.records.max(1) {
                let data = if index % 2 == 0 {
                    RData::A(A::new(192, 0, 2, index))
                } else {
                    RData::AAAA(AAAA::from(Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        0,
                        0,
                        0,
                        0,
                        0,
                        u16::from(index),
                    )))
                };
                response.answers.push(Record::from_rdata(
                    name.clone(),
                    self.ttl + u32::from(index),
                    data,
                ));
            }
        }
        if self.short_additional {
            let glue = Name::from_ascii("ns.example.com.").expect("literal");
            response
                .additionals
                .push(Record::from_rdata(glue, 1, RData::A(A::new(192, 0, 2, 53))));
        }
        if self.edns {
            response.edns = Some(Edns::new());
        }
        response
    }
}

fn cached_spec() -> impl Strategy<Value = CachedSpec> {
    // Mostly A or AAAA, the types the outside queries below ask most.
    let query_type = prop_oneof![3 => 0usize..2, 1 => 0..QUERY_TYPES.len()];
    (
        query_type,
        any::<bool>(),
        1u8..40,
        1u32..6,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(query_type, negative, records, ttl, short_additional, edns)| CachedSpec {
                query_type,
                negative,
                records,
                ttl,
                short_additional,
                edns,
            },
        )
}

#[derive(Debug, Clone)]
enum Action {
    /// Ask a query (twice: once each path).
    Ask(QuerySpec),
    /// An upstream answer enters the forwarding cache.
    Cache(CachedSpec),
    /// Time passes (milliseconds).
    Wait(u64),
    /// The forwarding cache is cleared.
    ClearCache,
    /// The same query bytes again under a new ID.
    AskAgain(u16),
    /// A health report for one of [`ADDRESSES`].
    Report(usize, bool),
    /// Swap in the other zone.
    Reload,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => query_spec().prop_map(Action::Ask),
        // A forwarded name from a client we forward for, A or AAAA: what the cache answers.
        3 => query_spec().prop_map(|query| Action::Ask(QuerySpec {
            name: OUTSIDE,
            query_type: query.query_type % 2,
            loopback: true,
            pointer: None,
            ..query
        })),
        6 => any::<u16>().prop_map(Action::AskAgain),
        3 => (0..ADDRESSES.len(), any::<bool>()).prop_map(|(a, up)| Action::Report(a, up)),
        1 => Just(Action::Reload),
        2 => cached_spec().prop_map(Action::Cache),
        2 => (0u64..2_500).prop_map(Action::Wait),
        1 => Just(Action::ClearCache),
    ]
}

fn snapshot(text: &str) -> Result<Snapshot, TestCaseError> {
    let data = load_zone_text("equivalence.toml", text)
        .map_err(|error| TestCaseError::fail(format!("generated zone: {error}\n{text}")))?;
    Ok(Snapshot::new(data, demo_identity()))
}

/// The reply bytes of a step, or what else it was.
fn outcome(step: Step) -> Result<Vec<u8>, &'static str> {
    match step {
        Step::Reply(bytes) => Ok(bytes),
        Step::Forward(_) => Err("forward"),
        Step::Drop => Err("drop"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_fast_path_answers_exactly_as_the_general_path(
        zones in (zone(), zone()),
        actions in prop::collection::vec(action(), 1..80),
        slots in prop_oneof![Just(1usize), Just(4), Just(1024)],
    ) {
        let (first, second) = zones;
        // An upstream is configured (never contacted: forwarded queries stop at `Step::Forward`)
        // so that loopback clients get RA and forwarding, others REFUSED; its answers come from
        // the `Cache` actions.
        let forwarder = ForwardSettings {
            upstreams: vec![UpstreamSpec::plain(SocketAddr::from((Ipv4Addr::LOCALHOST, 9)))],
            cache_size: 4,
            ..ForwardSettings::default()
        };
        let handler = Handler::standalone(
            SharedSnapshot::new(snapshot(&first)?),
            HealthTable::new(),
            forwarder,
        );
        let mut memo = AnswerMemo::with_slots(slots);
        let mut on_second = false;
        let mut last: Option<QuerySpec> = None;
        let mut now = Instant::now();
        for action in actions {
            let query = match action {
                Action::Ask(query) => query,
                Action::AskAgain(id) => match &last {
                    Some(previous) => QuerySpec { id, ..previous.clone() },
                    None => continue,
                },
                Action::Report(address, up) => {
                    let address = ADDRESSES[address].parse().expect("literal address");
                    let outcome = if up { Outcome::Success } else { Outcome::Failure };
                    handler.health().report(Report {
                        address,
                        outcome,
                        rtt: None,
                        source: ReportSource::Agent,
                    });
                    continue;
                }
                Action::Reload => {
                    on_second = !on_second;
                    let text = if on_second { &second } else { &first };
                    handler.snapshot().store(snapshot(text)?);
                    continue;
                }
                Action::Cache(cached) => {
                    handler.forwarder().cache_response(&cached.request(), &cached.response(), now);
                    continue;
                }
                Action::Wait(milliseconds) => {
                    now += Duration::from_millis(milliseconds);
                    continue;
                }
                Action::ClearCache => {
                    handler.forwarder().clear_cache();
                    continue;
                }
            };
            let packet = query.packet();
            let fast = outcome(handler.handle_memoised_at(&mut memo, &packet, query.client(), Vec::new(), now));
            let general = outcome(handler.handle_at(&packet, query.client(), now));
            prop_assert_eq!(&fast, &general, "query {:?}", query);
            // No reply carries an option back, a client's COOKIE above all.
            if let Ok(Ok(reply)) = general.map(|bytes| Message::from_vec(&bytes)) {
                let options = reply.edns.map(|edns| edns.options().as_ref().len());
                prop_assert!(options.unwrap_or(0) == 0, "query {:?}: options in the reply", query);
            }
            last = Some(query);
        }
    }
}

/// An A query for [`QUERY_NAMES`]`[name]` from a loopback client over UDP, RD set, no EDNS.
fn plain_a_query(id: u16, name: usize) -> QuerySpec {
    QuerySpec {
        id,
        name,
        case: 0,
        query_type: 0,
        recursion_desired: true,
        edns_payload: None,
        dnssec_ok: false,
        cookie: None,
        transport: Transport::Udp,
        loopback: true,
        pointer: None,
    }
}

/// The property above would hold trivially if the memo were never used: the same query asked
/// again, with nothing changed in between, is answered from it.
#[test]
fn repeated_queries_are_answered_from_the_memo_until_health_changes() {
    let text = zone_text(
        &[AssetSpec {
            addresses: 0b11,
            names: 0b1,
            granted: true,
        }],
        60,
    );
    let handler = Handler::standalone(
        SharedSnapshot::new(snapshot(&text).expect("zone loads")),
        HealthTable::new(),
        ForwardSettings::default(),
    );
    let mut memo = AnswerMemo::new();
    let ask = |id: u16, memo: &mut AnswerMemo| {
        let query = plain_a_query(id, 0);
        outcome(handler.handle_memoised(memo, &query.packet(), query.client(), Vec::new()))
            .expect("an answer")
    };
    let first = ask(1, &mut memo);
    let second = ask(2, &mut memo);
    assert_eq!(memo.hits(), 1);
    assert_eq!(first.get(2..), second.get(2..));
    assert_eq!(second.get(..2), Some(&[0u8, 2][..]));
    handler.health().report(Report {
        address: ADDRESSES[0].parse().expect("literal"),
        outcome: Outcome::Failure,
        rtt: None,
        source: ReportSource::Agent,
    });
    let after_report = ask(3, &mut memo);
    assert_eq!(memo.hits(), 1, "a report makes the memo stale");
    assert_ne!(after_report.get(2..), second.get(2..), "the order changed");
}

/// The same for answers from the forwarding cache: memoised, their TTLs lowered as they age,
/// and gone when the cache's entry expires.
#[test]
fn cached_upstream_answers_are_memoised_aged_and_expire() {
    let handler = Handler::standalone(
        SharedSnapshot::new(snapshot(&zone_text(&[], 60)).expect("zone loads")),
        HealthTable::new(),
        ForwardSettings {
            upstreams: vec![UpstreamSpec::plain(SocketAddr::from((
                Ipv4Addr::LOCALHOST,
                9,
            )))],
            cache_size: 8,
            ..ForwardSettings::default()
        },
    );
    let cached = CachedSpec {
        query_type: 0,
        negative: false,
        records: 2,
        ttl: 5,
        short_additional: false,
        edns: false,
    };
    let stored = Instant::now();
    handler
        .forwarder()
        .cache_response(&cached.request(), &cached.response(), stored);
    let mut memo = AnswerMemo::new();
    let mut ask = |id: u16, after: Duration| {
        let (query, at) = (plain_a_query(id, OUTSIDE), stored + after);
        let fast =
            handler.handle_memoised_at(&mut memo, &query.packet(), query.client(), Vec::new(), at);
        let general = handler.handle_at(&query.packet(), query.client(), at);
        (outcome(fast), outcome(general), memo.hits())
    };
    let ttls = |reply: &[u8]| -> Vec<u32> {
        let message = Message::from_vec(reply).expect("the reply parses");
        message.answers.iter().map(|record| record.ttl).collect()
    };

    let (first, general, hits) = ask(1, Duration::from_millis(100));
    assert_eq!(first, general);
    assert_eq!(
        hits, 0,
        "the first answer comes from the cache, through the general path"
    );
    assert_eq!(ttls(&first.expect("cached")), [5, 6]);

    let (aged, general, hits) = ask(2, Duration::from_millis(2_500));
    assert_eq!(hits, 1, "the repeat comes from the memo");
    assert_eq!(aged, general, "as the general path has it");
    assert_eq!(
        ttls(&aged.expect("memoised")),
        [3, 4],
        "lowered by 2 whole seconds"
    );

    let (expired, general, hits) = ask(3, Duration::from_secs(5));
    assert_eq!(hits, 1, "an expired answer is not served from the memo");
    assert_eq!(expired, Err("forward"));
    assert_eq!(general, Err("forward"));
}
