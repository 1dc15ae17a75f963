//! Existing sessions follow the failover, in the network namespace of `observer` (root): a
//! keep-alive HTTP/1.1 client holding one connection to the primary when its path dies, a
//! first request that moves on by the endpoint's RTT, a client that gives up a connect after
//! 250 ms as Happy Eyeballs does, short requests that keep the working path first, a side port
//! that fails while the service port works, and the connections fail fast must leave alone.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::observer::{
    PORT, PRIMARY, Running, VIRTUAL_ASSET, curl, endpoint, network_speaking, python, server_in,
};
use crate::support::netns::Netns;
use crate::support::{Server, status_json, wait_for};

/// A keep-alive client as applications write them: one HTTP/1.1 connection, a request every
/// 0.2 s, and on any error a new connection (which resolves the name again) and the request
/// retried. Arguments: the socket timeout in seconds or `none` (blocking for ever, the default
/// of `requests` and urllib3), and how long to run. Prints `SECONDS PEER` per answer and
/// `SECONDS error KIND` per error.
const KEEP_ALIVE_CLIENT: &str = r#"
import http.client, sys, time
timeout = None if sys.argv[1] == "none" else float(sys.argv[1])
start = time.monotonic()
connection = None
while time.monotonic() - start < float(sys.argv[2]):
    try:
        if connection is None:
            connection = http.client.HTTPConnection("app.internal", 8080, timeout=timeout)
            connection.connect()
        peer = connection.sock.getpeername()[0]
        connection.request("GET", "/")
        connection.getresponse().read()
        print(f"{time.monotonic() - start:.3f} {peer}", flush=True)
    except Exception as error:
        print(f"{time.monotonic() - start:.3f} error {type(error).__name__}", flush=True)
        if connection is not None:
            connection.close()
        connection = None
    time.sleep(0.2)
"#;

/// A client that connects as Happy Eyeballs does between two addresses of one family: the
/// first address, and after 250 ms without an answer, the next one (the first given up).
/// Prints `PEER ATTEMPTS`: where it got, and how many addresses it tried.
const STAGGERING_CLIENT: &str = r#"
import select, socket, time
addresses = [a[4] for a in socket.getaddrinfo("app.internal", 8080, socket.AF_INET, socket.SOCK_STREAM)]
for attempt, address in enumerate(addresses, 1):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(address)
    _, writable, _ = select.select([], [s], [], 0.25 if attempt < len(addresses) else 5)
    if writable and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
        s.setblocking(True)
        s.sendall(b"GET / HTTP/1.0\r\nHost: app.internal\r\n\r\n")
        while s.recv(65536):
            pass
        print(address[0], attempt)
        break
    s.close()
"#;

/// The lines a client prints, each with the moment it arrived.
struct Lines {
    receiver: Receiver<(Instant, String)>,
    _child: Running,
}

impl Lines {
    fn spawn(netns: &Netns, command: &[&str]) -> Lines {
        let mut child = netns
            .command(command)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the client");
        let stdout = child.stdout.take().expect("piped");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Lines {
            receiver,
            _child: Running(child),
        }
    }

    /// The first line `wanted` accepts within `limit`, with its arrival; panics with every
    /// line seen otherwise.
    fn until(&self, limit: Duration, what: &str, wanted: impl Fn(&str) -> bool) -> Instant {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.receiver.recv_timeout(left) {
                Ok((at, line)) if wanted(&line) => return at,
                Ok((_, line)) => seen.push(line),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("{what}: not within {limit:?}; the client printed {seen:?}")
                }
            }
        }
    }
}

fn answered_by(address: &'static str) -> impl Fn(&str) -> bool {
    move |line| line.split_whitespace().nth(1) == Some(address)
}

/// A keep-alive client on the primary, then the primary's path dies: the time until the client
/// gets its next answer, from the virtual asset.
fn keep_alive_failover(server_args: &[&str], client_timeout: &str) -> (Duration, Server) {
    let (netns, _http) =
        network_speaking("a keep-alive session test", "HTTP/1.1").expect("checked by the caller");
    let server = server_in(&netns, server_args);
    let client = Lines::spawn(
        &netns,
        &["python3", "-c", KEEP_ALIVE_CLIENT, client_timeout, "40"],
    );
    client.until(
        Duration::from_secs(10),
        "answers from the primary",
        answered_by(PRIMARY),
    );
    client.until(
        Duration::from_secs(5),
        "a second answer on the same connection",
        answered_by(PRIMARY),
    );
    let blackholed = Instant::now();
    netns.blackhole(PRIMARY, PORT);
    let answered = client.until(
        Duration::from_secs(30),
        "an answer from the virtual asset",
        answered_by(VIRTUAL_ASSET),
    );
    (answered - blackholed, server)
}

#[test]
fn fail_fast_moves_a_keep_alive_session_stuck_on_a_dead_path_to_the_virtual_asset() {
    if Netns::create("the fail-fast session test").is_none() {
        return;
    }
    let (took, server) = keep_alive_failover(&["--fail-fast"], "none");
    assert!(
        took < Duration::from_secs(5),
        "the client with no timeout got its next answer {took:?} after the blackhole"
    );
    let log = server.stderr();
    assert!(
        log.contains("fail fast: aborted a session stalled on a down endpoint"),
        "{log}"
    );
    assert!(log.contains("seen=\"session stalled\""), "{log}");
}

#[test]
fn the_observer_alone_sends_the_reconnect_after_a_client_timeout_to_the_virtual_asset() {
    if Netns::create("the stalled session test").is_none() {
        return;
    }
    let (took, server) = keep_alive_failover(&[], "5");
    assert!(
        took < Duration::from_secs(6),
        "the client with a 5 s timeout got its next answer {took:?} after the blackhole"
    );
    let status = status_json(&server);
    let primary = endpoint(&status, PRIMARY);
    assert_eq!(primary["state"], "down", "{primary}");
    assert!(
        !server.stderr().contains("fail fast: aborted"),
        "nothing is aborted without fail fast"
    );
}

/// Requests to the primary while its path works, so it has RTT history.
fn rtt_history(netns: &Netns, server: &Server) {
    for _ in 0..3 {
        let (_, address) = python(netns);
        assert_eq!(address, PRIMARY);
    }
    wait_for("the primary's successes", server, || {
        (endpoint(&status_json(server), PRIMARY)["state"] == "up").then_some(())
    });
}

#[test]
fn with_rtt_history_the_first_request_after_the_path_died_moves_on_within_a_second() {
    let Some((netns, _http)) = network_speaking("the RTT deadline test", "HTTP/1.0") else {
        return;
    };
    let server = server_in(&netns, &["--fail-fast"]);
    rtt_history(&netns, &server);
    netns.blackhole(PRIMARY, PORT);
    let (seconds, address) = python(&netns);
    assert_eq!(address, VIRTUAL_ASSET);
    assert!(
        seconds < 1.0,
        "Python's first request after the blackhole took {seconds} s"
    );
    let log = server.stderr();
    assert!(
        log.contains("fail fast: aborted a connect waiting on a down endpoint"),
        "{log}"
    );
    let (seconds, address) = curl(&netns);
    assert_eq!(address, VIRTUAL_ASSET);
    assert!(seconds < 1.6, "the next request took {seconds} s");
}

#[test]
fn a_connect_given_up_after_250_ms_counts_and_the_next_requests_go_straight_to_the_virtual_asset() {
    let Some((netns, _http)) = network_speaking("the staggering client test", "HTTP/1.0") else {
        return;
    };
    // Observer only: nothing is aborted, the client's own timer decides.
    let server = server_in(&netns, &[]);
    rtt_history(&netns, &server);
    netns.blackhole(PRIMARY, PORT);
    let staggered = |netns: &Netns| {
        let output = netns.run_ok(&["python3", "-c", STAGGERING_CLIENT]);
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(
        staggered(&netns),
        format!("{VIRTUAL_ASSET} 2"),
        "the first request gives up on the primary after 250 ms"
    );
    wait_for("the given-up connect counted", &server, || {
        (endpoint(&status_json(&server), PRIMARY)["state"] == "down").then_some(())
    });
    for _ in 0..3 {
        assert_eq!(
            staggered(&netns),
            format!("{VIRTUAL_ASSET} 1"),
            "the next requests reach the virtual asset at the first try"
        );
    }
    // Counted either when the client gave it up, or by the look at its deadline, whichever came
    // first (both are at 250 ms here).
    let log = server.stderr();
    assert!(
        log.contains("seen=\"connect given up unanswered\"")
            || log.contains("address=127.0.0.2 port=8080 seen=\"connect unanswered\""),
        "{log}"
    );
}

#[test]
fn short_requests_during_the_outage_keep_the_virtual_asset_first_after_the_primary_heals() {
    let Some((netns, _http)) = network_speaking("the short requests test", "HTTP/1.0") else {
        return;
    };
    let server = server_in(&netns, &["--fail-fast"]);
    rtt_history(&netns, &server);
    netns.blackhole(PRIMARY, PORT);
    assert_eq!(python(&netns).1, VIRTUAL_ASSET);
    // Short requests, each opened and closed within a few milliseconds.
    for _ in 0..5 {
        assert_eq!(curl(&netns).1, VIRTUAL_ASSET);
    }
    let virtual_asset = wait_for("the short requests counted", &server, || {
        let status = status_json(&server);
        let virtual_asset = endpoint(&status, VIRTUAL_ASSET);
        (virtual_asset["state"] == "up").then_some(virtual_asset)
    });
    assert_eq!(virtual_asset["source"], "observer", "{virtual_asset}");
    netns.heal();
    let primary = crate::support::wait_for_within(
        "the re-check finds the primary answering again",
        &server,
        Duration::from_secs(45),
        || {
            let primary = endpoint(&status_json(&server), PRIMARY);
            (primary["state"] == "up").then_some(primary)
        },
    );
    assert_eq!(primary["source"], "recheck", "{primary}");
    assert_eq!(
        server.addresses("app.internal").first().map(String::as_str),
        Some(VIRTUAL_ASSET),
        "the path that carried the traffic stays first (no failback)"
    );
}

#[test]
fn a_dropped_side_port_does_not_reorder_while_the_service_port_works() {
    let Some((netns, _http)) = network_speaking("the side port test", "HTTP/1.0") else {
        return;
    };
    let server = server_in(&netns, &["--fail-fast"]);
    rtt_history(&netns, &server);
    const SIDE_PORT: u16 = 2222;
    netns.blackhole(PRIMARY, SIDE_PORT);
    // An unprivileged local process connecting again and again to the dropped port, giving
    // each connect 1.5 s.
    let prober = format!(
        "import socket\nwhile True:\n    try:\n        socket.create_connection(('{PRIMARY}', {SIDE_PORT}), timeout=1.5)\n    except OSError:\n        pass\n"
    );
    let _prober = Running(
        netns
            .command(&[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                // The system's interpreter: a per-user one (pyenv) is not readable by nobody.
                "/usr/bin/python3",
                "-c",
                &prober,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the prober"),
    );
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let (_, address) = curl(&netns);
        assert_eq!(
            address, PRIMARY,
            "the service port works: the primary stays first"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let primary = endpoint(&status_json(&server), PRIMARY);
    assert_eq!(primary["state"], "up", "{primary}");
    let log = server.stderr();
    assert!(
        log.contains("a failure on a port no application uses while another port works"),
        "the prober's failures were seen, and set aside: {log}"
    );
    assert!(!log.contains("fail fast: aborted"), "{log}");
}

/// A second shared name with one endpoint only: nowhere else to go.
const SOLO_ZONE: &str = r#"[[zone]]
origin = "solo"

[[asset]]
id = "solo-host"
kind = "primary"
addresses = ["127.0.0.5"]
names = ["only.solo"]

[[policy]]
id = "solo"
sources = ["*"]
destinations = ["solo-host"]
"#;

/// A Python program that holds a connection in a given condition for a while and then says
/// whether it is still open: `zero-window` (the server never reads, the client fills the
/// window), `idle` (nothing sent), `busy` (a request every 0.2 s), `stalled` (data sent into a
/// dead path). Arguments: condition, address, port, seconds.
const HOLDER: &str = r#"
import socket, sys, time
condition, address, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.create_connection((address, port), timeout=5)
s.setblocking(False)
print("connected", flush=True)
# Until the test has made the path what it wants.
sys.stdin.readline()
end = time.monotonic() + seconds
state = "open"
while time.monotonic() < end:
    try:
        if condition == "zero-window":
            s.send(b"x" * 65536)
        elif condition == "busy":
            s.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.05)
            try:
                s.recv(65536)
            except BlockingIOError:
                pass
        elif condition == "stalled":
            s.send(b"x")
    except BlockingIOError:
        pass
    except OSError as error:
        state = f"closed {type(error).__name__}"
        break
    time.sleep(0.2)
print(state, flush=True)
"#;

#[test]
fn fail_fast_leaves_alone_what_is_alive_idle_or_has_nowhere_else_to_go() {
    let Some((netns, _http)) = network_speaking("the leave-alone test", "HTTP/1.1") else {
        return;
    };
    // A server on the primary's address that accepts and never reads, and one on the address
    // with no alternative.
    let never_reads = "import socket, time\nl = socket.socket()\nl.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)\nl.bind(('127.0.0.2', 9090))\nl.listen()\nc, _ = l.accept()\ntime.sleep(600)\n";
    let solo = "import socket, time\nl = socket.socket()\nl.bind(('127.0.0.5', 8080))\nl.listen()\nheld = []\nwhile True:\n    held.append(l.accept())\n";
    let _never_reads = Running(netns.spawn(&["python3", "-c", never_reads]));
    let _solo = Running(netns.spawn(&["python3", "-c", solo]));
    let server = Server::builder(&[
        ("zone.toml", crate::observer::ZONE),
        ("solo.toml", SOLO_ZONE),
    ])
    .args(&["--listen", "127.0.0.1:53", "--fail-fast"])
    .in_netns(netns.name())
    .start();
    let wait_listening = |address: &str, port: u16| {
        let start = Instant::now();
        while !netns
            .run(&[
                "python3",
                "-c",
                &format!(
                    "import socket; socket.create_connection(('{address}', {port}), timeout=1)"
                ),
            ])
            .status
            .success()
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{address}:{port} never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_listening(PRIMARY, 9090);
    wait_listening("127.0.0.5", 8080);
    rtt_history(&netns, &server);
    // The solo endpoint has traffic too, so its failure counts.
    let holders: Vec<(&str, std::process::Child)> = [
        ("zero-window", PRIMARY, 9090),
        ("idle", PRIMARY, PORT),
        ("busy", VIRTUAL_ASSET, PORT),
        ("stalled", "127.0.0.5", 8080),
    ]
    .into_iter()
    .map(|(condition, address, port)| {
        let port = port.to_string();
        let child = netns
            .command(&["python3", "-c", HOLDER, condition, address, &port, "10"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a holder");
        (condition, child)
    })
    .collect();
    let mut holders: Vec<(
        &str,
        std::process::Child,
        BufReader<std::process::ChildStdout>,
    )> = holders
        .into_iter()
        .map(|(condition, mut child)| {
            let stdout = BufReader::new(child.stdout.take().expect("piped"));
            (condition, child, stdout)
        })
        .collect();
    for (condition, _, stdout) in &mut holders {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "connected", "{condition}");
    }
    // The primary's service port and the solo endpoint die: the idle connection and the
    // stalled one sit on dead paths.
    netns.blackhole(PRIMARY, PORT);
    netns.blackhole("127.0.0.5", 8080);
    for (_, child, _) in &mut holders {
        use std::io::Write;
        child
            .stdin
            .as_mut()
            .expect("piped")
            .write_all(b"go\n")
            .expect("write");
    }
    // Once the peer that never reads has closed its window (data waits unsent), its path dies
    // too: the zero-window probes go unanswered, and that still says nothing about the path.
    let start = Instant::now();
    loop {
        let output = netns.run_ok(&[
            "ss",
            "-Htin",
            "state",
            "established",
            "dst",
            "127.0.0.2:9090",
        ]);
        if String::from_utf8_lossy(&output.stdout).contains("notsent:") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the window never closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    netns.blackhole(PRIMARY, 9090);
    for (condition, child, stdout) in &mut holders {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read");
        assert_eq!(
            line.trim(),
            "open",
            "{condition}: the connection was left alone"
        );
        let _ = child.wait();
    }
    let status = status_json(&server);
    assert_eq!(
        endpoint(&status, PRIMARY)["state"],
        "up",
        "zero window and idle are alive: {status}"
    );
    assert_eq!(endpoint(&status, VIRTUAL_ASSET)["state"], "up", "{status}");
    let log = server.stderr();
    assert!(!log.contains("fail fast: aborted"), "{log}");
    assert!(
        log.contains("address=127.0.0.5 port=8080 seen=\"session stalled\""),
        "the stalled session to the name with one endpoint is a failure, just not aborted: {log}"
    );
}
