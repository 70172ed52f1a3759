//! Golden test vectors: `bitmac gen` writes one directory per case (a
//! `manifest.json` plus `$readmemh` hex, JSON, stream and text files);
//! `bitmac check` regenerates every case in memory from its manifest and
//! compares byte for byte.
//!
//! Invariants:
//! - generation is a pure function of (case, hw, bitmac version string):
//!   same inputs => same bytes on every run, machine and thread count
//!   (seeded ChaCha8 streams, exact integer/f32 arithmetic, ordered maps);
//! - every file is written with [`crate::io::write_atomic`], the manifest
//!   last, so a directory holding a `manifest.json` is a complete case;
//! - `check` only reads.
//!
//! Normative format description: `docs/vectors.md`.

pub mod case;
pub mod check;
pub mod data;
pub mod files;
pub mod kinds;

pub use case::{parse_case, read_case, CaseSpec};
pub use check::{check_case, check_paths, find_cases, CheckSummary};
pub use files::{FileEntry, Role};

use crate::error::{Error, Result};
use files::{encode_all, Artifact, Text};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The manifest `format` value this build writes and reads.
pub const FORMAT: &str = "bitmac-vectors/1";
/// The manifest's file name inside a case directory.
pub const MANIFEST: &str = "manifest.json";
/// This build's version, recorded in new manifests.
pub const BITMAC_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The hardware config as stored in a manifest (`null` for the
/// self-contained kinds): the datapath's JSON form, validated into a
/// [`crate::hw::HwConfig`] before use.
pub type HwJson = crate::hw::HwSpec;

/// `manifest.json`: fields in this order (serde_json pretty printing, two
/// spaces, `\n` line ends, a final `\n`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The bitmac version that generated the case (informational: `check`
    /// regenerates with the stored string, so a version bump alone does not
    /// fail the regression).
    pub bitmac_version: String,
    /// Case name = directory name.
    pub name: String,
    /// Case kind.
    pub kind: String,
    /// The seed (also inside `case`).
    pub seed: u64,
    /// The full hardware config, or `null` when the kind does not use one.
    pub hw: Option<HwJson>,
    /// The case, as parsed (defaults filled in).
    pub case: CaseSpec,
    /// Every other file of the directory, in generation order.
    pub files: Vec<FileEntry>,
}

/// A generated case, in memory.
#[derive(Clone, Debug)]
pub struct Generated {
    /// Case name (the directory name).
    pub name: String,
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest's exact bytes.
    pub manifest_bytes: Vec<u8>,
    /// The data files: manifest entry and exact bytes, in manifest order.
    pub files: Vec<(FileEntry, Vec<u8>)>,
}

/// Generate `case` (with `hw` for the kinds that use it) as this build.
pub fn generate(case: &CaseSpec, hw: Option<&HwJson>) -> Result<Generated> {
    generate_as(case, hw, BITMAC_VERSION)
}

/// Generate `case`, recording `version` as the generating bitmac version
/// (`check` passes the manifest's stored version).
pub fn generate_as(case: &CaseSpec, hw: Option<&HwJson>, version: &str) -> Result<Generated> {
    generate_at(case, hw, version, Path::new("."))
}

/// [`generate_as`] with the suite root `base`: the directory the file paths
/// of a case (the `model` and `data` of `model_node`) are relative to —
/// `gen`'s `--out` directory, and for `check` the directory holding the
/// case directory (`docs/vectors.md`, "model_node").
pub fn generate_at(case: &CaseSpec, hw: Option<&HwJson>, version: &str, base: &Path) -> Result<Generated> {
    case.validate_common()?;
    let (hw, cfg) = if case.needs_hw() {
        match hw {
            Some(h) => {
                (Some(h.clone()), Some(crate::hw::HwConfig::from_spec(h).map_err(|e| e.context("hw"))?))
            }
            None => {
                return Err(Error::input(format!(
                    "case kind {} needs a hardware config (--hw HW.json)",
                    case.kind()
                )))
            }
        }
    } else {
        (None, None)
    };
    let out =
        kinds::generate(case, cfg.as_ref(), base).map_err(|e| e.context(format!("case {}", case.name())))?;
    let mut artifacts = out.artifacts;
    let mut stats = serde_json::to_string_pretty(&out.stats).map_err(|e| Error::internal(e.to_string()))?;
    stats.push('\n');
    artifacts.push(Artifact::Text(Text {
        file: "stats.json".into(),
        role: Role::Stats,
        encoding: "stats-json".into(),
        tensor: "stats".into(),
        bytes: stats.into_bytes(),
    }));
    let files = encode_all(&artifacts);
    let mut seen = std::collections::BTreeSet::new();
    for (e, _) in &files {
        if e.path == MANIFEST || !seen.insert(e.path.clone()) {
            return Err(Error::internal(format!("case {}: duplicate file {}", case.name(), e.path)));
        }
    }
    let manifest = Manifest {
        format: FORMAT.to_string(),
        bitmac_version: version.to_string(),
        name: case.name().to_string(),
        kind: case.kind().to_string(),
        seed: case.seed(),
        hw,
        case: case.clone(),
        files: files.iter().map(|(e, _)| e.clone()).collect(),
    };
    let manifest_bytes = manifest_to_bytes(&manifest)?;
    Ok(Generated { name: case.name().to_string(), manifest, manifest_bytes, files })
}

/// Parse a manifest's text as `check` does (JSON, `deny_unknown_fields`,
/// this build's [`FORMAT`]); `what` names it in errors.
pub fn parse_manifest(text: &str, what: &str) -> Result<Manifest> {
    let m: Manifest = serde_json::from_str(text).map_err(|e| crate::error::json_error(what, &e))?;
    if m.format != FORMAT {
        return Err(Error::field(
            format!("{what}: format"),
            format!("{:?}", m.format),
            format!("{FORMAT:?}"),
        ));
    }
    case::validate_name(&m.name).map_err(|e| e.context(what))?;
    Ok(m)
}

/// The exact bytes of a manifest.
pub fn manifest_to_bytes(m: &Manifest) -> Result<Vec<u8>> {
    let mut s = serde_json::to_string_pretty(m).map_err(|e| Error::internal(format!("manifest: {e}")))?;
    s.push('\n');
    Ok(s.into_bytes())
}

/// Write a generated case to `out_root/<name>/` so that a kill at any
/// moment leaves either the old directory or the new one, complete:
/// 1. stale temporaries of this case from a killed `gen` (`.NAME.PID.tmpdir`
///    and `.NAME.PID.old` in `out_root` whose process is gone) are removed;
/// 2. an existing `NAME` is replaced only if every entry in it is a file
///    bitmac writes for a case (`manifest.json`, a file of the new case or
///    of the old manifest, or a `.F.PID.tmp` temporary): a complete case, or
///    the partial output of a killed older `gen`. Anything else (another
///    file, a subdirectory) is refused: it is not bitmac's to overwrite;
/// 3. the case is written into `.NAME.PID.tmpdir` (manifest last), which is
///    then renamed to `NAME` (an old `NAME` is first renamed to
///    `.NAME.PID.old` and removed after the swap).
pub fn write_case(out_root: &Path, g: &Generated) -> Result<PathBuf> {
    let dir = out_root.join(&g.name);
    std::fs::create_dir_all(out_root).map_err(|e| Error::io(out_root, &e))?;
    remove_stale_temps(out_root, &g.name)?;
    let exists = match std::fs::symlink_metadata(&dir) {
        Ok(md) if md.is_dir() => true,
        Ok(_) => return Err(Error::input(format!("{}: exists and is not a directory", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(Error::io(&dir, &e)),
    };
    if exists {
        check_replaceable(&dir, g)?;
    }
    let pid = std::process::id();
    let tmp = out_root.join(format!(".{}.{pid}.tmpdir", g.name));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, &e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, &e))?;
    let written = (|| -> Result<()> {
        for (e, bytes) in &g.files {
            crate::io::write_atomic(&tmp.join(&e.path), bytes)?;
        }
        crate::io::write_atomic(&tmp.join(MANIFEST), &g.manifest_bytes)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if exists {
        let old = out_root.join(format!(".{}.{pid}.old", g.name));
        std::fs::rename(&dir, &old).map_err(|e| {
            let _ = std::fs::remove_dir_all(&tmp);
            Error::io(&dir, &e)
        })?;
        std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, &e))?;
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, &e))?;
    } else {
        std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, &e))?;
    }
    Ok(dir)
}

/// `.NAME.PID.tmpdir` / `.NAME.PID.old` -> PID, for the case `name`.
fn temp_dir_pid(entry: &str, name: &str) -> Option<u32> {
    let rest = entry.strip_prefix('.')?.strip_prefix(name)?.strip_prefix('.')?;
    let pid = rest.strip_suffix(".tmpdir").or_else(|| rest.strip_suffix(".old"))?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Remove the temporaries a killed `gen` left for case `name` in `root`.
fn remove_stale_temps(root: &Path, name: &str) -> Result<()> {
    for ent in std::fs::read_dir(root).map_err(|e| Error::io(root, &e))? {
        let ent = ent.map_err(|e| Error::io(root, &e))?;
        let fname = ent.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_dir_pid(&fname, name) else { continue };
        if pid == std::process::id() || !crate::io::pid_may_be_alive(pid) {
            let p = ent.path();
            let md = std::fs::symlink_metadata(&p).map_err(|e| Error::io(&p, &e))?;
            let r = if md.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            r.map_err(|e| Error::io(&p, &e))?;
        }
    }
    Ok(())
}

/// Refuse to replace `dir` unless it holds only files bitmac writes for a
/// case (see [`write_case`]).
fn check_replaceable(dir: &Path, g: &Generated) -> Result<()> {
    let manifest_path = dir.join(MANIFEST);
    // An unreadable old manifest is simply replaced (its files are listed
    // by the new case or are temporaries, or the directory is refused).
    let old: Option<Manifest> =
        if manifest_path.is_file() { crate::io::read_json(&manifest_path).ok() } else { None };
    for ent in std::fs::read_dir(dir).map_err(|e| Error::io(dir, &e))? {
        let ent = ent.map_err(|e| Error::io(dir, &e))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        let is_file = ent.file_type().map_err(|e| Error::io(&ent.path(), &e))?.is_file();
        let ours = name == MANIFEST
            || crate::io::is_temp_name(&name)
            || g.files.iter().any(|(e, _)| e.path == name)
            || old.as_ref().is_some_and(|m| m.files.iter().any(|e| e.path == name));
        if !(is_file && ours) {
            return Err(Error::input(format!(
                "{}: is not a bitmac case directory (it holds {name:?}, which is no file of this case); refusing to replace it",
                dir.display()
            )));
        }
    }
    Ok(())
}
