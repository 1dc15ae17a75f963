//! Where a piece of configuration came from (file, line, column) and the diagnostics that point
//! at it, so every configuration error can name the exact spot a human has to fix.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A position in a configuration file. Line and column are 1-based; both are 0 when unknown
/// (for example when a whole file could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file the item was read from.
    pub file: Arc<Path>,
    /// 1-based line, or 0 when not known. (`u32`, as is the column: a location is kept for every
    /// destination, and no configuration file has 4 billion lines.)
    pub line: u32,
    /// 1-based column (in characters), or 0 when not known.
    pub column: u32,
}

impl Location {
    /// A location for a whole file.
    pub fn file(file: &Path) -> Self {
        Location {
            file: Arc::from(file),
            line: 0,
            column: 0,
        }
    }

    /// The location of byte `offset` in `source`, which is the text of `file`.
    pub fn at_offset(file: &Arc<Path>, source: &str, offset: usize) -> Self {
        let offset = floor_char_boundary(source, offset.min(source.len()));
        let before = &source[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location {
            file: Arc::clone(file),
            line: saturating_u32(line),
            column: saturating_u32(column),
        }
    }
}

/// `value`, or `u32::MAX` for a line or column beyond it.
pub(crate) fn saturating_u32(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while index > 0 && !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        Ok(())
    }
}

/// One problem found in configuration, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the problem is.
    pub location: Location,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Configuration that could not be loaded: every problem found, not only the first one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    /// An error with a single diagnostic.
    pub fn one(location: Location, message: impl Into<String>) -> Self {
        ConfigError {
            diagnostics: vec![Diagnostic {
                location,
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

/// The text of one configuration file, kept so spans can be turned into line and column.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The file's path as given to the loader.
    pub path: Arc<Path>,
    /// The whole text.
    pub text: String,
    /// Byte offset of the start of each line, so locating a span is a binary search rather than
    /// a scan from the start of the file (which made loading large files quadratic).
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// A file's text as already read (or pushed) under `path`.
    pub fn new(path: &Path, text: String) -> Self {
        SourceFile::with_shared_path(Arc::from(path), text)
    }

    /// A file's text under a path already shared (every location in the file holds a clone).
    fn with_shared_path(path: Arc<Path>, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            path,
            text,
            line_starts,
        }
    }

    /// Reads a file, naming it in the error when it cannot be read.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        SourceFile::read_shared(&Arc::from(path))
    }

    /// [`SourceFile::read`] for a path the caller already shares. The loader allocates the paths
    /// on its own thread before reading files in parallel: the loaded data keeps them (in every
    /// [`Location`]), and one small block kept in a parsing thread's allocator arena pins all the
    /// memory that thread freed above it (tens of MB at 100k names).
    pub fn read_shared(path: &Arc<Path>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::one(Location::file(path), format!("cannot read file: {error}"))
        })?;
        Ok(SourceFile::with_shared_path(Arc::clone(path), text))
    }

    /// The location of a span (from `toml::Spanned` or a parse error) in this file.
    pub fn locate(&self, span: Range<usize>) -> Location {
        let (line, column) = self.line_column(span.start);
        Location {
            file: Arc::clone(&self.path),
            line: saturating_u32(line),
            column: saturating_u32(column),
        }
    }

    /// The 1-based line and column (in characters) of byte `offset` in this file.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self
            .line_starts
            .get(line.wrapping_sub(1))
            .copied()
            .unwrap_or(0);
        let column = self
            .text
            .get(line_start..offset)
            .map_or(0, |t| t.chars().count())
            + 1;
        (line.max(1), column)
    }

    /// The location of a [`Located`] value's span, or the whole file when there is none.
    pub fn locate_optional(&self, span: Option<Range<usize>>) -> Location {
        match span {
            Some(span) => self.locate(span),
            None => Location::file(&self.path),
        }
    }

    /// Whether the file is JSON (by its `.json` ending) rather than TOML.
    pub fn is_json(&self) -> bool {
        self.path.extension().is_some_and(|ext| ext == "json")
    }

    /// Parses the file as JSON or TOML by its ending (see [`SourceFile::parse_toml`]).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        if !self.is_json() {
            return self.parse_toml();
        }
        serde_json::from_str(&self.text).map_err(|error| {
            let location = Location {
                file: Arc::clone(&self.path),
                line: saturating_u32(error.line()),
                column: saturating_u32(error.column()),
            };
            let message = error.to_string();
            // serde_json appends " at line L column C"; the location already says it.
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(text, _)| text)
                .to_string();
            ConfigError::one(location, message)
        })
    }

    /// A diagnostic at a span of this file.
    pub fn diagnostic(&self, span: Range<usize>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            location: self.locate(span),
            message: message.into(),
        }
    }

    /// Parses the file as TOML into `T`, turning a syntax or schema error into a diagnostic
    /// with line and column.
    pub fn parse_toml<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let previous = RECORD_SPANS.with(|record| record.replace(true));
        let parsed = toml::from_str(&self.text);
        RECORD_SPANS.with(|record| record.set(previous));
        parsed.map_err(|error| {
            let location = match error.span() {
                Some(span) => self.locate(span),
                None => Location::file(&self.path),
            };
            ConfigError::one(location, error.message().trim().to_string())
        })
    }
}

thread_local! {
    /// Whether the deserializer running on this thread is TOML's, which records spans.
    static RECORD_SPANS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A configuration value with the byte span it was read from. TOML records spans; JSON (as a
/// management console pushes it) does not, so its semantic errors name the file only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    value: T,
    span: Option<Range<usize>>,
}

impl<T> Located<T> {
    /// A value with no known span (given on the command line).
    pub fn unlocated(value: T) -> Self {
        Located { value, span: None }
    }

    /// The value and where it was read from, taken apart.
    pub fn into_parts(self) -> (T, Option<Range<usize>>) {
        (self.value, self.span)
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Located<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if RECORD_SPANS.with(std::cell::Cell::get) {
            let spanned = toml::Spanned::<T>::deserialize(deserializer)?;
            let span = Some(spanned.span());
            Ok(Located {
                value: spanned.into_inner(),
                span,
            })
        } else {
            Ok(Located {
                value: T::deserialize(deserializer)?,
                span: None,
            })
        }
    }
}

/// Path helper: `dir/name` unless `name` is absolute.
pub fn resolve_relative(base_dir: &Path, name: &Path) -> PathBuf {
    if name.is_absolute() {
        name.to_path_buf()
    } else {
        base_dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_files_locate_like_the_scan() {
        let text = "a = 1\nbé = 2\n\nlast";
        let file = SourceFile::new(Path::new("z.toml"), text.to_string());
        for offset in 0..=text.len() + 3 {
            assert_eq!(
                file.locate(offset..offset),
                Location::at_offset(&file.path, text, offset),
                "offset {offset}"
            );
        }
    }

    #[test]
    fn offsets_become_one_based_line_and_column() {
        let file: Arc<Path> = Arc::from(Path::new("z.toml"));
        let text = "a = 1\nbé = 2\n";
        let cases = [(0, 1, 1), (4, 1, 5), (6, 2, 1), (9, 2, 3), (100, 3, 1)];
        for (offset, line, column) in cases {
            let location = Location::at_offset(&file, text, offset);
            assert_eq!(
                (location.line, location.column),
                (line, column),
                "offset {offset}"
            );
        }
        assert_eq!(
            Location::at_offset(&file, text, 6).to_string(),
            "z.toml:2:1"
        );
    }
}
