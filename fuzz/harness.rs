//! Harness for the fuzz targets in `fuzz/` and for the test that replays their corpora on
//! stable Rust: each `check_*` function drives one entry point the server itself uses, with
//! input bytes, and returns the first broken promise instead of panicking, so the targets stay
//! one line long and a corpus replay can list every failure.
//!
//! - [`check_request`]: bytes → [`Handler::handle`] (UDP and TCP) on a handler over
//!   [`FUZZ_ZONE`] without upstreams → reply bytes, which must parse, be a response, echo the
//!   query ID and fit the client's UDP limit; a response (QR=1) is never answered; and
//!   [`Handler::handle_memoised`] must give the same bytes, on a miss and from the memo.
//! - [`check_zone_config`]: file text → [`load_zone_sources`] → snapshot and `check` warnings.
//! - [`check_control_line`]: bytes → `FailoverDns::handle_control_line` → a reply that serializes to one JSON line
//!   the client side parses back.
//!
//! Not part of the library: the fuzz targets and the integration tests include this file
//! (`#[path]`), so it uses only what the library exports.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::OnceLock;

use hickory_proto::op::{Message, MessageType};

use failover_dns::ControlReply;
use failover_dns::FailoverDns;
use failover_dns::internals::AnswerMemo;
use failover_dns::internals::HealthTable;
use failover_dns::internals::Snapshot;
use failover_dns::internals::{CLASSIC_UDP_PAYLOAD, Transport, size_limit};
use failover_dns::internals::{Client, Handler, Step};
use failover_dns::load_zone_sources;
use failover_dns::{ConfigError, SourceFile};
use failover_dns::{Identity, Settings};

/// The zone the request and control targets answer from: IPv4 and IPv6 endpoints, a name
/// hidden by policy, a subnet host (so A, AAAA, ANY, SOA, PTR, NODATA and NXDOMAIN paths are
/// all reachable).
pub const FUZZ_ZONE: &str = include_str!("zone.toml");

/// A promise the server broke for one input.
#[derive(Debug, thiserror::Error)]
pub enum Violation {
    /// The fast path (the answer memo) answered other than the general path.
    #[error("{transport:?}: the fast path's reply differs from the general path's")]
    FastPath {
        /// The transport the query came in on.
        transport: Transport,
    },
    /// [`FUZZ_ZONE`] itself does not load (a bug in this file).
    #[error("the fixed fuzzing zone does not load: {0}")]
    Zone(ConfigError),
    /// A reply that is not a DNS message.
    #[error("{transport:?} reply does not parse: {error}; reply {reply:02x?}")]
    Unparsable {
        /// The transport the query came in on.
        transport: Transport,
        /// The parser's complaint.
        error: String,
        /// The reply bytes.
        reply: Vec<u8>,
    },
    /// A reply that is not marked as a response.
    #[error("{transport:?} reply has QR=0")]
    NotAResponse {
        /// The transport the query came in on.
        transport: Transport,
    },
    /// A reply with another ID than the query's.
    #[error("{transport:?} reply ID {got} differs from the query ID {expected}")]
    WrongId {
        /// The transport the query came in on.
        transport: Transport,
        /// The query's ID.
        expected: u16,
        /// The reply's ID.
        got: u16,
    },
    /// A UDP reply larger than the client accepts.
    #[error("UDP reply of {length} bytes exceeds the client's limit of {limit}")]
    TooLarge {
        /// The reply's length.
        length: usize,
        /// The client's limit.
        limit: usize,
    },
    /// A reply to a packet that is itself a response (packet loops, RUSTSEC-2023-0041).
    #[error("{transport:?}: a response (QR=1) was answered")]
    AnsweredAResponse {
        /// The transport the packet came in on.
        transport: Transport,
    },
    /// A query forwarded by a handler without upstreams.
    #[error("{transport:?}: forwarded although no upstream is configured")]
    Forwarded {
        /// The transport the query came in on.
        transport: Transport,
    },
    /// A control reply that does not serialize, is not one line, or does not parse back.
    #[error("control reply {reply:?} is not one JSON line the client understands: {error}")]
    ControlReply {
        /// The reply.
        reply: Box<ControlReply>,
        /// What went wrong.
        error: String,
    },
}

/// The server the targets drive, assembled as `serve` assembles it: [`FUZZ_ZONE`], the default
/// identity, no upstreams and no cache. Built once.
pub fn fuzz_server() -> Result<&'static FailoverDns, Violation> {
    static SERVER: OnceLock<Result<FailoverDns, ConfigError>> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        let source = SourceFile::new(Path::new("fuzz-zone.toml"), FUZZ_ZONE.to_string());
        let data = load_zone_sources(&[source])?;
        let settings = Settings {
            upstreams: Some(Vec::new()),
            cache_size: 0,
            identity: Identity::default(),
            ..Settings::default()
        };
        Ok(FailoverDns::from_zone_data(settings, data))
    });
    server
        .as_ref()
        .map_err(|error| Violation::Zone(error.clone()))
}

/// The query path of [`fuzz_server`].
pub fn fuzz_handler() -> Result<&'static Handler, Violation> {
    fuzz_server().map(failover_dns::internals::handler_of)
}

/// One packet through the request path over UDP and over TCP, from a loopback client.
pub fn check_request(packet: &[u8]) -> Result<(), Violation> {
    let handler = fuzz_handler()?;
    let client = SocketAddr::from((Ipv4Addr::LOCALHOST, 53_000));
    let is_response = packet.get(2).is_some_and(|flags| flags & 0x80 != 0);
    for transport in [Transport::Udp, Transport::Tcp] {
        let step = handler.handle(
            packet,
            Client {
                address: client,
                transport,
            },
        );
        let reply = match step {
            Step::Reply(reply) => reply,
            Step::Drop => continue,
            Step::Forward(_) => return Err(Violation::Forwarded { transport }),
        };
        if is_response {
            return Err(Violation::AnsweredAResponse { transport });
        }
        check_reply(packet, &reply, transport)?;
        check_fast_path(handler, packet, &reply, client, transport)?;
    }
    Ok(())
}

/// The fast path answers `packet` as the general path did (`general`): on a memo miss, and
/// again from the memo with another ID.
fn check_fast_path(
    handler: &Handler,
    packet: &[u8],
    general: &[u8],
    address: SocketAddr,
    transport: Transport,
) -> Result<(), Violation> {
    let client = Client { address, transport };
    let reply_of = |step: Step| match step {
        Step::Reply(reply) => Some(reply),
        Step::Forward(_) | Step::Drop => None,
    };
    let mut renumbered = packet.to_vec();
    if let Some(high) = renumbered.first_mut() {
        *high ^= 0xff;
    }
    let renumbered_general = reply_of(handler.handle(&renumbered, client));
    let mut memo = AnswerMemo::with_slots(1);
    for (query, expected) in [
        (packet, Some(general)),
        (&renumbered[..], renumbered_general.as_deref()),
    ] {
        let fast = reply_of(handler.handle_memoised(&mut memo, query, client, Vec::new()));
        if fast.as_deref() != expected {
            return Err(Violation::FastPath { transport });
        }
    }
    Ok(())
}

/// What every reply to `packet` must be: a parsable response with the query's ID, within the
/// client's UDP limit.
fn check_reply(packet: &[u8], reply: &[u8], transport: Transport) -> Result<(), Violation> {
    let message = Message::from_vec(reply).map_err(|error| Violation::Unparsable {
        transport,
        error: error.to_string(),
        reply: reply.to_vec(),
    })?;
    if message.metadata.message_type != MessageType::Response {
        return Err(Violation::NotAResponse { transport });
    }
    if let Some(&[high, low]) = packet.get(..2) {
        let expected = u16::from_be_bytes([high, low]);
        if message.metadata.id != expected {
            return Err(Violation::WrongId {
                transport,
                expected,
                got: message.metadata.id,
            });
        }
    }
    if transport == Transport::Udp {
        let limit = Message::from_vec(packet).map_or(usize::from(CLASSIC_UDP_PAYLOAD), |query| {
            size_limit(&query, Transport::Udp)
        });
        if reply.len() > limit {
            return Err(Violation::TooLarge {
                length: reply.len(),
                limit,
            });
        }
    }
    Ok(())
}

/// One zone file's text through the loader; when it loads, through the snapshot and the
/// `check` warnings too. Errors are fine; panics are not.
pub fn check_zone_config(text: &[u8]) -> Result<(), Violation> {
    let source = SourceFile::new(
        Path::new("fuzz.toml"),
        String::from_utf8_lossy(text).into_owned(),
    );
    match load_zone_sources(&[source]) {
        Ok(data) => {
            let snapshot = Snapshot::new(data, Identity::default());
            let _ = snapshot.warnings();
            let _ = failover_dns::internals::status_report(&snapshot, &HealthTable::new());
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    Ok(())
}

/// One control request line through the protocol handler: the reply must serialize to one
/// line of JSON that the client side parses back.
pub fn check_control_line(line: &[u8]) -> Result<(), Violation> {
    let reply = fuzz_server()?.handle_control_line(line);
    let broken = |error: String| Violation::ControlReply {
        reply: Box::new(reply.clone()),
        error,
    };
    let text = serde_json::to_string(&reply).map_err(|e| broken(e.to_string()))?;
    if text.contains('\n') {
        return Err(broken("the reply spans several lines".to_string()));
    }
    serde_json::from_str::<ControlReply>(&text).map_err(|e| broken(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fuzz_zone_loads_and_answers() {
        let handler = fuzz_handler().expect("the fixed zone loads");
        // app.internal A, RD, no EDNS.
        let query = [
            0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a', b'p', b'p', 8, b'i', b'n',
            b't', b'e', b'r', b'n', b'a', b'l', 0, 0, 1, 0, 1,
        ];
        let Step::Reply(reply) = handler.handle(
            &query,
            Client {
                address: SocketAddr::from((Ipv4Addr::LOCALHOST, 1)),
                transport: Transport::Udp,
            },
        ) else {
            panic!("an owned name is answered at once");
        };
        let message = Message::from_vec(&reply).expect("parses");
        assert_eq!(message.metadata.id, 0x1234);
        assert_eq!(message.answers.len(), 2);
        check_request(&query).expect("no violation");
        check_control_line(br#"{"op":"status"}"#).expect("no violation");
        check_zone_config(FUZZ_ZONE.as_bytes()).expect("no violation");
    }
}
