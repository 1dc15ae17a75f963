//! What policies show this client: only granted destinations' endpoints, nothing from disabled
//! policies, names with no granted endpoint do not exist, the identity flags decide which
//! sources match, and reverse lookups follow the same rules.

use crate::support::{Server, expect_answers};

/// The zone and its gateway, in a file of their own. Not the shared network (support::zones): the
/// TTL is 30, and the names ([`NAMES`]) come with a policy per kind of source, none of them the
/// usual policy granting both endpoints.
const ZONE: &str = r#"
[[zone]]
origin = "internal"
ttl = 30

[[asset]]
id = "gw-berlin"
kind = "gateway"
addresses = ["100.64.0.2"]
"#;

/// One name per kind of source, plus the policy pitfall (a policy granting only the primary),
/// a name no policy grants and one only a disabled policy grants.
const NAMES: &str = r#"
[[asset]]
id = "app-host"
kind = "primary"
addresses = ["100.64.1.10"]
names = ["app.internal"]

[[virtual_asset]]
id = "app-via-berlin"
gateway = "gw-berlin"
addresses = ["10.10.0.10"]
names = ["app.internal"]

[[asset]]
id = "nobody-host"
kind = "primary"
addresses = ["100.64.2.10"]
names = ["nobody.internal"]

[[asset]]
id = "draft-host"
kind = "primary"
addresses = ["100.64.3.10"]
names = ["draft.internal"]

[[asset]]
id = "all-host"
kind = "primary"
addresses = ["100.64.4.10", "fd7a:115c:a1e0::4:10"]
names = ["all.internal"]

[[asset]]
id = "eng-host"
kind = "primary"
addresses = ["100.64.5.10"]
names = ["eng.internal"]

[[asset]]
id = "bob-host"
kind = "primary"
addresses = ["100.64.6.10"]
names = ["bob.internal"]

[[asset]]
id = "ops-host"
kind = "primary"
addresses = ["100.64.7.10"]
names = ["ops.internal"]

[[asset]]
id = "kiosk-host"
kind = "primary"
addresses = ["100.64.8.10"]
names = ["kiosk.internal"]

[[policy]]
id = "app-primary-only"
sources = ["group:engineering"]
destinations = ["app-host"]

[[policy]]
id = "draft"
enabled = false
sources = ["*"]
destinations = ["draft-host", "app-via-berlin"]

[[policy]]
id = "everyone"
sources = ["*"]
destinations = ["all-host"]

[[policy]]
id = "engineering"
sources = ["group:engineering"]
destinations = ["eng-host"]

[[policy]]
id = "bob"
sources = ["user:bob"]
destinations = ["bob-host"]

[[policy]]
id = "ops"
sources = ["group:ops"]
destinations = ["ops-host"]

[[policy]]
id = "kiosk"
sources = ["device:kiosk-1"]
destinations = ["kiosk-host"]
"#;

#[test]
fn policies_decide_which_endpoints_and_names_exist() {
    // The default identity: user alice, group engineering, device alice-laptop.
    let server = Server::start(&[("00-zone.toml", ZONE), ("10-names.toml", NAMES)], &[]);
    expect_answers(
        &server,
        &[
            // Only the primary is granted: only its address, although the name has two.
            (&["app.internal", "A"], "NOERROR", &["100.64.1.10"]),
            // No policy grants it: the name does not exist for this client, whatever the type.
            (&["nobody.internal", "A"], "NXDOMAIN", &[]),
            (&["nobody.internal", "AAAA"], "NXDOMAIN", &[]),
            // Only a disabled policy grants it: a disabled policy grants nothing.
            (&["draft.internal", "A"], "NXDOMAIN", &[]),
            (&["all.internal", "A"], "NOERROR", &["100.64.4.10"]),
            (&["eng.internal", "A"], "NOERROR", &["100.64.5.10"]),
        ],
    );
}

#[test]
fn identity_flags_change_what_is_visible() {
    // (serve flags, the names of bob/ops/kiosk/eng/all that are visible)
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["eng", "all"]),
        (&["--user", "bob"], &["bob", "eng", "all"]),
        // --group replaces the default group (engineering).
        (&["--group", "ops"], &["ops", "all"]),
        (
            &["--group", "ops", "--group", "engineering"],
            &["ops", "eng", "all"],
        ),
        (&["--device", "kiosk-1"], &["kiosk", "eng", "all"]),
        (
            &["--user", "carol", "--group", "guests", "--device", "pc-2"],
            &["all"],
        ),
    ];
    for (flags, visible) in cases {
        let server = Server::start(&[("00-zone.toml", ZONE), ("10-names.toml", NAMES)], flags);
        for (label, address) in [
            ("bob", "100.64.6.10"),
            ("ops", "100.64.7.10"),
            ("kiosk", "100.64.8.10"),
            ("eng", "100.64.5.10"),
            ("all", "100.64.4.10"),
        ] {
            let name = format!("{label}.internal");
            let reply = server.dig(&[&name, "A"]);
            let seen = if visible.contains(&label) {
                (reply.status.as_str(), reply.answer_data()) == ("NOERROR", vec![address])
            } else {
                (reply.status.as_str(), reply.answers.len()) == ("NXDOMAIN", 0)
            };
            assert!(
                seen,
                "serve {flags:?}: {name} should be {}:\n{reply}",
                if visible.contains(&label) {
                    "visible"
                } else {
                    "NXDOMAIN"
                }
            );
        }
    }
}

#[test]
fn ptr_for_a_visible_endpoint_answers_the_shared_name() {
    let server = Server::start(&[("00-zone.toml", ZONE), ("10-names.toml", NAMES)], &[]);
    expect_answers(
        &server,
        &[
            (&["-x", "100.64.1.10"], "NOERROR", &["app.internal."]),
            (&["-x", "100.64.4.10"], "NOERROR", &["all.internal."]),
            (
                &["-x", "fd7a:115c:a1e0::4:10"],
                "NOERROR",
                &["all.internal."],
            ),
        ],
    );
    let reply = server.dig(&["-x", "100.64.1.10"]);
    let record = &reply.answers[0];
    assert_eq!(
        (record.name.as_str(), record.rtype.as_str(), record.ttl),
        ("10.1.64.100.in-addr.arpa.", "PTR", 30),
        "{reply}"
    );
    // The identity decides reverse lookups as it decides forward ones.
    let bob = Server::start(
        &[("00-zone.toml", ZONE), ("10-names.toml", NAMES)],
        &["--user", "bob"],
    );
    expect_answers(
        &bob,
        &[(&["-x", "100.64.6.10"], "NOERROR", &["bob.internal."])],
    );
}

#[test]
fn ptr_for_an_endpoint_hidden_by_policy_does_not_reveal_the_name() {
    let server = Server::start(&[("00-zone.toml", ZONE), ("10-names.toml", NAMES)], &[]);
    // (address, the name it must not reveal): the virtual asset of a visible name that the
    // policy does not grant, a name no policy grants, one only a disabled policy grants, and a
    // name for another identity.
    for (address, name) in [
        ("10.10.0.10", "app.internal."),
        ("100.64.2.10", "nobody.internal."),
        ("100.64.3.10", "draft.internal."),
        ("100.64.6.10", "bob.internal."),
    ] {
        let reply = server.dig(&["-x", address]);
        assert!(
            reply
                .answers
                .iter()
                .all(|r| !r.data.eq_ignore_ascii_case(name)),
            "PTR {address} reveals {name}:\n{reply}"
        );
        // What it is answered with instead: REFUSED for now, as for any address that is not a
        // visible endpoint's.
        assert_eq!(reply.status, "REFUSED", "PTR {address}:\n{reply}");
    }
}
