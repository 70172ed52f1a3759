//! Layers on the MAC array: GEMM, dense and conv2d (im2col), with an int32
//! bias added exactly before requantization (`docs/datapath.md`, "Output
//! stage"). This is the API the model runner, the vector generator and the
//! sweep engine call.
//!
//! The hardware config gives the array, the multiplier input formats and
//! the accumulator; the caller gives each layer's [`Requantizer`] (its
//! multiplier, scheme, output format and ReLU). Every operand value is
//! checked against the hardware's multiplier input format (one-line error
//! naming the operand, the element and the allowed range).

use crate::array::{run_array, run_array_chunked, ArrayConfig, Engine, Matrix, Stats};
use crate::error::{Error, Result};
use crate::hw::HwConfig;
use crate::requant::Requantizer;

/// The result of one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct GemmResult {
    /// Output rows M.
    pub m: usize,
    /// Output columns N.
    pub n: usize,
    /// Requantized output codes, row-major M x N.
    pub out: Vec<i64>,
    /// Final psum-buffer contents (P-bit stored values in units of 2^d),
    /// row-major M x N. The accumulator value is `acc * 2^d`.
    pub acc: Vec<i64>,
    /// d: LSBs dropped by the psum path.
    pub drop_bits: u32,
    /// The exact integer GEMM (no overflow, no rounding), row-major M x N.
    pub exact: Vec<i64>,
    /// Statistics (datapath and output stage).
    pub stats: Stats,
}

impl GemmResult {
    /// The accumulator value `acc * 2^d` of output `i` (before bias).
    pub fn acc_value(&self, i: usize) -> i128 {
        (self.acc[i] as i128) << self.drop_bits
    }
}

/// `A (M x K) x W (K x N)` on the array, then `out = requant(acc * 2^d +
/// bias[n])`. `bias` has one int32 per output column.
pub fn run_gemm(
    hw: &HwConfig,
    a: &Matrix,
    w: &Matrix,
    bias: Option<&[i32]>,
    requant: &Requantizer,
    engine: Engine,
) -> Result<GemmResult> {
    run_gemm_traced(hw, a, w, bias, requant, engine, None)
}

/// [`run_gemm`] with an optional per-cycle trace (cycle engine only).
pub fn run_gemm_traced(
    hw: &HwConfig,
    a: &Matrix,
    w: &Matrix,
    bias: Option<&[i32]>,
    requant: &Requantizer,
    engine: Engine,
    trace: Option<&mut String>,
) -> Result<GemmResult> {
    let cfg = ArrayConfig::from_hw(hw)?;
    check_bias(bias, w)?;
    let arr = run_array(&cfg, a, w, engine, trace)?;
    let d = cfg.drop_bits();
    let (m, n) = (arr.m, arr.n);
    let mut out = vec![0i64; m * n];
    let mut stats = arr.stats;
    let mut os = OutStage::new(requant, bias, n, d);
    os.apply(&arr.acc, &arr.exact, &mut out);
    os.finish(&mut stats);
    Ok(GemmResult { m, n, out, acc: arr.acc, drop_bits: d, exact: arr.exact, stats })
}

/// One chunk of rows delivered by [`run_gemm_chunked`] (row-major, `N`
/// columns): rows `row0..row0 + out.len() / N`.
pub struct GemmChunk<'a> {
    pub row0: usize,
    /// Requantized output codes.
    pub out: &'a [i64],
    /// Psum-buffer contents (units of 2^d).
    pub acc: &'a [i64],
    /// The exact GEMM.
    pub exact: &'a [i64],
}

/// [`run_gemm_traced`] delivering its results in row chunks of at most
/// `chunk_rows` rows (see [`crate::array::run_array_chunked`]), in row
/// order, so a large GEMM holds only one chunk of accumulators at a time.
/// Values and statistics are identical to [`run_gemm_traced`]'s for any
/// chunk size (the output stage runs over the outputs in the same
/// row-major order).
#[allow(clippy::too_many_arguments)]
pub fn run_gemm_chunked(
    hw: &HwConfig,
    a: &Matrix,
    w: &Matrix,
    bias: Option<&[i32]>,
    requant: &Requantizer,
    engine: Engine,
    trace: Option<&mut String>,
    chunk_rows: usize,
    mut sink: impl FnMut(GemmChunk) -> Result<()>,
) -> Result<Stats> {
    let cfg = ArrayConfig::from_hw(hw)?;
    check_bias(bias, w)?;
    let n = w.cols();
    let mut os = OutStage::new(requant, bias, n, cfg.drop_bits());
    let mut codes = Vec::new();
    // An engine that delivers more rows at once (the cycle engine: all of
    // them) still goes through the output stage `chunk_rows` rows at a time,
    // so the codes buffer stays one chunk.
    let step = chunk_rows.max(1).saturating_mul(n.max(1));
    let mut stats = run_array_chunked(&cfg, a, w, engine, trace, chunk_rows, |row0, acc, exact| {
        for (i, (acc, exact)) in acc.chunks(step).zip(exact.chunks(step)).enumerate() {
            // The output stage writes every code.
            codes.resize(acc.len(), 0);
            os.apply(acc, exact, &mut codes);
            sink(GemmChunk { row0: row0 + i * chunk_rows.max(1), out: &codes, acc, exact })?;
        }
        Ok(())
    })?;
    os.finish(&mut stats);
    Ok(stats)
}

fn check_bias(bias: Option<&[i32]>, w: &Matrix) -> Result<()> {
    if let Some(b) = bias {
        if b.len() != w.cols() {
            return Err(Error::input(format!(
                "bias has {} values but the layer has {} output channels (N)",
                b.len(),
                w.cols()
            )));
        }
    }
    Ok(())
}

/// The output stage (`docs/datapath.md`, "Output stage"): `out =
/// requant(acc * 2^d + bias[n])`, with the clamp count and the error
/// against the exact real requant `clamp(M_real * (exact + bias))` summed
/// in f64 in row-major output order (the order fixes the float sums).
struct OutStage<'a> {
    requant: &'a Requantizer,
    bias: Option<&'a [i32]>,
    n: usize,
    d: u32,
    lo: f64,
    hi: f64,
    rm: f64,
    /// The integer requant in `i64` ([`requant_i64`]): `m0`, the scheme, the
    /// left and right shifts, the clamp bounds, and the `|x|` below which it
    /// equals [`Requantizer::apply`].
    m0: i64,
    single: bool,
    left: u32,
    right: u32,
    t: u32,
    qlo: i64,
    qhi: i64,
    lim: u64,
    outputs: u64,
    clamped: u64,
    err_sum: f64,
    err_sq: f64,
    /// Per-output errors of the current row (summed in order afterwards).
    errs: Vec<f64>,
}

impl<'a> OutStage<'a> {
    fn new(requant: &'a Requantizer, bias: Option<&'a [i32]>, n: usize, d: u32) -> OutStage<'a> {
        let fmt = requant.out_format();
        let lo = if requant.relu() { fmt.min().max(0) } else { fmt.min() };
        let m = requant.multiplier();
        let single = requant.rounding() == crate::requant::RequantRounding::Single;
        let left = m.shift.max(0) as u32;
        OutStage {
            requant,
            bias,
            n,
            d,
            lo: lo as f64,
            hi: fmt.max() as f64,
            rm: requant.real_multiplier(),
            m0: m.m0 as i64,
            single,
            left,
            right: (-m.shift).max(0) as u32,
            t: (31 - m.shift) as u32,
            qlo: lo as i64,
            qhi: fmt.max() as i64,
            // Single: |x * m0| < 2^62; double: |(x << left) * m0| < 2^62.
            lim: if single { 1 << 31 } else { 1 << (31 - left) },
            outputs: 0,
            clamped: 0,
            err_sum: 0.0,
            err_sq: 0.0,
            errs: vec![0.0; n],
        }
    }

    /// [`Requantizer::apply`] for `|x| < self.lim`, in `i64` (the same
    /// formulas: every intermediate is below 2^63 in magnitude there, so
    /// `i128` is not needed; held equal by the unit test
    /// `requant_i64_matches_requantizer`). `SINGLE`: the scheme.
    #[inline(always)]
    fn requant_i64_m<const SINGLE: bool>(&self, x: i64) -> (i64, bool) {
        let y = if SINGLE {
            (x * self.m0 + (1i64 << (self.t - 1))) >> self.t
        } else {
            let ab = (x << self.left) * self.m0;
            let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
            let v = ab + nudge;
            // Truncating division by 2^31 (toward zero, as C++ `/`).
            let high = (v + ((v >> 63) & ((1i64 << 31) - 1))) >> 31;
            let mask = (1i64 << self.right) - 1;
            let remainder = high & mask;
            let threshold = (mask >> 1) + i64::from(high < 0);
            (high >> self.right) + i64::from(remainder > threshold)
        };
        let z = y.clamp(self.qlo, self.qhi);
        (z, z != y)
    }

    #[cfg(test)]
    fn requant_i64(&self, x: i64) -> (i64, bool) {
        if self.single {
            self.requant_i64_m::<true>(x)
        } else {
            self.requant_i64_m::<false>(x)
        }
    }

    /// Rows of `acc`/`exact` (whole rows, row-major) into `out`.
    fn apply(&mut self, acc: &[i64], exact: &[i64], out: &mut [i64]) {
        match (self.d == 0, self.single) {
            (true, true) => self.apply_m::<true, true>(acc, exact, out),
            (true, false) => self.apply_m::<true, false>(acc, exact, out),
            (false, true) => self.apply_m::<false, true>(acc, exact, out),
            (false, false) => self.apply_m::<false, false>(acc, exact, out),
        }
    }

    /// [`Self::apply`] with `d == 0` (`D0`) and the scheme fixed at compile time.
    #[inline(always)]
    fn apply_m<const D0: bool, const SINGLE: bool>(&mut self, acc: &[i64], exact: &[i64], out: &mut [i64]) {
        let (n, d, lim) = (self.n, self.d, self.lim);
        let (lo, hi, rm) = (self.lo, self.hi, self.rm);
        let (mut clamped, mut es, mut eq) = (0u64, self.err_sum, self.err_sq);
        let mut errs = std::mem::take(&mut self.errs);
        for ((row_a, row_e), row_o) in acc.chunks(n).zip(exact.chunks(n)).zip(out.chunks_mut(n)) {
            let len = row_a.len();
            let (row_e, row_o, errs) = (&row_e[..len], &mut row_o[..len], &mut errs[..len]);
            // Codes and errors first (no dependence between outputs) ...
            for j in 0..len {
                let b = self.bias.map_or(0, |b| b[j]);
                // acc * 2^d + bias, requantized in i64 where that is exact.
                let xi = if D0 { row_a[j].checked_add(b as i64) } else { None };
                let (code, c) = match xi {
                    Some(x) if x.unsigned_abs() < lim => self.requant_i64_m::<SINGLE>(x),
                    _ => {
                        let x = ((row_a[j] as i128) << d) + b as i128;
                        if x.unsigned_abs() < lim as u128 {
                            self.requant_i64_m::<SINGLE>(x as i64)
                        } else {
                            self.requant.apply(x)
                        }
                    }
                };
                row_o[j] = code;
                clamped += c as u64;
                // exact + bias as f64: through i64 when it fits (the same
                // round-to-nearest-even conversion as from i128, without the
                // software i128 -> f64 routine).
                let xf = match row_e[j].checked_add(b as i64) {
                    Some(v) => v as f64,
                    None => (row_e[j] as i128 + b as i128) as f64,
                };
                // `f64::clamp(lo, hi)` (lo <= hi, never NaN here), spelled out
                // so that its argument check is not repeated per output.
                let mut y = rm * xf;
                if y < lo {
                    y = lo;
                }
                if y > hi {
                    y = hi;
                }
                errs[j] = code as f64 - y;
            }
            // ... then the float sums, in row-major order.
            for &err in errs.iter() {
                es += err;
                eq += err * err;
            }
        }
        self.errs = errs;
        self.outputs += acc.len() as u64;
        self.clamped += clamped;
        self.err_sum = es;
        self.err_sq = eq;
    }

    fn finish(&self, stats: &mut Stats) {
        stats.out_clamped += self.clamped;
        stats.out_err_sum += self.err_sum;
        stats.out_err_sq += self.err_sq;
        stats.outputs = self.outputs;
    }
}

/// A dense (fully connected) layer: `x` is `batch x in_features`, `weight`
/// is `out_features x in_features` (PyTorch `Linear` layout); the GEMM is
/// `x * weight^T`. Output: `batch x out_features`.
pub fn dense(
    hw: &HwConfig,
    x: &Matrix,
    weight: &Matrix,
    bias: Option<&[i32]>,
    requant: &Requantizer,
    engine: Engine,
) -> Result<GemmResult> {
    if x.cols() != weight.cols() {
        return Err(Error::input(format!(
            "dense: input has {} features but the weight is {}x{} (out x in)",
            x.cols(),
            weight.rows(),
            weight.cols()
        )));
    }
    let (o, i) = (weight.rows(), weight.cols());
    let mut wt = vec![0i32; i * o];
    for r in 0..o {
        for c in 0..i {
            wt[c * o + r] = weight.get(r, c);
        }
    }
    run_gemm(hw, x, &Matrix::new(i, o, wt)?, bias, requant, engine)
}

/// Shape of a conv2d layer (no groups, no dilation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    /// Batch N, input channels C, height H, width W of the NCHW input.
    pub batch: usize,
    pub in_ch: usize,
    pub height: usize,
    pub width: usize,
    /// Output channels O and kernel KH x KW (OIHW weights).
    pub out_ch: usize,
    pub kh: usize,
    pub kw: usize,
    /// Stride (vertical, horizontal), >= 1.
    pub stride: (usize, usize),
    /// Zero padding (top/bottom, left/right).
    pub padding: (usize, usize),
}

impl Conv2d {
    /// Output height and width: `(H + 2*pad - KH) / stride + 1` (floor).
    pub fn out_hw(&self) -> Result<(usize, usize)> {
        if self.stride.0 == 0 || self.stride.1 == 0 {
            return Err(Error::field("conv2d stride", format!("{:?}", self.stride), ">= 1"));
        }
        let (ph, pw) = (self.height + 2 * self.padding.0, self.width + 2 * self.padding.1);
        if self.kh == 0 || self.kw == 0 || self.kh > ph || self.kw > pw {
            return Err(Error::input(format!(
                "conv2d: kernel {}x{} does not fit the padded input {ph}x{pw}",
                self.kh, self.kw
            )));
        }
        Ok(((ph - self.kh) / self.stride.0 + 1, (pw - self.kw) / self.stride.1 + 1))
    }
}

/// The result of a conv2d: the GEMM result (M = batch*OH*OW rows, N = O
/// columns) plus the NCHW output codes.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2dResult {
    /// `[batch, out_ch, OH, OW]`.
    pub shape: [usize; 4],
    /// Output codes, NCHW.
    pub out: Vec<i64>,
    /// The underlying GEMM (im2col order: row `(b*OH + oy)*OW + ox`).
    pub gemm: GemmResult,
}

/// The geometry of one conv lowered by im2col (`docs/graph.md` §5):
/// input `[C, H, W]` per sample, `O` output channels in `groups` groups,
/// output `[O, OH, OW]`, kernel `KH x KW`, stride `[sh, sw]`, pads `[top,
/// left, bottom, right]` and dilation `[dh, dw]`. `OH` and `OW` are given
/// (the caller's shape inference), not recomputed here.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvGeom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
    pub groups: usize,
}

/// The kernel taps `k0..k1` of one axis that land inside the input for
/// output position `o`: `0 <= o*s + k*d - p < len` (a contiguous range,
/// empty when `k0 == k1`).
fn taps(o: usize, s: usize, d: usize, p: usize, kn: usize, len: usize) -> (usize, usize) {
    let base = o * s; // the input index is base + k*d - p
    let k0 = if base >= p { 0 } else { (p - base).div_ceil(d) };
    let k1 = if len + p > base { (len + p - base).div_ceil(d).min(kn) } else { 0 };
    (k0.min(k1), k1)
}

/// THE im2col lowering (every conv in bitmac, graph nodes, synthetic conv
/// layers, vectors and sweeps, goes through it): group `group` of a conv on
/// `batch` NCHW samples `x` as the `M x K` matrix with `M = batch*OH*OW`
/// rows in `(b, oy, ox)` order and `K = (C/g)*KH*KW` columns in `(ci, ky,
/// kx)` row-major order (which fixes the order of the additions):
/// `A[(b,oy,ox)][(ci,ky,kx)] = code(x[b][G*C/g + ci][oy*sh + ky*dh -
/// pt][ox*sw + kx*dw - pl])`, and `pad` where that index lies outside the
/// input. `code` turns a stored value into the operand (the caller
/// guarantees it fits `i32`).
pub fn im2col_group<T: Copy>(
    g: &ConvGeom,
    x: &[T],
    batch: usize,
    group: usize,
    pad: i32,
    code: impl Fn(T) -> i32,
) -> Result<Matrix> {
    let cg = g.c / g.groups.max(1);
    let k = cg * g.kh * g.kw;
    let m = batch * g.oh * g.ow;
    let need = batch * g.c * g.h * g.w;
    if x.len() < need || group >= g.groups.max(1) {
        return Err(Error::internal(format!(
            "im2col: {} input values for {batch}x{}x{}x{} (group {group} of {})",
            x.len(),
            g.c,
            g.h,
            g.w,
            g.groups
        )));
    }
    let ky: Vec<(usize, usize)> =
        (0..g.oh).map(|oy| taps(oy, g.stride[0], g.dilation[0], g.pads[0], g.kh, g.h)).collect();
    let kx: Vec<(usize, usize)> =
        (0..g.ow).map(|ox| taps(ox, g.stride[1], g.dilation[1], g.pads[1], g.kw, g.w)).collect();
    let (dh, dw) = (g.dilation[0], g.dilation[1]);
    // Rows whose every tap lies inside the input (the interior) are a
    // gather at fixed offsets from the first tap's input index: `off[(ci,
    // ky, kx)] = ci*H*W + ky*dh*W + kx*dw`, in K order.
    let plane = g.h * g.w;
    let off: Vec<usize> = (0..cg)
        .flat_map(|ci| {
            (0..g.kh).flat_map(move |y| (0..g.kw).map(move |x| ci * plane + y * dh * g.w + x * dw))
        })
        .collect();
    // Each row is written once: the interior as a gather, a border row
    // filled with `pad` and then its in-input taps (no separate fill pass
    // over the whole matrix).
    let mut a: Vec<i32> = Vec::with_capacity(m * k);
    for row in 0..if k == 0 { 0 } else { m } {
        let b = row / (g.oh * g.ow);
        let (oy, ox) = ((row / g.ow) % g.oh, row % g.ow);
        let ((ky0, ky1), (kx0, kx1)) = (ky[oy], kx[ox]);
        if ky0 == 0 && ky1 == g.kh && kx0 == 0 && kx1 == g.kw {
            // Interior: tap (0, 0) is at (oy*sh - pt, ox*sw - pl) >= 0.
            let first = (b * g.c + group * cg) * plane
                + (oy * g.stride[0] - g.pads[0]) * g.w
                + (ox * g.stride[1] - g.pads[1]);
            let src = &x[first..];
            a.extend(off.iter().map(|&i| code(src[i])));
            continue;
        }
        let start = a.len();
        a.resize(start + k, pad);
        if kx0 == kx1 {
            continue; // every tap of this row lies in the padding
        }
        let dst = &mut a[start..start + k];
        // First input column read: ox*sw + kx0*dw - pl (>= 0 by `taps`).
        let ix0 = ox * g.stride[1] + kx0 * dw - g.pads[1];
        for ci in 0..cg {
            let plane = &x[(b * g.c + group * cg + ci) * g.h * g.w..][..g.h * g.w];
            for kyy in ky0..ky1 {
                let iy = oy * g.stride[0] + kyy * dh - g.pads[0];
                let src = &plane[iy * g.w..(iy + 1) * g.w];
                let d = &mut dst[(ci * g.kh + kyy) * g.kw..][kx0..kx1];
                if dw == 1 {
                    for (o, &v) in d.iter_mut().zip(&src[ix0..ix0 + (kx1 - kx0)]) {
                        *o = code(v);
                    }
                } else {
                    for (j, o) in d.iter_mut().enumerate() {
                        *o = code(src[ix0 + j * dw]);
                    }
                }
            }
        }
    }
    Matrix::new(m, k, a)
}

/// The im2col lowering of a conv2d: `A[(b,oy,ox)][(c,ky,kx)] =
/// x[b][c][oy*sh+ky-ph][ox*sw+kx-pw]` (0 in the padding) as an `M x K`
/// matrix with `M = batch*OH*OW` rows in `(b, oy, ox)` order (one group,
/// no dilation: [`im2col_group`]), and `W[(c,ky,kx)][o] =
/// weight[o][c][ky][kx]` as `K x O`. K runs over `(c, ky, kx)` in that
/// (row-major) order, which fixes the order of the additions. `x` is NCHW,
/// `weight` OIHW, both flat row-major.
pub fn im2col(shape: &Conv2d, x: &[i32], weight: &[i32]) -> Result<(Matrix, Matrix)> {
    let s = shape;
    let (oh, ow) = s.out_hw()?;
    let need_x = s.batch * s.in_ch * s.height * s.width;
    if x.len() != need_x {
        return Err(Error::input(format!(
            "conv2d input: {} values for NCHW {}x{}x{}x{} ({need_x})",
            x.len(),
            s.batch,
            s.in_ch,
            s.height,
            s.width
        )));
    }
    let k = s.in_ch * s.kh * s.kw;
    if weight.len() != s.out_ch * k {
        return Err(Error::input(format!(
            "conv2d weight: {} values for OIHW {}x{}x{}x{} ({})",
            weight.len(),
            s.out_ch,
            s.in_ch,
            s.kh,
            s.kw,
            s.out_ch * k
        )));
    }
    let geom = ConvGeom {
        c: s.in_ch,
        h: s.height,
        w: s.width,
        o: s.out_ch,
        oh,
        ow,
        kh: s.kh,
        kw: s.kw,
        stride: [s.stride.0, s.stride.1],
        pads: [s.padding.0, s.padding.1, s.padding.0, s.padding.1],
        dilation: [1, 1],
        groups: 1,
    };
    let am = im2col_group(&geom, x, s.batch, 0, 0, |v| v)?;
    let mut wm = vec![0i32; k * s.out_ch];
    for o in 0..s.out_ch {
        for kk in 0..k {
            wm[kk * s.out_ch + o] = weight[o * k + kk];
        }
    }
    Ok((am, Matrix::new(k, s.out_ch, wm)?))
}

/// A conv2d on the array: [`im2col`], then [`run_gemm`]; the outputs are
/// scattered back to NCHW.
pub fn conv2d(
    hw: &HwConfig,
    shape: &Conv2d,
    x: &[i32],
    weight: &[i32],
    bias: Option<&[i32]>,
    requant: &Requantizer,
    engine: Engine,
) -> Result<Conv2dResult> {
    let s = shape;
    let (oh, ow) = s.out_hw()?;
    let (am, wm) = im2col(s, x, weight)?;
    let gemm = run_gemm(hw, &am, &wm, bias, requant, engine)?;
    let mut out = vec![0i64; am.rows() * s.out_ch];
    for b in 0..s.batch {
        for o in 0..s.out_ch {
            for p in 0..oh * ow {
                out[(b * s.out_ch + o) * oh * ow + p] = gemm.out[(b * oh * ow + p) * s.out_ch + o];
            }
        }
    }
    Ok(Conv2dResult { shape: [s.batch, s.out_ch, oh, ow], out, gemm })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::IntFormat;
    use crate::requant::{Multiplier, RequantRounding};

    /// The `i64` requant of the output stage equals `Requantizer::apply` on
    /// its whole domain `|x| < lim`: every shift, both schemes, m0 at both
    /// ends and in between, x at and near the domain's ends, ReLU and not.
    #[test]
    fn requant_i64_matches_requantizer() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(14);
        let out = IntFormat::signed(8).unwrap();
        let wide = IntFormat::signed(32).unwrap();
        let mut checked = 0u64;
        for rounding in [RequantRounding::Double, RequantRounding::Single] {
            for shift in -31..=30 {
                for m0 in [1 << 30, (1 << 30) + 12345, i32::MAX - 1, i32::MAX] {
                    for (fmt, relu) in [(out, false), (out, true), (wide, false)] {
                        let mult = Multiplier { m0, shift };
                        let rq = Requantizer::new(mult, rounding, fmt, relu).unwrap();
                        let os = OutStage::new(&rq, None, 1, 0);
                        let lim = os.lim as i64;
                        let mut xs = vec![0, 1, -1, lim - 1, -(lim - 1), lim / 2, -lim / 2, lim / 3];
                        for _ in 0..64 {
                            xs.push(rng.gen_range(-(lim - 1)..lim));
                            xs.push(rng.gen_range(-1000i64..1000));
                        }
                        // The domain of the i64 path (the caller checks it).
                        for x in xs.into_iter().filter(|x| x.unsigned_abs() < os.lim) {
                            assert_eq!(os.requant_i64(x), rq.apply(x as i128), "{rounding:?} {mult:?} x={x}");
                            checked += 1;
                        }
                    }
                }
            }
        }
        // The underflowed multiplier (m0 = 0, shift = 0).
        let rq =
            Requantizer::new(Multiplier { m0: 0, shift: 0 }, RequantRounding::Double, out, false).unwrap();
        let os = OutStage::new(&rq, None, 1, 0);
        for x in [0i64, 5, -5, (1 << 31) - 1] {
            assert_eq!(os.requant_i64(x), rq.apply(x as i128));
        }
        assert!(checked > 10_000);
    }

    /// `im2col_group` (interior gather and border paths) equals its
    /// definition element by element, on random geometries: strides,
    /// asymmetric pads, dilations, groups, batches, kernels larger than the
    /// input.
    #[test]
    fn im2col_group_matches_its_definition() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1414);
        for case in 0..300 {
            let groups = rng.gen_range(1..=3);
            let c = groups * rng.gen_range(1..=3);
            let (h, w) = (rng.gen_range(1..=9), rng.gen_range(1..=9));
            let (kh, kw) = (rng.gen_range(1..=4), rng.gen_range(1..=4));
            let stride = [rng.gen_range(1..=3), rng.gen_range(1..=3)];
            let dilation = [rng.gen_range(1..=2), rng.gen_range(1..=2)];
            let pads =
                [rng.gen_range(0..=2), rng.gen_range(0..=2), rng.gen_range(0..=2), rng.gen_range(0..=2)];
            let span = |n: usize, k: usize, d: usize, p0: usize, p1: usize| {
                (n + p0 + p1).checked_sub((k - 1) * d + 1)
            };
            let (Some(sy), Some(sx)) =
                (span(h, kh, dilation[0], pads[0], pads[2]), span(w, kw, dilation[1], pads[1], pads[3]))
            else {
                continue;
            };
            let (oh, ow) = (sy / stride[0] + 1, sx / stride[1] + 1);
            let batch = rng.gen_range(1..=2);
            let g = ConvGeom { c, h, w, o: groups, oh, ow, kh, kw, stride, pads, dilation, groups };
            let x: Vec<i64> = (0..batch * c * h * w).map(|_| rng.gen_range(-128..128)).collect();
            let cg = c / groups;
            for gi in 0..groups {
                let a = im2col_group(&g, &x, batch, gi, -7, |v| v as i32).unwrap();
                assert_eq!((a.rows(), a.cols()), (batch * oh * ow, cg * kh * kw));
                for b in 0..batch {
                    for (oy, ox) in (0..oh).flat_map(|y| (0..ow).map(move |x| (y, x))) {
                        for (ci, ky, kx) in
                            (0..cg).flat_map(|ci| (0..kh).flat_map(move |y| (0..kw).map(move |x| (ci, y, x))))
                        {
                            let iy = (oy * stride[0] + ky * dilation[0]) as isize - pads[0] as isize;
                            let ix = (ox * stride[1] + kx * dilation[1]) as isize - pads[1] as isize;
                            let want = if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                -7
                            } else {
                                x[((b * c + gi * cg + ci) * h + iy as usize) * w + ix as usize] as i32
                            };
                            let (r, col) = ((b * oh + oy) * ow + ox, (ci * kh + ky) * kw + kx);
                            assert_eq!(a.get(r, col), want, "case {case} group {gi} row {r} col {col}");
                        }
                    }
                }
            }
        }
    }
}
