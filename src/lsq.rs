//! LSQ quantizers (Learned Step Size Quantization), forward and backward, in
//! IEEE-754 binary32, bit-exact with the seed's PyTorch code.
//!
//! Two variants share one datapath and differ only in the code range, the
//! gradient mask and the step-gradient scale (full definitions, with a table
//! of tie cases, in `docs/lsq.md`):
//!
//! | variant | kind   | code range `[lo, hi]`            | `grad_x` outside the range | `grad_s` scale `g`   |
//! |---------|--------|----------------------------------|----------------------------|----------------------|
//! | `seed`  | act    | `[-(2^(b-1)-1), 2^(b-1)-1]`      | `+0.0` (masked)            | 1                    |
//! | `seed`  | weight | `[-(2^(b-1)-1), 2^(b-1)-1]`      | `grad_y` (pass-through)    | 1                    |
//! | `paper` | act    | `[0, 2^b-1]`                     | `+0.0` (masked)            | `f32(1/sqrt(N*Qp))`  |
//! | `paper` | weight | `[-2^(b-1), 2^(b-1)-1]`          | `+0.0` (masked)            | `f32(1/sqrt(N*Qp))`  |
//!
//! Per element, with `s` the step (f32), `lo = -Qn`, `hi = Qp` (exact f32
//! integers; `lo` is `+0.0` when `Qn = 0`):
//!
//! ```text
//! xs     = x / s                         one IEEE f32 division (never a reciprocal multiply)
//! c      = lo if xs < lo, hi if xs > hi, else xs        (clamp BEFORE round; keeps -0.0)
//! xbin   = roundTiesToEven(c)            = torch.round (half to even; -0.3 -> -0.0)
//! y      = xbin * s                      one f32 multiply (so y can be -0.0)
//! code   = xbin as i32                   (-0.0 -> 0)
//! inside = lo < xs && xs < hi            strict, in f32 (seed: abs(xs).lt(nlevel))
//! grad_x = inside ? grad_y : +0.0        (seed weight: grad_y, unconditionally)
//! term   = (inside ? roundTiesToEven(xs) - xs : xbin) * grad_y     f32 subtract, f32 multiply
//! grad_s = g * f32( sum_i f64(term_i) )  sequential f64 sum in index order, rounded once to f32;
//!                                        paper: then one f32 multiply by g (seed: g = 1, no multiply)
//! ```
//!
//! `grad_s` is the only value not bit-exact with PyTorch: torch sums float32
//! with a vectorised cascade whose order depends on the CPU; bitmac instead
//! accumulates the float32 terms in float64 in index order and rounds once,
//! which is deterministic on every machine and at least as accurate. The
//! reference tests accept, on `grad_s` only, 1e-6 relative or torch's own
//! float32 summation error bound (which is larger when the sum cancels).
//!
//! NaN: a NaN `x` has no integer code (torch would return NaN in `y`), so the
//! slice APIs reject it; ±inf `x` is well defined (it clamps to the range ends)
//! and accepted, as torch accepts it. NaN/inf in `grad_y` propagate exactly as
//! the f32 formulas above say.

use crate::error::{Error, Result};

/// Which tensor the quantizer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LsqKind {
    /// Activations (the seed's `LsqQuanAct`; the paper's unsigned range).
    Act,
    /// Weights (the seed's `LsqQuanWeight`; the paper's signed range).
    Weight,
}

/// Which definition of LSQ to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum LsqVariant {
    /// The seed's PyTorch code: one symmetric range `[-nlevel, nlevel]`,
    /// `nlevel = 2^(b-1)-1`, for both kinds; no gradient scale.
    #[default]
    Seed,
    /// Esser et al. (ICLR 2020): unsigned activations `[0, 2^b-1]`, signed
    /// weights `[-2^(b-1), 2^(b-1)-1]`, `grad_s` scaled by `1/sqrt(N*Qp)`.
    Paper,
}

impl LsqKind {
    /// The name used in JSON and on the command line (`act`, `weight`).
    pub fn name(self) -> &'static str {
        match self {
            LsqKind::Act => "act",
            LsqKind::Weight => "weight",
        }
    }

    /// Parse `act` / `weight`; the error names `field`.
    pub fn parse(field: &str, s: &str) -> Result<LsqKind> {
        match s {
            "act" => Ok(LsqKind::Act),
            "weight" => Ok(LsqKind::Weight),
            _ => Err(Error::field(field, format!("{s:?}"), "\"act\" or \"weight\"")),
        }
    }
}

impl LsqVariant {
    /// The name used in JSON and on the command line (`seed`, `paper`).
    pub fn name(self) -> &'static str {
        match self {
            LsqVariant::Seed => "seed",
            LsqVariant::Paper => "paper",
        }
    }

    /// Parse `seed` / `paper`; the error names `field`.
    pub fn parse(field: &str, s: &str) -> Result<LsqVariant> {
        match s {
            "seed" => Ok(LsqVariant::Seed),
            "paper" => Ok(LsqVariant::Paper),
            _ => Err(Error::field(field, format!("{s:?}"), "\"seed\" or \"paper\"")),
        }
    }
}

/// Smallest allowed bit width.
pub const NBIT_MIN: u32 = 2;
/// Largest allowed bit width.
pub const NBIT_MAX: u32 = 16;

/// A validated LSQ quantizer: kind, variant, bit width and step.
///
/// Invariants (checked by [`LsqConfig::new`]): `2 <= nbit <= 16`; `step` is
/// finite and `> 0` (subnormal steps are allowed); `max(Qn, Qp) * step` is
/// finite in f32, so every `y` is finite. Hence `lo`/`hi` are exact f32
/// integers with `|lo|, |hi| <= 65535 < 2^23`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LsqConfig {
    kind: LsqKind,
    variant: LsqVariant,
    nbit: u32,
    step: f32,
    /// Lowest code, `-Qn` (0 for paper activations).
    code_min: i32,
    /// Highest code, `Qp`.
    code_max: i32,
    /// `code_min as f32` (+0.0 when 0), the clamp's lower bound.
    lo: f32,
    /// `code_max as f32`, the clamp's upper bound.
    hi: f32,
}

/// Output of [`LsqConfig::forward`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LsqForward {
    /// Quantized values `y = xbin * s` (f32, may be -0.0).
    pub y: Vec<f32>,
    /// Integer codes, in `[code_min, code_max]`.
    pub code: Vec<i32>,
}

/// Output of [`LsqConfig::backward`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LsqBackward {
    /// Gradient with respect to `x` (bit-exact with the seed's PyTorch code).
    pub grad_x: Vec<f32>,
    /// Gradient with respect to the step (see the module docs for the sum).
    pub grad_s: f32,
}

impl LsqConfig {
    /// Validate and build a quantizer.
    ///
    /// Errors (one line each, naming the field and the allowed range):
    /// `nbit` outside 2..=16; `step` NaN, infinite, `<= 0`; `step` so large
    /// that the top level `max(Qn, Qp) * step` overflows f32.
    pub fn new(kind: LsqKind, variant: LsqVariant, nbit: u32, step: f32) -> Result<LsqConfig> {
        if !(NBIT_MIN..=NBIT_MAX).contains(&nbit) {
            return Err(Error::field("nbit", nbit, format!("{NBIT_MIN}..={NBIT_MAX}")));
        }
        let (code_min, code_max) = code_range(kind, variant, nbit);
        if !step_ok(code_min, code_max, step) {
            return Err(Error::field("step", fmt_f32(step), step_allowed(code_min, code_max)));
        }
        // `as f32` of an integer 0 is +0.0, which is torch's bound for
        // `clamp(-Qn, ...)` with Qn = 0 (a Python int): -0.3 clamps to +0.0.
        Ok(LsqConfig {
            kind,
            variant,
            nbit,
            step,
            code_min,
            code_max,
            lo: code_min as f32,
            hi: code_max as f32,
        })
    }

    /// Build from boundary values (JSON): `nbit` as any integer and `step`
    /// as an f64 rounded to the nearest f32 (as `torch.tensor(step,
    /// dtype=torch.float32)` does). Errors show the value as given, so a
    /// step of `1e39` (which would round to inf in f32) or `1e-50` (which
    /// would round to 0) is reported as such.
    pub fn from_boundary(kind: LsqKind, variant: LsqVariant, nbit: i64, step: f64) -> Result<LsqConfig> {
        let nbit = match u32::try_from(nbit) {
            Ok(n) if (NBIT_MIN..=NBIT_MAX).contains(&n) => n,
            _ => return Err(Error::field("nbit", nbit, format!("{NBIT_MIN}..={NBIT_MAX}"))),
        };
        let s32 = step as f32;
        let (lo, hi) = code_range(kind, variant, nbit);
        if !step_ok(lo, hi, s32) {
            return Err(Error::field("step", fmt_f64(step), step_allowed(lo, hi)));
        }
        LsqConfig::new(kind, variant, nbit, s32)
    }

    /// The tensor kind.
    pub fn kind(&self) -> LsqKind {
        self.kind
    }
    /// The variant.
    pub fn variant(&self) -> LsqVariant {
        self.variant
    }
    /// The bit width `b`.
    pub fn nbit(&self) -> u32 {
        self.nbit
    }
    /// The step `s`.
    pub fn step(&self) -> f32 {
        self.step
    }
    /// Lowest code, `-Qn` (seed: `-(2^(b-1)-1)`; paper act: 0; paper weight: `-2^(b-1)`).
    pub fn code_min(&self) -> i32 {
        self.code_min
    }
    /// Highest code, `Qp` (seed: `2^(b-1)-1`; paper act: `2^b-1`; paper weight: `2^(b-1)-1`).
    pub fn code_max(&self) -> i32 {
        self.code_max
    }
    /// `Qn` (a non-negative count of negative levels).
    pub fn qn(&self) -> u32 {
        self.code_min.unsigned_abs()
    }
    /// `Qp`.
    pub fn qp(&self) -> u32 {
        self.code_max as u32
    }

    /// `xbin = roundTiesToEven(clamp(x / s, lo, hi))` as an f32 (keeps -0.0).
    /// NaN `x` (outside the contract) gives `lo`, so codes always stay in
    /// range. This is the shared core of every kernel below.
    #[inline(always)]
    pub fn quantize_bin(&self, x: f32) -> f32 {
        let xs = x / self.step;
        round_ties_even_small(clamp_f32(xs, self.lo, self.hi))
    }

    /// The integer code of one element: `roundTiesToEven(clamp(x / s, lo, hi))`.
    /// Ties (x/s exactly k+0.5 in f32) go to the even integer. Precondition:
    /// `x` is not NaN (debug builds assert it; release builds treat NaN as
    /// below the range and give `code_min`; the slice APIs reject NaN with an
    /// error).
    #[inline(always)]
    pub fn quantize_code(&self, x: f32) -> i32 {
        debug_assert!(!x.is_nan(), "LSQ input is NaN");
        small_to_i32(self.quantize_bin(x))
    }

    /// One element's `(y, code)`, bit-exact with the seed's forward:
    /// `y = xbin * s` is one f32 multiply, so `y` is `-0.0` when `x/s` rounds
    /// to a negative zero (e.g. `x = -0.3*s`). Precondition: `x` is not NaN
    /// (as for [`LsqConfig::quantize_code`]; NaN gives `(code_min*s, code_min)`).
    #[inline(always)]
    pub fn quantize(&self, x: f32) -> (f32, i32) {
        debug_assert!(!x.is_nan(), "LSQ input is NaN");
        let b = self.quantize_bin(x);
        (b * self.step, small_to_i32(b))
    }

    /// `code as f32 * s`: one f32 multiply, exact when `code*s` is
    /// representable. Equals `quantize(x).0` except that it never yields -0.0.
    #[inline(always)]
    pub fn dequantize(&self, code: i32) -> f32 {
        code as f32 * self.step
    }

    /// Forward over a slice. Errors if any `x` is NaN (naming its index).
    pub fn forward(&self, x: &[f32]) -> Result<LsqForward> {
        let mut out = LsqForward { y: vec![0.0; x.len()], code: vec![0; x.len()] };
        self.forward_into(x, &mut out.y, &mut out.code)?;
        Ok(out)
    }

    /// Forward into caller buffers (no allocation). Errors if the lengths
    /// differ or any `x` is NaN; on error the buffers' contents are unspecified.
    pub fn forward_into(&self, x: &[f32], y: &mut [f32], code: &mut [i32]) -> Result<()> {
        if y.len() != x.len() || code.len() != x.len() {
            return Err(Error::input(format!(
                "lsq forward: output lengths y={} code={} do not match x length {}",
                y.len(),
                code.len(),
                x.len()
            )));
        }
        // One pass; NaN is detected alongside (branch-free, so the loop
        // vectorises) and reported after.
        let mut nan = false;
        for ((xi, yi), ci) in x.iter().zip(y.iter_mut()).zip(code.iter_mut()) {
            nan |= xi.is_nan();
            let b = self.quantize_bin(*xi);
            *yi = b * self.step;
            *ci = small_to_i32(b);
        }
        if nan {
            check_no_nan(x)?;
        }
        Ok(())
    }

    /// Backward: `grad_x` (bit-exact) and `grad_s`, with the paper's `N` =
    /// `x.len()` (all elements of the tensor given; for activations that is
    /// features times batch, as PyTorch ports use). Errors: length mismatch
    /// between `x` and `grad_y`, or a NaN `x`.
    pub fn backward(&self, x: &[f32], grad_y: &[f32]) -> Result<LsqBackward> {
        self.backward_with_count(x, grad_y, x.len())
    }

    /// Backward with an explicit `N` for the paper's gradient scale (e.g. the
    /// features of one sample, as in the paper's text, when `x` holds a
    /// batch). `n` is ignored by the seed variant. `n = 0` means no scaling
    /// (g = 1).
    pub fn backward_with_count(&self, x: &[f32], grad_y: &[f32], n: usize) -> Result<LsqBackward> {
        if x.len() != grad_y.len() {
            return Err(length_mismatch(x.len(), grad_y.len()));
        }
        check_no_nan(x)?;
        let mask = !(self.variant == LsqVariant::Seed && self.kind == LsqKind::Weight);
        let mut grad_x = vec![0.0f32; x.len()];
        let mut sum = 0.0f64;
        // Chunks: the element-wise part vectorises; the f64 sum stays
        // sequential in index order (its definition).
        const CHUNK: usize = 256;
        let mut terms = [0.0f32; CHUNK];
        for ((xc, gc), gxc) in x.chunks(CHUNK).zip(grad_y.chunks(CHUNK)).zip(grad_x.chunks_mut(CHUNK)) {
            for (((&xi, &gy), gx), t) in xc.iter().zip(gc).zip(gxc.iter_mut()).zip(terms.iter_mut()) {
                let xs = xi / self.step;
                let inside = self.lo < xs && xs < self.hi;
                let xbin = round_ties_even_small(clamp_f32(xs, self.lo, self.hi));
                *gx = if inside || !mask { gy } else { 0.0 };
                // Inside, |xs| < 65535 so the small-range rounding is exact and
                // round(xs) - xs is exact in f32 (Sterbenz); outside, xbin is lo or hi.
                // (Out of range, xs may be huge: its rounding is then unused.)
                *t = if inside { round_ties_even_small(xs) - xs } else { xbin } * gy;
            }
            for t in &terms[..xc.len()] {
                sum += f64::from(*t);
            }
        }
        let mut grad_s = sum as f32;
        if self.variant == LsqVariant::Paper {
            grad_s *= self.grad_scale(n);
        }
        Ok(LsqBackward { grad_x, grad_s })
    }

    /// The step-gradient scale `g`: 1 for the seed; for the paper
    /// `f32(1 / sqrt(n * Qp))`, computed in f64 (correctly rounded sqrt and
    /// division) and rounded once to f32. `n = 0` gives 1.
    pub fn grad_scale(&self, n: usize) -> f32 {
        match self.variant {
            LsqVariant::Seed => 1.0,
            LsqVariant::Paper if n == 0 => 1.0,
            LsqVariant::Paper => (1.0 / (n as f64 * f64::from(self.qp())).sqrt()) as f32,
        }
    }
}

/// The paper's step initialisation `s0 = 2 * mean(|v|) / sqrt(Qp)` for the
/// given kind, variant and width (the seed variant uses its `Qp = nlevel`).
///
/// Arithmetic: `mean = f32(sum_i f64(|v_i|) / n)` (f64 sum in index order,
/// then f64 division, rounded once), then `f32(2*mean) / f32(sqrt(Qp))` with
/// one f32 division, as torch's `2 * v.abs().mean() / math.sqrt(Qp)` does
/// (up to torch's float32 summation order in the mean).
///
/// Errors: empty `v`, NaN or infinite `v`, or an all-zero `v` (step 0), or a
/// step that [`LsqConfig::new`] rejects.
pub fn init_step(kind: LsqKind, variant: LsqVariant, nbit: u32, v: &[f32]) -> Result<f32> {
    if !(NBIT_MIN..=NBIT_MAX).contains(&nbit) {
        return Err(Error::field("nbit", nbit, format!("{NBIT_MIN}..={NBIT_MAX}")));
    }
    if v.is_empty() {
        return Err(Error::input("lsq init_step: v is empty (allowed: at least one element)"));
    }
    if let Some(i) = v.iter().position(|a| !a.is_finite()) {
        return Err(Error::field(format!("v[{i}]"), fmt_f32(v[i]), "finite f32"));
    }
    let (_, qp) = code_range(kind, variant, nbit);
    let sum: f64 = v.iter().map(|a| f64::from(a.abs())).sum();
    let mean = (sum / v.len() as f64) as f32;
    let s0 = (2.0 * mean) / (f64::from(qp).sqrt() as f32);
    LsqConfig::new(kind, variant, nbit, s0).map_err(|e| e.context("lsq init_step (2*mean|v|/sqrt(Qp))"))?;
    Ok(s0)
}

/// `(code_min, code_max) = (-Qn, Qp)` for a kind, variant and width.
pub fn code_range(kind: LsqKind, variant: LsqVariant, nbit: u32) -> (i32, i32) {
    let half = 1i32 << (nbit - 1);
    match (variant, kind) {
        (LsqVariant::Seed, _) => (-(half - 1), half - 1),
        (LsqVariant::Paper, LsqKind::Act) => (0, (1i32 << nbit) - 1),
        (LsqVariant::Paper, LsqKind::Weight) => (-half, half - 1),
    }
}

/// The step invariant: finite, `> 0`, and the top level finite in f32.
fn step_ok(code_min: i32, code_max: i32, step: f32) -> bool {
    let top = code_min.unsigned_abs().max(code_max.unsigned_abs()) as f32;
    step.is_finite() && step > 0.0 && (top * step).is_finite()
}

fn step_allowed(code_min: i32, code_max: i32) -> String {
    let top = code_min.unsigned_abs().max(code_max.unsigned_abs()) as f32;
    // Largest f32 step whose top level is finite (found by stepping from
    // f32::MAX / top, which may round either way).
    let mut max = f32::MAX / top;
    while !(max * top).is_finite() {
        max = f32::from_bits(max.to_bits() - 1);
    }
    while (f32::from_bits(max.to_bits() + 1) * top).is_finite() {
        max = f32::from_bits(max.to_bits() + 1);
    }
    format!("a finite f32 > 0 with {top}*step finite in f32, i.e. {:e}..={max:e}", f32::from_bits(1))
}

/// An f64 for an error message: plain for ordinary magnitudes, `1e39`
/// style otherwise (Rust's `{}` would print 1e39 with all 40 digits).
pub fn fmt_f64(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || (1e-4..1e16).contains(&a) || !a.is_finite() {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// The error for `grad_y` and `x` of different lengths.
pub fn length_mismatch(x_len: usize, grad_y_len: usize) -> Error {
    Error::input(format!(
        "grad_y: length {grad_y_len} does not match the length of x ({x_len}) (allowed: exactly {x_len} elements)"
    ))
}

/// An f32 for an error message: the shortest round-trip digits, in `1e35`
/// style for very large or small magnitudes.
pub fn fmt_f32(v: f32) -> String {
    let a = v.abs();
    if a == 0.0 || (1e-4..1e16).contains(&a) || !a.is_finite() {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

fn check_no_nan(x: &[f32]) -> Result<()> {
    match x.iter().position(|v| v.is_nan()) {
        Some(i) => Err(Error::field(format!("x[{i}]"), "NaN", "any f32 except NaN")),
        None => Ok(()),
    }
}

/// `lo if v < lo, hi if v > hi, else v` — torch's clamp on non-NaN input
/// (a -0.0 inside the range stays -0.0). NaN (never passed by the checked
/// APIs) maps to `lo`, so a kernel can never produce an out-of-range code.
#[inline(always)]
#[allow(clippy::neg_cmp_op_on_partial_ord)] // deliberate: NaN takes the first branch
fn clamp_f32(v: f32, lo: f32, hi: f32) -> f32 {
    if !(v >= lo) {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

/// `b as i32` for an integral f32 with `|b| <= 2^22` (the callers' `xbin`,
/// `|xbin| <= 65535`): `b + 1.5*2^23` is exact and lands where the f32
/// spacing is 1, so its low mantissa bits are `b` in two's complement. Plain
/// integer arithmetic, which vectorises (Rust's saturating `as` does not on
/// baseline x86-64). -0.0 gives 0; NaN gives an unspecified value.
#[inline(always)]
fn small_to_i32(b: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23, bits 0x4B40_0000
    ((b + MAGIC).to_bits() as i32).wrapping_sub(0x4B40_0000)
}

/// Round half to even for `|v| < 2^23` (and NaN), bit-identical to
/// [`f32::round_ties_even`] there, including the sign of zero.
///
/// `|v| + 2^23` lands in `[2^23, 2^24)` where the f32 spacing is 1, so the
/// IEEE addition (round-to-nearest-even) performs the rounding; subtracting
/// `2^23` is exact; `copysign` restores the sign (so -0.3 -> -0.0). Plain
/// SSE2 arithmetic, so loops vectorise (`roundeven` needs SSE4.1 or a libm
/// call on baseline x86-64). Callers guarantee `|v| <= 65535` (after clamp,
/// or inside the range).
#[inline(always)]
pub fn round_ties_even_small(v: f32) -> f32 {
    const MAGIC: f32 = 8_388_608.0; // 2^23
    ((v.abs() + MAGIC) - MAGIC).copysign(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(code_range(LsqKind::Act, LsqVariant::Seed, 2), (-1, 1));
        assert_eq!(code_range(LsqKind::Weight, LsqVariant::Seed, 16), (-32767, 32767));
        assert_eq!(code_range(LsqKind::Act, LsqVariant::Paper, 4), (0, 15));
        assert_eq!(code_range(LsqKind::Weight, LsqVariant::Paper, 4), (-8, 7));
        assert_eq!(code_range(LsqKind::Act, LsqVariant::Paper, 16), (0, 65535));
    }

    #[test]
    fn paper_act_lower_bound_is_positive_zero() {
        let c = LsqConfig::new(LsqKind::Act, LsqVariant::Paper, 4, 1.0).unwrap();
        assert_eq!(c.quantize(-0.3).0.to_bits(), 0.0f32.to_bits());
        assert_eq!(c.quantize(-0.0).0.to_bits(), (-0.0f32).to_bits());
        let s = LsqConfig::new(LsqKind::Act, LsqVariant::Seed, 4, 1.0).unwrap();
        assert_eq!(s.quantize(-0.3).0.to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn validation() {
        for nbit in [0, 1, 17, 64] {
            assert!(LsqConfig::new(LsqKind::Act, LsqVariant::Seed, nbit, 1.0).is_err());
        }
        for step in [0.0, -0.0, -1.0, f32::INFINITY, f32::NAN, f32::MAX] {
            assert!(LsqConfig::new(LsqKind::Act, LsqVariant::Seed, 8, step).is_err(), "{step}");
        }
        assert!(LsqConfig::new(LsqKind::Act, LsqVariant::Seed, 8, f32::from_bits(1)).is_ok());
        // The boundary of the overflow check is exact.
        let msg = LsqConfig::new(LsqKind::Weight, LsqVariant::Seed, 16, 1e36).unwrap_err().to_string();
        assert!(msg.starts_with("step: "), "{msg}");
    }

    #[test]
    fn small_to_i32_matches_as() {
        for k in -70000i32..=70000 {
            assert_eq!(small_to_i32(k as f32), k);
        }
        assert_eq!(small_to_i32(-0.0), 0);
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn nan_code_stays_in_range() {
        let c = LsqConfig::new(LsqKind::Weight, LsqVariant::Paper, 4, 0.5).unwrap();
        assert_eq!(c.quantize_code(f32::NAN), c.code_min());
        assert_eq!(c.quantize(f32::NAN), (c.code_min() as f32 * 0.5, c.code_min()));
    }
}
