//! One query to one plain-DNS upstream: UDP from a fresh socket (a random source port), TCP when
//! the UDP reply is truncated or the client asked over TCP; and the checks every upstream reply
//! passes, whatever the transport: QR set, our random ID, the same question (RFC 5452).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};
use tracing::debug;

use crate::dns::answer::{MAX_UDP_PAYLOAD, Transport};

/// Why one attempt at one upstream did not give a usable answer.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// No answer before the attempt's deadline.
    #[error("timed out")]
    Timeout,
    /// A socket error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The upstream answered SERVFAIL or REFUSED.
    #[error("answered {0}")]
    Failed(ResponseCode),
    /// The reply could not be used.
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// The TLS connection could not be set up (certificate, protocol); never retried in plain.
    #[error("TLS: {0}")]
    Tls(String),
    /// The connection closed before the reply came.
    #[error("connection closed before the reply")]
    Closed,
}

/// An upstream answer, parsed. Never passed on as received: the client's reply is built from
/// it ([`crate::dns::forward::cache::readdress`]).
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The parsed reply.
    pub message: Message,
}

/// The query we send upstream for `request`: its question (as asked: the upstream echoes the
/// case, which the reply check compares case-insensitively), RD (we want recursion whatever
/// the client asked), the client's CD, and an OPT record of our own with the client's DO bit
/// and nothing else. The client's own bytes never go upstream: its COOKIE would make the
/// upstream's reply (cached, shared) echo one client's cookie to every other, and its other
/// options (client subnet, NSID, padding) are its business with us, not ours with the upstream.
/// So the forwarder speaks no cookies with its upstreams (it reaches them over loopback, a
/// LAN or TLS, and checks ID and question of every reply, RFC 5452).
pub fn upstream_query(request: &Message) -> Result<Vec<u8>, AttemptError> {
    let mut query = Message::new(0, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.metadata.checking_disabled = request.metadata.checking_disabled;
    query.queries = request.queries.clone();
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD);
    edns.set_version(0);
    edns.set_dnssec_ok(request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));
    query.edns = Some(edns);
    query
        .to_vec()
        .map_err(|error| AttemptError::Malformed(format!("query does not encode: {error}")))
}

/// `packet` with a fresh random ID, and that ID.
pub fn with_random_id(packet: &[u8]) -> Result<(Vec<u8>, u16), AttemptError> {
    let id: u16 = rand::random();
    let mut query = packet.to_vec();
    let Some(id_bytes) = query.get_mut(..2) else {
        return Err(AttemptError::Malformed(
            "query shorter than a header".into(),
        ));
    };
    id_bytes.copy_from_slice(&id.to_be_bytes());
    Ok((query, id))
}

/// Gives `reply` the client's ID (that of `request`).
pub fn readdress(mut reply: Forwarded, request: &Message) -> Forwarded {
    reply.message.metadata.id = request.metadata.id;
    reply
}

/// One query to one plain upstream: UDP (then TCP when the reply is truncated) or TCP.
pub async fn exchange(
    upstream: SocketAddr,
    request: &Message,
    packet: &[u8],
    transport: Transport,
    deadline: Instant,
) -> Result<Forwarded, AttemptError> {
    let (query, upstream_id) = with_random_id(packet)?;
    let reply = match transport {
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
    Ok(readdress(reply, request))
}

/// Parses an upstream reply and checks that it answers our query: QR set, our ID, and the same
/// question (case-insensitively).
pub fn matching_reply(bytes: &[u8], id: u16, request: &Message) -> Option<Message> {
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

/// `query` with its two-byte length in front (RFC 7766 §8 framing, also RFC 7858's).
pub fn length_prefixed(query: &[u8]) -> Result<Vec<u8>, AttemptError> {
    let length = u16::try_from(query.len())
        .map_err(|_| AttemptError::Malformed("query longer than 65535 bytes".into()))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(query);
    Ok(framed)
}

async fn udp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    request: &Message,
    deadline: Instant,
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
            return Ok(Forwarded { message });
        }
        debug!(%upstream, "ignoring a UDP reply that does not match the query");
    }
}

async fn tcp_exchange(
    upstream: SocketAddr,
    query: &[u8],
    id: u16,
    request: &Message,
    deadline: Instant,
) -> Result<Forwarded, AttemptError> {
    let exchange = async {
        let mut stream = TcpStream::connect(upstream).await?;
        stream.write_all(&length_prefixed(query)?).await?;
        let length = usize::from(stream.read_u16().await?);
        let mut bytes = vec![0u8; length];
        stream.read_exact(&mut bytes).await?;
        let message = matching_reply(&bytes, id, request)
            .ok_or_else(|| AttemptError::Malformed("TCP reply does not match the query".into()))?;
        Ok::<_, AttemptError>(Forwarded { message })
    };
    timeout_at(deadline, exchange)
        .await
        .map_err(|_| AttemptError::Timeout)?
}
