//! The post-processing (vector) unit: every operation after the MAC array —
//! per-channel requantization (TFLite double/single, ONNX Runtime float32),
//! residual Add and Concat with integer rescaling, max/average pools, ReLU
//! and clamps — with its statistics (saturations, int32 overflows, rounding
//! ties). Normative doc: `docs/ppu.md`.
//!
//! Every function here is exact integer (or exactly specified IEEE float32)
//! arithmetic on `i128`/`i64`; nothing depends on a Rust default rounding.

use crate::array::{Simd, Stats};
use crate::error::{Error, Result};
use crate::graph::DivRounding;
use crate::numerics::IntFormat;
use crate::requant::{quantize_multiplier, Multiplier, RequantRounding, Requantizer};

/// Statistics of the post-processing unit for one node (summed over a run).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PpuStats {
    /// Output codes produced.
    pub outputs: u64,
    /// Outputs the final clamp (code range or fused activation) changed.
    pub saturated: u64,
    /// Intermediates that left int32 where the reference kernel computes in
    /// int32 (the requant input of TFLite/MLAS, the shifted Add operands);
    /// bitmac computes them exactly, so its result is the mathematically
    /// defined one and the reference runtime's may differ.
    pub overflows: u64,
    /// Roundings whose exact value lay exactly halfway between two integers.
    pub ties: u64,
}

impl PpuStats {
    /// Add `o` into `self`.
    pub fn merge(&mut self, o: &PpuStats) {
        self.outputs += o.outputs;
        self.saturated += o.saturated;
        self.overflows += o.overflows;
        self.ties += o.ties;
    }
}

const I32: std::ops::RangeInclusive<i128> = (i32::MIN as i128)..=(i32::MAX as i128);

/// One rescaling `x -> round(x * m)`, fixed point (TFLite) or float32 (MLAS).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scaler {
    /// TFLite `MultiplyByQuantizedMultiplier`: `m0 * 2^(shift-31)` with the
    /// named rounding (`docs/requant.md`).
    Fixed(Requantizer),
    /// `rne(f32(x) * s)`: one int-to-float conversion (round to nearest
    /// even), one float32 multiply (round to nearest even), round half to
    /// even to an integer.
    Float32(f32),
}

impl Scaler {
    /// A fixed-point scaler for the real multiplier `real`
    /// (`requant::quantize_multiplier`, TFLite `QuantizeMultiplier`).
    pub fn fixed(real: f64, rounding: RequantRounding) -> Result<Scaler> {
        Scaler::from_multiplier(quantize_multiplier(real)?, rounding)
    }

    /// A fixed-point scaler from a quantized multiplier.
    pub fn from_multiplier(m: Multiplier, rounding: RequantRounding) -> Result<Scaler> {
        // The 32-bit output format is unused: the PPU clamps itself.
        Ok(Scaler::Fixed(Requantizer::new(m, rounding, IntFormat::signed(32)?, false)?))
    }

    /// The real multiplier the integer path applies (exact in f64).
    pub fn real(&self) -> f64 {
        match self {
            Scaler::Fixed(r) => r.real_multiplier(),
            Scaler::Float32(s) => *s as f64,
        }
    }

    /// `(round(x * m), tie, overflow)`: the scaled value before any zero
    /// point or clamp, whether the exact product was a tie, and whether `x`
    /// (times `2^shift` for a left shift) left int32.
    #[inline]
    pub fn scale(&self, x: i128) -> (i128, bool, bool) {
        match self {
            Scaler::Fixed(r) => {
                let Multiplier { m0, shift } = r.multiplier();
                let t = 31 - shift; // total right shift of x*m0, 1..=62
                let p = x * m0 as i128;
                let tie = m0 != 0 && t >= 1 && (p & ((1i128 << t) - 1)) == (1i128 << (t - 1));
                let ovf = !I32.contains(&(x << shift.max(0)));
                (r.scale(x), tie, ovf)
            }
            Scaler::Float32(s) => {
                // `as f32` on an integer rounds to nearest, ties to even.
                let v = (x as f32) * *s;
                let tie = v.is_finite() && (v - v.trunc()).abs() == 0.5;
                let r = (v as f64).clamp(-F32_CLAMP, F32_CLAMP).round_ties_even() as i128;
                (r, tie, !I32.contains(&x))
            }
        }
    }
}

/// Per-channel requantization of an accumulator: `code = clamp(z +
/// scale_c(x), lo, hi)` where `lo..=hi` is the output range after the
/// fused activation (`docs/ppu.md` §1–2).
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelRequant {
    /// One scaler per channel, or one for all.
    scalers: Vec<Scaler>,
    zero_point: i64,
    lo: i64,
    hi: i64,
}

impl ChannelRequant {
    /// A requantizer; `scalers` has 1 or N entries; `lo <= z <= hi` not
    /// required (a fused clamp may exclude the zero point).
    pub fn new(scalers: Vec<Scaler>, zero_point: i64, lo: i64, hi: i64) -> Result<ChannelRequant> {
        if scalers.is_empty() || lo > hi {
            return Err(Error::input(format!("requant: {} scalers, range {lo}..={hi}", scalers.len())));
        }
        Ok(ChannelRequant { scalers, zero_point, lo, hi })
    }

    /// The scaler of channel `c`.
    pub fn scaler(&self, c: usize) -> &Scaler {
        &self.scalers[if self.scalers.len() == 1 { 0 } else { c }]
    }

    /// True when one scaler serves every channel.
    pub fn per_tensor(&self) -> bool {
        self.scalers.len() == 1
    }

    /// Output zero point.
    pub fn zero_point(&self) -> i64 {
        self.zero_point
    }

    /// The clamp range `(lo, hi)`.
    pub fn range(&self) -> (i64, i64) {
        (self.lo, self.hi)
    }

    /// Requantize `x` of channel `c`: `(code, saturated, tie, overflow)`.
    #[inline]
    pub fn apply(&self, x: i128, c: usize) -> (i64, bool, bool, bool) {
        let (y, tie, ovf) = self.scaler(c).scale(x);
        let v = y + self.zero_point as i128;
        let z = v.clamp(self.lo as i128, self.hi as i128);
        (z as i64, z != v, tie, ovf)
    }
}

/// The output stage of an array GEMM (`docs/ppu.md` §1): for every output
/// `i` (row-major M x N, channel `n = i % N`), `x = acc[i]*2^d + bias[n]`,
/// `out[i] = requant.apply(x, n)`. Also fills the existing output-stage
/// statistics of `stats` exactly as `docs/datapath.md` defines them
/// (`outputs`, `out_clamped`, `out_err_sum/sq` against the real value
/// `clamp(z + m_n * (exact + bias), lo, hi)`, summed serially in row-major
/// order so the float sums are order-fixed) and returns the PPU statistics.
///
/// Compiled three times, for the baseline target, AVX2 and AVX-512
/// (F/DQ/VL/BW, which vectorizes the `i64 <-> f64/f32` conversions), and
/// dispatched on the CPU's features: the same IEEE operations in the same
/// order (Rust never contracts or reassociates float operations), so the
/// same bytes on every path (`tests::gemm_output_paths_agree`).
pub fn gemm_output(
    acc: &[i64],
    exact: &[i64],
    drop_bits: u32,
    n: usize,
    bias: Option<&[i32]>,
    requant: &ChannelRequant,
    stats: &mut Stats,
) -> (Vec<i64>, PpuStats) {
    gemm_output_on(output_path(), acc, exact, drop_bits, n, bias, requant, stats)
}

/// The compilation of [`gemm_output`] that runs: the CPU's
/// [`Simd`] level (the one detection every engine uses), with AVX-512
/// only where AVX-512 DQ is present too (the 64-bit integer conversions
/// this compilation enables), else AVX2.
fn output_path() -> Simd {
    let level = Simd::detect();
    #[cfg(target_arch = "x86_64")]
    if level == Simd::Avx512 && !is_x86_feature_detected!("avx512dq") {
        return Simd::Avx2;
    }
    level
}

#[allow(clippy::too_many_arguments)]
#[allow(unsafe_code)]
fn gemm_output_on(
    path: Simd,
    acc: &[i64],
    exact: &[i64],
    drop_bits: u32,
    n: usize,
    bias: Option<&[i32]>,
    requant: &ChannelRequant,
    stats: &mut Stats,
) -> (Vec<i64>, PpuStats) {
    match path {
        // SAFETY: `output_path` chose the path from the CPU's
        // features (tests pass only paths it allows); other targets have
        // only the portable compilation.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { gemm_output_avx512(acc, exact, drop_bits, n, bias, requant, stats) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { gemm_output_avx2(acc, exact, drop_bits, n, bias, requant, stats) },
        _ => gemm_output_impl(acc, exact, drop_bits, n, bias, requant, stats),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw")]
fn gemm_output_avx512(
    acc: &[i64],
    exact: &[i64],
    drop_bits: u32,
    n: usize,
    bias: Option<&[i32]>,
    requant: &ChannelRequant,
    stats: &mut Stats,
) -> (Vec<i64>, PpuStats) {
    gemm_output_impl(acc, exact, drop_bits, n, bias, requant, stats)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gemm_output_avx2(
    acc: &[i64],
    exact: &[i64],
    drop_bits: u32,
    n: usize,
    bias: Option<&[i32]>,
    requant: &ChannelRequant,
    stats: &mut Stats,
) -> (Vec<i64>, PpuStats) {
    gemm_output_impl(acc, exact, drop_bits, n, bias, requant, stats)
}

/// [`gemm_output`]'s body (inlined into each compilation).
#[inline(always)]
fn gemm_output_impl(
    acc: &[i64],
    exact: &[i64],
    drop_bits: u32,
    n: usize,
    bias: Option<&[i32]>,
    requant: &ChannelRequant,
    stats: &mut Stats,
) -> (Vec<i64>, PpuStats) {
    let mut out = vec![0i64; acc.len()];
    let mut ps = PpuStats::default();
    let (lo, hi) = (requant.lo as f64, requant.hi as f64);
    let z = requant.zero_point as f64;
    let n = n.max(1);
    let reals: Vec<f64> = (0..n).map(|c| requant.scaler(c).real()).collect();
    let bias: Vec<i64> = (0..n).map(|c| bias.map_or(0, |b| b[c]) as i64).collect();
    // The float32 scale of every channel when all are float32 (MLAS): then
    // `Scaler::scale` has the i64 fast path `scale_f32_i64`.
    let f32s: Option<Vec<f32>> = (0..n)
        .map(|c| match requant.scaler(c) {
            Scaler::Float32(s) => Some(*s),
            Scaler::Fixed(_) => None,
        })
        .collect();
    // Likewise the fixed-point requantizers when all are fixed (TFLite):
    // then `Scaler::scale` has the i64 fast path `apply_fixed_i64`.
    let fixed: Option<Vec<Requantizer>> = (0..n)
        .map(|c| match requant.scaler(c) {
            Scaler::Fixed(r) => Some(*r),
            Scaler::Float32(_) => None,
        })
        .collect();
    // Codes, zero point and range within 2^22: `f32_row_narrow` applies.
    let narrow = [requant.lo, requant.hi, requant.zero_point].iter().all(|v| v.unsigned_abs() <= 1 << 22);
    // Counters and the (serial, row-major) float sums in locals, added to
    // `stats` once: the same values, in the same order.
    let (mut sat_n, mut tie_n, mut ovf_n) = (0u64, 0u64, 0u64);
    let (mut err_sum, mut err_sq) = (stats.out_err_sum, stats.out_err_sq);
    for ((orow, arow), erow) in out.chunks_mut(n).zip(acc.chunks(n)).zip(exact.chunks(n)) {
        // The codes of the row: the float32 fast path when every scaler is
        // float32 and every element takes it (else the whole row runs the
        // general `apply`; both give the same codes and flags).
        // (No closures here: they would compile outside the SIMD wrappers.)
        let mut fast = None;
        if let Some(f) = f32s.as_deref() {
            if narrow {
                fast = f32_row_narrow(orow, arow, &bias, f, drop_bits, requant);
            }
            if fast.is_none() {
                fast = f32_row(orow, arow, &bias, f, drop_bits, requant);
            }
        } else if let Some(r) = fixed.as_deref() {
            fast = fixed_row(orow, arow, &bias, r, drop_bits, requant);
        }
        let (s_, t_, o_) = match fast {
            Some(flags) => flags,
            None => {
                let (mut s_, mut t_, mut o_) = (0u64, 0u64, 0u64);
                for c in 0..orow.len() {
                    let x = ((arow[c] as i128) << drop_bits) + bias[c] as i128;
                    let (code, sat, tie, ovf) = requant.apply(x, c);
                    orow[c] = code;
                    s_ += sat as u64;
                    t_ += tie as u64;
                    o_ += ovf as u64;
                }
                (s_, t_, o_)
            }
        };
        sat_n += s_;
        tie_n += t_;
        ovf_n += o_;
        for c in 0..orow.len() {
            // `as f64` rounds to nearest, ties to even, from i64 as from
            // i128: the same value whichever width holds the sum.
            let e = match erow[c].checked_add(bias[c]) {
                Some(v) => v as f64,
                None => (erow[c] as i128 + bias[c] as i128) as f64,
            };
            let y = (z + reals[c] * e).clamp(lo, hi);
            let err = orow[c] as f64 - y;
            err_sum += err;
            err_sq += err * err;
        }
    }
    stats.out_clamped += sat_n;
    stats.out_err_sum = err_sum;
    stats.out_err_sq = err_sq;
    ps.saturated += sat_n;
    ps.ties += tie_n;
    ps.overflows += ovf_n;
    stats.outputs = acc.len() as u64;
    ps.outputs = acc.len() as u64;
    (out, ps)
}

/// One output row through [`ChannelRequant::apply_f32_i64`] (channel `c`:
/// `x = acc[c] * 2^d + bias[c]`, scale `f[c]`), writing `orow`; the
/// `(saturated, ties, overflows)` counts, or `None` when some element needs
/// the general path (`x` outside i64, or the fast path declines it), in
/// which case the caller recomputes the whole row.
#[inline(always)]
fn f32_row(
    orow: &mut [i64],
    arow: &[i64],
    bias: &[i64],
    f: &[f32],
    d: u32,
    rq: &ChannelRequant,
) -> Option<(u64, u64, u64)> {
    let (mut s_, mut t_, mut o_) = (0u64, 0u64, 0u64);
    for c in 0..orow.len() {
        let sh = arow[c].checked_shl(d).filter(|v| v >> d == arow[c])?;
        let x = sh.checked_add(bias[c])?;
        let (code, sat, tie, ovf) = rq.apply_f32_i64(x, f[c])?;
        orow[c] = code;
        s_ += sat as u64;
        t_ += tie as u64;
        o_ += ovf as u64;
    }
    Some((s_, t_, o_))
}

/// [`f32_row`] for narrow codes (`|lo|, |hi|, |zero point| <= 2^22`, which
/// the caller checks), branch-free in `i32` so the compiler can vectorize
/// it: the same codes and `(saturated, ties, overflows)` as
/// [`ChannelRequant::apply_f32_i64`] element by element, or `None` when
/// some `x = acc * 2^d + bias` is not exact in `int32` or some product is
/// NaN (the caller then runs [`f32_row`]).
///
/// Why it is the same: for `x` in `int32`, `x as i32 as f32` is the same
/// round-to-nearest-even conversion as from `i64`, and `overflow` is false.
/// The product `v` is clamped to `+-2^24` before rounding: inside, the
/// value is unchanged; outside, `|round(v)| >= 2^24` and the clamped
/// `+-2^24` both land beyond `lo..=hi` after adding `z` (`|z|, |lo|, |hi| <=
/// 2^22`) on the same side, so the code is the same bound, saturated, and
/// neither is a tie (a float32 of magnitude `>= 2^23` is an integer). Below
/// `2^24` `vc as i32` truncates exactly and the half-to-even decision is
/// [`ChannelRequant::apply_f32_i64`]'s.
#[inline(always)]
fn f32_row_narrow(
    orow: &mut [i64],
    arow: &[i64],
    bias: &[i64],
    f: &[f32],
    d: u32,
    rq: &ChannelRequant,
) -> Option<(u64, u64, u64)> {
    const C: f32 = 16_777_216.0; // 2^24
    let (z, lo, hi) = (rq.zero_point as i32, rq.lo as i32, rq.hi as i32);
    let n = orow.len().min(arow.len()).min(bias.len()).min(f.len());
    let (orow, arow, bias, f) = (&mut orow[..n], &arow[..n], &bias[..n], &f[..n]);
    let mut bad = false;
    let (mut s_, mut t_) = (0u64, 0u64);
    for c in 0..n {
        let a = arow[c];
        let sh = a.wrapping_shl(d);
        // An add that wraps lands near +-2^63, never inside int32.
        let x = sh.wrapping_add(bias[c]);
        bad |= (sh >> d) != a || x as i32 as i64 != x;
        let v = (x as i32 as f32) * f[c];
        bad |= v.is_nan();
        let vc = v.clamp(-C, C);
        let t = vc as i32; // toward zero, exact: |vc| <= 2^24
        let frac = (vc - t as f32).abs();
        let tie = frac == 0.5;
        let up = (frac > 0.5) | (tie & (t & 1 != 0));
        let r = t + (up as i32) * if vc < 0.0 { -1 } else { 1 };
        let y = r + z; // |r| <= 2^24, |z| <= 2^22: no overflow
        let code = y.clamp(lo, hi);
        orow[c] = code as i64;
        s_ += (code != y) as u64;
        t_ += tie as u64;
    }
    if bad {
        None
    } else {
        Some((s_, t_, 0))
    }
}

/// [`f32_row`] for fixed-point scalers ([`ChannelRequant::apply_fixed_i64`]).
#[inline(always)]
fn fixed_row(
    orow: &mut [i64],
    arow: &[i64],
    bias: &[i64],
    r: &[Requantizer],
    d: u32,
    rq: &ChannelRequant,
) -> Option<(u64, u64, u64)> {
    let (mut s_, mut t_, mut o_) = (0u64, 0u64, 0u64);
    for c in 0..orow.len() {
        let sh = arow[c].checked_shl(d).filter(|v| v >> d == arow[c])?;
        let x = sh.checked_add(bias[c])?;
        let (code, sat, tie, ovf) = rq.apply_fixed_i64(x, &r[c])?;
        orow[c] = code;
        s_ += sat as u64;
        t_ += tie as u64;
        o_ += ovf as u64;
    }
    Some((s_, t_, o_))
}

impl ChannelRequant {
    /// [`ChannelRequant::apply`] of a fixed-point scaler `r` on an `i64`
    /// input without `i128`: the same `(code, saturated, tie, overflow)`,
    /// or `None` when `x * 2^max(shift, 0)` leaves int32 (the overflow
    /// case, which the caller runs through `apply`). The value is
    /// [`Requantizer::scale_i64`]; the tie test is `Scaler::scale`'s on
    /// `p = x * m0` (`|p| < 2^62`, exact in `i64`).
    #[inline(always)]
    pub fn apply_fixed_i64(&self, x: i64, r: &Requantizer) -> Option<(i64, bool, bool, bool)> {
        let y = r.scale_i64(x)?;
        let Multiplier { m0, shift } = r.multiplier();
        let t = 31 - shift; // 1..=62
        let p = x * m0 as i64;
        let tie = m0 != 0 && (p & ((1i64 << t) - 1)) == (1i64 << (t - 1));
        let v = y as i128 + self.zero_point as i128;
        let z = v.clamp(self.lo as i128, self.hi as i128);
        Some((z as i64, z != v, tie, false))
    }
}

impl ChannelRequant {
    /// [`ChannelRequant::apply`] of a float32 scaler `s` on an `i64` input,
    /// without `i128` or libm calls: the same `(code, saturated, tie,
    /// overflow)`, or `None` when the scaled value reaches `2^62` in
    /// magnitude or is not finite (the caller then runs `apply`).
    ///
    /// Why it is the same: `x as f32` is round-to-nearest-even from the
    /// exact integer in either width; `v = f32(x) * s` is the same float32
    /// product; for `|v| < 2^62` rounding half to even in f64 gives an
    /// integer `apply` would also give (its clamp to `+-2^100` does not
    /// act). The tie test `|v - trunc(v)| == 0.5` reads `trunc(v)` as `v as
    /// i64` (truncation toward zero, exact for `|v| < 2^62`) converted back
    /// to f32, exact because `trunc(v)` of a float32 is a float32.
    #[inline(always)]
    pub fn apply_f32_i64(&self, x: i64, s: f32) -> Option<(i64, bool, bool, bool)> {
        let v = (x as f32) * s;
        if v.is_nan() || v.abs() >= (1u64 << 62) as f32 {
            return None; // |v| >= ~2^62, infinite or NaN
        }
        let t = v as i64; // toward zero, exact in range
        let frac = (v - t as f32).abs(); // exact: trunc(v) is a float32 near v
        let tie = frac == 0.5;
        // Round half to even: away from trunc when |frac| > 1/2, or on a
        // tie when trunc is odd.
        let up = (frac > 0.5) | (tie & (t & 1 != 0));
        let r = t + (up as i64) * if v < 0.0 { -1 } else { 1 };
        let y = r as i128 + self.zero_point as i128;
        let zc = y.clamp(self.lo as i128, self.hi as i128);
        Some((zc as i64, zc != y, tie, !(i32::MIN as i64..=i32::MAX as i64).contains(&x)))
    }
}

/// The TFLite quantized ADD (`docs/ppu.md` §3), precomputed for one node.
#[derive(Clone, Debug, PartialEq)]
pub enum AddRescale {
    /// Integer: `left_shift = 20`, two input scalers, one output scaler.
    Fixed { z: [i64; 2], inputs: [Scaler; 2], output: Scaler },
    /// Float32 (ONNX QDQ: dequantize, float add, `QuantizeLinear`).
    Float32 { z: [i64; 2], s: [f32; 2], s_out: f32 },
}

/// TFLite's left shift for 8-bit Add.
pub const ADD_LEFT_SHIFT: u32 = 20;

impl AddRescale {
    /// TFLite: `twice_max = 2*max(s1, s2)` (f64), input multipliers
    /// `s_i / twice_max`, output multiplier `twice_max / (2^20 * s_out)`,
    /// each through `QuantizeMultiplier` with `rounding`.
    pub fn fixed(z: [i64; 2], s: [f32; 2], s_out: f32, rounding: RequantRounding) -> Result<AddRescale> {
        let twice_max = 2.0 * (s[0].max(s[1]) as f64);
        let m1 = Scaler::fixed(s[0] as f64 / twice_max, rounding)?;
        let m2 = Scaler::fixed(s[1] as f64 / twice_max, rounding)?;
        let mo = Scaler::fixed(twice_max / ((1u64 << ADD_LEFT_SHIFT) as f64 * s_out as f64), rounding)?;
        Ok(AddRescale::Fixed { z, inputs: [m1, m2], output: mo })
    }

    /// One output element: `(raw value before zero point and clamp, tie, overflow)`.
    #[inline]
    pub fn apply(&self, a: i64, b: i64) -> (i128, bool, bool) {
        match self {
            AddRescale::Fixed { z, inputs, output } => {
                let xa = ((a - z[0]) as i128) << ADD_LEFT_SHIFT;
                let xb = ((b - z[1]) as i128) << ADD_LEFT_SHIFT;
                let (ya, t1, o1) = inputs[0].scale(xa);
                let (yb, t2, o2) = inputs[1].scale(xb);
                let (r, t3, o3) = output.scale(ya + yb);
                (r, t1 | t2 | t3, o1 | o2 | o3)
            }
            AddRescale::Float32 { z, s, s_out } => {
                let da = ((a - z[0]) as f32) * s[0];
                let db = ((b - z[1]) as f32) * s[1];
                quantize_f32(da + db, *s_out)
            }
        }
    }
}

impl AddRescale {
    /// The whole float32 Add of two code tensors, `(codes, saturated,
    /// ties)`, equal element by element to [`AddRescale::apply`] followed by
    /// [`clamp`]`(v + z_out, lo, hi)` (no overflows on this path), branch-free
    /// in `i32` so the compiler can vectorize it. `None` (the caller runs
    /// `apply`) for a fixed-point rescale, when `|z_out|, |lo|, |hi| >
    /// 2^22`, when some `a - z` is outside `+-2^24`, or when some quotient
    /// is NaN. Why it is the same: `a - z` within `2^24` converts to float32
    /// exactly from `i32` as from `i64`; the quotient `q` is the same
    /// float32; clamping it to `+-2^24` before rounding keeps the code (the
    /// bound, saturated, on the same side: see `f32_row_narrow`) and the
    /// tie flag (false for `|q| >= 2^23` either way).
    pub fn apply_f32_narrow(
        &self,
        a: &[i64],
        b: &[i64],
        z_out: i64,
        lo: i64,
        hi: i64,
    ) -> Option<(Vec<i64>, u64, u64)> {
        const C: f32 = 16_777_216.0; // 2^24
        let AddRescale::Float32 { z, s, s_out } = *self else {
            return None;
        };
        if [z_out, lo, hi].iter().any(|v| v.unsigned_abs() > 1 << 22) {
            return None;
        }
        let (zo, lo, hi) = (z_out as i32, lo as i32, hi as i32);
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let mut out = vec![0i64; n];
        let mut bad = false;
        let (mut sat_n, mut tie_n) = (0u64, 0u64);
        for i in 0..n {
            let (da, db) = (a[i].wrapping_sub(z[0]), b[i].wrapping_sub(z[1]));
            // Exact differences within 2^24 (a wrapped one is far outside).
            bad |= da.unsigned_abs() > 1 << 24 || db.unsigned_abs() > 1 << 24;
            let (da, db) = (da as i32, db as i32);
            let q = ((da as f32) * s[0] + (db as f32) * s[1]) / s_out;
            bad |= q.is_nan();
            let qc = q.clamp(-C, C);
            let t = qc as i32; // toward zero, exact: |qc| <= 2^24
            let frac = (qc - t as f32).abs();
            let tie = frac == 0.5;
            let up = (frac > 0.5) | (tie & (t & 1 != 0));
            let y = t + (up as i32) * if qc < 0.0 { -1 } else { 1 } + zo;
            let code = y.clamp(lo, hi);
            out[i] = code as i64;
            sat_n += (code != y) as u64;
            tie_n += tie as u64;
        }
        if bad {
            None
        } else {
            Some((out, sat_n, tie_n))
        }
    }
}

/// 2^100, exactly: the float32 paths clamp to it before the `i128` cast, so
/// an infinite or huge product saturates far outside every code range (and
/// a NaN, which `clamp` passes, casts to 0). A constant rather than
/// `2f64.powi(100)`, which was a libm call per output.
const F32_CLAMP: f64 = (1u128 << 100) as f64;

/// ONNX `QuantizeLinear` without zero point and clamp: `rne(v / s)` (one
/// float32 division); `(value, tie, false)`.
#[inline]
fn quantize_f32(v: f32, s: f32) -> (i128, bool, bool) {
    let q = v / s;
    let tie = q.is_finite() && (q - q.trunc()).abs() == 0.5;
    ((q as f64).clamp(-F32_CLAMP, F32_CLAMP).round_ties_even() as i128, tie, false)
}

/// One input of a Concat rescaled to the output quantization
/// (`docs/ppu.md` §4).
#[derive(Clone, Debug, PartialEq)]
pub enum ConcatRescale {
    /// Same quantization as the output: codes copied.
    Copy,
    /// `z_out + scale(a - z_in)` with `M = s_in / s_out` (fixed point).
    Fixed { z_in: i64, m: Scaler },
    /// `rne(f32(f32(a - z_in) * s_in) / s_out)` (ONNX QDQ).
    Float32 { z_in: i64, s_in: f32, s_out: f32 },
}

impl ConcatRescale {
    /// `(value before the output zero point, tie, overflow)`; `Copy`
    /// returns `a - z_out` so that adding `z_out` gives `a` back.
    #[inline]
    pub fn apply(&self, a: i64, z_out: i64) -> (i128, bool, bool) {
        match self {
            ConcatRescale::Copy => ((a - z_out) as i128, false, false),
            ConcatRescale::Fixed { z_in, m } => m.scale((a - z_in) as i128),
            ConcatRescale::Float32 { z_in, s_in, s_out } => quantize_f32(((a - z_in) as f32) * s_in, *s_out),
        }
    }
}

/// `round(s / n)` for `n >= 1` with the named rounding (`docs/ppu.md` §5):
/// `(quotient, tie)`; exact integer arithmetic, `floor` meaning toward
/// -inf.
#[inline]
pub fn div_round(s: i128, n: i128, mode: DivRounding) -> (i128, bool) {
    debug_assert!(n >= 1);
    let q = s.div_euclid(n); // floor for n > 0
    let r = s.rem_euclid(n); // 0 <= r < n
    let tie = 2 * r == n;
    let q = match mode {
        DivRounding::Floor => q,
        DivRounding::HalfEven => {
            if 2 * r > n || (tie && q & 1 == 1) {
                q + 1
            } else {
                q
            }
        }
        DivRounding::HalfAway => {
            // Ties go up for s > 0 (q >= 0) and down (stay at floor) for s < 0.
            if 2 * r > n || (tie && s > 0) {
                q + 1
            } else {
                q
            }
        }
    };
    (q, tie)
}

/// Clamp `v` to `lo..=hi`: `(code, saturated)`.
#[inline]
pub fn clamp(v: i128, lo: i64, hi: i64) -> (i64, bool) {
    let c = v.clamp(lo as i128, hi as i128);
    (c as i64, c != v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn div_round_modes() {
        use DivRounding::*;
        // 5/2 = 2.5, -5/2 = -2.5, 7/4 = 1.75, -7/4 = -1.75
        let cases = [
            (5, 2, HalfEven, 2),
            (7, 2, HalfEven, 4),
            (-5, 2, HalfEven, -2),
            (-7, 2, HalfEven, -4),
            (5, 2, HalfAway, 3),
            (-5, 2, HalfAway, -3),
            (-7, 4, HalfAway, -2),
            (7, 4, Floor, 1),
            (-7, 4, Floor, -2),
            (-1, 3, HalfEven, 0),
        ];
        for (s, n, m, want) in cases {
            assert_eq!(div_round(s, n, m).0, want, "{s}/{n} {m:?}");
        }
        assert!(div_round(-5, 2, HalfAway).1 && !div_round(7, 4, Floor).1);
    }

    #[test]
    fn float32_i64_fast_path_equals_apply() {
        // Every tie, near-tie, sign, large value and the 2^62 cut-off, on
        // a grid of scales, against the i128 path.
        let scales = [1.0f32, 0.5, 0.25, 0.1, 1e-3, 3.3e-5, 7.0, 1e-12, 1.5e10, 2.0f32.powi(-24)];
        let mut xs: Vec<i64> = (-2000..2000).collect();
        for e in 0..63 {
            let p = 1i64 << e;
            xs.extend([p, p - 1, p + 1, -p, -p + 1, -p - 1, p / 3, -(p / 3) - 7]);
        }
        xs.extend([i64::MAX, i64::MIN, i64::MAX - 1, 16_777_217, -16_777_217]);
        for &s in &scales {
            for (zp, lo, hi) in
                [(0, -128, 127), (-3, -128, 127), (5, 0, 255), (0, i32::MIN as i64, i32::MAX as i64)]
            {
                let rq = ChannelRequant::new(vec![Scaler::Float32(s)], zp, lo, hi).unwrap();
                for &x in &xs {
                    if let Some(f) = rq.apply_f32_i64(x, s) {
                        assert_eq!(f, rq.apply(x as i128, 0), "x {x} s {s} zp {zp}");
                    } else {
                        assert!(((x as f32) * s).abs() >= 4.6e18 || !((x as f32) * s).is_finite());
                    }
                }
            }
        }
    }

    #[test]
    fn float32_narrow_row_equals_apply() {
        // Rows of x = acc * 2^d + bias across ties, int32's edges and
        // beyond, large products (clamped at 2^24) and NaN-free scales: the
        // narrow row gives apply's codes and counts, or declines.
        let scales = [1.0f32, 0.5, 0.25, 0.1, 1e-3, 3.3e-5, 7.0, 1e-12, 1.5e10, 2.0f32.powi(-24), 3e38];
        let mut accs: Vec<i64> = (-600..600).collect();
        for e in 0..63 {
            let p = 1i64 << e;
            accs.extend([p, p - 1, p + 1, -p, -p + 1, -p - 1, p / 3]);
        }
        accs.extend([i64::MAX, i64::MIN, 16_777_217, -16_777_217, 8_388_609, -8_388_607]);
        let mut declined = 0;
        for d in [0u32, 1, 3] {
            for &s in &scales {
                for (zp, lo, hi) in
                    [(0, -128, 127), (-3, -128, 127), (5, 0, 255), (1 << 22, -(1 << 22), 1 << 22)]
                {
                    let rq = ChannelRequant::new(vec![Scaler::Float32(s)], zp, lo, hi).unwrap();
                    for chunk in accs.chunks(7) {
                        let bias: Vec<i64> = (0..chunk.len() as i64).map(|i| i * 37 - 100).collect();
                        let f = vec![s; chunk.len()];
                        let mut got = vec![0i64; chunk.len()];
                        let Some(counts) = f32_row_narrow(&mut got, chunk, &bias, &f, d, &rq) else {
                            declined += 1;
                            continue;
                        };
                        let mut want = (0u64, 0u64, 0u64);
                        for (c, &a) in chunk.iter().enumerate() {
                            let x = ((a as i128) << d) + bias[c] as i128;
                            let (code, sat, tie, ovf) = rq.apply(x, c);
                            assert_eq!(got[c], code, "a {a} d {d} s {s} zp {zp}");
                            want.0 += sat as u64;
                            want.1 += tie as u64;
                            want.2 += ovf as u64;
                        }
                        assert_eq!(counts, want, "{chunk:?} d {d} s {s} zp {zp}");
                    }
                }
            }
        }
        // Rows holding an x outside int32 are declined, the others taken.
        assert!(declined > 0 && declined < 3 * 11 * 4 * accs.len().div_ceil(7));
    }

    #[test]
    fn float32_narrow_add_equals_apply() {
        let mut codes: Vec<i64> = (-300..300).collect();
        codes.extend([1 << 24, -(1 << 24), (1 << 24) + 1, 1 << 40, i64::MAX, i64::MIN, 16_777_215]);
        let b: Vec<i64> = codes.iter().rev().map(|&v| v.wrapping_mul(3) / 2).collect();
        let mut taken = 0;
        for (s, s_out) in [
            ([0.5f32, 0.25], 0.5f32),
            ([0.1, 0.3], 0.07),
            ([1e-3, 2.0], 1e-30),
            ([3e38, 3e38], 1e-3),
            ([1.0, 1.0], 2.0),
        ] {
            for (z, zo, lo, hi) in
                [([0, 0], 0, -128, 127), ([3, -5], 7, 0, 255), ([0, 1], 1 << 22, -(1 << 22), 1 << 22)]
            {
                let add = AddRescale::Float32 { z, s, s_out };
                for (ca, cb) in codes.chunks(9).zip(b.chunks(9)) {
                    let Some((got, sat, tie)) = add.apply_f32_narrow(ca, cb, zo, lo, hi) else { continue };
                    taken += 1;
                    let (mut ws, mut wt) = (0u64, 0u64);
                    for i in 0..ca.len() {
                        let (v, t, o) = add.apply(ca[i], cb[i]);
                        let (c, sa) = clamp(v + zo as i128, lo, hi);
                        assert_eq!((got[i], o), (c, false), "{} + {} s {s:?} {s_out}", ca[i], cb[i]);
                        ws += sa as u64;
                        wt += t as u64;
                    }
                    assert_eq!((sat, tie), (ws, wt));
                }
            }
        }
        assert!(taken > 100);
        let fixed = AddRescale::fixed([0, 0], [0.25, 0.25], 0.5, RequantRounding::Double).unwrap();
        assert!(fixed.apply_f32_narrow(&[1], &[2], 0, -128, 127).is_none());
    }

    /// Every compilation of `gemm_output` this CPU runs gives the
    /// portable one's codes, counts and (bitwise) float sums: float32 and
    /// fixed scalers, per channel and per tensor, d = 0 and 2, rows with
    /// elements outside int32.
    #[test]
    fn gemm_output_paths_agree() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(77);
        let mut paths = vec![Simd::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                paths.push(Simd::Avx2);
            }
            if output_path() == Simd::Avx512 {
                paths.push(Simd::Avx512);
            }
        }
        for case in 0..40 {
            let (m, n) = (rng.gen_range(1..40), rng.gen_range(1..40));
            let d = [0u32, 2][case % 2];
            let acc: Vec<i64> = (0..m * n)
                .map(|_| match rng.gen_range(0..10) {
                    0 => rng.gen_range(-(1i64 << 40)..(1 << 40)),
                    _ => rng.gen_range(-5000..5000),
                })
                .collect();
            let exact: Vec<i64> = acc.iter().map(|&a| a + rng.gen_range(-3..4)).collect();
            let bias: Vec<i32> = (0..n).map(|_| rng.gen_range(-900..900)).collect();
            let scalers: Vec<Scaler> = (0..if case % 3 == 0 { 1 } else { n })
                .map(|_| match case % 4 {
                    3 => Scaler::fixed(rng.gen_range(1e-4..0.9), RequantRounding::Double).unwrap(),
                    _ => Scaler::Float32(rng.gen_range(1e-4f32..0.7)),
                })
                .collect();
            let rq = ChannelRequant::new(scalers, rng.gen_range(-5..5), -128, 127).unwrap();
            let mut want_st = Stats::default();
            let want = gemm_output_on(Simd::Portable, &acc, &exact, d, n, Some(&bias), &rq, &mut want_st);
            for &p in &paths {
                let mut st = Stats::default();
                let got = gemm_output_on(p, &acc, &exact, d, n, Some(&bias), &rq, &mut st);
                assert_eq!(got, want, "case {case} {p:?}");
                assert_eq!(st.out_err_sum.to_bits(), want_st.out_err_sum.to_bits(), "case {case} {p:?}");
                assert_eq!(st.out_err_sq.to_bits(), want_st.out_err_sq.to_bits(), "case {case} {p:?}");
                assert_eq!((st.outputs, st.out_clamped), (want_st.outputs, want_st.out_clamped));
            }
        }
    }

    #[test]
    fn float32_scaler_is_mlas_order() {
        // 16777217 is not a float32: it converts to 16777216 (ties to even)
        // before the multiply.
        let (v, _, ovf) = Scaler::Float32(1.0).scale(16_777_217);
        assert_eq!((v, ovf), (16_777_216, false));
        // 3 * 0.5 = 1.5 -> 2 (ties to even); 5 * 0.5 = 2.5 -> 2.
        assert_eq!(Scaler::Float32(0.5).scale(3).0, 2);
        assert_eq!(Scaler::Float32(0.5).scale(5), (2, true, false));
        assert!(Scaler::Float32(1e-12).scale(1i128 << 40).2);
    }

    #[test]
    fn fixed_scaler_ties() {
        let s = Scaler::fixed(0.5, RequantRounding::Single).unwrap();
        assert_eq!(s.scale(3), (2, true, false)); // 1.5 -> 2 (half up)
        assert_eq!(s.scale(4), (2, false, false));
        let d = Scaler::fixed(0.5, RequantRounding::Double).unwrap();
        // M = 0.5 is m0 = 2^30, shift = 0: only the high multiply rounds,
        // ties toward +inf (-1.5 -> -1); RoundingDivideByPOT does not run.
        assert_eq!(d.scale(-3), (-1, true, false));
        // M = 0.25 (shift -1): -0.75 rounds to the nearest, -1.
        let q = Scaler::fixed(0.25, RequantRounding::Double).unwrap();
        assert_eq!(q.scale(-3).0, -1);
    }

    #[test]
    fn tflite_add_equals_real_sum_when_exact() {
        // Same scales, zero points 0: (a + b) * s / s_out with s_out = 2s.
        let add = AddRescale::fixed([0, 0], [0.25, 0.25], 0.5, RequantRounding::Double).unwrap();
        for (a, b) in [(10, 20), (-8, 4), (127, 127), (3, 0)] {
            let (r, _, o) = add.apply(a, b);
            assert!(!o);
            let exact = (a + b) as f64 / 2.0;
            assert!((r as f64 - exact).abs() <= 0.5, "{a}+{b}: {r} vs {exact}");
        }
    }
}
