//! `pe_column`: a weight-stationary PE column, the numerics of one array
//! column without folding.
//!
//! `A` is `M x K` (activations), `W` is `K x N` (weights). For every output
//! `(m, j)` the column starts from 0 and PE `k = 0, 1, ..., K-1` (in that
//! order) computes `acc = store(acc + A[m][k] * W[k][j])`: the product is
//! exact, the sum is exact, and `store` narrows into the accumulator
//! format with the overflow mode, at every adder (docs/numerics.md).
//!
//! Files: `a`, `w`, `acc` (M x N), `ovf` (M x N, u1: some adder of that
//! output overflowed), `acc.stream` and `stats.json`. The stream's cycle
//! numbers follow the reference RTL's timing (tests/rtl/pe_column.v): the
//! columns are processed one pass each; pass `j` starts at cycle
//! `j*(M+K)` with the weight load, `A[m][k]` enters PE `k` at cycle
//! `1+m+k` of the pass, and output `(m, j)` is registered out of PE `K-1`
//! at cycle `j*(M+K) + m + K`.

use super::super::case::{check_size, parse_format, parse_overflow};
use super::super::data::{rng, IntGen, IntGenSpec};
use super::super::files::{Artifact, Role, Stream, Tensor};
use super::KindOutput;
use crate::error::Result;
use crate::numerics::{IntFormat, Narrower};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Case JSON of kind `pe_column`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeColumnCase {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub seed: u64,
    /// Activation vectors (1..=4096).
    pub m: usize,
    /// PEs in the column = reduction length (1..=256).
    pub k: usize,
    /// Weight columns, processed one pass each (1..=256).
    pub n: usize,
    /// Activation format (2..=16 bits), e.g. `u4`, `i8`.
    pub a: String,
    /// Weight format (2..=16 bits).
    pub w: String,
    /// Accumulator format (2..=64 bits), e.g. `i12`.
    pub acc: String,
    /// Accumulator overflow mode.
    pub overflow: String,
    #[serde(default)]
    pub a_data: IntGenSpec,
    #[serde(default)]
    pub w_data: IntGenSpec,
}

const STREAM_A: u64 = 0;
const STREAM_W: u64 = 1;

pub(crate) fn generate(c: &PeColumnCase) -> Result<KindOutput> {
    check_size("m", c.m, 1, 4096)?;
    check_size("k", c.k, 1, 256)?;
    check_size("n", c.n, 1, 256)?;
    let fa = parse_format("a", &c.a, 2, 16)?;
    let fw = parse_format("w", &c.w, 2, 16)?;
    let facc = parse_format("acc", &c.acc, 2, 64)?;
    let ovf_mode = parse_overflow("overflow", &c.overflow)?;
    let (m, k, n) = (c.m, c.k, c.n);
    let a = IntGen::new(&c.a_data, fa, "a_data", m * k)?.draw(&mut rng(c.seed, STREAM_A), m * k);
    let w = IntGen::new(&c.w_data, fw, "w_data", k * n)?.draw(&mut rng(c.seed, STREAM_W), k * n);
    let nar = Narrower::new(facc, ovf_mode);

    let mut acc = vec![0i128; m * n];
    let mut ovf = vec![0i128; m * n];
    let (mut n_ovf_adds, mut n_ovf_out, mut max_abs) = (0u64, 0u64, 0i128);
    for mi in 0..m {
        for j in 0..n {
            let (mut s, mut exact, mut any) = (0i128, 0i128, false);
            for kk in 0..k {
                let p = a[mi * k + kk] * w[kk * n + j];
                let (v, o) = nar.add(s, p);
                s = v;
                any |= o;
                n_ovf_adds += u64::from(o);
                exact += p;
                max_abs = max_abs.max(exact.abs());
            }
            acc[mi * n + j] = s;
            ovf[mi * n + j] = i128::from(any);
            n_ovf_out += u64::from(any);
        }
    }
    let mut stream = Vec::with_capacity(m * n);
    for j in 0..n {
        for mi in 0..m {
            stream.push(((j * (m + k) + mi + k) as u64, acc[mi * n + j]));
        }
    }
    // Smallest signed width holding every exact prefix sum: no overflow.
    let mut min_width = 2u32;
    while min_width < 64 && max_abs > (1i128 << (min_width - 1)) - 1 {
        min_width += 1;
    }
    let mut out = KindOutput::default();
    let u1 = IntFormat::unsigned(1)?;
    out.artifacts.push(Artifact::Tensor(Tensor::int("a", Role::Input, &[m, k], fa, a)));
    out.artifacts.push(Artifact::Tensor(Tensor::int("w", Role::Weight, &[k, n], fw, w)));
    out.artifacts.push(Artifact::Tensor(Tensor::int("acc", Role::Accumulator, &[m, n], facc, acc)));
    out.artifacts.push(Artifact::Tensor(Tensor::int("ovf", Role::Flag, &[m, n], u1, ovf)));
    out.artifacts.push(Artifact::Stream(Stream {
        name: "acc".into(),
        role: Role::Accumulator,
        fmt: facc,
        entries: stream,
    }));
    out.stats.insert("overflowing_adds".into(), json!(n_ovf_adds));
    out.stats.insert("overflowing_outputs".into(), json!(n_ovf_out));
    out.stats.insert("max_abs_exact_prefix_sum".into(), json!(max_abs.to_string()));
    out.stats.insert("min_signed_acc_width_no_overflow".into(), json!(min_width));
    out.stats.insert("cycles".into(), json!(n * (m + k)));
    Ok(out)
}
