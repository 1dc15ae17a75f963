//! How a setting is declared once and read from two places. [`settings_layer!`] turns one list
//! of settings into a struct that both serde (the settings file) and clap (the flags) fill, one
//! `overlay` that lays either on [`Settings`], the list of settings a reload cannot take over, and
//! each setting's default as it is shown in `--help` and checked against the documentation.
//!
//! A setting's value is read as written ([`Located`] keeps where, for errors in the file) and
//! turned into its [`Settings`] value by a [`Kind`]: the kind owns the checks, so a value is
//! checked the same way whether it came from the file or the command line.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::config::settings::Settings;
use crate::location::{ConfigError, Located, Location, SourceFile, resolve_relative};

/// Where a layer's values came from: the settings file (errors located in it, relative paths
/// resolved against its directory) or the command line.
#[derive(Clone, Copy)]
pub(crate) enum Origin<'a> {
    /// The settings file.
    File(&'a SourceFile),
    /// Flags.
    CommandLine,
}

/// One setting being read: its key in the settings file, and where its value came from.
#[derive(Clone, Copy)]
pub(crate) struct Reading<'a> {
    /// The setting's key in the settings file (and, with `-` for `_`, its flag).
    pub(crate) key: &'static str,
    /// Where the value came from.
    pub(crate) origin: Origin<'a>,
}

impl Reading<'_> {
    /// An error about the value at `span`: located in the file, or naming the flag.
    pub(crate) fn error(&self, span: Option<Range<usize>>, message: String) -> ConfigError {
        match self.origin {
            Origin::File(source) => ConfigError::one(source.locate_optional(span), message),
            Origin::CommandLine => {
                // The lists take one entry per flag, named in the singular.
                let flag = match self.key {
                    "upstreams" | "backup_upstreams" | "groups" => self.key.trim_end_matches('s'),
                    key => key,
                };
                let flag = format!("--{}", flag.replace('_', "-"));
                ConfigError::one(Location::file(Path::new(&flag)), message)
            }
        }
    }

    /// `path` as the setting means it: relative to the settings file's directory when it came
    /// from the file, as given (relative to the working directory) on the command line.
    pub(crate) fn path(&self, path: &str) -> PathBuf {
        match self.origin {
            Origin::File(source) => {
                let base = source.path.parent().unwrap_or(Path::new("."));
                resolve_relative(base, Path::new(path))
            }
            Origin::CommandLine => PathBuf::from(path),
        }
    }

    /// `located`'s value checked by `check`, an error located at it when the check fails.
    pub(crate) fn checked<T, U>(
        &self,
        located: Located<T>,
        check: impl FnOnce(T) -> Result<U, String>,
    ) -> Result<U, ConfigError> {
        let (value, span) = located.into_parts();
        check(value).map_err(|message| self.error(span, message))
    }
}

/// How one setting's value goes from what was written (`Raw`) to what the server uses
/// (`Target`), and how its default is shown.
pub(crate) trait Kind<Raw, Target> {
    /// The value the server uses, or why what was written is not acceptable.
    fn read(&self, raw: Raw, reading: &Reading<'_>) -> Result<Target, ConfigError>;

    /// `target` as it would be written in the settings file, when it has such a form (a
    /// default that depends on the machine, or "none", has not).
    fn written(&self, target: &Target) -> Option<toml::Value>;
}

/// A value used as written: numbers without bounds, switches, names.
pub(crate) struct AsWritten;

impl<T: Into<toml::Value> + Clone> Kind<Located<T>, T> for AsWritten {
    fn read(&self, raw: Located<T>, _: &Reading<'_>) -> Result<T, ConfigError> {
        Ok(raw.into_parts().0)
    }

    fn written(&self, target: &T) -> Option<toml::Value> {
        Some(target.clone().into())
    }
}

/// A count, for example a cache size: a whole number of at most `usize::MAX`.
impl Kind<Located<u64>, usize> for AsWritten {
    fn read(&self, raw: Located<u64>, reading: &Reading<'_>) -> Result<usize, ConfigError> {
        reading.checked(raw, |count| {
            usize::try_from(count).map_err(|_| format!("{} {count} is too large", reading.key))
        })
    }

    fn written(&self, target: &usize) -> Option<toml::Value> {
        i64::try_from(*target).ok().map(toml::Value::Integer)
    }
}

/// A value that is present only when set (`Some`): a name, a path, an address.
pub(crate) struct Optional<K>(pub(crate) K);

impl<Raw, Target, K: Kind<Raw, Target>> Kind<Raw, Option<Target>> for Optional<K> {
    fn read(&self, raw: Raw, reading: &Reading<'_>) -> Result<Option<Target>, ConfigError> {
        self.0.read(raw, reading).map(Some)
    }

    fn written(&self, target: &Option<Target>) -> Option<toml::Value> {
        target.as_ref().and_then(|target| self.0.written(target))
    }
}

/// A setting whose default depends on the machine (the control socket's path), so it has no
/// one written form; its help says what it is.
pub(crate) struct Unshown<K>(pub(crate) K);

impl<Raw, Target, K: Kind<Raw, Target>> Kind<Raw, Target> for Unshown<K> {
    fn read(&self, raw: Raw, reading: &Reading<'_>) -> Result<Target, ConfigError> {
        self.0.read(raw, reading)
    }

    fn written(&self, _: &Target) -> Option<toml::Value> {
        None
    }
}

/// A list of values, each read by the inner kind; the first bad entry is the error.
pub(crate) struct List<K>(pub(crate) K);

impl<Raw, Target, K: Kind<Raw, Target>> Kind<Vec<Raw>, Vec<Target>> for List<K> {
    fn read(&self, raw: Vec<Raw>, reading: &Reading<'_>) -> Result<Vec<Target>, ConfigError> {
        raw.into_iter()
            .map(|entry| self.0.read(entry, reading))
            .collect()
    }

    fn written(&self, target: &Vec<Target>) -> Option<toml::Value> {
        target
            .iter()
            .map(|entry| self.0.written(entry))
            .collect::<Option<Vec<_>>>()
            .map(toml::Value::Array)
    }
}

/// A value written as text and parsed by a function (addresses, upstreams, networks); shown
/// with `Display`.
pub(crate) struct Text<T>(pub(crate) fn(&str) -> Result<T, String>);

impl<T: std::fmt::Display> Kind<Located<String>, T> for Text<T> {
    fn read(&self, raw: Located<String>, reading: &Reading<'_>) -> Result<T, ConfigError> {
        reading.checked(raw, |text| (self.0)(&text))
    }

    fn written(&self, target: &T) -> Option<toml::Value> {
        Some(toml::Value::String(target.to_string()))
    }
}

/// A path; in the settings file, relative to the file's directory.
pub(crate) struct FilePath;

impl Kind<Located<String>, PathBuf> for FilePath {
    fn read(&self, raw: Located<String>, reading: &Reading<'_>) -> Result<PathBuf, ConfigError> {
        Ok(reading.path(&raw.into_parts().0))
    }

    fn written(&self, target: &PathBuf) -> Option<toml::Value> {
        Some(toml::Value::String(target.display().to_string()))
    }
}

/// A whole number within bounds, in the unit its key names: `min..=max`.
pub(crate) struct Ranged {
    /// The least accepted value.
    pub(crate) min: u64,
    /// The greatest accepted value.
    pub(crate) max: u64,
}

impl Ranged {
    /// `value`, or why it is outside the bounds (naming the setting).
    pub(crate) fn check(&self, key: &str, value: u64) -> Result<u64, String> {
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(format!(
                "{key} {value} is outside {}..={}",
                self.min, self.max
            ))
        }
    }
}

/// Milliseconds.
impl Kind<Located<u64>, Duration> for Ranged {
    fn read(&self, raw: Located<u64>, reading: &Reading<'_>) -> Result<Duration, ConfigError> {
        reading.checked(raw, |ms| {
            self.check(reading.key, ms).map(Duration::from_millis)
        })
    }

    fn written(&self, target: &Duration) -> Option<toml::Value> {
        i64::try_from(target.as_millis())
            .ok()
            .map(toml::Value::Integer)
    }
}

/// A count that fits a `usize` (every bound here does).
impl Kind<Located<u64>, usize> for Ranged {
    fn read(&self, raw: Located<u64>, reading: &Reading<'_>) -> Result<usize, ConfigError> {
        reading.checked(raw, |count| {
            let count = self.check(reading.key, count)?;
            Ok(usize::try_from(count).unwrap_or(usize::MAX))
        })
    }

    fn written(&self, target: &usize) -> Option<toml::Value> {
        i64::try_from(*target).ok().map(toml::Value::Integer)
    }
}

/// A small count (retransmissions).
impl Kind<Located<u64>, u8> for Ranged {
    fn read(&self, raw: Located<u64>, reading: &Reading<'_>) -> Result<u8, ConfigError> {
        reading.checked(raw, |count| {
            let count = self.check(reading.key, count)?;
            Ok(u8::try_from(count).unwrap_or(u8::MAX))
        })
    }

    fn written(&self, target: &u8) -> Option<toml::Value> {
        Some(toml::Value::Integer(i64::from(*target)))
    }
}

/// On the command line a value is read as its text; `Located` keeps no span there.
impl<T: FromStr> FromStr for Located<T> {
    type Err = T::Err;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(Located::unlocated)
    }
}

/// A setting as [`settings_layer!`] lists it, for `--help`, documentation checks and the
/// restart-only list.
pub(crate) struct Described {
    /// The key in the settings file (within its table, for `[limits]` and `[identity]`).
    pub(crate) key: &'static str,
    /// The key of its table (`limits`, `identity`), or `None` at the top level.
    pub(crate) table: Option<&'static str>,
    /// Whether a reload takes a new value over; otherwise a change needs a restart.
    pub(crate) reloadable: bool,
    /// The default as written in the settings file, when it has such a form.
    pub(crate) default: Option<toml::Value>,
    /// Whether `running` and `new` differ in this setting.
    pub(crate) differs: fn(&Settings, &Settings) -> bool,
    /// Sets this setting of the first settings to its value in the second.
    pub(crate) take_over: fn(&mut Settings, &Settings),
}

impl Described {
    /// The default as `--help` shows it: strings bare, lists comma-separated (`none` when
    /// empty); switches and defaults without one written form are left to the help text
    /// (`--no-observe` defaulting to "true" would read backwards).
    pub(crate) fn shown_default(&self) -> Option<String> {
        fn shown(value: &toml::Value) -> Option<String> {
            match value {
                toml::Value::String(text) => Some(text.clone()),
                toml::Value::Integer(number) => Some(number.to_string()),
                toml::Value::Array(items) if items.is_empty() => Some("none".to_string()),
                toml::Value::Array(items) => items
                    .iter()
                    .map(shown)
                    .collect::<Option<Vec<_>>>()
                    .map(|items| items.join(", ")),
                _ => None,
            }
        }
        self.default.as_ref().and_then(shown)
    }

    /// The setting as a user names it: its key, after its table's (`limits.max_tcp_connections`).
    pub(crate) fn name(&self) -> String {
        match self.table {
            Some(table) => format!("{table}.{}", self.key),
            None => self.key.to_string(),
        }
    }
}

/// Declares a group of settings once. For each entry
/// `KEY: RAW => settings.PATH = KIND [, reloadable];` it generates:
///
/// - a field `KEY: Option<RAW>` of the layer struct, which derives `Deserialize` (the key in the
///   settings file) and `clap::Args` (the flag `--KEY` with `-` for `_`; the entry's doc comment
///   and `#[arg]`/`#[serde]` attributes are passed on);
/// - in `overlay`, `settings.PATH = KIND.read(value)` when the value is present;
/// - a [`Described`] entry (default, restart-only or not).
///
/// `nested { KEY: LAYER }` entries are tables in the file (`[limits]`) and flattened flags.
macro_rules! settings_layer {
    (
        $(#[$meta:meta])*
        pub struct $layer:ident $(in $table:literal)? {
            $(
                $(#[$field_meta:meta])*
                $key:ident: $raw:ty => $($path:ident).+ = $kind:expr $(, $reloadable:ident)?;
            )*
        }
        $(nested { $($nested:ident: $nested_layer:ty),* $(,)? })?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, serde::Deserialize, clap::Args)]
        #[serde(deny_unknown_fields)]
        pub struct $layer {
            $(
                $(#[$field_meta])*
                #[serde(default)]
                pub(crate) $key: Option<$raw>,
            )*
            $($(
                #[allow(missing_docs)]
                #[serde(default)]
                #[command(flatten)]
                pub(crate) $nested: $nested_layer,
            )*)?
        }

        impl $layer {
            /// Lays every value present on `settings`, each checked by its kind.
            pub(crate) fn overlay(
                self,
                settings: &mut $crate::config::settings::Settings,
                origin: $crate::config::layer::Origin<'_>,
            ) -> Result<(), $crate::location::ConfigError> {
                use $crate::config::layer::Kind as _;
                $(
                    if let Some(value) = self.$key {
                        let reading = $crate::config::layer::Reading {
                            key: stringify!($key),
                            origin,
                        };
                        settings.$($path).+ = ($kind).read(value, &reading)?;
                    }
                )*
                $($( self.$nested.overlay(settings, origin)?; )*)?
                Ok(())
            }

            /// Every setting of this group and the groups nested in it, in declaration order.
            pub(crate) fn described() -> Vec<$crate::config::layer::Described> {
                use $crate::config::layer::Kind as _;
                let defaults = $crate::config::settings::Settings::default();
                let table: Option<&'static str> = None $(.or(Some($table)))?;
                #[allow(unused_mut)]
                let mut described = vec![$(
                    $crate::config::layer::Described {
                        key: stringify!($key),
                        table,
                        reloadable: false $(|| { let _ = stringify!($reloadable); true })?,
                        default: ($kind).written(&defaults.$($path).+),
                        differs: |running, new| running.$($path).+ != new.$($path).+,
                        take_over: |running, new| running.$($path).+ = new.$($path).+.clone(),
                    },
                )*];
                $($( described.extend(<$nested_layer>::described()); )*)?
                described
            }
        }
    };
}

pub(crate) use settings_layer;
