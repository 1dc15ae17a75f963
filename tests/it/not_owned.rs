//! Names outside the owned zones when no upstream is configured (an empty resolv.conf and no
//! --upstream): they are REFUSED, promptly (never a timeout), and owned names still answer.
//! Forwarding to real upstreams is in `forwarding`.

use crate::support::zones::APP_PRIMARY_ONLY_ZONE;
use crate::support::{Server, expect_answers};

#[test]
fn names_outside_the_zones_are_refused_without_an_upstream() {
    let server = Server::start(&[("zone.toml", APP_PRIMARY_ONLY_ZONE)], &[]);
    expect_answers(
        &server,
        &[
            (&["example.com", "A"], "REFUSED", &[]),
            (&["example.com", "AAAA"], "REFUSED", &[]),
            (&[".", "NS"], "REFUSED", &[]),
            // Ends with the zone's label but is not below the zone.
            (&["notinternal", "A"], "REFUSED", &[]),
            (&["app.internal.example", "A"], "REFUSED", &[]),
            (&["app.notinternal", "A"], "REFUSED", &[]),
            // Owned names next to them are still answered.
            (&["app.internal", "A"], "NOERROR", &["100.64.1.10"]),
        ],
    );
    // The question is echoed on REFUSED too.
    let reply = server.dig(&["Example.COM", "A"]);
    let question = reply.question.as_ref().expect("the question is echoed");
    assert_eq!(question.name, "Example.COM.", "{reply}");
}

#[test]
fn ptr_for_addresses_that_are_no_endpoint_is_refused_without_an_upstream() {
    let server = Server::start(&[("zone.toml", APP_PRIMARY_ONLY_ZONE)], &[]);
    expect_answers(
        &server,
        &[
            (&["-x", "192.0.2.1"], "REFUSED", &[]),
            (&["-x", "2001:db8::1"], "REFUSED", &[]),
            (&["-x", "100.64.1.10"], "NOERROR", &["app.internal."]),
        ],
    );
}
