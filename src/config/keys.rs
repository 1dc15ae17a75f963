//! Every server setting, declared once: its key in the settings file, its flag, its help, how
//! its value is read and checked, and whether a reload can take it over. Defaults live in
//! [`Settings::default`]; `--help`, the restart-only list and the documentation checks are
//! derived from these declarations (see [`crate::config::layer`]).
//!
//! Adding a setting: a field and its default in [`Settings`], one entry here, and a line in
//! `docs/configuration.md` (a test checks that the documented defaults match).

use std::time::Duration;

use crate::config::layer::Origin;
use crate::config::layer::{
    AsWritten, FilePath, Kind, List, Optional, Ranged, Reading, Text, Unshown, settings_layer,
};
use crate::config::limits::{ForwardAllow, parse_cidr};
use crate::config::values::{
    check_ca_file, parse_listen, parse_metrics_listen, parse_stale_max_age, parse_upstream,
};
use crate::location::{ConfigError, Located, SourceFile};
use std::path::Path;

use crate::config::settings::Settings;

settings_layer! {
    /// The server settings as one layer: the top level of the settings file, or the flags of
    /// `serve` and `check`. Each value present overrides the one below it.
    pub struct SettingsLayer {
        /// Directory of zone and policy files (*.toml, *.json)
        #[arg(long, value_name = "DIR")]
        zones: Located<String> => zones_dir = FilePath;
        /// Address to serve DNS on, UDP and TCP (repeatable; port 0 picks a free port)
        #[arg(long, value_name = "ADDR:PORT")]
        #[serde(deserialize_with = "non_empty")]
        listen: Vec<Located<String>> => listen = List(Text(parse_listen));
        /// Control socket path [default: $XDG_RUNTIME_DIR/failover-dns.sock; else
        /// /run/failover-dns/control.sock for root; else
        /// ${TMPDIR:-/tmp}/failover-dns-UID/control.sock]
        #[arg(long, value_name = "PATH")]
        control: Located<String> => control = Unshown(FilePath);
        /// Upstream resolver for names outside the zones (repeatable, raced in order; port 53
        /// if none given), or tls://ADDR[:PORT]#SERVER-NAME for DNS over TLS (port 853)
        /// [default: the nameservers of --resolv-conf]
        #[arg(long = "upstream", value_name = "UPSTREAM", help_heading = "Forwarding")]
        upstreams: Vec<Located<String>> => upstreams = Optional(List(Text(parse_upstream)));
        /// Backup upstream, asked only once every --upstream failed for a query (repeatable;
        /// same forms as --upstream)
        #[arg(long = "backup-upstream", value_name = "UPSTREAM", help_heading = "Forwarding")]
        backup_upstreams: Vec<Located<String>> => backup_upstreams = List(Text(parse_upstream));
        /// Resolver configuration to read upstreams from when none are named
        #[arg(long, value_name = "FILE", help_heading = "Forwarding")]
        resolv_conf: Located<String> => resolv_conf = FilePath;
        /// How long one upstream may take to answer before it counts as failed, in
        /// milliseconds
        #[arg(long, value_name = "MS", help_heading = "Forwarding")]
        upstream_timeout_ms: Located<u64> => upstream_timeout = Ranged { min: 10, max: 30_000 };
        /// How long after one upstream was asked the next one is asked too, in milliseconds (at
        /// once when it fails; 0: all at once)
        #[arg(long, value_name = "MS", help_heading = "Forwarding")]
        upstream_stagger_ms: Located<u64> => upstream_stagger = Ranged { min: 0, max: 10_000 };
        /// Extra certificate authorities (PEM) to trust for DNS-over-TLS upstreams, besides the
        /// system trust store
        #[arg(long, value_name = "FILE", help_heading = "Forwarding")]
        upstream_ca_file: Located<String> => upstream_ca_file = Optional(CaFile);
        /// Most forwarded answers to cache; 0 disables the cache
        #[arg(long, value_name = "N", help_heading = "Forwarding")]
        cache_size: Located<u64> => cache_size = AsWritten;
        /// The most memory cached forwarded answers may take, MiB; the answers used least
        /// recently go first
        #[arg(long, value_name = "MB", help_heading = "Forwarding")]
        cache_max_mb: Located<u64> => cache_max_mb = AsWritten;
        /// How long past its expiry a cached answer may be served (TTL 30) when every upstream
        /// fails: seconds, or with a unit (90s, 30m, 12h, 1d); 0 turns it off
        #[arg(long, value_name = "AGE", help_heading = "Forwarding")]
        stale_max_age: Located<Age> => stale_max_age = AgeKind;
        /// How long a query for an expired name waits for the upstreams before it gets the
        /// stale answer, in milliseconds
        #[arg(long, value_name = "MS", help_heading = "Forwarding")]
        stale_answer_delay_ms: Located<u64> => stale_answer_delay = Ranged { min: 0, max: 10_000 };
        /// Clients (CIDR) for which names outside the zones are forwarded; others get REFUSED
        /// for them (repeatable; replaces the default)
        #[arg(long = "forward-allow", value_name = "CIDR", help_heading = "Forwarding")]
        forward_allow: Vec<Located<String>> => forward_allow = Networks;
        /// Keep the health table in FILE across restarts: restored at start, saved every 10 s
        /// and on shutdown [default: not kept]
        #[arg(long, value_name = "FILE")]
        state_file: Located<String> => state_file = Optional(FilePath);
        /// Serve Prometheus metrics at http://ADDR:PORT/metrics (loopback only) [default: off]
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Located<String> => metrics = Optional(Text(parse_metrics_listen));
        /// Whether to watch the machine's own TCP connections to endpoint addresses (the
        /// connection observer, which turns unanswered connects and stalled sessions into
        /// failure reports and completed connections into successes; Linux only).
        /// `--no-observe` turns it off
        #[arg(long = "no-observe", num_args = 0, default_missing_value = "false",
              conflicts_with = "fail_fast", help_heading = "Connection observer")]
        observe: Located<bool> => observe.enabled = AsWritten;
        /// How often the observer looks at the kernel's sockets while a connect to an endpoint
        /// address waits or a session to one looks stalled, in milliseconds; once a second when
        /// nothing is outstanding
        #[arg(long, value_name = "MS", help_heading = "Connection observer")]
        observe_interval_ms: Located<u64> => observe.interval = Ranged { min: 20, max: 10_000 };
        /// SYN retransmissions after which a connect to an endpoint with no RTT history counts
        /// as failed (Linux gives up after 6, about 127 s)
        #[arg(long, value_name = "N", help_heading = "Connection observer")]
        observe_syn_retransmits: Located<u64> => observe.syn_retransmits = Ranged { min: 1, max: 6 };
        /// Retransmissions in a row of unacknowledged data after which a session counts as
        /// stalled (after 3 the kernel itself starts doubting the route)
        #[arg(long, value_name = "N", help_heading = "Connection observer")]
        observe_stall_retransmits: Located<u64> => observe.stall_retransmits = Ranged { min: 2, max: 8 };
        /// When an endpoint goes down and its names have another endpoint that is not down,
        /// abort the connects still waiting on it and the sessions stalled on it, so
        /// applications move to the next address at once. Needs CAP_NET_ADMIN; without it, a
        /// warning and off (on in the packaged settings)
        #[arg(long, num_args = 0, default_missing_value = "true",
              help_heading = "Connection observer")]
        fail_fast: Located<bool> => observe.fail_fast = AsWritten;
    }
    nested {
        limits: LimitsLayer,
        identity: IdentityLayer,
    }
}

settings_layer! {
    /// The `[limits]` table: connection counts, timeouts and queries in flight.
    pub struct LimitsLayer in "limits" {
        /// TCP connections served at once; at the limit a new one closes the connection idle
        /// the longest
        #[arg(long, value_name = "N", help_heading = "Limits")]
        max_tcp_connections: Located<u64> => limits.max_tcp_connections = Ranged { min: 1, max: 65_535 };
        /// How long an idle TCP connection is kept, and how long a started message or a reply
        /// write may take, in milliseconds
        #[arg(long, value_name = "MS", help_heading = "Limits")]
        tcp_idle_timeout_ms: Located<u64> => limits.tcp_idle_timeout = Ranged { min: 10, max: 300_000 };
        /// Queries one TCP connection may have in flight (pipelined, answered as they finish)
        #[arg(long, value_name = "N", help_heading = "Limits")]
        tcp_queries_in_flight: Located<u64> => limits.tcp_queries_in_flight = Ranged { min: 1, max: 1024 };
        /// Forwarded queries waiting for upstreams at once, all listen addresses and transports
        /// together
        #[arg(long, value_name = "N", help_heading = "Limits")]
        forwards_in_flight: Located<u64> => limits.forwards_in_flight = Ranged { min: 1, max: 65_535 };
        /// Control socket connections served at once
        #[arg(long, value_name = "N", help_heading = "Limits")]
        max_control_connections: Located<u64> => limits.max_control_connections = Ranged { min: 1, max: 1024 };
        /// How long a control connection may stay silent, in milliseconds
        #[arg(long, value_name = "MS", help_heading = "Limits")]
        control_idle_timeout_ms: Located<u64> => limits.control_idle_timeout = Ranged { min: 10, max: 3_600_000 };
    }
}

settings_layer! {
    /// The `[identity]` table: who this client is. Policies are evaluated against it; a reload
    /// takes a new identity over.
    pub struct IdentityLayer in "identity" {
        /// This client's user, for policy sources `user:NAME` [default: none]
        #[arg(long, value_name = "NAME", help_heading = "Identity")]
        user: Located<String> => identity.user = Optional(AsWritten), reloadable;
        /// This client's groups, for policy sources `group:NAME` (repeatable; replaces those of
        /// the settings file)
        #[arg(long = "group", value_name = "NAME", help_heading = "Identity")]
        groups: Vec<Located<String>> => identity.groups = List(AsWritten), reloadable;
        /// This client's device, for policy sources `device:NAME` [default: none]
        #[arg(long, value_name = "NAME", help_heading = "Identity")]
        device: Located<String> => identity.device = Optional(AsWritten), reloadable;
    }
}

impl Settings {
    /// The embedded defaults overlaid with the settings file at `path`. Relative paths in the
    /// file are relative to the file's directory.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Settings::layered(Some(path), SettingsLayer::default())
    }

    /// The one place the layers meet: the embedded defaults, overlaid by the settings file at
    /// `file` (when there is one), overlaid by the values given as `flags`. Each value is
    /// checked by its declaration in [`crate::config::keys`], whichever layer it came from.
    pub fn layered(file: Option<&Path>, flags: SettingsLayer) -> Result<Self, ConfigError> {
        let mut settings = Settings::default();
        if let Some(path) = file {
            let source = SourceFile::read(path)?;
            let layer: SettingsLayer = source.parse_toml()?;
            layer.overlay(&mut settings, Origin::File(&source))?;
        }
        flags.overlay(&mut settings, Origin::CommandLine)?;
        Ok(settings)
    }
}

impl SettingsLayer {
    /// Each setting's flag (its clap argument id, the key) and its default as `--help` shows
    /// it, for the settings whose default has one written form.
    pub fn shown_defaults() -> Vec<(&'static str, String)> {
        SettingsLayer::described()
            .into_iter()
            .filter_map(|setting| Some((setting.key, setting.shown_default()?)))
            .collect()
    }
}

/// A list in the settings file that must name at least one entry (`listen`).
fn non_empty<'de, D, T>(deserializer: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    let list: Vec<T> = serde::Deserialize::deserialize(deserializer)?;
    if list.is_empty() {
        return Err(serde::de::Error::custom(
            "listen must name at least one address",
        ));
    }
    Ok(Some(list))
}

/// `upstream_ca_file`: a path (relative to the settings file there) that must hold a PEM
/// certificate.
struct CaFile;

impl Kind<Located<String>, std::path::PathBuf> for CaFile {
    fn read(
        &self,
        raw: Located<String>,
        reading: &Reading<'_>,
    ) -> Result<std::path::PathBuf, ConfigError> {
        let (text, span) = raw.into_parts();
        let path = reading.path(&text);
        check_ca_file(&path).map_err(|message| reading.error(span, message))?;
        Ok(path)
    }

    fn written(&self, target: &std::path::PathBuf) -> Option<toml::Value> {
        FilePath.written(target)
    }
}

/// `stale_max_age` as written: seconds (a number in the file), or a number with a unit.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum Age {
    /// A number of seconds.
    Seconds(u64),
    /// Text: seconds, or a number with `s`, `m`, `h` or `d`.
    Text(String),
}

impl std::str::FromStr for Age {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Age::Text(text.to_string()))
    }
}

/// Reads an [`Age`]; shows a whole number of days, hours or minutes with its unit.
struct AgeKind;

impl Kind<Located<Age>, Duration> for AgeKind {
    fn read(&self, raw: Located<Age>, reading: &Reading<'_>) -> Result<Duration, ConfigError> {
        reading.checked(raw, |age| match age {
            Age::Seconds(seconds) => parse_stale_max_age(&seconds.to_string()),
            Age::Text(text) => parse_stale_max_age(&text),
        })
    }

    fn written(&self, target: &Duration) -> Option<toml::Value> {
        let seconds = target.as_secs();
        let shown = [(86_400, "d"), (3_600, "h"), (60, "m")]
            .into_iter()
            .find(|(unit, _)| seconds > 0 && seconds.is_multiple_of(*unit))
            .map_or_else(
                || format!("{seconds}s"),
                |(unit, name)| format!("{}{name}", seconds / unit),
            );
        Some(toml::Value::String(shown))
    }
}

/// `forward_allow`: networks or single addresses.
struct Networks;

impl Kind<Vec<Located<String>>, ForwardAllow> for Networks {
    fn read(
        &self,
        raw: Vec<Located<String>>,
        reading: &Reading<'_>,
    ) -> Result<ForwardAllow, ConfigError> {
        let networks = raw
            .into_iter()
            .map(|entry| reading.checked(entry, |text| parse_cidr(&text)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ForwardAllow::new(networks))
    }

    fn written(&self, target: &ForwardAllow) -> Option<toml::Value> {
        let networks = target
            .networks()
            .iter()
            .map(|network| toml::Value::String(network.to_string()))
            .collect();
        Some(toml::Value::Array(networks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::layer::Described;

    /// The file at `relative` in the repository.
    fn repository_file(relative: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
        std::fs::read_to_string(&path).expect("repository file")
    }

    /// `key = value` lines as TOML, each with the table it is in (`[limits]` → `limits`).
    fn assignments<'a>(
        lines: impl Iterator<Item = &'a str>,
    ) -> Vec<(Option<String>, String, toml::Value)> {
        let mut table = None;
        let mut found = Vec::new();
        for line in lines {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
                table = Some(name.to_string());
                continue;
            }
            if let Ok(parsed) = toml::from_str::<toml::Table>(line) {
                for (key, value) in parsed {
                    found.push((table.clone(), key, value));
                }
            }
        }
        found
    }

    fn find<'a>(
        settings: &'a [Described],
        table: Option<&str>,
        key: &str,
    ) -> Option<&'a Described> {
        settings
            .iter()
            .find(|setting| setting.key == key && setting.table == table)
    }

    #[test]
    fn the_documented_settings_are_every_setting_with_its_default() {
        let settings = SettingsLayer::described();
        let text = repository_file("docs/configuration.md");
        let block = text
            .split("**Server settings**")
            .nth(1)
            .and_then(|rest| rest.split("```toml").nth(1))
            .and_then(|rest| rest.split("```").next())
            .expect("docs/configuration.md shows the settings file");
        let documented = assignments(block.lines());
        for setting in &settings {
            let entry = documented
                .iter()
                .find(|(table, key, _)| table.as_deref() == setting.table && key == setting.key);
            let Some((_, _, value)) = entry else {
                panic!(
                    "docs/configuration.md does not show {:?} {}",
                    setting.table, setting.key
                );
            };
            // A list that is empty by default is shown with an example.
            let shown_as_example =
                matches!(&setting.default, Some(toml::Value::Array(a)) if a.is_empty());
            if let (Some(default), false) = (&setting.default, shown_as_example) {
                assert_eq!(
                    value, default,
                    "docs/configuration.md: {} is {value}, the code says {default}",
                    setting.key
                );
            }
        }
        for (table, key, _) in &documented {
            assert!(
                find(&settings, table.as_deref(), key).is_some(),
                "docs/configuration.md shows {key}, which is no setting"
            );
        }
    }

    #[test]
    fn the_packaged_settings_differ_from_the_defaults_only_where_they_mean_to() {
        let settings = SettingsLayer::described();
        let text = repository_file("contrib/settings.toml");
        // Where the package deliberately differs: paths of an installed system, its listen
        // address, fail fast on, and the sample identity.
        let packaged = [
            "zones",
            "listen",
            "control",
            "resolv_conf",
            "fail_fast",
            "user",
            "groups",
            "device",
        ];
        let written = assignments(text.lines());
        assert!(!written.is_empty());
        for (table, key, value) in &written {
            let setting = find(&settings, table.as_deref(), key)
                .unwrap_or_else(|| panic!("contrib/settings.toml sets {key}, which is no setting"));
            if !packaged.contains(&key.as_str()) {
                assert_eq!(
                    Some(value),
                    setting.default.as_ref(),
                    "contrib/settings.toml: {key}"
                );
            }
        }
        // The commented-out limits show the defaults.
        let limits = text
            .split("# [limits]")
            .nth(1)
            .expect("the limits are shown");
        let shown = assignments(
            limits
                .lines()
                .skip(1)
                .take_while(|line| line.starts_with('#'))
                .map(|line| line.trim_start_matches('#')),
        );
        assert_eq!(shown.len(), 6);
        for (_, key, value) in &shown {
            let setting = find(&settings, Some("limits"), key).expect("a limit");
            assert_eq!(
                Some(value),
                setting.default.as_ref(),
                "contrib/settings.toml: {key}"
            );
        }
    }

    #[test]
    fn every_setting_but_the_identity_needs_a_restart() {
        for setting in SettingsLayer::described() {
            assert_eq!(
                setting.reloadable,
                setting.table == Some("identity"),
                "{}",
                setting.key
            );
        }
    }
}
