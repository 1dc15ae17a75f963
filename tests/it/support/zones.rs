//! The zone fixtures: where a test's zone files go, and the zone text that many tests share.

use tempfile::TempDir;

/// Writes `files` (name, contents) into a fresh temporary directory's `zones/`.
pub fn zone_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).expect("create the zones directory");
    for (name, text) in files {
        std::fs::write(zones.join(name), text).expect("write a zone file");
    }
    dir
}
