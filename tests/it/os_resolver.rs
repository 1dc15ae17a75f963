//! failover-dns as the machine's real resolver: the C library (`getent ahosts`) and a real
//! application (`curl`) resolve through it, inside a private mount namespace whose
//! `/etc/resolv.conf` points at the server on port 53 of a loopback address. These tests need
//! root (for `unshare --mount` and port 53), as CI has; run as another user they say so and pass
//! without checking anything.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::support::Server;
use crate::support::upstream::Unbound;

/// Runs `command` in a new mount namespace where `/etc/resolv.conf` is `resolv_conf`.
fn with_resolv_conf(resolv_conf: &Path, command: &[&str]) -> Output {
    Command::new("unshare")
        .args([
            "--mount",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"",
        ])
        .arg(resolv_conf)
        .args(command)
        .stdin(Stdio::null())
        .output()
        .expect("run unshare (util-linux)")
}

/// A resolv.conf naming only `nameserver`, with short timeouts so a broken server fails fast.
fn resolv_conf_for(dir: &Path, nameserver: &str) -> std::path::PathBuf {
    let path = dir.join("client-resolv.conf");
    std::fs::write(
        &path,
        format!("nameserver {nameserver}\noptions timeout:2 attempts:1\n"),
    )
    .expect("write the client's resolv.conf");
    path
}

/// The distinct addresses `getent ahosts NAME` prints, in its order.
fn getent_ahosts(resolv_conf: &Path, name: &str) -> Vec<String> {
    let output = with_resolv_conf(resolv_conf, &["getent", "ahosts", name]);
    assert!(
        output.status.success(),
        "getent ahosts {name} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut addresses: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let address = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        if !address.is_empty() && !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    addresses
}

/// `app.internal` on a primary and a virtual asset. Not the shared network (support::zones): the
/// gateway and the virtual asset have ids of their own, and the virtual asset's address is
/// 100.80.0.10, in 100.64.0.0/10 like the primary's rather than the private 10.10.0.10 — both of
/// one kind, presumably so that the C library's address sorting (RFC 6724), which `getent` shows
/// the result of, has no reason to reorder them.
const SHARED: &str = r#"
[[zone]]
origin = "internal"

[[asset]]
id = "gw"
kind = "gateway"
addresses = ["100.64.0.2"]

[[asset]]
id = "app-host"
kind = "primary"
addresses = ["100.64.1.10"]
names = ["app.internal"]

[[virtual_asset]]
id = "app-via-gw"
gateway = "gw"
addresses = ["100.80.0.10"]
names = ["app.internal"]

[[policy]]
id = "app"
sources = ["*"]
destinations = ["app-host", "app-via-gw"]
"#;

#[test]
fn getent_follows_the_health_order_and_resolves_other_names_through_the_upstream() {
    if !crate::support::needs_root("unshare --mount and port 53") {
        return;
    }
    let unbound = Unbound::start(&["www.example.test. 300 IN A 198.51.100.7"]);
    let server = Server::start(
        &[("zone.toml", SHARED)],
        &[
            "--listen",
            "127.0.0.61:53",
            "--upstream",
            &unbound.upstream_arg(),
        ],
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let resolv_conf = resolv_conf_for(dir.path(), "127.0.0.61");

    assert_eq!(
        getent_ahosts(&resolv_conf, "app.internal"),
        ["100.64.1.10", "100.80.0.10"]
    );
    server.report(false, "100.64.1.10");
    assert_eq!(
        getent_ahosts(&resolv_conf, "app.internal"),
        ["100.80.0.10", "100.64.1.10"],
        "the failed primary goes last for the C library too"
    );
    server.report(true, "100.64.1.10");
    assert_eq!(
        getent_ahosts(&resolv_conf, "app.internal"),
        ["100.64.1.10", "100.80.0.10"]
    );
    assert_eq!(
        getent_ahosts(&resolv_conf, "www.example.test"),
        ["198.51.100.7"]
    );
    assert_eq!(unbound.queries_for("www.example.test.", "A"), 1);
}

#[test]
fn upstreams_from_resolv_conf_skip_the_servers_own_address() {
    if !crate::support::needs_root("unshare --mount and port 53") {
        return;
    }
    let unbound = Unbound::start_on(
        "127.0.0.64",
        Some(53),
        &["www.example.test. 300 IN A 198.51.100.7"],
        &[],
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    // The system resolver configuration names this server first: forwarding there would loop.
    let system = dir.path().join("system-resolv.conf");
    std::fs::write(&system, "nameserver 127.0.0.63\nnameserver 127.0.0.64\n")
        .expect("write resolv.conf");
    let system = system.to_str().expect("UTF-8 path");
    let server = Server::start(
        &[("zone.toml", SHARED)],
        &["--listen", "127.0.0.63:53", "--resolv-conf", system],
    );
    assert_eq!(server.forwarding_line(), "forwarding to 127.0.0.64:53");
    assert!(
        server
            .stderr()
            .contains("upstream 127.0.0.63:53 is this server's own listen address"),
        "{}",
        server.stderr()
    );
    let resolv_conf = resolv_conf_for(dir.path(), "127.0.0.63");
    assert_eq!(
        getent_ahosts(&resolv_conf, "www.example.test"),
        ["198.51.100.7"]
    );
    assert_eq!(
        unbound.queries_for("www.example.test.", "A"),
        1,
        "the second nameserver of resolv.conf answered"
    );
}

/// A tiny HTTP server on `address` that answers every request with `body`, until stopped.
struct HttpListener {
    address: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpListener {
    fn start(address: &str, body: &'static str) -> HttpListener {
        let listener = TcpListener::bind(address).expect("bind the HTTP listener");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let mut request_line = String::new();
                    let mut reader = BufReader::new(&stream);
                    // Read the request head up to the blank line.
                    while reader.read_line(&mut request_line).is_ok_and(|n| n > 2) {
                        request_line.clear();
                    }
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            })
        };
        HttpListener {
            address: address.to_string(),
            stop,
            thread: Some(thread),
        }
    }

    /// Stops accepting and closes the port, so connects are refused.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect(&self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HttpListener {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `curl -v http://web.internal:PORT/` through the C library resolver: (body, first address
/// tried).
fn curl(resolv_conf: &Path, port: u16) -> (String, String) {
    let url = format!("http://web.internal:{port}/");
    let output = with_resolv_conf(
        resolv_conf,
        &[
            "curl",
            "-sS",
            "-v",
            "--noproxy",
            "*",
            "--max-time",
            "10",
            &url,
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "curl failed: {stderr}");
    let first_tried = stderr
        .lines()
        .find_map(|line| line.split("Trying ").nth(1))
        .map(|rest| rest.split(':').next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("curl -v did not say what it tried:\n{stderr}"));
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        first_tried,
    )
}

#[test]
fn curl_fails_over_to_the_secondary_and_back_as_reports_arrive() {
    if !crate::support::needs_root("unshare --mount and port 53") {
        return;
    }
    let zone = r#"
[[zone]]
origin = "internal"

[[asset]]
id = "gw"
kind = "gateway"
addresses = ["127.0.0.4"]

[[asset]]
id = "web-host"
kind = "primary"
addresses = ["127.0.0.2"]
names = ["web.internal"]

[[virtual_asset]]
id = "web-via-gw"
gateway = "gw"
addresses = ["127.0.0.3"]
names = ["web.internal"]

[[policy]]
id = "web"
sources = ["*"]
destinations = ["web-host", "web-via-gw"]
"#;
    let port = crate::support::upstream::free_port("127.0.0.2");
    let mut primary = HttpListener::start(&format!("127.0.0.2:{port}"), "primary");
    let _secondary = HttpListener::start(&format!("127.0.0.3:{port}"), "secondary");
    let server = Server::start(&[("zone.toml", zone)], &["--listen", "127.0.0.62:53"]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let resolv_conf = resolv_conf_for(dir.path(), "127.0.0.62");

    assert_eq!(
        curl(&resolv_conf, port),
        ("primary".to_string(), "127.0.0.2".to_string())
    );

    primary.stop();
    server.report(false, "127.0.0.2");
    assert_eq!(
        curl(&resolv_conf, port),
        ("secondary".to_string(), "127.0.0.3".to_string()),
        "after the failure report the secondary is tried first"
    );

    let _primary = HttpListener::start(&format!("127.0.0.2:{port}"), "primary again");
    server.report(true, "127.0.0.2");
    assert_eq!(
        curl(&resolv_conf, port),
        ("primary again".to_string(), "127.0.0.2".to_string()),
        "a healthy primary is preferred again"
    );
}
