//! The log: at the default level it has no line per query and one per state change; with
//! `--log-format json` every line is JSON.

use serde_json::Value;

use crate::support::Server;
use crate::support::zones::{APP_AND_DB_ZONE, APP_PRIMARY};

#[test]
fn the_default_log_has_no_line_per_query_and_one_per_state_change() {
    let mut server = Server::builder(&[("zone.toml", APP_AND_DB_ZONE)])
        .default_log_level()
        .start();
    // 20 queries of every kind: answers, NODATA, NXDOMAIN, refused, over UDP and TCP.
    for ask in [
        &["app.internal", "A"][..],
        &["app.internal", "AAAA"],
        &["app.internal", "HTTPS"],
        &["nope.internal", "A"],
        &["www.example.test", "A"],
    ] {
        for transport in ["+notcp", "+tcp", "+notcp", "+tcp"] {
            let mut args = ask.to_vec();
            args.push(transport);
            server.dig(&args);
        }
    }
    server.report(false, APP_PRIMARY);
    // Already down: no state change, no line.
    server.report(false, APP_PRIMARY);
    server.report(true, APP_PRIMARY);
    let status = server.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status}");

    let log = server.stderr();
    let lines: Vec<&str> = log.lines().collect();
    let serving = lines
        .iter()
        .position(|line| line.contains(": serving "))
        .unwrap_or_else(|| panic!("a `serving` line:\n{log}"));
    let stopping = lines
        .iter()
        .position(|line| line.contains("SIGTERM received"))
        .unwrap_or_else(|| panic!("a `SIGTERM received` line:\n{log}"));
    // While serving, the queries logged nothing; the reports one line per state change and
    // one per change of the first endpoint.
    let while_serving: Vec<&str> = lines[serving + 1..stopping]
        .iter()
        // The connection observer's start, logged as serving begins: a startup line.
        .filter(|line| !line.contains("connection observer: watching"))
        .map(|line| {
            if line.contains("endpoint state changed") {
                "endpoint state changed"
            } else if line.contains("first endpoint changed") {
                "first endpoint changed"
            } else {
                line
            }
        })
        .collect();
    assert_eq!(
        while_serving,
        [
            "endpoint state changed",
            "first endpoint changed",
            "endpoint state changed",
            "first endpoint changed",
        ],
        "the log while serving:\n{log}"
    );
    let changes: Vec<&&str> = lines
        .iter()
        .filter(|line| line.contains("endpoint state changed"))
        .collect();
    assert!(
        changes[0].contains("address=100.64.1.10") && changes[0].contains("state=down"),
        "{log}"
    );
    assert!(
        changes[1].contains("previous=down") && changes[1].contains("state=up"),
        "{log}"
    );
}

#[test]
fn every_log_line_is_json_with_log_format_json() {
    let mut server = Server::start(&[("zone.toml", APP_AND_DB_ZONE)], &["--log-format", "json"]);
    server.addresses("app.internal");
    server.dig(&["nope.internal", "A"]);
    server.report(false, APP_PRIMARY);
    // A rejected report and a reload that fails log a warning and errors.
    let output = server.cli(&["report", "--fail", "192.0.2.77"]);
    assert!(!output.status.success(), "{output:?}");
    std::fs::write(server.zones_dir().join("broken.toml"), "[[asset]\n").expect("write");
    let output = server.cli(&["reload"]);
    assert!(!output.status.success(), "{output:?}");
    let status = server.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status}");

    let log = server.stderr();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
        })
        .collect();
    let message = |line: &Value| line["fields"]["message"].as_str().unwrap_or("").to_string();
    let messages: Vec<String> = lines.iter().map(message).collect();
    for line in &lines {
        assert!(line["level"].is_string(), "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(!message(line).is_empty(), "{line}");
    }
    // Every kind of line is there, each as JSON: per query (debug here), state changes,
    // reload errors, shutdown.
    for expected in [
        "query",
        "endpoint state changed",
        "first endpoint changed",
        "reload failed; still serving the last good configuration",
        "stopped",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "a {expected:?} line in {messages:#?}"
        );
    }
    let change = lines
        .iter()
        .find(|line| message(line) == "endpoint state changed")
        .expect("found above");
    assert_eq!(change["fields"]["address"], APP_PRIMARY, "{change}");
    assert_eq!(change["fields"]["state"], "down", "{change}");
    assert_eq!(change["level"], "INFO", "{change}");
}
