//! What an owned name resolves to with no health reports: every permitted endpoint in
//! configuration order, NODATA for types the name has no data of, names echoed as asked, and
//! empty non-terminals that exist without data.

use crate::support::{Server, expect_answers};

/// The zone every test here uses: answer TTL 42 and negative TTL 9, so neither can be mistaken
/// for a default (5) or for the other.
const ZONE: &str = r#"
[[zone]]
origin = "internal"
ttl = 42

[zone.soa]
mname = "ns.internal"
rname = "hostmaster.internal"
serial = 7
minimum = 9

[[asset]]
id = "gw-berlin"
kind = "gateway"
addresses = ["100.64.0.2"]

[[asset]]
id = "gw-munich"
kind = "gateway"
addresses = ["100.64.0.3"]
"#;

/// The SOA RDATA of [`ZONE`] as `dig` prints it.
const SOA: &str = "ns.internal. hostmaster.internal. 7 3600 600 86400 9";

#[test]
fn shared_name_answers_every_permitted_endpoint_in_configuration_order() {
    // Not the shared network (support::zones), on purpose: declared subnet first (in an earlier
    // file), then the virtual assets, then the primary;
    // the policy lists them in yet another order. Configuration order is by kind (primary,
    // virtual assets, subnets), then by declaration.
    let lan = r#"
[[subnet]]
id = "app-lan-munich"
gateway = "gw-munich"
cidr = "10.20.0.0/24"
hosts = [{ name = "app.internal", address = "10.20.0.10" }]
"#;
    let app = r#"
[[virtual_asset]]
id = "app-via-berlin"
gateway = "gw-berlin"
addresses = ["10.10.0.10"]
names = ["app.internal"]

[[virtual_asset]]
id = "app-via-munich"
gateway = "gw-munich"
addresses = ["172.20.0.10"]
names = ["app.internal"]

[[asset]]
id = "app-host"
kind = "primary"
addresses = ["100.64.1.10"]
names = ["app.internal"]

[[policy]]
id = "app"
sources = ["*"]
destinations = ["app-lan-munich", "app-via-munich", "app-via-berlin", "app-host"]
"#;
    let server = Server::start(
        &[
            ("00-zone.toml", ZONE),
            ("10-lan.toml", lan),
            ("20-app.toml", app),
        ],
        &[],
    );
    let expected = ["100.64.1.10", "10.10.0.10", "172.20.0.10", "10.20.0.10"];
    // Asked twice: with nothing reported the order is stable, never shuffled.
    for _ in 0..2 {
        let reply = server.dig(&["app.internal", "A"]);
        assert_eq!(reply.status, "NOERROR", "{reply}");
        assert!(reply.has_flag("aa"), "answers are authoritative:\n{reply}");
        assert!(!reply.has_flag("tc"), "{reply}");
        assert_eq!(reply.answer_data(), expected, "{reply}");
        for record in &reply.answers {
            assert_eq!(
                (record.name.as_str(), record.ttl, record.class.as_str()),
                ("app.internal.", 42, "IN"),
                "owner, zone TTL and class:\n{reply}"
            );
            assert_eq!(record.rtype, "A", "{reply}");
        }
        assert!(reply.authority.is_empty(), "{reply}");
    }
}

#[test]
fn endpoints_sharing_an_address_are_answered_once() {
    // Two gateways reach the same standby host: one address, two destinations.
    let db = r#"
[[asset]]
id = "db-host"
kind = "primary"
addresses = ["100.64.2.10"]
names = ["db.internal"]

[[virtual_asset]]
id = "db-via-berlin"
gateway = "gw-berlin"
addresses = ["10.10.0.20"]
names = ["db.internal"]

[[virtual_asset]]
id = "db-via-munich"
gateway = "gw-munich"
addresses = ["10.10.0.20"]
names = ["db.internal"]

[[policy]]
id = "db"
sources = ["*"]
destinations = ["db-host", "db-via-berlin", "db-via-munich"]
"#;
    let server = Server::start(&[("00-zone.toml", ZONE), ("10-db.toml", db)], &[]);
    expect_answers(
        &server,
        &[(
            &["db.internal", "A"],
            "NOERROR",
            &["100.64.2.10", "10.10.0.20"],
        )],
    );
}

#[test]
fn other_record_types_on_owned_names_are_nodata_with_soa() {
    let names = r#"
[[asset]]
id = "v4-host"
kind = "primary"
addresses = ["100.64.1.10"]
names = ["v4.internal"]

[[asset]]
id = "dual-host"
kind = "primary"
addresses = ["100.64.3.10", "fd7a:115c:a1e0::3:10"]
names = ["dual.internal"]

[[virtual_asset]]
id = "dual-via-munich"
gateway = "gw-munich"
addresses = ["fd7a:115c:a1e0:20::3:10"]
names = ["dual.internal"]

[[virtual_asset]]
id = "v6-via-berlin"
gateway = "gw-berlin"
addresses = ["fd7a:115c:a1e0:10::5"]
names = ["v6.internal"]

[[policy]]
id = "all"
sources = ["*"]
destinations = ["v4-host", "dual-host", "dual-via-munich", "v6-via-berlin"]
"#;
    let server = Server::start(&[("00-zone.toml", ZONE), ("10-names.toml", names)], &[]);
    expect_answers(
        &server,
        &[
            (&["v4.internal", "A"], "NOERROR", &["100.64.1.10"]),
            // IPv4 only: AAAA, HTTPS (asked by mnemonic and by number), SVCB, MX and TXT are
            // NODATA, never NXDOMAIN and never forwarded.
            (&["v4.internal", "AAAA"], "NOERROR", &[]),
            (&["v4.internal", "HTTPS"], "NOERROR", &[]),
            (&["v4.internal", "TYPE65"], "NOERROR", &[]),
            (&["v4.internal", "SVCB"], "NOERROR", &[]),
            (&["v4.internal", "MX"], "NOERROR", &[]),
            (&["v4.internal", "TXT"], "NOERROR", &[]),
            (&["v4.internal", "SOA"], "NOERROR", &[]),
            // IPv6 endpoints: AAAA gives them in configuration order, A only the IPv4 one.
            (
                &["dual.internal", "AAAA"],
                "NOERROR",
                &["fd7a:115c:a1e0::3:10", "fd7a:115c:a1e0:20::3:10"],
            ),
            (&["dual.internal", "A"], "NOERROR", &["100.64.3.10"]),
            (&["dual.internal", "HTTPS"], "NOERROR", &[]),
            // ANY gets every address, in answer order (RFC 8482 allows a subset).
            (
                &["dual.internal", "ANY"],
                "NOERROR",
                &[
                    "100.64.3.10",
                    "fd7a:115c:a1e0::3:10",
                    "fd7a:115c:a1e0:20::3:10",
                ],
            ),
            (
                &["v6.internal", "AAAA"],
                "NOERROR",
                &["fd7a:115c:a1e0:10::5"],
            ),
            (&["v6.internal", "A"], "NOERROR", &[]),
            // The apex has its SOA and nothing else.
            (&["internal", "SOA"], "NOERROR", &[SOA]),
            (&["internal", "A"], "NOERROR", &[]),
        ],
    );
    let reply = server.dig(&["dual.internal", "AAAA"]);
    assert!(
        reply
            .answers
            .iter()
            .all(|r| r.rtype == "AAAA" && r.ttl == 42),
        "{reply}"
    );
    // The negative answer's SOA is cached for the SOA minimum (RFC 2308 §5).
    let reply = server.dig(&["v4.internal", "AAAA"]);
    assert_eq!(reply.authority[0].ttl, 9, "{reply}");
    assert_eq!(reply.authority[0].data, SOA, "{reply}");
}

#[test]
fn mixed_case_question_is_answered_and_echoed_as_asked() {
    // Not the shared network (support::zones): the virtual asset spells the name in mixed case
    // with a trailing dot, and the zone is this file's (TTL 42).
    let app = r#"
[[asset]]
id = "app-host"
kind = "primary"
addresses = ["100.64.1.10"]
names = ["app.internal"]

[[virtual_asset]]
id = "app-via-berlin"
gateway = "gw-berlin"
addresses = ["10.10.0.10"]
names = ["App.Internal."]

[[policy]]
id = "app"
sources = ["*"]
destinations = ["app-host", "app-via-berlin"]
"#;
    let server = Server::start(&[("00-zone.toml", ZONE), ("10-app.toml", app)], &[]);
    for asked in ["ApP.InTeRnAl", "APP.INTERNAL.", "app.internal"] {
        let reply = server.dig(&[asked, "A"]);
        let echoed = format!("{}.", asked.trim_end_matches('.'));
        let question = reply.question.as_ref().expect("the question is echoed");
        assert_eq!(
            (
                question.name.as_str(),
                question.class.as_str(),
                question.rtype.as_str()
            ),
            (echoed.as_str(), "IN", "A"),
            "{reply}"
        );
        assert_eq!(
            reply.answer_data(),
            ["100.64.1.10", "10.10.0.10"],
            "{reply}"
        );
        assert!(
            reply.answers.iter().all(|r| r.name == echoed),
            "answers are owned by the name as asked:\n{reply}"
        );
    }
    // Negative answers echo the question too, and case does not make a name exist or vanish.
    let reply = server.dig(&["NoPe.InTeRnAl", "A"]);
    assert_eq!(reply.status, "NXDOMAIN", "{reply}");
    let question = reply.question.as_ref().expect("the question is echoed");
    assert_eq!(question.name, "NoPe.InTeRnAl.", "{reply}");
    expect_answers(&server, &[(&["ApP.InTeRnAl", "AAAA"], "NOERROR", &[])]);
}

#[test]
fn empty_non_terminal_is_nodata_and_names_below_hidden_names_do_not_exist() {
    let names = r#"
[[asset]]
id = "deep-host"
kind = "primary"
addresses = ["100.64.5.10"]
names = ["a.b.internal"]

[[asset]]
id = "hidden-host"
kind = "primary"
addresses = ["100.64.6.10"]
names = ["hidden.internal", "e.d.internal"]

[[policy]]
id = "deep-only"
sources = ["*"]
destinations = ["deep-host"]
"#;
    let server = Server::start(&[("00-zone.toml", ZONE), ("10-names.toml", names)], &[]);
    expect_answers(
        &server,
        &[
            (&["a.b.internal", "A"], "NOERROR", &["100.64.5.10"]),
            // b.internal owns nothing but has a.b.internal below it: it exists (RFC 8020).
            (&["b.internal", "A"], "NOERROR", &[]),
            (&["B.Internal", "AAAA"], "NOERROR", &[]),
            (&["b.internal", "TXT"], "NOERROR", &[]),
            // Below a visible name, and beside it: nothing.
            (&["x.a.b.internal", "A"], "NXDOMAIN", &[]),
            (&["c.b.internal", "A"], "NXDOMAIN", &[]),
            // A hidden name does not exist, nor does anything below it, nor an empty
            // non-terminal whose only descendants are hidden.
            (&["hidden.internal", "A"], "NXDOMAIN", &[]),
            (&["x.hidden.internal", "A"], "NXDOMAIN", &[]),
            (&["e.d.internal", "A"], "NXDOMAIN", &[]),
            (&["d.internal", "A"], "NXDOMAIN", &[]),
        ],
    );
}

#[test]
fn hidden_shared_name_above_a_visible_name_is_an_empty_non_terminal() {
    // b.internal is a shared name this identity may not see, a.b.internal one it may. NXDOMAIN
    // for b.internal would tell resolvers that implement RFC 8020 that a.b.internal does not
    // exist either.
    let names = r#"
[[asset]]
id = "b-host"
kind = "primary"
addresses = ["100.64.7.10"]
names = ["b.internal"]

[[asset]]
id = "deep-host"
kind = "primary"
addresses = ["100.64.5.10"]
names = ["a.b.internal"]

[[policy]]
id = "deep-only"
sources = ["*"]
destinations = ["deep-host"]
"#;
    let server = Server::start(&[("00-zone.toml", ZONE), ("10-names.toml", names)], &[]);
    expect_answers(
        &server,
        &[
            (&["a.b.internal", "A"], "NOERROR", &["100.64.5.10"]),
            (&["b.internal", "A"], "NOERROR", &[]),
        ],
    );
}

#[test]
fn zone_apex_that_is_a_shared_name_still_answers_its_soa() {
    let apex = r#"
[[asset]]
id = "apex-host"
kind = "primary"
addresses = ["100.64.8.10"]
names = ["internal"]

[[policy]]
id = "apex"
sources = ["*"]
destinations = ["apex-host"]
"#;
    let visible = Server::start(&[("00-zone.toml", ZONE), ("10-apex.toml", apex)], &[]);
    expect_answers(
        &visible,
        &[
            (&["internal", "A"], "NOERROR", &["100.64.8.10"]),
            (&["internal", "SOA"], "NOERROR", &[SOA]),
        ],
    );
    // Hidden by policy, the apex name has no addresses, but the zone apex still exists.
    let hidden_apex = apex.replace("sources = [\"*\"]", "sources = [\"user:nobody\"]");
    let hidden = Server::start(
        &[("00-zone.toml", ZONE), ("10-apex.toml", &hidden_apex)],
        &[],
    );
    expect_answers(
        &hidden,
        &[
            (&["internal", "SOA"], "NOERROR", &[SOA]),
            (&["internal", "A"], "NOERROR", &[]),
        ],
    );
}
