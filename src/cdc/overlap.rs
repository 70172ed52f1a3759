//! Overlap of the clock-domain crossings with the array's compute
//! (`docs/cdc.md` §18): the host writes the input words into the input FIFO
//! while the array computes on the words it already has, and the array
//! writes each result into the output FIFO as soon as it is final, while the
//! host reads them. Both FIFOs are the one edge-exact model
//! ([`super::transfer`]); this module only derives the array's side of each
//! crossing from the array's documented timing (`docs/datapath.md` §5).

use super::{transfer_bounded, ClockPair, FifoConfig, Pattern, TransferReport};
use crate::error::Result;
use crate::hw::Dataflow;

/// The array's timing as the crossings see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// `need[w]`: the compute cycle at which input word `w` is first used.
    pub need: Vec<u64>,
    /// `ready[j]`: the compute cycle at whose end output word `j` is final.
    pub ready: Vec<u64>,
    /// Compute cycles `C` of the stall-free single-clock run.
    pub cycles: u64,
}

impl Schedule {
    /// A schedule where every input word is needed at cycle 0 and every
    /// output word is final at the last cycle (no finer timing known).
    pub fn coarse(words_in: usize, words_out: usize, cycles: u64) -> Schedule {
        let last = cycles.saturating_sub(1);
        Schedule { need: vec![0; words_in], ready: vec![last; words_out], cycles }
    }

    /// The same schedule with the output side replaced by `other`'s, shifted
    /// by `offset` cycles, and `cycles` as the total (a multi-layer run: the
    /// first layer's inputs, the last layer's outputs).
    pub fn with_outputs(mut self, other: &Schedule, offset: u64, cycles: u64) -> Schedule {
        self.ready = other.ready.iter().map(|&r| r + offset).collect();
        self.cycles = cycles;
        self
    }
}

/// The schedule of one `M x K` by `K x N` GEMM on an `R x C` array
/// (`docs/datapath.md` §5): A's words in row-major order (`w = m*K + k`) and
/// the results in row-major order (`j = m*N + n`).
///
/// - `ws`: `a[m][k]` first enters PE `(k mod R, 0)` in the first column tile's
///   fold `f = k div R`, at `T + R + m + (k mod R)`; result `(m, n)` is final
///   at the last fold's writeback cycle `T + 2R + m + (n mod C)` of column tile
///   `n div C`.
/// - `is`: `a[m][k]` is preloaded into row `r = k mod R` at `T + R - 1 - r` of
///   tile `(m div C, k div R)`; result `(m, n)` is final at
///   `T + 2R + n + (m mod C)` of the last fold of tile `m div C`.
/// - `os`: `a[m][k]` enters PE `(m mod R, 0)` at `T + k + (m mod R)` of tile
///   `(m div R, 0)`; result `(m, n)` leaves in the drain at
///   `T + K + Ru + Cu - 2 + R - 1 - (m mod R)` of tile `(m div R, n div C)`.
///
/// `T` is the tile's start cycle (tiles strictly one after another).
pub fn gemm_schedule(df: Dataflow, rows: usize, cols: usize, m: usize, k: usize, n: usize) -> Schedule {
    let (r, c) = (rows as u64, cols as u64);
    let (mu, ku, nu) = (m as u64, k as u64, n as u64);
    let mut need = vec![0u64; m * k];
    let mut ready = vec![0u64; m * n];
    let folds = ku.div_ceil(r);
    let cycles = match df {
        Dataflow::Ws => {
            // Column tiles j (outer), folds f (inner); len_j = 2R + M + Cu_j - 2.
            let len = |j: u64| 2 * r + mu + c.min(nu - j * c) - 2;
            let mut t = 0u64;
            for j in 0..nu.div_ceil(c) {
                if j == 0 {
                    for kk in 0..ku {
                        let tf = (kk / r) * len(0);
                        for mm in 0..mu {
                            need[(mm * ku + kk) as usize] = tf + r + mm + kk % r;
                        }
                    }
                }
                let last_fold = t + (folds - 1) * len(j);
                for nn in j * c..nu.min((j + 1) * c) {
                    for mm in 0..mu {
                        ready[(mm * nu + nn) as usize] = last_fold + 2 * r + mm + nn % c;
                    }
                }
                t += folds * len(j);
            }
            t + 1
        }
        Dataflow::Is => {
            // Column tiles i of M (outer), folds f (inner); len_i = 2R + N + Cu_i - 2.
            let len = |i: u64| 2 * r + nu + c.min(mu - i * c) - 2;
            let mut t = 0u64;
            for i in 0..mu.div_ceil(c) {
                for mm in i * c..mu.min((i + 1) * c) {
                    for kk in 0..ku {
                        let tf = t + (kk / r) * len(i);
                        need[(mm * ku + kk) as usize] = tf + r - 1 - kk % r;
                    }
                    let last_fold = t + (folds - 1) * len(i);
                    for nn in 0..nu {
                        ready[(mm * nu + nn) as usize] = last_fold + 2 * r + nn + mm % c;
                    }
                }
                t += folds * len(i);
            }
            t + 1
        }
        Dataflow::Os => {
            // Row tiles i (outer), column tiles j (inner); len = K + Ru + Cu - 2 + R.
            let mut t = 0u64;
            for i in 0..mu.div_ceil(r) {
                let ru = r.min(mu - i * r);
                for j in 0..nu.div_ceil(c) {
                    let cu = c.min(nu - j * c);
                    for mm in i * r..i * r + ru {
                        if j == 0 {
                            for kk in 0..ku {
                                need[(mm * ku + kk) as usize] = t + kk + mm % r;
                            }
                        }
                        for nn in j * c..j * c + cu {
                            ready[(mm * nu + nn) as usize] = t + ku + ru + cu - 2 + r - 1 - mm % r;
                        }
                    }
                    t += ku + ru + cu - 2 + r;
                }
            }
            t
        }
    };
    Schedule { need, ready, cycles }
}

/// The outcome of one overlapped inference.
#[derive(Clone, Debug)]
pub struct Overlap {
    /// The input crossing (host -> array).
    pub tin: TransferReport,
    /// The output crossing (array -> host), overlapped with the compute.
    pub tout: TransferReport,
    /// Array edges on which the compute waited for an input word.
    pub compute_stalls: u64,
    /// Array-edge index (0-based) of the last compute cycle.
    pub compute_end_edge: u64,
    /// End-to-end time: the host's take of the last output word (ps).
    pub time_ps: u64,
}

/// Run one inference with the crossings overlapped (docs/cdc.md §18):
/// 1. the input FIFO (`cfg_in`, write clock = host, read clock = array):
///    the host offers a word at every host edge while words remain, the
///    array takes one at every array edge while words remain;
/// 2. compute cycle `c` runs at array edge `e_c = max(e_{c-1} + 1, a_c)`
///    (`e_{-1} = -1`), `a_c` the largest delivery edge of the words with
///    `need'[w] <= c`, where `need'[w] = min(need[w..])` (words arrive in
///    order, so a word is due when any later one is);
/// 3. the output FIFO (`cfg_out`, write clock = array, read clock = host):
///    word `j` may be written from array edge `e_{ready'[j]} + 1` on,
///    `ready'[j] = max(ready[..=j])`; the host takes one at every host edge
///    while words remain. The array never waits for the output FIFO (its
///    results stay in the psum buffer until written).
///
/// Both FIFOs start from reset at time 0 with both clocks at phase 0.
pub fn overlap(
    cfg_in: &FifoConfig,
    cfg_out: &FifoConfig,
    host_period_ps: u64,
    array_period_ps: u64,
    words_in: &[u64],
    words_out: &[u64],
    sched: &Schedule,
) -> Result<Overlap> {
    let tin = cross_input(cfg_in, host_period_ps, array_period_ps, words_in)?;
    overlap_after_input(cfg_out, host_period_ps, array_period_ps, tin, words_out, sched)
}

/// Step 1 of [`overlap`]: the input crossing (host writes at every host
/// edge, the array reads at every array edge, while words remain).
pub fn cross_input(
    cfg_in: &FifoConfig,
    host_period_ps: u64,
    array_period_ps: u64,
    words_in: &[u64],
) -> Result<TransferReport> {
    super::transfer(
        cfg_in,
        &ClockPair::new(host_period_ps, array_period_ps),
        words_in,
        &Pattern::Always,
        &Pattern::Always,
    )
}

/// Steps 2 and 3 of [`overlap`], given the input crossing `tin` (so the
/// caller can compute on the words as delivered before the results exist).
pub fn overlap_after_input(
    cfg_out: &FifoConfig,
    host_period_ps: u64,
    array_period_ps: u64,
    tin: TransferReport,
    words_out: &[u64],
    sched: &Schedule,
) -> Result<Overlap> {
    let (delay, need_eff) = delays(&sched.need, &tin.pop_edge);
    // D(x): the compute's accumulated delay at cycle x.
    let d_at = |x: u64| -> u64 {
        let p = need_eff.partition_point(|&nd| nd <= x);
        if p == 0 {
            0
        } else {
            delay[p - 1]
        }
    };
    let cycles = sched.cycles.max(1);
    let compute_stalls = d_at(cycles - 1);
    let mut ready_at = Vec::with_capacity(words_out.len());
    let mut rmax = 0u64;
    for &r in &sched.ready {
        rmax = rmax.max(r);
        ready_at.push(rmax + d_at(rmax) + 1);
    }
    let last = ready_at.last().copied().unwrap_or(0);
    let clocks = ClockPair::new(array_period_ps, host_period_ps);
    let ratio = array_period_ps.max(host_period_ps).div_ceil(array_period_ps.min(host_period_ps).max(1));
    let bound = super::default_max_edges(cfg_out, &clocks, words_out.len() as u64, 100)
        .saturating_add((last + 1).saturating_mul(2 * (ratio + 1)));
    let tout =
        transfer_bounded(cfg_out, &clocks, words_out, &Pattern::ReadyAt(ready_at), &Pattern::Always, bound)?;
    let time_ps = tout.pop_time_ps.last().copied().unwrap_or(0);
    Ok(Overlap { tin, tout, compute_stalls, compute_end_edge: cycles - 1 + compute_stalls, time_ps })
}

/// Per input word (in order): the running maximum of
/// `max(0, arrival[w] - need'[w])` and `need'[w]` itself (non-decreasing).
fn delays(need: &[u64], arrival: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let mut need_eff = need.to_vec();
    for i in (0..need_eff.len().saturating_sub(1)).rev() {
        need_eff[i] = need_eff[i].min(need_eff[i + 1]);
    }
    let mut run = 0u64;
    let delay = need_eff
        .iter()
        .zip(arrival)
        .map(|(&nd, &a)| {
            run = run.max(a.saturating_sub(nd));
            run
        })
        .collect();
    (delay, need_eff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_cycles_match_the_array_timing() {
        for df in [Dataflow::Ws, Dataflow::Is, Dataflow::Os] {
            for (r, c, m, k, n) in [(4, 4, 3, 5, 2), (2, 3, 7, 9, 8), (16, 16, 1, 784, 10), (3, 2, 5, 1, 1)] {
                let s = gemm_schedule(df, r, c, m, k, n);
                assert_eq!(
                    s.cycles,
                    crate::array::compute_cycles(df, r, c, m, k, n),
                    "{df:?} {r}x{c} {m}x{k}x{n}"
                );
                assert!(s.need.iter().chain(&s.ready).all(|&x| x < s.cycles));
                // The last result is final in the last cycle (ws/is: the
                // final writeback cycle; os: the last drain cycle).
                assert_eq!(s.ready.iter().max().copied(), Some(s.cycles - 1), "{df:?}");
            }
        }
    }

    #[test]
    fn compute_waits_for_late_words() {
        // need' = suffix min; delay = running max of arrival - need'.
        let (d, ne) = delays(&[5, 3, 10, 12], &[0, 8, 9, 30]);
        assert_eq!(ne, vec![3, 3, 10, 12]);
        assert_eq!(d, vec![0, 5, 5, 18]);
    }
}
