//! The benchmark helpers still measure what they claim: `examples/steady_latency.rs`, the
//! busy-polling latency probe and UDP echo that `scripts/bench-peers.sh` runs, answers every
//! query against the echo and against the real server, and refuses any address off loopback.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::support::zones::APP_THREE_ENDPOINTS_ZONE;
use crate::support::{Server, example_binary, run_with_deadline, text};

/// The probe's query file: a shared name (A, and AAAA: no data) and a name that does not exist.
fn query_file() -> TempDir {
    let dir = TempDir::new().expect("temporary directory");
    std::fs::write(
        dir.path().join("queries"),
        "app.internal A\nnx.internal A\napp.internal AAAA\n",
    )
    .expect("write the query file");
    dir
}

/// The echo, killed when dropped.
struct Echo {
    child: Child,
    address: SocketAddr,
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_echo(example: &std::path::Path) -> Echo {
    let mut child = Command::new(example)
        .args(["echo", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the echo");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the echo's first line");
    let address = line
        .trim()
        .strip_prefix("echo on ")
        .and_then(|address| address.parse().ok())
        .unwrap_or_else(|| panic!("the echo names its address: {line:?}"));
    Echo { child, address }
}

/// Runs the probe at 500 queries/s for 1 s against `server`: (answered, lost).
fn probe(example: &std::path::Path, server: SocketAddr, queries: &TempDir) -> (u64, u64) {
    let mut command = Command::new(example);
    command
        .arg("probe")
        .arg(server.to_string())
        .arg(queries.path().join("queries"))
        .args(["500", "1"]);
    let output = run_with_deadline(command, Duration::from_secs(30));
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "probe of {server}: {}{stdout}",
        text(&output.stderr)
    );
    // p50 p90 p99 p999 answered lost
    let fields: Vec<f64> = stdout
        .split_whitespace()
        .map(|field| field.parse().expect("numbers"))
        .collect();
    assert_eq!(fields.len(), 6, "{stdout}");
    assert!(
        fields[0] > 0.0 && fields[0] <= fields[2] && fields[2] <= fields[3],
        "percentiles in order: {stdout}"
    );
    (fields[4] as u64, fields[5] as u64)
}

#[test]
fn the_latency_probe_gets_every_answer_from_the_echo_and_from_the_server() {
    let example = example_binary("steady_latency");
    let queries = query_file();
    let echo = start_echo(&example);
    assert_eq!(probe(&example, echo.address, &queries), (500, 0), "echo");
    let server = Server::start(&[("zone.toml", APP_THREE_ENDPOINTS_ZONE)], &[]);
    let address = server
        .listen_addresses()
        .first()
        .copied()
        .expect("a listen address");
    assert_eq!(probe(&example, address, &queries), (500, 0), "failover-dns");
}

#[test]
fn the_latency_probe_refuses_addresses_off_loopback() {
    let example = example_binary("steady_latency");
    let queries = query_file();
    // Refused before any socket is opened: nothing is sent.
    for address in ["10.0.0.1:53", "192.0.2.1:53", "[2001:db8::1]:53"] {
        let mut command = Command::new(&example);
        command
            .args(["probe", address])
            .arg(queries.path().join("queries"))
            .args(["500", "1"]);
        let output = run_with_deadline(command, Duration::from_secs(30));
        assert!(!output.status.success(), "{address} was accepted");
        assert!(
            text(&output.stderr).contains("is not a loopback address"),
            "{address}: {}",
            text(&output.stderr)
        );
    }
}
