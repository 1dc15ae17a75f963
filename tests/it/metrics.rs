//! The metrics endpoint (`--metrics`): it counts exactly the queries and reports the test sent,
//! and a non-loopback address is refused before anything is bound.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::support::zones::{APP_AND_DB_ZONE, APP_PRIMARY, APP_VIA_BERLIN};
use crate::support::{Server, WAIT_DEADLINE, run_with_deadline, text, zone_dir};

/// `curl -sS` the metrics page and parse its samples (`name{labels}` → value).
fn scrape(address: SocketAddr) -> BTreeMap<String, f64> {
    let mut command = Command::new("curl");
    command.args([
        "-sS",
        "--fail",
        "--noproxy",
        "*",
        "--max-time",
        "10",
        &format!("http://{address}/metrics"),
    ]);
    let output = run_with_deadline(command, Duration::from_secs(20));
    let page = text(&output.stdout);
    assert!(
        output.status.success(),
        "curl: {}{page}",
        text(&output.stderr)
    );
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample line: {line:?}"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("a number: {line:?}"));
            (series.to_string(), value)
        })
        .collect()
}

fn sample(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series} in {samples:#?}"))
}

#[test]
fn metrics_count_the_queries_and_reports_the_test_sent() {
    let server = Server::start(
        &[("zone.toml", APP_AND_DB_ZONE)],
        &["--metrics", "127.0.0.1:0"],
    );
    let metrics = server
        .metrics_address()
        .expect("the server announced its metrics address");
    let (answers, nxdomains, https) = (5, 3, 2);
    for _ in 0..answers {
        assert_eq!(
            server.addresses("app.internal"),
            [APP_PRIMARY, APP_VIA_BERLIN]
        );
    }
    for _ in 0..nxdomains {
        assert_eq!(server.dig(&["nope.internal", "A"]).status, "NXDOMAIN");
    }
    for _ in 0..https {
        let reply = server.dig(&["app.internal", "HTTPS"]);
        assert_eq!(reply.status, "NOERROR", "{reply}");
        assert!(reply.answers.is_empty(), "{reply}");
    }

    let samples = scrape(metrics);
    let queries: BTreeMap<&str, f64> = samples
        .iter()
        .filter_map(|(series, &value)| {
            Some((series.strip_prefix("failover_dns_queries_total")?, value))
        })
        .collect();
    // The harness's readiness probes asked for the apex SOA (at least once) before the test.
    let readiness = queries
        .get("{type=\"soa\",outcome=\"answer\"}")
        .copied()
        .unwrap_or_else(|| panic!("the readiness SOA queries are counted: {queries:?}"));
    assert!(readiness >= 1.0, "{queries:?}");
    assert_eq!(
        queries,
        BTreeMap::from([
            ("{type=\"a\",outcome=\"answer\"}", f64::from(answers)),
            ("{type=\"a\",outcome=\"nxdomain\"}", f64::from(nxdomains)),
            ("{type=\"https\",outcome=\"nodata\"}", f64::from(https)),
            ("{type=\"soa\",outcome=\"answer\"}", readiness),
        ]),
        "exactly the queries sent"
    );
    let total = f64::from(answers + nxdomains + https) + readiness;
    assert_eq!(
        sample(&samples, "failover_dns_query_duration_seconds_count"),
        total
    );
    assert_eq!(
        sample(
            &samples,
            "failover_dns_query_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        total
    );
    assert!(sample(&samples, "failover_dns_query_duration_seconds_sum") > 0.0);
    let build_info = format!(
        "failover_dns_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&samples, &build_info), 1.0);
    assert_eq!(sample(&samples, "failover_dns_failovers_total"), 0.0);
    assert_eq!(
        sample(
            &samples,
            "failover_dns_reports_total{outcome=\"failure\",source=\"agent\"}"
        ),
        0.0
    );

    server.report(false, APP_PRIMARY);
    let after = scrape(metrics);
    assert_eq!(
        sample(
            &after,
            "failover_dns_reports_total{outcome=\"failure\",source=\"agent\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "failover_dns_reports_total{outcome=\"success\",source=\"agent\"}"
        ),
        0.0
    );
    assert_eq!(
        sample(&after, "failover_dns_failovers_total"),
        1.0,
        "the report moved app.internal's first endpoint"
    );
    assert_eq!(
        sample(&after, "failover_dns_query_duration_seconds_count"),
        total,
        "scraping is no query"
    );
}

#[test]
fn metrics_on_a_non_loopback_address_are_refused_before_anything_is_bound() {
    let dir = zone_dir(&[("zone.toml", APP_AND_DB_ZONE)]);
    let control = dir.path().join("control.sock");
    let settings = dir.path().join("settings.toml");
    std::fs::write(&settings, "metrics = \"192.0.2.1:9100\"\n").expect("write settings");
    let zones = dir.path().join("zones");
    let zones = zones.to_str().expect("temporary paths are UTF-8");
    let control_arg = control.to_str().expect("temporary paths are UTF-8");
    let settings_arg = settings.to_str().expect("temporary paths are UTF-8");
    // 192.0.2.1 (TEST-NET-1) is only an argument here: the server must refuse it before it
    // binds anything, so nothing is ever sent to it.
    for (case, metrics_args, message) in [
        (
            "flag",
            ["--metrics", "192.0.2.1:9100"],
            "metrics address 192.0.2.1:9100 is not a loopback address",
        ),
        (
            "settings file",
            ["--config", settings_arg],
            "settings.toml:1:11: metrics address 192.0.2.1:9100 is not a loopback address",
        ),
    ] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_failover-dns"));
        command
            .args(["serve", "--zones", zones, "--listen", "127.0.0.1:0"])
            .args(["--control", control_arg, "--resolv-conf", "/dev/null"])
            .args(metrics_args);
        let output = run_with_deadline(command, WAIT_DEADLINE);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{case}: {output:?}");
        assert!(stderr.contains(message), "{case}: {stderr}");
        assert!(
            output.stdout.is_empty(),
            "{case}: nothing was announced: {}",
            text(&output.stdout)
        );
        assert!(!control.exists(), "{case}: no control socket was created");
    }
}
