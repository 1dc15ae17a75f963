//! Zone and policy files (`zones/*.toml`, as the management console pushes them): the serde edge
//! types, and their conversion into validated [`ZoneData`] with every error located by file, line
//! and column. Unknown fields are rejected.
//!
//! The format is plain serde data (arrays of tables), so the same shape can arrive as JSON.

pub mod keys;
pub(crate) mod layer;
pub mod limits;
pub mod settings;
pub mod values;

mod build;
mod file;
mod raw;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::location::{ConfigError, Location, SourceFile};
use crate::model::ZoneData;

use file::PreparedFile;
pub use raw::parse_name;

/// The zone files of a zones directory, sorted by name so that configuration order is stable,
/// and the entries named like zone files that cannot be read as one (each with why). Hidden
/// files (editor swap files, `.#name.toml`) are not zone files.
pub fn zone_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<String>), ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|error| {
        ConfigError::one(
            Location::file(dir),
            format!("cannot read zones directory: {error}"),
        )
    })?;
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| {
            ConfigError::one(
                Location::file(dir),
                format!("cannot read zones directory: {error}"),
            )
        })?;
        if !is_zone_file_name(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        // Through symbolic links, as the file is read.
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => files.push(path),
            Ok(metadata) => skipped.push(format!(
                "{}: skipped: not a regular file ({})",
                path.display(),
                file_kind(&metadata.file_type())
            )),
            Err(error) => skipped.push(format!("{}: skipped: {error}", path.display())),
        }
    }
    files.sort();
    skipped.sort();
    Ok((files, skipped))
}

/// What kind of file system entry a non-regular file is, for a warning.
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a file"
    }
}

/// Whether a file in the zones directory is read as zone data by its name: `*.toml` or `*.json`
/// (as a console pushes it), not hidden. The reload watcher uses the same rule to tell which
/// changes matter.
pub fn is_zone_file_name(name: &std::ffi::OsStr) -> bool {
    let name = Path::new(name);
    let hidden = name.to_string_lossy().starts_with('.');
    !hidden
        && name
            .extension()
            .is_some_and(|ext| ext == "toml" || ext == "json")
}

/// Loads and validates every zone file in `dir`. Files are read, parsed and converted on their
/// own in parallel (`file.rs`); the checks across files run after that (`build.rs`).
pub fn load_zone_dir(dir: &Path) -> Result<ZoneData, ConfigError> {
    // Shared paths made here, not in the parsing threads (see `SourceFile::read_shared`).
    let (files, skipped_files) = zone_files(dir)?;
    let paths: Vec<Arc<Path>> = files.into_iter().map(Arc::from).collect();
    let prepared = in_parallel(&paths, |path| match SourceFile::read_shared(path) {
        Ok(source) => Prepared::from(PreparedFile::prepare(&source)),
        Err(error) => Prepared::Unreadable(error),
    });
    let mut data = build_prepared(prepared)?;
    data.skipped_files = skipped_files;
    Ok(data)
}

/// Parses and validates zone data an agent received as text (for example JSON from the
/// management console): `name` says what to call it in errors, and its ending (`.json` or
/// `.toml`) which format it is in.
pub fn load_zone_text(name: &str, text: &str) -> Result<ZoneData, ConfigError> {
    load_zone_sources(&[SourceFile::new(Path::new(name), text.to_string())])
}

/// Parses and validates zone data from already-read files (the order given is configuration
/// order). All problems are collected and returned together.
pub fn load_zone_sources(sources: &[SourceFile]) -> Result<ZoneData, ConfigError> {
    let prepared = in_parallel(sources, |source| {
        Prepared::from(PreparedFile::prepare(source))
    });
    build_prepared(prepared)
}

/// One zone file after the per-file pass.
enum Prepared {
    Unreadable(ConfigError),
    Unparsable(ConfigError),
    Ready(Box<PreparedFile>),
}

impl From<Result<PreparedFile, ConfigError>> for Prepared {
    fn from(result: Result<PreparedFile, ConfigError>) -> Self {
        match result {
            Ok(file) => Prepared::Ready(Box::new(file)),
            Err(error) => Prepared::Unparsable(error),
        }
    }
}

/// Files that cannot be read are reported alone, then files that cannot be parsed; only when
/// every file parsed do the cross-file checks run.
fn build_prepared(prepared: Vec<Prepared>) -> Result<ZoneData, ConfigError> {
    let mut unreadable = Vec::new();
    let mut unparsable = Vec::new();
    let mut files = Vec::with_capacity(prepared.len());
    for file in prepared {
        match file {
            Prepared::Unreadable(error) => unreadable.extend(error.diagnostics),
            Prepared::Unparsable(error) => unparsable.extend(error.diagnostics),
            Prepared::Ready(file) => files.push(*file),
        }
    }
    for diagnostics in [unreadable, unparsable] {
        if !diagnostics.is_empty() {
            return Err(ConfigError { diagnostics });
        }
    }
    let (built, tables) = build::build(&files);
    // The prepared files are freed before the builder's tables (see `build::BuildTables`).
    drop(files);
    drop(tables);
    built.map_err(|diagnostics| ConfigError { diagnostics })
}

/// At most this many threads prepare files.
const MAX_WORKERS: usize = 8;

/// `f` over every item, on one worker thread per core (at most [`MAX_WORKERS`]), results in the
/// items' order. With one core or one item it runs on the calling thread.
///
/// Scoped threads (`std::thread::scope`) taking the next item from a shared counter, rather than
/// rayon: a configuration loads once at start and on reloads, so threads that exist only while
/// it loads cost nothing between loads, where a rayon pool would keep a thread per core (and
/// their allocator arenas) for the life of the server; and the work is one flat list of files,
/// which needs no work stealing beyond the counter.
fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(items.len())
        .min(MAX_WORKERS);
    if workers <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("zone-load".to_string())
                    .spawn_scoped(scope, || {
                        let mut done = Vec::new();
                        loop {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            let Some(item) = items.get(index) else { break };
                            done.push((index, f(item)));
                        }
                        done
                    })
                    .ok()
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(done) => {
                    for (index, result) in done {
                        if let Some(slot) = results.get_mut(index) {
                            *slot = Some(result);
                        }
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    // Whatever no worker took (when none could be started) is done here.
    let mut out = Vec::with_capacity(items.len());
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Some(result) => out.push(result),
            None => {
                if let Some(item) = items.get(index) {
                    out.push(f(item));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::raw::{DEFAULT_ANSWER_TTL, DEFAULT_NEGATIVE_TTL};
    use super::*;
    use std::time::Duration;

    fn source(name: &str, text: &str) -> SourceFile {
        SourceFile::new(Path::new(name), text.to_string())
    }

    const ZONE: &str = "[[zone]]\norigin = \"internal\"\n";

    fn load(text: &str) -> Result<ZoneData, ConfigError> {
        load_zone_sources(&[source("zone.toml", ZONE), source("data.toml", text)])
    }

    #[test]
    fn endpoints_follow_configuration_order_primary_first() {
        let data = load(
            r#"
[[virtual_asset]]
id = "va"
gateway = "gw"
addresses = ["192.0.2.2"]
names = ["app.internal"]

[[asset]]
id = "gw"
kind = "gateway"
addresses = ["100.64.0.9"]

[[asset]]
id = "primary"
kind = "primary"
addresses = ["100.64.0.1"]
names = ["APP.internal."]
"#,
        )
        .expect("valid data loads");
        assert_eq!(data.names.len(), 1);
        let addresses: Vec<String> = data.names[0]
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        assert_eq!(addresses, ["100.64.0.1", "192.0.2.2"]);
        assert_eq!(data.zones[0].answer_ttl, DEFAULT_ANSWER_TTL);
        assert_eq!(data.zones[0].soa.minimum, DEFAULT_NEGATIVE_TTL);
    }

    #[test]
    fn errors_are_located_table() {
        // (file text, expected "line:column" and a word the message must contain)
        let cases: &[(&str, &str, &str)] = &[
            ("[[asset]\n", "1:9", "expected `]`"),
            (
                "[[asset]]\nid = \"a\"\nkind = \"primary\"\ncolour = 1\n",
                "4:1",
                "unknown field",
            ),
            (
                "[[asset]]\nid = \"a\"\nkind = \"primary\"\naddresses = [\"10.0.0.300\"]\n",
                "4:14",
                "invalid IP address",
            ),
            (
                "[[policy]]\nid = \"p\"\nsources = [\"*\"]\ndestinations = [\"nope\"]\n",
                "4:17",
                "unknown destination",
            ),
            (
                "[[policy]]\nid = \"p\"\nsources = [\"role:x\"]\ndestinations = []\n",
                "3:12",
                "unknown kind",
            ),
            (
                "[[asset]]\nid = \"a\"\nkind = \"gateway\"\n[[asset]]\nid = \"a\"\nkind = \"gateway\"\n",
                "5:6",
                "duplicate destination id",
            ),
            (
                "[[asset]]\nid = \"gw\"\nkind = \"gateway\"\n[[subnet]]\nid = \"s\"\ngateway = \"gw\"\ncidr = \"10.1.0.0/24\"\nhosts = [{ name = \"f.internal\", address = \"10.2.0.1\" }]\n",
                "8:43",
                "outside the subnet",
            ),
            (
                "[[virtual_asset]]\nid = \"v\"\ngateway = \"missing\"\naddresses = [\"10.0.0.1\"]\n",
                "3:11",
                "unknown gateway",
            ),
            (
                "[[asset]]\nid = \"a\"\nkind = \"primary\"\naddresses = [\"10.0.0.1\"]\nnames = [\"app.example\"]\n",
                "5:10",
                "not inside any declared zone",
            ),
            (
                "[[zone]]\norigin = \"other\"\nttl = 301\n",
                "3:7",
                "above the maximum",
            ),
        ];
        for (text, position, word) in cases {
            let error = load(text).expect_err("broken data must be rejected");
            let rendered = error.to_string();
            assert!(
                rendered.starts_with(&format!("data.toml:{position}")),
                "expected data.toml:{position} for {text:?}, got {rendered}"
            );
            assert!(rendered.contains(word), "expected {word:?} in {rendered}");
        }
    }

    #[test]
    fn zone_files_are_the_visible_toml_and_json_files() {
        for (name, read) in [
            ("zone.toml", true),
            ("push.json", true),
            ("a.b.json", true),
            (".zone.toml.tmp", false),
            (".hidden.toml", false),
            ("zone.toml~", false),
            ("zone.toml.swp", false),
            ("notes.txt", false),
            ("json", false),
            ("toml", false),
        ] {
            assert_eq!(
                is_zone_file_name(std::ffi::OsStr::new(name)),
                read,
                "{name}"
            );
        }
    }

    #[test]
    fn json_pushed_by_a_console_loads_like_toml() {
        let json = r#"{
  "zone": [{"origin": "internal", "ttl": 7}],
  "asset": [
    {"id": "gw", "kind": "gateway", "addresses": ["100.64.0.9"]},
    {"id": "app-host", "kind": "primary", "addresses": ["100.64.0.1"], "names": ["app.internal"]}
  ],
  "virtual_asset": [{"id": "va", "gateway": "gw", "addresses": ["10.1.0.5"], "names": ["app.internal"],
                     "probe": {"port": 443, "interval_ms": 1000}}],
  "policy": [{"id": "p", "sources": ["*"], "destinations": ["app-host", "va"]}]
}"#;
        let data = load_zone_sources(&[source("console.json", json)]).expect("valid JSON loads");
        assert_eq!(data.zones[0].answer_ttl, 7);
        let addresses: Vec<String> = data.names[0]
            .endpoints
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        assert_eq!(addresses, ["100.64.0.1", "10.1.0.5"]);
        assert_eq!(
            data.destinations[2].probe.as_ref().map(|p| p.port),
            Some(443)
        );

        let syntax =
            load_zone_sources(&[source("bad.json", "{\n  \"zone\": [\n    {\"origin\": }\n")])
                .expect_err("syntax error");
        assert!(syntax.to_string().starts_with("bad.json:3:"), "{syntax}");
        let unknown = load_zone_sources(&[source(
            "bad.json",
            "{\"zone\": [{\"origin\": \"x\", \"colour\": 1}]}",
        )])
        .expect_err("unknown field");
        assert!(unknown.to_string().starts_with("bad.json:1:"), "{unknown}");
        assert!(
            unknown.to_string().contains("unknown field `colour`"),
            "{unknown}"
        );
        let semantic = load_zone_sources(&[source(
            "bad.json",
            "{\"policy\": [{\"id\": \"p\", \"sources\": [\"*\"], \"destinations\": [\"nope\"]}]}",
        )])
        .expect_err("unknown destination");
        assert!(
            semantic
                .to_string()
                .starts_with("bad.json: unknown destination"),
            "{semantic}"
        );
    }

    #[test]
    fn probe_settings_are_validated_table() {
        let cases = [
            ("probe = { port = 443 }", None),
            (
                "probe = { port = 443, interval_ms = 50 }",
                Some("below 100"),
            ),
            ("probe = { port = 0 }", Some("1-65535")),
            (
                "probe = { port = 80, interval_ms = 1000, jitter_ms = 1000 }",
                Some("jitter_ms"),
            ),
            ("probe = { port = 80, colour = 1 }", Some("unknown field")),
            (
                "probe = { port = 80, interval_ms = 500, timeout_ms = 600 }",
                Some("must not exceed"),
            ),
        ];
        for (probe, expected) in cases {
            let text = format!(
                "[[asset]]\nid = \"a\"\nkind = \"primary\"\naddresses = [\"10.0.0.1\"]\nnames = [\"a.internal\"]\n{probe}\n\
                 [[policy]]\nid = \"p\"\nsources = [\"*\"]\ndestinations = [\"a\"]\n"
            );
            match (load(&text), expected) {
                (Ok(data), None) => {
                    let spec = data.destinations[0]
                        .probe
                        .as_deref()
                        .copied()
                        .expect("probe kept");
                    assert_eq!(spec.interval, Duration::from_secs(5));
                    assert_eq!(spec.timeout, Duration::from_secs(1));
                }
                (Err(error), Some(words)) => {
                    assert_eq!(
                        error.diagnostics.len(),
                        1,
                        "only the probe's error, nothing that follows from it: {error}"
                    );
                    let error = error.to_string();
                    assert!(error.starts_with("data.toml:6:"), "{error}");
                    assert!(error.contains(words), "{error}");
                }
                (result, expected) => panic!("{probe}: {result:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn a_duplicate_id_names_where_the_first_was_declared_in_another_file() {
        let asset = "[[asset]]\nid = \"gw\"\nkind = \"gateway\"\n";
        let error = load_zone_sources(&[
            source("a.toml", ZONE),
            source("b.toml", &format!("\n{asset}")),
            source("c.toml", asset),
        ])
        .expect_err("duplicate id");
        assert_eq!(
            error.to_string(),
            "c.toml:2:6: duplicate destination id \"gw\" (first declared at b.toml:3:6)"
        );
    }

    #[test]
    fn all_errors_are_reported_together() {
        let error =
            load("[[policy]]\nid = \"p\"\nsources = [\"bad\"]\ndestinations = [\"x\", \"y\"]\n")
                .expect_err("rejected");
        assert_eq!(error.diagnostics.len(), 3, "{error}");
    }
}
