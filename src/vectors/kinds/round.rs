//! `round`: the partial-sum rounding stage on its own.
//!
//! For each input `x` (format `input`): drop `k` LSBs with `mode` and the
//! rounding-centre offset `offset` (docs/numerics.md), then store into
//! `output` with `overflow`. Files: `x` (input), `y` (output), `ovf`
//! (flag, u1: the store overflowed), `pos` (flag, u2: residue below / at /
//! above the rounding centre of docs/numerics.md = 0 / 1 / 2), `stats.json`.

use super::super::case::{check_size, parse_format, parse_overflow, parse_round_mode};
use super::super::data::{chance, rng, IntGen, IntGenSpec};
use super::super::files::{Artifact, Role, Tensor};
use super::KindOutput;
use crate::error::{Error, Result};
use crate::numerics::{round_and_narrow, IntFormat, Narrower, Position, RoundMode, Rounder};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Case JSON of kind `round`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundCase {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub seed: u64,
    /// Number of inputs (1..=65536).
    pub count: usize,
    /// Input format, e.g. `i24`.
    pub input: String,
    /// Dropped LSBs (0..=min(63, input width)).
    pub k: u32,
    /// Rounding mode (`TRN` ... `RND_CONV_ODD`).
    pub mode: String,
    /// Rounding-centre offset in input LSBs.
    #[serde(default)]
    pub offset: i64,
    /// Output format, e.g. `i16`.
    pub output: String,
    /// Overflow mode of the store (`WRAP`, `SAT`, `SAT_ZERO`, `SAT_SYM`).
    pub overflow: String,
    /// Generator of `x`.
    #[serde(default)]
    pub data: IntGenSpec,
    /// Fraction (0..=1) of inputs forced onto the rounding centre (a tie),
    /// see `force_ties`.
    #[serde(default)]
    pub ties: f64,
}

/// The generator's stream numbers (docs/vectors.md).
const STREAM_X: u64 = 0;
const STREAM_TIES: u64 = 1;

pub(crate) fn generate(c: &RoundCase) -> Result<KindOutput> {
    check_size("count", c.count, 1, 65536)?;
    let fin = parse_format("input", &c.input, 1, 64)?;
    let fout = parse_format("output", &c.output, 1, 64)?;
    if c.k > fin.width().min(63) {
        return Err(Error::field(
            "k",
            c.k,
            format!("0..={} (at most the input width, 63)", fin.width().min(63)),
        ));
    }
    let mode = parse_round_mode("mode", &c.mode)?;
    let (olo, ohi) = mode.offset_range(c.k);
    if !(olo..=ohi).contains(&i128::from(c.offset)) {
        return Err(Error::field("offset", c.offset, format!("{olo}..={ohi} for {mode} with k={}", c.k)));
    }
    let overflow = parse_overflow("overflow", &c.overflow)?;
    if !(0.0..=1.0).contains(&c.ties) {
        return Err(Error::field("ties", c.ties, "0..=1 (a fraction)"));
    }
    let rounder = Rounder::new(c.k, mode, c.offset)?;
    let narrower = Narrower::new(fout, overflow);
    let gen = IntGen::new(&c.data, fin, "data", c.count)?;
    let mut x = gen.draw(&mut rng(c.seed, STREAM_X), c.count);
    if c.ties > 0.0 && c.k > 0 {
        force_ties(&mut x, fin, c.k, mode, c.offset, c.ties, c.seed);
    }

    let u1 = IntFormat::unsigned(1)?;
    let u2 = IntFormat::unsigned(2)?;
    let (mut y, mut ovf, mut pos) = (Vec::new(), Vec::new(), Vec::new());
    let (mut n_ovf, mut n_tie, mut err_sum) = (0u64, 0u64, 0i128);
    for &v in &x {
        let (z, o, info) = round_and_narrow(&rounder, &narrower, v);
        y.push(z);
        ovf.push(i128::from(o));
        let p = match info.position {
            Position::Below => 0,
            Position::At => 1,
            Position::Above => 2,
        };
        pos.push(p);
        n_ovf += u64::from(o);
        n_tie += u64::from(p == 1);
        err_sum += info.error;
    }
    let n = c.count;
    let mut out = KindOutput::default();
    out.artifacts.push(Artifact::Tensor(Tensor::int("x", Role::Input, &[n], fin, x)));
    out.artifacts.push(Artifact::Tensor(Tensor::int("y", Role::Output, &[n], fout, y)));
    out.artifacts.push(Artifact::Tensor(Tensor::int("ovf", Role::Flag, &[n], u1, ovf)));
    out.artifacts.push(Artifact::Tensor(Tensor::int("pos", Role::Flag, &[n], u2, pos)));
    out.stats.insert("count".into(), json!(n));
    out.stats.insert("overflows".into(), json!(n_ovf));
    out.stats.insert("ties".into(), json!(n_tie));
    // Exact integer (may exceed i64 for wide inputs): a decimal string.
    out.stats.insert("rounding_error_sum_input_lsbs".into(), json!(err_sum.to_string()));
    Ok(out)
}

/// Move a `ties` fraction of the inputs onto the rounding centre: on
/// stream 1, per element one `chance(ties)` draw; when it hits, the residue
/// `x mod 2^k` is replaced by the centre `h` (docs/numerics.md: `2^(k-1) +
/// offset` for the round-to-nearest modes; for `TRN`/`TRN_ZERO` the residue
/// where `floor((x+offset)/2^k)` steps up, `2^k - offset` for offset > 0,
/// `-offset` for offset < 0, and - plain truncation having no centre - the
/// half-way residue `2^(k-1)` for offset 0), and if that leaves the input
/// format, `2^k` is subtracted (or added).
fn force_ties(x: &mut [i128], fmt: IntFormat, k: u32, mode: RoundMode, offset: i64, ties: f64, seed: u64) {
    let mut r = rng(seed, STREAM_TIES);
    let n = 1i128 << k;
    let c = i128::from(offset);
    let h = if !mode.is_truncating() {
        ((1i128 << (k - 1)) + c).rem_euclid(n)
    } else if c > 0 {
        n - c
    } else if c < 0 {
        -c
    } else {
        1i128 << (k - 1)
    };
    for v in x.iter_mut() {
        if !chance(&mut r, ties) {
            continue;
        }
        let mut t = v.div_euclid(n) * n + h;
        if t > fmt.max() {
            t -= n;
        }
        if t < fmt.min() {
            t += n;
        }
        if fmt.contains(t) {
            *v = t;
        }
    }
}
