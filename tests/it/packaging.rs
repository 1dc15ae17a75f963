//! The Debian package that `scripts/package.sh` builds (`scripts/test.sh` builds it before the
//! tests): unpacked with `dpkg-deb -x`, every file is where the README says, the unit and the
//! settings are the repository's, the man pages render with `man -l` and list every flag that
//! `--help` lists, and the bash completion completes `serve`. Installed with `dpkg -i` (root
//! only, as in CI; others are told `skipped: needs root`), the binary is on the `PATH` and the unit
//! where systemd looks; `dpkg -r` removes it again.
//!
//! Without a package for this version the tests fail and say how to build one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

use crate::support::text;

/// The package's version, as cargo-deb names it (revision 1).
const DEB_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "-1");

/// What a failure that a package older than the source explains says.
const REBUILD: &str =
    "is the package older than the source? rebuild it with `bash scripts/package.sh`";

/// Every file the package must hold, relative to `/`.
const FILES: &[&str] = &[
    "usr/bin/failover-dns",
    "usr/lib/systemd/system/failover-dns.service",
    "etc/failover-dns/settings.toml",
    "usr/share/doc/failover-dns/README.md",
    // The documents the README links to.
    "usr/share/doc/failover-dns/docs/configuration.md",
    "usr/share/doc/failover-dns/docs/observer.md",
    "usr/share/doc/failover-dns/docs/control-protocol.md",
    "usr/share/doc/failover-dns/docs/clients.md",
    "usr/share/doc/failover-dns/copyright",
    "usr/share/man/man1/failover-dns.1.gz",
    "usr/share/man/man1/failover-dns-serve.1.gz",
    "usr/share/man/man1/failover-dns-check.1.gz",
    "usr/share/man/man1/failover-dns-report.1.gz",
    "usr/share/man/man1/failover-dns-status.1.gz",
    "usr/share/man/man1/failover-dns-watch.1.gz",
    "usr/share/man/man1/failover-dns-reload.1.gz",
    "usr/share/bash-completion/completions/failover-dns",
    "usr/share/zsh/vendor-completions/_failover-dns",
    "usr/share/fish/vendor_completions.d/failover-dns.fish",
];

/// The commands that have a man page of their own (`failover-dns-COMMAND(1)`).
const COMMANDS: &[&str] = &["serve", "check", "report", "watch", "status", "reload"];

/// The package `scripts/package.sh` built for this version, in the target directory's `debian/`.
fn package() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_failover-dns"));
    let target_dir = binary
        .parent()
        .and_then(Path::parent)
        .expect("the binary is in TARGET/PROFILE/");
    let debian = target_dir.join("debian");
    let prefix = format!("failover-dns_{DEB_VERSION}_");
    let found = std::fs::read_dir(&debian).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with(&prefix) && name.ends_with(".deb"))
            })
    });
    found.unwrap_or_else(|| {
        panic!(
            "no {prefix}ARCH.deb in {}: build it with `bash scripts/package.sh` (scripts/test.sh \
             does before the tests)",
            debian.display()
        )
    })
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("run {program}: {error}"))
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// The package unpacked (`dpkg-deb -x`) into a temporary directory.
fn unpacked() -> TempDir {
    let deb = package();
    let dir = tempfile::tempdir().expect("temporary directory");
    run_ok(
        "dpkg-deb",
        &[
            "-x",
            deb.to_str().expect("UTF-8 path"),
            dir.path().to_str().expect("UTF-8 path"),
        ],
    );
    dir
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// The long options (`--name`) in `text`, sorted and deduplicated.
fn long_options(text: &str) -> Vec<String> {
    let mut options: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(|word| word.trim_end_matches('-').to_string())
        .collect();
    options.sort();
    options.dedup();
    options
}

/// A man page rendered as plain text, wide enough that no option is hyphenated.
fn render_man_page(page: &Path) -> String {
    let output = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "250")
        .env("LC_ALL", "C")
        .env_remove("MAN_KEEP_FORMATTING")
        .stdin(Stdio::null())
        .output()
        .expect("run man (man-db)");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "man -l {} ({}):\n{}",
        page.display(),
        output.status,
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// What bash completes `words` (the last one being completed) to with the completion script.
fn bash_completions(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let program = format!(
        r#"source "$1" || exit 1
function=$(complete -p failover-dns | sed -E 's/.*-F ([^ ]+).*/\1/')
[ -n "$function" ] || exit 2
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE='{line}'
COMP_POINT=${{#COMP_LINE}}
"$function" failover-dns '{current}' '{previous}'
printf '%s\n' "${{COMPREPLY[@]}}""#,
        words = words.join(" "),
        cword = words.len() - 1,
        current = words.last().copied().unwrap_or_default(),
        previous = words
            .len()
            .checked_sub(2)
            .and_then(|i| words.get(i))
            .copied()
            .unwrap_or_default(),
    );
    let output = run_ok("bash", &["-c", &program, "bash", path_str(script)]);
    output
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

fn repository_file(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|error| panic!("read {path}: {error}"))
}

#[test]
fn the_package_holds_every_file_in_its_place() {
    let root = unpacked();
    let root = root.path();
    let missing: Vec<&&str> = FILES
        .iter()
        .filter(|path| {
            std::fs::metadata(root.join(path)).map_or(true, |m| !m.is_file() || m.len() == 0)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "missing or empty in the package: {missing:?}"
    );

    // The zones directory the settings point at, empty; the sample zones as examples.
    let zones = root.join("etc/failover-dns/zones");
    let entries = std::fs::read_dir(&zones)
        .unwrap_or_else(|error| panic!("{}: {error}", zones.display()))
        .count();
    assert_eq!(entries, 0, "/etc/failover-dns/zones/ is not empty");
    let repository_zones = Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
    for entry in std::fs::read_dir(&repository_zones).expect("read zones/") {
        let name = entry.expect("zones/ entry").file_name();
        let name = name.to_str().expect("UTF-8 name");
        let example = root
            .join("usr/share/doc/failover-dns/examples/zones")
            .join(name);
        assert!(
            std::fs::read(&example).ok() == Some(repository_file(&format!("zones/{name}"))),
            "{} is not zones/{name}: {REBUILD}",
            example.display()
        );
    }

    // The unit and the settings are the repository's own.
    let unit = root.join("usr/lib/systemd/system/failover-dns.service");
    assert!(
        std::fs::read(&unit).expect("read the unit")
            == repository_file("contrib/failover-dns.service"),
        "the unit is not contrib/failover-dns.service: {REBUILD}"
    );
    assert!(
        std::fs::read(root.join("etc/failover-dns/settings.toml")).expect("read the settings")
            == repository_file("contrib/settings.toml"),
        "the settings are not contrib/settings.toml: {REBUILD}"
    );
    let unit = std::fs::read_to_string(&unit).expect("read the unit");
    for line in [
        "Type=notify",
        "ExecStartPre=/usr/bin/failover-dns check --config /etc/failover-dns/settings.toml",
        "ExecStart=/usr/bin/failover-dns serve --config /etc/failover-dns/settings.toml",
        "LimitNOFILE=8192",
        // Fail fast, on in the packaged settings, needs it.
        "AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_ADMIN",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_ADMIN",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line:?}");
    }

    // The binary runs, and validates the sample zones with the packaged settings.
    let binary = root.join("usr/bin/failover-dns");
    let version = run_ok(path_str(&binary), &["--version"]);
    assert_eq!(
        version.trim(),
        concat!("failover-dns ", env!("CARGO_PKG_VERSION"))
    );
    assert!(
        run_ok(path_str(&binary), &["--help"])
            == run_ok(env!("CARGO_BIN_EXE_failover-dns"), &["--help"]),
        "the packaged binary's --help differs from this build's: {REBUILD}"
    );
    let check = run_ok(
        path_str(&binary),
        &[
            "check",
            "--config",
            path_str(&root.join("etc/failover-dns/settings.toml")),
            "--zones",
            path_str(&root.join("usr/share/doc/failover-dns/examples/zones")),
        ],
    );
    assert!(check.contains("ok: "), "{check}");

    // Control data: the version from Cargo.toml, the settings a conffile, and dependencies on
    // the C library only (what the binary links).
    let deb = package();
    let deb = path_str(&deb);
    let field = |name: &str| run_ok("dpkg-deb", &["-f", deb, name]).trim().to_string();
    assert_eq!(field("Package"), "failover-dns");
    assert_eq!(field("Version"), DEB_VERSION);
    let depends = field("Depends");
    for dependency in depends.split(',').map(str::trim) {
        assert!(
            dependency.starts_with("libc6") || dependency.starts_with("libgcc-s1"),
            "Depends: {depends}"
        );
    }
    let control = tempfile::tempdir().expect("temporary directory");
    run_ok("dpkg-deb", &["-e", deb, path_str(control.path())]);
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).unwrap_or_default();
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        ["/etc/failover-dns/settings.toml"]
    );
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        assert!(
            !control.path().join(script).exists(),
            "{script}: the package starts nothing by itself"
        );
    }
}

#[test]
fn the_man_pages_render_and_list_every_flag_of_the_help() {
    let root = unpacked();
    let man1 = root.path().join("usr/share/man/man1");
    let binary = env!("CARGO_BIN_EXE_failover-dns");
    let page = render_man_page(&man1.join("failover-dns.1.gz"));
    assert!(
        page.contains("failover-dns - a small DNS server"),
        "NAME line:\n{page}"
    );
    for command in COMMANDS {
        assert!(
            page.contains(&format!("failover-dns-{command}(1)")),
            "failover-dns(1) does not list failover-dns-{command}(1)"
        );
    }
    let help = run_ok(binary, &["--help"]);
    let shown = long_options(&page);
    let missing: Vec<String> = long_options(&help)
        .into_iter()
        .filter(|option| !shown.contains(option))
        .collect();
    assert!(
        missing.is_empty(),
        "failover-dns(1) lacks {missing:?}: {REBUILD}"
    );
    for command in COMMANDS {
        let page = render_man_page(&man1.join(format!("failover-dns-{command}.1.gz")));
        let help = run_ok(binary, &[command, "--help"]);
        let shown = long_options(&page);
        let missing: Vec<String> = long_options(&help)
            .into_iter()
            .filter(|option| !shown.contains(option))
            .collect();
        assert!(
            missing.is_empty(),
            "failover-dns-{command}(1) lacks {missing:?}: {REBUILD}"
        );
    }
}

#[test]
fn the_bash_completion_completes_commands_and_flags() {
    let root = unpacked();
    let script = root
        .path()
        .join("usr/share/bash-completion/completions/failover-dns");
    assert_eq!(
        bash_completions(&script, &["failover-dns", "se"]),
        ["serve"]
    );
    assert_eq!(
        bash_completions(&script, &["failover-dns", "serve", "--lis"]),
        ["--listen"]
    );
    let commands = bash_completions(&script, &["failover-dns", ""]);
    for command in COMMANDS {
        assert!(
            commands.iter().any(|word| word == command),
            "{command} not offered: {commands:?}"
        );
    }
}

fn is_installed() -> bool {
    let output = run("dpkg-query", &["-W", "-f", "${Status}", "failover-dns"]);
    output.status.success() && text(&output.stdout).ends_with(" installed")
}

/// Removes the package when the test ends, however it ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "failover-dns"]);
    }
}

#[test]
fn installing_puts_the_binary_on_the_path_and_the_unit_where_systemd_looks() {
    if !crate::support::needs_root("dpkg -i") {
        return;
    }
    let deb = package();
    assert!(
        !is_installed(),
        "failover-dns is already installed on this machine; this test installs and removes it: \
         remove it first (dpkg -r failover-dns)"
    );
    let installed = Installed;
    run_ok("dpkg", &["-i", path_str(&deb)]);
    assert!(is_installed(), "dpkg -i left it not installed");

    // A working binary on the PATH.
    let on_path = run_ok("sh", &["-c", "command -v failover-dns"]);
    assert_eq!(on_path.trim(), "/usr/bin/failover-dns");
    let version = run_ok("failover-dns", &["--version"]);
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    // What ExecStartPre runs: the installed settings and the empty zones directory are valid.
    let check = run_ok(
        "failover-dns",
        &["check", "--config", "/etc/failover-dns/settings.toml"],
    );
    assert!(check.contains("ok: 0 zones"), "{check}");
    let check = run_ok(
        "failover-dns",
        &[
            "check",
            "--config",
            "/etc/failover-dns/settings.toml",
            "--zones",
            "/usr/share/doc/failover-dns/examples/zones",
        ],
    );
    assert!(check.contains("ok: "), "{check}");

    // The unit where systemd looks, and the man page where man looks.
    let unit = Path::new("/usr/lib/systemd/system/failover-dns.service");
    assert!(unit.is_file(), "{} is missing", unit.display());
    if Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
    {
        let paths = run_ok("systemd-analyze", &["unit-paths"]);
        assert!(
            paths
                .lines()
                .any(|line| line == "/usr/lib/systemd/system" || line == "/lib/systemd/system"),
            "systemd's unit paths:\n{paths}"
        );
        // Found by name in those paths; the commands and the man page it names exist.
        let verify = run("systemd-analyze", &["verify", "failover-dns.service"]);
        assert!(
            verify.status.success(),
            "systemd-analyze verify failover-dns.service:\n{}{}",
            text(&verify.stdout),
            text(&verify.stderr)
        );
    }
    let man = run_ok("man", &["-w", "failover-dns"]);
    assert_eq!(man.trim(), "/usr/share/man/man1/failover-dns.1.gz");

    run_ok("dpkg", &["-r", "failover-dns"]);
    assert!(!Path::new("/usr/bin/failover-dns").exists());
    assert!(!unit.exists());
    drop(installed);
    assert!(
        !Path::new("/etc/failover-dns/settings.toml").exists(),
        "purged"
    );
}
