//! Unit tests of the counters as a scrape renders them: valid exposition text, every family
//! shown from the start, cumulative histogram buckets, upstreams in address order.

use super::*;

#[test]
fn rendered_counters_table() {
    let metrics = Metrics::new();
    metrics.query(
        Some(RecordType::A),
        ResponseKind::Answer,
        Duration::from_micros(20),
    );
    metrics.query(
        Some(RecordType::A),
        ResponseKind::Answer,
        Duration::from_micros(20),
    );
    metrics.query(
        Some(RecordType::HTTPS),
        ResponseKind::NoData,
        Duration::from_micros(3),
    );
    metrics.query(None, ResponseKind::FormErr, Duration::from_micros(1));
    metrics.report(Outcome::Failure, ReportSource::Agent);
    metrics.failover();
    metrics.reload(false);
    let upstream: SocketAddr = "127.0.0.1:53".parse().expect("literal");
    metrics.upstream(upstream, AttemptResult::Timeout, Duration::from_secs(2));
    let text = metrics.render();
    let expected = [
        "failover_dns_queries_total{type=\"a\",outcome=\"answer\"} 2",
        "failover_dns_queries_total{type=\"https\",outcome=\"nodata\"} 1",
        "failover_dns_queries_total{type=\"other\",outcome=\"formerr\"} 1",
        // prometheus-client writes `le` as Go's client does (`strconv.FormatFloat(v, 'g')`):
        // 1e-05 and 5e-05 for the two bounds under 1e-4 (the same numbers as before).
        "failover_dns_query_duration_seconds_bucket{le=\"1e-05\"} 2",
        "failover_dns_query_duration_seconds_bucket{le=\"5e-05\"} 4",
        "failover_dns_query_duration_seconds_bucket{le=\"+Inf\"} 4",
        "failover_dns_query_duration_seconds_count 4",
        "failover_dns_reports_total{outcome=\"failure\",source=\"agent\"} 1",
        "failover_dns_reports_total{outcome=\"success\",source=\"agent\"} 0",
        "failover_dns_failovers_total 1",
        "failover_dns_reloads_total{outcome=\"failure\"} 1",
        "failover_dns_upstream_queries_total{upstream=\"127.0.0.1:53\",outcome=\"timeout\"} 1",
        "failover_dns_upstream_duration_seconds_bucket{upstream=\"127.0.0.1:53\",le=\"5\"} 1",
        "failover_dns_upstream_duration_seconds_count{upstream=\"127.0.0.1:53\"} 1",
        "failover_dns_build_info{version=\"0.1.0\"} 1",
    ];
    for line in expected {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert_eq!(metrics.queries_with(ResponseKind::Answer), 2);
    assert_valid_exposition(&text);
}

/// Every family docs/control-protocol.md documents, with its type: each has its `# HELP` and `# TYPE`
/// lines even before anything was counted, and nothing else.
const FAMILIES: [(&str, &str); 10] = [
    ("failover_dns_build_info", "gauge"),
    ("failover_dns_queries_total", "counter"),
    ("failover_dns_query_duration_seconds", "histogram"),
    ("failover_dns_failovers_total", "counter"),
    ("failover_dns_reports_total", "counter"),
    ("failover_dns_cache_hits_total", "counter"),
    ("failover_dns_aborted_connects_total", "counter"),
    ("failover_dns_upstream_queries_total", "counter"),
    ("failover_dns_upstream_duration_seconds", "histogram"),
    ("failover_dns_reloads_total", "counter"),
];

/// The text is Prometheus text exposition 0.0.4: `# HELP` then `# TYPE` per documented
/// family, in that order, no OpenMetrics-only lines (`# UNIT`, `# EOF`), and every sample a
/// `name{labels} value` of its family with a number for the value.
fn assert_valid_exposition(text: &str) {
    let mut families = Vec::new();
    let mut current: Option<(&str, &str)> = None;
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, help) = help.split_once(' ').expect("a help text");
            assert!(help.ends_with('.'), "{line}");
            assert!(!help.ends_with(".."), "{line}");
            current = Some((name, ""));
            continue;
        }
        if let Some(kind) = line.strip_prefix("# TYPE ") {
            let (name, kind) = kind.split_once(' ').expect("a type");
            assert_eq!(
                current.map(|(n, _)| n),
                Some(name),
                "TYPE after HELP: {line}"
            );
            current = Some((name, kind));
            families.push((name, kind));
            continue;
        }
        assert!(!line.starts_with('#'), "not in the 0.0.4 format: {line}");
        let (name, _) = current.expect("a sample after its family's TYPE line");
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let metric = series.split('{').next().unwrap_or(series);
        let allowed = [
            name.to_string(),
            format!("{name}_bucket"),
            format!("{name}_sum"),
            format!("{name}_count"),
        ];
        assert!(allowed.iter().any(|a| a == metric), "{line} under {name}");
        assert!(value.parse::<f64>().is_ok(), "a number: {line}");
        if let Some(labels) = series.strip_prefix(metric) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
    }
    assert_eq!(
        families, FAMILIES,
        "the documented families, in order\n{text}"
    );
    assert!(text.ends_with('\n'));
}

#[test]
fn every_family_is_shown_before_anything_is_counted() {
    let text = Metrics::new().render();
    assert_valid_exposition(&text);
    for line in [
        "failover_dns_failovers_total 0",
        "failover_dns_cache_hits_total 0",
        "failover_dns_reports_total{outcome=\"success\",source=\"agent\"} 0",
        "failover_dns_reloads_total{outcome=\"failure\"} 0",
        "failover_dns_query_duration_seconds_bucket{le=\"+Inf\"} 0",
        "failover_dns_query_duration_seconds_count 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(!text.contains("failover_dns_queries_total{"), "{text}");
    assert!(!text.contains("upstream="), "{text}");
    assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
}

/// A scrape between an observation's bucket add and its count add never shows a `+Inf`
/// bucket below a finite one; observations over the last bound are in `+Inf` only.
#[test]
fn histogram_buckets_are_cumulative_and_end_in_the_count() {
    let histogram = Histogram::default();
    histogram.observe(Duration::from_micros(20));
    histogram.observe(Duration::from_secs(7));
    let snapshot = histogram.snapshot();
    assert_eq!(snapshot.count, 2);
    assert_eq!(snapshot.buckets[1], (0.000_05, 1));
    assert_eq!(snapshot.buckets.last(), Some(&(f64::INFINITY, 1)), "7 s");
    assert_eq!(snapshot.buckets.iter().map(|(_, n)| n).sum::<u64>(), 2);
    assert!((snapshot.sum_seconds - 7.000_02).abs() < 1e-9);

    // Two observations half recorded: in their bucket, not yet in the count.
    histogram.buckets[0].fetch_add(2, Ordering::Relaxed);
    let snapshot = histogram.snapshot();
    assert_eq!(snapshot.count, 3, "never below the finite buckets' total");
    assert_eq!(snapshot.buckets.last(), Some(&(f64::INFINITY, 0)));
    assert_eq!(snapshot.buckets.iter().map(|(_, n)| n).sum::<u64>(), 3);
}

#[test]
fn upstreams_are_shown_in_address_order() {
    let metrics = Metrics::new();
    for upstream in ["[::1]:53", "127.0.0.2:53", "127.0.0.1:5353"] {
        let upstream: SocketAddr = upstream.parse().expect("literal");
        metrics.upstream(upstream, AttemptResult::Answered, Duration::from_millis(2));
    }
    let text = metrics.render();
    assert_valid_exposition(&text);
    let order: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("failover_dns_upstream_duration_seconds_count"))
        .collect();
    assert_eq!(
        order,
        [
            "{upstream=\"127.0.0.1:5353\"} 1",
            "{upstream=\"127.0.0.2:53\"} 1",
            "{upstream=\"[::1]:53\"} 1",
        ]
    );
}
