//! Measures loading a large configuration, as `failover-dns serve` does at start: read and
//! validate every zone file of a directory (`config::load_zone_dir`), evaluate the policies
//! (`Snapshot::new`), look for partial-grant warnings (`serve` logs them) and build the
//! `Handler`. Prints, for 100,000 shared names × 4 endpoints
//! (primary asset + 3 virtual assets, one IPv4 address each) and for the peer comparison's
//! 4 A + 2 AAAA shape, 100 names to a file: the load time (first load in this process, and the
//! best of 2), the RSS the loaded data keeps (`VmRSS` after − before; this includes memory the
//! allocator keeps from parsing), the peak during the load (`VmHWM`, reset before), and the
//! whole process's RSS afterwards. Files are written to a temporary directory first (not
//! timed). Then 5,000 names in files of 10, 100 and 1,000 names, to show that the loader's cost
//! does not depend on how the names are split into files.
//!
//! Not a criterion benchmark: one load takes long enough to time directly, and the RSS figures
//! need a fresh process (each measurement re-runs this binary). Run with
//! `cargo bench --bench load`; under `cargo test` it loads 2,000 and 500 names once. `FAILOVER_BENCH_NAMES=N` changes the size.

mod common;

use std::time::{Duration, Instant};

use failover_dns::internals::ForwardSettings;
use failover_dns::internals::Handler;
use failover_dns::internals::HealthTable;
use failover_dns::internals::{SharedSnapshot, Snapshot};
use failover_dns::load_zone_dir;

/// Loads the directory the way `serve` does and returns the handler.
fn load(dir: &std::path::Path) -> Handler {
    let data = load_zone_dir(dir).expect("generated zone data is valid");
    let snapshot = Snapshot::new(data, failover_dns::Identity::default());
    // `serve` logs these at start (none for this data, but it has to look for them).
    let warnings = snapshot.warnings();
    assert!(
        warnings.is_empty(),
        "generated data is complete: {warnings:?}"
    );
    Handler::standalone(
        SharedSnapshot::new(snapshot),
        HealthTable::new(),
        ForwardSettings::default(),
    )
}

fn measure(names: usize, v6: bool, per_file: usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut bytes = 0usize;
    for (file, text) in common::zone_files_shaped(names, v6, per_file) {
        bytes += text.len();
        std::fs::write(dir.path().join(file), text).expect("write a zone file");
    }
    let shape = if v6 {
        "4 destinations, 4 A + 2 AAAA endpoints"
    } else {
        "4 destinations, 4 IPv4 endpoints"
    };

    // First load, in a process that has not loaded anything yet (the RSS figures).
    let peak_reset = common::reset_peak_rss();
    let before = common::rss_kb();
    let started = Instant::now();
    let handler = load(dir.path());
    let first = started.elapsed();
    let after = common::rss_kb();
    let peak = common::peak_rss_kb();
    let loaded = handler.snapshot().load().zones.data().names.len();
    assert_eq!(
        loaded,
        names + 1,
        "every generated name (and v4only) loaded"
    );
    drop(handler);

    // Two more loads for a steadier time (the allocator reuses memory now).
    let mut times = vec![first];
    let repeats = usize::from(common::measuring() && per_file == common::NAMES_PER_FILE);
    for _ in 0..repeats {
        let started = Instant::now();
        let handler = load(dir.path());
        times.push(started.elapsed());
        drop(handler);
    }
    let best = times.iter().min().copied().unwrap_or(Duration::ZERO);
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!(
        "load/{names}_names ({shape}; {:.1} MB of TOML in {} files of {per_file} names): first load {:.3} s, best of \
         {} {:.3} s; RSS kept {:.1} MB (before {:.1} MB, after {:.1} MB); peak during load {}",
        bytes as f64 / 1e6,
        std::fs::read_dir(dir.path()).map_or(0, Iterator::count),
        first.as_secs_f64(),
        times.len(),
        best.as_secs_f64(),
        mb(after.saturating_sub(before)),
        mb(before),
        mb(after),
        if peak_reset {
            format!(
                "{:.1} MB (+{:.1} MB)",
                mb(peak),
                mb(peak.saturating_sub(before))
            )
        } else {
            "unknown (cannot reset VmHWM)".to_string()
        },
    );
}

fn main() {
    // Each measurement runs in a fresh process (this binary again), so freed memory the
    // allocator keeps from one load does not hide the next one's RSS.
    if let Ok(spec) = std::env::var(SPEC_VAR) {
        let mut fields = spec.split(',').map(|f| f.parse::<usize>().unwrap_or(0));
        let (names, endpoints, per_file) = (
            fields.next().unwrap_or(0),
            fields.next().unwrap_or(0),
            fields.next().unwrap_or(0),
        );
        measure(names, endpoints == 6, per_file);
        return;
    }
    let large = common::large_size();
    let small = if common::measuring() { 5_000 } else { 500 };
    // (label, names, endpoints per name, names per file)
    let mut runs = vec![
        ("load/4_endpoints", large, 4, common::NAMES_PER_FILE),
        ("load/6_endpoints", large, 6, common::NAMES_PER_FILE),
    ];
    // The same names in fewer, larger files (the loader's cost once grew with the square of a
    // file's size).
    runs.extend([
        ("load/file_size", small, 6, 10),
        ("load/file_size", small, 6, 100),
        ("load/file_size", small, 6, 1_000),
    ]);
    // `cargo bench` passes `--bench`; a filter argument skips the runs whose label lacks it.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |label: &str| filters.is_empty() || filters.iter().any(|f| label.contains(f));
    let exe = std::env::current_exe().expect("the bench binary's path");
    let mut passed = 0;
    for (label, names, endpoints, per_file) in runs {
        if wanted(label) {
            passed += 1;
            let status = std::process::Command::new(&exe)
                .args(std::env::args().skip(1))
                .env(SPEC_VAR, format!("{names},{endpoints},{per_file}"))
                .status()
                .expect("run the measurement in a fresh process");
            assert!(status.success(), "{label} failed");
        }
    }
    if !common::measuring() {
        // Under `cargo test` this binary is the last one to run; close like a test runner
        // (every load above asserted its name count, and a failure panics before this line).
        println!("load: {passed} passed, 0 failed");
    }
}

/// Set in the child process: `NAMES,ENDPOINTS_PER_NAME,NAMES_PER_FILE` to measure.
const SPEC_VAR: &str = "FAILOVER_BENCH_LOAD";
