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

pub mod cli;
pub mod config;
pub mod control;
pub mod dns;
pub mod embed;
pub mod feed;
pub mod health;
pub mod metrics;
pub mod model;
pub mod net;
pub mod ops;
pub mod reload;
#[cfg(test)]
mod testing;
