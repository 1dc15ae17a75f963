//! Live reload against the real binary: a file change takes effect within a second without a
//! restart; every kind of broken configuration keeps the old answers and shows its
//! FILE:LINE:COLUMN in `status` until a good one replaces it; `SIGHUP`, the control request and
//! `failover-dns reload` reload too; health and command-line flags survive a reload; settings
//! that need a restart say so.
//!
//! Waiting is observed, never slept for: [`wait_for`] polls (with `dig` or the CLI, each poll a
//! process run) until the condition holds or a deadline passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::zones::{
    APP_PRIMARY, APP_VIA_BERLIN, APP_ZONE, app_via_berlin_toml, internal_zone_toml,
};
use crate::support::{Server, status_json, text};

/// How long a change may take before a test fails; generous for a loaded 2-core machine, so a
/// failure message can show how long it really took.
const POLL_DEADLINE: Duration = Duration::from_secs(5);
/// What a change picked up by the file watcher must show.
const PROMISED: Duration = Duration::from_secs(1);
/// Upper bound on polls, whatever the deadline: each poll runs a process.
const MAX_POLLS: usize = 500;

/// A second file that adds `db.internal`.
const DB: &str = r#"[[asset]]
id = "db-host"
kind = "primary"
addresses = ["100.64.2.10"]
names = ["db.internal"]

[[policy]]
id = "db"
sources = ["*"]
destinations = ["db-host"]
"#;

const APP: [&str; 2] = [APP_PRIMARY, APP_VIA_BERLIN];

/// Polls `probe` until it returns `Some`, at most [`POLL_DEADLINE`]; returns the value and the
/// time it took. Panics with `what` when the deadline passes.
fn wait_for<T>(what: &str, server: &Server, mut probe: impl FnMut() -> Option<T>) -> (T, Duration) {
    let start = Instant::now();
    for _ in 0..MAX_POLLS {
        if let Some(value) = probe() {
            return (value, start.elapsed());
        }
        if start.elapsed() > POLL_DEADLINE {
            break;
        }
    }
    panic!(
        "{what}: not within {POLL_DEADLINE:?}\n--- server stderr ---\n{}",
        server.stderr()
    );
}

/// The A answers of `name` as (status, addresses), without asserting anything.
fn lookup(server: &Server, name: &str) -> (String, Vec<String>) {
    let reply = server.dig(&[name, "A"]);
    let addresses = reply
        .answer_data()
        .into_iter()
        .map(str::to_string)
        .collect();
    (reply.status, addresses)
}

/// Writes `text` to `dir/name` the way an editor or a console does: a hidden temporary file
/// renamed over the real one, so the watcher never sees half a file.
fn replace_file(dir: &Path, name: &str, text: &str) {
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, text).expect("write the temporary file");
    std::fs::rename(&temporary, dir.join(name)).expect("rename into place");
}

fn write_file(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write a zone file");
}

/// `failover-dns reload` against `server`, with its stdout and stderr for messages.
fn reload(server: &Server) -> (Output, String, String) {
    let output = server.cli(&["reload"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    (output, stdout, stderr)
}

/// A settings file of the test's own (the harness writes only zones).
fn settings_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("settings.toml");
    std::fs::write(&path, text).expect("write the settings file");
    (dir, path)
}

#[test]
fn a_file_change_takes_effect_within_a_second_without_restart() {
    let server = Server::start(&[("zone.toml", APP_ZONE)], &[]);
    assert_eq!(lookup(&server, "db.internal").0, "NXDOMAIN");

    // A new file: the new name answers. The time runs from the write to the first changed
    // answer.
    replace_file(&server.zones_dir(), "db.toml", DB);
    let ((), elapsed) = wait_for(
        "db.internal answers after db.toml appeared",
        &server,
        || {
            let (status, addresses) = lookup(&server, "db.internal");
            (status == "NOERROR" && addresses == ["100.64.2.10"]).then_some(())
        },
    );
    assert!(
        elapsed <= PROMISED,
        "db.internal answered {elapsed:?} after the write (promised: {PROMISED:?})"
    );
    assert_eq!(
        server.addresses("app.internal"),
        APP,
        "other names unchanged"
    );

    // A changed policy: disabling it hides the name.
    let started = Instant::now();
    let disabled = DB.replace("id = \"db\"\n", "id = \"db\"\nenabled = false\n");
    replace_file(&server.zones_dir(), "db.toml", &disabled);
    let ((), elapsed) = wait_for("db.internal disappears with its policy", &server, || {
        (lookup(&server, "db.internal").0 == "NXDOMAIN").then_some(())
    });
    assert!(
        elapsed <= PROMISED,
        "the policy change took {elapsed:?} (promised: {PROMISED:?}; {:?} since the write)",
        started.elapsed()
    );

    let log = server.stderr();
    assert!(
        log.contains("configuration reloaded") && log.contains("trigger=watcher"),
        "one info line per reload names the trigger:\n{log}"
    );
    let status = status_json(&server);
    assert!(
        status["config"]["generation"].as_u64() >= Some(3),
        "{status}"
    );
    assert!(status["config"]["last_error"].is_null(), "{status}");
}

/// `DB` as a management console pushes it: the same data as JSON.
const DB_JSON: &str = r#"{
  "asset": [{"id": "db-host", "kind": "primary", "addresses": ["100.64.2.10"], "names": ["db.internal"]}],
  "policy": [{"id": "db", "sources": ["*"], "destinations": ["db-host"]}]
}"#;

#[test]
fn a_json_file_in_the_zones_directory_is_read_and_its_changes_reload() {
    let server = Server::start(&[("zone.toml", APP_ZONE), ("db.json", DB_JSON)], &[]);
    assert_eq!(
        lookup(&server, "db.internal"),
        ("NOERROR".to_string(), vec!["100.64.2.10".to_string()]),
        "a *.json zone file is read at start"
    );

    // The console pushes a new address: the watcher reloads on a *.json change too.
    replace_file(
        &server.zones_dir(),
        "db.json",
        &DB_JSON.replace("100.64.2.10", "100.64.2.11"),
    );
    wait_for("db.internal follows the changed db.json", &server, || {
        let (status, addresses) = lookup(&server, "db.internal");
        (status == "NOERROR" && addresses == ["100.64.2.11"]).then_some(())
    });
    let log = server.stderr();
    assert!(
        log.contains("configuration reloaded") && log.contains("trigger=watcher"),
        "the change reloaded through the watcher:\n{log}"
    );
}

#[test]
fn garbage_keeps_the_old_answers_and_shows_where_until_a_good_write() {
    let server = Server::start(&[("zone.toml", APP_ZONE)], &[]);
    let zones = server.zones_dir();

    write_file(&zones, "zone.toml", "this is not = = toml\n");
    let (error, _) = wait_for("status shows the failed reload", &server, || {
        status_json(&server)["config"]["last_error"]
            .as_str()
            .map(str::to_string)
    });
    let file = zones.join("zone.toml");
    let expected = format!("{}:1:", file.display());
    assert!(error.starts_with(&expected), "{expected} in {error:?}");
    assert_eq!(server.addresses("app.internal"), APP, "old answers serve");

    let output = server.cli(&["status"]);
    let table = text(&output.stdout);
    assert!(
        table.contains("last reload FAILED") && table.contains(&expected),
        "status text shows the error:\n{table}"
    );
    let log = server.stderr();
    assert!(
        log.lines()
            .any(|line| line.contains("ERROR") && line.contains(&expected)),
        "the error is logged with file:line:column:\n{log}"
    );

    // A good write clears the error and serves the new data.
    write_file(&zones, "zone.toml", &format!("{APP_ZONE}\n{DB}"));
    wait_for("the good write serves db.internal", &server, || {
        (lookup(&server, "db.internal").1 == ["100.64.2.10"]).then_some(())
    });
    let status = status_json(&server);
    assert!(status["config"]["last_error"].is_null(), "{status}");
    assert!(!text(&server.cli(&["status"]).stdout).contains("FAILED"));
}

/// One broken configuration: the file to write, its text, where the error must point
/// (line:column in that file) and a word of the message.
type Broken<'a> = (&'a str, &'a str, String, &'a str, &'a str);

#[test]
fn every_kind_of_broken_configuration_keeps_the_old_answers() {
    let server = Server::start(&[("zone.toml", APP_ZONE)], &[]);
    let zones = server.zones_dir();
    // Sorted after zone.toml, so its duplicate is the second declaration.
    let extra = "zz-extra.toml";
    let cut = APP_ZONE.find("100.64.1.10").expect("the primary address") + 5;
    let cases: &[Broken<'_>] = &[
        (
            "syntax error",
            extra,
            "[[asset]\n".into(),
            "1:9",
            "expected",
        ),
        (
            "unknown destination",
            extra,
            "[[policy]]\nid = \"p2\"\nsources = [\"*\"]\ndestinations = [\"nope\"]\n".into(),
            "4:17",
            "unknown destination",
        ),
        (
            "duplicate id",
            extra,
            "[[asset]]\nid = \"app-host\"\nkind = \"gateway\"\n".into(),
            "2:6",
            "duplicate destination id",
        ),
        (
            "invalid address",
            extra,
            "[[asset]]\nid = \"x\"\nkind = \"primary\"\naddresses = [\"10.0.0.300\"]\n".into(),
            "4:14",
            "invalid IP address",
        ),
        (
            "invalid CIDR",
            extra,
            "[[subnet]]\nid = \"s\"\ngateway = \"gw-berlin\"\ncidr = \"10.1.0.0/33\"\n".into(),
            "4:8",
            "invalid CIDR",
        ),
        (
            "file truncated mid-write",
            "zone.toml",
            APP_ZONE[..cut].to_string(),
            "12:20",
            "expected `]`",
        ),
    ];
    let mut failures = Vec::new();
    for (what, file, broken, at, word) in cases {
        write_file(&zones, file, broken);
        let (output, _, stderr) = reload(&server);
        let expected = format!("{}:{at}", zones.join(file).display());
        if output.status.code() != Some(1) || !stderr.contains(&expected) || !stderr.contains(word)
        {
            failures.push(format!(
                "{what}: reload exited {:?}, expected 1 and {expected} … {word:?} in:\n{stderr}",
                output.status.code()
            ));
        }
        let (status, addresses) = lookup(&server, "app.internal");
        if status != "NOERROR" || addresses != APP {
            failures.push(format!(
                "{what}: app.internal answered {status} {addresses:?}"
            ));
        }
        let shown = status_json(&server)["config"]["last_error"]
            .as_str()
            .is_some_and(|error| error.contains(&expected));
        if !shown {
            failures.push(format!("{what}: status does not show {expected}"));
        }
        // Repair: the next reload is good again.
        let _ = std::fs::remove_file(zones.join(extra));
        write_file(&zones, "zone.toml", APP_ZONE);
        let (output, stdout, stderr) = reload(&server);
        if !output.status.success() || !stdout.starts_with("reloaded: generation ") {
            failures.push(format!("{what}: repair failed: {stdout}{stderr}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}\n--- server stderr ---\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n"),
        server.stderr()
    );
}

#[test]
fn sighup_reloads() {
    let server = Server::start(&[("zone.toml", APP_ZONE)], &[]);
    let before = status_json(&server)["config"]["generation"].as_u64();
    assert_eq!(before, Some(1), "startup is generation 1");
    // No file changes, so only the signal can cause this reload.
    let pid = server.pid().to_string();
    let sent = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -HUP {pid}");
    wait_for("generation 2 after SIGHUP", &server, || {
        (status_json(&server)["config"]["generation"].as_u64() == Some(2)).then_some(())
    });
    let log = server.stderr();
    assert!(
        log.lines()
            .any(|line| line.contains("configuration reloaded") && line.contains("trigger=SIGHUP")),
        "{log}"
    );
    assert_eq!(server.addresses("app.internal"), APP, "still serving");
}

#[test]
fn control_request_and_reload_command_reply_with_the_outcome() {
    let server = Server::start(&[("zone.toml", APP_ZONE)], &[]);
    let zones = server.zones_dir();

    // The raw control request: the reply comes once the new data serves.
    write_file(&zones, "db.toml", DB);
    let reply = control_request(&server, "{\"op\":\"reload\"}");
    assert_eq!(reply["reply"], "reloaded", "{reply}");
    assert_eq!(
        (reply["names"].as_u64(), reply["zones"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(reply["generation"].as_u64() >= Some(2), "{reply}");
    assert_eq!(
        server.addresses("db.internal"),
        ["100.64.2.10"],
        "serving already"
    );

    write_file(
        &zones,
        "db.toml",
        "[[policy]]\nid = \"db\"\nsources = [\"*\"]\ndestinations = [\"gone\"]\n",
    );
    let reply = control_request(&server, "{\"op\":\"reload\"}");
    assert_eq!(reply["reply"], "error", "{reply}");
    let expected = format!(
        "{}:4:17: unknown destination",
        zones.join("db.toml").display()
    );
    assert!(
        reply["error"]
            .as_str()
            .is_some_and(|e| e.starts_with(&expected)),
        "{expected} in {reply}"
    );

    // The subcommand: exit 1 with the located error, then 0 once the file is good.
    let (output, _, stderr) = reload(&server);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        stderr.contains("still serving the last good configuration"),
        "{stderr}"
    );
    assert_eq!(
        server.addresses("db.internal"),
        ["100.64.2.10"],
        "last good data serves"
    );

    write_file(&zones, "db.toml", DB);
    let (output, stdout, stderr) = reload(&server);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("reloaded: generation ") && stdout.contains("2 shared names in 1 zones"),
        "{stdout}"
    );
}

/// Sends one line on the control socket and parses the reply line.
fn control_request(server: &Server, line: &str) -> Value {
    use std::io::{BufRead, BufReader, Write};
    let mut stream =
        std::os::unix::net::UnixStream::connect(server.control_path()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set read timeout");
    stream
        .write_all(format!("{line}\n").as_bytes())
        .expect("write the request");
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .expect("read the reply");
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply {reply:?} is JSON: {e}"))
}

#[test]
fn health_survives_a_reload() {
    let server = Server::start(&[("zone.toml", APP_ZONE)], &[]);
    assert_eq!(server.addresses("app.internal"), APP);
    server.report(false, APP[0]);
    assert_eq!(server.addresses("app.internal"), [APP[1], APP[0]]);

    write_file(&server.zones_dir(), "db.toml", DB);
    let (output, stdout, stderr) = reload(&server);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert_eq!(server.addresses("db.internal"), ["100.64.2.10"]);
    assert_eq!(
        server.addresses("app.internal"),
        [APP[1], APP[0]],
        "the failed endpoint is still last"
    );
    let status = status_json(&server);
    let app = status["names"]
        .as_array()
        .and_then(|names| names.iter().find(|n| n["name"] == "app.internal."))
        .unwrap_or_else(|| panic!("app.internal. in {status}"));
    let endpoints = &app["endpoints"];
    assert_eq!(endpoints[1]["address"], APP[0], "{status}");
    assert_eq!(endpoints[1]["state"], "down", "{status}");
    assert_eq!(endpoints[1]["consecutive_failures"], 1, "{status}");
}

/// The network with a third endpoint (`app-via-munich`) and no usual policy: one policy per
/// identity, each granting one endpoint, so the answer shows which identity is in effect.
const IDENTITY_ZONE: &str = concat!(
    internal_zone_toml!(),
    "\n",
    app_via_berlin_toml!(),
    r#"
[[virtual_asset]]
id = "app-via-munich"
gateway = "gw-berlin"
addresses = ["172.20.0.10"]
names = ["app.internal"]

[[policy]]
id = "engineering"
sources = ["group:engineering"]
destinations = ["app-host"]

[[policy]]
id = "ops"
sources = ["group:ops"]
destinations = ["app-via-berlin"]

[[policy]]
id = "flag-laptop"
sources = ["device:flag-laptop"]
destinations = ["app-via-munich"]
"#
);

#[test]
fn identity_change_in_the_settings_file_takes_effect_and_flags_still_win() {
    let (_dir, path) = settings_file(
        "[identity]\nuser = \"alice\"\ngroups = [\"engineering\"]\ndevice = \"file-laptop\"\n",
    );
    let config = path.to_str().expect("temporary paths are UTF-8");
    let server = Server::start(
        &[("zone.toml", IDENTITY_ZONE)],
        &["--config", config, "--device", "flag-laptop"],
    );
    assert_eq!(
        server.addresses("app.internal"),
        ["100.64.1.10", "172.20.0.10"],
        "group from the file, device from the flag"
    );

    // The watcher sees the settings file too.
    let dir = path.parent().expect("the settings file has a directory");
    replace_file(
        dir,
        "settings.toml",
        "[identity]\nuser = \"alice\"\ngroups = [\"ops\"]\ndevice = \"other-laptop\"\n",
    );
    let (addresses, _) = wait_for("the new group's grants apply", &server, || {
        let addresses = lookup(&server, "app.internal").1;
        (addresses.first().map(String::as_str) != Some("100.64.1.10")).then_some(addresses)
    });
    assert_eq!(
        addresses,
        ["10.10.0.10", "172.20.0.10"],
        "ops now, and --device still overrides the file's device"
    );
}

#[test]
fn settings_that_need_a_restart_keep_their_running_value_and_say_so() {
    // An upstream on loopback that is never queried: only owned names are asked.
    let (_dir, path) = settings_file("upstreams = [\"127.0.0.1:9\"]\n");
    let config = path.to_str().expect("temporary paths are UTF-8");
    let server = Server::start(&[("zone.toml", APP_ZONE)], &["--config", config]);
    assert_eq!(server.forwarding_line(), "forwarding to 127.0.0.1:9");

    std::fs::write(&path, "upstreams = [\"127.0.0.1:10\"]\n").expect("rewrite the settings");
    write_file(&server.zones_dir(), "db.toml", DB);
    let (output, stdout, stderr) = reload(&server);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("upstreams changed in the settings file; it takes effect after a restart"),
        "{stderr}"
    );
    assert_eq!(
        server.addresses("db.internal"),
        ["100.64.2.10"],
        "the rest reloaded"
    );
    let status = status_json(&server);
    assert_eq!(
        status["config"]["restart_needed"][0], "upstreams",
        "{status}"
    );
    let log = server.stderr();
    assert!(
        log.lines()
            .any(|line| line.contains("WARN") && line.contains("until a restart")),
        "{log}"
    );

    // A broken settings file is an error like a broken zone file.
    std::fs::write(&path, "upstreams = [\"not an address\"]\n").expect("break the settings");
    let (output, _, stderr) = reload(&server);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:1:", path.display())),
        "{stderr}"
    );
    assert_eq!(server.addresses("db.internal"), ["100.64.2.10"]);
}

#[test]
fn a_reload_of_unchanged_files_rebuilds_nothing_and_the_next_change_is_read() {
    let server = Server::start(&[("zone.toml", APP_ZONE)], &[]);
    let zones = server.zones_dir();
    for round in 0..2 {
        let (output, _, stderr) = reload(&server);
        assert!(output.status.success(), "reload {round}: {stderr}");
    }
    // The log is read from the server's stderr as it comes, so it may lag the reply a little.
    wait_for(
        "the second reload found the files as the first built them",
        &server,
        || {
            server
                .stderr()
                .lines()
                .any(|line| {
                    line.contains("configuration reloaded") && line.contains("unchanged=true")
                })
                .then_some(())
        },
    );
    // A new file, then the same file rewritten in place (same inode, same length) right away:
    // each is read by the reload that follows it.
    write_file(&zones, "db.toml", DB);
    let (output, _, stderr) = reload(&server);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(lookup(&server, "db.internal").1, ["100.64.2.10"]);
    write_file(&zones, "db.toml", &DB.replace("100.64.2.10", "100.64.2.11"));
    let (output, _, stderr) = reload(&server);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(lookup(&server, "db.internal").1, ["100.64.2.11"]);
}
