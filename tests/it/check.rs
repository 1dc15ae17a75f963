//! `failover-dns check`: a bad zone file exits 1 naming FILE:LINE:COL of every problem on stderr;
//! good files exit 0, with a warning on stdout for each policy that grants only part of a shared
//! name (the policy pitfall: failover cannot work for its clients).

use std::process::Output;

use crate::support::zones::INTERNAL_ZONE;
use crate::support::{Server, failover_dns, zone_dir};

/// Runs `check` on `files` and returns the zones directory's path (for expected messages) with
/// the output.
fn run_check(files: &[(&str, &str)]) -> (String, Output) {
    let dir = zone_dir(files);
    let zones = dir.path().join("zones");
    let zones = zones.to_str().expect("temporary paths are UTF-8");
    let output = failover_dns(&["check", "--zones", zones]);
    (zones.to_string(), output)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("check prints UTF-8")
}

#[test]
fn broken_files_are_rejected_with_file_line_and_column() {
    // (contents of 10-broken.toml, the expected "LINE:COL" of each error in order, a phrase of
    // the first message)
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "[[asset]]\nid = \"a\"\nkind = \"primary\"\ncolour = 1\n",
            &["4:1"],
            "unknown field `colour`",
        ),
        (
            "[[policy]]\nid = \"p\"\nsources = [\"*\"]\ndestinations = [\"nope\"]\n",
            &["4:17"],
            "unknown destination \"nope\"",
        ),
        (
            "[[asset]]\nid = \"a\"\nkind = \"primary\"\naddresses = [\"100.64.0.1\", \"10.0.0.300\"]\n",
            &["4:28"],
            "invalid IP address \"10.0.0.300\"",
        ),
        ("\n[[asset]\n", &["2:9"], "expected `]`"),
        (
            "[[asset]]\nid = \"a\"\nkind = \"router\"\n",
            &["3:8"],
            "unknown variant `router`",
        ),
        (
            "[[asset]]\nid = \"a\"\nkind = \"primary\"\naddresses = [\"10.0.0.1\"]\nnames = [\"app.example\"]\n",
            &["5:10"],
            "not inside any declared zone",
        ),
        (
            "[[asset]]\nid = \"gw\"\nkind = \"gateway\"\n\n[[subnet]]\nid = \"lan\"\ngateway = \"gw\"\ncidr = \"10.1.0.0/24\"\nhosts = [{ name = \"f.internal\", address = \"10.2.0.1\" }]\n",
            &["9:43"],
            "outside the subnet's CIDR",
        ),
        (
            "[[virtual_asset]]\nid = \"v\"\ngateway = \"missing\"\naddresses = [\"10.0.0.1\"]\n",
            &["3:11"],
            "unknown gateway asset \"missing\"",
        ),
        (
            "[[zone]]\norigin = \"other\"\nttl = 301\n",
            &["3:7"],
            "above the maximum",
        ),
        // Every problem is reported, columns count characters (not bytes).
        (
            "[[policy]]\nid = \"p\"\nsources = [\"*\", \"role:x\"]\ndestinations = [\"büro\", \"nope\"]\n",
            &["3:17", "4:17", "4:25"],
            "unknown kind \"role\"",
        ),
    ];
    let mut failures = Vec::new();
    for (broken, positions, phrase) in cases {
        let (zones, output) =
            run_check(&[("00-zone.toml", INTERNAL_ZONE), ("10-broken.toml", broken)]);
        let stderr = text(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let expected: Vec<String> = positions
            .iter()
            .map(|p| format!("{zones}/10-broken.toml:{p}: error: "))
            .collect();
        let located = lines.len() == expected.len()
            && lines.iter().zip(&expected).all(|(l, e)| l.starts_with(e));
        let ok = output.status.code() == Some(1)
            && located
            && lines.first().is_some_and(|l| l.contains(phrase))
            && output.stdout.is_empty();
        if !ok {
            failures.push(format!(
                "{broken:?}\n  expected exit 1, {expected:?}, {phrase:?}\n  got {}, stderr:\n{stderr}  stdout: {}",
                output.status,
                text(&output.stdout)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn policy_granting_part_of_a_shared_name_is_warned_about() {
    // Not the shared network (support::zones): two names behind one gateway `gw`, each with its
    // own policies (the pitfall, a complete one, a disabled partial one), and the warnings name
    // these ids.
    let names = r#"
[[asset]]
id = "gw"
kind = "gateway"
addresses = ["100.64.0.2"]

[[asset]]
id = "app-host"
kind = "primary"
addresses = ["100.64.1.10"]
names = ["app.internal"]

[[virtual_asset]]
id = "app-via-gw"
gateway = "gw"
addresses = ["10.10.0.10"]
names = ["app.internal"]

[[asset]]
id = "db-host"
kind = "primary"
addresses = ["100.64.2.10"]
names = ["db.internal"]

[[virtual_asset]]
id = "db-via-gw"
gateway = "gw"
addresses = ["10.10.0.20"]
names = ["db.internal"]

# The pitfall: only the primary is granted.
[[policy]]
id = "app-primary-only"
sources = ["group:engineering"]
destinations = ["app-host"]

# Complete, and a disabled partial one: neither is warned about.
[[policy]]
id = "db"
sources = ["*"]
destinations = ["db-host", "db-via-gw"]

[[policy]]
id = "db-draft"
enabled = false
sources = ["*"]
destinations = ["db-via-gw"]
"#;
    let (_, output) = run_check(&[("00-zone.toml", INTERNAL_ZONE), ("10-names.toml", names)]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    let [warning] = warnings.as_slice() else {
        panic!("expected exactly one warning:\n{stdout}");
    };
    assert!(
        warning.starts_with(
            "warning: shared name app.internal.: policy \"app-primary-only\" grants app-host \
             (primary asset) but not app-via-gw (virtual asset)"
        ),
        "{warning}"
    );
    assert!(stdout.contains("(1 warnings)"), "{stdout}");

    // Serving the same data logs the same warning, once, at start.
    let server = Server::start(
        &[("00-zone.toml", INTERNAL_ZONE), ("10-names.toml", names)],
        &[],
    );
    let logged = server.stderr();
    let mentions = logged
        .matches("policy \"app-primary-only\" grants app-host")
        .count();
    assert_eq!(
        mentions, 1,
        "the pitfall is logged once at start:\n{logged}"
    );
}

#[test]
fn shipped_sample_zones_check_with_the_wiki_pitfall_warning_only() {
    let zones = concat!(env!("CARGO_MANIFEST_DIR"), "/zones");
    let output = failover_dns(&["check", "--zones", zones]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    let [warning] = warnings.as_slice() else {
        panic!("expected exactly one warning:\n{stdout}");
    };
    for part in [
        "shared name wiki.internal.",
        "policy \"engineering-wiki-primary-only\"",
        "but not wiki-via-berlin",
    ] {
        assert!(warning.contains(part), "{part:?} missing from {warning}");
    }
}

#[test]
fn entries_named_like_zone_files_that_are_not_files_are_skipped_with_a_warning() {
    let dir = zone_dir(&[("zone.toml", INTERNAL_ZONE)]);
    let zones = dir.path().join("zones");
    let fifo = zones.join("pushed.toml");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo");
    std::os::unix::fs::symlink("loop.toml", zones.join("loop.toml")).expect("a link loop");
    std::os::unix::fs::symlink("gone.json", zones.join("dangling.json")).expect("a dangling link");
    std::fs::create_dir(zones.join("dir.toml")).expect("a directory");
    let output = failover_dns(&["check", "--zones", zones.to_str().expect("UTF-8 path")]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    for (file, why) in [
        ("pushed.toml", "a FIFO"),
        ("loop.toml", "symbolic links"),
        ("dangling.json", "No such file"),
        ("dir.toml", "a directory"),
    ] {
        let path = zones.join(file).display().to_string();
        assert!(
            stdout.lines().any(|line| line.starts_with("warning: ")
                && line.contains(&path)
                && line.contains("skipped")
                && line.contains(why)),
            "{file}: {stdout}"
        );
    }
    assert!(stdout.contains("(4 warnings)"), "{stdout}");

    // A reload reports the same warnings, and the server keeps serving.
    let server = Server::start(&[("zone.toml", INTERNAL_ZONE)], &[]);
    let served = server.zones_dir();
    std::os::unix::fs::symlink("loop.toml", served.join("loop.toml")).expect("a link loop");
    let output = server.cli(&["reload"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("warning: ") && stderr.contains("loop.toml: skipped"),
        "{stderr}"
    );
}

#[test]
fn a_bad_setting_flag_is_a_usage_error_before_the_settings_file_is_read() {
    // The flag is checked as the file would be, and wins over a file that is broken too.
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = dir.path().join("settings.toml");
    std::fs::write(&settings, "cache_size = \"many\"\n").expect("write");
    let settings = settings.to_str().expect("UTF-8 path");
    for (flag, value, words) in [
        (
            "--upstream-timeout-ms",
            "5",
            "upstream_timeout_ms 5 is outside 10..=30000",
        ),
        ("--upstream", "tls://192.0.2.1#", "invalid upstream"),
        (
            "--max-tcp-connections",
            "0",
            "max_tcp_connections 0 is outside 1..=65535",
        ),
    ] {
        let output = failover_dns(&["check", "--config", settings, flag, value]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(&format!("{flag}: {words}")),
            "{flag} {value}: {stderr}"
        );
    }
    let output = failover_dns(&["check", "--config", settings]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("settings.toml:1:14"),
        "{}",
        text(&output.stderr)
    );
}
