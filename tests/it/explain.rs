//! `failover-dns status --name` (the explanation of one name): which policies permit each
//! endpoint and which hide it, as text and as JSON, on the shipped sample zones' pitfall; and an
//! error for what is not a shared name.

use serde_json::Value;

use crate::support::{Server, text};

const PITFALL_ZONE: &str = include_str!("../../zones/00-zone.toml");
const PITFALL: &str = include_str!("../../zones/50-policy-pitfall.toml");

#[test]
fn status_name_names_the_policies_that_hide_an_endpoint() {
    let server = Server::start(
        &[("00-zone.toml", PITFALL_ZONE), ("50-pitfall.toml", PITFALL)],
        &[],
    );
    assert_eq!(server.addresses("wiki.internal"), ["100.64.4.10"]);

    let output = server.cli(&["status", "--name", "wiki.internal"]);
    let explained = text(&output.stdout);
    assert!(output.status.success(), "{explained}{output:?}");
    for words in [
        "wiki.internal.",
        "1. 100.64.4.10 via wiki-host (primary asset)",
        "permitted by: engineering-wiki-primary-only",
        "-. 10.10.0.40 via wiki-via-berlin (virtual asset)",
        "hidden: policy \"engineering-wiki-primary-only\" grants this identity other endpoints of the name but not wiki-via-berlin",
        "hidden: policy \"engineering-wiki-failover-draft\" would grant wiki-via-berlin but is disabled",
    ] {
        assert!(explained.contains(words), "{words:?} in:\n{explained}");
    }

    let output = server.cli(&["status", "--name", "WIKI.internal.", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let json: Value = serde_json::from_slice(&output.stdout).expect("status --name --json is JSON");
    assert_eq!(json["name"], "wiki.internal.", "{json}");
    assert_eq!(json["visible"], true, "{json}");
    let endpoints = json["endpoints"].as_array().expect("endpoints is a list");
    let [primary, hidden] = endpoints.as_slice() else {
        panic!("two endpoints: {json}");
    };
    assert_eq!(primary["address"], "100.64.4.10", "{json}");
    assert_eq!(primary["position"], 1, "{json}");
    assert_eq!(
        primary["granted_by"],
        serde_json::json!(["engineering-wiki-primary-only"]),
        "{json}"
    );
    assert_eq!(primary["hidden_because"], serde_json::json!([]), "{json}");
    assert_eq!(hidden["address"], "10.10.0.40", "{json}");
    assert!(hidden["position"].is_null(), "{json}");
    assert_eq!(hidden["granted_by"], serde_json::json!([]), "{json}");
    let reasons: Vec<&str> = hidden["hidden_because"]
        .as_array()
        .expect("hidden_because is a list")
        .iter()
        .map(|r| r.as_str().expect("a reason is a string"))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("engineering-wiki-primary-only"))
            && reasons
                .iter()
                .any(|r| r.contains("engineering-wiki-failover-draft") && r.contains("disabled")),
        "{json}"
    );

    for (name, message) in [
        ("nope.internal", "nope.internal is not a shared name"),
        ("app.example", "app.example is not a shared name"),
        ("bad..name", "is not a DNS name"),
    ] {
        let output = server.cli(&["status", "--name", name]);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{name}: {output:?}");
        assert!(stderr.contains(message), "{name}: {stderr}");
        assert!(output.stdout.is_empty(), "{name}: {output:?}");
    }
}
