//! The command line: `serve` (the default), `check`, `report`, `drain`, `undrain`, `watch`,
//! `status` and `reload`, and what each does, on the library's public API.

pub mod docs;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};

use tracing::info;

use failover_dns::{
    ConfigError, ControlClient, ControlError, ControlReply, ControlRequest, ControlSocket,
    FailoverDns, Outcome, ReportSource, Settings, SettingsLayer, UpstreamSpec,
};

/// The settings file read when `--config` names none and it exists in the working directory:
/// the repository's own carries the sample identity the sample zones' policies grant.
const DEFAULT_SETTINGS_FILE: &str = "failover-dns.toml";

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
    Check(Box<ConfigArgs>),
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
    /// Every setting of the settings file, as a flag.
    #[command(flatten)]
    pub settings: SettingsLayer,
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
            let default = PathBuf::from(DEFAULT_SETTINGS_FILE);
            default.is_file().then_some(default)
        })
    }

    /// Settings from the embedded defaults, the settings file and these flags. A reload calls
    /// this again, so flags keep overriding the file.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        Settings::layered(self.config_file().as_deref(), self.settings.clone())
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

/// The command line as clap sees it, each setting's help ending in its default as the
/// setting declarations and [`Settings::default`] give it (so `--help`, the man
/// pages and the completions cannot drift from the code).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    with_defaults(Cli::command())
        .mut_subcommand("serve", with_defaults)
        .mut_subcommand("check", with_defaults)
}

/// The parsed command line (exits with clap's message and status 2 on a usage error).
/// Setting flags are checked here, by the same code as the settings file but before it is
/// read: a bad value is a usage error (status 2), whatever the file says.
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    let mut command = command();
    let matches = command.get_matches_mut();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let flags = match &cli.command {
        None => Some(&cli.serve.config.settings),
        Some(Command::Serve(args)) => Some(&args.config.settings),
        Some(Command::Check(args)) => Some(&args.settings),
        Some(_) => None,
    };
    if let Some(Err(error)) = flags.map(|flags| Settings::layered(None, flags.clone())) {
        command
            .error(clap::error::ErrorKind::ValueValidation, error)
            .exit();
    }
    cli
}

fn with_defaults(mut command: clap::Command) -> clap::Command {
    for (key, default) in SettingsLayer::shown_defaults() {
        command = command.mut_arg(key, |arg| {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [default: {default}]"))
        });
    }
    command
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

async fn serve(args: ServeArgs) -> Result<ExitCode, CommandError> {
    let settings = args.config.settings()?;
    let reload_args = args.clone();
    // Loaded on the thread every reload loads on, so that every snapshot is built in the same
    // allocator arena.
    let dns = FailoverDns::builder(settings.clone())
        .reload_settings_with(Arc::new(move || reload_args.config.settings()))
        .notify_service_manager()
        .load()
        .await?;
    let mut listeners = Vec::new();
    // One UDP socket per worker thread of the runtime (--workers, else TOKIO_WORKER_THREADS,
    // else one per CPU), so that every worker can answer UDP at once.
    let udp_sockets = tokio::runtime::Handle::current().metrics().num_workers();
    for &address in &settings.listen {
        let listener = failover_dns::bind_sockets(address, udp_sockets)
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
    let reload_triggers = dns.start_reload_triggers(args.config.config.as_deref())?;
    let (zone_count, name_count) = dns.zone_counts();
    let mut out = std::io::stdout().lock();
    for listener in &listeners {
        writeln!(out, "listening on udp+tcp {}", listener.local_addr()?)?;
    }
    writeln!(out, "control socket {}", control.path().display())?;
    let shown =
        |list: Vec<UpstreamSpec>| -> Vec<String> { list.iter().map(ToString::to_string).collect() };
    let (upstreams, backups) = dns.upstreams();
    let (upstreams, backups) = (shown(upstreams), shown(backups));
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
    let report = match failover_dns::check(&settings) {
        Ok(report) => report,
        Err(error) => return Ok(print_config_errors(&error)),
    };
    let mut out = std::io::stdout().lock();
    for warning in &report.warnings {
        writeln!(out, "warning: {warning}")?;
    }
    writeln!(
        out,
        "ok: {} zones, {} shared names, {} destinations, {} policies in {} ({} warnings)",
        report.zones,
        report.names,
        report.destinations,
        report.policies,
        settings.zones_dir.display(),
        report.warnings.len()
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
    let reply = ControlClient::new(&path).request(&ControlRequest::Report {
        address: args.address,
        destination: args.destination.clone(),
        outcome,
        rtt_ms: args.rtt_ms,
        source: Some(args.source),
    })?;
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
    let reply = ControlClient::new(&path).request(&request)?;
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
    ControlClient::new(&path).watch(|line| {
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
    let reply = ControlClient::new(&path).request(&request)?;
    let mut out = std::io::stdout().lock();
    match reply {
        ControlReply::Status(report) if !args.json => {
            write!(out, "{}", report.render_text(SystemTime::now()))?;
        }
        ControlReply::Explanation(explanation) if !args.json => {
            let text = explanation.render_text(SystemTime::now());
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
    match ControlClient::new(&path).request(&ControlRequest::Reload {}) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The settings `failover-dns check ARGS...` would use, with `file` as the settings file.
    fn settings_of(file: Option<&std::path::Path>, args: &[&str]) -> Result<Settings, String> {
        use clap::FromArgMatches;
        let mut line = vec!["failover-dns", "check"];
        // Without a file of its own, an empty one: not the checkout's failover-dns.toml.
        let file_text = file.map_or_else(|| "/dev/null".to_string(), |p| p.display().to_string());
        line.extend(["--config", file_text.as_str()]);
        line.extend(args);
        let matches = command()
            .try_get_matches_from(line)
            .map_err(|error| error.to_string())?;
        let cli = Cli::from_arg_matches(&matches).map_err(|error| error.to_string())?;
        let Some(Command::Check(config)) = cli.command else {
            return Err("not check".to_string());
        };
        config.settings().map_err(|error| error.to_string())
    }

    #[test]
    fn flags_override_the_file_and_are_checked_like_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("settings.toml");
        std::fs::write(
            &file,
            "cache_size = 5\nzones = \"data\"\nfail_fast = true\n[limits]\nmax_tcp_connections = 9\n[identity]\nuser = \"bob\"\ngroups = [\"ops\"]\n",
        )
        .expect("write");
        let from_file = settings_of(Some(&file), &[]).expect("valid");
        assert_eq!(from_file.cache_size, 5);
        assert_eq!(from_file.zones_dir, dir.path().join("data"));
        assert!(from_file.observe.fail_fast);
        assert_eq!(from_file.limits.max_tcp_connections, 9);
        let layered = settings_of(
            Some(&file),
            &[
                "--cache-size",
                "7",
                "--zones",
                "here",
                "--max-tcp-connections",
                "3",
                "--group",
                "a",
                "--group",
                "b",
                "--upstream-timeout-ms",
                "150",
                "--stale-max-age",
                "2h",
            ],
        )
        .expect("valid");
        assert_eq!(layered.cache_size, 7);
        // A path on the command line is relative to the working directory, not the file.
        assert_eq!(layered.zones_dir, PathBuf::from("here"));
        assert_eq!(layered.limits.max_tcp_connections, 3);
        assert_eq!(layered.identity.user.as_deref(), Some("bob"));
        assert_eq!(layered.identity.groups, ["a", "b"]);
        assert_eq!(layered.upstream_timeout, Duration::from_millis(150));
        assert_eq!(layered.stale_max_age, Duration::from_secs(7_200));

        let defaults = Settings::default();
        assert_eq!(settings_of(None, &[]).expect("valid"), defaults);
        let switches = settings_of(None, &["--no-observe"]).expect("valid");
        assert!(!switches.observe.enabled && defaults.observe.enabled);
        let switches = settings_of(None, &["--fail-fast"]).expect("valid");
        assert!(switches.observe.fail_fast && !defaults.observe.fail_fast);
        assert!(settings_of(None, &["--no-observe", "--fail-fast"]).is_err());

        for (args, words) in [
            (
                &["--upstream-timeout-ms", "5"][..],
                "--upstream-timeout-ms: upstream_timeout_ms 5 is outside 10..=30000",
            ),
            (
                &["--upstream", "tls://1.2.3.4#"],
                "--upstream: invalid upstream",
            ),
            (
                &["--forward-allow", "lan"],
                "--forward-allow: invalid network",
            ),
            (&["--observe-syn-retransmits", "9"], "outside 1..=6"),
            (&["--metrics", "0.0.0.0:9153"], "not a loopback address"),
            (&["--cache-size", "many"], "invalid value"),
        ] {
            let error = settings_of(None, args).expect_err("rejected");
            assert!(error.contains(words), "{args:?}: {error}");
        }
    }

    #[test]
    fn help_shows_each_default_from_the_code() {
        let mut serve = command();
        let help = serve
            .find_subcommand_mut("serve")
            .expect("serve")
            .render_long_help()
            .to_string();
        let defaults = Settings::default();
        for expected in [
            format!("[default: {}]", defaults.upstream_timeout.as_millis()),
            format!("[default: {}]", defaults.limits.max_tcp_connections),
            "[default: 1d]".to_string(),
            "[default: 127.0.0.1:5300]".to_string(),
            "[default: 127.0.0.0/8, ::1/128]".to_string(),
        ] {
            assert!(help.contains(&expected), "{expected} missing from:\n{help}");
        }
    }
}
