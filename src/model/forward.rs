//! The integer reference inference: exact i64 accumulation and a float64
//! round-half-even requantization. It matches `models/export.py`'s
//! `integer_forward` bit for bit (the `integer` section of a `*.ref.json`).
//! It is a reference for the datapath, not the datapath: the hardware's
//! fixed-point requant is defined by the datapath docs and can differ from
//! this one near rounding ties.

use super::{Layer, Model};
use crate::error::{Error, Result};

/// One layer's results in the reference inference.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTrace {
    /// Accumulators including the bias, in the output layout (NCHW for
    /// conv2d, `[out]` for dense). Exact (|acc| < 2^53 by validation).
    pub acc: Vec<i64>,
    /// Output codes of a hidden layer (the next layer's input codes);
    /// `None` for the last layer, whose `acc` are the logits.
    pub codes: Option<Vec<i32>>,
}

/// The reference requant of one accumulator:
/// `clamp(round_half_even(f64(acc) * m), lo, hi)`. `f64(acc)` is exact
/// (|acc| < 2^53); the product rounds to nearest even; the clamp happens
/// after rounding, in f64, and the result is exact in i32.
pub fn reference_requant(acc: i64, m: f64, lo: i64, hi: i64) -> i32 {
    ((acc as f64) * m).round_ties_even().clamp(lo as f64, hi as f64) as i32
}

/// Exact accumulators `sum(w*a) + bias` of one layer (output layout NCHW or
/// `[out]`), computed directly from the definition (no im2col), so it can
/// check a lowered GEMM.
pub fn layer_accumulators(layer: &Layer, input: &[i32]) -> Vec<i64> {
    let w = layer.weight().codes();
    let bias = layer.bias();
    match layer {
        Layer::Conv2d(c) => {
            let [ci, h, wd] = c.input_shape();
            let [o, oh, ow] = c.output_shape();
            let [kh, kw] = c.kernel();
            let [sh, sw] = c.stride();
            let [ph, pw] = c.padding();
            let mut out = vec![0i64; o * oh * ow];
            for oc in 0..o {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = bias[oc] as i64;
                        for ic in 0..ci {
                            for ky in 0..kh {
                                // Input row oy*sh + ky - ph; outside [0, h) is zero padding.
                                let iy = (oy * sh + ky) as isize - ph as isize;
                                if iy < 0 || iy >= h as isize {
                                    continue;
                                }
                                for kx in 0..kw {
                                    let ix = (ox * sw + kx) as isize - pw as isize;
                                    if ix < 0 || ix >= wd as isize {
                                        continue;
                                    }
                                    let a = input[(ic * h + iy as usize) * wd + ix as usize] as i64;
                                    let wv = w[((oc * ci + ic) * kh + ky) * kw + kx] as i64;
                                    acc += wv * a;
                                }
                            }
                        }
                        out[(oc * oh + oy) * ow + ox] = acc;
                    }
                }
            }
            out
        }
        Layer::Dense(d) => {
            let k = d.in_features();
            (0..d.out_features())
                .map(|o| {
                    let row = &w[o * k..(o + 1) * k];
                    bias[o] as i64 + row.iter().zip(input).map(|(&wv, &a)| wv as i64 * a as i64).sum::<i64>()
                })
                .collect()
        }
    }
}

/// Run the reference inference on one sample's input codes (the first
/// layer's input codes, e.g. from [`Model::input_codes`]) and return every
/// layer's accumulators and output codes.
///
/// Semantics (docs/model-format.md): for each layer,
/// `acc = sum(w*a) + bias` exactly; a hidden layer outputs
/// `clamp(round_half_even(f64(acc) * M), lo, hi)` with `M` from
/// [`Model::reference_multiplier`] and `(lo, hi)` from [`Model::output_range`];
/// the last layer's `acc` are the logits.
pub fn reference_trace(model: &Model, input_codes: &[i32]) -> Result<Vec<LayerTrace>> {
    if input_codes.len() != model.input().len() {
        return Err(Error::field("input codes length", input_codes.len(), model.input().len()));
    }
    let q0 = model.layers()[0].input_quant();
    if let Some((j, c)) = input_codes
        .iter()
        .enumerate()
        .find(|(_, &c)| (c as i64) < q0.min_code() || (c as i64) > q0.max_code())
    {
        return Err(Error::field(
            format!("input code [{j}]"),
            c,
            format!("{}..={}", q0.min_code(), q0.max_code()),
        ));
    }
    let mut trace = Vec::with_capacity(model.layers().len());
    let mut a: Vec<i32> = input_codes.to_vec();
    for (l, layer) in model.layers().iter().enumerate() {
        let acc = layer_accumulators(layer, &a);
        match (model.reference_multiplier(l), model.output_range(l)) {
            (Some(m), Some((lo, hi))) => {
                let codes: Vec<i32> = acc.iter().map(|&x| reference_requant(x, m, lo, hi)).collect();
                a.clone_from(&codes);
                trace.push(LayerTrace { acc, codes: Some(codes) });
            }
            _ => trace.push(LayerTrace { acc, codes: None }),
        }
    }
    Ok(trace)
}

/// The reference logits (the last layer's accumulators) for one sample.
/// The predicted class is the index of the largest logit, the lowest index
/// winning ties (see [`argmax`]).
pub fn reference_forward(model: &Model, input_codes: &[i32]) -> Result<Vec<i64>> {
    let mut trace = reference_trace(model, input_codes)?;
    Ok(trace.pop().map(|t| t.acc).unwrap_or_default())
}

/// Index of the largest value; the lowest index wins ties (numpy's and
/// PyTorch's argmax rule for finite values; a NaN never wins here). `None`
/// for an empty slice.
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &x) in v.iter().enumerate() {
        let better = match best {
            None => true,
            Some(b) => x > v[b],
        };
        if better {
            best = Some(i);
        }
    }
    best
}

impl Layer {
    /// Lower one sample's input (in the layer's input layout) to the GEMM
    /// left operand `A` of [`Layer::gemm_dims`]: `M` rows of `K` codes,
    /// row-major. For conv2d, row `p = oy*OW + ox` holds the receptive
    /// field in `(c, ky, kx)` order (index `(c*KH + ky)*KW + kx`, matching
    /// the OIHW weight rows), zero where it falls in the padding. For dense,
    /// the single row is the (flattened) input. Then
    /// `acc[o][p] = bias[o] + sum_k A[p][k] * W[o][k]`, stored at NCHW index
    /// `o*M + p`.
    pub fn im2col(&self, input: &[i32]) -> Vec<i32> {
        match self {
            Layer::Dense(_) => input.to_vec(),
            Layer::Conv2d(c) => {
                let [ci, h, wd] = c.input_shape();
                let [_, oh, ow] = c.output_shape();
                let [kh, kw] = c.kernel();
                let [sh, sw] = c.stride();
                let [ph, pw] = c.padding();
                let k = ci * kh * kw;
                let mut a = vec![0i32; oh * ow * k];
                for oy in 0..oh {
                    for ox in 0..ow {
                        let row = &mut a[(oy * ow + ox) * k..(oy * ow + ox + 1) * k];
                        for ic in 0..ci {
                            for ky in 0..kh {
                                let iy = (oy * sh + ky) as isize - ph as isize;
                                for kx in 0..kw {
                                    let ix = (ox * sw + kx) as isize - pw as isize;
                                    if iy >= 0 && iy < h as isize && ix >= 0 && ix < wd as isize {
                                        row[(ic * kh + ky) * kw + kx] =
                                            input[(ic * h + iy as usize) * wd + ix as usize];
                                    }
                                }
                            }
                        }
                    }
                }
                a
            }
        }
    }
}
