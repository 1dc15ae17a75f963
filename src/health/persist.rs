//! Keeps the health table (and which destinations are draining) across restarts: saved on clean shutdown and periodically (written to
//! a new temporary file of a random name, synced, then renamed over the old one, so a crash
//! mid-write never leaves half a file and nothing planted in the directory is written through),
//! and restored at start (only from a regular file of the server's own user), so a restart right
//! after the primary failed does not put the dead primary first again. A missing or corrupt file is a warning, never fatal; entries for
//! addresses that are no longer endpoints are dropped.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::health::{EndpointHealth, HealthTable, ReportSource, Stamp};
use crate::time::unix_ms;

/// How often the table is saved while serving (and at once after a drain or undrain).
pub const SAVE_INTERVAL: Duration = Duration::from_secs(10);
/// The shortest time between two saves a drain or undrain brings: the first is saved at once,
/// those that follow within it together at its end, so toggling a drain in a loop writes the
/// file once a second, not once per toggle.
const DRAIN_SAVE_GAP: Duration = Duration::from_secs(1);
/// How the temporary files a save writes are named: `PREFIX` + random + `SUFFIX`.
const TEMPORARY_PREFIX: &str = ".failover-dns-state.";
const TEMPORARY_SUFFIX: &str = ".tmp";
/// The file format's version; a file of another version is ignored with a warning. Version 2
/// added the traffic success, the last report's source and the draining destinations; a
/// version 1 file is still read.
const FORMAT_VERSION: u32 = 2;
/// The oldest version still read.
const OLDEST_READABLE_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    saved_at_unix_ms: u64,
    endpoints: Vec<SavedEndpoint>,
    /// Ids of the destinations being drained.
    #[serde(default)]
    draining: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedEndpoint {
    address: IpAddr,
    last_success: Option<SavedStamp>,
    last_failure: Option<SavedStamp>,
    consecutive_failures: u32,
    last_rtt_ms: Option<f64>,
    #[serde(default)]
    state_since: Option<SavedStamp>,
    /// Absent in files written before sources were recorded: then the last success counts as
    /// traffic, as every success did.
    #[serde(default)]
    last_traffic_success: Option<SavedStamp>,
    #[serde(default)]
    last_source: Option<ReportSource>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedStamp {
    sequence: u64,
    unix_ms: u64,
}

fn save_stamp(stamp: Option<Stamp>) -> Option<SavedStamp> {
    stamp.map(|s| SavedStamp {
        sequence: s.sequence,
        unix_ms: unix_ms(s.at),
    })
}

fn load_stamp(stamp: Option<SavedStamp>) -> Option<Stamp> {
    stamp.map(|s| Stamp {
        sequence: s.sequence,
        at: UNIX_EPOCH + Duration::from_millis(s.unix_ms),
    })
}

/// Why the state could not be saved or restored.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not one this server may trust: a symbolic link, not a regular file, or
    /// another user's.
    #[error("{path}: refusing to read the health state file: it {message}")]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The file is not a health state file this version understands.
    #[error("{path}: not a usable health state file: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Writes every entry of `health` to `path` atomically (temporary file, then rename).
pub fn save(health: &HealthTable, path: &Path) -> Result<usize, PersistError> {
    let io = |source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut endpoints: Vec<SavedEndpoint> = health
        .entries()
        .into_iter()
        .map(|(address, h)| SavedEndpoint {
            address,
            last_success: save_stamp(h.last_success),
            last_failure: save_stamp(h.last_failure),
            consecutive_failures: h.consecutive_failures,
            last_rtt_ms: h.last_rtt.map(|rtt| rtt.as_secs_f64() * 1000.0),
            state_since: save_stamp(h.state_since),
            last_traffic_success: save_stamp(h.last_traffic_success),
            last_source: h.last_source,
        })
        .collect();
    endpoints.sort_by_key(|e| e.address);
    let count = endpoints.len();
    let file = StateFile {
        version: FORMAT_VERSION,
        saved_at_unix_ms: unix_ms(SystemTime::now()),
        endpoints,
        draining: health.draining(),
    };
    let text = serde_json::to_vec_pretty(&file).map_err(|e| PersistError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let directory = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => parent,
        None => Path::new("."),
    };
    std::fs::create_dir_all(directory).map_err(io)?;
    // The temporary file is created new (O_CREAT|O_EXCL, never through a symlink) under a random
    // name in the same directory, so a file or link someone else planted there is never written
    // through, and the rename below stays on one file system.
    let mut temporary = tempfile::Builder::new()
        .prefix(TEMPORARY_PREFIX)
        .suffix(TEMPORARY_SUFFIX)
        .tempfile_in(directory)
        .map_err(io)?;
    temporary.write_all(&text).map_err(io)?;
    temporary.as_file().sync_all().map_err(io)?;
    temporary.persist(path).map_err(|error| io(error.error))?;
    Ok(count)
}

/// Reads a state file into `health`, keeping only addresses for which `is_endpoint` holds.
/// Returns (restored, dropped). A missing file restores nothing.
pub fn restore(
    health: &HealthTable,
    path: &Path,
    is_endpoint: impl Fn(IpAddr) -> bool,
) -> Result<(usize, usize), PersistError> {
    let text = match read_own_file(path) {
        Ok(text) => text,
        Err(PersistError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok((0, 0));
        }
        Err(error) => return Err(error),
    };
    let corrupt = |message: String| PersistError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let file: StateFile = serde_json::from_slice(&text).map_err(|e| corrupt(e.to_string()))?;
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&file.version) {
        return Err(corrupt(format!(
            "format version {} (expected {OLDEST_READABLE_VERSION} to {FORMAT_VERSION})",
            file.version
        )));
    }
    let (kept, dropped): (Vec<SavedEndpoint>, Vec<SavedEndpoint>) = file
        .endpoints
        .into_iter()
        .partition(|e| is_endpoint(e.address));
    let restored = kept.len();
    health.restore(kept.into_iter().map(|saved| {
        let last_rtt = saved
            .last_rtt_ms
            .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok());
        (
            saved.address,
            EndpointHealth {
                last_success: load_stamp(saved.last_success),
                last_failure: load_stamp(saved.last_failure),
                consecutive_failures: saved.consecutive_failures,
                last_rtt,
                state_since: load_stamp(saved.state_since),
                last_traffic_success: match saved.last_source {
                    Some(_) => load_stamp(saved.last_traffic_success),
                    None => load_stamp(saved.last_success),
                },
                last_source: saved.last_source,
            },
        )
    }));
    for id in &file.draining {
        health.set_draining(id, true);
    }
    if !file.draining.is_empty() {
        info!(destinations = ?file.draining, "draining destinations restored");
    }
    Ok((restored, dropped.len()))
}

/// Reads `path` if it is a regular file of this process's user, reached without a symlink: a
/// state file another user could have planted or swapped (in a shared directory) is refused,
/// not trusted.
fn read_own_file(path: &Path) -> Result<Vec<u8>, PersistError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let refused = |message: String| PersistError::Refused {
        path: path.to_path_buf(),
        message,
    };
    let io = |source| PersistError::Io {
        path: path.to_path_buf(),
        source,
    };
    let link = std::fs::symlink_metadata(path).map_err(io)?;
    if link.file_type().is_symlink() {
        return Err(refused("is a symbolic link".to_string()));
    }
    if !link.file_type().is_file() {
        return Err(refused("is not a regular file".to_string()));
    }
    let own_uid = crate::os::current_uid();
    if Some(link.uid()) != own_uid {
        return Err(refused(format!(
            "is owned by uid {}, not by this server's user",
            link.uid()
        )));
    }
    let mut file = std::fs::File::open(path).map_err(io)?;
    // The path may have been swapped between the check and the open: read only the very file
    // that was checked.
    let opened = file.metadata().map_err(io)?;
    if (opened.dev(), opened.ino()) != (link.dev(), link.ino()) {
        return Err(refused("changed while it was being opened".to_string()));
    }
    let mut text = Vec::new();
    file.read_to_end(&mut text).map_err(io)?;
    Ok(text)
}

/// Restores `path` into `health` at start, logging what happened; never fails. Temporary files
/// a save left behind (the server was killed between creating and renaming one) are removed
/// first ([`remove_stale_temporaries`]). Only addresses that `is_endpoint` accepts (endpoints of
/// the configuration being served) are restored.
pub fn restore_at_start(health: &HealthTable, is_endpoint: impl Fn(IpAddr) -> bool, path: &Path) {
    remove_stale_temporaries(path);
    match restore(health, path, is_endpoint) {
        Ok((0, 0)) => debug!(path = %path.display(), "no saved health state"),
        Ok((restored, dropped)) => info!(
            path = %path.display(),
            restored,
            dropped,
            "health state restored (dropped entries are no longer endpoints)"
        ),
        Err(error) => warn!(%error, "starting with an empty health table"),
    }
}

/// Removes, from the directory of the state file `path`, the temporary files of saves that never
/// completed: named as [`save`] names them, regular files (a link is left alone), of this
/// server's own user, untouched for [`STALE_TEMPORARY_AGE`] (a save another server sharing the
/// directory is making now is left to finish). Returns how many were removed.
pub fn remove_stale_temporaries(path: &Path) -> usize {
    use std::os::unix::fs::MetadataExt;
    let directory = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => parent,
        None => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(directory) else {
        return 0;
    };
    let own_uid = crate::os::current_uid();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if !(name.starts_with(TEMPORARY_PREFIX) && name.ends_with(TEMPORARY_SUFFIX)) {
            continue;
        }
        // `DirEntry::metadata` does not follow a link.
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if !metadata.file_type().is_file() || Some(metadata.uid()) != own_uid {
            continue;
        }
        let age = metadata
            .modified()
            .ok()
            .and_then(|modified| modified.elapsed().ok());
        if age.is_none_or(|age| age < STALE_TEMPORARY_AGE) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(error) => debug!(%error, file = name, "could not remove a stale temporary file"),
        }
    }
    if removed > 0 {
        info!(directory = %directory.display(), removed, "removed temporary files of unfinished state saves");
    }
    removed
}

/// How long a temporary file must have been left untouched to count as a save that never
/// completed: a save takes milliseconds.
const STALE_TEMPORARY_AGE: Duration = Duration::from_secs(60);

/// Saves `health` to `path` every [`SAVE_INTERVAL`], and soon after a drain or undrain (as
/// `events` announce them; see [`save_loop`]), until the task is dropped.
pub async fn save_periodically(
    health: HealthTable,
    path: PathBuf,
    events: crate::health::events::Events,
) {
    save_loop(&events, || save_logged(&health, &path)).await;
}

/// Calls `save` every [`SAVE_INTERVAL`], and after a drain or undrain: at once when the last
/// save is [`DRAIN_SAVE_GAP`] old, else when it will be (one save for every drain and undrain
/// of the gap). Returns when the event bus closes.
async fn save_loop(events: &crate::health::events::Events, mut save: impl FnMut()) {
    use crate::health::events::Event;
    use tokio::sync::broadcast::error::RecvError;
    use tokio::time::Instant;
    let mut ticks = tokio::time::interval(SAVE_INTERVAL);
    let mut events = events.subscribe();
    ticks.tick().await;
    let mut last_save: Option<Instant> = None;
    let mut pending = false;
    loop {
        let gap_over = last_save.map_or_else(Instant::now, |at| at + DRAIN_SAVE_GAP);
        tokio::select! {
            _ = ticks.tick() => {}
            () = tokio::time::sleep_until(gap_over), if pending => {}
            // A drain is an operator's decision: kept soon, not at the next tick.
            event = events.recv() => match event {
                Ok(Event::DestinationDrained { .. } | Event::DestinationUndrained { .. })
                | Err(RecvError::Lagged(_)) => {
                    if Instant::now() < gap_over {
                        pending = true;
                        continue;
                    }
                }
                Ok(_) => continue,
                Err(RecvError::Closed) => return,
            },
        }
        save();
        pending = false;
        last_save = Some(Instant::now());
    }
}

/// Saves once, logging a failure as a warning.
pub fn save_logged(health: &HealthTable, path: &Path) {
    match save(health, path) {
        Ok(count) => debug!(path = %path.display(), count, "health state saved"),
        Err(error) => warn!(%error, "could not save the health state"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_toggles_are_saved_together_once_a_gap() {
        use crate::health::events::{Event, Events};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let events = Events::new();
        let saves = Arc::new(AtomicUsize::new(0));
        let saving = tokio::spawn({
            let (events, saves) = (events.clone(), Arc::clone(&saves));
            async move {
                save_loop(&events, || {
                    saves.fetch_add(1, Ordering::Relaxed);
                })
                .await;
            }
        });
        tokio::task::yield_now().await;
        let toggle = |drained: bool| {
            let destination = "gw".to_string();
            events.publish(if drained {
                Event::DestinationDrained {
                    destination,
                    at_unix_ms: 0,
                }
            } else {
                Event::DestinationUndrained {
                    destination,
                    at_unix_ms: 0,
                }
            });
        };
        // 200 toggles over two seconds.
        for index in 0..200 {
            toggle(index % 2 == 0);
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        tokio::time::advance(DRAIN_SAVE_GAP).await;
        tokio::task::yield_now().await;
        let saved = saves.load(Ordering::Relaxed);
        assert!(
            (2..=4).contains(&saved),
            "the first toggle at once, then one save a second, the last toggle included: {saved}"
        );
        // Nothing more happens: nothing more is written until the periodic save.
        tokio::time::advance(SAVE_INTERVAL / 2).await;
        tokio::task::yield_now().await;
        assert_eq!(saves.load(Ordering::Relaxed), saved);
        saving.abort();
    }

    #[test]
    fn stale_temporaries_of_our_own_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("health.json");
        std::fs::write(&path, "{}").expect("write the state file");
        let stale: Vec<PathBuf> = (0..3)
            .map(|i| {
                dir.path()
                    .join(format!("{TEMPORARY_PREFIX}stale{i}{TEMPORARY_SUFFIX}"))
            })
            .collect();
        let long_ago = SystemTime::now() - Duration::from_secs(600);
        for file in &stale {
            std::fs::write(file, "half a save").expect("write a stale temporary");
            std::fs::File::options()
                .write(true)
                .open(file)
                .and_then(|f| f.set_modified(long_ago))
                .expect("age the temporary");
        }
        // Another server's save in progress, a moment old: left to finish.
        let in_progress = dir
            .path()
            .join(format!("{TEMPORARY_PREFIX}now{TEMPORARY_SUFFIX}"));
        std::fs::write(&in_progress, "being written").expect("write a fresh temporary");
        let other = dir.path().join("notes.tmp");
        std::fs::write(&other, "kept").expect("write another file");
        let target = dir.path().join("target");
        std::fs::write(&target, "kept").expect("write a link target");
        let link = dir
            .path()
            .join(format!("{TEMPORARY_PREFIX}link{TEMPORARY_SUFFIX}"));
        std::os::unix::fs::symlink(&target, &link).expect("plant a link");
        assert_eq!(remove_stale_temporaries(&path), 3);
        assert!(stale.iter().all(|file| !file.exists()));
        for kept in [&path, &other, &target, &link, &in_progress] {
            assert!(
                std::fs::symlink_metadata(kept).is_ok(),
                "{} kept",
                kept.display()
            );
        }
    }
    use crate::health::{Outcome, Report, State};

    fn address(text: &str) -> IpAddr {
        text.parse().expect("literal address")
    }

    #[test]
    fn saved_order_survives_a_restart_and_unknown_addresses_are_dropped() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("state/health.json");
        let before = HealthTable::new();
        for (text, outcome) in [
            ("192.0.2.1", Outcome::Failure),
            ("192.0.2.2", Outcome::Success),
            ("192.0.2.9", Outcome::Failure),
            ("192.0.2.3", Outcome::Failure),
        ] {
            before.report(Report {
                address: address(text),
                outcome,
                rtt: Some(Duration::from_millis(7)),
                source: ReportSource::Agent,
            });
        }
        assert_eq!(save(&before, &path).expect("saved"), 4);

        let after = HealthTable::new();
        let known = |a: IpAddr| a != address("192.0.2.9");
        assert_eq!(restore(&after, &path, known).expect("restored"), (3, 1));
        assert_eq!(after.get(address("192.0.2.1")).state(), State::Down);
        assert_eq!(after.get(address("192.0.2.2")).state(), State::Up);
        assert_eq!(after.get(address("192.0.2.9")).state(), State::Unknown);
        let rtt = after.get(address("192.0.2.2")).last_rtt;
        assert_eq!(rtt, Some(Duration::from_millis(7)));
        // Failures keep their relative age, and new reports come after restored ones.
        let first = after
            .get(address("192.0.2.1"))
            .last_failure
            .expect("failure");
        let third = after
            .get(address("192.0.2.3"))
            .last_failure
            .expect("failure");
        assert!(first.sequence < third.sequence);
        let new = after.report(Report {
            address: address("192.0.2.1"),
            outcome: Outcome::Failure,
            rtt: None,
            source: ReportSource::Agent,
        });
        assert!(new.last_failure.expect("failure").sequence > third.sequence);
    }

    #[test]
    fn drains_and_sources_survive_a_restart_and_older_files_count_successes_as_traffic() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("health.json");
        let before = HealthTable::new();
        before.report(Report {
            address: address("192.0.2.1"),
            outcome: Outcome::Success,
            rtt: None,
            source: ReportSource::Probe,
        });
        before.set_draining("gw-east", true);
        save(&before, &path).expect("saved");
        let after = HealthTable::new();
        restore(&after, &path, |_| true).expect("restored");
        assert_eq!(after.draining(), ["gw-east"]);
        let health = after.get(address("192.0.2.1"));
        assert_eq!(health.last_source, Some(ReportSource::Probe));
        assert_eq!(
            health.last_traffic_success, None,
            "a probe's success stays one"
        );

        let older = r#"{"version":1,"saved_at_unix_ms":0,"endpoints":[{"address":"192.0.2.2",
            "last_success":{"sequence":4,"unix_ms":1},"last_failure":null,
            "consecutive_failures":0,"last_rtt_ms":null}]}"#;
        std::fs::write(&path, older).expect("write");
        let table = HealthTable::new();
        restore(&table, &path, |_| true).expect("an older file is read");
        let health = table.get(address("192.0.2.2"));
        assert_eq!(health.last_traffic_success, health.last_success);
        assert!(table.draining().is_empty());
    }

    #[test]
    fn missing_and_corrupt_files() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let table = HealthTable::new();
        let missing = dir.path().join("none.json");
        assert_eq!(
            restore(&table, &missing, |_| true).expect("missing is fine"),
            (0, 0)
        );
        for text in [
            "{not json",
            "{\"version\":3,\"saved_at_unix_ms\":0,\"endpoints\":[]}",
            "",
        ] {
            let path = dir.path().join("corrupt.json");
            std::fs::write(&path, text).expect("write");
            let error = restore(&table, &path, |_| true).expect_err("corrupt is an error");
            assert!(error.to_string().contains("corrupt.json"), "{error}");
        }
        assert!(table.entries().is_empty());
    }

    fn one_entry_table() -> HealthTable {
        let table = HealthTable::new();
        table.report(Report {
            address: address("192.0.2.1"),
            outcome: Outcome::Failure,
            rtt: None,
            source: ReportSource::Agent,
        });
        table
    }

    #[test]
    fn saving_never_writes_through_a_planted_link() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("state.json");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").expect("write the victim");
        // What another user could plant in a shared directory: a link at the temporary name an
        // earlier version used, and a link at the state file's own path.
        let mut predictable = path.as_os_str().to_owned();
        predictable.push(format!(".{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, PathBuf::from(predictable)).expect("plant a link");
        std::os::unix::fs::symlink(&victim, &path).expect("plant a link at the path");

        assert_eq!(save(&one_entry_table(), &path).expect("saved"), 1);
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "precious\n"
        );
        let saved = std::fs::symlink_metadata(&path).expect("state file");
        assert!(
            saved.file_type().is_file(),
            "the link was replaced, not followed"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(saved.permissions().mode() & 0o077, 0, "private to the user");
        // Nothing but the state file, the victim and the planted link is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 3);
    }

    #[test]
    fn a_state_file_that_is_a_link_or_no_regular_file_is_refused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let real = dir.path().join("real.json");
        save(&one_entry_table(), &real).expect("saved");
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).expect("link");
        let table = HealthTable::new();
        for path in [link, dir.path().to_path_buf()] {
            let error = restore(&table, &path, |_| true).expect_err("refused");
            assert!(matches!(error, PersistError::Refused { .. }), "{error}");
        }
        assert!(table.entries().is_empty());
        assert_eq!(restore(&table, &real, |_| true).expect("own file"), (1, 0));
    }

    #[test]
    fn a_state_file_of_another_user_is_refused() {
        if !crate::testing::needs_root("a state file of another user") {
            return;
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("state.json");
        save(&one_entry_table(), &path).expect("saved");
        std::os::unix::fs::chown(&path, Some(65534), None).expect("chown to nobody");
        let table = HealthTable::new();
        let error = restore(&table, &path, |_| true).expect_err("refused");
        assert!(error.to_string().contains("uid 65534"), "{error}");
        assert!(table.entries().is_empty());
    }
}
