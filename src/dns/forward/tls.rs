//! DNS over TLS (RFC 7858) to one upstream: TLS 1.2 or 1.3 (rustls with the `ring` provider), the
//! certificate verified against the configured name (also sent as SNI) with the system trust
//! store and an optional private CA; one connection per upstream, reused and pipelined (many
//! queries outstanding, replies matched by ID, RFC 7766 length-prefixed framing), opened again
//! when it closes, closed after [`IDLE_TIMEOUT`] without a query outstanding, and closed (to be
//! opened again) on any framing error: a frame that is not exactly one DNS message means the
//! stream is out of step, and every reply read from it after would be misread.
//!
//! The client is ours (on `tokio-rustls`) rather than hickory's DNS-over-TLS client: hickory's
//! brings its own resolver stack and connection handling, and would not share this forwarder's
//! racing, hold-down and forwards limit.
//!
//! **Invariant:** a TLS upstream is only ever spoken to over TLS. A certificate or handshake
//! failure is that upstream's failure (logged with the reason), never a fall-back to plain DNS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tracing::{debug, warn};

use crate::config::settings::TlsName;
use crate::dns::forward::transport::{
    AttemptError, Forwarded, length_prefixed, matching_reply, readdress,
};

/// How long a connection stays open with no query outstanding.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS client settings every DNS-over-TLS upstream shares: TLS 1.3 and 1.2 only, the
/// system's trust store plus the certificates of `ca_file`. Returns notes for the log (a
/// trust store that could not be read in part, an empty one).
pub fn client_config(ca_file: Option<&Path>) -> (Arc<ClientConfig>, Vec<String>) {
    let mut notes = Vec::new();
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        notes.push(format!("system trust store: {error}"));
    }
    let (_, unusable) = roots.add_parsable_certificates(native.certs);
    if unusable > 0 {
        notes.push(format!(
            "system trust store: {unusable} certificates could not be used"
        ));
    }
    if let Some(path) = ca_file {
        match CertificateDer::pem_file_iter(path)
            .map_err(|e| e.to_string())
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string()))
        {
            Ok(certificates) => {
                let (added, unusable) = roots.add_parsable_certificates(certificates);
                if added == 0 || unusable > 0 {
                    notes.push(format!(
                        "upstream CA file {}: {added} certificates trusted, {unusable} unusable",
                        path.display()
                    ));
                }
            }
            Err(error) => notes.push(format!(
                "upstream CA file {}: {error}; DNS-over-TLS upstreams it should vouch for will fail",
                path.display()
            )),
        }
    }
    if roots.is_empty() {
        notes.push(
            "no trusted certificate authority: every DNS-over-TLS upstream will fail".to_string(),
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth());
    let config = config.unwrap_or_else(|error| {
        // The ring provider supports both versions: not expected, but never a panic.
        notes.push(format!(
            "TLS settings rejected: {error}; using rustls' defaults"
        ));
        ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    });
    (Arc::new(config), notes)
}

/// One DNS-over-TLS upstream and its connection.
pub struct DotUpstream {
    address: SocketAddr,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    /// The connection in use, if any; locked while a new one is set up, so concurrent queries
    /// share one handshake.
    slot: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl std::fmt::Debug for DotUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DotUpstream")
            .field("address", &self.address)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl DotUpstream {
    /// The upstream at `address` whose certificate must name `name`.
    pub fn new(address: SocketAddr, name: &TlsName, config: Arc<ClientConfig>) -> Self {
        let server_name = match name {
            TlsName::Dns(name) => ServerName::try_from(name.clone())
                .unwrap_or_else(|_| ServerName::IpAddress(address.ip().into())),
            TlsName::Address => ServerName::IpAddress(address.ip().into()),
        };
        DotUpstream {
            address,
            server_name,
            connector: TlsConnector::from(config),
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// One query (`packet`, parsed as `request`) over the upstream's connection, before
    /// `deadline`. A reused connection that closes before the reply is replaced once.
    pub async fn exchange(
        &self,
        request: &Message,
        packet: &[u8],
        deadline: Instant,
    ) -> Result<Forwarded, AttemptError> {
        let attempt = async {
            for _ in 0..2 {
                let (connection, fresh) = self.connection().await?;
                match connection.exchange(request, packet).await {
                    Err(AttemptError::Closed) if !fresh => {
                        debug!(upstream = %self.address, "TLS connection closed under a query; reconnecting");
                    }
                    other => return other,
                }
            }
            Err(AttemptError::Closed)
        };
        let reply = timeout_at(deadline, attempt)
            .await
            .map_err(|_| AttemptError::Timeout)??;
        Ok(readdress(reply, request))
    }

    /// The open connection, or a new one (`true`: new).
    async fn connection(&self) -> Result<(Arc<Connection>, bool), AttemptError> {
        let mut slot = self.slot.lock().await;
        if let Some(connection) = slot.as_ref()
            && !connection.closed.load(Ordering::Acquire)
        {
            return Ok((Arc::clone(connection), false));
        }
        *slot = None;
        let tcp = TcpStream::connect(self.address).await?;
        let _ = tcp.set_nodelay(true);
        let stream = match self.connector.connect(self.server_name.clone(), tcp).await {
            Ok(stream) => stream,
            Err(error) => {
                warn!(
                    upstream = %self.address,
                    server_name = ?self.server_name,
                    %error,
                    "DNS-over-TLS upstream failed the TLS handshake; not falling back to plain DNS"
                );
                return Err(AttemptError::Tls(error.to_string()));
            }
        };
        debug!(upstream = %self.address, "TLS connection established");
        let (reader, writer) = tokio::io::split(stream);
        let connection = Arc::new(Connection {
            writer: tokio::sync::Mutex::new(Some(writer)),
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(read_replies(Arc::clone(&connection), reader, self.address));
        *slot = Some(Arc::clone(&connection));
        Ok((connection, true))
    }
}

/// Replies waited for on one connection, by upstream query ID.
type Pending = HashMap<u16, oneshot::Sender<Vec<u8>>>;

/// One TLS connection: the writing half (one query written at a time, whole), the queries
/// waiting for their reply, and whether it has closed.
struct Connection {
    writer: tokio::sync::Mutex<Option<WriteHalf<TlsStream<TcpStream>>>>,
    pending: Mutex<Pending>,
    closed: AtomicBool,
}

/// Removes a query's entry from the pending table when its attempt ends, however it ends.
struct PendingEntry<'a> {
    pending: &'a Mutex<Pending>,
    id: u16,
}

impl Drop for PendingEntry<'_> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&self.id);
        }
    }
}

impl Connection {
    /// Sends `packet` with an ID no other outstanding query on this connection has and waits
    /// for the reply with that ID.
    async fn exchange(&self, request: &Message, packet: &[u8]) -> Result<Forwarded, AttemptError> {
        let (sender, receiver) = oneshot::channel();
        let id = {
            let Ok(mut pending) = self.pending.lock() else {
                return Err(AttemptError::Closed);
            };
            let Some(id) = (0..64)
                .map(|_| rand::random::<u16>())
                .find(|id| !pending.contains_key(id))
            else {
                return Err(AttemptError::Malformed(
                    "no free query ID on the connection".into(),
                ));
            };
            pending.insert(id, sender);
            id
        };
        let _entry = PendingEntry {
            pending: &self.pending,
            id,
        };
        let mut query = packet.to_vec();
        let Some(id_bytes) = query.get_mut(..2) else {
            return Err(AttemptError::Malformed(
                "query shorter than a header".into(),
            ));
        };
        id_bytes.copy_from_slice(&id.to_be_bytes());
        let framed = length_prefixed(&query)?;
        {
            let mut writer = self.writer.lock().await;
            let Some(stream) = writer.as_mut() else {
                return Err(AttemptError::Closed);
            };
            let written = async {
                stream.write_all(&framed).await?;
                stream.flush().await
            }
            .await;
            if written.is_err() {
                self.closed.store(true, Ordering::Release);
                *writer = None;
                return Err(AttemptError::Closed);
            }
        }
        let bytes = receiver.await.map_err(|_| AttemptError::Closed)?;
        let message = matching_reply(&bytes, id, request)
            .ok_or_else(|| AttemptError::Malformed("TLS reply does not match the query".into()))?;
        Ok(Forwarded { message })
    }

    /// Marks the connection closed and fails every query still waiting on it.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Ok(mut pending) = self.pending.lock() {
            pending.clear();
        }
    }
}

/// Whether `frame` holds exactly one DNS message: it parses, and nothing is left over (a
/// message cut short under a longer length prefix takes the start of the next frame with it).
/// The length of a DNS header: the least a reply can be.
const HEADER_LEN: usize = 12;

fn is_one_message(frame: &[u8]) -> bool {
    let mut decoder = BinDecoder::new(frame);
    Message::read(&mut decoder).is_ok() && decoder.is_empty()
}

/// Reads length-prefixed replies and hands each to the query with its ID, until the upstream
/// closes the connection, an error, or [`IDLE_TIMEOUT`] passes with no query outstanding.
async fn read_replies(
    connection: Arc<Connection>,
    mut reader: ReadHalf<TlsStream<TcpStream>>,
    upstream: SocketAddr,
) {
    loop {
        // The read goes on across idle checks (a length half read is never dropped).
        let length = {
            let read = reader.read_u16();
            tokio::pin!(read);
            loop {
                tokio::select! {
                    result = &mut read => break Some(result),
                    () = tokio::time::sleep(IDLE_TIMEOUT) => {
                        let idle = connection.pending.lock().map(|p| p.is_empty()).unwrap_or(true);
                        if idle {
                            break None;
                        }
                    }
                }
            }
        };
        let length = match length {
            Some(Ok(length)) => length,
            Some(Err(error)) => {
                debug!(%upstream, %error, "TLS connection closed");
                break;
            }
            None => {
                debug!(%upstream, "closing the idle TLS connection");
                break;
            }
        };
        let mut bytes = vec![0u8; usize::from(length)];
        if let Err(error) = reader.read_exact(&mut bytes).await {
            debug!(%upstream, %error, "TLS connection closed inside a reply");
            break;
        }
        // A frame long enough for a header, for a query that waits, goes to that query even
        // when it does not parse (a legal record hickory cannot read, say): that one query
        // fails, the stream is in step. Anything else that is not one message means the
        // stream is out of step (a frame cut short under a longer length): reconnect.
        let id = bytes
            .get(..2)
            .filter(|_| bytes.len() >= HEADER_LEN)
            .map(|b| u16::from_be_bytes([b[0], b[1]]));
        let waiting = id.and_then(|id| {
            connection
                .pending
                .lock()
                .ok()
                .and_then(|mut pending| pending.remove(&id))
        });
        if waiting.is_none() && !is_one_message(&bytes) {
            warn!(%upstream, length, "DNS-over-TLS upstream sent a frame that is not one DNS message; reconnecting");
            break;
        }
        match waiting {
            Some(sender) => {
                let _ = sender.send(bytes);
            }
            None => debug!(%upstream, ?id, "ignoring a TLS reply nobody waits for"),
        }
    }
    connection.close();
    // Close our side too: send close_notify and let go of the socket.
    let writer = connection.writer.lock().await.take();
    if let Some(mut writer) = writer {
        let _ = writer.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};

    #[test]
    fn a_frame_is_one_whole_message_or_a_framing_error() {
        let mut message = Message::new(7, MessageType::Response, OpCode::Query);
        message.add_query(Query::query(
            Name::from_ascii("www.example.").expect("literal"),
            RecordType::A,
        ));
        let bytes = message.to_vec().expect("encodes");
        assert!(is_one_message(&bytes));
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0, 30, 0x12, 0x34]);
        assert!(!is_one_message(&longer), "the start of the next frame");
        assert!(!is_one_message(&bytes[..bytes.len() - 3]), "cut short");
        assert!(!is_one_message(&[]));
    }
}
