//! The server's own settings, as opposed to the zone data it serves: where the zone files are,
//! the addresses to listen on, the control socket, this client's identity, and how names outside
//! the zones are forwarded (upstreams, backups, DNS over TLS, racing, serve-stale). Embedded
//! defaults, overlaid by a settings file, overlaid by command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::limits::{ForwardAllow, Limits};
use crate::model::Identity;
use crate::os::default_control_path;

pub use crate::config::values::{TlsName, UpstreamSpec};

/// How long one upstream may take to answer when nothing else is said.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwarded answers cached when nothing else is said.
pub const DEFAULT_CACHE_SIZE: usize = 10_000;
/// The most memory cached forwarded answers may take when nothing else is said, MiB.
pub const DEFAULT_CACHE_MAX_MB: usize = 64;
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
#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
                "listen = []\n",
                ":1:10",
                "listen must name at least one address",
            ),
            (
                "[identity]\nuser = \"a\"\nrole = \"x\"\n",
                ":3:1",
                "unknown field",
            ),
        ];
        assert_rejected(&path, &cases);
    }
}
