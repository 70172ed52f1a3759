//! Datapath statistics, per layer and per run (`docs/datapath.md`,
//! "Statistics"). Engines tally exact integers ([`Tally`]); [`Stats`] is the
//! public, mergeable summary, serialized at the boundary with a stable field
//! order ([`Stats::to_json`]).

use super::{width_of_mag, Matrix};
use crate::numerics::{IntFormat, Position, RoundInfo, Rounder};
use serde::Serialize;

/// Half-width of the residue histogram window around the rounding centre.
pub const HIST_HALF: i64 = 8;

/// The first overflow of a GEMM: the cycle and the adder position. `row`
/// equal to the array's row count R means the psum-buffer adder below
/// column `col`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct OverflowEvent {
    pub cycle: u64,
    pub row: u32,
    pub col: u32,
}

/// Residues of the psum roundings relative to the rounding centre `h`
/// ([`centre`]):
/// `bins[i]` counts `residue - h == i - 8` (so `bins[8]` counts ties);
/// `below`/`above` count residues further away.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResidueHistogram {
    pub below: u64,
    pub bins: Vec<u64>,
    pub above: u64,
}

impl Default for ResidueHistogram {
    fn default() -> ResidueHistogram {
        ResidueHistogram { below: 0, bins: vec![0; (2 * HIST_HALF + 1) as usize], above: 0 }
    }
}

impl ResidueHistogram {
    fn merge(&mut self, o: &ResidueHistogram) {
        self.below += o.below;
        self.above += o.above;
        for (a, b) in self.bins.iter_mut().zip(&o.bins) {
            *a += b;
        }
    }
}

/// Per-layer / per-run statistics. Sums are kept (not means) so that
/// [`Stats::merge`] is exact for counts and order-fixed for the float sums.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Stats {
    /// Number of GEMMs merged in.
    pub gemms: u64,
    /// Products computed (`M*K*N`).
    pub macs: u64,
    /// Cycles (for merged runs: layers back to back), memory stalls
    /// included.
    pub cycles: u64,
    /// Of those, memory stall cycles (`docs/memory.md`); `None` when the
    /// hardware config models no memory timing (then nothing stalls and the
    /// field is left out of the JSON).
    pub stall_cycles: Option<u64>,
    /// Overflows at the array adders.
    pub overflows_array: u64,
    /// Overflows at the psum-buffer adders.
    pub overflows_psum: u64,
    /// The first overflow (smallest cycle, then row, then column).
    pub first_overflow: Option<OverflowEvent>,
    /// Column sums written back to the psum buffer.
    pub writebacks: u64,
    /// d (for a merged run: the largest seen).
    pub psum_drop_bits: u32,
    /// Writebacks that dropped bits (d > 0).
    pub psum_rounded: u64,
    /// Of those, residues exactly at the centre.
    pub psum_ties: u64,
    /// Residues around the centre.
    pub psum_residues: ResidueHistogram,
    /// Sum of the psum rounding errors `round_d(S)*2^d - S`, in units of 2^d.
    pub psum_err_sum: f64,
    /// Sum of their squares, in units of 2^(2d).
    pub psum_err_sq: f64,
    /// Output codes produced (requantized outputs).
    pub outputs: u64,
    /// Outputs the requant clamp changed.
    pub out_clamped: u64,
    /// Sum of output errors against the exact real requant, output LSBs.
    pub out_err_sum: f64,
    /// Sum of their squares.
    pub out_err_sq: f64,
    /// Largest |column sum| written back (stored P-bit value).
    pub max_abs_psum: u64,
    /// Largest |psum-buffer value| (stored, units of 2^d).
    pub max_abs_acc: u64,
    /// Smallest accumulator width P that would have had no overflow on this
    /// data (everything else equal).
    pub min_acc_bits: u32,
    /// A2Q minimum width from the data types and K.
    pub a2q_bits_types: u32,
    /// A2Q minimum width from the actual weights (max over output channels).
    pub a2q_bits_weights: u32,
}

/// JSON view of [`Stats`]: field order is the declaration order here.
#[derive(Serialize)]
struct StatsJson<'a> {
    gemms: u64,
    macs: u64,
    cycles: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    stall_cycles: Option<u64>,
    // Field order = docs/datapath.md section 6 (a test holds them equal).
    overflows_array: u64,
    overflows_psum: u64,
    overflows: u64,
    first_overflow: &'a Option<OverflowEvent>,
    writebacks: u64,
    psum_drop_bits: u32,
    psum_rounded: u64,
    psum_ties: u64,
    psum_residues: &'a ResidueHistogram,
    psum_err_mean: Option<f64>,
    psum_err_rms: Option<f64>,
    outputs: u64,
    out_clamped: u64,
    out_err_mean: Option<f64>,
    out_err_rms: Option<f64>,
    max_abs_psum: u64,
    max_abs_acc: u64,
    min_acc_bits: u32,
    a2q_bits_types: u32,
    a2q_bits_weights: u32,
}

fn mean(sum: f64, n: u64) -> Option<f64> {
    (n > 0).then(|| sum / n as f64)
}

fn rms(sq: f64, n: u64) -> Option<f64> {
    (n > 0).then(|| (sq / n as f64).sqrt())
}

impl Stats {
    /// Total overflows.
    pub fn overflows(&self) -> u64 {
        self.overflows_array + self.overflows_psum
    }

    /// Mean psum rounding error (bias) in units of 2^d; `None` if none.
    pub fn psum_err_mean(&self) -> Option<f64> {
        mean(self.psum_err_sum, self.psum_rounded)
    }
    /// RMS psum rounding error in units of 2^d.
    pub fn psum_err_rms(&self) -> Option<f64> {
        rms(self.psum_err_sq, self.psum_rounded)
    }
    /// Mean output error in output LSBs.
    pub fn out_err_mean(&self) -> Option<f64> {
        mean(self.out_err_sum, self.outputs)
    }
    /// RMS output error in output LSBs.
    pub fn out_err_rms(&self) -> Option<f64> {
        rms(self.out_err_sq, self.outputs)
    }

    /// Fold `later` (run after `self`) into `self`: counts and sums add,
    /// maxima take the max, cycles add, and the first overflow is `self`'s
    /// if any, else `later`'s with its cycle shifted by `self.cycles`.
    pub fn merge(&mut self, later: &Stats) {
        if self.first_overflow.is_none() {
            self.first_overflow =
                later.first_overflow.map(|e| OverflowEvent { cycle: e.cycle + self.cycles, ..e });
        }
        self.gemms += later.gemms;
        self.macs += later.macs;
        self.cycles += later.cycles;
        self.stall_cycles = match (self.stall_cycles, later.stall_cycles) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.overflows_array += later.overflows_array;
        self.overflows_psum += later.overflows_psum;
        self.writebacks += later.writebacks;
        self.psum_drop_bits = self.psum_drop_bits.max(later.psum_drop_bits);
        self.psum_rounded += later.psum_rounded;
        self.psum_ties += later.psum_ties;
        self.psum_residues.merge(&later.psum_residues);
        self.psum_err_sum += later.psum_err_sum;
        self.psum_err_sq += later.psum_err_sq;
        self.outputs += later.outputs;
        self.out_clamped += later.out_clamped;
        self.out_err_sum += later.out_err_sum;
        self.out_err_sq += later.out_err_sq;
        self.max_abs_psum = self.max_abs_psum.max(later.max_abs_psum);
        self.max_abs_acc = self.max_abs_acc.max(later.max_abs_acc);
        self.min_acc_bits = self.min_acc_bits.max(later.min_acc_bits);
        self.a2q_bits_types = self.a2q_bits_types.max(later.a2q_bits_types);
        self.a2q_bits_weights = self.a2q_bits_weights.max(later.a2q_bits_weights);
    }

    /// Pretty JSON with a stable field order (means and RMS derived; `null`
    /// when nothing was counted).
    pub fn to_json(&self) -> String {
        let j = StatsJson {
            gemms: self.gemms,
            macs: self.macs,
            cycles: self.cycles,
            stall_cycles: self.stall_cycles,
            overflows_array: self.overflows_array,
            overflows_psum: self.overflows_psum,
            overflows: self.overflows(),
            first_overflow: &self.first_overflow,
            writebacks: self.writebacks,
            psum_drop_bits: self.psum_drop_bits,
            psum_rounded: self.psum_rounded,
            psum_ties: self.psum_ties,
            psum_residues: &self.psum_residues,
            psum_err_mean: self.psum_err_mean(),
            psum_err_rms: self.psum_err_rms(),
            outputs: self.outputs,
            out_clamped: self.out_clamped,
            out_err_mean: self.out_err_mean(),
            out_err_rms: self.out_err_rms(),
            max_abs_psum: self.max_abs_psum,
            max_abs_acc: self.max_abs_acc,
            min_acc_bits: self.min_acc_bits,
            a2q_bits_types: self.a2q_bits_types,
            a2q_bits_weights: self.a2q_bits_weights,
        };
        let mut s = serde_json::to_string_pretty(&j).expect("stats serialize");
        s.push('\n');
        s
    }
}

/// Exact integer tallies an engine keeps while it runs; merged in a fixed
/// order and turned into [`Stats`] once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub ovf_array: u64,
    pub ovf_psum: u64,
    pub first: Option<OverflowEvent>,
    pub writebacks: u64,
    pub rounded: u64,
    pub ties: u64,
    pub hist: ResidueHistogram,
    /// Sum of `round_d(S)*2^d - S` in column-sum LSBs (|error| < 2^33).
    pub err_sum: i128,
    pub err_sq: u128,
    pub max_psum: u64,
    pub max_acc: u64,
    /// OR of `Acc::mag` over every exact intermediate (chain prefixes and
    /// exact buffer values).
    pub width_or: u64,
}

impl Tally {
    pub fn merge(&mut self, o: &Tally) {
        self.ovf_array += o.ovf_array;
        self.ovf_psum += o.ovf_psum;
        self.first = match (self.first, o.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.writebacks += o.writebacks;
        self.rounded += o.rounded;
        self.ties += o.ties;
        self.hist.merge(&o.hist);
        self.err_sum += o.err_sum;
        self.err_sq += o.err_sq;
        self.max_psum = self.max_psum.max(o.max_psum);
        self.max_acc = self.max_acc.max(o.max_acc);
        self.width_or |= o.width_or;
    }

    /// Record one psum rounding (d > 0) against the centre `h`.
    #[inline]
    pub fn record_round(&mut self, info: &RoundInfo, centre: i64) {
        self.rounded += 1;
        let rel = info.residue as i64 - centre;
        if info.position == Position::At {
            self.ties += 1;
        }
        if rel < -HIST_HALF {
            self.hist.below += 1;
        } else if rel > HIST_HALF {
            self.hist.above += 1;
        } else {
            self.hist.bins[(rel + HIST_HALF) as usize] += 1;
        }
        self.err_sum += info.error;
        self.err_sq += (info.error * info.error) as u128;
    }

    /// The public summary.
    pub fn into_stats(self, d: u32, macs: u64, cycles: u64) -> Stats {
        let scale = 2f64.powi(d as i32);
        Stats {
            gemms: 1,
            macs,
            cycles,
            stall_cycles: None,
            overflows_array: self.ovf_array,
            overflows_psum: self.ovf_psum,
            first_overflow: self.first,
            writebacks: self.writebacks,
            psum_drop_bits: d,
            psum_rounded: self.rounded,
            psum_ties: self.ties,
            psum_residues: self.hist,
            psum_err_sum: self.err_sum as f64 / scale,
            psum_err_sq: self.err_sq as f64 / (scale * scale),
            max_abs_psum: self.max_psum,
            max_abs_acc: self.max_acc,
            min_acc_bits: width_of_mag(self.width_or).max(2).max(d + 1),
            ..Stats::default()
        }
    }
}

/// The rounding centre of the psum rounder, as `docs/numerics.md` defines
/// it (the residue at which the result steps from the lower to the upper
/// candidate): `2^(d-1) + c` for the round-to-nearest modes; for `TRN` /
/// `TRN_ZERO` `2^d - c` (c > 0), `-c` (c < 0), and `2^d` (never reached)
/// for c = 0; 0 when d = 0.
pub(crate) fn centre(rounder: &Rounder) -> i64 {
    let (d, c) = (rounder.k(), rounder.offset());
    if d == 0 {
        0
    } else if rounder.mode().is_truncating() {
        if c >= 0 {
            (1i64 << d) - c
        } else {
            -c
        }
    } else {
        (1i64 << (d - 1)) + c
    }
}

/// A2Q's minimum accumulator width for `a` = log2 of the worst-case
/// magnitude: `ceil(a + log2(1 + 2^-a) + 1)`, at least 2.
pub fn a2q_min_bits(a: f64) -> u32 {
    let p = (a + (1.0 + (-a).exp2()).log2() + 1.0).ceil();
    if p.is_finite() {
        (p as i64).clamp(2, 1 << 16) as u32
    } else {
        2
    }
}

/// A2Q bound from the data types: `a = log2(K) + N + M - signed_input -
/// signed_weight` (N activation bits, M weight bits). For signed weights
/// this is A2Q's `log2(K) + N + M - signed_input - 1`; for unsigned weights
/// (magnitudes up to `2^M - 1`) the same derivation gives `- 0`.
pub fn a2q_bits_types(k: usize, wfmt: IntFormat, afmt: IntFormat) -> u32 {
    let a = (k as f64).log2() + afmt.width() as f64 + wfmt.width() as f64
        - afmt.is_signed() as u32 as f64
        - wfmt.is_signed() as u32 as f64;
    a2q_min_bits(a)
}

/// A2Q bound from the actual weights: per output channel (column of W),
/// `a = log2(||w_n||_1) + N - signed_input`; the max over channels (2 if
/// every channel is all zeros).
pub fn a2q_bits_weights(w: &Matrix, afmt: IntFormat) -> u32 {
    let mut norms = vec![0u64; w.cols()];
    for row in w.to_i32().chunks(w.cols()) {
        for (s, &v) in norms.iter_mut().zip(row) {
            *s += v.unsigned_abs() as u64;
        }
    }
    a2q_bits_from_norm(norms.iter().copied().max().unwrap_or(0), afmt)
}

/// [`a2q_bits_weights`] from the largest column norm `max_n ||w_n||_1`
/// (2 when it is 0).
pub fn a2q_bits_from_norm(best: u64, afmt: IntFormat) -> u32 {
    if best == 0 {
        return 2;
    }
    a2q_min_bits((best as f64).log2() + afmt.width() as f64 - afmt.is_signed() as u32 as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a2q_reference_example() {
        // reference.md §3: K=2304, 4-bit unsigned activations, 4-bit weights -> 20 bits.
        let w4 = IntFormat::signed(4).unwrap();
        let a4 = IntFormat::unsigned(4).unwrap();
        assert_eq!(a2q_bits_types(2304, w4, a4), 20);
    }
}
