//! Forwarding that keeps resolving when upstreams do not: serve-stale (RFC 8767) when the only
//! upstream is gone, racing past a silent first upstream, backup upstreams, and DNS over TLS to
//! an `unbound` the test configures with a certificate it makes (`openssl`), where a wrong
//! server name is a failure and never a plain query, and to one of the test's own that cuts a
//! frame short. Every upstream is started on loopback.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::upstream::{SilentUpstream, Unbound, free_port};
use crate::support::zones::APP_PRIMARY_ONLY_ZONE;
use crate::support::{Server, status_json, text, wait_for};

fn start(args: &[&str]) -> Server {
    Server::start(&[("zone.toml", APP_PRIMARY_ONLY_ZONE)], args)
}

/// The `forwarding` part of `status --json`, upstream by upstream (keyed by how it is shown).
fn upstream_status(server: &Server, upstream: &str) -> Value {
    let status = status_json(server);
    status["forwarding"]["upstreams"]
        .as_array()
        .and_then(|list| list.iter().find(|u| u["upstream"] == upstream).cloned())
        .unwrap_or_else(|| panic!("{upstream} is not in status: {status}"))
}

#[test]
fn an_expired_answer_is_served_stale_while_the_upstream_is_down_and_fresh_once_it_is_back() {
    let unbound = Unbound::start(&["stale.example.test. 1 IN A 198.51.100.44"]);
    let (ip, port) = (unbound.address.ip().to_string(), unbound.address.port());
    let server = start(&["--upstream", &unbound.upstream_arg()]);
    let first = server.dig(&["stale.example.test", "A"]);
    assert_eq!(first.answer_data(), ["198.51.100.44"], "{first}");
    drop(unbound);

    // Once the 1 s TTL has run out, the answer is the stale one: same data, TTL 30, and each
    // within dig's 2 s (the dead upstream refuses at once, so it comes at once).
    let took = wait_for("a stale answer", &server, || {
        let started = Instant::now();
        let reply = server.dig(&["stale.example.test", "A", "+time=2", "+tries=1"]);
        let took = started.elapsed();
        assert_eq!(reply.status, "NOERROR", "{reply}");
        assert_eq!(reply.answer_data(), ["198.51.100.44"], "{reply}");
        (reply.answers[0].ttl == 30).then_some(took)
    });
    assert!(took < Duration::from_secs(2), "stale answer took {took:?}");
    let stale_count = status_json(&server)["forwarding"]["stale_answers"].clone();
    assert!(stale_count.as_u64().unwrap_or(0) >= 1, "{stale_count}");
    let owned = server.dig(&["app.internal", "A"]);
    assert_eq!(
        owned.answer_data(),
        ["100.64.1.10"],
        "owned names unaffected"
    );

    // The upstream is back with a new answer: the background refresh brings it.
    let _unbound = Unbound::start_on(
        &ip,
        Some(port),
        &["stale.example.test. 300 IN A 198.51.100.45"],
        &[],
    );
    wait_for("the fresh answer", &server, || {
        let reply = server.dig(&["stale.example.test", "A"]);
        (reply.answer_data() == ["198.51.100.45"] && reply.answers[0].ttl > 30).then_some(())
    });
}

#[test]
fn a_silent_first_upstream_costs_a_stagger_not_a_timeout_and_status_says_why() {
    let silent = SilentUpstream::start();
    let unbound = Unbound::start(&["race.example.test. 300 IN A 198.51.100.50"]);
    let server = start(&[
        "--upstream",
        &silent.address.to_string(),
        "--upstream",
        &unbound.upstream_arg(),
    ]);
    let started = Instant::now();
    let reply = server.dig(&["race.example.test", "A"]);
    let took = started.elapsed();
    assert_eq!(reply.answer_data(), ["198.51.100.50"], "{reply}");
    assert!(
        took < Duration::from_secs(1),
        "answered after {took:?}: the 2 s timeout of the first upstream was waited for"
    );
    assert_eq!(silent.received(), 1, "the first upstream was asked first");

    // The abandoned attempt still times out in the background and counts against its upstream.
    let silent_shown = silent.address.to_string();
    let failing = wait_for("the silent upstream's timeout in status", &server, || {
        let status = upstream_status(&server, &silent_shown);
        (status["last_error"] == "timed out").then_some(status)
    });
    assert_eq!(failing["role"], "primary");
    assert!(
        failing["consecutive_failures"].as_u64() >= Some(1),
        "{failing}"
    );
    let answering = upstream_status(&server, &unbound.upstream_arg());
    assert_eq!(
        (answering["state"].as_str(), answering["won"].as_u64()),
        (Some("ok"), Some(1))
    );
    let text_status = text(&server.cli(&["status"]).stdout);
    assert!(text_status.contains("timed out"), "{text_status}");
}

#[test]
fn backups_are_asked_only_once_every_primary_failed() {
    let records = &["backup.example.test. 300 IN A 198.51.100.60"];
    let primary = Unbound::start(records);
    let backup = Unbound::start(records);
    let server = start(&[
        "--upstream",
        &primary.upstream_arg(),
        "--backup-upstream",
        &backup.upstream_arg(),
        "--cache-size",
        "0",
    ]);
    assert_eq!(
        server.forwarding_line(),
        format!(
            "forwarding to {} (backups: {})",
            primary.address, backup.address
        )
    );
    for _ in 0..3 {
        let reply = server.dig(&["backup.example.test", "A"]);
        assert_eq!(reply.answer_data(), ["198.51.100.60"], "{reply}");
    }
    assert_eq!(primary.queries_for("backup.example.test.", "A"), 3);
    assert_eq!(
        backup.queries_for("backup.example.test.", "A"),
        0,
        "a backup sees nothing while a primary answers"
    );

    // No primary answers: one silent, one gone (refuses at once). The backup answers.
    let silent = SilentUpstream::start();
    let gone = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let server = start(&[
        "--upstream",
        &silent.address.to_string(),
        "--upstream",
        &gone,
        "--backup-upstream",
        &backup.upstream_arg(),
        "--upstream-timeout-ms",
        "300",
        "--cache-size",
        "0",
    ]);
    let reply = server.dig(&["backup.example.test", "A", "+time=3"]);
    assert_eq!(reply.answer_data(), ["198.51.100.60"], "{reply}");
    assert_eq!(backup.queries_for("backup.example.test.", "A"), 1);
    assert_eq!(silent.received(), 1);
    let backup_status = upstream_status(&server, &backup.upstream_arg());
    assert_eq!(backup_status["role"], "backup");
    assert_eq!(backup_status["won"], 1);
}

/// A certificate authority and a server certificate for `dot.test` and `ip`, made with the
/// `openssl` command in `dir`: (CA file, server certificate, server key).
fn make_certificates(dir: &Path, ip: &str) -> (String, String, String) {
    let path = |name: &str| dir.join(name).display().to_string();
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (Debian package openssl; scripts/install-test-deps.sh)");
        assert!(
            output.status.success(),
            "openssl {}: {}",
            args.join(" "),
            text(&output.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=failover-dns test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&ca);
    let mut request = vec!["req"];
    request.extend(ec);
    request.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=dot.test",
    ]);
    run(&request);
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName=DNS:dot.test,IP:{ip}\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .expect("write the extensions");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    (path("ca.pem"), path("server.pem"), path("server.key"))
}

/// Listens on UDP and TCP port 53 of `ip` and counts what arrives: where plain DNS to a TLS
/// upstream would go.
struct PlainCounter {
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl PlainCounter {
    fn start(ip: &str) -> PlainCounter {
        let address: SocketAddr = format!("{ip}:53").parse().expect("address");
        let udp = UdpSocket::bind(address)
            .unwrap_or_else(|e| panic!("bind {address}/udp (tests run as root): {e}"));
        let tcp = TcpListener::bind(address)
            .unwrap_or_else(|e| panic!("bind {address}/tcp (tests run as root): {e}"));
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        tcp.set_nonblocking(true).expect("non-blocking listener");
        let (count, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let udp_thread = {
            let (count, stop) = (Arc::clone(&count), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut buffer = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    if udp.recv_from(&mut buffer).is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        let tcp_thread = {
            let (count, stop) = (Arc::clone(&count), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok(_) => {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        PlainCounter {
            count,
            stop,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for PlainCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[test]
fn dns_over_tls_upstreams_are_verified_and_never_downgraded() {
    let ip = "127.0.85.3";
    let dir = tempfile::tempdir().expect("temporary directory");
    let (ca, certificate, key) = make_certificates(dir.path(), ip);
    let tls_port = free_port(ip);
    let tls_interface = format!("interface: {ip}@{tls_port}");
    let tls_port_line = format!("tls-port: {tls_port}");
    let key_line = format!("tls-service-key: \"{key}\"");
    let pem_line = format!("tls-service-pem: \"{certificate}\"");
    let unbound = Unbound::start_on(
        ip,
        None,
        &["tls.example.test. 300 IN A 198.51.100.70"],
        &[&tls_interface, &tls_port_line, &key_line, &pem_line],
    );
    let plain = PlainCounter::start(ip);

    let good = format!("tls://{ip}:{tls_port}#dot.test");
    let server = start(&["--upstream", &good, "--upstream-ca-file", &ca]);
    assert_eq!(server.forwarding_line(), format!("forwarding to {good}"));
    for name in ["tls.example.test", "nx.example.test", "tls.example.test"] {
        let reply = server.dig(&[name, "A", "+time=3"]);
        assert!(
            reply.status == "NOERROR" || reply.status == "NXDOMAIN",
            "{reply}"
        );
    }
    let reply = server.dig(&["tls.example.test", "A"]);
    assert_eq!(reply.answer_data(), ["198.51.100.70"], "{reply}");
    // Several queries at once over the one connection.
    let names: Vec<String> = (0..8).map(|i| format!("p{i}.example.test")).collect();
    let replies: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| scope.spawn(|| server.dig(&[name.as_str(), "A", "+time=3"]).status))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("dig thread"))
            .collect()
    });
    assert!(replies.iter().all(|s| s == "NXDOMAIN"), "{replies:?}");
    assert_eq!(
        unbound.queries_for("tls.example.test.", "A"),
        1,
        "the answer came over TLS and was cached:\n{}",
        unbound.log()
    );

    let wrong = format!("tls://{ip}:{tls_port}#wrong.test");
    let server = start(&["--upstream", &wrong, "--upstream-ca-file", &ca]);
    let reply = server.dig(&["wrong.example.test", "A", "+time=4"]);
    assert_eq!(reply.status, "SERVFAIL", "{reply}");
    wait_for("the certificate failure in the log", &server, || {
        server
            .stderr()
            .lines()
            .find(|line| {
                line.contains("failed the TLS handshake")
                    && line.contains(&format!("{ip}:{tls_port}"))
                    && line.contains("certificate")
            })
            .map(|_| ())
    });
    let status = upstream_status(&server, &wrong);
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("certificate")),
        "{status}"
    );
    assert_eq!(
        unbound.queries_for("wrong.example.test.", "A"),
        0,
        "no query reached the upstream in any form"
    );
    assert_eq!(plain.count(), 0, "no plain DNS to port 53 of the upstream");

    // Without the private CA, the system trust store does not vouch for the upstream.
    let untrusted = start(&["--upstream", &good]);
    let reply = untrusted.dig(&["untrusted.example.test", "A", "+time=4"]);
    assert_eq!(reply.status, "SERVFAIL", "{reply}");
    assert_eq!(unbound.queries_for("untrusted.example.test.", "A"), 0);
    assert_eq!(plain.count(), 0, "no plain DNS to port 53 of the upstream");
}

/// A DNS-over-TLS upstream written by the test (rustls), answering each query with
/// `A 198.51.100.7`, except a name that starts with `cut`: its reply goes out under a length
/// prefix 20 bytes longer than the message (a frame cut short), and the stream goes on.
struct CuttingTlsUpstream {
    address: SocketAddr,
}

impl CuttingTlsUpstream {
    fn start(ip: &str, certificate: &str, key: &str) -> CuttingTlsUpstream {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
            .expect("read the certificate")
            .collect::<Result<_, _>>()
            .expect("parse the certificate");
        let key = PrivateKeyDer::from_pem_file(key).expect("read the key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .expect("a server certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind((ip, 0)).expect("bind the TLS upstream");
        let address = listener.local_addr().expect("local address");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let config = Arc::clone(&config);
                std::thread::spawn(move || {
                    let Ok(connection) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    serve_cutting(rustls::StreamOwned::new(connection, stream));
                });
            }
        });
        CuttingTlsUpstream { address }
    }
}

/// Answers framed queries on one TLS stream until it closes.
fn serve_cutting(mut stream: impl std::io::Read + std::io::Write) {
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};
    loop {
        let mut prefix = [0u8; 2];
        if stream.read_exact(&mut prefix).is_err() {
            return;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        if stream.read_exact(&mut query).is_err() {
            return;
        }
        let Ok(query) = Message::from_vec(&query) else {
            return;
        };
        let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        reply.metadata.recursion_available = true;
        reply.queries = query.queries.clone();
        let mut cut = false;
        let mut unreadable = false;
        if let Some(question) = query.queries.first() {
            cut = question.name().to_ascii().starts_with("cut");
            unreadable = question.name().to_ascii().starts_with("unreadable");
            reply.answers.push(Record::from_rdata(
                question.name().clone(),
                300,
                RData::A(A::new(198, 51, 100, 7)),
            ));
        }
        let mut bytes = reply.to_vec().expect("the reply encodes");
        if unreadable {
            // Whole and in step, with this query's ID, but past the header nothing parses (as
            // a legal record a parser cannot read).
            bytes.truncate(12);
            bytes.extend_from_slice(&[0xff; 8]);
        }
        let claimed = bytes.len() + if cut { 20 } else { 0 };
        let length = u16::try_from(claimed).expect("a small reply");
        let mut framed = length.to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        if stream
            .write_all(&framed)
            .and_then(|()| stream.flush())
            .is_err()
        {
            return;
        }
    }
}

#[test]
fn a_dns_over_tls_frame_cut_short_closes_the_connection_and_no_later_answer_is_lost() {
    let ip = "127.0.85.4";
    let dir = tempfile::tempdir().expect("temporary directory");
    let (ca, certificate, key) = make_certificates(dir.path(), ip);
    let upstream = CuttingTlsUpstream::start(ip, &certificate, &key);
    let tls = format!("tls://{}#dot.test", upstream.address);
    let server = start(&["--upstream", &tls, "--upstream-ca-file", &ca]);
    // Whatever becomes of this one (its reply is out of step), the ones after it are answered.
    let _ = server.try_dig(&["cut.example.test", "A", "+time=4"]);
    let lost: Vec<String> = (0..30)
        .map(|i| format!("n{i}.example.test"))
        .filter(|name| {
            server
                .try_dig(&[name, "A", "+time=4"])
                .map_or(true, |reply| reply.answer_data() != ["198.51.100.7"])
        })
        .collect();
    assert!(
        lost.is_empty(),
        "lost after the cut frame: {lost:?}\n{}",
        server.stderr()
    );
}

/// A reply that does not parse, for one name, is that name's failure: the DNS-over-TLS
/// connection stays, the upstream is not held down, and every other name is answered.
#[test]
fn an_unreadable_reply_for_one_name_does_not_hold_a_tls_upstream_down() {
    let ip = "127.0.85.5";
    let dir = tempfile::tempdir().expect("temporary directory");
    let (ca, certificate, key) = make_certificates(dir.path(), ip);
    let upstream = CuttingTlsUpstream::start(ip, &certificate, &key);
    let tls = format!("tls://{}#dot.test", upstream.address);
    let server = start(&["--upstream", &tls, "--upstream-ca-file", &ca]);
    for i in 0..4 {
        let reply = server
            .try_dig(&[&format!("unreadable{i}.example.test"), "A", "+time=4"])
            .expect("an answer");
        assert_eq!(reply.status, "SERVFAIL", "{reply:?}");
    }
    let status = crate::support::status_json(&server);
    let upstreams = &status["forwarding"]["upstreams"];
    assert_ne!(upstreams[0]["state"], "held-down", "{status}");
    assert_eq!(upstreams[0]["consecutive_failures"], 0, "{status}");
    for i in 0..10 {
        let reply = server
            .try_dig(&[&format!("n{i}.example.test"), "A", "+time=4"])
            .expect("an answer");
        assert_eq!(reply.answer_data(), ["198.51.100.7"], "{reply:?}");
    }
    assert!(
        !server.stderr().contains("reconnecting"),
        "the connection was kept: {}",
        server.stderr()
    );
}

/// A server racing a silent upstream (asked first) and an answering one 20 ms later, every
/// attempt up to 5 s, with `forwards` as `--forwards-in-flight`.
fn behind_a_silent_upstream(forwards: &str) -> (SilentUpstream, Unbound, Server) {
    let silent = SilentUpstream::start();
    let answering = Unbound::start(&[]);
    let server = start(&[
        "--upstream",
        &silent.address.to_string(),
        "--upstream",
        &answering.upstream_arg(),
        "--upstream-stagger-ms",
        "20",
        "--upstream-timeout-ms",
        "5000",
        "--forwards-in-flight",
        forwards,
    ]);
    (silent, answering, server)
}

/// Attempts that lose a race finish in the background (so a dead upstream is still seen
/// failing), and they count against `--forwards-in-flight` like every other upstream query: a
/// silent first upstream cannot gather one socket per query the server answered.
#[test]
fn every_outstanding_upstream_query_counts_against_the_forwards_limit() {
    let (silent, _answering, server) = behind_a_silent_upstream("4");
    let started = Instant::now();
    for i in 0..40 {
        // Each is answered by the second upstream (NXDOMAIN) or, with every slot taken by the
        // attempts left waiting on the silent one, SERVFAIL at once.
        let _ = server.try_dig(&[&format!("n{i}.example.test"), "A"]);
    }
    // No attempt at the silent upstream has ended yet: those it received are all outstanding.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "too slow to tell"
    );
    let received = silent.received();
    assert!(
        received <= 4,
        "{received} queries outstanding at the silent upstream, over the limit of 4"
    );
    assert!(received >= 1, "the silent upstream was asked");
}

/// An upstream that never answers keeps each query it gets for the whole timeout, and racing
/// sends it one per client query: it may hold half the upstream query slots, never all of them,
/// so the upstream that answers is still asked and every client still gets its answer.
#[test]
fn an_upstream_that_never_answers_cannot_take_every_upstream_query_slot() {
    let (silent, _answering, server) = behind_a_silent_upstream("8");
    let answered = (0..40)
        .filter(|i| {
            server
                .try_dig(&[&format!("m{i}.example.test"), "A"])
                .is_ok_and(|reply| reply.status == "NXDOMAIN")
        })
        .count();
    assert_eq!(answered, 40, "answers from the upstream that answers");
    assert!(
        silent.received() <= 4,
        "{} at the silent one",
        silent.received()
    );
}
