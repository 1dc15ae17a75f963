//! Supply chain, offline and on every test run: the advisories known to matter for our dependency
//! tree are written down here with the first fixed version, and both lockfiles (the crate's and
//! `fuzz/`'s) are checked against them: a dependency update that brings back a vulnerable version
//! fails the build. This needs neither `cargo-audit` nor the RustSec advisory database.
//! `scripts/audit.sh` runs the real `cargo audit` on both lockfiles against a local copy of that
//! database when it finds one (it never fetches it); such a copy is a snapshot that knows nothing
//! published after it was taken, so an advisory for a crate in a lockfile is added here as well.

use std::path::Path;

/// (crate, first fixed version, advisories fixed there).
const FIXED_IN: &[(&str, (u64, u64, u64), &str)] = &[
    (
        "hickory-proto",
        (0, 26, 1),
        "RUSTSEC-2026-0119 / GHSA-q2qq-hmj6-3wpp: O(n²) name compression in BinEncoder (CPU \
         exhaustion); RUSTSEC-2025-0006 (DNSSEC, fixed in 0.24.3); RUSTSEC-2026-0118 (≤0.25)",
    ),
    (
        "hickory-net",
        (0, 26, 1),
        "RUSTSEC-2026-0120 / GHSA-3v94-mw7p-v465: NSEC3 closest-encloser loop (OOM or panic)",
    ),
];

/// Crates that must not be in the tree at all: no fixed version exists.
const BANNED: &[(&str, &str)] = &[
    (
        "trust-dns-proto",
        "RUSTSEC-2025-0017 unmaintained (renamed hickory-proto); RUSTSEC-2018-0007",
    ),
    (
        "trust-dns-server",
        "unmaintained (renamed hickory-server); RUSTSEC-2020-0001, RUSTSEC-2023-0041",
    ),
    (
        "hickory-recursor",
        "RUSTSEC-2026-0106 sibling-zone NS cache poisoning; folded into hickory-resolver 0.26",
    ),
];

/// `MAJOR.MINOR.PATCH` of a version (pre-release and build suffixes ignored).
fn triple(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

fn read_toml(relative: &str) -> toml::Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Every (name, version) in a Cargo.lock.
fn locked(relative: &str) -> Vec<(String, String)> {
    let lock = read_toml(relative);
    lock.get("package")
        .and_then(toml::Value::as_array)
        .expect("a lockfile lists packages")
        .iter()
        .filter_map(|p| {
            Some((
                p.get("name")?.as_str()?.to_string(),
                p.get("version")?.as_str()?.to_string(),
            ))
        })
        .collect()
}

#[test]
fn lockfiles_hold_no_version_with_a_known_advisory() {
    let mut problems = Vec::new();
    let mut hickory_seen = false;
    for lockfile in ["Cargo.lock", "fuzz/Cargo.lock"] {
        for (name, version) in locked(lockfile) {
            hickory_seen |= name.starts_with("hickory-");
            if let Some((_, why)) = BANNED.iter().find(|(banned, _)| *banned == name) {
                problems.push(format!(
                    "{lockfile}: {name} {version} must not be used: {why}"
                ));
            }
            let Some((_, fixed, advisories)) = FIXED_IN.iter().find(|(n, ..)| *n == name) else {
                continue;
            };
            match triple(&version) {
                Some(v) if v >= *fixed => {}
                _ => problems.push(format!(
                    "{lockfile}: {name} {version} is below {}.{}.{}: {advisories}",
                    fixed.0, fixed.1, fixed.2
                )),
            }
        }
    }
    assert!(hickory_seen, "the lockfile check sees the hickory crates");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn cargo_toml_requires_the_fixed_hickory_versions() {
    let manifest = read_toml("Cargo.toml");
    let dependencies = manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .expect("Cargo.toml has dependencies");
    let mut checked = 0;
    for (name, spec) in dependencies
        .iter()
        .filter(|(n, _)| n.starts_with("hickory-"))
    {
        let requirement = match spec {
            toml::Value::String(requirement) => requirement.as_str(),
            other => other
                .get("version")
                .and_then(toml::Value::as_str)
                .unwrap_or_else(|| panic!("{name} names a version")),
        };
        // A caret requirement (the default) allows nothing below the version it names.
        let minimum = triple(requirement.trim_start_matches(['^', '>', '=', ' ']));
        assert!(
            minimum.is_some_and(|m| m >= (0, 26, 1)) && !requirement.starts_with(['<', '~', '*']),
            "{name} = {requirement:?} must require at least 0.26.1 (RUSTSEC-2026-0119, -0120)"
        );
        checked += 1;
    }
    assert!(checked > 0, "Cargo.toml depends on hickory crates");
}

#[test]
fn version_triples() {
    assert_eq!(triple("0.26.3"), Some((0, 26, 3)));
    assert_eq!(triple("0.27.0-alpha.1"), Some((0, 27, 0)));
    assert_eq!(triple("0.26"), Some((0, 26, 0)));
    assert!(triple("0.26.0") < triple("0.26.1"));
    assert_eq!(triple("x"), None);
}
