//! The command line: `serve` (the default), `check`, `report`, `drain`, `undrain`, `watch`,
//! `status` and `reload`, and what each does.
//! The binary only parses this and calls [`run`].

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};
use std::time::Duration;

use tracing::info;

use crate::config::limits::LimitArgs;
use crate::config::load_zone_dir;
use crate::config::settings::{
    Settings, UpstreamSpec, check_ca_file, parse_listen, parse_metrics_listen,
    parse_stale_answer_delay, parse_stale_max_age, parse_upstream, parse_upstream_stagger,
    parse_upstream_timeout,
};
use crate::control::{ControlError, ControlReply, ControlRequest, ControlSocket};
use crate::dns::snapshot::Snapshot;
use crate::embed::FailoverDns;
use crate::health::{Outcome, ReportSource};
use crate::location::ConfigError;
use crate::ops::readiness::ServiceManager;
use crate::ops::status::render_status_text;
use crate::reload::start_triggers;

/// failover-dns: a small DNS server for a zero-trust agent. For a shared name it answers with
/// every endpoint this client's policies permit, ordered by a live health table the agent feeds,
/// so ordinary applications fail over to a working path.
///
/// With no command it serves: `failover-dns` serves ./zones on 127.0.0.1:5300.
#[derive(Debug, Parser)]
#[command(name = "failover-dns", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options for serving when no command is given.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Log line format on stderr (the filter comes from RUST_LOG; default info when serving:
    /// one line per state change and per error, none per query).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DNS (UDP and TCP) and the control socket until SIGINT or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Validate the settings and zone files without serving. Exit 1 with file:line:column on
    /// errors; exit 0 with a warning for each shared name that a policy grants only in part.
    Check(ConfigArgs),
    /// Feed one connection outcome for an endpoint address to the running server.
    Report(ReportArgs),
    /// Drain a destination for maintenance: its endpoints are answered after every other
    /// endpoint of their names (never removed) until `undrain`. Kept across restarts with
    /// --state-file.
    Drain(DrainArgs),
    /// End a destination's drain: its endpoints are ordered by health again.
    Undrain(DrainArgs),
    /// Print events as they happen (endpoint up/down, a name's first endpoint changing, reloads),
    /// one JSON object per line, until interrupted.
    Watch(ControlArgs),
    /// Show every shared name with its current answer order and each endpoint's health.
    Status(StatusArgs),
    /// Make the running server re-read its settings and zone files. Exit 1 with
    /// file:line:column for each problem when the new configuration is rejected (the last good
    /// one keeps serving).
    Reload(ControlArgs),
}

/// Where settings and zone data come from, and who this client is.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// Settings file (TOML): zones, listen, control, the identity table and more. Flags
    /// override it [default: ./failover-dns.toml when it exists, else built-in defaults]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of zone and policy files (*.toml) [default: ./zones]
    #[arg(long, value_name = "DIR")]
    pub zones: Option<PathBuf>,
    /// This client's user, for policy sources `user:NAME` [default: alice]
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// This client's groups, for policy sources `group:NAME` (repeatable; replaces the default
    /// `engineering`)
    #[arg(long = "group", value_name = "NAME")]
    pub groups: Vec<String>,
    /// This client's device, for policy sources `device:NAME` [default: alice-laptop]
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
}

/// Options of `serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Settings, zones and identity.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Runtime worker threads (TCP, control socket, forwarding); each listen address also gets
    /// this many UDP sockets (SO_REUSEPORT), each read by a thread of its own on Linux
    /// [default: one per CPU]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    /// Address to serve DNS on, UDP and TCP (repeatable; port 0 picks a free port)
    /// [default: 127.0.0.1:5300]
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
    pub listen: Vec<SocketAddr>,
    /// Control socket path [default: $XDG_RUNTIME_DIR/failover-dns.sock; else
    /// /run/failover-dns/control.sock for root; else ${TMPDIR:-/tmp}/failover-dns-UID/control.sock]
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Upstream resolver for names outside the zones (repeatable, raced in order; port 53 if
    /// none given), or tls://ADDR[:PORT]#SERVER-NAME for DNS over TLS (port 853)
    /// [default: the nameservers of --resolv-conf]
    #[arg(long = "upstream", value_name = "UPSTREAM", value_parser = parse_upstream)]
    pub upstreams: Vec<UpstreamSpec>,
    /// Backups, DNS over TLS, racing and serve-stale.
    #[command(flatten)]
    pub forwarding: Box<ForwardingArgs>,
    /// Resolver configuration to read upstreams from when none are named
    /// [default: /etc/resolv.conf]
    #[arg(long, value_name = "FILE")]
    pub resolv_conf: Option<PathBuf>,
    /// Most forwarded answers to cache; 0 disables the cache [default: 10000]
    #[arg(long, value_name = "N")]
    pub cache_size: Option<usize>,
    /// The most memory cached forwarded answers may take, MiB; the answers used least
    /// recently go first [default: 64]
    #[arg(long, value_name = "MB")]
    pub cache_max_mb: Option<usize>,
    /// Connection limits, timeouts and who may use forwarding.
    #[command(flatten)]
    pub limits: Box<LimitArgs>,
    /// Keep the health table in FILE across restarts: restored at start, saved every 10 s and
    /// on shutdown [default: not kept]
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (loopback only) [default: off]
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_metrics_listen)]
    pub metrics: Option<SocketAddr>,
    /// Do not watch the machine's own TCP connections to endpoint addresses (the connection
    /// observer, which turns unanswered connects and stalled sessions into failure reports and
    /// completed connections into successes) [default: on, Linux only]
    #[arg(long, conflicts_with = "fail_fast")]
    pub no_observe: bool,
    /// How often the observer looks at the kernel's sockets while a connect to an endpoint
    /// address waits or a session to one looks stalled, in milliseconds; once a second when
    /// nothing is outstanding [default: 250]
    #[arg(long, value_name = "MS", value_parser = parse_observe_interval_ms)]
    pub observe_interval_ms: Option<Duration>,
    /// When an endpoint goes down and its names have another endpoint that is not down, abort
    /// the connects still waiting on it and the sessions stalled on it, so applications move to
    /// the next address at once. Needs CAP_NET_ADMIN; without it, a warning and off [default:
    /// off; on in the packaged settings]
    #[arg(long)]
    pub fail_fast: bool,
}

fn parse_observe_interval_ms(text: &str) -> Result<Duration, String> {
    crate::config::settings::OBSERVE_INTERVAL_MS
        .parse(text)
        .map(Duration::from_millis)
}

/// Options of `serve` about forwarding beyond the upstreams themselves.
#[derive(Debug, Clone, Default, Args)]
pub struct ForwardingArgs {
    /// How long one upstream may take to answer before it counts as failed, in milliseconds [default: 2000]
    #[arg(long, value_name = "MS", value_parser = parse_timeout_ms)]
    pub upstream_timeout_ms: Option<Duration>,
    /// Backup upstream, asked only once every --upstream failed for a query (repeatable; same
    /// forms as --upstream)
    #[arg(long = "backup-upstream", value_name = "UPSTREAM", value_parser = parse_upstream)]
    pub backup_upstreams: Vec<UpstreamSpec>,
    /// Extra certificate authorities (PEM) to trust for DNS-over-TLS upstreams, besides the
    /// system trust store
    #[arg(long, value_name = "FILE", value_parser = parse_ca_file)]
    pub upstream_ca_file: Option<PathBuf>,
    /// How long after one upstream was asked the next one is asked too, in milliseconds (at
    /// once when it fails; 0: all at once) [default: 200]
    #[arg(long, value_name = "MS", value_parser = parse_stagger_ms)]
    pub upstream_stagger_ms: Option<Duration>,
    /// How long past its expiry a cached answer may be served (TTL 30) when every upstream
    /// fails: seconds, or with a unit (90s, 30m, 12h, 1d); 0 turns it off [default: 1d]
    #[arg(long, value_name = "AGE", value_parser = parse_stale_max_age)]
    pub stale_max_age: Option<Duration>,
    /// How long a query for an expired name waits for the upstreams before it gets the stale
    /// answer, in milliseconds [default: 1800]
    #[arg(long, value_name = "MS", value_parser = parse_stale_delay_ms)]
    pub stale_answer_delay_ms: Option<Duration>,
}

fn whole_ms(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a whole number of milliseconds"))
}

fn parse_stagger_ms(text: &str) -> Result<Duration, String> {
    parse_upstream_stagger(whole_ms(text)?)
}

fn parse_stale_delay_ms(text: &str) -> Result<Duration, String> {
    parse_stale_answer_delay(whole_ms(text)?)
}

fn parse_ca_file(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    check_ca_file(&path)?;
    Ok(path)
}

fn parse_timeout_ms(text: &str) -> Result<Duration, String> {
    let milliseconds: u64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of milliseconds"))?;
    parse_upstream_timeout(milliseconds)
}

/// How to reach the running server.
#[derive(Debug, Clone, Default, Args)]
pub struct ControlArgs {
    /// Control socket path [default: as the server's]
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    /// Settings file to take the control socket path from.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Options of `report`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("outcome").required(true).args(["ok", "fail"])))]
pub struct ReportArgs {
    /// The connection to ADDRESS worked.
    #[arg(long)]
    pub ok: bool,
    /// The connection to ADDRESS failed.
    #[arg(long)]
    pub fail: bool,
    /// The endpoint address the outcome is for.
    #[arg(value_name = "ADDRESS", required_unless_present = "destination")]
    pub address: Option<IpAddr>,
    /// Report for every endpoint address of this destination (asset, virtual asset or subnet
    /// id) instead of one address.
    #[arg(long, value_name = "ID", conflicts_with = "address")]
    pub destination: Option<String>,
    /// Measured round-trip time in milliseconds.
    #[arg(long, value_name = "N")]
    pub rtt_ms: Option<f64>,
    /// Who saw the outcome: `agent` for real traffic (a success puts the path first), `probe`
    /// for a check that only says the path answers (it never reorders healthy paths)
    #[arg(long, value_name = "SOURCE", default_value = "agent", value_parser = parse_report_source)]
    pub source: ReportSource,
    /// How to reach the server.
    #[command(flatten)]
    pub control: ControlArgs,
}

fn parse_report_source(text: &str) -> Result<ReportSource, String> {
    ReportSource::ALL
        .into_iter()
        .find(|source| source.label() == text)
        .ok_or_else(|| {
            format!("{text:?} is not a report source: agent, probe, observer or recheck")
        })
}

/// Options of `drain` and `undrain`.
#[derive(Debug, Clone, Args)]
pub struct DrainArgs {
    /// The destination (asset, virtual asset or subnet id).
    #[arg(value_name = "DESTINATION")]
    pub destination: String,
    /// How to reach the server.
    #[command(flatten)]
    pub control: ControlArgs,
}

/// Options of `status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Print the raw JSON reply instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Explain one name instead: which policy permits or hides each endpoint, its state and
    /// since when, its place in the order.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// How to reach the server.
    #[command(flatten)]
    pub control: ControlArgs,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Settings or zone data are invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The control socket failed.
    #[error("{0}")]
    Control(#[from] ControlError),
    /// A DNS address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Writing output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ConfigArgs {
    /// The settings file: `--config`, else `failover-dns.toml` in the working directory when
    /// there is one (the repository's carries the sample identity), else none.
    fn config_file(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            let default = PathBuf::from(crate::config::settings::DEFAULT_SETTINGS_FILE);
            default.is_file().then_some(default)
        })
    }

    /// Settings from the embedded defaults, the settings file and these flags.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut settings = match self.config_file() {
            Some(path) => Settings::from_file(&path)?,
            None => Settings::default(),
        };
        if let Some(zones) = &self.zones {
            settings.zones_dir = zones.clone();
        }
        if let Some(user) = &self.user {
            settings.identity.user = Some(user.clone());
        }
        if !self.groups.is_empty() {
            settings.identity.groups = self.groups.clone();
        }
        if let Some(device) = &self.device {
            settings.identity.device = Some(device.clone());
        }
        Ok(settings)
    }
}

impl ControlArgs {
    fn path(&self) -> Result<PathBuf, ConfigError> {
        if let Some(path) = &self.control {
            return Ok(path.clone());
        }
        Ok(match &self.config {
            Some(file) => Settings::from_file(file)?.control,
            None => Settings::default().control,
        })
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<ExitCode, CommandError> {
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(*args).await,
        Some(Command::Check(args)) => check(&args),
        Some(Command::Report(args)) => report(&args),
        Some(Command::Drain(args)) => drain(&args, true),
        Some(Command::Undrain(args)) => drain(&args, false),
        Some(Command::Status(args)) => status(&args),
        Some(Command::Watch(args)) => watch(&args),
        Some(Command::Reload(args)) => reload(&args),
    }
}

/// The settings to serve with: defaults, the settings file, then every flag. A reload calls
/// this again, so flags keep overriding the file.
pub fn serve_settings(args: &ServeArgs) -> Result<Settings, ConfigError> {
    let mut settings = args.config.settings()?;
    if !args.listen.is_empty() {
        settings.listen = args.listen.clone();
    }
    if let Some(control) = &args.control {
        settings.control = control.clone();
    }
    if !args.upstreams.is_empty() {
        settings.upstreams = Some(args.upstreams.clone());
    }
    let forwarding = &args.forwarding;
    if !forwarding.backup_upstreams.is_empty() {
        settings.backup_upstreams = forwarding.backup_upstreams.clone();
    }
    if let Some(ca_file) = &forwarding.upstream_ca_file {
        settings.upstream_ca_file = Some(ca_file.clone());
    }
    if let Some(stagger) = forwarding.upstream_stagger_ms {
        settings.upstream_stagger = stagger;
    }
    if let Some(age) = forwarding.stale_max_age {
        settings.stale_max_age = age;
    }
    if let Some(delay) = forwarding.stale_answer_delay_ms {
        settings.stale_answer_delay = delay;
    }
    if let Some(resolv_conf) = &args.resolv_conf {
        settings.resolv_conf = resolv_conf.clone();
    }
    if let Some(timeout) = args.forwarding.upstream_timeout_ms {
        settings.upstream_timeout = timeout;
    }
    if let Some(cache_size) = args.cache_size {
        settings.cache_size = cache_size;
    }
    if let Some(cache_max_mb) = args.cache_max_mb {
        settings.cache_max_mb = cache_max_mb;
    }
    args.limits
        .apply(&mut settings.limits, &mut settings.forward_allow);
    if let Some(state_file) = &args.state_file {
        settings.state_file = Some(state_file.clone());
    }
    if let Some(metrics) = args.metrics {
        settings.metrics = Some(metrics);
    }
    if args.no_observe {
        settings.observe.enabled = false;
    }
    if let Some(interval) = args.observe_interval_ms {
        settings.observe.interval = interval;
    }
    if args.fail_fast {
        settings.observe.fail_fast = true;
    }
    Ok(settings)
}

async fn serve(args: ServeArgs) -> Result<ExitCode, CommandError> {
    let settings = serve_settings(&args)?;
    let reload_args = args.clone();
    // Loaded on the thread every reload loads on, so that every snapshot is built in the same
    // allocator arena (see `load_thread`).
    let initial = settings.clone();
    let dns = crate::reload::load_thread::run(move || {
        FailoverDns::with_settings_loader(initial, Arc::new(move || serve_settings(&reload_args)))
    })
    .await
    .map_err(|error| CommandError::Io(std::io::Error::other(error)))??;
    let mut listeners = Vec::new();
    // One UDP socket per worker thread of the runtime (--workers, else TOKIO_WORKER_THREADS,
    // else one per CPU), so that every worker can answer UDP at once.
    let udp_sockets = tokio::runtime::Handle::current().metrics().num_workers();
    for &address in &settings.listen {
        let listener = crate::net::server::bind_sockets(address, udp_sockets)
            .await
            .map_err(|source| CommandError::Bind { address, source })?;
        listeners.push(listener);
    }
    let metrics = match settings.metrics {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| CommandError::Bind { address, source })?,
        ),
        None => None,
    };
    let control = ControlSocket::bind(&settings.control)?;
    let shutdown = shutdown_signal()?;
    let reload_triggers = start_triggers(dns.reloader(), args.config.config.as_deref())?;
    let snapshot = dns.handler().snapshot().load();
    let (zone_count, name_count) = (
        snapshot.zones.data().zones.len(),
        snapshot.zones.data().names.len(),
    );
    drop(snapshot);
    let mut out = std::io::stdout().lock();
    for listener in &listeners {
        writeln!(out, "listening on udp+tcp {}", listener.local_addr()?)?;
    }
    writeln!(out, "control socket {}", control.path().display())?;
    let forwarder = dns.handler().forwarder();
    let shown =
        |list: Vec<UpstreamSpec>| -> Vec<String> { list.iter().map(ToString::to_string).collect() };
    let (upstreams, backups) = (
        shown(forwarder.upstreams()),
        shown(forwarder.backup_upstreams()),
    );
    if upstreams.is_empty() && backups.is_empty() {
        writeln!(
            out,
            "forwarding: off (no upstream; names outside the zones are refused)"
        )?;
    } else if backups.is_empty() {
        writeln!(out, "forwarding to {}", upstreams.join(", "))?;
    } else {
        writeln!(
            out,
            "forwarding to {} (backups: {})",
            upstreams.join(", "),
            backups.join(", ")
        )?;
    }
    if let Some(listener) = &metrics {
        writeln!(out, "metrics on http://{}/metrics", listener.local_addr()?)?;
    }
    writeln!(
        out,
        "ready: {name_count} shared names in {zone_count} zones from {}",
        settings.zones_dir.display()
    )?;
    out.flush()?;
    drop(out);
    info!(zones = zone_count, names = name_count, "serving");
    let addresses: Vec<String> = listeners
        .iter()
        .filter_map(|listener| listener.local_addr().ok())
        .map(|address| address.to_string())
        .collect();
    // systemd's Type=notify (nothing without NOTIFY_SOCKET): ready now, every reload from now
    // on, and stopping at the signal.
    let service_manager = ServiceManager::from_env();
    service_manager.ready(&format!(
        "serving {name_count} shared names in {zone_count} zones on {}",
        addresses.join(", ")
    ));
    dns.reloader().tell_service_manager(service_manager.clone());
    let shutdown = async move {
        shutdown.await;
        service_manager.stopping();
    };
    dns.serve(listeners, Some(control), metrics, shutdown).await;
    drop(reload_triggers);
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Installs the SIGINT and SIGTERM handlers now (so a signal that arrives right after `ready:`
/// is a clean shutdown, not the default kill) and returns the future that completes on either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => info!("SIGINT received, shutting down"),
            _ = terminate.recv() => info!("SIGTERM received, shutting down"),
        }
    })
}

fn check(args: &ConfigArgs) -> Result<ExitCode, CommandError> {
    let settings = match args.settings() {
        Ok(settings) => settings,
        Err(error) => return Ok(print_config_errors(&error)),
    };
    let data = match load_zone_dir(&settings.zones_dir) {
        Ok(data) => data,
        Err(error) => return Ok(print_config_errors(&error)),
    };
    let snapshot = Snapshot::new(data, settings.identity.clone());
    let warnings = snapshot.warnings();
    let mut out = std::io::stdout().lock();
    for warning in &warnings {
        writeln!(out, "warning: {warning}")?;
    }
    let data = snapshot.zones.data();
    writeln!(
        out,
        "ok: {} zones, {} shared names, {} destinations, {} policies in {} ({} warnings)",
        data.zones.len(),
        data.names.len(),
        data.destinations.len(),
        data.policies.len(),
        settings.zones_dir.display(),
        warnings.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn print_config_errors(error: &ConfigError) -> ExitCode {
    for diagnostic in &error.diagnostics {
        eprintln!("{}: error: {}", diagnostic.location, diagnostic.message);
    }
    ExitCode::FAILURE
}

fn report(args: &ReportArgs) -> Result<ExitCode, CommandError> {
    let path = args.control.path()?;
    let outcome = if args.ok {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let reply = crate::control::request(
        &path,
        &ControlRequest::Report {
            address: args.address,
            destination: args.destination.clone(),
            outcome,
            rtt_ms: args.rtt_ms,
            source: Some(args.source),
        },
    )?;
    let mut out = std::io::stdout().lock();
    match reply {
        ControlReply::Reported { results } => {
            for result in results {
                writeln!(
                    out,
                    "{}: {} ({} consecutive failures); names: {}",
                    result.address,
                    result.state,
                    result.consecutive_failures,
                    result.names.join(", ")
                )?;
            }
        }
        other => writeln!(out, "{}", serde_json::to_string(&other).unwrap_or_default())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn drain(args: &DrainArgs, draining: bool) -> Result<ExitCode, CommandError> {
    let path = args.control.path()?;
    let destination = args.destination.clone();
    let request = if draining {
        ControlRequest::Drain { destination }
    } else {
        ControlRequest::Undrain { destination }
    };
    let reply = crate::control::request(&path, &request)?;
    let mut out = std::io::stdout().lock();
    match reply {
        ControlReply::Drain {
            destination,
            draining,
            changed,
        } => {
            let now = if draining {
                "draining: answered after every other endpoint"
            } else {
                "not draining: ordered by health"
            };
            let already = if changed { "" } else { " (already)" };
            writeln!(out, "{destination}: {now}{already}")?;
        }
        other => writeln!(out, "{}", serde_json::to_string(&other).unwrap_or_default())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn watch(args: &ControlArgs) -> Result<ExitCode, CommandError> {
    let path = args.path()?;
    let mut out = std::io::stdout();
    crate::control::watch(&path, |line| {
        // Stop quietly when stdout goes away (`failover-dns watch | head`).
        writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
    })?;
    Ok(ExitCode::SUCCESS)
}

fn status(args: &StatusArgs) -> Result<ExitCode, CommandError> {
    let path = args.control.path()?;
    let request = match &args.name {
        Some(name) => ControlRequest::Explain { name: name.clone() },
        None => ControlRequest::Status {},
    };
    let reply = crate::control::request(&path, &request)?;
    let mut out = std::io::stdout().lock();
    match reply {
        ControlReply::Status(report) if !args.json => {
            write!(out, "{}", render_status_text(&report, SystemTime::now()))?;
        }
        ControlReply::Explanation(explanation) if !args.json => {
            let text =
                crate::ops::explain::render_explanation_text(&explanation, SystemTime::now());
            write!(out, "{text}")?;
        }
        reply => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&reply).unwrap_or_default()
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

fn reload(args: &ControlArgs) -> Result<ExitCode, CommandError> {
    let path = args.path()?;
    match crate::control::request(&path, &ControlRequest::Reload {}) {
        Ok(ControlReply::Reloaded {
            generation,
            zones,
            names,
            restart_needed,
            warnings,
        }) => {
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            for setting in &restart_needed {
                eprintln!(
                    "warning: {setting} changed in the settings file; it takes effect after a restart"
                );
            }
            println!("reloaded: generation {generation}, {names} shared names in {zones} zones");
            Ok(ExitCode::SUCCESS)
        }
        Ok(other) => {
            Err(ControlError::BadReply(serde_json::to_string(&other).unwrap_or_default()).into())
        }
        Err(ControlError::Rejected(error)) => {
            for line in error.lines() {
                eprintln!("{line}");
            }
            eprintln!("reload failed: still serving the last good configuration");
            Ok(ExitCode::FAILURE)
        }
        Err(error) => Err(error.into()),
    }
}
