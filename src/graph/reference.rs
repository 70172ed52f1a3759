//! The exact integer reference inference of a [`Graph`], written from
//! `docs/graph.md` and `docs/ppu.md` alone: direct convolution loops (no
//! im2col, no zero-point fold: `(a - z_in) * (w - z_w)` summed exactly),
//! big-integer requantization (the TFLite formulas evaluated on
//! `num_bigint::BigInt` from their definitions), and the PPU ops from their
//! formulas. It models an ideal datapath (no accumulator overflow, no
//! partial-sum rounding): the array engines must equal it whenever the
//! hardware's accumulator is wide enough and the psum path drops no bits.
//! Property tests hold both engines equal to it on random graphs.
//!
//! The multipliers (`M[o]`, the Add/Concat multipliers and the float32
//! scales) are numbers computed by one function each (`requant`,
//! `graph::run`); the reference reuses those numbers, not the arithmetic.

use super::*;
use crate::graph::run::{array_multiplier, array_scale_f32};
use crate::hw::HwConfig;
use crate::requant::{quantize_multiplier, Multiplier, RequantRounding};
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{Signed, ToPrimitive, Zero};

/// One node's reference values for one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct RefNode {
    /// Output codes (NCHW per sample).
    pub codes: Vec<i64>,
    /// Array nodes: the exact `S + B` per output element; empty otherwise.
    pub acc: Vec<i128>,
}

/// `round(x * m0 * 2^(shift-31))` by the TFLite scheme, on big integers:
/// - double: `h = SRDHM(x * 2^max(shift,0), m0)` = `(2*x'*m0 + 2^31) div
///   2^32` with the division truncating toward zero after a nudge of
///   `+2^30` (`x' m0 >= 0`) or `1 - 2^30` (negative) — i.e. the nearest
///   integer to `x' m0 / 2^31`, ties toward +inf; then
///   `RoundingDivideByPOT(h, max(-shift, 0))`: nearest, ties away from 0;
/// - single: `floor((x * m0 + 2^(t-1)) / 2^t)`, `t = 31 - shift`.
pub fn tflite_scale(x: i128, m: Multiplier, rounding: RequantRounding) -> i128 {
    let x = BigInt::from(x);
    let m0 = BigInt::from(m.m0);
    let out = match rounding {
        RequantRounding::Double => {
            let left = m.shift.max(0) as u32;
            let right = (-m.shift).max(0) as u32;
            let ab = (&x << left) * &m0;
            let two31 = BigInt::from(1u64 << 31);
            // Nearest integer to ab / 2^31, ties toward +inf: floor((ab + 2^30) / 2^31).
            let high = (&ab + BigInt::from(1u64 << 30)).div_floor(&two31);
            if right == 0 {
                high
            } else {
                let p = BigInt::from(1) << right;
                // Nearest to high / 2^right, ties away from zero.
                let (q, r) = high.abs().div_rem(&p);
                let twice = &r * 2;
                let q = if twice >= p { q + 1 } else { q };
                if high.is_negative() {
                    -q
                } else {
                    q
                }
            }
        }
        RequantRounding::Single => {
            let t = (31 - m.shift) as u32;
            (x * m0 + (BigInt::from(1) << (t - 1))).div_floor(&(BigInt::from(1) << t))
        }
    };
    out.to_i128().unwrap_or(if out.is_negative() { i128::MIN } else { i128::MAX })
}

/// `rne(f32(x) * s)` (MLAS order): int-to-float with ties to even, one f32
/// multiply, round half to even.
fn f32_scale(x: i128, s: f32) -> i128 {
    let v = (x as f32) * s;
    (v as f64).clamp(-1e30, 1e30).round_ties_even() as i128
}

fn rounding(mode: RequantMode, hw: &HwConfig) -> RequantRounding {
    match mode {
        RequantMode::Single => RequantRounding::Single,
        RequantMode::Double => RequantRounding::Double,
        _ => hw.requant().rounding,
    }
}

fn act_range(act: Activation, q: &Quant) -> (i64, i64) {
    match act {
        Activation::None => (q.min_code(), q.max_code()),
        Activation::Relu => (q.min_code().max(q.zero_point()), q.max_code()),
        Activation::Clamp { lo, hi } => (lo, hi),
    }
}

fn clampi(v: i128, lo: i64, hi: i64) -> i64 {
    v.clamp(lo as i128, hi as i128) as i64
}

/// Nearest to `s / n` (n >= 1) by `mode`, from the definition on rationals.
fn div_ref(s: i128, n: i128, mode: DivRounding) -> i128 {
    let (s, n) = (BigInt::from(s), BigInt::from(n));
    let fl = s.div_floor(&n);
    let frac2 = (&s - &fl * &n) * 2; // 2 * (s/n - floor) * n, in [0, 2n)
    let r = match mode {
        DivRounding::Floor => fl,
        DivRounding::HalfEven => {
            if frac2 > n || (frac2 == n && fl.is_odd()) {
                fl + 1
            } else {
                fl
            }
        }
        DivRounding::HalfAway => {
            if frac2 > n || (frac2 == n && s.is_positive()) {
                fl + 1
            } else {
                fl
            }
        }
    };
    r.to_i128().unwrap_or(0)
}

/// The exact inference of one sample (input codes of the graph input).
/// Returns every node's values, in node order.
pub fn reference(g: &Graph, hw: &HwConfig, input: &[i64]) -> Result<Vec<RefNode>> {
    let mut vals: Vec<Vec<i64>> = vec![Vec::new(); g.tensors().len()];
    vals[g.input().0] = input.to_vec();
    let mut out = Vec::new();
    for node in g.nodes() {
        let xi = g.tensor(node.inputs[0]);
        let yi = g.tensor(node.output);
        let x = &vals[node.inputs[0].0];
        let yq = &yi.quant;
        let r = match &node.op {
            Op::Conv2d(c) => {
                let [ch, h, w] = [xi.shape[0], xi.shape[1], xi.shape[2]];
                let [o, oh, ow] = [yi.shape[0], yi.shape[1], yi.shape[2]];
                let [kh, kw] = c.kernel();
                let cg = ch / c.groups;
                let og = o / c.groups;
                let zi = xi.quant.zero_point() as i128;
                let zw = c.weight.quant().zero_point() as i128;
                let mut acc = Vec::with_capacity(o * oh * ow);
                for oc in 0..o {
                    let grp = oc / og;
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut s = BigInt::zero();
                            for ci in 0..cg {
                                let cc = grp * cg + ci;
                                for ky in 0..kh {
                                    for kx in 0..kw {
                                        let iy =
                                            (oy * c.stride[0] + ky * c.dilation[0]) as i64 - c.pads[0] as i64;
                                        let ix =
                                            (ox * c.stride[1] + kx * c.dilation[1]) as i64 - c.pads[1] as i64;
                                        let a =
                                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                                x[(cc * h + iy as usize) * w + ix as usize] as i128
                                            } else {
                                                zi
                                            };
                                        let wv =
                                            c.weight.codes()[((oc * cg + ci) * kh + ky) * kw + kx] as i128;
                                        s += BigInt::from((a - zi) * (wv - zw));
                                    }
                                }
                            }
                            s += BigInt::from(c.bias.codes()[oc]);
                            acc.push(s.to_i128().unwrap_or(0));
                        }
                    }
                }
                let codes = requant_array(&acc, oh * ow, xi, &c.weight, yq, c.act, c.requant, hw)?;
                RefNode { codes, acc }
            }
            Op::Dense(d) => {
                let [k, n] = [d.weight.shape()[0], d.weight.shape()[1]];
                let zi = xi.quant.zero_point() as i128;
                let zw = d.weight.quant().zero_point() as i128;
                let acc: Vec<i128> = (0..n)
                    .map(|j| {
                        let mut s = BigInt::from(d.bias.codes()[j]);
                        for (kk, &a) in x.iter().enumerate().take(k) {
                            s += BigInt::from((a as i128 - zi) * (d.weight.codes()[kk * n + j] as i128 - zw));
                        }
                        s.to_i128().unwrap_or(0)
                    })
                    .collect();
                let codes = requant_array(&acc, 1, xi, &d.weight, yq, d.act, d.requant, hw)?;
                RefNode { codes, acc }
            }
            Op::Add { act, requant } => {
                let bi = g.tensor(node.inputs[1]);
                let b = &vals[node.inputs[1].0];
                let (za, zb) = (xi.quant.zero_point(), bi.quant.zero_point());
                let (sa, sb, so) = (xi.quant.scale().at(0), bi.quant.scale().at(0), yq.scale().at(0));
                let (lo, hi) = act_range(*act, yq);
                let codes = if *requant == RequantMode::Float32 {
                    x.iter()
                        .zip(b)
                        .map(|(&p, &q)| {
                            let v = ((p - za) as f32) * sa + ((q - zb) as f32) * sb;
                            let r = ((v / so) as f64).clamp(-1e30, 1e30).round_ties_even() as i128;
                            clampi(r + yq.zero_point() as i128, lo, hi)
                        })
                        .collect()
                } else {
                    let rd = rounding(*requant, hw);
                    let twice = 2.0 * (sa.max(sb) as f64);
                    let m1 = quantize_multiplier(sa as f64 / twice)?;
                    let m2 = quantize_multiplier(sb as f64 / twice)?;
                    let mo = quantize_multiplier(twice / ((1u64 << 20) as f64 * so as f64))?;
                    x.iter()
                        .zip(b)
                        .map(|(&p, &q)| {
                            let ya = tflite_scale(((p - za) as i128) * (1 << 20), m1, rd);
                            let yb = tflite_scale(((q - zb) as i128) * (1 << 20), m2, rd);
                            clampi(tflite_scale(ya + yb, mo, rd) + yq.zero_point() as i128, lo, hi)
                        })
                        .collect()
                };
                RefNode { codes, acc: vec![] }
            }
            Op::Concat { axis, requant } => {
                let outer: usize = xi.shape[..*axis].iter().product();
                let mut codes = Vec::with_capacity(yi.len());
                for o in 0..outer {
                    for t in &node.inputs {
                        let ti = g.tensor(*t);
                        let blk = ti.len() / outer;
                        for &v in &vals[t.0][o * blk..(o + 1) * blk] {
                            let q = &ti.quant;
                            let c = if q == yq {
                                v
                            } else if *requant == RequantMode::Float32 {
                                let f = ((v - q.zero_point()) as f32) * q.scale().at(0);
                                let r = ((f / yq.scale().at(0)) as f64).clamp(-1e30, 1e30).round_ties_even()
                                    as i128;
                                clampi(r + yq.zero_point() as i128, yq.min_code(), yq.max_code())
                            } else {
                                let m =
                                    quantize_multiplier(q.scale().at(0) as f64 / yq.scale().at(0) as f64)?;
                                let r = tflite_scale((v - q.zero_point()) as i128, m, rounding(*requant, hw));
                                clampi(r + yq.zero_point() as i128, yq.min_code(), yq.max_code())
                            };
                            codes.push(c);
                        }
                    }
                }
                RefNode { codes, acc: vec![] }
            }
            Op::MaxPool(win) => RefNode {
                codes: window_op(x, xi, yi, win, |v, _| *v.iter().max().unwrap_or(&0)),
                acc: vec![],
            },
            Op::AveragePool(p) => {
                let z = xi.quant.zero_point();
                let codes = window_op(x, xi, yi, &p.window, |v, total| {
                    let n = if p.count_include_pad { total } else { v.len() };
                    let s: i128 = v.iter().map(|&a| (a - z) as i128).sum();
                    clampi(div_ref(s, n as i128, p.rounding) + z as i128, yq.min_code(), yq.max_code())
                });
                RefNode { codes, acc: vec![] }
            }
            Op::GlobalAveragePool { rounding } => {
                let [c, h, w] = [xi.shape[0], xi.shape[1], xi.shape[2]];
                let z = xi.quant.zero_point();
                let codes = (0..c)
                    .map(|ch| {
                        let s: i128 = x[ch * h * w..(ch + 1) * h * w].iter().map(|&a| (a - z) as i128).sum();
                        clampi(
                            div_ref(s, (h * w) as i128, *rounding) + z as i128,
                            yq.min_code(),
                            yq.max_code(),
                        )
                    })
                    .collect();
                RefNode { codes, acc: vec![] }
            }
            Op::Relu => {
                RefNode { codes: x.iter().map(|&v| v.max(xi.quant.zero_point())).collect(), acc: vec![] }
            }
            Op::Clip { lo, hi } => {
                RefNode { codes: x.iter().map(|&v| v.clamp(*lo, *hi)).collect(), acc: vec![] }
            }
            Op::Flatten | Op::Reshape { .. } => RefNode { codes: x.clone(), acc: vec![] },
        };
        vals[node.output.0] = r.codes.clone();
        out.push(r);
    }
    Ok(out)
}

fn window_op(
    x: &[i64],
    xi: &TensorInfo,
    yi: &TensorInfo,
    win: &Window,
    f: impl Fn(&[i64], usize) -> i64,
) -> Vec<i64> {
    let [c, h, w] = [xi.shape[0], xi.shape[1], xi.shape[2]];
    let [oh, ow] = [yi.shape[1], yi.shape[2]];
    let mut out = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut v = Vec::new();
                for ky in 0..win.kernel[0] {
                    for kx in 0..win.kernel[1] {
                        let iy = (oy * win.stride[0] + ky * win.dilation[0]) as i64 - win.pads[0] as i64;
                        let ix = (ox * win.stride[1] + kx * win.dilation[1]) as i64 - win.pads[1] as i64;
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            v.push(x[(ch * h + iy as usize) * w + ix as usize]);
                        }
                    }
                }
                out.push(f(&v, win.kernel[0] * win.kernel[1]));
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn requant_array(
    acc: &[i128],
    px: usize,
    xi: &TensorInfo,
    w: &Weights,
    yq: &Quant,
    act: Activation,
    mode: RequantMode,
    hw: &HwConfig,
) -> Result<Vec<i64>> {
    if mode == RequantMode::Accumulator {
        return Ok(acc.iter().map(|&v| v as i64).collect());
    }
    let (lo, hi) = act_range(act, yq);
    let s_in = xi.quant.scale().at(0);
    let s_out = yq.scale().at(0);
    let mut out = Vec::with_capacity(acc.len());
    for (i, &v) in acc.iter().enumerate() {
        let o = i / px;
        let r = match mode {
            RequantMode::Float32 => f32_scale(v, array_scale_f32(s_in, w.quant().scale(), o, s_out)),
            m => tflite_scale(
                v,
                quantize_multiplier(array_multiplier(s_in, w.quant().scale(), o, s_out)?)?,
                rounding(m, hw),
            ),
        };
        out.push(clampi(r + yq.zero_point() as i128, lo, hi));
    }
    Ok(out)
}
