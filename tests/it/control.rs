//! The control socket and the commands on top of it: owner-only permissions, error replies that
//! keep the connection (and the server) alive, `report` and `status` as the agent uses them, and
//! removal of the socket on shutdown.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::Value;

use crate::support::zones::{app_policy_toml, app_via_berlin_toml, internal_zone_toml};
use crate::support::{Server, expect_answers, failover_dns};

/// The network and the usual policy, plus `app-standby` (10.10.0.11): a virtual asset of the
/// name that no policy grants, which `status` lists as not permitted.
const ZONE: &str = concat!(
    internal_zone_toml!(),
    "\n",
    app_via_berlin_toml!(),
    r#"
[[virtual_asset]]
id = "app-standby"
gateway = "gw-berlin"
addresses = ["10.10.0.11"]
names = ["app.internal"]
"#,
    "\n",
    app_policy_toml!()
);

/// One connection to the control socket, a JSON line each way.
struct Control {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Control {
    fn connect(server: &Server) -> Control {
        let stream = UnixStream::connect(server.control_path()).expect("connect to the socket");
        let timeout = Some(Duration::from_secs(10));
        stream.set_read_timeout(timeout).expect("set read timeout");
        stream
            .set_write_timeout(timeout)
            .expect("set write timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone the stream"));
        Control {
            writer: stream,
            reader,
        }
    }

    /// Sends `line` (a newline is added) and parses the one-line reply.
    fn ask(&mut self, line: &str) -> Value {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .expect("write a request");
        let mut reply = String::new();
        self.reader.read_line(&mut reply).expect("read a reply");
        assert!(
            reply.ends_with('\n'),
            "reply to {line:?} is one line: {reply:?}"
        );
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply {reply:?} is JSON: {e}"))
    }
}

#[test]
fn control_socket_is_a_socket_only_its_owner_may_use() {
    let server = Server::start(&[("zone.toml", ZONE)], &[]);
    let metadata = std::fs::symlink_metadata(server.control_path()).expect("the socket exists");
    assert!(metadata.file_type().is_socket(), "{metadata:?}");
    assert_eq!(
        metadata.permissions().mode() & 0o777,
        0o600,
        "mode {:o}",
        metadata.permissions().mode()
    );
}

#[test]
fn bad_requests_get_an_error_reply_and_the_connection_keeps_serving() {
    let server = Server::start(&[("zone.toml", ZONE)], &[]);
    let mut control = Control::connect(&server);
    for garbage in [
        "garbage",
        "",
        "{\"op\":\"reboot\"}",
        "{\"op\":\"report\",\"address\":\"100.64.1.10\",\"outcome\":\"maybe\"}",
        "{\"op\":\"report\",\"address\":\"100.64.1.10\",\"outcome\":\"failure\",\"rtt_ms\":-1}",
        "{\"op\":\"report\",\"address\":\"100.64.1.10\",\"outcome\":\"success\",\"rtt_ms\":1.8e22}",
        "{\"op\":\"report\",\"address\":\"100.64.1.10\",\"outcome\":\"success\",\"rtt_ms\":3600001}",
        "{\"op\":\"report\",\"outcome\":\"failure\"}",
        "{\"op\":\"report\",\"address\":\"100.64.1.10\",\"destination\":\"app-host\",\"outcome\":\"failure\"}",
        "{\"op\":\"report\",\"destination\":\"no-such-id\",\"outcome\":\"failure\"}",
        "{\"op\":\"explain\",\"name\":\"nope.internal\"}",
    ] {
        let reply = control.ask(garbage);
        assert_eq!(reply["reply"], "error", "{garbage:?} → {reply}");
        assert!(
            reply["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{garbage:?} → {reply}"
        );
    }
    // The same connection still answers.
    let status = control.ask("{\"op\":\"status\"}");
    assert_eq!(status["reply"], "status", "{status}");
    assert_eq!(status["names"][0]["name"], "app.internal.", "{status}");
    let reported =
        control.ask("{\"op\":\"report\",\"address\":\"100.64.1.10\",\"outcome\":\"failure\"}");
    assert_eq!(reported["reply"], "reported", "{reported}");
    let result = &reported["results"][0];
    assert_eq!(result["address"], "100.64.1.10", "{reported}");
    assert_eq!(result["previous"], "unknown", "{reported}");
    assert_eq!(result["state"], "down", "{reported}");
    assert_eq!(result["consecutive_failures"], 1, "{reported}");
    assert_eq!(
        result["names"],
        serde_json::json!(["app.internal."]),
        "{reported}"
    );
    // A bad request (the rejected rtt above included) changed nothing; the report did.
    expect_answers(
        &server,
        &[(
            &["app.internal", "A"],
            "NOERROR",
            &["10.10.0.10", "100.64.1.10"],
        )],
    );
}

#[test]
fn report_for_an_address_that_is_no_endpoint_is_rejected() {
    let server = Server::start(&[("zone.toml", ZONE)], &[]);
    let output = server.cli(&["report", "--fail", "192.0.2.77"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("192.0.2.77 is not the address of any endpoint"),
        "{stderr}"
    );
    assert_eq!(
        server.addresses("app.internal"),
        ["100.64.1.10", "10.10.0.10"]
    );
}

#[test]
fn report_and_status_without_a_running_server_name_the_socket_path() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("nobody-listens.sock");
    let path = path.to_str().expect("temporary paths are UTF-8");
    for args in [
        &["report", "--fail", "100.64.1.10", "--control", path][..],
        &["status", "--control", path][..],
    ] {
        let output = failover_dns(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains(path) && stderr.contains("is the server running?"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn status_json_lists_the_answer_order_dig_gives() {
    let server = Server::start(&[("zone.toml", ZONE)], &[]);
    server.report(false, "100.64.1.10");
    let output = server.cli(&["report", "--ok", "10.10.0.10", "--rtt-ms", "12.5"]);
    assert!(output.status.success(), "{output:?}");
    let dig_order = server.addresses("app.internal");
    assert_eq!(dig_order, ["10.10.0.10", "100.64.1.10"]);

    let output = server.cli(&["status", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let status: Value = serde_json::from_slice(&output.stdout).expect("status --json is JSON");
    assert_eq!(status["reply"], "status", "{status}");
    let names = status["names"].as_array().expect("names is a list");
    let [app] = names.as_slice() else {
        panic!("one shared name: {status}");
    };
    assert_eq!(app["name"], "app.internal.", "{app}");
    assert_eq!(app["order"], serde_json::json!(dig_order), "{app}");
    // Every endpoint: the permitted ones in answer order with their health, then the hidden one.
    let endpoints: Vec<(&str, &str, bool, &str)> = app["endpoints"]
        .as_array()
        .expect("endpoints is a list")
        .iter()
        .map(|e| {
            (
                e["address"].as_str().expect("address"),
                e["destination"].as_str().expect("destination"),
                e["permitted"].as_bool().expect("permitted"),
                e["state"].as_str().expect("state"),
            )
        })
        .collect();
    assert_eq!(
        endpoints,
        [
            ("10.10.0.10", "app-via-berlin", true, "up"),
            ("100.64.1.10", "app-host", true, "down"),
            ("10.10.0.11", "app-standby", false, "unknown"),
        ],
        "{app}"
    );
    assert_eq!(app["endpoints"][0]["rtt_ms"], 12.5, "{app}");
    assert_eq!(app["endpoints"][1]["consecutive_failures"], 1, "{app}");

    // The table for people says the same.
    let output = server.cli(&["status"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("answer order: 10.10.0.10, 100.64.1.10"),
        "{text}"
    );
}

#[test]
fn control_socket_survives_bytes_that_are_not_utf8_and_half_lines() {
    let server = Server::start(&[("zone.toml", ZONE)], &[]);
    // Raw bytes that are not UTF-8, and a connection closed mid-line.
    {
        let mut stream = UnixStream::connect(server.control_path()).expect("connect");
        stream.write_all(b"\xff\xfe\n").expect("write");
        let mut reply = String::new();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set read timeout");
        BufReader::new(&stream)
            .read_line(&mut reply)
            .expect("read a reply");
        assert!(reply.contains("\"reply\":\"error\""), "{reply}");
        stream.write_all(b"{\"op\":").expect("write half a line");
    }
    expect_answers(
        &server,
        &[(
            &["app.internal", "A"],
            "NOERROR",
            &["100.64.1.10", "10.10.0.10"],
        )],
    );
    let mut control = Control::connect(&server);
    assert_eq!(control.ask("{\"op\":\"status\"}")["reply"], "status");
}

#[test]
fn sigterm_stops_the_server_and_removes_the_control_socket() {
    let mut server = Server::start(&[("zone.toml", ZONE)], &[]);
    let path = server.control_path();
    assert!(path.exists(), "socket exists while serving");
    let status = server.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert!(!path.exists(), "{} is removed on shutdown", path.display());
    let left: Vec<String> = std::fs::read_dir(path.parent().expect("the socket has a parent"))
        .expect("list the server's directory")
        .map(|entry| {
            let entry = entry.expect("a directory entry");
            entry.file_name().to_string_lossy().into_owned()
        })
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(
        left,
        ["resolv.conf", "zones"],
        "nothing but the harness's own files is left behind"
    );
}

#[test]
fn sigterm_right_after_ready_stops_cleanly() {
    // The moment `ready:` is printed, a supervisor may stop the server. The handler must already
    // be installed, or the default action kills the process and leaves the socket behind. The
    // window is short, so try a few times.
    for attempt in 1..=20 {
        let mut server = Server::builder(&[("zone.toml", ZONE)])
            .sigterm_at_ready()
            .start();
        let path = server.control_path();
        let status = server.stop();
        assert!(
            status.success(),
            "attempt {attempt}: SIGTERM right after ready: {status}"
        );
        assert!(!path.exists(), "attempt {attempt}: socket left behind");
    }
}
