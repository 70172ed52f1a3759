//! `bitmac check`: find case directories, regenerate each in memory from its
//! manifest, and compare byte for byte. Never writes.
//!
//! Order of comparison in a case (the first difference is reported):
//! 1. `manifest.json` parses as a [`Manifest`] of this format;
//! 2. the case regenerates (with the manifest's hw and bitmac version);
//! 3. each data file, in manifest order, equals its regeneration; a file
//!    whose SHA-256 also differs from its manifest entry is reported as
//!    hand-edited;
//! 4. `manifest.json` equals its regeneration (a hand-edited manifest);
//! 5. the directory holds no other file (stale `.F.PID.tmp` temporaries of
//!    a killed writer are reported on stderr and ignored).

use super::files::sha256_hex;
use super::{generate_at, Manifest, FORMAT, MANIFEST};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// What a successful check covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckSummary {
    /// Case directories checked.
    pub cases: usize,
    /// Files compared (data files plus each `manifest.json`).
    pub files: usize,
}

/// The first difference between two byte strings, by `\n`-separated line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diff {
    /// 1-based line.
    pub line: usize,
    /// 1-based byte column of the first differing byte in that line.
    pub col: usize,
    /// The expected line (`<end of file>` past the end).
    pub expected: String,
    /// The actual line (`<end of file>` past the end).
    pub actual: String,
}

const EOF_MARK: &str = "<end of file>";

/// Locate the first differing line of `expected` and `actual` (None when
/// equal).
pub fn first_diff(expected: &[u8], actual: &[u8]) -> Option<Diff> {
    if expected == actual {
        return None;
    }
    let mut e = expected.split(|&b| b == b'\n');
    let mut a = actual.split(|&b| b == b'\n');
    let mut line = 0;
    loop {
        line += 1;
        let (x, y) = (e.next(), a.next());
        if x == y {
            if x.is_none() {
                // Unreachable for different inputs; report the end.
                return Some(Diff { line, col: 1, expected: EOF_MARK.into(), actual: EOF_MARK.into() });
            }
            continue;
        }
        let show = |v: Option<&[u8]>| match v {
            None => EOF_MARK.to_string(),
            Some(b) => {
                let s = String::from_utf8_lossy(b);
                let s: String = s.chars().take(100).collect();
                format!("{s:?}")
            }
        };
        let col = match (x, y) {
            (Some(p), Some(q)) => p.iter().zip(q.iter()).take_while(|(u, v)| u == v).count() + 1,
            _ => 1,
        };
        return Some(Diff { line, col, expected: show(x), actual: show(y) });
    }
}

fn describe(d: &Diff) -> String {
    format!("line {} col {}: expected {}, actual {}", d.line, d.col, d.expected, d.actual)
}

/// Case directories under `root`: `root` itself when it holds a
/// `manifest.json`; otherwise its subdirectories, recursively, in name
/// order (hidden entries and symlinks are skipped; directories without a
/// manifest anywhere below are ignored).
pub fn find_cases(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(root, &mut out, 0)?;
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    if dir.join(MANIFEST).is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    if depth > 32 {
        return Ok(());
    }
    let mut subs = Vec::new();
    for ent in std::fs::read_dir(dir).map_err(|e| Error::io(dir, &e))? {
        let ent = ent.map_err(|e| Error::io(dir, &e))?;
        let name = ent.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = ent.file_type().map_err(|e| Error::io(&ent.path(), &e))?;
        if ft.is_dir() {
            subs.push(ent.path());
        }
    }
    subs.sort();
    for s in subs {
        walk(&s, out, depth + 1)?;
    }
    Ok(())
}

/// Check every case under `paths` (see [`find_cases`]); stops at the first
/// mismatch (exit code 1). A path that is not a directory, or under which
/// no case is found, is an input error (exit code 2).
pub fn check_paths(paths: &[PathBuf]) -> Result<CheckSummary> {
    if paths.is_empty() {
        return Err(Error::input("check: no directory given (usage: bitmac check DIR...)"));
    }
    let mut sum = CheckSummary::default();
    for p in paths {
        if !p.is_dir() {
            return Err(Error::input(format!("{}: not a directory", p.display())));
        }
        let cases = find_cases(p)?;
        if cases.is_empty() {
            return Err(Error::input(format!(
                "{}: no case directories found (none holds a {MANIFEST})",
                p.display()
            )));
        }
        for c in cases {
            sum.files += check_case(&c)?;
            sum.cases += 1;
        }
    }
    Ok(sum)
}

/// Check one case directory; returns the number of files compared.
pub fn check_case(dir: &Path) -> Result<usize> {
    let label = format!("case {}", dir.display());
    let mpath = dir.join(MANIFEST);
    let mbytes = crate::io::read(&mpath)?;
    let text = String::from_utf8(mbytes.clone())
        .map_err(|_| Error::mismatch(format!("{label}: hand-edited: {MANIFEST} is not valid UTF-8")))?;
    let m: Manifest = serde_json::from_str(&text).map_err(|e| {
        // serde_json's message ends with " at line L column C"; report the
        // location in check's own `FILE line L col C` form.
        let full = e.to_string();
        let reason = full.rsplit_once(" at line ").map_or(full.as_str(), |(r, _)| r);
        Error::mismatch(format!(
            "{label}: hand-edited or corrupt {MANIFEST}: {MANIFEST} line {} col {}: {reason}",
            e.line(),
            e.column()
        ))
    })?;
    if m.format != FORMAT {
        return Err(Error::mismatch(format!(
            "{label}: {MANIFEST}: format {:?} is not {FORMAT:?} (generated by another bitmac version?)",
            m.format
        )));
    }
    let base = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let g = generate_at(&m.case, m.hw.as_ref(), &m.bitmac_version, base).map_err(|e| {
        Error::mismatch(format!("{label}: {MANIFEST}: the stored case does not regenerate: {e}"))
    })?;
    let stored_sha = |path: &str| m.files.iter().find(|f| f.path == path).map(|f| f.sha256.clone());

    for (entry, want) in &g.files {
        let path = dir.join(&entry.path);
        if std::fs::symlink_metadata(&path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            return Err(Error::mismatch(format!("{label}: {}: missing (the case generates it)", entry.path)));
        }
        // Bounded: a regular file of at most the input-size limit (a FIFO
        // or device put in a case directory is an input error, not a hang).
        let have = crate::io::read(&path)?;
        if let Some(d) = first_diff(want, &have) {
            let cause = match stored_sha(&entry.path) {
                Some(s) if s != sha256_hex(&have) => {
                    format!("hand-edited: {} (sha256 differs from manifest)", entry.path)
                }
                Some(_) => format!(
                    "{}: matches its manifest sha256 but not its regeneration (bitmac's output changed, or the manifest's case/hw was edited)",
                    entry.path
                ),
                None => format!("{}: not listed in {MANIFEST}", entry.path),
            };
            return Err(Error::mismatch(format!("{label}: {cause}: {} {}", entry.path, describe(&d))));
        }
    }
    if let Some(d) = first_diff(&g.manifest_bytes, &mbytes) {
        return Err(Error::mismatch(format!(
            "{label}: hand-edited: {MANIFEST} (differs from the manifest its case regenerates): {MANIFEST} {}",
            describe(&d)
        )));
    }
    let mut extra = Vec::new();
    for ent in std::fs::read_dir(dir).map_err(|e| Error::io(dir, &e))? {
        let ent = ent.map_err(|e| Error::io(dir, &e))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if name != MANIFEST && !g.files.iter().any(|(e, _)| e.path == name) {
            if crate::io::is_temp_name(&name) {
                // A `.F.PID.tmp` left by a killed writer: not part of the
                // case; reported, never removed (check only reads).
                eprintln!("bitmac: warning: {label}: ignoring stale temporary file {name} (left by an interrupted write; safe to delete)");
                continue;
            }
            extra.push(name);
        }
    }
    extra.sort();
    if let Some(x) = extra.first() {
        return Err(Error::mismatch(format!(
            "{label}: unexpected file {x} (not in {MANIFEST}; hand-added?)"
        )));
    }
    Ok(g.files.len() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_diff_locates_line_and_column() {
        assert_eq!(first_diff(b"a\nb\n", b"a\nb\n"), None);
        let d = first_diff(b"00\n0f\n10\n", b"00\n1f\n10\n").unwrap();
        assert_eq!((d.line, d.col, d.expected.as_str(), d.actual.as_str()), (2, 1, "\"0f\"", "\"1f\""));
        let d = first_diff(b"a\nb\n", b"a\n").unwrap();
        assert_eq!((d.line, d.expected.as_str(), d.actual.as_str()), (2, "\"b\"", "\"\""));
        let d = first_diff(b"a\n", b"a\nb\n").unwrap();
        assert_eq!((d.line, d.expected.as_str()), (2, "\"\""));
        let d = first_diff(b"a", b"a\n").unwrap();
        assert_eq!((d.line, d.expected.as_str(), d.actual.as_str()), (2, EOF_MARK, "\"\""));
    }
}
