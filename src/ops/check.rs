//! `failover-dns check`: the settings and zone files read and the policies evaluated as a server
//! would, without serving, and what an operator should know about them.

use crate::config::load_zone_dir;
use crate::config::settings::Settings;
use crate::dns::snapshot::Snapshot;
use crate::location::ConfigError;

/// A configuration that would load, and what is worth a warning in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Zones declared.
    pub zones: usize,
    /// Shared names.
    pub names: usize,
    /// Destinations (assets, virtual assets, subnets).
    pub destinations: usize,
    /// Policies.
    pub policies: usize,
    /// For each shared name a policy grants only in part, what this identity misses.
    pub warnings: Vec<String>,
}

/// Loads the zone data `settings` name and evaluates the policies for its identity, as `serve`
/// would; every problem is in the error, with file, line and column.
pub fn check(settings: &Settings) -> Result<CheckReport, ConfigError> {
    let data = load_zone_dir(&settings.zones_dir)?;
    let snapshot = Snapshot::new(data, settings.identity.clone());
    let warnings = snapshot.warnings();
    let data = snapshot.zones.data();
    Ok(CheckReport {
        zones: data.zones.len(),
        names: data.names.len(),
        destinations: data.destinations.len(),
        policies: data.policies.len(),
        warnings,
    })
}
