//! What a hostile local process, a hostile upstream or a careless operator cannot do to the
//! server: lock out reports with interrupted `watch` clients, make a save of the health state
//! write through a link planted in a shared directory (or plant the state file itself), starve
//! the server of file descriptors through the metrics port, take the default control socket's
//! path or impersonate the server, keep new TCP clients out with idle connections, or make
//! clients believe an upstream's records for our own names.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::{Name, RData, Record, rdata};

use crate::support::upstream::Unbound;
use crate::support::zones::{APP_PRIMARY, APP_VIA_BERLIN, APP_ZONE};
use crate::support::{BINARY, Server, ServerBuilder, run_with_deadline, text, wait_for};

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Sends `signal` (`INT`, `TERM`) to `child` and waits for it to exit.
fn signal_and_wait(child: &mut Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal}");
    child.wait().expect("wait for the child");
}

/// Starts a watcher on `server`'s control socket, as `failover-dns watch` does, and returns
/// once the server confirmed it (so it holds a slot).
fn confirmed_watcher(server: &Server) -> std::os::unix::net::UnixStream {
    use std::io::Write;
    let mut stream = std::os::unix::net::UnixStream::connect(server.control_path())
        .expect("connect to the control socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
        .write_all(b"{\"op\":\"watch\"}\n")
        .expect("send watch");
    let mut first = String::new();
    BufReader::new(&stream)
        .read_line(&mut first)
        .expect("read the reply");
    assert!(first.contains("\"watching\""), "{first}");
    stream
}

#[test]
fn interrupted_watchers_do_not_lock_out_reports() {
    let server = Server::start(&[("zone.toml", APP_ZONE)], &[]);
    // As many watchers as there are control slots (16 by default), each confirmed.
    let watchers: Vec<_> = (0..16).map(|_| confirmed_watcher(&server)).collect();
    // With every slot held, a report is refused, and the user reads the server's reason.
    let output = server.cli(&["report", "--ok", APP_PRIMARY]);
    assert!(!output.status.success());
    let refused = text(&output.stderr);
    assert!(
        refused.contains("too many control connections") && !refused.contains("Broken pipe"),
        "the server's reason, not a write error: {refused}"
    );
    // Every watcher goes away (what Ctrl-C on `failover-dns watch` does to its connection)
    // while nothing happens that would make an event.
    drop(watchers);
    let reported = wait_for("reports get through again", &server, || {
        let output = server.cli(&["report", "--fail", APP_PRIMARY]);
        output.status.success().then(|| text(&output.stdout))
    });
    assert!(reported.contains("down"), "{reported}");
    assert_eq!(
        server.addresses("app.internal"),
        [APP_VIA_BERLIN, APP_PRIMARY]
    );
}

#[test]
fn saving_the_health_state_never_writes_through_a_planted_link() {
    // A shared directory like /tmp: sticky, anyone may create files in it.
    let shared = tempfile::tempdir().expect("temporary directory");
    set_mode(shared.path(), 0o1777);
    let state_file = shared.path().join("health.json");
    let victim = shared.path().join("victim");
    std::fs::write(&victim, "precious\n").expect("write the victim");
    let state_arg = state_file.to_str().expect("UTF-8 path");
    let mut server = Server::start(&[("zone.toml", APP_ZONE)], &["--state-file", state_arg]);
    server.report(false, APP_PRIMARY);
    // Another user plants links where the save will write: the temporary name the server's
    // pid predicts, and the state file's own path.
    let predictable = format!("{state_arg}.{}.tmp", server.pid());
    std::os::unix::fs::symlink(&victim, &predictable).expect("plant a link");
    std::os::unix::fs::symlink(&victim, &state_file).expect("plant a link at the path");
    assert!(server.stop().success(), "clean exit (the state is saved)");

    assert_eq!(
        std::fs::read_to_string(&victim).expect("read the victim"),
        "precious\n",
        "the save wrote through a link"
    );
    let saved = std::fs::symlink_metadata(&state_file).expect("the state file");
    assert!(saved.file_type().is_file(), "{saved:?}");
    let text = std::fs::read_to_string(&state_file).expect("read the state file");
    assert!(text.contains(APP_PRIMARY), "{text}");
}

#[test]
fn a_health_state_file_that_is_a_link_is_not_trusted() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let planted = dir.path().join("planted.json");
    // A well-formed state file that says the primary is down.
    std::fs::write(
        &planted,
        format!(
            r#"{{"version":1,"saved_at_unix_ms":1,"endpoints":[{{"address":"{APP_PRIMARY}","last_success":null,"last_failure":{{"sequence":1,"unix_ms":1}},"consecutive_failures":1,"last_rtt_ms":null}}]}}"#
        ),
    )
    .expect("write the planted file");
    let state_file = dir.path().join("health.json");
    std::os::unix::fs::symlink(&planted, &state_file).expect("link");
    let state_arg = state_file.to_str().expect("UTF-8 path");
    let server = Server::start(&[("zone.toml", APP_ZONE)], &["--state-file", state_arg]);
    assert_eq!(
        server.addresses("app.internal"),
        [APP_PRIMARY, APP_VIA_BERLIN],
        "nothing restored from the link"
    );
    let log = server.stderr();
    assert!(log.contains("symbolic link"), "{log}");
}

/// The soft descriptor limit of this process raised to at least `wanted` (within the hard
/// limit); false when the hard limit is lower.
fn raise_own_descriptor_limit(wanted: u64) -> bool {
    let pid = std::process::id().to_string();
    let output = Command::new("prlimit")
        .args([
            "--pid",
            &pid,
            "--nofile",
            "--raw",
            "--noheadings",
            "--output=SOFT,HARD",
        ])
        .output()
        .expect("run prlimit");
    let limits: Vec<u64> = text(&output.stdout)
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    let [soft, hard] = limits[..] else {
        // "unlimited" parses as neither; nothing to raise then.
        return true;
    };
    if soft >= wanted {
        return true;
    }
    if hard < wanted {
        return false;
    }
    Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={wanted}:{hard}")])
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn idle_metrics_connections_cannot_starve_the_server_of_descriptors() {
    if !raise_own_descriptor_limit(4096) {
        eprintln!("skipped: this process may not open 1,100 connections");
        return;
    }
    let upstream = Unbound::start(&["www.example.test. 300 IN A 192.0.2.80"]);
    let server = Server::builder(&[("zone.toml", APP_ZONE)])
        .args(&[
            "--upstream",
            &upstream.upstream_arg(),
            "--metrics",
            "127.0.0.1:0",
        ])
        .wrapped_by(&["prlimit", "--nofile=1024"])
        .start();
    let metrics = server.metrics_address().expect("metrics listener");
    // A local process tries to open more idle connections to the metrics port than the
    // server has descriptors, until the kernel stops completing them (its backlog is full).
    let mut held = Vec::new();
    let mut failed_in_a_row = 0;
    while held.len() < 1100 && failed_in_a_row < 3 {
        match TcpStream::connect_timeout(&metrics, Duration::from_millis(300)) {
            Ok(stream) => {
                held.push(stream);
                failed_in_a_row = 0;
            }
            Err(_) => failed_in_a_row += 1,
        }
    }
    assert!(held.len() >= 100, "only {} connections held", held.len());

    // Forwarding (a new upstream socket per query), DNS over TCP and reports still work.
    for label in ["nx1", "nx2", "nx3"] {
        let name = format!("{label}.example.test");
        let reply = server.dig(&[&name, "A"]);
        assert_eq!(reply.status, "NXDOMAIN", "forwarded {name}:\n{reply}");
    }
    let reply = server.dig(&["www.example.test", "A"]);
    assert_eq!(reply.answer_data(), ["192.0.2.80"], "{reply}");
    let reply = server.dig(&["+tcp", "app.internal", "A"]);
    assert_eq!(reply.status, "NOERROR", "{reply}");
    server.report(false, APP_PRIMARY);
    let log = server.stderr();
    assert!(!log.contains("Too many open files"), "{log}");
    drop(held);
}

/// A local process holding `count` idle TCP connections to `address` (it never sends a byte),
/// re-opening every one the server closes: at once when `churn`, else every 20 ms. Stops when
/// dropped.
struct Holder {
    stop: Arc<AtomicBool>,
    holding: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Holder {
    fn start(address: SocketAddr, count: usize, churn: bool) -> Holder {
        let stop = Arc::new(AtomicBool::new(false));
        let holding = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::spawn({
            let (stop, holding) = (Arc::clone(&stop), Arc::clone(&holding));
            move || {
                let mut held: Vec<TcpStream> = Vec::new();
                let mut opened = 0;
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    held.retain(|stream| {
                        let mut byte = [0u8; 1];
                        // Closed by the server: end of file (or an error).
                        matches!(stream.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                    });
                    while held.len() < count {
                        let Ok(stream) =
                            TcpStream::connect_timeout(&address, Duration::from_secs(1))
                        else {
                            break;
                        };
                        stream.set_nonblocking(true).expect("non-blocking");
                        held.push(stream);
                        opened += 1;
                    }
                    holding.store(held.len(), Ordering::Relaxed);
                    if !churn {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                opened
            }
        });
        Holder {
            stop,
            holding,
            thread: Some(thread),
        }
    }

    /// Waits until it holds `count` connections.
    fn wait_holding(&self, server: &Server, count: usize) {
        wait_for(
            &format!("the holder holds {count} connections"),
            server,
            || (self.holding.load(Ordering::Relaxed) >= count).then_some(()),
        );
    }

    /// Stops it; how many connections it opened in all.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or(0, |thread| thread.join().expect("the holder thread"))
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn idle_tcp_connections_cannot_keep_a_new_client_out() {
    let server = Server::start(&[("zone.toml", APP_ZONE)], &[]);
    let address = server.listen_addresses()[0];
    // A local process keeps 300 idle connections open (more than the 128 slots), re-opening
    // every one the server closes.
    let holder = Holder::start(address, 300, false);
    // Well over the 128 slots (the holder's count dips while it re-opens what was closed).
    holder.wait_holding(&server, 250);
    // A fresh client over TCP is answered within a second or two, every time: dig waits 2 s
    // for a reply, and gets a second try on a loaded machine (without the fix the client waits
    // for the 10 s idle timeout of the connections ahead of it).
    for _ in 0..3 {
        let reply = server
            .try_dig(&["+tcp", "app.internal", "A"])
            .or_else(|_| server.try_dig(&["+tcp", "app.internal", "A"]))
            .unwrap_or_else(|error| panic!("no answer over TCP twice: {error}"));
        assert_eq!(
            reply.answer_data(),
            [APP_PRIMARY, APP_VIA_BERLIN],
            "{reply}"
        );
    }
    holder.stop();
}

/// Fresh `dig +tcp` queries (one try each, 2 s) answered right, out of `asked`, started
/// `every` apart (so they sample the whole span, idle timeouts of the held connections
/// included), and the longest one took (connect, query and reply, the start of `dig` too).
fn fresh_tcp_answers(server: &Server, asked: usize, every: Duration) -> (usize, Duration) {
    let start = Instant::now();
    let (mut answered, mut slowest) = (0, Duration::ZERO);
    for index in 0..asked {
        let due = start + every * u32::try_from(index).expect("a small count");
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let asking = Instant::now();
        let reply = server.try_dig(&["+tcp", "app.internal", "A"]);
        slowest = slowest.max(asking.elapsed());
        match reply {
            Ok(reply) if reply.answer_data() == [APP_PRIMARY, APP_VIA_BERLIN] => answered += 1,
            other => eprintln!(
                "fresh TCP query {index} at {:?}: {other:?}",
                start.elapsed()
            ),
        }
    }
    (answered, slowest)
}

#[test]
fn a_client_that_asks_at_once_is_served_while_one_process_churns_300_idle_connections() {
    const ASKED: usize = 40;
    let server = Server::start(&[("zone.toml", APP_ZONE)], &[]);
    let address = server.listen_addresses()[0];
    let (alone, alone_slowest) = fresh_tcp_answers(&server, ASKED, Duration::ZERO);
    // One process holds 300 connections that never send a byte (more than the 128 slots),
    // re-opening each one the server closes as fast as it can.
    let holder = Holder::start(address, 300, true);
    holder.wait_holding(&server, 250);
    // Over 30 s: the held connections' 10 s idle timeouts pass within it.
    let (churned, churned_slowest) = fresh_tcp_answers(&server, ASKED, Duration::from_millis(750));
    let opened = holder.stop();
    eprintln!(
        "fresh TCP queries answered: {alone}/{ASKED} with no holder (slowest {alone_slowest:?}), \
         {churned}/{ASKED} with 300 churning holders (slowest {churned_slowest:?}; the holder \
         opened {opened} connections)"
    );
    assert_eq!(alone, ASKED, "with no holder");
    assert_eq!(churned, ASKED, "with 300 churning holders");
    // Answered at once, not after waiting behind the holder's connections in the kernel's
    // accept queue, or for a SYN it dropped to be sent again (a second).
    assert!(
        churned_slowest < Duration::from_secs(1),
        "the slowest fresh query took {churned_slowest:?}"
    );
}

/// Starts `failover-dns serve` with no `--control` (the default path), with `XDG_RUNTIME_DIR`
/// unset and `TMPDIR` set to `temporary_dir`; as root, as user `nobody` (65534), so that the
/// per-user directory scheme applies. Returns the command and the uid it runs as.
fn serve_with_default_control(zones: &Path, temporary_dir: &Path) -> (Command, u32) {
    let resolv_conf = zones.join("resolv.conf");
    std::fs::write(&resolv_conf, "").expect("write an empty resolv.conf");
    let args = [
        "serve".as_ref(),
        "--zones".as_ref(),
        zones.as_os_str(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--resolv-conf".as_ref(),
        resolv_conf.as_os_str(),
    ];
    as_test_user(&args, temporary_dir)
}

/// `failover-dns ARGS` with the default-control environment of [`serve_with_default_control`].
fn as_test_user(args: &[&std::ffi::OsStr], temporary_dir: &Path) -> (Command, u32) {
    let (mut command, uid) = if is_root() {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", BINARY]);
        (command, 65534)
    } else {
        let uid = std::fs::metadata("/proc/self").expect("/proc/self").uid();
        (Command::new(BINARY), uid)
    };
    command
        .args(args)
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", temporary_dir)
        .env("NO_COLOR", "1");
    (command, uid)
}

/// A zones directory (and a sticky shared temporary directory) that user `nobody` can read.
fn readable_zones() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let base = tempfile::tempdir().expect("temporary directory");
    set_mode(base.path(), 0o755);
    let zones = base.path().join("zones");
    std::fs::create_dir(&zones).expect("mkdir zones");
    set_mode(&zones, 0o755);
    std::fs::write(zones.join("zone.toml"), APP_ZONE).expect("write the zone");
    set_mode(&zones.join("zone.toml"), 0o644);
    let shared = base.path().join("tmp");
    std::fs::create_dir(&shared).expect("mkdir tmp");
    set_mode(&shared, 0o1777);
    (base, zones, shared)
}

#[test]
fn the_default_control_socket_lives_in_a_private_directory() {
    let (_base, zones, shared) = readable_zones();
    let (command, uid) = serve_with_default_control(&zones, &shared);
    let mut server = ServerBuilder::spawn_prepared(command);
    let directory = shared.join(format!("failover-dns-{uid}"));
    let metadata = std::fs::symlink_metadata(&directory).expect("the private directory");
    assert!(metadata.is_dir(), "{metadata:?}");
    assert_eq!(metadata.uid(), uid);
    assert_eq!(metadata.mode() & 0o777, 0o700, "{:o}", metadata.mode());
    assert!(directory.join("control.sock").exists());
    // The same user finds the server without --control.
    let (status, _) = as_test_user(&["status".as_ref()], &shared);
    let output = run_with_deadline(status, Duration::from_secs(20));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("app.internal"));
    if crate::support::needs_root("a server of another user") {
        // Root's client talks to a server of root or of its own user only: this one runs as
        // nobody, as an impostor on a shared path would.
        let socket = directory.join("control.sock");
        let output = crate::support::failover_dns(&[
            "status",
            "--control",
            socket.to_str().expect("UTF-8 path"),
        ]);
        assert!(!output.status.success());
        let error = text(&output.stderr);
        assert!(error.contains("runs as uid 65534"), "{error}");
        assert!(
            output.stdout.is_empty(),
            "nothing of the impostor's reply is shown"
        );
    }
    signal_and_wait(&mut server, "TERM");
}

#[test]
fn a_planted_control_directory_stops_the_server_with_a_clear_error() {
    let (_base, zones, shared) = readable_zones();
    let (_, uid) = serve_with_default_control(&zones, &shared);
    let directory = shared.join(format!("failover-dns-{uid}"));
    let elsewhere = shared.join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    // What another user can do first in a shared directory: a directory everyone may use
    // (as root: owned by root, not by the server's user), or a link to one.
    let plants: [(&str, &dyn Fn()); 2] = [
        ("mode 777", &|| {
            std::fs::create_dir(&directory).expect("plant a directory");
            set_mode(&directory, 0o777);
        }),
        ("symbolic link", &|| {
            std::os::unix::fs::symlink(&elsewhere, &directory).expect("plant a link");
        }),
    ];
    for (reason, plant) in plants {
        plant();
        let (command, _) = serve_with_default_control(&zones, &shared);
        let output = run_with_deadline(command, Duration::from_secs(20));
        assert!(!output.status.success(), "{reason}: the server started");
        let error = text(&output.stderr);
        let expected = if reason == "mode 777" && is_root() {
            "owned by uid 0"
        } else {
            reason
        };
        assert!(
            error.contains(&directory.display().to_string()) && error.contains(expected),
            "{reason}: {error}"
        );
        if directory.is_symlink() {
            std::fs::remove_file(&directory).expect("remove the link");
        } else {
            std::fs::remove_dir(&directory).expect("remove the directory");
        }
    }
}

/// An upstream on loopback that answers every query with its own records plus claims about
/// `app.internal` in every section.
struct HostileUpstream {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl HostileUpstream {
    fn start() -> HostileUpstream {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the upstream");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let address = socket.local_addr().expect("address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 1500];
            while !stopping.load(Ordering::Relaxed) {
                let Ok((length, peer)) = socket.recv_from(&mut buffer) else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buffer[..length]) else {
                    continue;
                };
                if let Some(reply) = hostile_reply(&query) {
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        HostileUpstream { address, stop }
    }
}

impl Drop for HostileUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn hostile_reply(query: &Message) -> Option<Vec<u8>> {
    let name = |text: &str| Name::from_ascii(text).expect("literal name");
    let a = |owner: &str, octets: [u8; 4]| {
        Record::from_rdata(
            name(owner),
            300,
            RData::A(rdata::A::from(std::net::Ipv4Addr::from(octets))),
        )
    };
    let question = query.queries.first()?.clone();
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.message_type = MessageType::Response;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let asked = question.name().to_ascii().to_ascii_lowercase();
    reply.queries.push(question);
    if asked == "alias.example.test." {
        reply.answers.push(Record::from_rdata(
            name("alias.example.test."),
            300,
            RData::CNAME(rdata::CNAME(name("app.internal."))),
        ));
        reply.answers.push(a("app.internal.", [6, 6, 6, 6]));
    } else {
        reply.answers.push(a(&asked, [192, 0, 2, 1]));
        reply.authorities.push(Record::from_rdata(
            name("internal."),
            300,
            RData::NS(rdata::NS(name("ns.evil.test."))),
        ));
        reply.additionals.push(a("app.internal.", [6, 6, 6, 6]));
        reply
            .additionals
            .push(a("ns.example.test.", [192, 0, 2, 53]));
    }
    reply.to_vec().ok()
}

#[test]
fn an_upstreams_records_for_our_names_never_reach_a_client() {
    let upstream = HostileUpstream::start();
    let server = Server::start(
        &[("zone.toml", APP_ZONE)],
        &["--upstream", &upstream.address.to_string()],
    );
    // Asked twice: the second answer comes from the cache, which must be scrubbed too.
    for round in ["upstream", "cache"] {
        let reply = server.dig(&["www.example.test", "A"]);
        assert_eq!(reply.status, "NOERROR", "{round}: {reply}");
        assert_eq!(reply.answer_data(), ["192.0.2.1"], "{round}: {reply}");
        assert!(reply.authority.is_empty(), "{round}: {reply}");
        let additional: Vec<&str> = reply.additional.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(additional, ["ns.example.test."], "{round}: {reply}");

        let reply = server.dig(&["alias.example.test", "A"]);
        let owners: Vec<&str> = reply.answers.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(owners, ["alias.example.test."], "{round}: {reply}");
    }
    assert_eq!(
        server.addresses("app.internal"),
        [APP_PRIMARY, APP_VIA_BERLIN]
    );
}
