//! `requant`: integer requantization of accumulator values
//! (docs/requant.md).
//!
//! The multiplier comes from the three LSQ steps exactly as the datapath
//! derives it (`step_multiplier`: `layer_multiplier`, then `quantize_multiplier`). For each
//! `x` (format `acc`): `y = clamp(scale(x + bias))`. Files: `x`, `mult`
//! (param, i32: `[m0, shift]`), `y` (output), `clamp` (flag, u1: the clamp
//! changed the value), `stats.json`.

use super::super::case::{check_size, parse_format};
use super::super::data::{rng, IntGen, IntGenSpec};
use super::super::files::{Artifact, Role, Tensor};
use super::KindOutput;
use crate::error::{Error, Result};
use crate::numerics::IntFormat;
use crate::requant::{layer_multiplier, step_multiplier, RequantRounding, Requantizer};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Case JSON of kind `requant`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequantCase {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub seed: u64,
    /// Number of accumulator values (1..=65536).
    pub count: usize,
    /// Accumulator format (2..=64 bits), e.g. `i32`.
    pub acc: String,
    /// Activation step (f32 > 0).
    pub s_a: f32,
    /// Weight step (f32 > 0).
    pub s_w: f32,
    /// Output step (f32 > 0).
    pub s_out: f32,
    /// `double` or `single`.
    pub rounding: String,
    /// Fused ReLU (lower clamp at 0).
    #[serde(default)]
    pub relu: bool,
    /// Output format (2..=32 bits), e.g. `i8`, `u4`.
    pub output: String,
    /// int32 bias added to every accumulator before scaling.
    #[serde(default)]
    pub bias: i32,
    #[serde(default)]
    pub data: IntGenSpec,
}

const STREAM_X: u64 = 0;

pub(crate) fn generate(c: &RequantCase) -> Result<KindOutput> {
    check_size("count", c.count, 1, 65536)?;
    let facc = parse_format("acc", &c.acc, 2, 64)?;
    let fout = parse_format("output", &c.output, 2, 32)?;
    let rounding: RequantRounding = c.rounding.parse().map_err(|e: Error| e.context("rounding"))?;
    for (f, v) in [("s_a", c.s_a), ("s_w", c.s_w), ("s_out", c.s_out)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(Error::field(f, v, "finite and > 0"));
        }
    }
    let real = layer_multiplier(c.s_w, c.s_a, c.s_out)?;
    let mult = step_multiplier(c.s_w, c.s_a, c.s_out)?;
    let rq = Requantizer::new(mult, rounding, fout, c.relu)?;
    let x = IntGen::new(&c.data, facc, "data", c.count)?.draw(&mut rng(c.seed, STREAM_X), c.count);
    let (mut y, mut cl, mut n_clamp) = (Vec::new(), Vec::new(), 0u64);
    for &v in &x {
        let (z, clamped) = rq.apply(v + i128::from(c.bias));
        y.push(i128::from(z));
        cl.push(i128::from(clamped));
        n_clamp += u64::from(clamped);
    }
    let n = c.count;
    let mut out = KindOutput::default();
    let i32f = IntFormat::signed(32)?;
    out.artifacts.push(Artifact::Tensor(Tensor::int("x", Role::Accumulator, &[n], facc, x)));
    out.artifacts.push(Artifact::Tensor(Tensor::int(
        "mult",
        Role::Param,
        &[2],
        i32f,
        vec![i128::from(mult.m0), i128::from(mult.shift)],
    )));
    out.artifacts.push(Artifact::Tensor(Tensor::int("y", Role::Output, &[n], fout, y)));
    out.artifacts.push(Artifact::Tensor(Tensor::int("clamp", Role::Flag, &[n], IntFormat::unsigned(1)?, cl)));
    out.stats.insert("m0".into(), json!(mult.m0));
    out.stats.insert("shift".into(), json!(mult.shift));
    out.stats.insert("real_multiplier".into(), json!(real));
    out.stats.insert("clamped".into(), json!(n_clamp));
    Ok(out)
}
