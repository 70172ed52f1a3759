//! `lsq`: an LSQ quantizer input set, forward and backward (docs/lsq.md).
//!
//! Files: `x` (input, f32), `grad_y` (input, f32), `code` (output, the
//! integer codes at `b` bits: signed when the range is, else unsigned),
//! `y` (output, f32), `grad_x` (output, f32), `grad_s` (output, f32, one
//! element), `stats.json`. f32 hex files hold the IEEE-754 bit patterns.

use super::super::case::check_size;
use super::super::data::{chance, rng, uniform_below, uniform_f32};
use super::super::files::{Artifact, Role, Tensor};
use super::KindOutput;
use crate::error::{Error, Result};
use crate::lsq::{LsqConfig, LsqKind, LsqVariant};
use crate::numerics::IntFormat;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// An f32 data generator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct F32GenSpec {
    /// Smallest value of the uniform draw.
    pub min: f32,
    /// Largest value of the uniform draw.
    pub max: f32,
    /// Fraction (0..=1) of elements replaced by an edge value (x only:
    /// `lo*s`, `hi*s`, `0.0`, `-0.0`, `(lo-0.5)*s`, `(hi+0.5)*s`,
    /// `2*lo*s`, `2*hi*s`, the finite ones).
    #[serde(default)]
    pub edges: f64,
    /// Fraction (0..=1) of elements set to a half-way point
    /// `(n + 0.5) * s` (f32 multiply), `n` uniform in `[lo, hi-1]`: ties
    /// of the round-half-to-even step.
    #[serde(default)]
    pub ties: f64,
    /// Explicit values (nothing is drawn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<f32>>,
}

fn default_grad() -> F32GenSpec {
    F32GenSpec { min: -1.0, max: 1.0, edges: 0.0, ties: 0.0, values: None }
}

/// Case JSON of kind `lsq`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LsqCase {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub seed: u64,
    /// `act` or `weight`.
    pub quantizer: String,
    /// `seed` or `paper`.
    pub variant: String,
    /// Bits (2..=16).
    pub nbit: u32,
    /// Step size (f32).
    pub step: f32,
    /// Number of elements (1..=65536).
    pub count: usize,
    /// Generator of `x`.
    pub x: F32GenSpec,
    /// Generator of `grad_y` (default uniform in [-1, 1]).
    #[serde(default = "default_grad")]
    pub grad_y: F32GenSpec,
}

const STREAM_X: u64 = 0;
const STREAM_GRAD: u64 = 1;

fn draw(
    spec: &F32GenSpec,
    field: &str,
    count: usize,
    seed: u64,
    stream: u64,
    cfg: Option<&LsqConfig>,
) -> Result<Vec<f32>> {
    if let Some(v) = &spec.values {
        if v.len() != count {
            return Err(Error::field(
                format!("{field}.values"),
                format!("{} values", v.len()),
                format!("exactly {count} (count)"),
            ));
        }
        if let Some(i) = v.iter().position(|x| x.is_nan()) {
            return Err(Error::field(format!("{field}.values[{i}]"), "NaN", "any f32 except NaN"));
        }
        return Ok(v.clone());
    }
    if !(spec.min.is_finite() && spec.max.is_finite() && spec.min <= spec.max) {
        return Err(Error::field(
            format!("{field}.max"),
            spec.max,
            format!("finite and >= min ({})", spec.min),
        ));
    }
    for (f, p) in [("edges", spec.edges), ("ties", spec.ties)] {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::field(format!("{field}.{f}"), p, "0..=1 (a fraction)"));
        }
    }
    if cfg.is_none() && (spec.edges > 0.0 || spec.ties > 0.0) {
        return Err(Error::input(format!("{field}: edges and ties apply to x only (allowed: 0)")));
    }
    let mut edge_vals = Vec::new();
    let (mut lo, mut hi, mut s) = (0.0f32, 0.0f32, 1.0f32);
    if let Some(c) = cfg {
        (lo, hi, s) = (c.code_min() as f32, c.code_max() as f32, c.step());
        for v in [lo * s, hi * s, 0.0, -0.0, (lo - 0.5) * s, (hi + 0.5) * s, 2.0 * lo * s, 2.0 * hi * s] {
            if v.is_finite() {
                edge_vals.push(v);
            }
        }
    }
    let mut r = rng(seed, stream);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if spec.edges > 0.0 && chance(&mut r, spec.edges) {
            out.push(edge_vals[uniform_below(&mut r, edge_vals.len() as u128) as usize]);
        } else if spec.ties > 0.0 && chance(&mut r, spec.ties) {
            let n = lo as i64 + uniform_below(&mut r, (hi - lo) as u128) as i64;
            out.push((n as f32 + 0.5) * s);
        } else {
            out.push(uniform_f32(&mut r, spec.min, spec.max));
        }
    }
    Ok(out)
}

pub(crate) fn generate(c: &LsqCase) -> Result<KindOutput> {
    check_size("count", c.count, 1, 65536)?;
    let kind = LsqKind::parse("quantizer", &c.quantizer)?;
    let variant = LsqVariant::parse("variant", &c.variant)?;
    let cfg = LsqConfig::new(kind, variant, c.nbit, c.step)?;
    let x = draw(&c.x, "x", c.count, c.seed, STREAM_X, Some(&cfg))?;
    let gy = draw(&c.grad_y, "grad_y", c.count, c.seed, STREAM_GRAD, None)?;
    let fwd = cfg.forward(&x)?;
    let bwd = cfg.backward(&x, &gy)?;
    let code_fmt = IntFormat::new(cfg.code_min() < 0, c.nbit)?;
    let (mut ties, mut clipped) = (0u64, 0u64);
    for &v in &x {
        let xs = v / cfg.step();
        if xs < cfg.code_min() as f32 || xs > cfg.code_max() as f32 {
            clipped += 1;
        } else if xs - xs.floor() == 0.5 {
            ties += 1;
        }
    }
    let n = c.count;
    let mut out = KindOutput::default();
    out.artifacts.push(Artifact::Tensor(Tensor::f32("x", Role::Input, &[n], x)));
    out.artifacts.push(Artifact::Tensor(Tensor::f32("grad_y", Role::Input, &[n], gy)));
    let codes = fwd.code.iter().map(|&v| i128::from(v)).collect();
    out.artifacts.push(Artifact::Tensor(Tensor::int("code", Role::Output, &[n], code_fmt, codes)));
    out.artifacts.push(Artifact::Tensor(Tensor::f32("y", Role::Output, &[n], fwd.y)));
    out.artifacts.push(Artifact::Tensor(Tensor::f32("grad_x", Role::Output, &[n], bwd.grad_x)));
    out.artifacts.push(Artifact::Tensor(Tensor::f32("grad_s", Role::Output, &[1], vec![bwd.grad_s])));
    out.stats.insert("code_min".into(), json!(cfg.code_min()));
    out.stats.insert("code_max".into(), json!(cfg.code_max()));
    out.stats.insert("clipped".into(), json!(clipped));
    out.stats.insert("exact_ties".into(), json!(ties));
    Ok(out)
}
