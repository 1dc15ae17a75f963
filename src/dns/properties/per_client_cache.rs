//! The property that makes the forwarding cache safe to share between clients: for any sequence
//! of queries with or without EDNS, any payload size, DO bit, COOKIE and other options, over
//! UDP or TCP, a cache hit gives a client exactly the bytes a cache miss would have given that
//! same client at that moment, whatever the upstream put in its own OPT record; and every reply
//! carries OPT exactly when its query did, ours (payload, version 0, the query's DO) and
//! without options.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, opt::EdnsOption};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use proptest::prelude::*;

use crate::config::settings::UpstreamSpec;
use crate::dns::answer::{MAX_UDP_PAYLOAD, Transport};
use crate::dns::forward::{ForwardResult, ForwardSettings, Forwarded};
use crate::dns::handler::{Client, Handler, Step, forwarded_reply};
use crate::dns::snapshot::{SharedSnapshot, Snapshot};
use crate::health::HealthTable;
use crate::testing::{demo_identity, test_zone_data};

/// EDNS option codes a client or an upstream may send: NSID, client subnet is left out (its
/// payload is parsed), keepalive, padding, COOKIE.
const OPTION_CODES: [u16; 4] = [3, 11, 12, 10];

/// An EDNS option: an index into [`OPTION_CODES`] and its data.
type OptionSpec = (usize, Vec<u8>);

/// One client's query.
#[derive(Debug, Clone)]
struct Asked {
    id: u16,
    name: bool,
    /// Payload size, DO bit and the options (codes from [`OPTION_CODES`], with their data),
    /// when the query has OPT.
    edns: Option<(u16, bool, Vec<OptionSpec>)>,
    transport: Transport,
    checking_disabled: bool,
}

fn option() -> impl Strategy<Value = OptionSpec> {
    (
        0..OPTION_CODES.len(),
        prop::collection::vec(any::<u8>(), 0..24),
    )
}

fn asked() -> impl Strategy<Value = Asked> {
    (
        any::<u16>(),
        any::<bool>(),
        prop::option::of((
            any::<u16>(),
            any::<bool>(),
            prop::collection::vec(option(), 0..3),
        )),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(id, name, edns, tcp, checking_disabled)| Asked {
            id,
            name,
            edns,
            transport: if tcp { Transport::Tcp } else { Transport::Udp },
            checking_disabled,
        })
}

fn with_options(edns: &mut Edns, options: &[OptionSpec]) {
    for (code, data) in options {
        let code = OPTION_CODES.get(*code).copied().unwrap_or(10);
        edns.options_mut()
            .insert(EdnsOption::Unknown(code, data.clone()));
    }
}

fn qname(asked: &Asked) -> Name {
    let name = if asked.name {
        "www.example.com."
    } else {
        "WWW.Example.COM."
    };
    Name::from_ascii(name).expect("literal")
}

impl Asked {
    fn message(&self) -> Message {
        let mut message = Message::new(self.id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.metadata.checking_disabled = self.checking_disabled;
        message.add_query(Query::query(qname(self), RecordType::A));
        if let Some((payload, dnssec_ok, options)) = &self.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(*payload);
            edns.set_dnssec_ok(*dnssec_ok);
            with_options(&mut edns, options);
            message.edns = Some(edns);
        }
        message
    }
}

/// What the upstream answers our query for `asked`: the same records whoever asked, and an OPT
/// record of its own (an echo of a cookie, NSID, padding: `options`).
fn upstream_reply(asked: &Asked, options: &[OptionSpec]) -> Message {
    let mut reply = Message::new(rand::random(), MessageType::Response, OpCode::Query);
    reply.metadata.recursion_desired = true;
    reply.metadata.recursion_available = true;
    reply.metadata.response_code = ResponseCode::NoError;
    reply.add_query(Query::query(qname(asked), RecordType::A));
    for last in 1..=3 {
        reply.answers.push(Record::from_rdata(
            Name::from_ascii("www.example.com.").expect("literal"),
            300,
            RData::A(A::new(198, 51, 100, last)),
        ));
    }
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    edns.set_dnssec_ok(
        asked
            .edns
            .as_ref()
            .is_some_and(|(_, dnssec_ok, _)| *dnssec_ok),
    );
    with_options(&mut edns, options);
    reply.edns = Some(edns);
    reply
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_cache_hit_gives_a_client_what_a_miss_would_have(
        queries in prop::collection::vec((asked(), prop::collection::vec(option(), 0..3)), 1..12),
    ) {
        let handler = Handler::standalone(
            SharedSnapshot::new(Snapshot::new(test_zone_data(), demo_identity())),
            HealthTable::new(),
            ForwardSettings {
                upstreams: vec![UpstreamSpec::plain(SocketAddr::from((Ipv4Addr::LOCALHOST, 9)))],
                ..ForwardSettings::default()
            },
        );
        let now = Instant::now();
        let client = |transport| Client {
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, 5353)),
            transport,
        };
        let mut hits = 0;
        for (asked, upstream_options) in &queries {
            let request = asked.message();
            let packet = request.to_vec().expect("a query encodes");
            let upstream = upstream_reply(asked, upstream_options);
            let miss = forwarded_reply(
                &request,
                ForwardResult::Answered(Forwarded { message: upstream.clone() }),
                asked.transport,
            )
            .0;
            match handler.handle_at(&packet, client(asked.transport), now) {
                Step::Reply(hit) => {
                    hits += 1;
                    prop_assert_eq!(&hit, &miss, "a hit differs from a miss for {:?}", asked);
                }
                Step::Forward(_) => handler.forwarder().cache_response(&request, &upstream, now),
                Step::Drop => prop_assert!(false, "a query was dropped"),
            }
            let reply = Message::from_vec(&miss).expect("the reply parses");
            prop_assert_eq!(reply.metadata.id, asked.id);
            match (&asked.edns, &reply.edns) {
                (None, None) => {}
                (Some((_, dnssec_ok, _)), Some(edns)) => {
                    prop_assert_eq!(edns.max_payload(), MAX_UDP_PAYLOAD);
                    prop_assert_eq!(edns.version(), 0);
                    prop_assert_eq!(edns.flags().dnssec_ok, *dnssec_ok);
                    prop_assert!(edns.options().as_ref().is_empty(), "options: {:?}", edns.options());
                }
                (asked, replied) => prop_assert!(false, "asked {:?}, replied {:?}", asked, replied),
            }
        }
        // Each DO bit and CD bit pair is a cache entry of its own: only the first query of each
        // can miss.
        prop_assert!(hits + 4 >= queries.len());
    }
}
