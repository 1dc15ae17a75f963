//! Readiness for systemd (`Type=notify`): the test plays the service manager. It binds a Unix
//! datagram socket, starts the real binary with `NOTIFY_SOCKET` naming it (stdout unread, as
//! under systemd), and checks what arrives: `READY=1` with a `STATUS=` that counts the shared
//! names, and only once a DNS query is answered at the first try; `RELOADING=1` then `READY=1`
//! around a reload (good or bad); `STOPPING=1` at SIGTERM, before a clean exit.

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::support::zones::APP_ZONE;
use crate::support::{dig_at, zone_dir};

const BINARY: &str = env!("CARGO_BIN_EXE_failover-dns");
/// How long the server may take between two messages (startup, a reload, shutdown).
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// The service manager's side: the notification socket, and the server it started.
struct ServiceManager {
    socket: UnixDatagram,
    server: Option<Child>,
}

impl ServiceManager {
    /// Binds the notification socket `notify.sock` in `dir` and starts `failover-dns serve` on
    /// the zones there, with `NOTIFY_SOCKET` naming the socket.
    fn start(dir: &Path) -> ServiceManager {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notification socket");
        ServiceManager::start_with(dir, socket, path.as_os_str())
    }

    /// Starts `failover-dns serve` on the zones in `dir` with `NOTIFY_SOCKET=notify_socket`, which
    /// names `socket`.
    fn start_with(dir: &Path, socket: UnixDatagram, notify_socket: &OsStr) -> ServiceManager {
        socket
            .set_read_timeout(Some(MESSAGE_TIMEOUT))
            .expect("set a read timeout");
        std::fs::write(dir.join("resolv.conf"), "# no upstreams\n").expect("write resolv.conf");
        let server = Command::new(BINARY)
            .arg("serve")
            .arg("--zones")
            .arg(dir.join("zones"))
            .args(["--listen", "127.0.0.1:0", "--control"])
            .arg(dir.join("control.sock"))
            .arg("--resolv-conf")
            .arg(dir.join("resolv.conf"))
            .env("NOTIFY_SOCKET", notify_socket)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn failover-dns serve");
        ServiceManager {
            socket,
            server: Some(server),
        }
    }

    /// The next message, as its `KEY=VALUE` lines.
    fn next_message(&self) -> Vec<String> {
        let mut buffer = [0u8; 4096];
        let length = self
            .socket
            .recv(&mut buffer)
            .unwrap_or_else(|error| panic!("no notification within {MESSAGE_TIMEOUT:?}: {error}"));
        String::from_utf8_lossy(&buffer[..length])
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn signal(&self, signal: &str) {
        let pid = self.server.as_ref().expect("running").id().to_string();
        // The crate forbids `unsafe`, so no libc::kill: the `kill` command does the same.
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    fn wait(&mut self) -> ExitStatus {
        self.server.take().expect("running").wait().expect("wait")
    }
}

impl Drop for ServiceManager {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

/// The value of `key` in a message.
fn field<'a>(message: &'a [String], key: &str) -> Option<&'a str> {
    message
        .iter()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn ready_once_answering_reloading_around_a_reload_and_stopping_at_sigterm() {
    let dir = zone_dir(&[("zone.toml", APP_ZONE)]);
    let mut manager = ServiceManager::start(dir.path());

    let ready = manager.next_message();
    assert_eq!(field(&ready, "READY"), Some("1"), "{ready:?}");
    let status = field(&ready, "STATUS").unwrap_or_default();
    assert!(
        status.starts_with("serving 1 shared names in 1 zones on 127.0.0.1:"),
        "{ready:?}"
    );
    // The status names the address, as systemd would show it; nothing else was read.
    let port: u16 = status
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {status:?}"));
    // Ready means answering: the very first query, with no retry, gets the answer.
    let reply = dig_at("127.0.0.1", port, &["app.internal", "A"])
        .unwrap_or_else(|error| panic!("no answer right after READY=1: {error}"));
    assert_eq!(reply.status, "NOERROR", "{reply}");
    assert_eq!(
        reply.answer_data(),
        ["100.64.1.10", "10.10.0.10"],
        "{reply}"
    );

    // A good reload (SIGHUP): RELOADING=1 with the monotonic time, then READY=1 and the new count.
    std::fs::write(
        dir.path().join("zones/zone.toml"),
        format!("{APP_ZONE}\n[[asset]]\nid = \"db-host\"\nkind = \"primary\"\naddresses = [\"100.64.1.20\"]\nnames = [\"db.internal\"]\n\n[[policy]]\nid = \"db\"\nsources = [\"*\"]\ndestinations = [\"db-host\"]\n"),
    )
    .expect("rewrite the zone");
    // The file watcher may reload on its own before the signal does; either way each reload is
    // RELOADING=1 then READY=1, so read pairs until the new count shows.
    manager.signal("-HUP");
    let mut reloads = 0;
    loop {
        let reloading = manager.next_message();
        assert_eq!(field(&reloading, "RELOADING"), Some("1"), "{reloading:?}");
        assert!(
            field(&reloading, "MONOTONIC_USEC").is_some_and(|usec| usec.parse::<u64>().is_ok()),
            "{reloading:?}"
        );
        let reloaded = manager.next_message();
        assert_eq!(field(&reloaded, "READY"), Some("1"), "{reloaded:?}");
        reloads += 1;
        let status = field(&reloaded, "STATUS").unwrap_or_default();
        if status.starts_with("serving 2 shared names in 1 zones") {
            break;
        }
        assert!(
            reloads < 5,
            "no reload picked up the new name: {reloaded:?}"
        );
    }

    // A broken file: still RELOADING=1 then READY=1, the status saying the old data serves on.
    std::fs::write(dir.path().join("zones/zone.toml"), "[[zone]\n").expect("break the zone");
    manager.signal("-HUP");
    loop {
        let reloading = manager.next_message();
        assert_eq!(field(&reloading, "RELOADING"), Some("1"), "{reloading:?}");
        let reloaded = manager.next_message();
        assert_eq!(field(&reloaded, "READY"), Some("1"), "{reloaded:?}");
        let status = field(&reloaded, "STATUS").unwrap_or_default();
        if status.starts_with("reload failed") {
            assert!(status.contains("2 shared names"), "{reloaded:?}");
            break;
        }
        reloads += 1;
        assert!(reloads < 10, "no reload failed: {reloaded:?}");
    }

    manager.signal("-TERM");
    let stopping = manager.next_message();
    assert_eq!(field(&stopping, "STOPPING"), Some("1"), "{stopping:?}");
    let status = manager.wait();
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[test]
fn an_abstract_notification_socket_works_too() {
    let dir = zone_dir(&[("zone.toml", APP_ZONE)]);
    let name = format!("failover-dns-it-readiness-{}", std::process::id());
    let address = {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("address")
    };
    let socket = UnixDatagram::bind_addr(&address).expect("bind the abstract socket");
    let mut manager =
        ServiceManager::start_with(dir.path(), socket, OsStr::new(&format!("@{name}")));
    let ready = manager.next_message();
    assert_eq!(field(&ready, "READY"), Some("1"), "{ready:?}");
    manager.signal("-TERM");
    let stopping = manager.next_message();
    assert_eq!(field(&stopping, "STOPPING"), Some("1"), "{stopping:?}");
    let status = manager.wait();
    assert!(status.success(), "exit after SIGTERM: {status}");
}
