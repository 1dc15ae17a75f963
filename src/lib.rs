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
//! `policy`, `answer` and `zones` are pure. Socket I/O lives at the edges: `net` (the DNS
//! sockets), `dns::forward` (upstreams), `control` (the control socket), `reports` (probes,
//! re-checks and the observer's netlink socket) and `ops` (the metrics listener, the service
//! manager's socket).
//! `reload` rebuilds the snapshot whole (on a file change, `SIGHUP` or a control request) and
//! swaps it in, or keeps the old one when the new configuration is invalid.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(unnameable_types)]

mod config;
mod control;
mod dns;
mod embed;
mod health;
mod location;
mod metrics;
mod model;
mod net;
mod ops;
mod os;
mod reload;
mod reports;
mod services;
#[cfg(test)]
mod testing;
mod time;

// The embedding API: build a server from settings and zone data, serve it on sockets the
// caller binds, feed it reports, watch it, reload it.
pub use config::keys::SettingsLayer;
pub use config::limits::{ForwardAllow, Limits};
pub use config::settings::{ObserveSettings, Settings, TlsName, UpstreamSpec};
pub use config::{load_zone_dir, load_zone_sources, load_zone_text};
pub use control::{ControlClient, ControlError, ControlReply, ControlRequest, ControlSocket};
pub use dns::forward::{ForwardingStatus, Role, UpstreamStatus};
pub use embed::{Builder, FailoverDns};
pub use health::events::Event;
pub use health::{Outcome, ReportSource, State};
pub use location::{ConfigError, Diagnostic, Location, SourceFile};
pub use metrics::Metrics;
pub use model::{
    Destination, DestinationIndex, DestinationKind, Endpoint, Identity, Policy, PolicySource,
    ProbeSpec, SharedName, SoaValues, Zone, ZoneData,
};
pub use net::server::{DnsListener, bind, bind_sockets};
pub use ops::check::{CheckReport, check};
pub use ops::explain::{EndpointExplanation, Explanation};
pub use ops::status::{ConfigStatus, EndpointStatus, NameStatus, StatusReport};
pub use reload::triggers::ReloadTriggers;
pub use reload::{ReloadError, ReloadSummary, SettingsLoader};
pub use reports::{ReportError, ReportResult, ReportTarget};

/// The parts below the embedding API, for the benchmarks, the fuzz targets and embedders that
/// run socket loops of their own: the query path (parse, decide, answer) and the tables it
/// reads. Not a stable interface: it changes with the code.
pub mod internals {
    pub use crate::dns::answer::{
        CLASSIC_UDP_PAYLOAD, OrderedEndpoint, Transport, encode_response, size_limit,
    };
    pub use crate::dns::fastpath::{AnswerMemo, AnswerState, CacheAging, MemoCounts};
    pub use crate::dns::forward::cache::CachedAnswer;
    pub use crate::dns::forward::{ForwardResult, ForwardSettings, Forwarded, Forwarder};
    pub use crate::dns::handler::{Client, ForwardJob, Handler, Step};
    pub use crate::dns::policy::Grants;
    pub use crate::dns::snapshot::{SharedSnapshot, Snapshot};
    pub use crate::dns::zones::{Lookup, OwnedName, Zones};
    pub use crate::health::{EndpointHealth, HealthTable, Report, Stamp};
    pub use crate::metrics::ResponseKind;
    pub use crate::ops::status::status_report;

    /// The query path of `server`, assembled as `serve` assembles it.
    pub fn handler_of(server: &crate::FailoverDns) -> &Handler {
        server.handler()
    }
}
