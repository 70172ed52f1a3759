//! Integer requantization: accumulator -> output code, as gemmlowp/TFLite do
//! it, with the rounding scheme named (never implied).
//!
//! The real multiplier `M = s_w * s_a / s_out` (LSQ step sizes) is turned into
//! a Q0.31 integer `m0` in `[2^30, 2^31)` and a power-of-two `shift` with
//! `M ~= m0 * 2^(shift - 31)` ([`quantize_multiplier`], TFLite's
//! `QuantizeMultiplier`). An accumulator `x` is then scaled by one of two
//! named schemes ([`RequantRounding`]) and clamped to the output format
//! (fused ReLU raises the lower clamp to 0). There is no zero point: LSQ
//! quantizers are symmetric.
//!
//! Normative text: `docs/requant.md`.

use crate::error::{Error, Result};
use crate::numerics::IntFormat;
use std::fmt;
use std::str::FromStr;

/// The two requantization rounding schemes of TFLite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequantRounding {
    /// gemmlowp / TFLite default: `SaturatingRoundingDoublingHighMul`
    /// (ties toward +inf) then `RoundingDivideByPOT` (ties away from zero).
    Double,
    /// `TFLITE_SINGLE_ROUNDING`: `(x * m0 + 2^(t-1)) >> t`, `t = 31 - shift`
    /// (one rounding, ties toward +inf).
    Single,
}

impl RequantRounding {
    /// The JSON/CLI name: `double` or `single`.
    pub fn name(self) -> &'static str {
        match self {
            RequantRounding::Double => "double",
            RequantRounding::Single => "single",
        }
    }
}

impl fmt::Display for RequantRounding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RequantRounding {
    type Err = Error;
    fn from_str(s: &str) -> Result<RequantRounding> {
        match s {
            "double" => Ok(RequantRounding::Double),
            "single" => Ok(RequantRounding::Single),
            _ => Err(Error::input(format!("requant rounding: unknown {s:?} (allowed: double, single)"))),
        }
    }
}

/// A quantized multiplier: `M ~= m0 * 2^(shift - 31)`.
///
/// Invariant (after [`quantize_multiplier`]): either `m0 == 0 && shift == 0`
/// (the multiplier underflowed, TFLite's behaviour for `M < 2^-32`), or
/// `2^30 <= m0 < 2^31` and `-31 <= shift <= 30`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Multiplier {
    pub m0: i32,
    pub shift: i32,
}

impl Multiplier {
    /// The exact real value `m0 * 2^(shift-31)` (exact in f64: `m0` has 31
    /// significant bits).
    pub fn real(&self) -> f64 {
        self.m0 as f64 * (2f64).powi(self.shift - 31)
    }
}

/// `frexp` for positive finite `v`: `(q, e)` with `v = q * 2^e`, `q` in
/// `[0.5, 1)`. Exact (bit manipulation), subnormals included.
fn frexp(v: f64) -> (f64, i32) {
    debug_assert!(v.is_finite() && v > 0.0);
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale into the normal range first (exact).
        let (q, e) = frexp(v * 2f64.powi(64));
        return (q, e - 64);
    }
    let q = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (q, exp - 1022)
}

/// The exclusive upper bound of [`quantize_multiplier`]'s input, `2^30 - 2^-2`.
pub const MAX_MULTIPLIER: f64 = 1073741823.75;

/// The smallest [`quantize_multiplier`] input that does not underflow to
/// `m0 = 0`: `2^-32 - 2^-64` (exact in f64).
pub const MIN_MULTIPLIER: f64 = 2.3283064365386963e-10 - 5.421010862427522e-20;

/// TFLite's `QuantizeMultiplier`: `q, shift = frexp(M)`;
/// `m0 = round(q * 2^31)` with ties away from zero (C `std::round`, which is
/// exactly Rust's `f64::round`, used here deliberately); if `m0 == 2^31`
/// then `m0 /= 2, shift += 1`; if `shift < -31` the multiplier underflows to
/// `m0 = 0, shift = 0` (all outputs 0, as TFLite does).
///
/// `M` must be finite, `> 0` and `< 2^30 - 2^-2` ([`MAX_MULTIPLIER`],
/// exclusive): for `M` in `[2^30 - 2^-2, 2^30)` step 2 rounds `q * 2^31` up
/// to `2^31` and the renormalized shift would be 31, outside the
/// `shift <= 30` both schemes support (single rounding needs
/// `t = 31 - shift >= 1`); anything else is an error. The smallest `M` that
/// does not underflow is [`MIN_MULTIPLIER`] `= 2^-32 - 2^-64` (it rounds up
/// to `m0 = 2^30, shift = -31`).
pub fn quantize_multiplier(real: f64) -> Result<Multiplier> {
    if !real.is_finite() || real <= 0.0 || real >= MAX_MULTIPLIER {
        return Err(Error::field(
            "requant multiplier",
            real,
            "finite, > 0 and < 2^30 - 2^-2 = 1073741823.75 (larger multipliers need shift > 30)",
        ));
    }
    let (q, mut shift) = frexp(real);
    // q * 2^31 is exact (a power-of-two scaling); the rounding is the only
    // inexact step.
    let mut q_fixed = (q * 2147483648.0).round() as i64;
    if q_fixed == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        return Ok(Multiplier { m0: 0, shift: 0 });
    }
    // Unreachable after the range check above (kept as the invariant's guard).
    if shift > 30 {
        return Err(Error::internal(format!("requant multiplier {real}: shift {shift} > 30")));
    }
    Ok(Multiplier { m0: q_fixed as i32, shift })
}

/// The real multiplier of a layer from its LSQ step sizes, as TFLite's
/// `GetQuantizedConvolutionMultipler` computes it: the product
/// `s_a * s_w` is rounded to f32 (an f32 multiply), widened to f64, and
/// divided in f64 by `s_out` widened to f64.
pub fn layer_multiplier(s_w: f32, s_a: f32, s_out: f32) -> Result<f64> {
    for (name, s) in [("weight step", s_w), ("activation step", s_a), ("output step", s_out)] {
        if !s.is_finite() || s <= 0.0 {
            return Err(Error::field(name, s, "finite and > 0"));
        }
    }
    let prod = s_a * s_w;
    if !prod.is_finite() || prod <= 0.0 {
        return Err(Error::field("activation step * weight step (f32)", prod, "finite and > 0"));
    }
    Ok(prod as f64 / s_out as f64)
}

/// THE quantized requantization multiplier of a layer with weight step
/// `s_w`, input (activation) step `s_a` and output step `s_out`:
/// `quantize_multiplier(layer_multiplier(s_w, s_a, s_out))`, i.e.
/// `M = f64(f32(s_a * s_w)) / f64(s_out)` then TFLite `QuantizeMultiplier`
/// (`docs/requant.md`). Every command that derives a multiplier from step
/// sizes (`run`, `gemm --scale-*`, `gen`, `dse`) calls this one function.
pub fn step_multiplier(s_w: f32, s_a: f32, s_out: f32) -> Result<Multiplier> {
    quantize_multiplier(layer_multiplier(s_w, s_a, s_out)?)
}

/// A validated requantizer: multiplier, scheme, output format and ReLU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requantizer {
    mult: Multiplier,
    rounding: RequantRounding,
    out: IntFormat,
    relu: bool,
    lo: i128,
    hi: i128,
}

impl Requantizer {
    /// A requantizer writing `out` codes. Output width must be 2..=32.
    pub fn new(
        mult: Multiplier,
        rounding: RequantRounding,
        out: IntFormat,
        relu: bool,
    ) -> Result<Requantizer> {
        if !(2..=32).contains(&out.width()) {
            return Err(Error::field("requant output bits", out.width(), "2..=32"));
        }
        let valid = (mult.m0 == 0 && mult.shift == 0)
            || ((1 << 30..=i32::MAX).contains(&mult.m0) && (-31..=30).contains(&mult.shift));
        if !valid {
            return Err(Error::input(format!(
                "requant multiplier: m0={} shift={} is not normalized (allowed: m0 in 2^30..2^31, shift in -31..=30)",
                mult.m0, mult.shift
            )));
        }
        let lo = if relu { out.min().max(0) } else { out.min() };
        Ok(Requantizer { mult, rounding, out, relu, lo, hi: out.max() })
    }

    /// The quantized multiplier.
    pub fn multiplier(&self) -> Multiplier {
        self.mult
    }

    /// The rounding scheme.
    pub fn rounding(&self) -> RequantRounding {
        self.rounding
    }

    /// The output format.
    pub fn out_format(&self) -> IntFormat {
        self.out
    }

    /// True when ReLU is fused (lower clamp at 0).
    pub fn relu(&self) -> bool {
        self.relu
    }

    /// The exact real multiplier `m0 * 2^(shift-31)` the integer path uses.
    pub fn real_multiplier(&self) -> f64 {
        self.mult.real()
    }

    /// The scaled value before clamping (see [`Requantizer::apply`]).
    #[inline]
    pub fn scale(&self, x: i128) -> i128 {
        let Multiplier { m0, shift } = self.mult;
        let m0 = m0 as i128;
        match self.rounding {
            RequantRounding::Double => {
                let left = shift.max(0) as u32;
                let right = (-shift).max(0) as u32;
                let ab = (x << left) * m0;
                // gemmlowp SaturatingRoundingDoublingHighMul: the nudge and
                // truncating division make it round half toward +inf. Its
                // saturation case (both operands INT32_MIN) cannot occur:
                // m0 >= 0.
                let nudge: i128 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
                let high = (ab + nudge) / (1i128 << 31); // `/` truncates toward zero, as in C++.
                                                         // gemmlowp RoundingDivideByPOT: ties away from zero.
                let mask = (1i128 << right) - 1;
                let remainder = high & mask;
                let threshold = (mask >> 1) + i128::from(high < 0);
                (high >> right) + i128::from(remainder > threshold)
            }
            RequantRounding::Single => {
                let t = (31 - shift) as u32; // 1..=62
                (x * m0 + (1i128 << (t - 1))) >> t
            }
        }
    }

    /// [`Requantizer::scale`] in `i64`, for the output stage's hot loop:
    /// the same value for every `x` with `x * 2^max(shift, 0)` inside int32
    /// (the range TFLite defines; `None` outside it, where the caller runs
    /// `scale`). Exact: the products `(x << left) * m0` and `x * m0` are
    /// below `2^62` in magnitude and the rounding constants below `2^61`,
    /// so no intermediate leaves `i64`; `/` truncates toward zero as in
    /// `scale`. Held equal to `scale` by `tests/numerics_reference.rs`.
    #[inline(always)]
    pub fn scale_i64(&self, x: i64) -> Option<i64> {
        let Multiplier { m0, shift } = self.mult;
        let m0 = m0 as i64;
        let left = shift.max(0) as u32;
        let i32r = i32::MIN as i64..=i32::MAX as i64;
        if !i32r.contains(&x) || !i32r.contains(&(x << left)) {
            return None;
        }
        Some(match self.rounding {
            RequantRounding::Double => {
                let right = (-shift).max(0) as u32;
                let ab = (x << left) * m0;
                let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
                let high = (ab + nudge) / (1i64 << 31);
                let mask = (1i64 << right) - 1;
                let remainder = high & mask;
                let threshold = (mask >> 1) + i64::from(high < 0);
                (high >> right) + i64::from(remainder > threshold)
            }
            RequantRounding::Single => {
                let t = (31 - shift) as u32; // 1..=62
                (x * m0 + (1i64 << (t - 1))) >> t
            }
        })
    }

    /// Requantize an exact accumulator value `x` (accumulator plus bias;
    /// `|x| < 2^66`). Returns the output code and whether the clamp changed
    /// it.
    ///
    /// For `|x * 2^max(shift,0)| < 2^31` the result is bit-identical to
    /// TFLite's `MultiplyByQuantizedMultiplier` (double) or its
    /// `TFLITE_SINGLE_ROUNDING` variant (single) followed by the activation
    /// clamp; for wider accumulators the same formulas are evaluated exactly
    /// in 128-bit arithmetic instead of int32/int64.
    #[inline]
    pub fn apply(&self, x: i128) -> (i64, bool) {
        let y = self.scale(x);
        let z = y.clamp(self.lo, self.hi);
        (z as i64, z != y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frexp_matches_definition() {
        for v in [1.0, 0.5, 0.75, 3.0, 1e-300, 5e-324, 1e300, 0.1] {
            let (q, e) = frexp(v);
            assert!((0.5..1.0).contains(&q), "{v}");
            // Two steps: 2^e alone can underflow or overflow powi.
            assert_eq!(q * 2f64.powi(e / 2) * 2f64.powi(e - e / 2), v);
        }
    }

    #[test]
    fn multiplier_normalization() {
        let m = quantize_multiplier(0.5).unwrap();
        assert_eq!((m.m0, m.shift), (1 << 30, 0));
        let m = quantize_multiplier(1.0).unwrap();
        assert_eq!((m.m0, m.shift), (1 << 30, 1));
        // q*2^31 rounds up to 2^31: halve and bump the shift.
        let m = quantize_multiplier(1.0 - 2f64.powi(-40)).unwrap();
        assert_eq!((m.m0, m.shift), (1 << 30, 1));
        assert_eq!(quantize_multiplier(1e-12).unwrap(), Multiplier { m0: 0, shift: 0 });
        assert!(quantize_multiplier(0.0).is_err());
        assert!(quantize_multiplier(f64::NAN).is_err());
        assert!(quantize_multiplier(2f64.powi(31)).is_err());
    }

    #[test]
    fn multiplier_range_both_ends() {
        // Constants are the documented exact values.
        assert_eq!(MAX_MULTIPLIER, 2f64.powi(30) - 0.25);
        assert_eq!(MIN_MULTIPLIER, 2f64.powi(-32) - 2f64.powi(-64));
        let below = |x: f64| f64::from_bits(x.to_bits() - 1);
        // Upper end: the largest accepted M gives m0 = 2^31 - 1, shift 30.
        let m = quantize_multiplier(below(MAX_MULTIPLIER)).unwrap();
        assert_eq!((m.m0, m.shift), (i32::MAX, 30));
        // The band [2^30 - 2^-2, 2^30) would need shift 31: refused, naming the range.
        for x in [MAX_MULTIPLIER, below(2f64.powi(30)), 2f64.powi(30)] {
            let e = quantize_multiplier(x).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{x}");
            assert!(e.to_string().contains("2^30 - 2^-2"), "{e}");
        }
        // Lower end: MIN_MULTIPLIER rounds up to m0 = 2^30, shift -31; the
        // next smaller f64 underflows to 0 (TFLite's behaviour).
        let m = quantize_multiplier(MIN_MULTIPLIER).unwrap();
        assert_eq!((m.m0, m.shift), (1 << 30, -31));
        assert_eq!(quantize_multiplier(below(MIN_MULTIPLIER)).unwrap(), Multiplier { m0: 0, shift: 0 });
        // Every accepted multiplier builds a requantizer under both schemes.
        let out = IntFormat::signed(8).unwrap();
        for x in [below(MAX_MULTIPLIER), MIN_MULTIPLIER, below(MIN_MULTIPLIER)] {
            for r in [RequantRounding::Double, RequantRounding::Single] {
                let rq = Requantizer::new(quantize_multiplier(x).unwrap(), r, out, false).unwrap();
                let _ = rq.apply(1);
            }
        }
    }
}
