//! Replays every file of the fuzz corpora (`fuzz/corpus/<target>/`, seeds and whatever a local
//! fuzzing run added) and of the minimized crash regressions (`fuzz/regressions/<target>/`)
//! through the same harness functions the fuzz targets call, so CI on stable Rust catches a
//! regression without libFuzzer.

use std::path::Path;

use crate::harness::{Violation, check_control_line, check_request, check_zone_config};

type Check = fn(&[u8]) -> Result<(), Violation>;

/// Runs `check` on every file of `target`'s corpus and regressions; returns how many ran.
fn replay(target: &str, check: Check) -> usize {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = 0;
    let mut failures = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = fuzz.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if !path.is_file() {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read a corpus file");
            ran += 1;
            if let Err(violation) = check(&bytes) {
                failures.push(format!("{}: {violation}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    ran
}

#[test]
fn request_corpus_replays_without_a_violation() {
    assert!(replay("request", check_request) >= 80);
}

#[test]
fn zone_config_corpus_replays_without_a_violation() {
    assert!(replay("zone_config", check_zone_config) >= 10);
}

#[test]
fn control_line_corpus_replays_without_a_violation() {
    assert!(replay("control_line", check_control_line) >= 10);
}
