//! The server's own settings, as opposed to the zone data it serves: where the zone files are,
//! the addresses to listen on, the control socket, this client's identity, and how names outside
//! the zones are forwarded (upstreams, backups, DNS over TLS, racing, serve-stale). Embedded
//! defaults, overlaid by a settings file, overlaid by command-line flags.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::limits::{Bound, ForwardAllow, Limits, RawLimits, parse_forward_allow};
use crate::location::{ConfigError, SourceFile, resolve_relative};
use crate::model::Identity;

/// How long one upstream may take to answer when nothing else is said.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwarded answers cached when nothing else is said.
pub const DEFAULT_CACHE_SIZE: usize = 10_000;
/// The most memory cached forwarded answers may take when nothing else is said, MiB.
pub const DEFAULT_CACHE_MAX_MB: usize = 64;
/// The settings file read when `--config` names none and it exists in the working directory:
/// the repository's own carries the sample identity the sample zones' policies grant.
pub const DEFAULT_SETTINGS_FILE: &str = "failover-dns.toml";
/// The zones directory when nothing else is said, relative to the working directory.
pub const DEFAULT_ZONES_DIR: &str = "zones";
/// Where upstreams come from when none are named.
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";
/// How long after one upstream started the next one starts, unless the first failed sooner.
pub const DEFAULT_UPSTREAM_STAGGER: Duration = Duration::from_millis(200);
/// How long past its expiry a cached answer may still be served when every upstream fails.
pub const DEFAULT_STALE_MAX_AGE: Duration = Duration::from_secs(86_400);
/// How long a client waits for a refresh before it gets the stale answer.
pub const DEFAULT_STALE_ANSWER_DELAY: Duration = Duration::from_millis(1_800);
/// The port of a DNS-over-TLS upstream when none is given (RFC 7858).
pub const DOT_PORT: u16 = 853;

/// One upstream resolver: an address, and for DNS over TLS the name its certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamSpec {
    /// Where it listens.
    pub address: SocketAddr,
    /// `None`: plain DNS (UDP, TCP for truncated answers and TCP clients). `Some`: DNS over TLS
    /// (RFC 7858) only, authenticated as this name.
    pub tls: Option<TlsName>,
}

/// Whom a DNS-over-TLS upstream's certificate must name: a DNS name (also sent as SNI), or,
/// when the upstream was given without `#NAME`, its IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TlsName {
    /// A DNS name (SNI and certificate check).
    Dns(String),
    /// The upstream's own address (certificate check only; no SNI for addresses).
    Address,
}

impl UpstreamSpec {
    /// A plain-DNS upstream.
    pub fn plain(address: SocketAddr) -> Self {
        UpstreamSpec { address, tls: None }
    }
}

impl fmt::Display for UpstreamSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tls {
            None => write!(f, "{}", self.address),
            Some(TlsName::Address) => write!(f, "tls://{}", self.address),
            Some(TlsName::Dns(name)) => write!(f, "tls://{}#{name}", self.address),
        }
    }
}

/// Validated server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Directory of zone and policy files.
    pub zones_dir: PathBuf,
    /// Addresses to serve DNS on, UDP and TCP each.
    pub listen: Vec<SocketAddr>,
    /// Path of the control socket.
    pub control: PathBuf,
    /// Who this client is; policies are evaluated against it.
    pub identity: Identity,
    /// Upstream resolvers named in the settings or on the command line; `None`: read them from
    /// `resolv_conf`.
    pub upstreams: Option<Vec<UpstreamSpec>>,
    /// Upstreams asked only once every primary upstream has failed for a query.
    pub backup_upstreams: Vec<UpstreamSpec>,
    /// Extra certificate authorities (PEM) trusted for DNS-over-TLS upstreams, besides the
    /// system trust store.
    pub upstream_ca_file: Option<PathBuf>,
    /// How long after one upstream attempt started the next one starts (sooner when it fails).
    pub upstream_stagger: Duration,
    /// How long past expiry a cached answer may be served when every upstream fails; zero: never.
    pub stale_max_age: Duration,
    /// How long a client waits for a refresh before it gets a stale answer.
    pub stale_answer_delay: Duration,
    /// The system resolver configuration to take upstreams from when none are named.
    pub resolv_conf: PathBuf,
    /// How long one upstream may take to answer.
    pub upstream_timeout: Duration,
    /// Most forwarded answers cached; 0 disables the cache.
    pub cache_size: usize,
    /// The most memory the cached answers may take, MiB (their size as kept, estimated).
    pub cache_max_mb: usize,
    /// Connection counts, timeouts and queries in flight.
    pub limits: Limits,
    /// Clients for which names outside the zones are forwarded.
    pub forward_allow: ForwardAllow,
    /// Where the health table is saved and restored from; `None`: not kept across restarts.
    pub state_file: Option<PathBuf>,
    /// Loopback address of the Prometheus metrics listener; `None`: off.
    pub metrics: Option<SocketAddr>,
    /// The connection observer and fail fast.
    pub observe: ObserveSettings,
}

/// The connection observer: the machine's own TCP connections to endpoint addresses, as the
/// kernel sees them, reported as health; and fail fast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserveSettings {
    /// Whether the observer runs (Linux only).
    pub enabled: bool,
    /// Time between two looks at the kernel's sockets.
    pub interval: Duration,
    /// SYN retransmissions after which a connect still waiting counts as a failure (when the
    /// endpoint has no RTT history to judge by).
    pub syn_retransmits: u8,
    /// Retransmissions in a row of unacknowledged data after which an established session
    /// counts as stalled: a failure.
    pub stall_retransmits: u8,
    /// Abort connects still waiting on an endpoint that is down when its names have another
    /// endpoint that is not (needs CAP_NET_ADMIN).
    pub fail_fast: bool,
}

/// The observer's poll interval when nothing else is said.
pub const DEFAULT_OBSERVE_INTERVAL: Duration = Duration::from_millis(250);

impl Default for ObserveSettings {
    fn default() -> Self {
        ObserveSettings {
            enabled: true,
            interval: DEFAULT_OBSERVE_INTERVAL,
            syn_retransmits: 1,
            stall_retransmits: 3,
            fail_fast: false,
        }
    }
}

/// The observer's poll interval: 20 ms to 10 s.
pub(crate) const OBSERVE_INTERVAL_MS: Bound = Bound {
    name: "observe_interval_ms",
    min: 20,
    max: 10_000,
};

/// The SYN retransmissions that make a waiting connect a failure: 1 to 6 (Linux gives up after
/// 6 by default, about 127 s).
const OBSERVE_SYN_RETRANSMITS: Bound = Bound {
    name: "observe_syn_retransmits",
    min: 1,
    max: 6,
};

/// The retransmissions in a row that make a session with data in flight stalled: 2 to 8 (after
/// 3 the kernel itself starts doubting the route, `tcp_retries1`).
const OBSERVE_STALL_RETRANSMITS: Bound = Bound {
    name: "observe_stall_retransmits",
    min: 2,
    max: 8,
};

/// Checks an observer poll interval in milliseconds.
pub fn parse_observe_interval(milliseconds: u64) -> Result<Duration, String> {
    OBSERVE_INTERVAL_MS
        .check(milliseconds)
        .map(Duration::from_millis)
}

/// Checks the SYN retransmissions that make a waiting connect a failure.
pub fn parse_syn_retransmits(count: u64) -> Result<u8, String> {
    let count = OBSERVE_SYN_RETRANSMITS.check(count)?;
    Ok(u8::try_from(count).unwrap_or(u8::MAX))
}

/// Checks the retransmissions that make a session stalled.
pub fn parse_stall_retransmits(count: u64) -> Result<u8, String> {
    let count = OBSERVE_STALL_RETRANSMITS.check(count)?;
    Ok(u8::try_from(count).unwrap_or(u8::MAX))
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            zones_dir: PathBuf::from(DEFAULT_ZONES_DIR),
            listen: vec![default_listen()],
            control: default_control_path(),
            identity: Identity::default(),
            upstreams: None,
            backup_upstreams: Vec::new(),
            upstream_ca_file: None,
            upstream_stagger: DEFAULT_UPSTREAM_STAGGER,
            stale_max_age: DEFAULT_STALE_MAX_AGE,
            stale_answer_delay: DEFAULT_STALE_ANSWER_DELAY,
            resolv_conf: PathBuf::from(DEFAULT_RESOLV_CONF),
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            cache_size: DEFAULT_CACHE_SIZE,
            cache_max_mb: DEFAULT_CACHE_MAX_MB,
            limits: Limits::default(),
            forward_allow: ForwardAllow::default(),
            state_file: None,
            metrics: None,
            observe: ObserveSettings::default(),
        }
    }
}

/// Where the server listens when nothing else is said: loopback, a high port, so a first run
/// needs no privileges.
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5300))
}

/// The control socket path when none is configured: `$XDG_RUNTIME_DIR/failover-dns.sock`; else
/// `/run/failover-dns/control.sock` for root; else `control.sock` in the private directory
/// [`private_control_dir`] names. Every user gets their own, and `report` finds the server
/// without flags.
pub fn default_control_path() -> PathBuf {
    control_path_for(
        current_uid(),
        std::env::var_os("XDG_RUNTIME_DIR"),
        std::env::var_os("TMPDIR"),
    )
}

/// The per-user directory the default control socket lives in when there is no
/// `XDG_RUNTIME_DIR` and the user is not root: `${TMPDIR:-/tmp}/failover-dns-<uid>`. In a
/// directory everyone may write to, a socket path alone could be taken by another user first;
/// a directory of the user's own (mode 0700, checked before use, as tmux does) cannot.
pub fn private_control_dir() -> Option<PathBuf> {
    let path = default_control_path();
    let directory = path.parent()?;
    let uid = current_uid()?;
    (directory.file_name()? == format!("failover-dns-{uid}").as_str()).then(|| directory.into())
}

fn control_path_for(
    uid: Option<u32>,
    runtime_dir: Option<std::ffi::OsString>,
    temporary_dir: Option<std::ffi::OsString>,
) -> PathBuf {
    if let Some(runtime_dir) = runtime_dir.filter(|d| !d.is_empty()) {
        return Path::new(&runtime_dir).join("failover-dns.sock");
    }
    if uid == Some(0) {
        return PathBuf::from("/run/failover-dns/control.sock");
    }
    let base = temporary_dir
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let uid = uid.map_or_else(|| "user".to_string(), |uid| uid.to_string());
    base.join(format!("failover-dns-{uid}"))
        .join("control.sock")
}

/// This process's user id (read from `/proc/self`, which the process owns).
pub fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    zones: Option<String>,
    listen: Option<Vec<Spanned<String>>>,
    control: Option<String>,
    identity: Option<Identity>,
    upstreams: Option<Vec<Spanned<String>>>,
    backup_upstreams: Option<Vec<Spanned<String>>>,
    upstream_ca_file: Option<Spanned<String>>,
    upstream_stagger_ms: Option<Spanned<u64>>,
    stale_max_age: Option<Spanned<RawAge>>,
    stale_answer_delay_ms: Option<Spanned<u64>>,
    resolv_conf: Option<String>,
    upstream_timeout_ms: Option<Spanned<u64>>,
    cache_size: Option<usize>,
    cache_max_mb: Option<usize>,
    limits: Option<RawLimits>,
    forward_allow: Option<Vec<Spanned<String>>>,
    state_file: Option<String>,
    metrics: Option<Spanned<String>>,
    observe: Option<bool>,
    observe_interval_ms: Option<Spanned<u64>>,
    observe_syn_retransmits: Option<Spanned<u64>>,
    observe_stall_retransmits: Option<Spanned<u64>>,
    fail_fast: Option<bool>,
}

/// `stale_max_age` as written: seconds, or a number with a unit (`"90s"`, `"30m"`, `"12h"`, `"1d"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawAge {
    Seconds(u64),
    Text(String),
}

/// The upstream list at `entries`, every entry checked, the first bad one located.
fn parse_upstream_list(
    source: &SourceFile,
    entries: &[Spanned<String>],
) -> Result<Vec<UpstreamSpec>, ConfigError> {
    entries
        .iter()
        .map(|entry| {
            parse_upstream(entry.get_ref())
                .map_err(|message| ConfigError::one(source.locate(entry.span()), message))
        })
        .collect()
}

impl Settings {
    /// The embedded defaults overlaid with the settings file at `path`. Relative paths in the
    /// file are relative to the file's directory.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let source = SourceFile::read(path)?;
        let raw: RawSettings = source.parse_toml()?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut settings = Settings::default();
        if let Some(zones) = raw.zones {
            settings.zones_dir = resolve_relative(base, Path::new(&zones));
        }
        if let Some(control) = raw.control {
            settings.control = resolve_relative(base, Path::new(&control));
        }
        if let Some(identity) = raw.identity {
            settings.identity = identity;
        }
        if let Some(resolv_conf) = raw.resolv_conf {
            settings.resolv_conf = resolve_relative(base, Path::new(&resolv_conf));
        }
        if let Some(cache_size) = raw.cache_size {
            settings.cache_size = cache_size;
        }
        if let Some(cache_max_mb) = raw.cache_max_mb {
            settings.cache_max_mb = cache_max_mb;
        }
        if let Some(state_file) = raw.state_file {
            settings.state_file = Some(resolve_relative(base, Path::new(&state_file)));
        }
        if let Some(metrics) = raw.metrics {
            settings.metrics = Some(
                parse_metrics_listen(metrics.get_ref())
                    .map_err(|message| ConfigError::one(source.locate(metrics.span()), message))?,
            );
        }
        if let Some(observe) = raw.observe {
            settings.observe.enabled = observe;
        }
        if let Some(fail_fast) = raw.fail_fast {
            settings.observe.fail_fast = fail_fast;
        }
        if let Some(interval) = raw.observe_interval_ms {
            settings.observe.interval = parse_observe_interval(*interval.get_ref())
                .map_err(|message| ConfigError::one(source.locate(interval.span()), message))?;
        }
        if let Some(count) = raw.observe_syn_retransmits {
            settings.observe.syn_retransmits = parse_syn_retransmits(*count.get_ref())
                .map_err(|message| ConfigError::one(source.locate(count.span()), message))?;
        }
        if let Some(count) = raw.observe_stall_retransmits {
            settings.observe.stall_retransmits = parse_stall_retransmits(*count.get_ref())
                .map_err(|message| ConfigError::one(source.locate(count.span()), message))?;
        }
        if let Some(timeout) = raw.upstream_timeout_ms {
            settings.upstream_timeout = parse_upstream_timeout(*timeout.get_ref())
                .map_err(|message| ConfigError::one(source.locate(timeout.span()), message))?;
        }
        if let Some(limits) = &raw.limits {
            limits.apply(&source, &mut settings.limits)?;
        }
        if let Some(forward_allow) = &raw.forward_allow {
            settings.forward_allow = parse_forward_allow(&source, forward_allow)?;
        }
        if let Some(upstreams) = raw.upstreams {
            settings.upstreams = Some(parse_upstream_list(&source, &upstreams)?);
        }
        if let Some(backups) = raw.backup_upstreams {
            settings.backup_upstreams = parse_upstream_list(&source, &backups)?;
        }
        if let Some(stagger) = raw.upstream_stagger_ms {
            settings.upstream_stagger = parse_upstream_stagger(*stagger.get_ref())
                .map_err(|message| ConfigError::one(source.locate(stagger.span()), message))?;
        }
        if let Some(age) = raw.stale_max_age {
            let parsed = match age.get_ref() {
                RawAge::Seconds(seconds) => parse_stale_max_age(&seconds.to_string()),
                RawAge::Text(text) => parse_stale_max_age(text),
            };
            settings.stale_max_age =
                parsed.map_err(|message| ConfigError::one(source.locate(age.span()), message))?;
        }
        if let Some(delay) = raw.stale_answer_delay_ms {
            settings.stale_answer_delay = parse_stale_answer_delay(*delay.get_ref())
                .map_err(|message| ConfigError::one(source.locate(delay.span()), message))?;
        }
        if let Some(ca_file) = raw.upstream_ca_file {
            let path = resolve_relative(base, Path::new(ca_file.get_ref()));
            check_ca_file(&path)
                .map_err(|message| ConfigError::one(source.locate(ca_file.span()), message))?;
            settings.upstream_ca_file = Some(path);
        }
        if let Some(listen) = raw.listen {
            let mut addresses = Vec::new();
            for entry in &listen {
                addresses.push(
                    parse_listen(entry.get_ref()).map_err(|message| {
                        ConfigError::one(source.locate(entry.span()), message)
                    })?,
                );
            }
            if addresses.is_empty() {
                return Err(ConfigError::one(
                    source.locate(listen.first().map_or(0..0, |l| l.span())),
                    "listen must name at least one address",
                ));
            }
            settings.listen = addresses;
        }
        Ok(settings)
    }
}

/// Checks an upstream timeout in milliseconds: 10 ms to 30 s.
pub fn parse_upstream_timeout(milliseconds: u64) -> Result<Duration, String> {
    const UPSTREAM_TIMEOUT_MS: Bound = Bound {
        name: "upstream_timeout_ms",
        min: 10,
        max: 30_000,
    };
    UPSTREAM_TIMEOUT_MS
        .check(milliseconds)
        .map(Duration::from_millis)
}

/// Parses an upstream: `ADDR`, `ADDR:PORT` or `[V6]:PORT` for plain DNS (port 53 when none is
/// given), or `tls://ADDR[:PORT][#SERVER-NAME]` for DNS over TLS (port 853 when none is given;
/// without a name the certificate must carry the address).
pub fn parse_upstream(text: &str) -> Result<UpstreamSpec, String> {
    if let Some(rest) = text.strip_prefix("tls://") {
        let (address, name) = match rest.split_once('#') {
            Some((address, name)) => (address, Some(name)),
            None => (rest, None),
        };
        let address = parse_address(address, DOT_PORT).ok_or_else(|| {
            format!(
                "invalid upstream {text:?}: expected tls://ADDR[:PORT]#SERVER-NAME, e.g. tls://192.0.2.53#dns.example.net or tls://[2001:db8::53]:853#dns.example.net"
            )
        })?;
        let tls = match name {
            None => TlsName::Address,
            Some(name) => {
                let valid = !name.is_empty()
                    && name.parse::<IpAddr>().is_err()
                    && rustls_pki_types::ServerName::try_from(name).is_ok();
                if !valid {
                    return Err(format!(
                        "invalid upstream {text:?}: {name:?} is not a DNS name to check the upstream's certificate against"
                    ));
                }
                TlsName::Dns(name.trim_end_matches('.').to_ascii_lowercase())
            }
        };
        return Ok(UpstreamSpec {
            address,
            tls: Some(tls),
        });
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(format!(
            "invalid upstream {text:?}: unknown scheme {scheme:?} (plain ADDR[:PORT], or tls://ADDR[:PORT]#SERVER-NAME)"
        ));
    }
    parse_address(text, 53).map(UpstreamSpec::plain).ok_or_else(|| {
        format!(
            "invalid upstream {text:?}: expected ADDR, ADDR:PORT or tls://ADDR[:PORT]#SERVER-NAME, e.g. 192.0.2.53, 127.0.0.1:5353, [2001:db8::53]:53 or tls://192.0.2.53#dns.example.net"
        )
    })
}

/// `ADDR`, `ADDR:PORT`, `[V6]` or `[V6]:PORT`, with `default_port` when none is given.
fn parse_address(text: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(address);
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

/// Checks the stagger between upstream starts, in milliseconds: 0 (all at once) to 10 s.
pub fn parse_upstream_stagger(milliseconds: u64) -> Result<Duration, String> {
    const UPSTREAM_STAGGER_MS: Bound = Bound {
        name: "upstream_stagger_ms",
        min: 0,
        max: 10_000,
    };
    UPSTREAM_STAGGER_MS
        .check(milliseconds)
        .map(Duration::from_millis)
}

/// Checks how long a client waits for a refresh before a stale answer: 0 to 10 s.
pub fn parse_stale_answer_delay(milliseconds: u64) -> Result<Duration, String> {
    const STALE_ANSWER_DELAY_MS: Bound = Bound {
        name: "stale_answer_delay_ms",
        min: 0,
        max: 10_000,
    };
    STALE_ANSWER_DELAY_MS
        .check(milliseconds)
        .map(Duration::from_millis)
}

/// Parses how long past expiry an answer may be served stale: seconds (`86400`) or a number
/// with a unit (`90s`, `30m`, `12h`, `1d`); `0` turns serving stale answers off. At most 7 days.
pub fn parse_stale_max_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => 0,
    };
    let seconds = number
        .parse::<u64>()
        .ok()
        .filter(|_| scale > 0)
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| {
            format!(
                "invalid stale_max_age {text:?}: expected seconds or a number with s, m, h or d, e.g. 86400 or \"1d\""
            )
        })?;
    if seconds > 7 * 86_400 {
        return Err(format!(
            "stale_max_age {text:?} is longer than 7 days (RFC 8767 suggests 1 to 3 days)"
        ));
    }
    Ok(Duration::from_secs(seconds))
}

/// Checks that `path` holds at least one PEM certificate (a CA for DNS-over-TLS upstreams).
pub fn check_ca_file(path: &Path) -> Result<(), String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| format!("cannot read upstream CA file {}: {error}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("upstream CA file {}: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "upstream CA file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(())
}

/// The `nameserver` addresses of a resolv.conf text (port 53). Scoped IPv6 link-local entries
/// (`fe80::1%eth0`) are skipped: they need an interface we cannot name portably.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next()?.trim();
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// Whether sending to `upstream` would reach this server itself on one of `listen`.
pub fn is_own_address(upstream: SocketAddr, listen: &[SocketAddr]) -> bool {
    listen.iter().any(|own| {
        own.port() == upstream.port()
            && (own.ip() == upstream.ip()
                || (own.ip().is_unspecified()
                    && (upstream.ip().is_loopback() || upstream.ip().is_unspecified())))
    })
}

/// Parses the metrics listener's `ADDR:PORT`, which must be a loopback address: the metrics
/// are for the machine's own monitoring, not the network.
pub fn parse_metrics_listen(text: &str) -> Result<SocketAddr, String> {
    let address = parse_listen(text)?;
    if address.ip().is_loopback() {
        Ok(address)
    } else {
        Err(format!(
            "metrics address {address} is not a loopback address (127.0.0.0/8 or ::1)"
        ))
    }
}

/// Parses `ADDR:PORT` (`[v6]:PORT` for IPv6).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "invalid listen address {text:?}: expected ADDR:PORT, e.g. 127.0.0.1:5300 or [::1]:5300"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes each case's text to the settings file at `path` and checks that loading it fails
    /// at the case's `:LINE:COLUMN` with a message containing the case's words.
    fn assert_rejected(path: &Path, cases: &[(&str, &str, &str)]) {
        for (text, position, words) in cases {
            std::fs::write(path, text).expect("write");
            let error = Settings::from_file(path).expect_err("rejected").to_string();
            assert!(
                error.contains(&format!("settings.toml{position}")),
                "{text:?}: {error}"
            );
            assert!(error.contains(words), "{text:?}: {error}");
        }
    }

    #[test]
    fn upstream_syntax_table() {
        let cases = [
            ("192.0.2.53", Some("192.0.2.53:53")),
            ("127.0.0.1:5353", Some("127.0.0.1:5353")),
            ("::1", Some("[::1]:53")),
            ("[::1]:5353", Some("[::1]:5353")),
            ("dns.example", None),
            ("127.0.0.1:", None),
        ];
        for (text, expected) in cases {
            let parsed = parse_upstream(text).ok().map(|a| a.to_string());
            assert_eq!(parsed.as_deref(), expected, "{text}");
        }
    }

    #[test]
    fn tls_upstream_syntax_table() {
        let cases = [
            (
                "tls://192.0.2.53#dns.example.net",
                Some("tls://192.0.2.53:853#dns.example.net"),
            ),
            (
                "tls://127.0.0.1:8853#DoT.Example.",
                Some("tls://127.0.0.1:8853#dot.example"),
            ),
            (
                "tls://[2001:db8::53]#dns.example",
                Some("tls://[2001:db8::53]:853#dns.example"),
            ),
            (
                "tls://[2001:db8::53]:8853#dns.example",
                Some("tls://[2001:db8::53]:8853#dns.example"),
            ),
            ("tls://192.0.2.53", Some("tls://192.0.2.53:853")),
            ("tls://192.0.2.53#", None),
            ("tls://192.0.2.53#not a name", None),
            ("tls://192.0.2.53#192.0.2.1", None),
            ("tls://dns.example#dns.example", None),
            ("https://192.0.2.53", None),
            ("udp://192.0.2.53", None),
        ];
        for (text, expected) in cases {
            let parsed = parse_upstream(text).map(|a| a.to_string());
            assert_eq!(
                parsed.as_ref().ok().map(String::as_str),
                expected,
                "{text}: {parsed:?}"
            );
        }
    }

    #[test]
    fn stale_max_age_table() {
        let cases = [
            ("86400", Some(86_400)),
            ("0", Some(0)),
            ("90s", Some(90)),
            ("30m", Some(1_800)),
            ("12h", Some(43_200)),
            ("1d", Some(86_400)),
            ("7d", Some(604_800)),
            ("8d", None),
            ("1w", None),
            ("d", None),
            ("-1", None),
            ("", None),
        ];
        for (text, expected) in cases {
            let parsed = parse_stale_max_age(text).ok().map(|d| d.as_secs());
            assert_eq!(parsed, expected, "{text}");
        }
    }

    #[test]
    fn the_packaged_settings_fail_over_sessions() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/settings.toml");
        let settings = Settings::from_file(&path).expect("the packaged settings are valid");
        assert!(
            settings.observe.enabled && settings.observe.fail_fast,
            "a package install fails over sessions with no further step"
        );
    }

    #[test]
    fn observer_settings_from_the_file_and_their_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("settings.toml");
        std::fs::write(
            &path,
            "observe = false\nobserve_interval_ms = 100\nobserve_syn_retransmits = 3\nobserve_stall_retransmits = 5\nfail_fast = true\n",
        )
        .expect("write");
        let settings = Settings::from_file(&path).expect("valid settings");
        assert_eq!(
            settings.observe,
            ObserveSettings {
                enabled: false,
                interval: Duration::from_millis(100),
                syn_retransmits: 3,
                stall_retransmits: 5,
                fail_fast: true,
            }
        );
        let defaults = ObserveSettings::default();
        assert!(defaults.enabled && !defaults.fail_fast);
        assert_eq!(
            (
                defaults.interval,
                defaults.syn_retransmits,
                defaults.stall_retransmits
            ),
            (Duration::from_millis(250), 1, 3)
        );
        let cases = [
            ("observe_interval_ms = 5\n", ":1:23", "outside 20..=10000"),
            (
                "observe_interval_ms = 60000\n",
                ":1:23",
                "outside 20..=10000",
            ),
            ("observe_syn_retransmits = 0\n", ":1:27", "outside 1..=6"),
            ("observe_syn_retransmits = 300\n", ":1:27", "outside 1..=6"),
            ("observe_stall_retransmits = 1\n", ":1:29", "outside 2..=8"),
            ("observe_stall_retransmits = 9\n", ":1:29", "outside 2..=8"),
            ("observe = \"yes\"\n", ":1:11", "invalid type"),
        ];
        assert_rejected(&path, &cases);
    }

    #[test]
    fn forwarding_settings_from_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("settings.toml");
        std::fs::write(
            &path,
            "upstreams = [\"127.0.0.1:5353\", \"tls://127.0.0.2#dns.example\"]\n\
             backup_upstreams = [\"192.0.2.53\"]\n\
             upstream_stagger_ms = 50\nstale_max_age = \"2h\"\nstale_answer_delay_ms = 400\n",
        )
        .expect("write");
        let settings = Settings::from_file(&path).expect("valid settings");
        let shown = |list: &[UpstreamSpec]| -> Vec<String> {
            list.iter().map(ToString::to_string).collect()
        };
        assert_eq!(
            shown(settings.upstreams.as_deref().unwrap_or_default()),
            ["127.0.0.1:5353", "tls://127.0.0.2:853#dns.example"]
        );
        assert_eq!(shown(&settings.backup_upstreams), ["192.0.2.53:53"]);
        assert_eq!(settings.upstream_stagger, Duration::from_millis(50));
        assert_eq!(settings.stale_max_age, Duration::from_secs(7_200));
        assert_eq!(settings.stale_answer_delay, Duration::from_millis(400));
        assert_eq!(settings.upstream_ca_file, None);

        let defaults = Settings::default();
        assert_eq!(defaults.upstream_stagger, Duration::from_millis(200));
        assert_eq!(defaults.stale_max_age, Duration::from_secs(86_400));
        assert_eq!(defaults.stale_answer_delay, Duration::from_millis(1_800));
        assert!(defaults.backup_upstreams.is_empty());

        std::fs::write(dir.path().join("not-a-ca.pem"), "no certificate here\n").expect("write");
        let cases = [
            (
                "upstreams = [\"1.2.3.4\",\n  \"tls://1.2.3.4#\"]\n",
                ":2:3",
                "not a DNS name",
            ),
            (
                "backup_upstreams = [\"dns.example\"]\n",
                ":1:21",
                "invalid upstream",
            ),
            ("stale_max_age = \"1w\"\n", ":1:17", "invalid stale_max_age"),
            ("stale_max_age = 999999999\n", ":1:17", "longer than 7 days"),
            (
                "upstream_stagger_ms = 60000\n",
                ":1:23",
                "outside 0..=10000",
            ),
            (
                "stale_answer_delay_ms = 10001\n",
                ":1:25",
                "outside 0..=10000",
            ),
            (
                "upstream_ca_file = \"not-a-ca.pem\"\n",
                ":1:20",
                "holds no PEM certificate",
            ),
            (
                "upstream_ca_file = \"missing.pem\"\n",
                ":1:20",
                "cannot read upstream CA file",
            ),
        ];
        assert_rejected(&path, &cases);
    }
    #[test]
    fn resolv_conf_nameservers() {
        let text = "# generated\nsearch example\nnameserver 10.255.255.53\nnameserver ::1 # v6\n;nameserver 9.9.9.9\nnameserver fe80::1%eth0\noptions edns0\n";
        let parsed: Vec<String> = parse_resolv_conf(text)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(parsed, ["10.255.255.53:53", "[::1]:53"]);
    }
    #[test]
    fn own_address_table() {
        let listen: Vec<SocketAddr> = vec![
            "127.0.0.53:53".parse().expect("literal"),
            "0.0.0.0:5300".parse().expect("literal"),
        ];
        let cases = [
            ("127.0.0.53:53", true),
            ("127.0.0.1:53", false),
            ("127.0.0.1:5300", true),
            ("10.255.255.53:5300", false),
            ("127.0.0.53:5353", false),
        ];
        for (upstream, expected) in cases {
            let upstream: SocketAddr = upstream.parse().expect("literal");
            assert_eq!(is_own_address(upstream, &listen), expected, "{upstream}");
        }
    }

    #[test]
    fn file_overrides_defaults_and_resolves_paths() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("settings.toml");
        std::fs::write(
            &path,
            "zones = \"data\"\nlisten = [\"127.0.0.2:53\", \"[::1]:5353\"]\n[identity]\nuser = \"bob\"\ngroups = [\"ops\"]\n",
        )
        .expect("write");
        let settings = Settings::from_file(&path).expect("valid settings");
        assert_eq!(settings.zones_dir, dir.path().join("data"));
        assert_eq!(settings.listen.len(), 2);
        assert_eq!(settings.identity.user.as_deref(), Some("bob"));
        assert_eq!(settings.identity.device, None);
        assert_eq!(settings.control, default_control_path());
    }

    #[test]
    fn default_control_path_table() {
        let os = |text: &str| Some(std::ffi::OsString::from(text));
        let cases = [
            (
                Some(1000),
                os("/run/user/1000"),
                None,
                "/run/user/1000/failover-dns.sock",
            ),
            (
                Some(0),
                os("/run/user/0"),
                None,
                "/run/user/0/failover-dns.sock",
            ),
            (
                Some(0),
                None,
                os("/var/tmp"),
                "/run/failover-dns/control.sock",
            ),
            (
                Some(1000),
                None,
                None,
                "/tmp/failover-dns-1000/control.sock",
            ),
            (
                Some(1000),
                os(""),
                os(""),
                "/tmp/failover-dns-1000/control.sock",
            ),
            (
                Some(1000),
                None,
                os("/var/tmp"),
                "/var/tmp/failover-dns-1000/control.sock",
            ),
        ];
        for (uid, runtime_dir, temporary_dir, expected) in cases {
            assert_eq!(
                control_path_for(uid, runtime_dir.clone(), temporary_dir.clone()),
                PathBuf::from(expected),
                "{uid:?} {runtime_dir:?} {temporary_dir:?}"
            );
        }
    }

    #[test]
    fn limits_and_forward_allow_from_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("settings.toml");
        std::fs::write(
            &path,
            "forward_allow = [\"10.0.0.0/8\", \"::1\"]\n[limits]\nmax_tcp_connections = 8\ntcp_idle_timeout_ms = 250\n",
        )
        .expect("write");
        let settings = Settings::from_file(&path).expect("valid settings");
        assert_eq!(settings.limits.max_tcp_connections, 8);
        assert_eq!(settings.limits.tcp_idle_timeout, Duration::from_millis(250));
        assert_eq!(
            settings.limits.tcp_queries_in_flight,
            Limits::default().tcp_queries_in_flight
        );
        assert!(
            settings
                .forward_allow
                .permits("10.9.8.7".parse().expect("literal"))
        );
        assert!(
            !settings
                .forward_allow
                .permits("127.0.0.1".parse().expect("literal"))
        );
        for (text, position, words) in [
            (
                "[limits]\nmax_tcp_connections = 0\n",
                ":2:23",
                "outside 1..=65535",
            ),
            ("[limits]\ntcp_idle_ms = 5\n", ":2:1", "unknown field"),
            ("forward_allow = [\"lan\"]\n", ":1:18", "invalid network"),
        ] {
            std::fs::write(&path, text).expect("write");
            let error = Settings::from_file(&path)
                .expect_err("rejected")
                .to_string();
            assert!(
                error.contains(&format!("settings.toml{position}")),
                "{error}"
            );
            assert!(error.contains(words), "{error}");
        }
    }

    #[test]
    fn bad_settings_are_located() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("settings.toml");
        let cases = [
            (
                "listen = [\"localhost\"]\n",
                ":1:11",
                "invalid listen address",
            ),
            ("lisen = []\n", ":1:1", "unknown field"),
            (
                "[identity]\nuser = \"a\"\nrole = \"x\"\n",
                ":3:1",
                "unknown field",
            ),
        ];
        assert_rejected(&path, &cases);
    }
}
