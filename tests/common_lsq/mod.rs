//! Loading the committed PyTorch reference vectors (`testvectors/lsq/`).
#![allow(dead_code)]

use bitmac::lsq::{LsqKind, LsqVariant};
use serde::Deserialize;
use std::path::PathBuf;

/// The four forward/backward reference files.
pub const FILES: [&str; 4] = ["seed_act.json", "seed_weight.json", "paper_act.json", "paper_weight.json"];

#[derive(Deserialize)]
pub struct RefFile<C> {
    pub generator: String,
    pub torch_version: String,
    pub cases: Vec<C>,
}

/// One case: every float is the hex bit pattern of an f32.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RefCase {
    pub name: String,
    pub kind: String,
    pub variant: String,
    pub nbit: u32,
    pub step: String,
    pub x: Vec<String>,
    pub grad_y: Vec<String>,
    pub y: Vec<String>,
    pub code: Vec<i64>,
    pub grad_x: Vec<String>,
    pub grad_s: String,
    pub grad_s_exact_sum: String,
    pub grad_s_abs_terms: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitCase {
    pub name: String,
    pub kind: String,
    pub variant: String,
    pub nbit: u32,
    pub v: Vec<String>,
    pub step: String,
}

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testvectors/lsq")
}

pub fn load<C: for<'de> Deserialize<'de>>(name: &str) -> RefFile<C> {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn all_cases() -> Vec<RefCase> {
    FILES.iter().flat_map(|f| load::<RefCase>(f).cases).collect()
}

pub fn f(h: &str) -> f32 {
    f32::from_bits(u32::from_str_radix(h, 16).unwrap_or_else(|e| panic!("bad hex {h:?}: {e}")))
}

pub fn fs(v: &[String]) -> Vec<f32> {
    v.iter().map(|h| f(h)).collect()
}

pub fn kind(s: &str) -> LsqKind {
    LsqKind::parse("kind", s).unwrap()
}

pub fn variant(s: &str) -> LsqVariant {
    LsqVariant::parse("variant", s).unwrap()
}

/// Order-independent bound on the error of a float32 sum of `n` terms in any
/// order (Higham, eq. 4.4 without the O(u^2) term): (n-1)·u·Σ|t_i|, u = 2^-24.
pub fn f32_sum_error_bound(n: usize, abs_terms: f32) -> f64 {
    (n.max(2) - 1) as f64 * 2f64.powi(-24) * f64::from(abs_terms) * (1.0 + 1e-6)
}
