//! Measures "a report is in the next answer" through the real server, out of process: starts
//! `failover-dns serve` (one worker) on 127.0.0.1 with 1,000 generated shared names, connects to
//! its control socket as an agent does, and repeatedly reports a name's primary endpoint down
//! or up, then asks for the name over UDP. Prints, as p50/p99/max over the reports:
//!
//! - the control round trip: the report line written → the `reported` reply read;
//! - report → answer: the report line written → the UDP answer read that shows the new order
//!   (checked: the primary is last after a failure, first after a success).
//!
//! The query bytes repeat, so the answer before each report comes from the fast path's memo;
//! the one after it must not. Run with `cargo bench --bench control`; under `cargo test` it
//! does 20 reports.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;

const NAMES: usize = 1_000;

/// The server process; killed when dropped.
struct Served {
    child: Child,
    dns: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server on `dir` and waits for its `ready:` line.
fn serve(dir: &std::path::Path) -> Served {
    let empty = dir.join("empty-resolv.conf");
    std::fs::write(&empty, "").expect("write an empty resolv.conf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_failover-dns"))
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "1"])
        .arg("--zones")
        .arg(dir.join("zones"))
        .arg("--control")
        .arg(dir.join("control.sock"))
        .arg("--resolv-conf")
        .arg(&empty)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start failover-dns");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut dns = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the server's stdout");
        if let Some(address) = line.strip_prefix("listening on udp+tcp ") {
            dns = address.parse().ok();
        }
        if line.starts_with("ready:") {
            break;
        }
    }
    Served {
        child,
        dns: dns.expect("the server prints its address before ready"),
    }
}

fn main() {
    let reports = if common::measuring() { 2_000 } else { 20 };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).expect("create the zones directory");
    for (file, text) in common::zone_files(NAMES) {
        std::fs::write(zones.join(file), text).expect("write a zone file");
    }
    let served = serve(dir.path());

    let control = UnixStream::connect(dir.path().join("control.sock")).expect("connect control");
    let mut replies = BufReader::new(control.try_clone().expect("clone the control stream"));
    let mut control = control;
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
    udp.connect(served.dns).expect("connect to the server");
    udp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a timeout");

    let name = common::shared_name(0);
    let primary = common::primary_v4(0);
    let mut buffer = vec![0u8; 4096];
    let mut ask = |id: u16| -> Vec<std::net::IpAddr> {
        udp.send(&common::query(id, &name, RecordType::A, false))
            .expect("send a query");
        let length = udp.recv(&mut buffer).expect("an answer within 5 s");
        common::answer_addresses(&buffer[..length])
    };
    let (mut round_trips, mut to_answer) = (Vec::new(), Vec::new());
    let mut line = String::new();
    for n in 0..reports {
        let fail = n % 2 == 0;
        // The same query twice before the report: the second comes from the memo.
        ask(1);
        ask(1);
        let outcome = if fail { "failure" } else { "success" };
        let request =
            format!("{{\"op\":\"report\",\"address\":\"{primary}\",\"outcome\":\"{outcome}\"}}\n");
        let started = Instant::now();
        control
            .write_all(request.as_bytes())
            .expect("write the report");
        line.clear();
        replies.read_line(&mut line).expect("read the reply");
        let acknowledged = started.elapsed();
        assert!(line.contains("\"reported\""), "report refused: {line}");
        let order = ask(1);
        let answered = started.elapsed();
        let expected_at = if fail { order.len() - 1 } else { 0 };
        assert_eq!(
            order.get(expected_at),
            Some(&primary),
            "report {n} ({outcome}) is in the next answer: {order:?}"
        );
        round_trips.push(acknowledged);
        to_answer.push(answered);
    }
    drop(served);

    for (label, mut samples) in [
        (
            "control round trip (report written → reply read)",
            round_trips,
        ),
        (
            "report → the next answer showing it (through the control socket, then UDP)",
            to_answer,
        ),
    ] {
        samples.sort_unstable();
        let micros = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
        println!(
            "{label}: {} reports, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            samples.len(),
            micros(common::quantile(&samples, 0.50)),
            micros(common::quantile(&samples, 0.99)),
            micros(samples.last().copied()),
        );
    }
}
