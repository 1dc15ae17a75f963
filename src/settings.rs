//! The server's own settings, as opposed to the zone data it serves: where the zone files are,
//! the addresses to listen on, the control socket, and this client's identity. Embedded defaults,
//! overlaid by a settings file, overlaid by command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::location::{ConfigError, SourceFile, resolve_relative};
use crate::policy::Identity;

/// Where the server listens when nothing else is said: loopback, a high port, so a first run
/// needs no privileges.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5300";
/// The zones directory when nothing else is said, relative to the working directory.
pub const DEFAULT_ZONES_DIR: &str = "zones";

/// Validated server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Directory of zone and policy files.
    pub zones_dir: PathBuf,
    /// Addresses to serve DNS on, UDP and TCP each.
    pub listen: Vec<SocketAddr>,
    /// Path of the control socket.
    pub control: PathBuf,
    /// Who this client is; policies are evaluated against it.
    pub identity: Identity,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            zones_dir: PathBuf::from(DEFAULT_ZONES_DIR),
            listen: vec![default_listen()],
            control: default_control_path(),
            identity: default_identity(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5300))
}

/// The identity the embedded default serves the sample zones for.
pub fn default_identity() -> Identity {
    Identity {
        user: Some("alice".to_string()),
        groups: vec!["engineering".to_string()],
        device: Some("alice-laptop".to_string()),
    }
}

/// The control socket path when none is configured: `$XDG_RUNTIME_DIR/failover-dns.sock`, else
/// `/tmp/failover-dns-<uid>.sock`, so every user gets their own and `report` finds the server
/// without flags.
pub fn default_control_path() -> PathBuf {
    if let Some(runtime_dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Path::new(&runtime_dir).join("failover-dns.sock");
    }
    let uid = current_uid().map_or_else(|| "user".to_string(), |uid| uid.to_string());
    PathBuf::from(format!("/tmp/failover-dns-{uid}.sock"))
}

/// This process's user id (read from `/proc/self`, which the process owns).
pub fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    zones: Option<String>,
    listen: Option<Vec<Spanned<String>>>,
    control: Option<String>,
    identity: Option<Identity>,
}

impl Settings {
    /// The embedded defaults overlaid with the settings file at `path`. Relative paths in the
    /// file are relative to the file's directory.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let source = SourceFile::read(path)?;
        let raw: RawSettings = source.parse_toml()?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut settings = Settings::default();
        if let Some(zones) = raw.zones {
            settings.zones_dir = resolve_relative(base, Path::new(&zones));
        }
        if let Some(control) = raw.control {
            settings.control = resolve_relative(base, Path::new(&control));
        }
        if let Some(identity) = raw.identity {
            settings.identity = identity;
        }
        if let Some(listen) = raw.listen {
            let mut addresses = Vec::new();
            for entry in &listen {
                addresses.push(
                    parse_listen(entry.get_ref()).map_err(|message| {
                        ConfigError::one(source.locate(entry.span()), message)
                    })?,
                );
            }
            if addresses.is_empty() {
                return Err(ConfigError::one(
                    source.locate(listen.first().map_or(0..0, |l| l.span())),
                    "listen must name at least one address",
                ));
            }
            settings.listen = addresses;
        }
        Ok(settings)
    }
}

/// Parses `ADDR:PORT` (`[v6]:PORT` for IPv6).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "invalid listen address {text:?}: expected ADDR:PORT, e.g. 127.0.0.1:5300 or [::1]:5300"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_resolves_paths() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("settings.toml");
        std::fs::write(
            &path,
            "zones = \"data\"\nlisten = [\"127.0.0.2:53\", \"[::1]:5353\"]\n[identity]\nuser = \"bob\"\ngroups = [\"ops\"]\n",
        )
        .expect("write");
        let settings = Settings::from_file(&path).expect("valid settings");
        assert_eq!(settings.zones_dir, dir.path().join("data"));
        assert_eq!(settings.listen.len(), 2);
        assert_eq!(settings.identity.user.as_deref(), Some("bob"));
        assert_eq!(settings.identity.device, None);
        assert_eq!(settings.control, default_control_path());
    }

    #[test]
    fn bad_settings_are_located() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("settings.toml");
        let cases = [
            (
                "listen = [\"localhost\"]\n",
                ":1:11",
                "invalid listen address",
            ),
            ("lisen = []\n", ":1:1", "unknown field"),
            (
                "[identity]\nuser = \"a\"\nrole = \"x\"\n",
                ":3:1",
                "unknown field",
            ),
        ];
        for (text, position, words) in cases {
            std::fs::write(&path, text).expect("write");
            let error = Settings::from_file(&path)
                .expect_err("rejected")
                .to_string();
            assert!(
                error.contains(&format!("settings.toml{position}")),
                "{error}"
            );
            assert!(error.contains(words), "{error}");
        }
    }
}
