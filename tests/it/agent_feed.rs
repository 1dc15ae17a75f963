//! The agent feed against the real binary and the real example: the embedding example prints
//! the new order after a failure; active probes follow a listener the test stops and starts;
//! the health state file survives a restart (and a corrupt one is survived); `watch` streams
//! the events a report and a reload cause; `status --name` names the policies that hide an
//! endpoint; the metrics endpoint counts exactly what the test sent; reports by destination id;
//! and the log stays quiet per query and parses as JSON when asked to.
//!
//! Waiting is observed, never slept for: [`wait_for`] polls (each poll runs `dig` or the CLI, with
//! a short pause between polls) until the condition holds or a generous deadline passes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::{Server, example_binary, run_with_deadline, text, zone_dir};

/// How long a change may take before a test fails; generous for a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(10);
/// The pause between two polls.
const POLL_PAUSE: Duration = Duration::from_millis(20);

/// `app.internal`: a primary and a virtual asset; `db.internal`: the same shape with other
/// addresses, so one of them can be removed while the other stays.
const ZONE: &str = concat!(
    r#"[[zone]]
origin = "internal"

"#,
    app_via_berlin_toml!(),
    r#"
[[asset]]
id = "db-host"
kind = "primary"
addresses = ["100.64.2.10"]
names = ["db.internal"]

[[virtual_asset]]
id = "db-via-berlin"
gateway = "gw-berlin"
addresses = ["10.10.0.20"]
names = ["db.internal"]

[[policy]]
id = "everyone"
sources = ["*"]
destinations = ["app-host", "app-via-berlin", "db-host", "db-via-berlin"]
"#
);

const APP_PRIMARY: &str = "100.64.1.10";
const APP_VIA_BERLIN: &str = "10.10.0.10";
const DB_PRIMARY: &str = "100.64.2.10";
const DB_VIA_BERLIN: &str = "10.10.0.20";

/// Polls `probe` until it returns `Some` (pausing [`POLL_PAUSE`] between polls) and returns the
/// value; panics with `what` and the server's log when [`DEADLINE`] passes.
fn wait_for<T>(what: &str, server: &Server, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if start.elapsed() > DEADLINE {
            panic!(
                "{what}: not within {DEADLINE:?}\n--- server stderr ---\n{}",
                server.stderr()
            );
        }
        std::thread::sleep(POLL_PAUSE);
    }
}

/// `failover-dns status --json`, parsed.
fn status_json(server: &Server) -> Value {
    let output = server.cli(&["status", "--json"]);
    assert!(output.status.success(), "status --json: {output:?}");
    serde_json::from_slice(&output.stdout).expect("status --json prints JSON")
}

/// Every (name, address, state) in a status reply, in its order.
fn endpoint_states(status: &Value) -> Vec<(String, String, String)> {
    let mut states = Vec::new();
    for name in status["names"].as_array().expect("names is a list") {
        for endpoint in name["endpoints"].as_array().expect("endpoints is a list") {
            states.push((
                name["name"].as_str().expect("name").to_string(),
                endpoint["address"].as_str().expect("address").to_string(),
                endpoint["state"].as_str().expect("state").to_string(),
            ));
        }
    }
    states
}

/// The state `status --json` gives `address` (the first name carrying it).
fn state_of(server: &Server, address: &str) -> String {
    let status = status_json(server);
    endpoint_states(&status)
        .into_iter()
        .find(|(_, a, _)| a == address)
        .map(|(_, _, state)| state)
        .unwrap_or_else(|| panic!("{address} is in no name's endpoints: {status}"))
}

#[test]
fn embedding_example_prints_the_order_before_and_after_a_failure() {
    let example = example_binary("embed_agent");
    let zones = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    let mut command = Command::new(&example);
    command.arg(&zones);
    let output = run_with_deadline(command, Duration::from_secs(60));
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stdout}{}",
        example.display(),
        output.status,
        text(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let serving = lines.first().copied().unwrap_or_default();
    let address: SocketAddr = serving
        .strip_prefix("serving on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("first line names the address: {stdout}"));
    assert!(address.ip().is_loopback(), "{stdout}");
    let (events, rest): (Vec<&str>, Vec<&str>) = lines
        .iter()
        .skip(1)
        .partition(|line| line.starts_with("event: "));
    assert_eq!(
        rest,
        [
            "order before: 100.64.1.10, 10.10.0.10",
            "dns before: 100.64.1.10, 10.10.0.10",
            "reported failure of 100.64.1.10",
            "order after: 10.10.0.10, 100.64.1.10",
            "dns after: 10.10.0.10, 100.64.1.10",
            "stopped",
        ],
        "{stdout}"
    );
    assert_eq!(lines.last(), Some(&"stopped"), "{stdout}");
    let events: Vec<Value> = events
        .iter()
        .map(|line| serde_json::from_str(&line["event: ".len()..]).expect("events are JSON"))
        .collect();
    let [down, changed] = events.as_slice() else {
        panic!("two events: {stdout}");
    };
    assert_eq!(down["event"], "endpoint_down", "{down}");
    assert_eq!(down["address"], "100.64.1.10", "{down}");
    assert_eq!(changed["event"], "first_endpoint_changed", "{changed}");
    assert_eq!(changed["name"], "app.internal.", "{changed}");
    assert_eq!(changed["from"], "100.64.1.10", "{changed}");
    assert_eq!(changed["to"], "10.10.0.10", "{changed}");
}

/// A TCP listener the probes connect to, accepting and closing connections in a thread of its
/// own (so the backlog never fills) until dropped, which closes the port.
struct ProbeTarget {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProbeTarget {
    /// Listens on `address`, retrying until [`DEADLINE`] (a port just closed may still be
    /// held for a moment).
    fn listen(address: SocketAddr) -> ProbeTarget {
        let start = Instant::now();
        let listener = loop {
            match TcpListener::bind(address) {
                Ok(listener) => break listener,
                Err(error) if start.elapsed() > DEADLINE => panic!("bind {address}: {error}"),
                Err(_) => std::thread::sleep(POLL_PAUSE),
            }
        };
        listener
            .set_nonblocking(true)
            .expect("make the listener non-blocking");
        let address = listener.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => drop(stream),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        ProbeTarget {
            address,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ProbeTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn probes_mark_a_stopped_listener_down_and_a_started_one_up() {
    const PROBED: &str = "127.0.0.21";
    const OTHER: &str = "127.0.0.22";
    let target = ProbeTarget::listen(SocketAddr::new(PROBED.parse().expect("literal"), 0));
    let port = target.address.port();
    // Only the primary is probed; the virtual asset stays unknown, so the order shows the
    // primary's state alone: first while up (or unknown), last while down.
    let zone = format!(
        r#"[[zone]]
origin = "internal"

[[asset]]
id = "gw"
kind = "gateway"
addresses = ["127.0.0.23"]

[[asset]]
id = "svc-host"
kind = "primary"
addresses = ["{PROBED}"]
names = ["svc.internal"]
probe = {{ port = {port}, interval_ms = 100, timeout_ms = 100, jitter_ms = 10 }}

[[virtual_asset]]
id = "svc-via-gw"
gateway = "gw"
addresses = ["{OTHER}"]
names = ["svc.internal"]

[[policy]]
id = "svc"
sources = ["*"]
destinations = ["svc-host", "svc-via-gw"]
"#
    );
    let server = Server::start(&[("zone.toml", &zone)], &[]);

    wait_for("the listening primary is probed up", &server, || {
        (state_of(&server, PROBED) == "up").then_some(())
    });
    wait_for("the up primary is answered first", &server, || {
        (server.addresses("svc.internal") == [PROBED, OTHER]).then_some(())
    });
    assert_eq!(
        state_of(&server, OTHER),
        "unknown",
        "only the primary is probed"
    );

    drop(target);
    wait_for("the stopped listener is probed down", &server, || {
        (state_of(&server, PROBED) == "down").then_some(())
    });
    wait_for("the down primary is answered last", &server, || {
        (server.addresses("svc.internal") == [OTHER, PROBED]).then_some(())
    });

    let _target = ProbeTarget::listen(SocketAddr::new(PROBED.parse().expect("literal"), port));
    wait_for("the started listener is probed up again", &server, || {
        (state_of(&server, PROBED) == "up").then_some(())
    });
    wait_for("the primary is answered first again", &server, || {
        (server.addresses("svc.internal") == [PROBED, OTHER]).then_some(())
    });
    let status = status_json(&server);
    let primary = &status["names"][0]["endpoints"][0];
    assert_eq!(primary["address"], PROBED, "{status}");
    assert!(
        primary["rtt_ms"].is_number(),
        "a probe reports its RTT: {status}"
    );
}

/// The addresses in a health state file, in its order.
fn saved_addresses(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read the state file {}: {e}", path.display()));
    let file: Value = serde_json::from_str(&text).expect("the state file is JSON");
    file["endpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("endpoints is a list: {text}"))
        .iter()
        .map(|e| e["address"].as_str().expect("address").to_string())
        .collect()
}

#[test]
fn a_restart_keeps_a_failed_primary_last_and_drops_endpoints_that_are_gone() {
    let state = tempfile::tempdir().expect("create a temporary directory");
    let state_file = state.path().join("health.json");
    let state_arg = state_file.to_str().expect("temporary paths are UTF-8");
    let mut server = Server::start(&[("zone.toml", ZONE)], &["--state-file", state_arg]);
    server.report(false, APP_PRIMARY);
    server.report(false, DB_PRIMARY);
    assert_eq!(
        server.addresses("app.internal"),
        [APP_VIA_BERLIN, APP_PRIMARY]
    );

    let status = server.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert_eq!(
        saved_addresses(&state_file),
        [APP_PRIMARY, DB_PRIMARY],
        "the clean shutdown saved both failures"
    );
    server.restart();
    // The very first answer after the restart already has the failed primaries last.
    assert_eq!(
        server.addresses("app.internal"),
        [APP_VIA_BERLIN, APP_PRIMARY]
    );
    assert_eq!(server.addresses("db.internal"), [DB_VIA_BERLIN, DB_PRIMARY]);
    assert_eq!(state_of(&server, APP_PRIMARY), "down");

    // db-host leaves the zone data while the server is down: its saved entry is dropped, the
    // rest is restored.
    let status = server.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let without_db_host = ZONE
        .replace(
            "[[asset]]\nid = \"db-host\"\nkind = \"primary\"\naddresses = [\"100.64.2.10\"]\nnames = [\"db.internal\"]\n\n",
            "",
        )
        .replace("\"db-host\", ", "");
    assert!(!without_db_host.contains(DB_PRIMARY), "{without_db_host}");
    std::fs::write(server.zones_dir().join("zone.toml"), &without_db_host)
        .expect("rewrite the zone file");
    server.restart();
    assert_eq!(
        server.addresses("app.internal"),
        [APP_VIA_BERLIN, APP_PRIMARY]
    );
    assert_eq!(server.addresses("db.internal"), [DB_VIA_BERLIN]);
    let status = status_json(&server);
    let states = endpoint_states(&status);
    assert_eq!(
        states,
        [
            ("app.internal.", APP_VIA_BERLIN, "unknown"),
            ("app.internal.", APP_PRIMARY, "down"),
            ("db.internal.", DB_VIA_BERLIN, "unknown"),
        ]
        .map(|(n, a, s)| (n.to_string(), a.to_string(), s.to_string())),
        "{status}"
    );
    let log = server.stderr();
    assert!(
        log.contains("restored=1") && log.contains("dropped=1"),
        "the restore says what it kept and dropped:\n{log}"
    );
    let status = server.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert_eq!(
        saved_addresses(&state_file),
        [APP_PRIMARY],
        "the dropped entry is gone from the file too"
    );
}

#[test]
fn a_corrupt_state_file_is_survived_with_a_warning_naming_it() {
    let cases: [(&str, &[u8]); 3] = [
        ("garbage", b"\x00\xffnot a state file at all\n"),
        (
            "cut mid-write",
            b"{\n  \"version\": 1,\n  \"saved_at_unix_ms\": 1700000000000,\n  \"endpoints\": [\n    {\n      \"address\": \"100.64.1.10\",\n",
        ),
        (
            "another version",
            b"{\"version\":99,\"saved_at_unix_ms\":0,\"endpoints\":[]}",
        ),
    ];
    for (case, contents) in cases {
        let state = tempfile::tempdir().expect("create a temporary directory");
        let state_file = state.path().join("health.json");
        std::fs::write(&state_file, contents).expect("write the corrupt state file");
        let state_arg = state_file.to_str().expect("temporary paths are UTF-8");
        let mut server = Server::start(&[("zone.toml", ZONE)], &["--state-file", state_arg]);
        assert_eq!(
            server.addresses("app.internal"),
            [APP_PRIMARY, APP_VIA_BERLIN],
            "{case}: configuration order"
        );
        let status = status_json(&server);
        assert!(
            endpoint_states(&status)
                .iter()
                .all(|(_, _, state)| state == "unknown"),
            "{case}: nothing restored: {status}"
        );
        server.report(false, APP_PRIMARY);
        let status = server.stop();
        assert!(status.success(), "{case}: clean exit on SIGTERM: {status}");
        let log = server.stderr();
        let warning = log
            .lines()
            .find(|line| line.contains(" WARN ") && line.contains(state_arg))
            .unwrap_or_else(|| panic!("{case}: a warning names {state_arg}:\n{log}"));
        assert!(
            warning.contains("not a usable health state file"),
            "{case}: {warning}"
        );
        assert_eq!(
            saved_addresses(&state_file),
            [APP_PRIMARY],
            "{case}: the shutdown replaced the corrupt file with a good one"
        );
    }
}

/// A running `failover-dns watch`, its stdout lines arriving on a channel.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(server: &Server) -> Watch {
        let mut child = server.spawn_cli(&["watch"]);
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        Watch { child, lines }
    }

    /// The next event line within `limit`, parsed; `None` when none came.
    fn next_event(&self, limit: Duration) -> Option<Value> {
        let line = self.lines.recv_timeout(limit).ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?} is JSON: {e}")))
    }

    /// Collects events until `done` holds for the collected list, within [`DEADLINE`].
    fn events_until(&self, server: &Server, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = Instant::now();
        let mut events = Vec::new();
        while !done(&events) {
            let left = DEADLINE.saturating_sub(start.elapsed());
            match self.next_event(left) {
                Some(event) => events.push(event),
                None => panic!(
                    "watch printed {events:?} within {DEADLINE:?}\n--- server stderr ---\n{}",
                    server.stderr()
                ),
            }
        }
        events
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn has_event(events: &[Value], event: &str, key: &str, value: &str) -> bool {
    events
        .iter()
        .any(|e| e["event"] == event && e[key] == value)
}

#[test]
fn watch_prints_the_events_of_a_report_and_a_reload() {
    let mut server = Server::start(&[("zone.toml", ZONE)], &[]);
    let mut watch = Watch::start(&server);
    // `watch` prints events only, so nothing says when it has subscribed. A reload is an event
    // that changes nothing and can be repeated: reload until the watcher shows one.
    wait_for("watch prints a reload_succeeded event", &server, || {
        let output = server.cli(&["reload"]);
        assert!(output.status.success(), "reload: {output:?}");
        let event = watch.next_event(Duration::from_millis(500))?;
        (event["event"] == "reload_succeeded").then_some(())
    });
    // Anything still on its way from the synchronizing reloads; one that is slower still is
    // left out below.
    while watch.next_event(Duration::from_millis(200)).is_some() {}

    server.report(false, APP_PRIMARY);
    let events = watch.events_until(&server, |events| {
        has_event(events, "endpoint_down", "address", APP_PRIMARY)
            && has_event(events, "first_endpoint_changed", "name", "app.internal.")
    });
    let events: Vec<Value> = events
        .into_iter()
        .filter(|e| e["event"] != "reload_succeeded")
        .collect();
    let down = events
        .iter()
        .find(|e| e["event"] == "endpoint_down")
        .expect("found above");
    assert_eq!(down["previous"], "unknown", "{down}");
    assert_eq!(down["consecutive_failures"], 1, "{down}");
    let changed = events
        .iter()
        .find(|e| e["event"] == "first_endpoint_changed")
        .expect("found above");
    assert_eq!(changed["from"], APP_PRIMARY, "{changed}");
    assert_eq!(changed["to"], APP_VIA_BERLIN, "{changed}");
    assert_eq!(events.len(), 2, "nothing else happened: {events:?}");

    // This reload's event, not a late one of the synchronizing reloads: it is newer than the
    // moment before the command.
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis();
    let output = server.cli(&["reload"]);
    assert!(output.status.success(), "reload: {output:?}");
    let is_this_reload = |e: &Value| {
        e["event"] == "reload_succeeded"
            && e["at_unix_ms"]
                .as_u64()
                .is_some_and(|at| u128::from(at) >= before)
    };
    let events = watch.events_until(&server, |events| events.iter().any(is_this_reload));
    let reloaded = events
        .iter()
        .find(|e| is_this_reload(e))
        .expect("found above");
    assert_eq!(reloaded["trigger"], "control", "{reloaded}");
    assert_eq!(reloaded["names"], 2, "{reloaded}");

    // When the server stops, the watcher's stream ends and it exits cleanly.
    let status = server.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let exited = wait_for("watch exits after the server stopped", &server, || {
        watch.child.try_wait().expect("poll the watcher")
    });
    assert!(exited.success(), "watch exit: {exited}");
}

const PITFALL_ZONE: &str = include_str!("../../zones/00-zone.toml");
const PITFALL: &str = include_str!("../../zones/50-policy-pitfall.toml");

#[test]
fn status_name_names_the_policies_that_hide_an_endpoint() {
    let server = Server::start(
        &[("00-zone.toml", PITFALL_ZONE), ("50-pitfall.toml", PITFALL)],
        &[],
    );
    assert_eq!(server.addresses("wiki.internal"), ["100.64.4.10"]);

    let output = server.cli(&["status", "--name", "wiki.internal"]);
    let explained = text(&output.stdout);
    assert!(output.status.success(), "{explained}{output:?}");
    for words in [
        "wiki.internal.",
        "1. 100.64.4.10 via wiki-host (primary asset)",
        "permitted by: engineering-wiki-primary-only",
        "-. 10.10.0.40 via wiki-via-berlin (virtual asset)",
        "hidden: policy \"engineering-wiki-primary-only\" grants this identity other endpoints of the name but not wiki-via-berlin",
        "hidden: policy \"engineering-wiki-failover-draft\" would grant wiki-via-berlin but is disabled",
    ] {
        assert!(explained.contains(words), "{words:?} in:\n{explained}");
    }

    let output = server.cli(&["status", "--name", "WIKI.internal.", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let json: Value = serde_json::from_slice(&output.stdout).expect("status --name --json is JSON");
    assert_eq!(json["name"], "wiki.internal.", "{json}");
    assert_eq!(json["visible"], true, "{json}");
    let endpoints = json["endpoints"].as_array().expect("endpoints is a list");
    let [primary, hidden] = endpoints.as_slice() else {
        panic!("two endpoints: {json}");
    };
    assert_eq!(primary["address"], "100.64.4.10", "{json}");
    assert_eq!(primary["position"], 1, "{json}");
    assert_eq!(
        primary["granted_by"],
        serde_json::json!(["engineering-wiki-primary-only"]),
        "{json}"
    );
    assert_eq!(primary["hidden_because"], serde_json::json!([]), "{json}");
    assert_eq!(hidden["address"], "10.10.0.40", "{json}");
    assert!(hidden["position"].is_null(), "{json}");
    assert_eq!(hidden["granted_by"], serde_json::json!([]), "{json}");
    let reasons: Vec<&str> = hidden["hidden_because"]
        .as_array()
        .expect("hidden_because is a list")
        .iter()
        .map(|r| r.as_str().expect("a reason is a string"))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("engineering-wiki-primary-only"))
            && reasons
                .iter()
                .any(|r| r.contains("engineering-wiki-failover-draft") && r.contains("disabled")),
        "{json}"
    );

    for (name, message) in [
        ("nope.internal", "nope.internal is not a shared name"),
        ("app.example", "app.example is not a shared name"),
        ("bad..name", "is not a DNS name"),
    ] {
        let output = server.cli(&["status", "--name", name]);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{name}: {output:?}");
        assert!(stderr.contains(message), "{name}: {stderr}");
        assert!(output.stdout.is_empty(), "{name}: {output:?}");
    }
}

/// `curl -sS` the metrics page and parse its samples (`name{labels}` → value).
fn scrape(address: SocketAddr) -> BTreeMap<String, f64> {
    let mut command = Command::new("curl");
    command.args([
        "-sS",
        "--fail",
        "--noproxy",
        "*",
        "--max-time",
        "10",
        &format!("http://{address}/metrics"),
    ]);
    let output = run_with_deadline(command, Duration::from_secs(20));
    let page = text(&output.stdout);
    assert!(
        output.status.success(),
        "curl: {}{page}",
        text(&output.stderr)
    );
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample line: {line:?}"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("a number: {line:?}"));
            (series.to_string(), value)
        })
        .collect()
}

fn sample(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series} in {samples:#?}"))
}

#[test]
fn metrics_count_the_queries_and_reports_the_test_sent() {
    let server = Server::start(&[("zone.toml", ZONE)], &["--metrics", "127.0.0.1:0"]);
    let metrics = server
        .metrics_address()
        .expect("the server announced its metrics address");
    let (answers, nxdomains, https) = (5, 3, 2);
    for _ in 0..answers {
        assert_eq!(
            server.addresses("app.internal"),
            [APP_PRIMARY, APP_VIA_BERLIN]
        );
    }
    for _ in 0..nxdomains {
        assert_eq!(server.dig(&["nope.internal", "A"]).status, "NXDOMAIN");
    }
    for _ in 0..https {
        let reply = server.dig(&["app.internal", "HTTPS"]);
        assert_eq!(reply.status, "NOERROR", "{reply}");
        assert!(reply.answers.is_empty(), "{reply}");
    }

    let samples = scrape(metrics);
    let queries: BTreeMap<&str, f64> = samples
        .iter()
        .filter_map(|(series, &value)| {
            Some((series.strip_prefix("failover_dns_queries_total")?, value))
        })
        .collect();
    // The harness's readiness probes asked for the apex SOA (at least once) before the test.
    let readiness = queries
        .get("{type=\"soa\",outcome=\"answer\"}")
        .copied()
        .unwrap_or_else(|| panic!("the readiness SOA queries are counted: {queries:?}"));
    assert!(readiness >= 1.0, "{queries:?}");
    assert_eq!(
        queries,
        BTreeMap::from([
            ("{type=\"a\",outcome=\"answer\"}", f64::from(answers)),
            ("{type=\"a\",outcome=\"nxdomain\"}", f64::from(nxdomains)),
            ("{type=\"https\",outcome=\"nodata\"}", f64::from(https)),
            ("{type=\"soa\",outcome=\"answer\"}", readiness),
        ]),
        "exactly the queries sent"
    );
    let total = f64::from(answers + nxdomains + https) + readiness;
    assert_eq!(
        sample(&samples, "failover_dns_query_duration_seconds_count"),
        total
    );
    assert_eq!(
        sample(
            &samples,
            "failover_dns_query_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        total
    );
    assert!(sample(&samples, "failover_dns_query_duration_seconds_sum") > 0.0);
    let build_info = format!(
        "failover_dns_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&samples, &build_info), 1.0);
    assert_eq!(sample(&samples, "failover_dns_failovers_total"), 0.0);
    assert_eq!(
        sample(&samples, "failover_dns_reports_total{outcome=\"failure\"}"),
        0.0
    );

    server.report(false, APP_PRIMARY);
    let after = scrape(metrics);
    assert_eq!(
        sample(&after, "failover_dns_reports_total{outcome=\"failure\"}"),
        1.0
    );
    assert_eq!(
        sample(&after, "failover_dns_reports_total{outcome=\"success\"}"),
        0.0
    );
    assert_eq!(
        sample(&after, "failover_dns_failovers_total"),
        1.0,
        "the report moved app.internal's first endpoint"
    );
    assert_eq!(
        sample(&after, "failover_dns_query_duration_seconds_count"),
        total,
        "scraping is no query"
    );
}

#[test]
fn metrics_on_a_non_loopback_address_are_refused_before_anything_is_bound() {
    let dir = zone_dir(&[("zone.toml", ZONE)]);
    let control = dir.path().join("control.sock");
    let settings = dir.path().join("settings.toml");
    std::fs::write(&settings, "metrics = \"192.0.2.1:9100\"\n").expect("write settings");
    let zones = dir.path().join("zones");
    let zones = zones.to_str().expect("temporary paths are UTF-8");
    let control_arg = control.to_str().expect("temporary paths are UTF-8");
    let settings_arg = settings.to_str().expect("temporary paths are UTF-8");
    // 192.0.2.1 (TEST-NET-1) is only an argument here: the server must refuse it before it
    // binds anything, so nothing is ever sent to it.
    for (case, metrics_args, message) in [
        (
            "flag",
            ["--metrics", "192.0.2.1:9100"],
            "metrics address 192.0.2.1:9100 is not a loopback address",
        ),
        (
            "settings file",
            ["--config", settings_arg],
            "settings.toml:1:11: metrics address 192.0.2.1:9100 is not a loopback address",
        ),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_failover-dns"));
        command
            .args(["serve", "--zones", zones, "--listen", "127.0.0.1:0"])
            .args(["--control", control_arg, "--resolv-conf", "/dev/null"])
            .args(metrics_args);
        let output = run_with_deadline(command, DEADLINE);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{case}: {output:?}");
        assert!(stderr.contains(message), "{case}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "{case}: nothing was announced: {}",
            text(&output.stdout)
        );
        assert!(!control.exists(), "{case}: no control socket was created");
    }
}

/// `app.internal` whose primary has an IPv4 and an IPv6 address, and a gateway asset without
/// names (a destination with no endpoint).
const DUAL_STACK: &str = r#"[[zone]]
origin = "internal"

[[asset]]
id = "gw-berlin"
kind = "gateway"
addresses = ["100.64.0.2"]

[[asset]]
id = "app-host"
kind = "primary"
addresses = ["100.64.1.10", "fd7a:115c:a1e0::1"]
names = ["app.internal"]

[[virtual_asset]]
id = "app-via-berlin"
gateway = "gw-berlin"
addresses = ["10.10.0.10", "fd7a:115c:a1e0:20::10"]
names = ["app.internal"]

[[policy]]
id = "app"
sources = ["*"]
destinations = ["app-host", "app-via-berlin"]
"#;

/// The answers of `name` for `rtype`, in order.
fn answers(server: &Server, name: &str, rtype: &str) -> Vec<String> {
    let reply = server.dig(&[name, rtype]);
    assert_eq!(reply.status, "NOERROR", "{reply}");
    reply
        .answer_data()
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_report_by_destination_marks_every_address_of_it() {
    let server = Server::start(&[("zone.toml", DUAL_STACK)], &[]);
    assert_eq!(
        answers(&server, "app.internal", "A"),
        ["100.64.1.10", "10.10.0.10"]
    );
    assert_eq!(
        answers(&server, "app.internal", "AAAA"),
        ["fd7a:115c:a1e0::1", "fd7a:115c:a1e0:20::10"]
    );

    let output = server.cli(&["report", "--fail", "--destination", "app-host"]);
    let printed = text(&output.stdout);
    assert!(output.status.success(), "{printed}{output:?}");
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        [
            "100.64.1.10: down (1 consecutive failures); names: app.internal.",
            "fd7a:115c:a1e0::1: down (1 consecutive failures); names: app.internal.",
        ]
    );
    assert_eq!(
        answers(&server, "app.internal", "A"),
        ["10.10.0.10", "100.64.1.10"]
    );
    assert_eq!(
        answers(&server, "app.internal", "AAAA"),
        ["fd7a:115c:a1e0:20::10", "fd7a:115c:a1e0::1"]
    );
    let status = status_json(&server);
    assert_eq!(
        endpoint_states(&status)
            .into_iter()
            .map(|(_, address, state)| (address, state))
            .collect::<Vec<_>>(),
        [
            ("10.10.0.10", "unknown"),
            ("fd7a:115c:a1e0:20::10", "unknown"),
            ("100.64.1.10", "down"),
            ("fd7a:115c:a1e0::1", "down"),
        ]
        .map(|(a, s)| (a.to_string(), s.to_string())),
        "{status}"
    );

    for (destination, message) in [
        ("no-such-id", "no destination has the id \"no-such-id\""),
        ("gw-berlin", "destination \"gw-berlin\" has no endpoint"),
    ] {
        let output = server.cli(&["report", "--fail", "--destination", destination]);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{destination}: {output:?}");
        assert!(stderr.contains(message), "{destination}: {stderr}");
    }
    // The rejected reports changed nothing.
    assert_eq!(status_json(&server), status);
}

#[test]
fn the_default_log_has_no_line_per_query_and_one_per_state_change() {
    let mut server = Server::start_with_default_log_level(&[("zone.toml", ZONE)], &[]);
    // 20 queries of every kind: answers, NODATA, NXDOMAIN, refused, over UDP and TCP.
    for ask in [
        &["app.internal", "A"][..],
        &["app.internal", "AAAA"],
        &["app.internal", "HTTPS"],
        &["nope.internal", "A"],
        &["www.example.test", "A"],
    ] {
        for transport in ["+notcp", "+tcp", "+notcp", "+tcp"] {
            let mut args = ask.to_vec();
            args.push(transport);
            server.dig(&args);
        }
    }
    server.report(false, APP_PRIMARY);
    // Already down: no state change, no line.
    server.report(false, APP_PRIMARY);
    server.report(true, APP_PRIMARY);
    let status = server.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status}");

    let log = server.stderr();
    let lines: Vec<&str> = log.lines().collect();
    let serving = lines
        .iter()
        .position(|line| line.contains(": serving "))
        .unwrap_or_else(|| panic!("a `serving` line:\n{log}"));
    let stopping = lines
        .iter()
        .position(|line| line.contains("SIGTERM received"))
        .unwrap_or_else(|| panic!("a `SIGTERM received` line:\n{log}"));
    // While serving, the queries logged nothing; the reports one line per state change and
    // one per change of the first endpoint.
    let while_serving: Vec<&str> = lines[serving + 1..stopping]
        .iter()
        .map(|line| {
            if line.contains("endpoint state changed") {
                "endpoint state changed"
            } else if line.contains("first endpoint changed") {
                "first endpoint changed"
            } else {
                line
            }
        })
        .collect();
    assert_eq!(
        while_serving,
        [
            "endpoint state changed",
            "first endpoint changed",
            "endpoint state changed",
            "first endpoint changed",
        ],
        "the log while serving:\n{log}"
    );
    let changes: Vec<&&str> = lines
        .iter()
        .filter(|line| line.contains("endpoint state changed"))
        .collect();
    assert!(
        changes[0].contains("address=100.64.1.10") && changes[0].contains("state=down"),
        "{log}"
    );
    assert!(
        changes[1].contains("previous=down") && changes[1].contains("state=up"),
        "{log}"
    );
}

#[test]
fn every_log_line_is_json_with_log_format_json() {
    let mut server = Server::start(&[("zone.toml", ZONE)], &["--log-format", "json"]);
    server.addresses("app.internal");
    server.dig(&["nope.internal", "A"]);
    server.report(false, APP_PRIMARY);
    // A rejected report and a reload that fails log a warning and errors.
    let output = server.cli(&["report", "--fail", "192.0.2.77"]);
    assert!(!output.status.success(), "{output:?}");
    std::fs::write(server.zones_dir().join("broken.toml"), "[[asset]\n").expect("write");
    let output = server.cli(&["reload"]);
    assert!(!output.status.success(), "{output:?}");
    let status = server.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status}");

    let log = server.stderr();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
        })
        .collect();
    let message = |line: &Value| line["fields"]["message"].as_str().unwrap_or("").to_string();
    let messages: Vec<String> = lines.iter().map(message).collect();
    for line in &lines {
        assert!(line["level"].is_string(), "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(!message(line).is_empty(), "{line}");
    }
    // Every kind of line is there, each as JSON: per query (debug here), state changes,
    // reload errors, shutdown.
    for expected in [
        "query",
        "endpoint state changed",
        "first endpoint changed",
        "reload failed; still serving the last good configuration",
        "stopped",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "a {expected:?} line in {messages:#?}"
        );
    }
    let change = lines
        .iter()
        .find(|line| message(line) == "endpoint state changed")
        .expect("found above");
    assert_eq!(change["fields"]["address"], APP_PRIMARY, "{change}");
    assert_eq!(change["fields"]["state"], "down", "{change}");
    assert_eq!(change["level"], "INFO", "{change}");
}
