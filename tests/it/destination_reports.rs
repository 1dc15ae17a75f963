//! Reports by destination id (`report --destination`): one report marks every address of the
//! destination, and an unknown id or a destination without endpoints is refused, changing
//! nothing.

use crate::support::{Server, endpoint_states, status_json, text};

/// `app.internal` whose primary and virtual asset have an IPv4 and an IPv6 address each, and a
/// gateway asset without names (a destination with no endpoint). Not the shared network
/// (support::zones): a report by destination must mark more than one address.
const DUAL_STACK: &str = r#"[[zone]]
origin = "internal"

[[asset]]
id = "gw-berlin"
kind = "gateway"
addresses = ["100.64.0.2"]

[[asset]]
id = "app-host"
kind = "primary"
addresses = ["100.64.1.10", "fd7a:115c:a1e0::1"]
names = ["app.internal"]

[[virtual_asset]]
id = "app-via-berlin"
gateway = "gw-berlin"
addresses = ["10.10.0.10", "fd7a:115c:a1e0:20::10"]
names = ["app.internal"]

[[policy]]
id = "app"
sources = ["*"]
destinations = ["app-host", "app-via-berlin"]
"#;

/// The answers of `name` for `rtype`, in order.
fn answers(server: &Server, name: &str, rtype: &str) -> Vec<String> {
    let reply = server.dig(&[name, rtype]);
    assert_eq!(reply.status, "NOERROR", "{reply}");
    reply
        .answer_data()
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_report_by_destination_marks_every_address_of_it() {
    let server = Server::start(&[("zone.toml", DUAL_STACK)], &[]);
    assert_eq!(
        answers(&server, "app.internal", "A"),
        ["100.64.1.10", "10.10.0.10"]
    );
    assert_eq!(
        answers(&server, "app.internal", "AAAA"),
        ["fd7a:115c:a1e0::1", "fd7a:115c:a1e0:20::10"]
    );

    let output = server.cli(&["report", "--fail", "--destination", "app-host"]);
    let printed = text(&output.stdout);
    assert!(output.status.success(), "{printed}{output:?}");
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        [
            "100.64.1.10: down (1 consecutive failures); names: app.internal.",
            "fd7a:115c:a1e0::1: down (1 consecutive failures); names: app.internal.",
        ]
    );
    assert_eq!(
        answers(&server, "app.internal", "A"),
        ["10.10.0.10", "100.64.1.10"]
    );
    assert_eq!(
        answers(&server, "app.internal", "AAAA"),
        ["fd7a:115c:a1e0:20::10", "fd7a:115c:a1e0::1"]
    );
    let status = status_json(&server);
    assert_eq!(
        endpoint_states(&status)
            .into_iter()
            .map(|(_, address, state)| (address, state))
            .collect::<Vec<_>>(),
        [
            ("10.10.0.10", "unknown"),
            ("fd7a:115c:a1e0:20::10", "unknown"),
            ("100.64.1.10", "down"),
            ("fd7a:115c:a1e0::1", "down"),
        ]
        .map(|(a, s)| (a.to_string(), s.to_string())),
        "{status}"
    );

    for (destination, message) in [
        ("no-such-id", "no destination has the id \"no-such-id\""),
        ("gw-berlin", "destination \"gw-berlin\" has no endpoint"),
    ] {
        let output = server.cli(&["report", "--fail", "--destination", destination]);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{destination}: {output:?}");
        assert!(stderr.contains(message), "{destination}: {stderr}");
    }
    // The rejected reports changed nothing.
    assert_eq!(status_json(&server), status);
}
