//! BatchNorm folding at load time (`docs/graph.md`, "BatchNorm folding").
//!
//! A BatchNorm after a conv, `y = gamma*(x - mean)/sqrt(var + eps) + beta`
//! per output channel, is folded into the conv's per-channel weight scale
//! and its bias, leaving the integer weight codes unchanged (so the fold
//! is exact on the array side):
//!
//! - `k[o] = f64(gamma[o]) / sqrt(f64(var[o]) + f64(eps))` (f64, `sqrt`
//!   correctly rounded);
//! - new weight scale `s_w'[o] = f32(f64(s_w[o]) * |k[o]|)` (one rounding to
//!   f32); when `k[o] < 0` the codes of channel `o` are negated (an error if
//!   a negated code leaves the weight range, e.g. `-2^(b-1)` not narrow);
//!   `k[o] == 0` is an error (the channel would be constant);
//! - real bias `b[o]` = the conv's float bias when known, else
//!   `codes[o] * s_in * s_w[o]` (f64); new real bias
//!   `b'[o] = (b[o] - mean[o]) * k[o] + beta[o]` (f64), rounded to f32, then
//!   to int32 accumulator units with [`Bias::from_float`] against the new
//!   scale.

use super::*;

/// BatchNormalization parameters, one value per channel (inference form).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub eps: f32,
}

/// Fold `bn` into `conv` (whose input scale is `s_in`); see the module doc.
pub fn fold_batchnorm(conv: &Conv2d, s_in: f32, bn: &BatchNorm) -> Result<Conv2d> {
    let o = conv.out_channels();
    for (name, v) in [("gamma", &bn.gamma), ("beta", &bn.beta), ("mean", &bn.mean), ("var", &bn.var)] {
        if v.len() != o {
            return Err(Error::field(format!("batchnorm.{name}"), format!("{} values", v.len()), o));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::field(format!("batchnorm.{name}[{i}]"), v[i], "finite"));
        }
    }
    if !(bn.eps.is_finite() && bn.eps >= 0.0) {
        return Err(Error::field("batchnorm.eps", bn.eps, "finite and >= 0"));
    }
    let wq = conv.weight.quant();
    let per = conv.weight.codes().len() / o;
    let mut codes = conv.weight.codes().to_vec();
    let mut scales = Vec::with_capacity(o);
    let mut bias_f = Vec::with_capacity(o);
    for c in 0..o {
        let den = bn.var[c] as f64 + bn.eps as f64;
        if den <= 0.0 {
            return Err(Error::field(format!("batchnorm.var[{c}] + eps"), den, "> 0"));
        }
        let k = bn.gamma[c] as f64 / den.sqrt();
        if k == 0.0 {
            return Err(Error::field(format!("batchnorm.gamma[{c}]"), bn.gamma[c], "non-zero"));
        }
        let s = (wq.scale().at(c) as f64 * k.abs()) as f32;
        if k < 0.0 {
            for (i, v) in codes[c * per..(c + 1) * per].iter_mut().enumerate() {
                let neg = -(*v as i64) + 2 * wq.zero_point();
                if !wq.contains(neg) {
                    return Err(Error::input(format!(
                        "batchnorm fold: channel {c} has a negative scale; its weight code {} (element {i}) has no negation in {}..={}",
                        v,
                        wq.min_code(),
                        wq.max_code()
                    )));
                }
                *v = neg as i32;
            }
        }
        let b = match conv.bias.float() {
            Some(f) => f[c] as f64,
            None => conv.bias.codes()[c] as f64 * s_in as f64 * wq.scale().at(c) as f64,
        };
        bias_f.push(((b - bn.mean[c] as f64) * k + bn.beta[c] as f64) as f32);
        scales.push(s);
    }
    let scale = Scale::Channel(scales);
    let quant = Quant::new(wq.bits(), wq.signed(), wq.narrow(), scale.clone(), wq.zero_point())?;
    let weight = Weights::with(conv.weight.shape().to_vec(), codes, quant)?;
    let bias = Bias::from_float(&bias_f, s_in, &scale)?;
    Ok(Conv2d { weight, bias, ..conv.clone() })
}
