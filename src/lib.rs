//! failover-dns: the small DNS server a zero-trust agent embeds. For a shared name it answers with
//! every endpoint this client's policies permit, ordered by a live health table the agent feeds;
//! every other name is not ours.
//!
//! ```text
//!   zones/*.toml ──config──▶ ZoneData ──snapshot (+ identity → policy grants)──┐
//!                                                                              ▼
//!   UDP/TCP socket ─server─▶ handler: parse → zones.lookup → policy filter → health order
//!                                          → answer (records, NXDOMAIN/NODATA + SOA, TC) ─▶ socket
//!                                                                ▲
//!   agent ─control socket (NDJSON)─▶ health table ───────────────┘
//! ```
//!
//! `policy`, `answer` and `zones` are pure; `server` and `control` are the only socket I/O.
//! `reload` rebuilds the snapshot whole (on a file change, `SIGHUP` or a control request) and
//! swaps it in, or keeps the old one when the new configuration is invalid.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod accept;
pub mod answer;
pub mod cache;
pub mod cli;
pub mod config;
pub mod control;
pub mod embed;
pub mod events;
pub mod explain;
pub mod fastpath;
pub mod feed;
pub mod forward;
#[doc(hidden)]
pub mod fuzzing;
pub mod handler;
pub mod health;
pub mod limits;
pub mod load_thread;
pub mod location;
pub mod metrics;
pub mod persist;
pub mod policy;
pub mod probe;
pub mod readiness;
pub mod reload;
pub mod server;
pub mod settings;
pub mod snapshot;
pub mod status;
pub mod tcp_slots;
#[cfg(target_os = "linux")]
pub mod udp_batch;
#[cfg(target_os = "linux")]
pub mod udp_loop;
pub mod zones;
