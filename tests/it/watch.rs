//! `failover-dns watch`: it streams the events a report and a reload cause, as JSON lines, and
//! exits cleanly when the server stops.
//!
//! Waiting is observed, never slept for: [`wait_for`] polls (each poll runs the CLI, with a short
//! pause between polls) until the condition holds or a generous deadline passes.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::watcher::Watch;
use crate::support::zones::{APP_AND_DB_ZONE, APP_PRIMARY, APP_VIA_BERLIN};
use crate::support::{Server, wait_for};

fn has_event(events: &[Value], event: &str, key: &str, value: &str) -> bool {
    events
        .iter()
        .any(|e| e["event"] == event && e[key] == value)
}

#[test]
fn watch_prints_the_events_of_a_report_and_a_reload() {
    let mut server = Server::start(&[("zone.toml", APP_AND_DB_ZONE)], &[]);
    let mut watch = Watch::start(&server);
    watch.subscribed(&server);

    server.report(false, APP_PRIMARY);
    let events = watch.events_until(&server, |events| {
        has_event(events, "endpoint_down", "address", APP_PRIMARY)
            && has_event(events, "first_endpoint_changed", "name", "app.internal.")
    });
    let events: Vec<Value> = events
        .into_iter()
        .filter(|e| e["event"] != "reload_succeeded")
        .collect();
    let down = events
        .iter()
        .find(|e| e["event"] == "endpoint_down")
        .expect("found above");
    assert_eq!(down["previous"], "unknown", "{down}");
    assert_eq!(down["consecutive_failures"], 1, "{down}");
    let changed = events
        .iter()
        .find(|e| e["event"] == "first_endpoint_changed")
        .expect("found above");
    assert_eq!(changed["from"], APP_PRIMARY, "{changed}");
    assert_eq!(changed["to"], APP_VIA_BERLIN, "{changed}");
    assert_eq!(events.len(), 2, "nothing else happened: {events:?}");

    // This reload's event, not a late one of the synchronizing reloads: it is newer than the
    // moment before the command.
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis();
    let output = server.cli(&["reload"]);
    assert!(output.status.success(), "reload: {output:?}");
    let is_this_reload = |e: &Value| {
        e["event"] == "reload_succeeded"
            && e["at_unix_ms"]
                .as_u64()
                .is_some_and(|at| u128::from(at) >= before)
    };
    let events = watch.events_until(&server, |events| events.iter().any(is_this_reload));
    let reloaded = events
        .iter()
        .find(|e| is_this_reload(e))
        .expect("found above");
    assert_eq!(reloaded["trigger"], "control", "{reloaded}");
    assert_eq!(reloaded["names"], 2, "{reloaded}");

    // When the server stops, the watcher's stream ends and it exits cleanly.
    let status = server.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let exited = wait_for("watch exits after the server stopped", &server, || {
        watch.child.try_wait().expect("poll the watcher")
    });
    assert!(exited.success(), "watch exit: {exited}");
}
