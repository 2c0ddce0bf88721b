//! Diagnostics: what is wrong with a definition, where, and what to do about it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a value came from: a line and column in a YAML file, or a field path in the JSON that a
/// Jsonnet file produced.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Location {
    /// 1-based line and column.
    Text { file: Arc<Path>, line: usize, column: usize },
    /// A field path such as `waves[2].bake.duration` in a generated document.
    Field { file: Arc<Path>, path: String },
    /// A whole file, when nothing more precise is known.
    File { file: Arc<Path> },
}

impl Location {
    pub fn file(&self) -> &Path {
        match self {
            Location::Text { file, .. }
            | Location::Field { file, .. }
            | Location::File { file } => file,
        }
    }

    pub fn whole_file(file: &Path) -> Location {
        Location::File { file: Arc::from(file) }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Text { file, line, column } => {
                write!(f, "{}:{line}:{column}", file.display())
            }
            Location::Field { file, path } => write!(f, "{}: field `{path}`", file.display()),
            Location::File { file } => write!(f, "{}", file.display()),
        }
    }
}

/// The most characters of a user's text a message repeats. A message names the value so the
/// reader can find it; past a line's width, more of it only buries the message (a 1 MiB value
/// would be echoed whole).
pub const MAX_ECHO_CHARS: usize = 80;

/// `text` as a message repeats it: cut to [`MAX_ECHO_CHARS`] characters, saying how much more
/// there was.
pub fn echo(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        None => text.to_string(),
        Some((end, _)) => {
            let more = text[end..].chars().count();
            format!("{}… ({more} more characters)", &text[..end])
        }
    }
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about a definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Location,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(location: Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Error, location, message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}: {severity}: {}", self.location, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every diagnostic found in one load, in the order found. Loading fails as a whole when any
/// of them is an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|diagnostic| diagnostic.severity == Severity::Error)
    }
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(diagnostic: Diagnostic) -> Diagnostics {
        Diagnostics(vec![diagnostic])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Resolves `relative` against the directory of `file`, as every path in a definition is.
pub fn resolve_relative(file: &Path, relative: &str) -> PathBuf {
    let base = file.parent().unwrap_or(Path::new(""));
    normalize(&base.join(relative))
}

/// Removes `.` and `a/..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other.as_os_str()),
        }
    }
    out
}
