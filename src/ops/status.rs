//! What `status` shows: every shared name with its current answer order and each endpoint's
//! health, built from a snapshot and the health table; the configuration in force; and the
//! forwarding upstreams with their state and the stale answers served. Rendered as text or JSON.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::time::elapsed_since;

use serde::{Deserialize, Serialize};

use crate::dns::forward::ForwardingStatus;
use crate::dns::snapshot::Snapshot;
use crate::health::{EndpointHealth, HealthTable, ReportSource, Stamp, State};

/// The status of every shared name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Shared names, in zone-data order.
    pub names: Vec<NameStatus>,
    /// Ids of the destinations being drained (maintenance): answered after all others.
    #[serde(default)]
    pub draining: Vec<String>,
    /// Which configuration is serving and whether the last reload failed; absent when the
    /// server has no reloader (an embedder that swaps snapshots itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigStatus>,
    /// The upstreams names outside the zones go to, their state, and the stale answers
    /// served; absent when nothing is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<Box<ForwardingStatus>>,
}

/// The configuration in force and the outcome of the last reload, so a failed reload is visible
/// until a good one replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigStatus {
    /// Counts successful loads: 1 for the configuration loaded at startup.
    pub generation: u64,
    /// When the configuration in force was loaded, milliseconds since the Unix epoch.
    pub loaded_at_unix_ms: u64,
    /// The last reload's error (`FILE:LINE:COLUMN: message`, one line per problem) while the
    /// last good configuration keeps serving; `None` once a reload succeeded.
    pub last_error: Option<String>,
    /// When that reload failed, milliseconds since the Unix epoch.
    pub last_error_at_unix_ms: Option<u64>,
    /// Settings that changed in the settings file but only take effect after a restart.
    #[serde(default)]
    pub restart_needed: Vec<String>,
}

/// One shared name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameStatus {
    /// The name, fully qualified.
    pub name: String,
    /// The addresses an A/AAAA answer would give now, in order. Empty: NXDOMAIN for this client.
    pub order: Vec<IpAddr>,
    /// Every endpoint of the name, in answer order, then those hidden by policy.
    pub endpoints: Vec<EndpointStatus>,
}

/// One endpoint of a name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointStatus {
    /// The endpoint address.
    pub address: IpAddr,
    /// The id of the destination carrying the name.
    pub destination: String,
    /// What kind of destination it is.
    pub kind: String,
    /// Whether this client's policies grant the destination.
    pub permitted: bool,
    /// Up, unknown or down.
    pub state: State,
    /// Last success, milliseconds since the Unix epoch.
    pub last_success_unix_ms: Option<u64>,
    /// Last failure, milliseconds since the Unix epoch.
    pub last_failure_unix_ms: Option<u64>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Last reported round-trip time, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Last success from real traffic (agent, observer), milliseconds since the Unix epoch: what
    /// orders up endpoints, when newer than the last failure.
    #[serde(default)]
    pub last_traffic_success_unix_ms: Option<u64>,
    /// Who made the last report: `agent`, `observer`, `probe` or `recheck`.
    #[serde(default)]
    pub source: Option<ReportSource>,
    /// Whether the destination is draining (answered after every other endpoint).
    #[serde(default)]
    pub draining: bool,
}

/// When `stamp` was taken, in milliseconds since the Unix epoch (`None` for no stamp or one
/// before the epoch).
fn stamp_unix_ms(stamp: Option<Stamp>) -> Option<u64> {
    stamp
        .filter(|s| s.at >= UNIX_EPOCH)
        .map(|s| crate::time::unix_ms(s.at))
}

fn endpoint_status(
    snapshot: &Snapshot,
    table: &HealthTable,
    address: IpAddr,
    destination: crate::model::DestinationIndex,
    health: EndpointHealth,
) -> EndpointStatus {
    let (id, kind) = snapshot
        .zones
        .destination(destination)
        .map_or(("?".to_string(), "?"), |d| {
            (d.id.to_string(), d.kind.label())
        });
    EndpointStatus {
        address,
        kind: kind.to_string(),
        permitted: snapshot.grants.permits(destination),
        state: health.state(),
        last_success_unix_ms: stamp_unix_ms(health.last_success),
        last_failure_unix_ms: stamp_unix_ms(health.last_failure),
        consecutive_failures: health.consecutive_failures,
        rtt_ms: health.last_rtt.map(|rtt| rtt.as_secs_f64() * 1000.0),
        last_traffic_success_unix_ms: stamp_unix_ms(health.last_traffic_success),
        source: health.last_source,
        draining: table.any_draining() && table.is_draining(&id),
        destination: id,
    }
}

/// Builds the status of every shared name.
pub fn status_report(snapshot: &Snapshot, health: &HealthTable) -> StatusReport {
    let mut names = Vec::new();
    for shared in &snapshot.zones.data().names {
        let ordered = snapshot.answer_order(shared, health);
        let mut endpoints: Vec<EndpointStatus> = ordered
            .iter()
            .map(|o| {
                endpoint_status(
                    snapshot,
                    health,
                    o.endpoint.address,
                    o.endpoint.destination,
                    o.health,
                )
            })
            .collect();
        for endpoint in &shared.endpoints {
            if !snapshot.grants.permits(endpoint.destination) {
                endpoints.push(endpoint_status(
                    snapshot,
                    health,
                    endpoint.address,
                    endpoint.destination,
                    health.get(endpoint.address),
                ));
            }
        }
        names.push(NameStatus {
            name: shared.name.to_string(),
            order: ordered.iter().map(|o| o.endpoint.address).collect(),
            endpoints,
        });
    }
    StatusReport {
        names,
        draining: health.draining(),
        config: None,
        forwarding: None,
    }
}

fn ago(unix_ms: Option<u64>, now: SystemTime) -> String {
    let Some(ms) = unix_ms else {
        return "-".to_string();
    };
    match elapsed_since(ms, now) {
        Some(elapsed) if elapsed.as_secs() >= 1 => format!("{}s ago", elapsed.as_secs()),
        Some(elapsed) => format!("{}ms ago", elapsed.as_millis()),
        None => "just now".to_string(),
    }
}

/// Renders a status report for people.
impl StatusReport {
    /// The report as `failover-dns status` prints it, with times relative to `now`.
    pub fn render_text(&self, now: SystemTime) -> String {
        render_status_text(self, now)
    }
}

fn render_status_text(report: &StatusReport, now: SystemTime) -> String {
    let mut out = String::new();
    if let Some(config) = &report.config {
        render_config(&mut out, config, now);
    }
    for name in &report.names {
        let order: Vec<String> = name.order.iter().map(IpAddr::to_string).collect();
        let order = if order.is_empty() {
            "(none: NXDOMAIN for this identity)".to_string()
        } else {
            order.join(", ")
        };
        let _ = writeln!(out, "{}\n  answer order: {order}", name.name);
        let _ = writeln!(
            out,
            "  {:<3} {:<26} {:<24} {:<14} {:<9} {:<13} {:<13} {:>5} {:>9}  source",
            "#",
            "address",
            "destination",
            "kind",
            "state",
            "last success",
            "last failure",
            "fails",
            "rtt",
        );
        let mut position = 0;
        for endpoint in &name.endpoints {
            let place = if endpoint.permitted {
                position += 1;
                position.to_string()
            } else {
                "-".to_string()
            };
            let state = match (endpoint.permitted, endpoint.draining) {
                (false, _) => "hidden".to_string(),
                (true, false) => endpoint.state.to_string(),
                (true, true) => format!("{}*", endpoint.state),
            };
            let source = endpoint.source.map_or("-", ReportSource::label);
            let rtt = endpoint
                .rtt_ms
                .map_or_else(|| "-".to_string(), |ms| format!("{ms:.1}ms"));
            let _ = writeln!(
                out,
                "  {:<3} {:<26} {:<24} {:<14} {:<9} {:<13} {:<13} {:>5} {:>9}  {}",
                place,
                endpoint.address.to_string(),
                endpoint.destination,
                endpoint.kind,
                state,
                ago(endpoint.last_success_unix_ms, now),
                ago(endpoint.last_failure_unix_ms, now),
                endpoint.consecutive_failures,
                rtt,
                source
            );
        }
        if name.endpoints.iter().any(|e| e.permitted && e.draining) {
            let _ = writeln!(
                out,
                "  (*: draining for maintenance, answered after every other endpoint)"
            );
        }
        if name.endpoints.iter().any(|e| !e.permitted) {
            let _ = writeln!(
                out,
                "  (hidden: no enabled policy grants this identity that destination)"
            );
        }
    }
    if report.names.is_empty() {
        out.push_str("no shared names are configured\n");
    }
    if !report.draining.is_empty() {
        let _ = writeln!(out, "draining: {}", report.draining.join(", "));
    }
    if let Some(forwarding) = &report.forwarding {
        render_forwarding(&mut out, forwarding, now);
    }
    out
}

/// The forwarding lines at the end of `status`: each upstream's state and why it last failed.
fn render_forwarding(out: &mut String, forwarding: &ForwardingStatus, now: SystemTime) {
    let _ = writeln!(
        out,
        "\nforwarding: {} stale answers served, {} refreshes in flight",
        forwarding.stale_answers, forwarding.refreshes_in_flight
    );
    let _ = writeln!(
        out,
        "  {:<40} {:<7} {:<9} {:>5} {:>8} {:>6} {:<13} last error",
        "upstream", "role", "state", "fails", "answered", "won", "last failure"
    );
    for upstream in &forwarding.upstreams {
        let role = match upstream.role {
            crate::dns::forward::Role::Primary => "primary",
            crate::dns::forward::Role::Backup => "backup",
        };
        let state = match upstream.held_down_ms {
            Some(ms) => format!("{} {}s", upstream.state, ms.div_ceil(1000)),
            None => upstream.state.clone(),
        };
        let _ = writeln!(
            out,
            "  {:<40} {:<7} {:<9} {:>5} {:>8} {:>6} {:<13} {}",
            upstream.upstream,
            role,
            state,
            upstream.consecutive_failures,
            upstream.answered,
            upstream.won,
            ago(upstream.last_failure_unix_ms, now),
            upstream.last_error.as_deref().unwrap_or("-")
        );
    }
}

/// The configuration lines at the top of `status`: a failed reload comes first, so it is seen.
fn render_config(out: &mut String, config: &ConfigStatus, now: SystemTime) {
    let _ = writeln!(
        out,
        "configuration: generation {}, loaded {}",
        config.generation,
        ago(Some(config.loaded_at_unix_ms), now)
    );
    if let Some(error) = &config.last_error {
        let _ = writeln!(
            out,
            "  last reload FAILED {}; still serving generation {}:",
            ago(config.last_error_at_unix_ms, now),
            config.generation
        );
        for line in error.lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    for setting in &config.restart_needed {
        let _ = writeln!(
            out,
            "  restart needed: {setting} changed in the settings file"
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn failed_reload_is_shown_above_the_names() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let report = StatusReport {
            draining: Vec::new(),
            names: Vec::new(),
            forwarding: None,
            config: Some(ConfigStatus {
                generation: 3,
                loaded_at_unix_ms: 90_000,
                last_error: Some("z.toml:1:2: bad\nz.toml:3:4: worse".to_string()),
                last_error_at_unix_ms: Some(99_500),
                restart_needed: vec!["listen".to_string()],
            }),
        };
        let text = render_status_text(&report, now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..5],
            [
                "configuration: generation 3, loaded 10s ago",
                "  last reload FAILED 500ms ago; still serving generation 3:",
                "    z.toml:1:2: bad",
                "    z.toml:3:4: worse",
                "  restart needed: listen changed in the settings file",
            ],
            "{text}"
        );
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["config"]["generation"], 3);
        assert_eq!(
            json["config"]["last_error"],
            "z.toml:1:2: bad\nz.toml:3:4: worse"
        );
    }

    #[test]
    fn good_configuration_has_a_null_error() {
        let config = ConfigStatus {
            generation: 1,
            loaded_at_unix_ms: 1,
            last_error: None,
            last_error_at_unix_ms: None,
            restart_needed: Vec::new(),
        };
        let json = serde_json::to_value(&config).expect("serializes");
        assert!(json["last_error"].is_null(), "{json}");
        let text = render_status_text(
            &StatusReport {
                names: Vec::new(),
                draining: Vec::new(),
                config: Some(config),
                forwarding: None,
            },
            UNIX_EPOCH,
        );
        assert!(!text.contains("FAILED"), "{text}");
    }
}
