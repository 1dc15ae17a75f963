//! How forwarding behaves: the upstreams, timeouts, stagger, bounds and cache sizes, taken from
//! the server's settings (named upstreams, else the system resolver configuration, never this
//! server's own listen addresses).

use std::time::Duration;

use crate::config::limits::Limits;
use crate::config::settings::{
    DEFAULT_CACHE_MAX_MB, DEFAULT_CACHE_SIZE, DEFAULT_STALE_ANSWER_DELAY, DEFAULT_STALE_MAX_AGE,
    DEFAULT_UPSTREAM_STAGGER, DEFAULT_UPSTREAM_TIMEOUT, Settings, UpstreamSpec,
};
use crate::config::values::{is_own_address, parse_resolv_conf};

/// How forwarding behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSettings {
    /// Upstream resolvers, in order of preference.
    pub upstreams: Vec<UpstreamSpec>,
    /// Upstreams asked only once every primary has failed for a query.
    pub backup_upstreams: Vec<UpstreamSpec>,
    /// Extra CA certificates (PEM) for DNS-over-TLS upstreams.
    pub upstream_ca_file: Option<std::path::PathBuf>,
    /// How long one upstream may take to answer.
    pub timeout: Duration,
    /// How long after one attempt started the next one starts (at once when it fails).
    pub stagger: Duration,
    /// How long a forwarded query may take in all, across every upstream tried.
    pub total_timeout: Duration,
    /// Consecutive failures after which an upstream is held down.
    pub failures_before_hold_down: u32,
    /// How long a held-down upstream is skipped (unless every upstream is held down).
    pub hold_down: Duration,
    /// Upstream queries outstanding at once, whoever waits for them (a client's race, an
    /// attempt that lost one and finishes in the background, a stale answer's refresh): each
    /// holds a socket. Past it, an attempt is not started (the next upstream is tried, or the
    /// query fails).
    pub max_outstanding: usize,
    /// Most answers kept in the cache; 0 disables it.
    pub cache_size: usize,
    /// The most memory the cached answers may take, bytes (as [`cache::entry_cost`] estimates).
    pub cache_max_bytes: usize,
    /// How long past expiry an answer may be served stale; zero: never.
    pub stale_max_age: Duration,
    /// How long a client waits for a refresh before it gets the stale answer.
    pub stale_answer_delay: Duration,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        ForwardSettings {
            upstreams: Vec::new(),
            backup_upstreams: Vec::new(),
            upstream_ca_file: None,
            timeout: DEFAULT_UPSTREAM_TIMEOUT,
            stagger: DEFAULT_UPSTREAM_STAGGER,
            total_timeout: Duration::from_secs(5),
            failures_before_hold_down: 2,
            hold_down: Duration::from_secs(30),
            max_outstanding: Limits::default().forwards_in_flight,
            cache_size: DEFAULT_CACHE_SIZE,
            cache_max_bytes: DEFAULT_CACHE_MAX_MB << 20,
            stale_max_age: DEFAULT_STALE_MAX_AGE,
            stale_answer_delay: DEFAULT_STALE_ANSWER_DELAY,
        }
    }
}

impl ForwardSettings {
    /// The forwarding settings `settings` give: the named upstreams, else the `nameserver`
    /// lines of its `resolv_conf`; either way without this server's own listen addresses (a
    /// forwarding loop). Returns them with one note per upstream dropped or problem found, for
    /// the log.
    pub fn from_settings(settings: &Settings) -> (ForwardSettings, Vec<String>) {
        let mut notes = Vec::new();
        let candidates = match &settings.upstreams {
            Some(upstreams) => upstreams.clone(),
            None => match std::fs::read_to_string(&settings.resolv_conf) {
                Ok(text) => parse_resolv_conf(&text)
                    .into_iter()
                    .map(UpstreamSpec::plain)
                    .collect(),
                Err(error) => {
                    notes.push(format!(
                        "cannot read {}: {error}; names outside the zones will be refused",
                        settings.resolv_conf.display()
                    ));
                    Vec::new()
                }
            },
        };
        let mut seen = Vec::new();
        let mut keep = |list: Vec<UpstreamSpec>, notes: &mut Vec<String>| {
            let mut kept = Vec::new();
            for upstream in list {
                if is_own_address(upstream.address, &settings.listen) {
                    notes.push(format!(
                        "upstream {upstream} is this server's own listen address; dropped to avoid a forwarding loop"
                    ));
                } else if !seen.contains(&upstream) {
                    seen.push(upstream.clone());
                    kept.push(upstream);
                }
            }
            kept
        };
        let upstreams = keep(candidates, &mut notes);
        let backup_upstreams = keep(settings.backup_upstreams.clone(), &mut notes);
        let forward = ForwardSettings {
            upstreams,
            backup_upstreams,
            upstream_ca_file: settings.upstream_ca_file.clone(),
            timeout: settings.upstream_timeout,
            stagger: settings.upstream_stagger,
            max_outstanding: settings.limits.forwards_in_flight,
            cache_size: settings.cache_size,
            cache_max_bytes: settings.cache_max_mb.saturating_mul(1 << 20),
            stale_max_age: settings.stale_max_age,
            stale_answer_delay: settings.stale_answer_delay,
            ..ForwardSettings::default()
        };
        (forward, notes)
    }
}
