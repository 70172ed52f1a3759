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
    let out = kinds::generate(case, cfg.as_ref()).map_err(|e| e.context(format!("case {}", case.name())))?;
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

/// The exact bytes of a manifest.
pub fn manifest_to_bytes(m: &Manifest) -> Result<Vec<u8>> {
    let mut s = serde_json::to_string_pretty(m).map_err(|e| Error::internal(format!("manifest: {e}")))?;
    s.push('\n');
    Ok(s.into_bytes())
}

/// Write a generated case to `out_root/<name>/`, every file atomically and
/// the manifest last. Files listed in an older manifest there but not in
/// the new one are removed; a directory that exists but holds files and no
/// manifest is refused (it is not a bitmac case: never overwrite it).
pub fn write_case(out_root: &Path, g: &Generated) -> Result<PathBuf> {
    let dir = out_root.join(&g.name);
    let manifest_path = dir.join(MANIFEST);
    if dir.is_dir() {
        let old: Option<Manifest> = if manifest_path.is_file() {
            // An unreadable old manifest is simply replaced.
            crate::io::read_json(&manifest_path).ok()
        } else {
            let nonempty = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, &e))?.next().is_some();
            if nonempty {
                return Err(Error::input(format!(
                    "{}: exists and is not a bitmac case directory (no {MANIFEST}); refusing to write into it",
                    dir.display()
                )));
            }
            None
        };
        if let Some(old) = old {
            for e in &old.files {
                let stale = !g.files.iter().any(|(n, _)| n.path == e.path);
                if stale && case::validate_name(&e.path).is_ok() {
                    let p = dir.join(&e.path);
                    match std::fs::remove_file(&p) {
                        Ok(()) => {}
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                        Err(err) => return Err(Error::io(&p, &err)),
                    }
                }
            }
        }
    } else if dir.exists() {
        return Err(Error::input(format!("{}: exists and is not a directory", dir.display())));
    }
    for (e, bytes) in &g.files {
        crate::io::write_atomic(&dir.join(&e.path), bytes)?;
    }
    crate::io::write_atomic(&manifest_path, &g.manifest_bytes)?;
    Ok(dir)
}
