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
    // serde's own message for data errors already starts with "invalid
    // value"/"invalid type": do not say it twice.
    let msg = err.to_string();
    if matches!(err.classify(), serde_json::error::Category::Data) {
        return Error::input(format!("{what}: {msg}"));
    }
    Error::input(format!("{what}: {reason}: {msg}"))
}

/// Deserialize JSON `text` (from `what`, e.g. a file name) into `T` with
/// one-line errors that name the source, the field's JSON path, the bad
/// value and what is allowed, once:
/// `what: array.rows: -1 is out of range (allowed: 1..=256)`.
///
/// Syntax errors keep serde_json's line and column. For type, sign and
/// range errors the allowed range is `allowed(path)` when the caller knows
/// the field's documented range, else the range of the JSON type (e.g. "an
/// integer 0..=18446744073709551615"). Missing and unknown fields are named
/// by their full path.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: impl fmt::Display,
    allowed: &dyn Fn(&str) -> Option<String>,
) -> Result<T> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| json_error(&what, &e))?;
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        Error::input(format!("{what}: {}", describe_json_error(&path, &e.inner().to_string(), allowed)))
    })
}

/// Rewrite one serde data error message (see [`parse_json`]).
fn describe_json_error(path: &str, msg: &str, allowed: &dyn Fn(&str) -> Option<String>) -> String {
    let join = |p: &str, f: &str| if p == "." || p.is_empty() { f.to_string() } else { format!("{p}.{f}") };
    let between = |s: &str| s.split('`').nth(1).unwrap_or("").to_string();
    if let Some(rest) = msg.strip_prefix("missing field ") {
        let f = between(rest);
        return format!("{}: missing (a required field)", join(path, &f));
    }
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let f = between(rest);
        let expected = rest.split_once(", expected ").map_or(String::new(), |(_, e)| {
            format!(" (allowed: {})", e.trim_start_matches("one of ").replace('`', ""))
        });
        // serde_path_to_error reports the unknown key's own path.
        let full = if path.ends_with(&f) { path.to_string() } else { join(path, &f) };
        return format!("{full}: unknown field{expected}");
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        let v = between(rest);
        let expected = rest.split_once(", expected ").map_or(String::new(), |(_, e)| {
            format!(" (allowed: {})", e.trim_start_matches("one of ").replace('`', ""))
        });
        return format!("{path}: {v:?} is not a known name{expected}");
    }
    for (prefix, what) in [("invalid type: ", "has the wrong type"), ("invalid value: ", "is out of range")] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let (got, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
            let got = match got.split_once(' ') {
                Some(("integer" | "floating" | "boolean", v)) => {
                    v.trim_start_matches("point ").trim_matches('`').to_string()
                }
                Some(("string", v)) => v.to_string(),
                _ => got.to_string(),
            };
            let expected = allowed(path).unwrap_or_else(|| type_range(expected));
            return format!("{path}: {got} {what} (allowed: {expected})");
        }
    }
    format!("{path}: {msg}")
}

/// The value range of a serde "expected" type name, spelled for users.
fn type_range(expected: &str) -> String {
    match expected {
        "u8" => "an integer 0..=255".into(),
        "u16" => "an integer 0..=65535".into(),
        "u32" => "an integer 0..=4294967295".into(),
        "u64" | "usize" => "an integer 0..=18446744073709551615".into(),
        "i8" => "an integer -128..=127".into(),
        "i16" => "an integer -32768..=32767".into(),
        "i32" => "an integer -2147483648..=2147483647".into(),
        "i64" | "isize" => "an integer -9223372036854775808..=9223372036854775807".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "true or false".into(),
        "" => "see the format's documentation".into(),
        other => other.into(),
    }
}
