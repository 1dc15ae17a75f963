//! `failover-dns watch` run by a test: its event lines arrive on a channel, and
//! [`Watch::subscribed`] waits until it really receives events (it prints nothing of its own
//! when it connects).

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Server, WAIT_DEADLINE, wait_for};

/// A running `failover-dns watch`, its stdout lines arriving on a channel.
pub struct Watch {
    /// The `watch` process.
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    /// Starts `failover-dns watch` against `server`.
    pub fn start(server: &Server) -> Watch {
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
    pub fn next_event(&self, limit: Duration) -> Option<Value> {
        let line = self.lines.recv_timeout(limit).ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?} is JSON: {e}")))
    }

    /// Returns once the watcher receives events: nothing says when it has subscribed, so the
    /// server reloads (an event that changes nothing and can be repeated) until the watcher
    /// shows one, and whatever else those reloads caused is drained.
    pub fn subscribed(&self, server: &Server) {
        wait_for("watch prints a reload_succeeded event", server, || {
            let output = server.cli(&["reload"]);
            assert!(output.status.success(), "reload: {output:?}");
            let event = self.next_event(Duration::from_millis(500))?;
            (event["event"] == "reload_succeeded").then_some(())
        });
        while self.next_event(Duration::from_millis(200)).is_some() {}
    }

    /// Collects events until `done` holds for the collected list, within [`WAIT_DEADLINE`].
    pub fn events_until(&self, server: &Server, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = Instant::now();
        let mut events = Vec::new();
        while !done(&events) {
            let left = WAIT_DEADLINE.saturating_sub(start.elapsed());
            match self.next_event(left) {
                Some(event) => events.push(event),
                None => panic!(
                    "watch printed {events:?} within {WAIT_DEADLINE:?}\n--- server stderr ---\n{}",
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
