//! Raw DNS over UDP and TCP, for the tests that send what `dig` will not: hostile packets,
//! pipelined queries, silent and slow clients, floods. Every wait has a deadline; nothing
//! sleeps to wait for the server.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

/// How long a reply that must come may take, on a loaded 2-core machine.
pub const REPLY_DEADLINE: Duration = Duration::from_secs(10);

/// A query for `name` and `qtype` with `id`, RD set, no EDNS.
pub fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    let name = Name::from_ascii(name).expect("a valid test name");
    message.queries.push(Query::query(name, qtype));
    message.to_vec().expect("encode a test query")
}

/// `message` with its two-byte length prefix (RFC 1035 §4.2.2).
pub fn framed(message: &[u8]) -> Vec<u8> {
    let length = u16::try_from(message.len()).expect("a message fits a TCP frame");
    let mut out = length.to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

/// Parses a reply, with the bytes in the panic message when it does not parse.
pub fn parse(reply: &[u8]) -> Message {
    Message::from_vec(reply).unwrap_or_else(|error| panic!("reply {reply:02x?} parses: {error}"))
}

/// The ID in the first two bytes of a packet, if it has them.
pub fn id_of(packet: &[u8]) -> Option<u16> {
    match packet {
        [high, low, ..] => Some(u16::from_be_bytes([*high, *low])),
        _ => None,
    }
}

/// A UDP socket connected to the server at `address`.
pub fn udp_to(address: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    socket.connect(address).expect("connect the UDP socket");
    socket
}

/// Receives datagrams on `socket` until one carries `id` (returned with the datagrams that
/// came before it), or `deadline` passes (`None`).
pub fn udp_until_id(
    socket: &UdpSocket,
    id: u16,
    deadline: Instant,
) -> Option<(Message, Vec<Vec<u8>>)> {
    let mut before = Vec::new();
    let mut buffer = vec![0u8; 65_535];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("set a read timeout");
        match socket.recv(&mut buffer) {
            Ok(length) => {
                let datagram = buffer[..length].to_vec();
                if id_of(&datagram) == Some(id) {
                    return Some((parse(&datagram), before));
                }
                before.push(datagram);
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            // ICMP port unreachable from an earlier send, or the like: keep listening.
            Err(_) => {}
        }
    }
}

/// Asks `qname A` over UDP at `address`, retrying every second, until a reply with the
/// query's ID comes or `deadline` passes.
pub fn udp_ask(address: SocketAddr, id: u16, qname: &str, deadline: Instant) -> Option<Message> {
    let socket = udp_to(address);
    let packet = query(id, qname, RecordType::A);
    while Instant::now() < deadline {
        let _ = socket.send(&packet);
        let attempt = deadline.min(Instant::now() + Duration::from_secs(1));
        if let Some((reply, _)) = udp_until_id(&socket, id, attempt) {
            return Some(reply);
        }
    }
    None
}

/// A TCP connection to the server with a read timeout.
pub fn tcp_to(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect over TCP");
    stream
        .set_read_timeout(Some(REPLY_DEADLINE))
        .expect("set a read timeout");
    stream
        .set_write_timeout(Some(REPLY_DEADLINE))
        .expect("set a write timeout");
    stream
}

/// What reading one framed message gave.
#[derive(Debug)]
pub enum Read1 {
    /// A whole message.
    Message(Vec<u8>),
    /// The server closed the connection (cleanly or with a reset).
    Closed,
    /// Nothing within the socket's read timeout.
    Nothing,
}

/// Reads one length-prefixed message.
pub fn read_framed(stream: &mut TcpStream) -> Read1 {
    let mut prefix = [0u8; 2];
    if let Err(error) = stream.read_exact(&mut prefix) {
        return closed_or_nothing(&error);
    }
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    match stream.read_exact(&mut message) {
        Ok(()) => Read1::Message(message),
        Err(error) => closed_or_nothing(&error),
    }
}

fn closed_or_nothing(error: &io::Error) -> Read1 {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Read1::Nothing,
        _ => Read1::Closed,
    }
}

/// Waits until the server closes `stream` (reading and discarding anything it sends), up to
/// `within`; true when it closed.
pub fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buffer = [0u8; 512];
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("set a read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(error) => {
                if matches!(closed_or_nothing(&error), Read1::Closed) {
                    return true;
                }
            }
        }
    }
}

/// Sends `message` framed on a new connection and returns the reply.
pub fn tcp_ask(address: SocketAddr, message: &[u8]) -> Message {
    let mut stream = tcp_to(address);
    stream.write_all(&framed(message)).expect("write a query");
    match read_framed(&mut stream) {
        Read1::Message(reply) => parse(&reply),
        other => panic!("no TCP reply: {other:?}"),
    }
}

/// The fuzz corpus files of `target` whose names start with `prefix`, sorted by name.
pub fn corpus(target: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_string();
            name.starts_with(prefix).then(|| {
                let bytes = std::fs::read(&path).expect("read a corpus file");
                (name, bytes)
            })
        })
        .collect();
    files.sort();
    files
}
