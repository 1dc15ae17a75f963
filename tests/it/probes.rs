//! Active probes: a probed primary follows a listener the test stops and starts (up, down, up
//! again, with its RTT), and the answer order follows it.
//!
//! Waiting is observed, never slept for: [`wait_for`] polls (each poll runs `dig` or the CLI, with
//! a short pause between polls) until the condition holds or a generous deadline passes.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Server, WAIT_DEADLINE, WAIT_PAUSE, state_of, status_json, wait_for};

/// A TCP listener the probes connect to, accepting and closing connections in a thread of its
/// own (so the backlog never fills) until dropped, which closes the port.
struct ProbeTarget {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProbeTarget {
    /// Listens on `address`, retrying until [`WAIT_DEADLINE`] (a port just closed may still be
    /// held for a moment).
    fn listen(address: SocketAddr) -> ProbeTarget {
        let start = Instant::now();
        let listener = loop {
            match TcpListener::bind(address) {
                Ok(listener) => break listener,
                Err(error) if start.elapsed() > WAIT_DEADLINE => panic!("bind {address}: {error}"),
                Err(_) => std::thread::sleep(WAIT_PAUSE),
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

/// `svc.internal` on a primary asset and a virtual asset (each an address and a `probe = …`
/// line, or "" for none) on a gateway at `gateway`, both granted to everyone. Not the shared
/// network (support::zones): probed endpoints must be real listeners on loopback.
fn svc_zone(primary: (&str, &str), virtual_asset: (&str, &str), gateway: &str) -> String {
    format!(
        r#"[[zone]]
origin = "internal"

[[asset]]
id = "gw"
kind = "gateway"
addresses = ["{gateway}"]

[[asset]]
id = "svc-host"
kind = "primary"
addresses = ["{}"]
names = ["svc.internal"]
{}

[[virtual_asset]]
id = "svc-via-gw"
gateway = "gw"
addresses = ["{}"]
names = ["svc.internal"]
{}

[[policy]]
id = "svc"
sources = ["*"]
destinations = ["svc-host", "svc-via-gw"]
"#,
        primary.0, primary.1, virtual_asset.0, virtual_asset.1
    )
}

#[test]
fn probes_mark_a_stopped_listener_down_and_a_started_one_up() {
    const PROBED: &str = "127.0.0.21";
    const OTHER: &str = "127.0.0.22";
    let target = ProbeTarget::listen(SocketAddr::new(PROBED.parse().expect("literal"), 0));
    let port = target.address.port();
    // Only the primary is probed; the virtual asset stays unknown, so the order shows the
    // primary's state alone: first while up (or unknown), last while down.
    let probe =
        format!("probe = {{ port = {port}, interval_ms = 100, timeout_ms = 100, jitter_ms = 10 }}");
    let zone = svc_zone((PROBED, &probe), (OTHER, ""), "127.0.0.23");
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

#[test]
fn probes_on_both_endpoints_never_reorder_two_healthy_paths() {
    const PRIMARY: &str = "127.0.0.24";
    const VIRTUAL_ASSET: &str = "127.0.0.25";
    let primary = ProbeTarget::listen(SocketAddr::new(PRIMARY.parse().expect("literal"), 0));
    let virtual_asset =
        ProbeTarget::listen(SocketAddr::new(VIRTUAL_ASSET.parse().expect("literal"), 0));
    // Both endpoints probed often, with jitter, so their successes interleave: a probe says a
    // path is alive, not that it is used, so none of them may reorder the answer.
    let probe_of = |target: &ProbeTarget| {
        format!(
            "probe = {{ port = {}, interval_ms = 100, timeout_ms = 100, jitter_ms = 40 }}",
            target.address.port()
        )
    };
    let zone = svc_zone(
        (PRIMARY, &probe_of(&primary)),
        (VIRTUAL_ASSET, &probe_of(&virtual_asset)),
        "127.0.0.26",
    );
    let server = Server::start(&[("zone.toml", &zone)], &[]);
    wait_for("both endpoints are probed up", &server, || {
        (state_of(&server, PRIMARY) == "up" && state_of(&server, VIRTUAL_ASSET) == "up")
            .then_some(())
    });
    let start = Instant::now();
    let mut answers = 0;
    while start.elapsed() < Duration::from_secs(10) {
        assert_eq!(
            server.addresses("svc.internal"),
            [PRIMARY, VIRTUAL_ASSET],
            "answer {answers}: the order changed with no traffic\n{}",
            server.stderr()
        );
        answers += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = status_json(&server);
    let sources: Vec<&Value> = status["names"][0]["endpoints"]
        .as_array()
        .map(|endpoints| endpoints.iter().map(|e| &e["source"]).collect())
        .unwrap_or_default();
    assert_eq!(sources, ["probe", "probe"], "{status}");
    assert!(answers > 20, "only {answers} answers in 10 s");
}
