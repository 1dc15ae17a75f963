//! The health state file (`--state-file`): a restart keeps what the agent reported (and drops
//! the endpoints that left the zone data meanwhile), and a corrupt file is survived with a
//! warning naming it, then replaced with a good one.

use std::path::Path;

use serde_json::Value;

use crate::support::zones::{
    APP_AND_DB_ZONE, APP_PRIMARY, APP_VIA_BERLIN, DB_PRIMARY, DB_VIA_BERLIN,
};
use crate::support::{Server, endpoint_states, state_of, status_json};

/// The addresses in a health state file, in its order.
fn saved_addresses(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read the state file {}: {e}", path.display()));
    let file: Value = serde_json::from_str(&text).expect("the state file is JSON");
    file["endpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("endpoints is a list: {text}"))
        .iter()
        .map(|e| e["address"].as_str().expect("address").to_string())
        .collect()
}

#[test]
fn a_restart_keeps_a_failed_primary_last_and_drops_endpoints_that_are_gone() {
    let state = tempfile::tempdir().expect("create a temporary directory");
    let state_file = state.path().join("health.json");
    let state_arg = state_file.to_str().expect("temporary paths are UTF-8");
    let mut server = Server::start(
        &[("zone.toml", APP_AND_DB_ZONE)],
        &["--state-file", state_arg],
    );
    server.report(false, APP_PRIMARY);
    server.report(false, DB_PRIMARY);
    assert_eq!(
        server.addresses("app.internal"),
        [APP_VIA_BERLIN, APP_PRIMARY]
    );

    let status = server.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert_eq!(
        saved_addresses(&state_file),
        [APP_PRIMARY, DB_PRIMARY],
        "the clean shutdown saved both failures"
    );
    server.restart();
    // The very first answer after the restart already has the failed primaries last.
    assert_eq!(
        server.addresses("app.internal"),
        [APP_VIA_BERLIN, APP_PRIMARY]
    );
    assert_eq!(server.addresses("db.internal"), [DB_VIA_BERLIN, DB_PRIMARY]);
    assert_eq!(state_of(&server, APP_PRIMARY), "down");

    // db-host leaves the zone data while the server is down: its saved entry is dropped, the
    // rest is restored.
    let status = server.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    let without_db_host = APP_AND_DB_ZONE
        .replace(
            "[[asset]]\nid = \"db-host\"\nkind = \"primary\"\naddresses = [\"100.64.2.10\"]\nnames = [\"db.internal\"]\n\n",
            "",
        )
        .replace("\"db-host\", ", "");
    assert!(!without_db_host.contains(DB_PRIMARY), "{without_db_host}");
    std::fs::write(server.zones_dir().join("zone.toml"), &without_db_host)
        .expect("rewrite the zone file");
    server.restart();
    assert_eq!(
        server.addresses("app.internal"),
        [APP_VIA_BERLIN, APP_PRIMARY]
    );
    assert_eq!(server.addresses("db.internal"), [DB_VIA_BERLIN]);
    let status = status_json(&server);
    let states = endpoint_states(&status);
    assert_eq!(
        states,
        [
            ("app.internal.", APP_VIA_BERLIN, "unknown"),
            ("app.internal.", APP_PRIMARY, "down"),
            ("db.internal.", DB_VIA_BERLIN, "unknown"),
        ]
        .map(|(n, a, s)| (n.to_string(), a.to_string(), s.to_string())),
        "{status}"
    );
    let log = server.stderr();
    assert!(
        log.contains("restored=1") && log.contains("dropped=1"),
        "the restore says what it kept and dropped:\n{log}"
    );
    let status = server.stop();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert_eq!(
        saved_addresses(&state_file),
        [APP_PRIMARY],
        "the dropped entry is gone from the file too"
    );
}

#[test]
fn a_corrupt_state_file_is_survived_with_a_warning_naming_it() {
    let cases: [(&str, &[u8]); 3] = [
        ("garbage", b"\x00\xffnot a state file at all\n"),
        (
            "cut mid-write",
            b"{\n  \"version\": 1,\n  \"saved_at_unix_ms\": 1700000000000,\n  \"endpoints\": [\n    {\n      \"address\": \"100.64.1.10\",\n",
        ),
        (
            "another version",
            b"{\"version\":99,\"saved_at_unix_ms\":0,\"endpoints\":[]}",
        ),
    ];
    for (case, contents) in cases {
        let state = tempfile::tempdir().expect("create a temporary directory");
        let state_file = state.path().join("health.json");
        std::fs::write(&state_file, contents).expect("write the corrupt state file");
        let state_arg = state_file.to_str().expect("temporary paths are UTF-8");
        let mut server = Server::start(
            &[("zone.toml", APP_AND_DB_ZONE)],
            &["--state-file", state_arg],
        );
        assert_eq!(
            server.addresses("app.internal"),
            [APP_PRIMARY, APP_VIA_BERLIN],
            "{case}: configuration order"
        );
        let status = status_json(&server);
        assert!(
            endpoint_states(&status)
                .iter()
                .all(|(_, _, state)| state == "unknown"),
            "{case}: nothing restored: {status}"
        );
        server.report(false, APP_PRIMARY);
        let status = server.stop();
        assert!(status.success(), "{case}: clean exit on SIGTERM: {status}");
        let log = server.stderr();
        let warning = log
            .lines()
            .find(|line| line.contains(" WARN ") && line.contains(state_arg))
            .unwrap_or_else(|| panic!("{case}: a warning names {state_arg}:\n{log}"));
        assert!(
            warning.contains("not a usable health state file"),
            "{case}: {warning}"
        );
        assert_eq!(
            saved_addresses(&state_file),
            [APP_PRIMARY],
            "{case}: the shutdown replaced the corrupt file with a good one"
        );
    }
}

/// A server killed between writing a save's temporary file and renaming it leaves the file: the
/// next start removes such leftovers (its own, named as saves name them), and nothing else.
#[test]
fn temporary_files_of_unfinished_saves_are_removed_at_start() {
    let state = tempfile::tempdir().expect("create a temporary directory");
    let state_file = state.path().join("health.json");
    let leftovers: Vec<_> = (0..8)
        .map(|i| {
            state
                .path()
                .join(format!(".failover-dns-state.killed{i}.tmp"))
        })
        .collect();
    // Left by a server killed in the middle of a save some minutes ago.
    let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
    for leftover in &leftovers {
        std::fs::write(leftover, "{\"version\": 2, \"endpo").expect("plant a leftover");
        std::fs::File::options()
            .write(true)
            .open(leftover)
            .and_then(|file| file.set_modified(long_ago))
            .expect("age the leftover");
    }
    let unrelated = state.path().join("notes.tmp");
    std::fs::write(&unrelated, "kept").expect("write an unrelated file");
    let server = Server::start(
        &[("zone.toml", APP_AND_DB_ZONE)],
        &[
            "--state-file",
            state_file.to_str().expect("temporary paths are UTF-8"),
        ],
    );
    assert_eq!(server.addresses("app.internal").len(), 2, "serving");
    let left: Vec<_> = leftovers.iter().filter(|file| file.exists()).collect();
    assert!(left.is_empty(), "leftovers not removed: {left:?}");
    assert!(unrelated.exists(), "an unrelated file is kept");
}
