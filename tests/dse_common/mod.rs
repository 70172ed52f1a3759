//! Shared helpers for the dse tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bitmac-dse-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub const BASE: &str = r#"{
    "array": {"rows": 8, "cols": 4, "dataflow": "ws"},
    "weights": {"bits": 4, "signed": true},
    "activations": {"bits": 4, "signed": false},
    "accumulator": {"bits": 16, "overflow": "SAT"},
    "psum": {"drop_bits": 2, "rounding": "RND", "offset": 0},
    "requant": {"rounding": "double", "relu": false, "out_bits": 8, "out_signed": true},
    "clock": {"period_ps": 1000},
    "cdc": {"host_period_ps": 1000, "fifo_depth": 4, "sync_stages": 2}
}"#;

/// A small synthetic sweep with grid, random points and invalid
/// combinations (offset -2 is out of range for nearest modes at k = 1).
pub fn small_spec() -> String {
    format!(
        r#"{{
  "name": "test-sweep",
  "base": {BASE},
  "workload": {{"kind": "gemm", "m": 6, "k": 40, "n": 5, "seed": 11}},
  "grid": {{
    "psum.rounding": ["TRN", "RND", "RND_CONV"],
    "psum.drop_bits": [1, 3],
    "psum.offset": {{"from": -2, "to": 1}},
    "accumulator.bits": [9, 12, 20]
  }},
  "random": {{"count": 17, "seed": 5, "params": {{
    "cdc.host_period_ps": {{"int": [500, 4000]}},
    "cdc.fifo_depth": {{"choice": [2, 4, 8]}},
    "array.rows": {{"int": [1, 12]}}
  }}}}
}}"#
    )
}

pub fn write(path: &Path, text: &str) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// The final files every complete run writes.
pub const FINAL_FILES: &[&str] = &[
    "sweep.json",
    "results.jsonl",
    "results.csv",
    "pareto.csv",
    "plot_quality.svg",
    "plot_bias.svg",
    "plot_pareto.svg",
];

/// Assert two out directories hold byte-identical final files.
pub fn assert_same(a: &Path, b: &Path) {
    for f in FINAL_FILES {
        let x = std::fs::read(a.join(f)).unwrap_or_else(|e| panic!("{}: {e}", a.join(f).display()));
        let y = std::fs::read(b.join(f)).unwrap_or_else(|e| panic!("{}: {e}", b.join(f).display()));
        assert!(x == y, "{f} differs between {} and {}", a.display(), b.display());
    }
}

pub fn opts(spec: &Path, out: &Path) -> bitmac::dse::RunOptions {
    bitmac::dse::RunOptions {
        spec: spec.to_path_buf(),
        out: out.to_path_buf(),
        resume: false,
        shard: None,
        threads: Some(1),
        progress: false,
        max_work: bitmac::limits::DSE_MAX_WORK,
    }
}
