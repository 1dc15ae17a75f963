//! What happened, for whoever watches: endpoint state changes (with the source that reported
//! them), a name's first endpoint changing (a failover), drains, and reload outcomes. A broadcast channel; a slow watcher misses events rather
//! than slowing the server down.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// How many events a watcher may fall behind before it misses some.
const EVENT_BUFFER: usize = 1024;

/// One event, as streamed by the control socket's `watch` request (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An endpoint's state changed to up (a success newer than any failure).
    EndpointUp {
        /// The endpoint address.
        address: IpAddr,
        /// The state before: `unknown` or `down`.
        previous: crate::health::State,
        /// Who reported the success: `agent`, `observer`, `probe` or `recheck`.
        source: crate::health::ReportSource,
        /// When, milliseconds since the Unix epoch.
        at_unix_ms: u64,
    },
    /// An endpoint's state changed to down (a failure newer than any success).
    EndpointDown {
        /// The endpoint address.
        address: IpAddr,
        /// The state before: `unknown` or `up`.
        previous: crate::health::State,
        /// Failures since the last success.
        consecutive_failures: u32,
        /// Who reported the failure: `agent`, `observer`, `probe` or `recheck`.
        source: crate::health::ReportSource,
        /// When, milliseconds since the Unix epoch.
        at_unix_ms: u64,
    },
    /// The first address of a name's answer changed: clients fail over to `to`.
    FirstEndpointChanged {
        /// The shared name.
        name: String,
        /// The first address before.
        from: Option<IpAddr>,
        /// The first address now.
        to: Option<IpAddr>,
        /// When, milliseconds since the Unix epoch.
        at_unix_ms: u64,
    },
    /// A destination is draining: its endpoints go after all others, still answered.
    DestinationDrained {
        /// The destination's id.
        destination: String,
        /// When, milliseconds since the Unix epoch.
        at_unix_ms: u64,
    },
    /// A destination is no longer draining.
    DestinationUndrained {
        /// The destination's id.
        destination: String,
        /// When, milliseconds since the Unix epoch.
        at_unix_ms: u64,
    },
    /// A reload succeeded.
    ReloadSucceeded {
        /// Shared names now served.
        names: usize,
        /// Zones now served.
        zones: usize,
        /// What triggered it.
        trigger: String,
        /// When, milliseconds since the Unix epoch.
        at_unix_ms: u64,
    },
    /// A reload failed; the last good configuration keeps serving.
    ReloadFailed {
        /// The errors, one `FILE:LINE:COLUMN: message` per line.
        error: String,
        /// What triggered it.
        trigger: String,
        /// When, milliseconds since the Unix epoch.
        at_unix_ms: u64,
    },
}

/// The event bus. Cheap to clone; publishing with nobody watching costs next to nothing.
#[derive(Debug, Clone)]
pub struct Events {
    sender: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    /// A bus with no watchers yet.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(EVENT_BUFFER);
        Events { sender }
    }

    /// Sends `event` to every current watcher.
    pub fn publish(&self, event: Event) {
        // An error only means nobody is watching.
        let _ = self.sender.send(event);
    }

    /// A new watcher: receives every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}
