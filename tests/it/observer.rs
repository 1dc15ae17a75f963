//! Failover without an agent, in a network namespace of the test's own (root): a shared name on
//! a primary (127.0.0.2) and a virtual asset (127.0.0.3), an HTTP server on each, the primary's
//! port made a dead path by an nftables `drop` rule, and real applications (curl, Python's
//! urllib) resolving through the C library, whose resolv.conf names failover-dns on
//! 127.0.0.1:53. Nothing reports but the connection observer (and, with `--fail-fast`, the
//! server aborts the connect left waiting).

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::netns::Netns;
use crate::support::watcher::Watch;
use crate::support::{Server, status_json, wait_for, wait_for_within};

pub(crate) const PRIMARY: &str = "127.0.0.2";
pub(crate) const VIRTUAL_ASSET: &str = "127.0.0.3";
/// Blackholed like the primary, but no endpoint's address: fail fast must never touch it.
const NOT_AN_ENDPOINT: &str = "127.0.0.4";
pub(crate) const PORT: u16 = 8080;
pub(crate) const URL: &str = "http://app.internal:8080/";

/// `app.internal` on the primary asset and a virtual asset, both granted to everyone. Not the
/// shared network (support::zones): the endpoints must be addresses the namespace can serve.
pub(crate) const ZONE: &str = r#"[[zone]]
origin = "internal"

[[asset]]
id = "gw"
kind = "gateway"
addresses = ["127.0.0.9"]

[[asset]]
id = "app-host"
kind = "primary"
addresses = ["127.0.0.2"]
names = ["app.internal"]

[[virtual_asset]]
id = "app-via-gw"
gateway = "gw"
addresses = ["127.0.0.3"]
names = ["app.internal"]

[[policy]]
id = "app"
sources = ["*"]
destinations = ["app-host", "app-via-gw"]
"#;

/// A child process killed (and reaped) when dropped.
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The namespace with an HTTP/1.0 server on both endpoints (answering before any rule is
/// added).
fn network(test: &str) -> Option<(Netns, Vec<Running>)> {
    network_speaking(test, "HTTP/1.0")
}

/// The namespace with an HTTP server speaking `protocol` (HTTP/1.1: keep-alive) on both
/// endpoints.
pub(crate) fn network_speaking(test: &str, protocol: &str) -> Option<(Netns, Vec<Running>)> {
    let netns = Netns::create(test)?;
    let mut http = Vec::new();
    for address in [PRIMARY, VIRTUAL_ASSET] {
        let port = PORT.to_string();
        http.push(Running(netns.spawn(&[
            "python3",
            "-m",
            "http.server",
            "--protocol",
            protocol,
            "--bind",
            address,
            &port,
            "--directory",
            "/etc/netns",
        ])));
    }
    for address in [PRIMARY, VIRTUAL_ASSET] {
        let url = format!("http://{address}:{PORT}/");
        let start = Instant::now();
        while !netns
            .run(&["curl", "-s", "-o", "/dev/null", "--max-time", "2", &url])
            .status
            .success()
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the HTTP server on {address} never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Some((netns, http))
}

pub(crate) fn server_in(netns: &Netns, extra_args: &[&str]) -> Server {
    let mut args = vec!["--listen", "127.0.0.1:53"];
    args.extend_from_slice(extra_args);
    Server::builder(&[("zone.toml", ZONE)])
        .args(&args)
        .in_netns(netns.name())
        .start()
}

/// `curl URL` through the C library: (seconds it took, the address it reached).
pub(crate) fn curl(netns: &Netns) -> (f64, String) {
    let output = netns.run_ok(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "--max-time",
        "30",
        "-w",
        "%{time_total} %{remote_ip}",
        URL,
    ]);
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (seconds, address) = text
        .split_once(' ')
        .unwrap_or_else(|| panic!("curl printed {text:?}"));
    (
        seconds
            .parse()
            .unwrap_or_else(|_| panic!("curl printed {text:?}")),
        address.to_string(),
    )
}

/// Python's urllib through the C library: (seconds it took, the address it reached).
pub(crate) fn python(netns: &Netns) -> (f64, String) {
    const SCRIPT: &str = "import http.client, time\n\
        start = time.monotonic()\n\
        connection = http.client.HTTPConnection('app.internal', 8080, timeout=30)\n\
        connection.request('GET', '/')\n\
        peer = connection.sock.getpeername()[0]\n\
        connection.getresponse().read()\n\
        print(time.monotonic() - start, peer)\n";
    let output = netns.run_ok(&["python3", "-c", SCRIPT]);
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let (seconds, address) = text
        .split_once(' ')
        .unwrap_or_else(|| panic!("python printed {text:?}"));
    (
        seconds
            .parse()
            .unwrap_or_else(|_| panic!("python printed {text:?}")),
        address.to_string(),
    )
}

/// The status entry of `address` (in the first name that has it).
pub(crate) fn endpoint(status: &Value, address: &str) -> Value {
    status["names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|name| name["endpoints"].as_array())
        .flatten()
        .find(|e| e["address"] == address)
        .cloned()
        .unwrap_or_else(|| panic!("{address} in {status}"))
}

#[test]
fn the_observer_fails_over_without_an_agent_and_a_recheck_brings_the_primary_back() {
    let Some((netns, _http)) = network("the observer test") else {
        return;
    };
    let server = server_in(&netns, &[]);
    let watch = Watch::start(&server);
    watch.subscribed(&server);

    netns.blackhole(PRIMARY, PORT);
    // The first request goes to the primary, the first address, and hangs there.
    let first = Running(
        netns
            .command(&["curl", "-s", "-o", "/dev/null", "--max-time", "30", URL])
            .stdout(Stdio::null())
            .spawn()
            .expect("start curl"),
    );
    let down = wait_for("the observer reports the primary down", &server, || {
        let status = status_json(&server);
        let primary = endpoint(&status, PRIMARY);
        (primary["state"] == "down").then_some(primary)
    });
    assert_eq!(down["source"], "observer", "{down}");

    for (client, (seconds, address)) in [("curl", curl(&netns)), ("python", python(&netns))] {
        assert_eq!(address, VIRTUAL_ASSET, "{client} reached the virtual asset");
        assert!(
            seconds < 1.0,
            "{client} took {seconds} s; the next request after a failure should not wait on the dead path"
        );
    }
    let events = watch.events_until(&server, |events| {
        events.iter().any(|e| e["event"] == "endpoint_down")
    });
    drop(watch);
    let event = events
        .iter()
        .find(|e| e["event"] == "endpoint_down")
        .expect("found above");
    assert_eq!(event["address"], PRIMARY, "{event}");
    assert_eq!(event["source"], "observer", "{event}");

    // Gone before the heal: its SYN, retransmitted once a second, would otherwise be answered
    // and bring the primary back as traffic before the re-check does.
    drop(first);
    netns.heal();
    let up = wait_for_within(
        "the re-check finds the primary answering again",
        &server,
        Duration::from_secs(45),
        || {
            let status = status_json(&server);
            let primary = endpoint(&status, PRIMARY);
            (primary["state"] == "up").then_some(primary)
        },
    );
    assert_eq!(up["source"], "recheck", "{up}");
    assert!(
        server
            .stderr()
            .contains("re-check: the endpoint answers again")
    );
    let log = server.stderr();
    assert!(!log.contains("cannot read the kernel's sockets"), "{log}");
}

#[test]
fn fail_fast_aborts_the_connect_left_waiting_and_nothing_else() {
    let Some((netns, _http)) = network("the fail-fast test") else {
        return;
    };
    let server = server_in(&netns, &["--fail-fast"]);
    netns.blackhole(PRIMARY, PORT);
    // A connect to an address that is no endpoint's, as dead as the primary: never touched.
    netns.run_ok(&[
        "nft",
        "add",
        "rule",
        "inet",
        "failover_test",
        "input",
        "ip",
        "daddr",
        NOT_AN_ENDPOINT,
        "drop",
    ]);
    let bystander_url = format!("http://{NOT_AN_ENDPOINT}:{PORT}/");
    let mut bystander = Running(netns.spawn(&["curl", "-s", "--max-time", "60", &bystander_url]));

    // The first request, on the dead primary: without fail fast it waits for curl's connect
    // timeout; with it, the observer sees the unanswered SYN, the primary goes down, and the
    // waiting connect is aborted, so curl moves on to the virtual asset.
    let (seconds, address) = curl(&netns);
    assert_eq!(address, VIRTUAL_ASSET);
    assert!(
        seconds < 5.0,
        "the first request took {seconds} s: the waiting connect was not aborted"
    );
    wait_for("fail fast logs what it aborted", &server, || {
        server
            .stderr()
            .contains("fail fast: aborted a connect waiting on a down endpoint")
            .then_some(())
    });
    assert!(
        bystander.0.try_wait().expect("poll curl").is_none(),
        "the connect to an address that is no endpoint's is still waiting"
    );
    assert_eq!(
        netns.syn_sent_to(NOT_AN_ENDPOINT).len(),
        1,
        "its socket is untouched"
    );
}
