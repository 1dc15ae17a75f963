//! Integration tests: each test starts the real `failover-dns` binary on a free loopback port with
//! a zone directory of its own, then talks to it the way users and the agent do — `dig` for DNS,
//! the control socket and the `report`/`status`/`check` subcommands for everything else.
//!
//! One test binary (`autotests = false`), one harness in [`support`] (`server`: the `Server`
//! harness and its builder; `dig`: `dig` and its parser; `wire`: raw DNS over UDP and TCP;
//! `expect`: [`support::expect_answers`], table-driven DNS checks; `zones`: the zone fixtures;
//! `upstream`: real upstream resolvers), and one module per area:
//!
//! - `answers`: what a shared name resolves to, record types, case, empty non-terminals;
//! - `failover`: how reports reorder the answer;
//! - `fast_path`: the answer memo and batched UDP over the real socket;
//! - `bench_tools`: the latency probe and UDP echo that `scripts/bench-peers.sh` uses;
//! - `policy`: what policies and the identity hide or show, in forward and reverse lookups;
//! - `truncation`: UDP size limits, TC and the TCP retry;
//! - `not_owned`: names outside the owned zones when there is no upstream;
//! - `forwarding`: forwarding to real upstreams (`unbound`), the cache, timeouts, loop avoidance;
//! - `strict_clients`: what a strict client checks: EDNS and cookies per client, cached or not;
//! - `os_resolver`: the C library (`getent`) and `curl` resolving through the server;
//! - `check`: `failover-dns check` errors and warnings;
//! - `control`: the control socket, `report`, `status` and shutdown;
//! - `reload`: live reload (file watcher, SIGHUP, control request, `reload`), what survives it;
//! - `packaging`: the Debian package (files, man pages, completions; `dpkg -i` and `-r` as root);
//! - `readiness`: systemd's `Type=notify` protocol (`READY=1`, `RELOADING=1`, `STOPPING=1`),
//!   with the test as the service manager;
//! - `embedding`: the embedding example (`examples/embed_agent.rs`), built and run;
//! - `probes`: active probes following a listener the test stops and starts, and never
//!   reordering two healthy paths;
//! - `observer`: failover with no agent — the connection observer, its re-check and fail fast —
//!   with curl and Python in a network namespace of the test's own (root);
//! - `sessions`: existing sessions and first connects following the failover (stalled
//!   keep-alive sessions, the RTT deadline, clients that give up connects, short requests, a
//!   failing side port, and what fail fast leaves alone), in the same namespace set-up (root);
//! - `drain`: draining a destination for maintenance, across a restart;
//! - `state_file`: the health state file across restarts, and a corrupt one;
//! - `watch`: the events `failover-dns watch` streams for a report and a reload;
//! - `explain`: `status --name`, the policies that permit or hide each endpoint of a name;
//! - `metrics`: the metrics endpoint's counts, and its loopback-only address;
//! - `destination_reports`: `report --destination`, every address of a destination at once;
//! - `log`: the default log's lines (none per query), and `--log-format json`.
//!
//! Tests run in parallel: every server has its own port, temporary directory and control socket.
//! Nothing sends traffic anywhere but 127.0.0.0/8; endpoint addresses are only data.
//!
//! Robustness and supply chain: `hostile` (malformed and hostile packets over UDP and TCP, the
//! fuzz seeds), `hardening` (what a hostile local process, a hostile upstream or a careless
//! operator must not be able to do: watchers that lock out reports, links planted for the state
//! file, descriptor starvation through the metrics port, a taken control socket path, idle TCP
//! connections that keep new clients out, an upstream's records for our names), `limits`
//! (connection limits, timeouts, pipelining, slow clients, floods, the forwarding allow-list),
//! `fuzz_corpus` (every fuzz corpus file through the fuzz harness, on stable), `supply_chain`
//! (lockfiles against known advisories, offline); `support::wire` has the raw UDP/TCP helpers
//! they share.

mod support;

/// The fuzz targets' harness, shared: `fuzz_corpus` replays the corpora through it, `hostile`
/// sends its zone's queries to the real server.
#[allow(dead_code, reason = "the tests use part of the harness")]
#[path = "../../fuzz/harness.rs"]
mod harness;

mod answers;
mod bench_tools;
mod check;
mod control;
mod destination_reports;
mod drain;
mod embedding;
mod explain;
mod failover;
mod fast_path;
mod forward_resilience;
mod forwarding;
mod fuzz_corpus;
mod hardening;
mod hostile;
mod limits;
mod log;
mod metrics;
mod not_owned;
mod observer;
mod os_resolver;
mod packaging;
mod policy;
mod probes;
mod readiness;
mod reload;
mod sessions;
mod state_file;
mod strict_clients;
mod supply_chain;
mod truncation;
mod watch;
