//! The one error type every layer returns.
//!
//! Like regex-automata, the public [`Error`] wraps a private `Kind`, so the
//! set of kinds can grow without breaking callers. Every error renders as a
//! single line (no trailing period, no embedded newline) because the CLI
//! prints it verbatim on stderr, and maps to a process exit code:
//!
//! | kind      | exit | meaning                                             |
//! |-----------|------|-----------------------------------------------------|
//! | input     | 2    | the user gave bad input (value, file, field, shape) |
//! | io        | 2    | a file could not be read or written                 |
//! | mismatch  | 1    | a comparison (`check`, `--replay`) found a difference |
//! | internal  | 3    | a bitmac bug: an invariant broke                     |

use std::fmt;
use std::path::Path;

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// A bitmac error. See the module docs for kinds and exit codes.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Input(String),
    Io(String),
    Mismatch(String),
    Internal(String),
}

impl Error {
    /// Bad user input, with a free-form one-line message.
    pub fn input(msg: impl Into<String>) -> Error {
        Error { kind: Kind::Input(one_line(msg.into())) }
    }

    /// A field whose value is outside its allowed range:
    /// `FIELD: VALUE is out of range (allowed: ALLOWED)`.
    pub fn field(field: impl fmt::Display, value: impl fmt::Display, allowed: impl fmt::Display) -> Error {
        Error::input(format!("{field}: {value} is out of range (allowed: {allowed})"))
    }

    /// An I/O failure on `path`.
    pub fn io(path: &Path, err: &std::io::Error) -> Error {
        Error { kind: Kind::Io(one_line(format!("{}: {}", path.display(), err))) }
    }

    /// A comparison found a difference (exit code 1).
    pub fn mismatch(msg: impl Into<String>) -> Error {
        Error { kind: Kind::Mismatch(one_line(msg.into())) }
    }

    /// A broken internal invariant (a bug in bitmac, exit code 3).
    pub fn internal(msg: impl Into<String>) -> Error {
        Error { kind: Kind::Internal(one_line(msg.into())) }
    }

    /// Prefix the message with a context such as a file name or a layer name:
    /// `CTX: message`.
    pub fn context(self, ctx: impl fmt::Display) -> Error {
        let wrap = |m: String| one_line(format!("{ctx}: {m}"));
        let kind = match self.kind {
            Kind::Input(m) => Kind::Input(wrap(m)),
            Kind::Io(m) => Kind::Io(wrap(m)),
            Kind::Mismatch(m) => Kind::Mismatch(wrap(m)),
            Kind::Internal(m) => Kind::Internal(wrap(m)),
        };
        Error { kind }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            Kind::Input(_) | Kind::Io(_) => 2,
            Kind::Mismatch(_) => 1,
            Kind::Internal(_) => 3,
        }
    }

    /// True for user-input and I/O errors (exit code 2).
    pub fn is_input(&self) -> bool {
        self.exit_code() == 2
    }

    /// True for mismatches found by a comparison (exit code 1).
    pub fn is_mismatch(&self) -> bool {
        matches!(self.kind, Kind::Mismatch(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Input(m) | Kind::Io(m) | Kind::Mismatch(m) => f.write_str(m),
            Kind::Internal(m) => write!(f, "internal error (please report): {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Messages are printed as one line; fold any newline a library put in.
fn one_line(s: String) -> String {
    if s.contains('\n') || s.contains('\r') {
        s.split(['\n', '\r']).map(str::trim).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ")
    } else {
        s
    }
}

/// Turn a serde_json error while reading `what` into a one-line input error
/// that names the file, the line and column, and serde's reason (which names
/// unknown or missing fields).
pub fn json_error(what: impl fmt::Display, err: &serde_json::Error) -> Error {
    let reason = match err.classify() {
        serde_json::error::Category::Eof => "truncated JSON",
        serde_json::error::Category::Syntax => "malformed JSON",
        serde_json::error::Category::Data => "invalid value",
        serde_json::error::Category::Io => "read error",
    };
    Error::input(format!("{what}: {reason}: {err}"))
}
