//! How reports reorder the answer: a failure moves an endpoint last on the very next query, a
//! success moves it first, and failed endpoints rotate oldest failure first so none is abandoned.

use crate::support::Server;
use crate::support::zones::{
    APP_PRIMARY, APP_THREE_ENDPOINTS_ZONE, APP_VIA_BERLIN, APP_VIA_MUNICH,
};

/// The three endpoints in configuration order, short for the tables of expected orders (here
/// and in `fast_path`).
pub(crate) const A: &str = APP_PRIMARY;
pub(crate) const B: &str = APP_VIA_BERLIN;
pub(crate) const C: &str = APP_VIA_MUNICH;

/// Applies each report in turn and checks the A answer right after it, with no wait between.
/// `steps` is (ok, address, expected order after the report).
fn check_reports(steps: &[(bool, &str, [&str; 3])]) {
    let server = Server::start(&[("zone.toml", APP_THREE_ENDPOINTS_ZONE)], &[]);
    assert_eq!(
        server.addresses("app.internal"),
        [A, B, C],
        "before any report"
    );
    for (number, (ok, address, expected)) in steps.iter().enumerate() {
        let outcome = if *ok { "ok" } else { "fail" };
        let printed = server.report(*ok, address);
        assert!(
            printed.starts_with(&format!("{address}: ")) && printed.contains("app.internal."),
            "report names the address and its shared names: {printed:?}"
        );
        assert_eq!(
            server.addresses("app.internal"),
            expected,
            "after step {} (report --{outcome} {address})",
            number + 1
        );
    }
}

#[test]
fn failed_first_endpoint_moves_last_on_the_very_next_query() {
    check_reports(&[(false, A, [B, C, A])]);
}

#[test]
fn success_puts_that_endpoint_first() {
    check_reports(&[
        (true, C, [C, A, B]),
        // The most recent success leads.
        (true, B, [B, C, A]),
        // A recovered endpoint is up again and, being the latest success, first.
        (false, A, [B, C, A]),
        (true, A, [A, B, C]),
    ]);
}

#[test]
fn failed_endpoints_rotate_oldest_failure_first() {
    check_reports(&[
        (false, A, [B, C, A]),
        (false, B, [C, A, B]),
        (false, C, [A, B, C]),
        // All down: the oldest failure is tried first; failing again sends it to the back.
        (false, A, [B, C, A]),
        (false, B, [C, A, B]),
    ]);
}

#[test]
fn up_endpoints_lead_unknown_follow_and_down_trail() {
    check_reports(&[(false, A, [B, C, A]), (true, C, [C, B, A])]);
}
