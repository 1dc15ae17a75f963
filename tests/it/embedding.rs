//! The embedding example (`examples/embed_agent.rs`), built and run as a user would: it serves
//! the shipped zones, prints the answer order and the events before and after it reports a
//! failure, and stops.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::{example_binary, run_with_deadline, text};

#[test]
fn embedding_example_prints_the_order_before_and_after_a_failure() {
    let example = example_binary("embed_agent");
    let zones = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    let mut command = Command::new(&example);
    command.arg(&zones);
    let output = run_with_deadline(command, Duration::from_secs(60));
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stdout}{}",
        example.display(),
        output.status,
        text(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let serving = lines.first().copied().unwrap_or_default();
    let address: SocketAddr = serving
        .strip_prefix("serving on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("first line names the address: {stdout}"));
    assert!(address.ip().is_loopback(), "{stdout}");
    let (events, rest): (Vec<&str>, Vec<&str>) = lines
        .iter()
        .skip(1)
        .partition(|line| line.starts_with("event: "));
    assert_eq!(
        rest,
        [
            "order before: 100.64.1.10, 10.10.0.10",
            "dns before: 100.64.1.10, 10.10.0.10",
            "reported failure of 100.64.1.10",
            "order after: 10.10.0.10, 100.64.1.10",
            "dns after: 10.10.0.10, 100.64.1.10",
            "stopped",
        ],
        "{stdout}"
    );
    assert_eq!(lines.last(), Some(&"stopped"), "{stdout}");
    let events: Vec<Value> = events
        .iter()
        .map(|line| serde_json::from_str(&line["event: ".len()..]).expect("events are JSON"))
        .collect();
    let [down, changed] = events.as_slice() else {
        panic!("two events: {stdout}");
    };
    assert_eq!(down["event"], "endpoint_down", "{down}");
    assert_eq!(down["address"], "100.64.1.10", "{down}");
    assert_eq!(changed["event"], "first_endpoint_changed", "{changed}");
    assert_eq!(changed["name"], "app.internal.", "{changed}");
    assert_eq!(changed["from"], "100.64.1.10", "{changed}");
    assert_eq!(changed["to"], "10.10.0.10", "{changed}");
}
