//! Draining a destination for maintenance: `failover-dns drain` puts its endpoints after every
//! other endpoint while both paths are healthy (still answered), `undrain` ends it; the drain is
//! an event, shows in `status`, and survives a restart through the state file.

use crate::support::watcher::Watch;
use crate::support::zones::{APP_PRIMARY, APP_VIA_BERLIN, APP_ZONE};
use std::time::Duration;

use crate::support::{Server, status_json, text, wait_for_within};

#[test]
fn drain_and_undrain_reorder_healthy_paths_and_a_drain_survives_a_restart() {
    let state = tempfile::tempdir().expect("create a temporary directory");
    let state_file = state.path().join("health.json");
    let state_arg = state_file.to_str().expect("temporary paths are UTF-8");
    let mut server = Server::start(&[("zone.toml", APP_ZONE)], &["--state-file", state_arg]);
    server.report(true, APP_VIA_BERLIN);
    server.report(true, APP_PRIMARY);
    assert_eq!(
        server.addresses("app.internal"),
        [APP_PRIMARY, APP_VIA_BERLIN],
        "the most recent success first"
    );

    let watch = Watch::start(&server);
    watch.subscribed(&server);
    let drained = server.cli(&["drain", "app-host"]);
    assert!(drained.status.success(), "{}", text(&drained.stderr));
    assert_eq!(
        text(&drained.stdout),
        "app-host: draining: answered after every other endpoint\n"
    );
    assert_eq!(
        server.addresses("app.internal"),
        [APP_VIA_BERLIN, APP_PRIMARY],
        "the drained primary goes last, still answered"
    );
    let again = server.cli(&["drain", "app-host"]);
    assert!(
        text(&again.stdout).ends_with("(already)\n"),
        "{}",
        text(&again.stdout)
    );
    let events = watch.events_until(&server, |events| {
        events.iter().any(|e| e["event"] == "destination_drained")
    });
    let event = events
        .iter()
        .find(|e| e["event"] == "destination_drained")
        .expect("found above");
    assert_eq!(event["destination"], "app-host", "{event}");
    drop(watch);

    let unknown = server.cli(&["drain", "no-such-gateway"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("no destination has the id \"no-such-gateway\""),
        "{}",
        text(&unknown.stderr)
    );

    // Kept at once, not at the next periodic save (every 10 s) or at shutdown: a crash right
    // after a drain keeps it.
    wait_for_within(
        "the drain is in the state file",
        &server,
        Duration::from_secs(3),
        || {
            let saved = std::fs::read_to_string(&state_file).ok()?;
            let saved: serde_json::Value = serde_json::from_str(&saved).ok()?;
            (saved["draining"] == serde_json::json!(["app-host"])).then_some(())
        },
    );
    let status = status_json(&server);
    assert_eq!(
        status["draining"],
        serde_json::json!(["app-host"]),
        "{status}"
    );
    let listed = server.cli(&["status"]);
    assert!(
        text(&listed.stdout).contains("draining: app-host"),
        "{}",
        text(&listed.stdout)
    );

    server.restart();
    assert_eq!(
        server.addresses("app.internal"),
        [APP_VIA_BERLIN, APP_PRIMARY],
        "the drain was kept across the restart"
    );

    let undrained = server.cli(&["undrain", "app-host"]);
    assert!(undrained.status.success(), "{}", text(&undrained.stderr));
    assert_eq!(
        server.addresses("app.internal"),
        [APP_PRIMARY, APP_VIA_BERLIN],
        "ordered by health again"
    );
    assert_eq!(status_json(&server)["draining"], serde_json::json!([]));
}
