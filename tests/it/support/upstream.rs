//! Real upstream resolvers for forwarding tests: `unbound` (Debian's) serving a local zone on a
//! free loopback port, logging every query so tests can count what reached it; and a silent
//! upstream that takes queries and never answers, for timeouts; and an upstream that speaks
//! EDNS options (COOKIE, NSID) and keeps what it received.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, opt::EdnsOption};
use hickory_proto::rr::{Name, RData, Record};
use tempfile::TempDir;

use super::{Dig, dig_at};

/// A free port on `ip` for both UDP and TCP (bound, checked, released).
pub fn free_port(ip: &str) -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind((ip, 0)).expect("bind a UDP port");
        let port = udp.local_addr().expect("local address").port();
        if TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free UDP+TCP port on {ip}");
}

/// An `unbound` process serving `example.test.` from local data.
pub struct Unbound {
    child: Child,
    dir: TempDir,
    /// The address it listens on (UDP and TCP).
    pub address: SocketAddr,
}

/// The zone every `Unbound` serves: an SOA (negative TTL 30 s) and whatever the test adds.
const SOA: &str =
    "example.test. 60 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 30";

impl Unbound {
    /// Starts unbound on `ip` (a free port) with `records` (zone-file lines) in `example.test.`
    /// and `extra` server options, and waits until it answers.
    pub fn start_on(ip: &str, port: Option<u16>, records: &[&str], extra: &[&str]) -> Unbound {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = port.unwrap_or_else(|| free_port(ip));
        let mut config = format!(
            "server:\n  interface: {ip}@{port}\n  port: {port}\n  do-daemonize: no\n  chroot: \"\"\n  \
             username: \"\"\n  directory: \"{dir}\"\n  pidfile: \"{dir}/unbound.pid\"\n  use-syslog: no\n  \
             logfile: \"{dir}/unbound.log\"\n  log-queries: yes\n  verbosity: 0\n  \
             access-control: 127.0.0.0/8 allow\n  do-not-query-localhost: no\n  \
             module-config: \"iterator\"\n  local-zone: \"example.test.\" static\n  local-data: \"{SOA}\"\n",
            dir = dir.path().display()
        );
        for record in records {
            config.push_str(&format!("  local-data: \"{record}\"\n"));
        }
        for line in extra {
            config.push_str(&format!("  {line}\n"));
        }
        let config_path = dir.path().join("unbound.conf");
        std::fs::write(&config_path, config).expect("write unbound.conf");
        let child = Command::new("unbound")
            .args(["-d", "-c"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run unbound (Debian package unbound; scripts/install-test-deps.sh)");
        let address: SocketAddr = format!("{ip}:{port}").parse().expect("socket address");
        let unbound = Unbound {
            child,
            dir,
            address,
        };
        unbound.wait_until_answering();
        unbound
    }

    /// Starts unbound on a free port of 127.0.0.1.
    pub fn start(records: &[&str]) -> Unbound {
        Unbound::start_on("127.0.0.1", None, records, &[])
    }

    fn wait_until_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.dig(&["example.test", "SOA"]) {
                Ok(reply) if reply.status == "NOERROR" => return,
                Ok(reply) => last = reply.raw,
                Err(error) => last = error,
            }
        }
        panic!(
            "unbound on {} did not answer: {last}\n{}",
            self.address,
            self.log()
        );
    }

    /// `dig` straight at unbound (what a client would get without failover-dns).
    pub fn dig(&self, args: &[&str]) -> Result<Dig, String> {
        dig_at(&self.address.ip().to_string(), self.address.port(), args)
    }

    /// `--upstream ADDR:PORT` text for failover-dns.
    pub fn upstream_arg(&self) -> String {
        self.address.to_string()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("unbound.log")
    }

    /// unbound's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// How many queries for `name` (fully qualified) and `rtype` reached unbound, whatever the
    /// case of the name as sent.
    pub fn queries_for(&self, name: &str, rtype: &str) -> usize {
        let needle = format!(" {} {rtype} in", name.to_ascii_lowercase()).to_ascii_lowercase();
        self.log()
            .lines()
            .filter(|line| line.to_ascii_lowercase().contains(&needle))
            .count()
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An upstream that receives queries and never answers (a black hole), counting what it got.
pub struct SilentUpstream {
    /// Its address.
    pub address: SocketAddr,
    received: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl SilentUpstream {
    /// Binds a UDP socket on a free port of 127.0.0.1.
    pub fn start() -> SilentUpstream {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a silent upstream");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let address = socket.local_addr().expect("local address");
        let received = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if socket.recv_from(&mut buffer).is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        SilentUpstream {
            address,
            received,
            stop,
            reader: Some(reader),
        }
    }

    /// How many datagrams arrived so far.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for SilentUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// An upstream that speaks EDNS like a strict modern server, written by the test so it can show
/// what it received: it answers every query over UDP with `A 198.51.100.7` (TTL 300), or
/// SERVFAIL for a name that starts with `servfail`, or for `alias.NAME` a CNAME chain
/// `alias.NAME CNAME target.NAME`, `target.NAME A 198.51.100.9`, and an OPT record of its own carrying a
/// COOKIE (the client cookie it got, followed by a server cookie of its own) and an NSID, and
/// keeps every query it received.
pub struct CookieUpstream {
    /// Its address.
    pub address: SocketAddr,
    received: Arc<std::sync::Mutex<Vec<Message>>>,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<()>>,
}

/// EDNS option codes (RFC 7873 COOKIE, RFC 5001 NSID).
const COOKIE: u16 = 10;
const NSID: u16 = 3;

impl CookieUpstream {
    /// Binds a UDP socket on a free port of 127.0.0.1 and answers on it.
    pub fn start() -> CookieUpstream {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the cookie upstream");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let address = socket.local_addr().expect("local address");
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((length, peer)) = socket.recv_from(&mut buffer) else {
                        continue;
                    };
                    let Ok(query) = Message::from_vec(&buffer[..length]) else {
                        continue;
                    };
                    let reply = cookie_reply(&query);
                    received.lock().expect("not poisoned").push(query);
                    let _ = socket.send_to(&reply, peer);
                }
            })
        };
        CookieUpstream {
            address,
            received,
            stop,
            server: Some(server),
        }
    }

    /// Every query it received so far.
    pub fn received(&self) -> Vec<Message> {
        self.received.lock().expect("not poisoned").clone()
    }
}

/// The reply to `query`: its question, one address, and our OPT with the cookie echo and NSID.
fn cookie_reply(query: &Message) -> Vec<u8> {
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.queries = query.queries.clone();
    let servfail = query.queries.first().is_some_and(|q| {
        q.name()
            .to_ascii()
            .to_ascii_lowercase()
            .starts_with("servfail")
    });
    let alias = query.queries.first().and_then(|q| {
        let name = q.name().to_ascii();
        let rest = name.strip_prefix("alias.")?;
        Some((
            q.name().clone(),
            Name::from_ascii(format!("target.{rest}")).ok()?,
        ))
    });
    if servfail {
        reply.metadata.response_code = ResponseCode::ServFail;
    } else if let Some((alias, target)) = alias {
        reply.answers.push(Record::from_rdata(
            alias,
            300,
            RData::CNAME(CNAME(target.clone())),
        ));
        reply.answers.push(Record::from_rdata(
            target,
            300,
            RData::A(A::new(198, 51, 100, 9)),
        ));
    } else if let Some(question) = query.queries.first() {
        reply.answers.push(Record::from_rdata(
            question.name().clone(),
            300,
            RData::A(A::new(198, 51, 100, 7)),
        ));
    }
    if let Some(asked) = &query.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        edns.set_dnssec_ok(asked.flags().dnssec_ok);
        let client_cookie = asked
            .options()
            .as_ref()
            .iter()
            .find_map(|(_, option)| match option {
                EdnsOption::Unknown(COOKIE, data) => data.get(..8).map(<[u8]>::to_vec),
                _ => None,
            });
        if let Some(mut cookie) = client_cookie {
            cookie.extend_from_slice(b"upstream-server-");
            edns.options_mut()
                .insert(EdnsOption::Unknown(COOKIE, cookie));
        }
        edns.options_mut()
            .insert(EdnsOption::Unknown(NSID, b"upstream-1".to_vec()));
        reply.edns = Some(edns);
    }
    reply.to_vec().expect("the reply encodes")
}

impl Drop for CookieUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}
