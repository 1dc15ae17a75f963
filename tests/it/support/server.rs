//! The harness's server: start the real `failover-dns` binary on a free loopback port with zone
//! files of the test's own, wait until it answers DNS, talk to it with `dig` and the CLI, and stop
//! it with SIGTERM when the test is done.
//!
//! Every server starts through one builder, [`Server::builder`] (its options: arguments, a
//! wrapper command, a network namespace, the default log level, SIGTERM at `ready:`), and every
//! process through one spawn-until-ready, which a test's own prepared `serve` command can use
//! too ([`ServerBuilder::spawn_prepared`]).
//!
//! Readiness is observed, never slept for: the server announces its port and then `ready:` on
//! stdout, and [`ServerBuilder::start`] returns only once `dig` got a reply for the zone apex SOA.
//! Every server lives in a temporary directory of its own (zones, control socket), so tests run
//! in parallel; [`Server::restart`] starts the process again in the same directory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::dig::{Dig, dig_wrapped};
use super::zones::zone_dir;

/// The `failover-dns` binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_failover-dns");
/// How long the server may take to print `ready:` and answer its first query.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the server may take to exit after SIGTERM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on readiness probes; each one waits for `dig`, so this is not a busy loop bound
/// but a guard against one.
const MAX_READINESS_PROBES: usize = 200;

/// Runs the binary with `args` and waits for it (for subcommands that need no server).
pub fn failover_dns(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run failover-dns")
}

/// A running `failover-dns serve`, started through [`Server::builder`] (or [`Server::start`]).
/// Dropping it sends SIGTERM and waits for the process.
pub struct Server {
    /// `ip netns exec NAME` for a server in a network namespace: the server and the harness's own
    /// `dig`s run under it. Empty for none.
    netns_exec: Vec<String>,
    /// A command the server runs under (`prlimit …`), inside the namespace if any; empty for
    /// none.
    wrapper: Vec<String>,
    child: Option<Child>,
    dir: TempDir,
    /// The test's own arguments, kept for [`Server::restart`].
    extra_args: Vec<String>,
    /// Whether the server runs with its own default log filter instead of the harness's
    /// `RUST_LOG=failover_dns=debug`.
    default_log_level: bool,
    port: u16,
    metrics: Option<SocketAddr>,
    origin: Option<String>,
    stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<JoinHandle<()>>,
    /// What the processes before the last [`Server::restart`] logged, for a failing test.
    earlier_stderr: String,
}

/// How a [`Server`] starts: made by [`Server::builder`], configured by its methods, run by
/// [`ServerBuilder::start`]. Without options the server runs `failover-dns serve` on its zones,
/// a free loopback port and a control socket in its directory, logging at debug level.
#[must_use = "nothing starts until `start`"]
pub struct ServerBuilder {
    /// The server the options configure, not started yet.
    server: Server,
    /// Whether [`ServerBuilder::start`] sends SIGTERM at `ready:` and returns without querying.
    sigterm_at_ready: bool,
}

impl ServerBuilder {
    /// Adds `args` (identity flags, `--upstream`, ...) to the server's command line, after the
    /// harness's own; they are kept for [`Server::restart`].
    pub fn args(mut self, args: &[&str]) -> ServerBuilder {
        let args = args.iter().map(ToString::to_string);
        self.server.extra_args.extend(args);
        self
    }

    /// Runs the server under `wrapper`, a command that execs the rest of its arguments (such as
    /// `prlimit --nofile=1024`), so its pid is the server's.
    pub fn wrapped_by(mut self, wrapper: &[&str]) -> ServerBuilder {
        self.server.wrapper = wrapper.iter().map(ToString::to_string).collect();
        self
    }

    /// Runs the server, and the harness's `dig`s, in the network namespace `netns` (see
    /// `support::netns`).
    pub fn in_netns(mut self, netns: &str) -> ServerBuilder {
        self.server.netns_exec = ["ip", "netns", "exec", netns].map(String::from).to_vec();
        self
    }

    /// Runs the server with `RUST_LOG` unset, so it logs at its own default level (what users
    /// see), not the harness's debug level.
    pub fn default_log_level(mut self) -> ServerBuilder {
        self.server.default_log_level = true;
        self
    }

    /// Sends the server SIGTERM the moment it prints `ready:`, as a supervisor may. The signal
    /// comes from a shell that is already waiting for the word, so it lands within microseconds
    /// of the line rather than after a process start. [`ServerBuilder::start`] then returns
    /// without querying the server, and [`Server::stop`] collects the exit status.
    pub fn sigterm_at_ready(mut self) -> ServerBuilder {
        self.sigterm_at_ready = true;
        self
    }

    /// Starts the server and returns once it printed `ready:` and answers DNS (once it printed
    /// `ready:` and got its SIGTERM, with [`ServerBuilder::sigterm_at_ready`]).
    pub fn start(self) -> Server {
        let ServerBuilder {
            mut server,
            sigterm_at_ready,
        } = self;
        server.launch(sigterm_at_ready);
        if !sigterm_at_ready {
            server.wait_until_answering();
        }
        server
    }

    /// For a `serve` the harness does not set up, one the test prepared itself (as another
    /// user, with its default control socket, in an environment of its own): runs `command` as
    /// it is, through the same spawn-until-ready as [`ServerBuilder::start`], and returns the
    /// process once it printed `ready:`. Neither its announcement nor its DNS is checked; its
    /// stdout and stderr are read on in the background; stopping it is the test's.
    pub fn spawn_prepared(command: Command) -> Child {
        spawn_until_ready(command, false).child
    }
}

impl Server {
    /// How to start a server on `zone_files`: see [`ServerBuilder`] for the options.
    pub fn builder(zone_files: &[(&str, &str)]) -> ServerBuilder {
        ServerBuilder {
            server: Server::new(zone_files),
            sigterm_at_ready: false,
        }
    }

    /// Starts a server on `zone_files` with `extra_args` (identity flags, ...) and returns once
    /// it answers DNS: [`Server::builder`] with [`ServerBuilder::args`] only.
    pub fn start(zone_files: &[(&str, &str)], extra_args: &[&str]) -> Server {
        Server::builder(zone_files).args(extra_args).start()
    }

    /// Stops the server if it still runs (SIGTERM, as [`Server::stop`]) and starts it again in
    /// the same directory — same zones, control socket and arguments (so the same
    /// `--state-file`) — returning once it answers. [`Server::stderr`] then holds the new
    /// process's log only.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(status.success(), "clean exit before the restart: {status}");
        }
        let previous = self.stderr();
        self.earlier_stderr.push_str(&previous);
        self.launch(false);
        self.wait_until_answering();
    }

    /// A server not started yet, with no options.
    fn new(zone_files: &[(&str, &str)]) -> Server {
        Server {
            netns_exec: Vec::new(),
            wrapper: Vec::new(),
            child: None,
            dir: zone_dir(zone_files),
            extra_args: Vec::new(),
            default_log_level: false,
            port: 0,
            metrics: None,
            origin: first_zone_origin(zone_files),
            stdout: Vec::new(),
            stderr: Arc::new(Mutex::new(String::new())),
            stderr_reader: None,
            earlier_stderr: String::new(),
        }
    }

    /// Runs `failover-dns serve` in the server's directory and waits for `ready:` (sending
    /// SIGTERM at it, when `sigterm_at_ready`), then checks what it announced.
    fn launch(&mut self, sigterm_at_ready: bool) {
        let dir = self.dir.path();
        let zones = dir.join("zones");
        let control = dir.join("control.sock");
        let mut prefix = self.netns_exec.iter().chain(&self.wrapper);
        let mut command = match prefix.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(prefix).arg(BINARY);
                command
            }
            None => Command::new(BINARY),
        };
        command
            .arg("serve")
            .arg("--zones")
            .arg(&zones)
            .args(["--listen", "127.0.0.1:0", "--control"])
            .arg(&control);
        // Never the machine's own resolv.conf: its nameservers are not on loopback. Tests that
        // forward name their upstreams (--upstream) or a --resolv-conf of their own.
        if !self.extra_args.iter().any(|arg| arg == "--resolv-conf") {
            let resolv_conf = dir.join("resolv.conf");
            std::fs::write(&resolv_conf, "# no upstreams unless a test names them\n")
                .expect("write an empty resolv.conf");
            command.arg("--resolv-conf").arg(resolv_conf);
        }
        command.args(&self.extra_args).env("NO_COLOR", "1");
        if self.default_log_level {
            command.env_remove("RUST_LOG");
        } else {
            // Query outcomes in the log that a failing test prints, without colour codes.
            command.env("RUST_LOG", "failover_dns=debug");
        }
        // A failed startup reports its own log: nothing for `Drop` to add.
        self.port = 0;
        self.metrics = None;
        let ready = spawn_until_ready(command, sigterm_at_ready);
        self.child = Some(ready.child);
        self.stdout = ready.stdout;
        self.stderr = ready.stderr;
        self.stderr_reader = Some(ready.stderr_reader);
        (self.port, self.metrics) = self.announced_ports(&control);
    }

    /// Checks the startup announcement (`listening on udp+tcp ADDR` once per listen address,
    /// `control socket PATH`, `forwarding …`, `metrics on http://ADDR/metrics` with `--metrics`
    /// only, `ready: …`, in that order) and returns the port of the first listen address (the
    /// harness's own `127.0.0.1:0`) and the metrics address.
    fn announced_ports(&self, control: &Path) -> (u16, Option<SocketAddr>) {
        let listening = self
            .stdout
            .iter()
            .take_while(|line| line.starts_with("listening on udp+tcp "))
            .count();
        let (listen_lines, rest) = self.stdout.split_at(listening);
        let (first, control_line, forwarding, metrics, ready) = match (listen_lines, rest) {
            ([first, ..], [control_line, forwarding, ready]) => {
                (first, control_line, forwarding, None, ready)
            }
            ([first, ..], [control_line, forwarding, metrics, ready]) => {
                (first, control_line, forwarding, Some(metrics), ready)
            }
            _ => panic!("unexpected startup lines {:?}", self.stdout),
        };
        let metrics = metrics.map(|line| {
            let address: SocketAddr = line
                .strip_prefix("metrics on http://")
                .and_then(|rest| rest.strip_suffix("/metrics"))
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("bad metrics line {line:?}"));
            assert!(
                address.ip().is_loopback() && address.port() != 0,
                "{address}"
            );
            address
        });
        let address: SocketAddr = first
            .strip_prefix("listening on udp+tcp ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("bad listening line {first:?}"));
        assert_eq!(
            *control_line,
            format!("control socket {}", control.display()),
            "control socket line"
        );
        assert!(
            forwarding.starts_with("forwarding"),
            "forwarding line: {forwarding:?}"
        );
        assert!(
            ready.ends_with(&format!("from {}", self.zones_dir().display())),
            "ready line names the zones directory: {ready:?}"
        );
        assert!(
            address.ip().is_loopback() && address.port() != 0,
            "{address}"
        );
        (address.port(), metrics)
    }

    /// Where the server serves metrics (`--metrics`), as it announced.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics
    }

    /// Every address the server announced (`listening on udp+tcp ADDR`), in `--listen` order;
    /// the first is the harness's own.
    pub fn listen_addresses(&self) -> Vec<SocketAddr> {
        self.stdout
            .iter()
            .filter_map(|line| line.strip_prefix("listening on udp+tcp "))
            .filter_map(|address| address.parse().ok())
            .collect()
    }

    /// The startup line that says where names outside the zones go.
    pub fn forwarding_line(&self) -> &str {
        self.stdout
            .iter()
            .find(|line| line.starts_with("forwarding"))
            .map_or("", String::as_str)
    }

    /// Queries the zone apex SOA until a reply comes back (the port answers, the handler runs).
    fn wait_until_answering(&self) {
        let apex = self.origin.clone().unwrap_or_else(|| ".".to_string());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut last_error = String::new();
        for _ in 0..MAX_READINESS_PROBES {
            if Instant::now() > deadline {
                break;
            }
            match self.try_dig(&[&apex, "SOA"]) {
                Ok(reply) if reply.has_flag("qr") => return,
                Ok(reply) => last_error = format!("reply without qr:\n{reply}"),
                Err(error) => last_error = error,
            }
        }
        panic!(
            "server on port {} did not answer `dig {apex} SOA`: {last_error}\n--- server stderr \
             ---\n{}",
            self.port,
            self.stderr()
        );
    }

    /// The server's process id (for signals other than the harness's own SIGTERM). Panics once
    /// the server was stopped, so a test never signals a reused or zero pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// The origin of the first zone (fully qualified, lower case): the apex the harness asks for
    /// readiness, and whose SOA a negative answer carries.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The control socket's path.
    pub fn control_path(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    /// The zones directory the server was started on.
    pub fn zones_dir(&self) -> PathBuf {
        self.dir.path().join("zones")
    }

    /// Everything the server logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    /// Runs `dig @127.0.0.1 -p PORT +time=2 +tries=1 ARGS...` and parses the reply; panics with
    /// the raw output (and the server's log) when there is no reply or it cannot be parsed.
    pub fn dig(&self, args: &[&str]) -> Dig {
        self.try_dig(args)
            .unwrap_or_else(|error| panic!("{error}\n--- server stderr ---\n{}", self.stderr()))
    }

    /// Like [`Server::dig`], but a `dig` that got no reply is an `Err`. A reply that cannot be
    /// parsed still panics.
    pub fn try_dig(&self, args: &[&str]) -> Result<Dig, String> {
        dig_wrapped(&self.netns_exec, "127.0.0.1", self.port, args)
    }

    /// Runs `failover-dns ARGS... --control PATH` against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut full: Vec<&str> = args.to_vec();
        let control = self.control_path();
        let control = control.to_str().expect("temporary paths are UTF-8");
        full.extend(["--control", control]);
        failover_dns(&full)
    }

    /// Starts `failover-dns ARGS... --control PATH` against this server without waiting for it
    /// (for `watch`, which runs until stopped), with stdout and stderr piped.
    pub fn spawn_cli(&self, args: &[&str]) -> Child {
        Command::new(BINARY)
            .args(args)
            .arg("--control")
            .arg(self.control_path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn failover-dns")
    }

    /// Reports one connection outcome for `address` and returns the command's stdout; panics
    /// when the report is rejected.
    pub fn report(&self, ok: bool, address: &str) -> String {
        let outcome = if ok { "--ok" } else { "--fail" };
        let output = self.cli(&["report", outcome, address]);
        assert!(
            output.status.success(),
            "report {outcome} {address} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("report prints UTF-8")
    }

    /// The A answers for `name`, in order.
    pub fn addresses(&self, name: &str) -> Vec<String> {
        let reply = self.dig(&[name, "A"]);
        assert_eq!(reply.status, "NOERROR", "dig {name} A:\n{reply}");
        reply
            .answer_data()
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// Sends SIGTERM and waits for the process to exit. The temporary directory stays until
    /// the `Server` is dropped, so the test can look at what the process left behind; and
    /// [`Server::stderr`] holds everything the process logged, to its last line.
    pub fn stop(&mut self) -> ExitStatus {
        let status = self.terminate().unwrap_or_else(|| {
            panic!("server did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM")
        });
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        status
    }

    /// [`terminate`]s the process, if it still runs.
    fn terminate(&mut self) -> Option<ExitStatus> {
        terminate(self.child.take()?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let status = self.terminate();
        // A failed startup already reported the log; a failed test gets it here.
        if std::thread::panicking() && self.port != 0 {
            if let Some(reader) = self.stderr_reader.take() {
                let _ = reader.join();
            }
            if !self.earlier_stderr.is_empty() {
                eprintln!(
                    "--- failover-dns serve, before the last restart, stderr ---\n{}",
                    self.earlier_stderr
                );
            }
            eprintln!(
                "--- failover-dns serve on port {} (exit {status:?}) stderr ---\n{}",
                self.port,
                self.stderr()
            );
        }
    }
}

/// A `failover-dns serve` that printed `ready:`: the process, what it printed up to that line,
/// and its log so far (`stderr`, which `stderr_reader` keeps filling until the process exits).
struct Ready {
    child: Child,
    stdout: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stderr_reader: JoinHandle<()>,
}

/// The harness's one spawn-until-ready: runs `command` with stdout and stderr piped and returns
/// once it printed a `ready: ` line (after sending it SIGTERM, when `sigterm_at_ready`). Both
/// pipes are read on in the background, so the server never blocks on a full pipe. Panics with
/// what it printed when it closes stdout first, or prints no `ready:` within [`STARTUP_TIMEOUT`].
fn spawn_until_ready(mut command: Command, sigterm_at_ready: bool) -> Ready {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let stderr = Arc::new(Mutex::new(String::new()));
    let stderr_reader = {
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(read @ 1..) = pipe.read(&mut chunk) {
                let text = String::from_utf8_lossy(&chunk[..read]);
                stderr.lock().expect("stderr buffer").push_str(&text);
            }
        })
    };
    let lines = {
        let pipe = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        // Keeps draining stdout after `ready:` so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        receiver
    };
    let mut terminator = sigterm_at_ready.then(|| {
        let pid = child.id().to_string();
        Command::new("sh")
            .args(["-c", "read -r _ && kill -TERM \"$1\"", "sh", &pid])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh")
    });
    let mut stdout = Vec::new();
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let failure = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let ready = line.starts_with("ready: ");
                stdout.push(line);
                if ready {
                    if let Some(terminator) = &mut terminator {
                        let mut stdin = terminator.stdin.take().expect("stdin is piped");
                        stdin.write_all(b"go\n").expect("arm the terminator");
                        drop(stdin);
                        terminator.wait().expect("wait for the terminator");
                    }
                    return Ready {
                        child,
                        stdout,
                        stderr,
                        stderr_reader,
                    };
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                break format!("printed no `ready:` line within {STARTUP_TIMEOUT:?}");
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break "closed stdout before `ready:`".to_string();
            }
        }
    };
    let status = terminate(child);
    let _ = stderr_reader.join();
    panic!(
        "failover-dns serve {failure} (exit: {status:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        stdout.join("\n"),
        stderr.lock().expect("stderr buffer")
    );
}

/// SIGTERM, wait up to [`SHUTDOWN_TIMEOUT`], SIGKILL after that. `None` when it had to be
/// killed (or was already reaped).
fn terminate(mut child: Child) -> Option<ExitStatus> {
    let pid = child.id().to_string();
    // The crate forbids `unsafe`, so no libc::kill: the `kill` command does the same.
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait());
    });
    match receiver.recv_timeout(SHUTDOWN_TIMEOUT) {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            let _ = receiver.recv();
            None
        }
    }
}

/// The origin of the first `[[zone]]` in the files, in the order the server reads them (by file
/// name), fully qualified.
fn first_zone_origin(files: &[(&str, &str)]) -> Option<String> {
    let mut files = files.to_vec();
    files.sort_by_key(|(name, _)| *name);
    files.iter().find_map(|(_, text)| {
        let table: toml::Table = toml::from_str(text).ok()?;
        let origin = table.get("zone")?.as_array()?.first()?.get("origin")?;
        let origin = origin.as_str()?.trim_end_matches('.');
        Some(format!("{}.", origin.to_ascii_lowercase()))
    })
}

/// `failover-dns status --json`, parsed.
pub fn status_json(server: &Server) -> Value {
    let output = server.cli(&["status", "--json"]);
    assert!(output.status.success(), "status --json: {output:?}");
    serde_json::from_slice(&output.stdout).expect("status --json prints JSON")
}

/// Every (name, address, state) in a status reply, in its order.
pub fn endpoint_states(status: &Value) -> Vec<(String, String, String)> {
    let mut states = Vec::new();
    for name in status["names"].as_array().expect("names is a list") {
        for endpoint in name["endpoints"].as_array().expect("endpoints is a list") {
            states.push((
                name["name"].as_str().expect("name").to_string(),
                endpoint["address"].as_str().expect("address").to_string(),
                endpoint["state"].as_str().expect("state").to_string(),
            ));
        }
    }
    states
}

/// The state `status --json` gives `address` (the first name carrying it).
pub fn state_of(server: &Server, address: &str) -> String {
    let status = status_json(server);
    endpoint_states(&status)
        .into_iter()
        .find(|(_, a, _)| a == address)
        .map(|(_, _, state)| state)
        .unwrap_or_else(|| panic!("{address} is in no name's endpoints: {status}"))
}
