//! The control protocol: request and reply types (one JSON object per line each way) and what
//! each request does, apart from any socket.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::health::{Outcome, ReportSource};
use crate::ops::explain::{Explanation, explain};
use crate::ops::status::StatusReport;
use crate::reload::{ReloadError, ReloadSummary, Trigger};
use crate::reports::{ReportResult, ReportTarget};
use crate::services::Services;

/// Longest request line accepted; a longer one gets an error reply and the connection closes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlRequest {
    /// One connection outcome for an endpoint address, or for every address of a destination.
    Report {
        /// The endpoint address (give this or `destination`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<IpAddr>,
        /// The destination id (give this or `address`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination: Option<String>,
        /// `success` or `failure`.
        outcome: Outcome,
        /// Measured round-trip time in milliseconds, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rtt_ms: Option<f64>,
        /// Who saw it: `agent` (the default: real traffic), `probe` (a check that the path
        /// answers, which does not reorder healthy paths), `observer` or `recheck`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<ReportSource>,
    },
    /// Drain a destination for maintenance: its endpoints go after all others, still answered.
    Drain {
        /// The destination id.
        destination: String,
    },
    /// End a destination's drain.
    Undrain {
        /// The destination id.
        destination: String,
    },
    /// Every shared name with its answer order and endpoint health.
    Status {},
    /// Why one name resolves the way it does.
    Explain {
        /// The shared name.
        name: String,
    },
    /// Stream events (state changes, failovers, reloads) until the client disconnects.
    Watch {},
    /// Re-read the settings and zone files and swap the new configuration in.
    Reload {},
}

/// A reply on the control socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ControlReply {
    /// The report was recorded, for one address or every address of a destination.
    Reported {
        /// What it did to each address.
        results: Vec<ReportResult>,
    },
    /// A drain or undrain was applied.
    Drain {
        /// The destination id.
        destination: String,
        /// Whether it is draining now.
        draining: bool,
        /// Whether the request changed anything (false: it already was so).
        changed: bool,
    },
    /// Why a name resolves the way it does.
    Explanation(Explanation),
    /// Events follow, one per line.
    Watching {},
    /// The status of every shared name.
    Status(Box<StatusReport>),
    /// The new configuration is serving.
    Reloaded {
        /// Its generation (1 is the configuration loaded at startup).
        generation: u64,
        /// Owned zones.
        zones: usize,
        /// Shared names.
        names: usize,
        /// Settings that changed but keep their running value until a restart.
        restart_needed: Vec<String>,
        /// Warnings about the new configuration (as `check` prints them).
        #[serde(default)]
        warnings: Vec<String>,
    },
    /// The request was not understood or not accepted.
    Error {
        /// What was wrong.
        error: String,
    },
}

/// Handles one request line (the part of the protocol that does not touch the socket).
pub fn handle_line(line: &[u8], services: &Services) -> ControlReply {
    match parse_line(line) {
        Ok(request) => handle_request(request, services),
        Err(reply) => reply,
    }
}

/// Parses one request line, or says what is wrong with it.
pub(super) fn parse_line(line: &[u8]) -> Result<ControlRequest, ControlReply> {
    let text = match std::str::from_utf8(line) {
        Ok(text) => text.trim(),
        Err(_) => {
            return Err(ControlReply::Error {
                error: "request is not UTF-8".to_string(),
            });
        }
    };
    if text.is_empty() {
        return Err(ControlReply::Error {
            error: "empty request line".to_string(),
        });
    }
    serde_json::from_str::<ControlRequest>(text).map_err(|error| ControlReply::Error {
        error: format!("invalid request: {error}"),
    })
}

pub(super) fn reload_reply(outcome: Result<ReloadSummary, ReloadError>) -> ControlReply {
    match outcome {
        Ok(summary) => ControlReply::Reloaded {
            generation: summary.generation,
            zones: summary.zones,
            names: summary.names,
            restart_needed: summary.restart_needed,
            warnings: summary.warnings,
        },
        Err(error) => ControlReply::Error {
            error: error.to_string(),
        },
    }
}

fn drain_reply(services: &Services, destination: String, draining: bool) -> ControlReply {
    match services.reports.set_draining(&destination, draining) {
        Ok(changed) => ControlReply::Drain {
            destination,
            draining,
            changed,
        },
        Err(error) => ControlReply::Error {
            error: error.to_string(),
        },
    }
}

/// Carries out one control request.
pub fn handle_request(request: ControlRequest, services: &Services) -> ControlReply {
    match request {
        ControlRequest::Report {
            address,
            destination,
            outcome,
            rtt_ms,
            source,
        } => {
            let target = match (address, destination) {
                (Some(address), None) => ReportTarget::Address(address),
                (None, Some(destination)) => ReportTarget::Destination(destination),
                _ => {
                    return ControlReply::Error {
                        error: "a report names exactly one of \"address\" and \"destination\""
                            .to_string(),
                    };
                }
            };
            let source = source.unwrap_or(ReportSource::Agent);
            match services.reports.report_ms(&target, outcome, rtt_ms, source) {
                Ok(results) => ControlReply::Reported { results },
                Err(error) => ControlReply::Error {
                    error: error.to_string(),
                },
            }
        }
        ControlRequest::Drain { destination } => drain_reply(services, destination, true),
        ControlRequest::Undrain { destination } => drain_reply(services, destination, false),
        ControlRequest::Explain { name } => {
            let Ok(parsed) = crate::config::parse_name(&name) else {
                return ControlReply::Error {
                    error: format!("{name:?} is not a DNS name"),
                };
            };
            let snapshot = services.snapshot.load();
            match explain(&snapshot, &services.health, &parsed) {
                Some(explanation) => ControlReply::Explanation(explanation),
                None => ControlReply::Error {
                    error: format!("{name} is not a shared name"),
                },
            }
        }
        ControlRequest::Watch {} => ControlReply::Error {
            error: "watch streams events and is only served on the control socket".to_string(),
        },
        ControlRequest::Status {} => ControlReply::Status(Box::new(services.status())),
        // Blocks the calling thread while the files load; the socket server takes the async
        // path in `respond` instead.
        ControlRequest::Reload {} => {
            reload_reply(services.reloader.reload_blocking(Trigger::Control))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_table() {
        let cases = [
            (r#"{"op":"status"}"#, true),
            (
                r#"{"op":"report","address":"10.0.0.1","outcome":"success"}"#,
                true,
            ),
            (
                r#"{"op":"report","address":"::1","outcome":"failure","rtt_ms":1.5}"#,
                true,
            ),
            (r#"{"op":"status","extra":1}"#, false),
            (r#"{"op":"reload"}"#, true),
            (r#"{"op":"reload","force":true}"#, false),
            (
                r#"{"op":"report","address":"10.0.0.1","outcome":"success","x":1}"#,
                false,
            ),
            (
                r#"{"op":"report","address":"10.0.0.300","outcome":"success"}"#,
                false,
            ),
            (
                r#"{"op":"report","address":"10.0.0.1","outcome":"maybe"}"#,
                false,
            ),
            (r#"{"op":"reboot"}"#, false),
            ("garbage", false),
        ];
        for (line, valid) in cases {
            let parsed = serde_json::from_str::<ControlRequest>(line);
            assert_eq!(parsed.is_ok(), valid, "{line}: {parsed:?}");
        }
    }
}
