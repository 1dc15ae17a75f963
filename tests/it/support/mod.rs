//! The harness: [`Server`] runs the real `failover-dns` binary (`server`, started through
//! [`Server::builder`]); `dig` talks to it (`dig`: the runner and a strict parser of its output);
//! `wire` sends raw DNS over UDP and TCP, for what `dig` will not send; [`expect_answers`] checks
//! a table of exchanges (`expect`); `zones` holds the zone fixtures; `upstream` runs real upstream
//! resolvers; `netns` makes network namespaces; `watcher` runs `failover-dns watch`. Here: the
//! small helpers every kind of test uses.

mod dig;
mod expect;
pub mod netns;
mod server;
pub mod upstream;
pub mod watcher;
pub mod wire;
pub mod zones;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use dig::{Dig, dig_at};
pub use expect::expect_answers;
pub use server::{
    BINARY, Server, ServerBuilder, endpoint_states, failover_dns, state_of, status_json,
};
pub use zones::zone_dir;

/// How long [`wait_for`] polls: how long a change may take before a test fails, generous for a
/// loaded 2-core machine.
pub const WAIT_DEADLINE: Duration = Duration::from_secs(10);
/// The pause between two polls of [`wait_for`]: each poll asks the server (a command, a
/// query), so the pause only keeps the loop from spinning.
pub const WAIT_PAUSE: Duration = Duration::from_millis(20);

/// Polls `probe` until it returns `Some` and returns the value; panics with `what` and the
/// server's log when [`WAIT_DEADLINE`] passes.
/// Whether a test that needs root may run: true as root; otherwise prints `skipped: needs root
/// (WHY)` and returns false, unless `FAILOVER_DNS_REQUIRE_ROOT_TESTS` is set (CI sets it), where
/// a skipped root test is a failure: a green run then means every one of them ran.
pub fn needs_root(why: &str) -> bool {
    if crate::support::netns::is_root() {
        return true;
    }
    assert!(
        std::env::var_os("FAILOVER_DNS_REQUIRE_ROOT_TESTS").is_none(),
        "needs root ({why}), and this run requires every root test to run"
    );
    println!("skipped: needs root ({why})");
    false
}

pub fn wait_for<T>(what: &str, server: &Server, probe: impl FnMut() -> Option<T>) -> T {
    wait_for_within(what, server, WAIT_DEADLINE, probe)
}

/// Like [`wait_for`], with a deadline of `deadline` instead of [`WAIT_DEADLINE`], for changes
/// that take longer by design (a re-check's back-off).
pub fn wait_for_within<T>(
    what: &str,
    server: &Server,
    deadline: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if start.elapsed() > deadline {
            panic!(
                "{what}: not within {deadline:?}\n--- server stderr ---\n{}",
                server.stderr()
            );
        }
        std::thread::sleep(WAIT_PAUSE);
    }
}

/// Bytes a command printed, as text (lossy).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command` to completion, killing it (by its pid) when it takes longer than `limit`.
pub fn run_with_deadline(mut command: Command, limit: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let pid = child.id().to_string();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(limit) {
        Ok(output) => output.expect("wait for the command"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("{command:?} did not finish within {limit:?}");
        }
    }
}

/// The path of the example `name`, built now if it is missing or stale: `cargo test` builds
/// examples, but `cargo test --test it` does not, and an old binary would test old code. Cargo
/// releases its build lock before running tests, so this is a no-op when the build is fresh.
/// `--frozen`: the build that made this test binary fetched everything, and a test never
/// touches the network or `Cargo.lock`.
pub fn example_binary(name: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--frozen",
            "--example",
            name,
            "--message-format=json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let output = run_with_deadline(command, Duration::from_secs(600));
    assert!(
        output.status.success(),
        "cargo build --example {name}: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| message["target"]["name"] == name)
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo named no executable for the example {name}"))
}
