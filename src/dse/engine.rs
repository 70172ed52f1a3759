//! The DSE reference engine: a functional model of a folded GEMM on the MAC
//! array with a finite accumulator and partial-sum rounding, plus the timing,
//! FIFO and area proxies a sweep reports. The semantics are stated in
//! `docs/dse.md` ("Evaluation semantics"); in short:
//!
//! - `out[m][n] = sum_k a[m][k] * w[n][k]`, the reduction split into folds of
//!   `rows` consecutive `k` (ws, is) or one fold of all `K` (os).
//! - Within a fold, products are added in ascending `k` into the accumulator
//!   (signed, `acc.width` bits); the overflow mode is applied after every
//!   adder. The first fold starts from 0, a later fold from `psum << k`.
//! - At the end of every fold but the last, the accumulator is rounded by
//!   dropping `k = psum.dropped_bits` bits with `psum.round` and
//!   `psum.offset` ([`Rounder`]) and stored in the psum buffer (signed,
//!   `acc.width - k` bits, same overflow mode).
//! - After the last fold, an optional bias is added (one more adder).
//!
//! Products of `bits <= 16` operands always fit the multiplier. A fast path
//! skips the per-adder checks when `|start| + sum |w| * max |a|` over the
//! fold fits the accumulator (then no prefix can overflow).

use super::hw::{Dataflow, Hw};
use crate::numerics::Position;

/// Counters collected while running GEMMs (summed over layers and samples).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// Adder or psum-buffer stores whose value differed from the exact one.
    pub overflows: u64,
    /// Partial-sum roundings performed (one per output per fold boundary).
    pub roundings: u64,
    /// Roundings whose residue was exactly on the centre `2^(k-1) + c`.
    pub ties: u64,
    /// Sum of `(rounded * 2^k - x)` over all roundings, in input LSBs.
    pub round_err_sum: i128,
    /// Multiply-accumulates performed.
    pub macs: u64,
}

impl Counters {
    /// Add another set of counters.
    pub fn add(&mut self, o: &Counters) {
        self.overflows += o.overflows;
        self.roundings += o.roundings;
        self.ties += o.ties;
        self.round_err_sum += o.round_err_sum;
        self.macs += o.macs;
    }
}

/// Run `out = a * w^T (+ bias)` through the array numerics.
///
/// `a` is `m x kd` row-major (activation codes), `w` is `n x kd` row-major
/// (one row of weight codes per output), `bias` has `n` entries. Returns the
/// `m x n` accumulator values (each fits `acc.width <= 64` bits).
pub fn gemm(
    hw: &Hw,
    a: &[i32],
    m: usize,
    kd: usize,
    w: &[i32],
    n: usize,
    bias: Option<&[i32]>,
    c: &mut Counters,
) -> Vec<i64> {
    debug_assert_eq!(a.len(), m * kd);
    debug_assert_eq!(w.len(), n * kd);
    let fold = match hw.dataflow {
        Dataflow::Os => kd.max(1),
        Dataflow::Ws | Dataflow::Is => hw.rows,
    };
    let nfolds = kd.div_ceil(fold).max(1);
    let k = hw.psum_k();
    let accmax = hw.acc.format().max();
    // Per (row, fold) max |a| and per (output, fold) sum |w|: the no-overflow bound.
    let amax: Vec<i64> = (0..m)
        .flat_map(|i| {
            (0..nfolds).map(move |f| {
                let s = &a[i * kd + (f * fold).min(kd)..i * kd + ((f + 1) * fold).min(kd)];
                s.iter().map(|x| (*x as i64).abs()).max().unwrap_or(0)
            })
        })
        .collect();
    let wsum: Vec<i64> = (0..n)
        .flat_map(|j| {
            (0..nfolds).map(move |f| {
                let s = &w[j * kd + (f * fold).min(kd)..j * kd + ((f + 1) * fold).min(kd)];
                s.iter().map(|x| (*x as i64).abs()).sum::<i64>()
            })
        })
        .collect();
    let mut out = vec![0i64; m * n];
    let mut local = Counters { macs: (m * n * kd) as u64, ..Counters::default() };
    for i in 0..m {
        let arow = &a[i * kd..(i + 1) * kd];
        for j in 0..n {
            let wrow = &w[j * kd..(j + 1) * kd];
            let mut acc: i128 = 0;
            for f in 0..nfolds {
                let (k0, k1) = ((f * fold).min(kd), ((f + 1) * fold).min(kd));
                let bound = acc.abs() + (amax[i * nfolds + f] as i128) * (wsum[j * nfolds + f] as i128);
                if bound <= accmax {
                    let s: i64 =
                        arow[k0..k1].iter().zip(&wrow[k0..k1]).map(|(x, y)| (*x as i64) * (*y as i64)).sum();
                    acc += s as i128;
                } else {
                    for (x, y) in arow[k0..k1].iter().zip(&wrow[k0..k1]) {
                        let (v, o) = hw.acc.narrow(acc + (*x as i128) * (*y as i128));
                        acc = v;
                        local.overflows += o as u64;
                    }
                }
                if f + 1 < nfolds && k > 0 {
                    let (y, info) = hw.psum_round.round_info(acc);
                    local.roundings += 1;
                    local.ties += (info.position == Position::At) as u64;
                    local.round_err_sum += info.error;
                    let (p, o) = hw.psum.narrow(y);
                    local.overflows += o as u64;
                    acc = p << k;
                }
            }
            if let Some(b) = bias {
                let (v, o) = hw.acc.narrow(acc + b[j] as i128);
                acc = v;
                local.overflows += o as u64;
            }
            out[i * n + j] = acc as i64;
        }
    }
    c.add(&local);
    out
}

/// The exact GEMM (`i64`, no folds, no rounding, no overflow) for `|a|, |w| <
/// 2^16` and `kd < 2^31`; used as the reference the metrics compare with.
pub fn gemm_exact(a: &[i32], m: usize, kd: usize, w: &[i32], n: usize, bias: Option<&[i32]>) -> Vec<i64> {
    let mut out = vec![0i64; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: i64 = (0..kd).map(|t| a[i * kd + t] as i64 * w[j * kd + t] as i64).sum();
            out[i * n + j] = s + bias.map_or(0, |b| b[j] as i64);
        }
    }
    out
}

/// Compute cycles of one `m x kd x n` GEMM on the array (a SCALE-Sim-style
/// proxy, `docs/dse.md`): `folds * (2*R + C + T - 2)` where, for ws,
/// `(Sr, Sc, T) = (K, N, M)`; os `(M, N, K)`; is `(K, M, N)`, and
/// `folds = ceil(Sr/R) * ceil(Sc/C)`.
pub fn gemm_cycles(hw: &Hw, m: usize, kd: usize, n: usize) -> u64 {
    let (sr, sc, t) = match hw.dataflow {
        Dataflow::Ws => (kd, n, m),
        Dataflow::Os => (m, n, kd),
        Dataflow::Is => (kd, m, n),
    };
    let (r, c) = (hw.rows as u64, hw.cols as u64);
    let folds = (sr as u64).div_ceil(r) * (sc as u64).div_ceil(c);
    folds * (2 * r + c + t as u64 - 2)
}

/// Write-side stalls of the output FIFO for a stream of `words` words
/// (`docs/dse.md`): the writer offers one word per write edge (period 1),
/// the reader pops one per read edge (period `1 / clock_ratio`) when it sees
/// data; each side sees the other's pointer `sync_stages` of its own periods
/// late. A write edge with a word to offer and a full FIFO (as seen) is a
/// stall.
pub fn fifo_stalls(hw: &Hw, words: u64) -> u64 {
    // Integer time: write period TW, read period TR.
    const TW: u64 = 1_000_000;
    let tr = ((TW as f64) / hw.clock_ratio).round().max(1.0) as u64;
    let s = hw.sync_stages as u64;
    let depth = hw.fifo_depth as u64;
    let mut push_t: Vec<u64> = Vec::with_capacity(words as usize); // time of the i-th push
    let mut pop_t: Vec<u64> = Vec::with_capacity(words as usize);
    let mut stalls = 0u64;
    let (mut tw, mut trd) = (TW, tr); // next write / read edge
    let seen = |events: &Vec<u64>, t: u64, lag: u64| -> u64 {
        // Events at or before t - lag (partition_point: count of times <= limit).
        match t.checked_sub(lag) {
            Some(lim) => events.partition_point(|&e| e <= lim) as u64,
            None => 0,
        }
    };
    while (pop_t.len() as u64) < words {
        if (push_t.len() as u64) < words && tw <= trd {
            // Write edge (writes win a coincident edge; the reader then sees
            // the push only after its sync delay anyway).
            let pops = seen(&pop_t, tw, s * TW);
            if push_t.len() as u64 - pops < depth {
                push_t.push(tw);
            } else {
                stalls += 1;
            }
            tw += TW;
        } else {
            let pushes = seen(&push_t, trd, s * tr);
            if pushes > pop_t.len() as u64 {
                pop_t.push(trd);
            }
            trd += tr;
        }
    }
    stalls
}

/// log10 of the synchronizer MTBF in seconds (`docs/dse.md`): the worse of
/// the two pointer crossings, `MTBF = exp(t_r / tau) / (T0 * f_clk * f_data)`
/// with `t_r = (S - 1) * T_clk` of the receiving clock, `tau = 20 ps`,
/// `T0 = 20 ps`, and `f_data` half the sending clock (a Gray pointer bit
/// toggles at most every other edge).
pub fn mtbf_log10_s(hw: &Hw) -> f64 {
    const TAU: f64 = 20e-12;
    const T0: f64 = 20e-12;
    let tw = hw.clock_ns * 1e-9;
    let tr = tw / hw.clock_ratio;
    let one = |t_recv: f64, t_send: f64| -> f64 {
        let tres = (hw.sync_stages as f64 - 1.0) * t_recv;
        // log10(exp(x)/y) = x/ln10 - log10(y)
        tres / TAU / std::f64::consts::LN_10 - (T0 * (1.0 / t_recv) * (0.5 / t_send)).log10()
    };
    one(tr, tw).min(one(tw, tr))
}

/// The area proxy in bit-cells (`docs/dse.md`):
/// `R*C*(wbits*abits + P) + C*R*(P - k) + D*abits + 2*S*(log2(D) + 1)`:
/// PE multipliers and accumulators, a psum buffer of `R` entries per column,
/// the FIFO storage of `D` output words and the two synchronizers.
pub fn area_proxy(hw: &Hw) -> u64 {
    let (r, c) = (hw.rows as u64, hw.cols as u64);
    let (wb, ab) = (hw.weight.width() as u64, hw.act.width() as u64);
    let p = hw.acc_width() as u64;
    let k = hw.psum_k() as u64;
    let d = hw.fifo_depth as u64;
    let s = hw.sync_stages as u64;
    r * c * (wb * ab + p) + c * r * (p - k) + d * ab + 2 * s * (d.trailing_zeros() as u64 + 1)
}
