//! What a reload would read, stamped without reading it: the settings as loaded and each zone
//! file's identity and change times. A reload whose stamp equals the last build's rebuilds
//! nothing.

use std::path::Path;

use crate::config::is_zone_file_name;
use crate::config::settings::Settings;
use crate::location::ConfigError;

/// What a reload reads, without reading the zone files: the settings as loaded, and for every
/// entry of the zones directory named like a zone file, which file it is and when it last
/// changed. Equal stamps mean equal input, short of a file rewritten within the same
/// nanosecond of its change time.
#[derive(Debug, PartialEq)]
pub(super) struct InputStamp {
    settings: Settings,
    files: Vec<FileStamp>,
}

#[derive(Debug, PartialEq)]
struct FileStamp {
    name: std::ffi::OsString,
    device: u64,
    inode: u64,
    mode: u32,
    length: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl InputStamp {
    /// The stamp of what a reload would read now; `None` when anything cannot be looked at
    /// (the build then runs and reports it).
    pub(super) fn take(
        load_settings: &(dyn Fn() -> Result<Settings, ConfigError> + Send + Sync),
        zones_dir: &Path,
    ) -> Option<InputStamp> {
        use std::os::unix::fs::MetadataExt;
        let settings = load_settings().ok()?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(zones_dir).ok()? {
            let entry = entry.ok()?;
            let name = entry.file_name();
            if !is_zone_file_name(&name) {
                continue;
            }
            // Through symbolic links, as the loader reads the file.
            let metadata = std::fs::metadata(entry.path()).ok()?;
            files.push(FileStamp {
                name,
                device: metadata.dev(),
                inode: metadata.ino(),
                mode: metadata.mode(),
                length: metadata.len(),
                modified: (metadata.mtime(), metadata.mtime_nsec()),
                changed: (metadata.ctime(), metadata.ctime_nsec()),
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Some(InputStamp { settings, files })
    }
}
