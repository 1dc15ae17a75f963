//! This process's place on the machine: its user id, and where its control socket lives when
//! no path is configured (a directory of the user's own). The control socket and the state
//! file check ownership against the same user id.

use std::path::{Path, PathBuf};

/// The control socket path when none is configured: `$XDG_RUNTIME_DIR/failover-dns.sock`; else
/// `/run/failover-dns/control.sock` for root; else `control.sock` in the private directory
/// [`private_control_dir`] names. Every user gets their own, and `report` finds the server
/// without flags.
pub fn default_control_path() -> PathBuf {
    control_path_for(
        current_uid(),
        std::env::var_os("XDG_RUNTIME_DIR"),
        std::env::var_os("TMPDIR"),
    )
}

/// The per-user directory the default control socket lives in when there is no
/// `XDG_RUNTIME_DIR` and the user is not root: `${TMPDIR:-/tmp}/failover-dns-<uid>`. In a
/// directory everyone may write to, a socket path alone could be taken by another user first;
/// a directory of the user's own (mode 0700, checked before use, as tmux does) cannot.
pub fn private_control_dir() -> Option<PathBuf> {
    let path = default_control_path();
    let directory = path.parent()?;
    let uid = current_uid()?;
    (directory.file_name()? == format!("failover-dns-{uid}").as_str()).then(|| directory.into())
}

fn control_path_for(
    uid: Option<u32>,
    runtime_dir: Option<std::ffi::OsString>,
    temporary_dir: Option<std::ffi::OsString>,
) -> PathBuf {
    if let Some(runtime_dir) = runtime_dir.filter(|d| !d.is_empty()) {
        return Path::new(&runtime_dir).join("failover-dns.sock");
    }
    if uid == Some(0) {
        return PathBuf::from("/run/failover-dns/control.sock");
    }
    let base = temporary_dir
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let uid = uid.map_or_else(|| "user".to_string(), |uid| uid.to_string());
    base.join(format!("failover-dns-{uid}"))
        .join("control.sock")
}

/// This process's user id (read from `/proc/self`, which the process owns).
pub fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_control_path_table() {
        let os = |text: &str| Some(std::ffi::OsString::from(text));
        let cases = [
            (
                Some(1000),
                os("/run/user/1000"),
                None,
                "/run/user/1000/failover-dns.sock",
            ),
            (
                Some(0),
                os("/run/user/0"),
                None,
                "/run/user/0/failover-dns.sock",
            ),
            (
                Some(0),
                None,
                os("/var/tmp"),
                "/run/failover-dns/control.sock",
            ),
            (
                Some(1000),
                None,
                None,
                "/tmp/failover-dns-1000/control.sock",
            ),
            (
                Some(1000),
                os(""),
                os(""),
                "/tmp/failover-dns-1000/control.sock",
            ),
            (
                Some(1000),
                None,
                os("/var/tmp"),
                "/var/tmp/failover-dns-1000/control.sock",
            ),
        ];
        for (uid, runtime_dir, temporary_dir, expected) in cases {
            assert_eq!(
                control_path_for(uid, runtime_dir.clone(), temporary_dir.clone()),
                PathBuf::from(expected),
                "{uid:?} {runtime_dir:?} {temporary_dir:?}"
            );
        }
    }
}
