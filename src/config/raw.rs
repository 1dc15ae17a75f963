//! The zone and policy files' schema as serde reads it (before any check), the answer TTL
//! bounds, and the small parsers both the per-file and the cross-file checks use.

use std::time::Duration;

use hickory_proto::rr::Name;
use serde::Deserialize;

use crate::location::Located;
use crate::model::ProbeSpec;

/// Largest answer TTL accepted for shared names: answers must stay fresh (design.md).
pub const MAX_ANSWER_TTL: u32 = 300;
/// Answer TTL when a zone does not set one.
pub const DEFAULT_ANSWER_TTL: u32 = 5;
/// Negative TTL (SOA minimum) when a zone does not set one.
pub const DEFAULT_NEGATIVE_TTL: u32 = 5;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) zone: Vec<RawZone>,
    #[serde(default)]
    pub(super) asset: Vec<RawAsset>,
    #[serde(default)]
    pub(super) virtual_asset: Vec<RawVirtualAsset>,
    #[serde(default)]
    pub(super) subnet: Vec<RawSubnet>,
    #[serde(default)]
    pub(super) policy: Vec<RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawZone {
    pub(super) origin: Located<String>,
    #[serde(default)]
    pub(super) ttl: Option<Located<u32>>,
    /// Put a recovered primary asset first again as soon as it is up.
    #[serde(default)]
    pub(super) failback: bool,
    #[serde(default)]
    pub(super) soa: RawSoa,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSoa {
    pub(super) mname: Option<Located<String>>,
    pub(super) rname: Option<Located<String>>,
    pub(super) serial: Option<u32>,
    pub(super) refresh: Option<i32>,
    pub(super) retry: Option<i32>,
    pub(super) expire: Option<i32>,
    pub(super) minimum: Option<Located<u32>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawAssetKind {
    Primary,
    Gateway,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAsset {
    pub(super) id: Located<String>,
    pub(super) kind: RawAssetKind,
    #[serde(default)]
    pub(super) addresses: Vec<Located<String>>,
    #[serde(default)]
    pub(super) names: Vec<Located<String>>,
    #[serde(default)]
    pub(super) probe: Option<Located<RawProbe>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVirtualAsset {
    pub(super) id: Located<String>,
    pub(super) gateway: Located<String>,
    pub(super) addresses: Vec<Located<String>>,
    #[serde(default)]
    pub(super) names: Vec<Located<String>>,
    #[serde(default)]
    pub(super) probe: Option<Located<RawProbe>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSubnet {
    pub(super) id: Located<String>,
    pub(super) gateway: Located<String>,
    pub(super) cidr: Located<String>,
    #[serde(default)]
    pub(super) hosts: Vec<RawHost>,
    #[serde(default)]
    pub(super) probe: Option<Located<RawProbe>>,
}

/// An active probe: TCP connect to `port` on every endpoint address of the destination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    pub(super) port: u16,
    #[serde(default)]
    pub(super) interval_ms: Option<u64>,
    #[serde(default)]
    pub(super) timeout_ms: Option<u64>,
    #[serde(default)]
    pub(super) jitter_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    pub(super) name: Located<String>,
    pub(super) address: Located<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) id: Located<String>,
    #[serde(default = "enabled_by_default")]
    pub(super) enabled: bool,
    pub(super) sources: Vec<Located<String>>,
    pub(super) destinations: Vec<Located<String>>,
}

fn enabled_by_default() -> bool {
    true
}

/// Parses a DNS name from configuration, fully qualified.
pub fn parse_name(text: &str) -> Result<Name, String> {
    if text.is_empty() || text == "." {
        return Err("a name must not be empty or the root".to_string());
    }
    let mut name =
        Name::from_ascii(text).map_err(|error| format!("invalid name {text:?}: {error}"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// Validates a probe: a port, an interval of at least 100 ms (default 5 s), a timeout shorter
/// than the interval (default 1 s) and a jitter below the interval (default 0).
pub(super) fn probe_spec(raw: &RawProbe) -> Result<ProbeSpec, String> {
    if raw.port == 0 {
        return Err("probe port must be 1-65535".to_string());
    }
    let interval = Duration::from_millis(raw.interval_ms.unwrap_or(5_000));
    // The default timeout never exceeds the interval; an explicit one must not.
    let timeout = match raw.timeout_ms {
        Some(ms) => Duration::from_millis(ms),
        None => Duration::from_secs(1).min(interval),
    };
    if timeout > interval {
        return Err(format!(
            "probe timeout_ms {} must not exceed interval_ms {}",
            timeout.as_millis(),
            interval.as_millis()
        ));
    }
    let jitter = Duration::from_millis(raw.jitter_ms.unwrap_or(0));
    if interval < Duration::from_millis(100) {
        return Err(format!(
            "probe interval_ms {} is below 100",
            interval.as_millis()
        ));
    }
    if timeout.is_zero() {
        return Err("probe timeout_ms must be above 0".to_string());
    }
    if jitter >= interval {
        return Err("probe jitter_ms must be below interval_ms".to_string());
    }
    Ok(ProbeSpec {
        port: raw.port,
        interval,
        timeout,
        jitter,
    })
}
