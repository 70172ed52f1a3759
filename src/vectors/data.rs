//! Seeded data generators for vector cases.
//!
//! Every draw is specified exactly (docs/vectors.md, "Data generators") so
//! that the data does not depend on the `rand` crate's distribution code,
//! the platform, or the thread count: only raw outputs of
//! `ChaCha8Rng::seed_from_u64(seed)` on stream `stream` (`set_stream`) are
//! used, with integer rejection sampling and exact f32 arithmetic.

use crate::error::{Error, Result};
use crate::numerics::IntFormat;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The shape of the integer distribution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dist {
    /// Uniform over `[min, max]`.
    #[default]
    Uniform,
    /// `min + floor((u1+u2+u3+u4)/4)` with `ui` uniform over `[0, max-min]`:
    /// bell-shaped around the middle of the range.
    Centered,
}

/// An integer data generator (case JSON `data`, `a_data`, `w_data`, ...).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntGenSpec {
    /// Distribution; default `uniform`.
    #[serde(default)]
    pub dist: Dist,
    /// Smallest value drawn; default: the format's minimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// Largest value drawn; default: the format's maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// Fraction (0..=1) of elements replaced by an edge value.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub edges: f64,
    /// Edge values; default: format min, max, 0, -1, 1, min+1, max-1 (those
    /// in the format, first occurrence kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_values: Option<Vec<i64>>,
    /// Explicit values (row-major); when given, nothing is drawn and the
    /// length must equal the tensor's element count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<i64>>,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// A validated integer generator for one format.
#[derive(Clone, Debug)]
pub struct IntGen {
    dist: Dist,
    lo: i128,
    hi: i128,
    edges: f64,
    edge_values: Vec<i128>,
    values: Option<Vec<i128>>,
}

/// Seeded source: the case seed on a per-tensor stream.
pub fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// Uniform integer in `[0, span)` (`1 <= span <= 2^64`) by rejection:
/// draw `u = next_u64()` until `u < zone`, where `zone` is the largest
/// multiple of `span` not above 2^64; return `u mod span`.
pub fn uniform_below(r: &mut ChaCha8Rng, span: u128) -> u128 {
    debug_assert!((1..=1u128 << 64).contains(&span));
    if span == 1u128 << 64 {
        return r.next_u64() as u128;
    }
    let zone = ((1u128 << 64) / span) * span;
    loop {
        let u = r.next_u64() as u128;
        if u < zone {
            return u % span;
        }
    }
}

/// A fraction test: `true` with probability `p`: `(next_u64() >> 11) *
/// 2^-53 < p` (exact in f64).
pub fn chance(r: &mut ChaCha8Rng, p: f64) -> bool {
    ((r.next_u64() >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < p
}

/// Uniform f32 in `[min, max]`: `u = (next_u32() >> 8) * 2^-24` (exact),
/// then `min + u * (max - min)` in f32 (two roundings, IEEE nearest-even).
pub fn uniform_f32(r: &mut ChaCha8Rng, min: f32, max: f32) -> f32 {
    let u = ((r.next_u32() >> 8) as f32) * (1.0 / (1u32 << 24) as f32);
    min + u * (max - min)
}

impl IntGen {
    /// Validate `spec` for `fmt`; `field` names the spec in errors
    /// (e.g. `a_data`). `count` is the element count (for `values`).
    pub fn new(spec: &IntGenSpec, fmt: IntFormat, field: &str, count: usize) -> Result<IntGen> {
        let (fmin, fmax) = (fmt.min(), fmt.max());
        let range = format!("{}..={} ({fmt})", fmin, fmax);
        let lo = spec.min.map(i128::from).unwrap_or(fmin);
        let hi = spec.max.map(i128::from).unwrap_or(fmax);
        if !(fmin..=fmax).contains(&lo) {
            return Err(Error::field(format!("{field}.min"), lo, &range));
        }
        if !(fmin..=fmax).contains(&hi) {
            return Err(Error::field(format!("{field}.max"), hi, &range));
        }
        if lo > hi {
            return Err(Error::field(format!("{field}.max"), hi, format!("{lo}..={fmax} (>= min)")));
        }
        if !(0.0..=1.0).contains(&spec.edges) {
            return Err(Error::field(format!("{field}.edges"), spec.edges, "0..=1 (a fraction)"));
        }
        let edge_values: Vec<i128> = match &spec.edge_values {
            Some(v) => {
                if v.is_empty() {
                    return Err(Error::input(format!(
                        "{field}.edge_values: empty (give at least one value)"
                    )));
                }
                let mut out = Vec::with_capacity(v.len());
                for (i, &x) in v.iter().enumerate() {
                    let x = i128::from(x);
                    if !fmt.contains(x) {
                        return Err(Error::field(format!("{field}.edge_values[{i}]"), x, &range));
                    }
                    out.push(x);
                }
                out
            }
            None => {
                let mut out: Vec<i128> = Vec::new();
                for x in [fmin, fmax, 0, -1, 1, fmin + 1, fmax - 1] {
                    if fmt.contains(x) && !out.contains(&x) {
                        out.push(x);
                    }
                }
                out
            }
        };
        let values = match &spec.values {
            None => None,
            Some(v) => {
                if v.len() != count {
                    return Err(Error::field(
                        format!("{field}.values"),
                        format!("{} values", v.len()),
                        format!("exactly {count} (the tensor's element count)"),
                    ));
                }
                let mut out = Vec::with_capacity(v.len());
                for (i, &x) in v.iter().enumerate() {
                    let x = i128::from(x);
                    if !fmt.contains(x) {
                        return Err(Error::field(format!("{field}.values[{i}]"), x, &range));
                    }
                    out.push(x);
                }
                Some(out)
            }
        };
        Ok(IntGen { dist: spec.dist, lo, hi, edges: spec.edges, edge_values, values })
    }

    /// Draw `count` values from `r`. Per element, in order: if `edges > 0`,
    /// one [`chance`] draw; on success one [`uniform_below`] draw picks an
    /// edge value; otherwise the distribution's draws (uniform: one;
    /// centered: four).
    pub fn draw(&self, r: &mut ChaCha8Rng, count: usize) -> Vec<i128> {
        if let Some(v) = &self.values {
            return v.clone();
        }
        let span = (self.hi - self.lo + 1) as u128;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            if self.edges > 0.0 && chance(r, self.edges) {
                let i = uniform_below(r, self.edge_values.len() as u128) as usize;
                out.push(self.edge_values[i]);
                continue;
            }
            let v = match self.dist {
                Dist::Uniform => self.lo + uniform_below(r, span) as i128,
                Dist::Centered => {
                    let s: u128 = (0..4).map(|_| uniform_below(r, span)).sum();
                    self.lo + (s / 4) as i128
                }
            };
            out.push(v);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_range_and_hit_edges() {
        let f = IntFormat::signed(4).unwrap();
        let spec = IntGenSpec { edges: 0.5, ..Default::default() };
        let g = IntGen::new(&spec, f, "data", 0).unwrap();
        let v = g.draw(&mut rng(1, 0), 2000);
        assert!(v.iter().all(|&x| (-8..=7).contains(&x)));
        assert!(v.contains(&-8) && v.contains(&7));
        let c = IntGen::new(&IntGenSpec { dist: Dist::Centered, ..Default::default() }, f, "d", 0).unwrap();
        let v = c.draw(&mut rng(1, 0), 4000);
        let mid = v.iter().filter(|&&x| (-3..=2).contains(&x)).count();
        assert!(mid > 2800, "centered should concentrate: {mid}");
    }

    #[test]
    fn streams_are_independent_and_reproducible() {
        let f = IntFormat::signed(16).unwrap();
        let g = IntGen::new(&IntGenSpec::default(), f, "d", 0).unwrap();
        assert_eq!(g.draw(&mut rng(5, 1), 64), g.draw(&mut rng(5, 1), 64));
        assert_ne!(g.draw(&mut rng(5, 1), 64), g.draw(&mut rng(5, 2), 64));
    }

    #[test]
    fn bad_specs_name_the_field() {
        let f = IntFormat::signed(8).unwrap();
        let e =
            IntGen::new(&IntGenSpec { min: Some(-200), ..Default::default() }, f, "a_data", 0).unwrap_err();
        assert!(e.to_string().starts_with("a_data.min: -200"), "{e}");
        let e = IntGen::new(&IntGenSpec { values: Some(vec![1, 2]), ..Default::default() }, f, "w", 3)
            .unwrap_err();
        assert!(e.to_string().contains("w.values"), "{e}");
    }
}
