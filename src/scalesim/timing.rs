//! SCALE-Sim v3's per-layer numbers, reproduced without building its
//! address matrices. Every formula here is stated in `docs/scalesim.md`.
//!
//! What SCALE-Sim computes (CALC bandwidth mode):
//! 1. The GEMM is folded onto the array (see [`GemmMapping::spatio_temporal`]
//!    for Sr, Sc, T). Each fold is a block of demand lines (one line a cycle)
//!    whose count depends only on the dataflow; the layer's compute lines are
//!    L = folds x lines-per-fold and "Total Cycles" is L - 1 plus stalls.
//! 2. Its ofmap SRAM write buffer is simulated on the output demand lines
//!    (this can only stall when the ofmap SRAM is tiny) and then drained to
//!    DRAM; its last DRAM write is "ofmap DRAM stop".
//! 3. Its ifmap and filter read buffers (estimate mode: never stall) start
//!    their first DRAM prefetch before cycle 0; "Total Cycles (incl.
//!    prefetch)" is ofmap DRAM stop minus the earlier of those starts.

use super::{Dataflow, GemmMapping, LayerTiming};
use crate::scalesim::config::ScaleSimConfig;

/// The fold structure of one layer under SCALE-Sim's mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Folds {
    /// Spatial rows, spatial columns and temporal length (Sr, Sc, T).
    pub sr: u64,
    pub sc: u64,
    pub t: u64,
    /// Row folds ceil(Sr / rows) and column folds ceil(Sc / cols).
    pub row_folds: u64,
    pub col_folds: u64,
    /// Demand lines (cycles) per fold: OS T + R + C - 2; WS and IS 2R + C + T - 2.
    pub lines_per_fold: u64,
    /// The cycle count SCALE-Sim divides by in each fold's "compute
    /// utilization": OS T + R + C - 2; WS and IS 2R + 2C + T - 3.
    pub util_cycles_per_fold: u64,
}

impl Folds {
    /// Fold a mapping the way SCALE-Sim does.
    pub fn of(m: &GemmMapping) -> Folds {
        let (sr, sc, t) = m.spatio_temporal();
        let (r, c) = (m.rows as u64, m.cols as u64);
        let (lines_per_fold, util_cycles_per_fold) = match m.dataflow {
            Dataflow::Os => (t + r + c - 2, t + r + c - 2),
            Dataflow::Ws | Dataflow::Is => (2 * r + c + t - 2, 2 * r + 2 * c + t - 3),
        };
        Folds {
            sr,
            sc,
            t,
            row_folds: sr.div_ceil(r),
            col_folds: sc.div_ceil(c),
            lines_per_fold,
            util_cycles_per_fold,
        }
    }

    /// Total folds.
    pub fn count(&self) -> u64 {
        self.row_folds * self.col_folds
    }

    /// Demand lines of the whole layer (SCALE-Sim's stall-free cycles + 1).
    pub fn lines(&self) -> u64 {
        self.count() * self.lines_per_fold
    }
}

/// SCALE-Sim's stall-free "Total Cycles": one less than its demand lines.
/// This is the whole of SCALE-Sim's compute timing; memory only adds stalls.
pub fn compute_cycles(m: &GemmMapping) -> u64 {
    Folds::of(m).lines() - 1
}

/// SCALE-Sim's "Mapping Efficiency %" and "Compute Util %": per-fold ratios
/// averaged over folds, in SCALE-Sim's fold order (column folds outer, row
/// folds inner) and float operation order, so the f64 results are bit-equal
/// to its Python floats.
pub fn fold_averages(m: &GemmMapping) -> (f64, f64) {
    let f = Folds::of(m);
    let (r, c) = (m.rows as u64, m.cols as u64);
    let mut map_sum = 0.0f64;
    let mut util_sum = 0.0f64;
    for fc in 0..f.col_folds {
        let cu = c.min(f.sc - fc * c);
        for fr in 0..f.row_folds {
            let ru = r.min(f.sr - fr * r);
            let used = ru * cu;
            map_sum += used as f64 / (r * c) as f64;
            util_sum += (used * f.t) as f64 / (r * c * f.util_cycles_per_fold) as f64;
        }
    }
    let n = f.count() as f64;
    (map_sum / n * 100.0, util_sum / n * 100.0)
}

/// SCALE-Sim's "Overall Util %": MACs * 100 / (total cycles * R * C), a
/// correctly rounded integer ratio (Python `int / int`). SCALE-Sim divides by
/// zero when total cycles is 0 (a 1x1 array running a single MAC); bitmac
/// reports 0.0 there.
pub fn overall_util(m: &GemmMapping, total_cycles: u64) -> f64 {
    let den = total_cycles * m.rows as u64 * m.cols as u64;
    if den == 0 {
        return 0.0;
    }
    // Both fit in 2^53 for every accepted input, so one f64 division is the
    // correctly rounded quotient, as Python's is.
    (m.m * m.n * m.k * 100) as f64 / den as f64
}

/// The ofmap demand of one fold: `prefix` empty lines, then `valid_rows`
/// lines with `cols_used` outputs each, skewed one line per array column.
#[derive(Clone, Copy)]
struct OfmapFold {
    prefix: u64,
    valid_rows: u64,
    cols_used: u64,
}

impl OfmapFold {
    /// Outputs written on line `j` of the fold: the columns c < cols_used
    /// with prefix <= j - c < prefix + valid_rows.
    fn writes_on_line(&self, j: u64) -> u64 {
        if j < self.prefix || self.cols_used == 0 {
            return 0;
        }
        let hi = (self.cols_used - 1).min(j - self.prefix);
        let lo = (j + 1).saturating_sub(self.prefix + self.valid_rows);
        if hi >= lo {
            hi - lo + 1
        } else {
            0
        }
    }
}

/// SCALE-Sim's ofmap SRAM write buffer (`write_buffer.py`) reduced to counts:
/// the addresses never matter, only how many writes arrive on each line.
struct WriteBuffer {
    active: u64,
    drain_size: u64,
    /// Words per DRAM write line (CALC mode: the array width).
    width: u64,
    free: i64,
    /// Words in the line being assembled.
    line_fill: u64,
    /// Lines handed to the trace so far.
    lines: u64,
    /// Partially filled lines (forced out at a drain): (index, words).
    partial: Vec<(u64, u64)>,
    drain_start: u64,
    drain_end_cycle: u64,
    max_drain_end: Option<u64>,
}

impl WriteBuffer {
    fn new(ofmap_sram_kb: u64, width: u64) -> WriteBuffer {
        let total = ofmap_sram_kb * 1024;
        let active = total.div_ceil(2); // ceil(total * 0.5)
        WriteBuffer {
            active,
            drain_size: total - active,
            width,
            free: total as i64,
            line_fill: 0,
            lines: 0,
            partial: Vec::new(),
            drain_start: 0,
            drain_end_cycle: 0,
            max_drain_end: None,
        }
    }

    fn store(&mut self, n: u64) {
        self.free -= n as i64;
        self.line_fill += n;
        self.lines += self.line_fill / self.width;
        self.line_fill %= self.width;
    }

    /// `append_to_trace_mat(force=True)`: the partial line becomes a line.
    fn flush(&mut self) {
        if self.line_fill != 0 {
            self.partial.push((self.lines, self.line_fill));
            self.lines += 1;
            self.line_fill = 0;
        }
    }

    fn fill_of(&self, line: u64) -> u64 {
        match self.partial.binary_search_by_key(&line, |&(i, _)| i) {
            Ok(i) => self.partial[i].1,
            Err(_) => self.width,
        }
    }

    /// `empty_drain_buf`: drain up to ceil(drain_size / width) lines starting
    /// at `cycle`, one line a cycle; returns the last cycle. Like SCALE-Sim,
    /// the freed space counts whole lines except the last one's empty slots.
    fn drain(&mut self, cycle: u64) -> u64 {
        let want = self.drain_size.div_ceil(self.width);
        let end = (self.drain_start + want).min(self.lines);
        let n = end - self.drain_start;
        debug_assert!(n > 0, "a drain always has a line to write");
        let last_fill = self.fill_of(end - 1);
        let data = n * self.width - (self.width - last_fill);
        self.free += data as i64;
        self.drain_start = end;
        let last = cycle + n - 1;
        self.max_drain_end = Some(self.max_drain_end.map_or(last, |m| m.max(last)));
        last
    }

    /// Serve `k` writes arriving together at `cycle` (`service_writes` for
    /// one demand line); returns the stall cycles the line incurred.
    fn line(&mut self, cycle: u64, mut k: u64) -> u64 {
        let mut current = cycle;
        while k > 0 {
            if current < self.drain_end_cycle {
                // Stall once the buffer is completely full.
                let until_full = self.free.max(1) as u64;
                if until_full > k {
                    self.store(k);
                    k = 0;
                } else {
                    self.store(until_full);
                    k -= until_full;
                    current = self.drain_end_cycle;
                }
            } else {
                // Start a drain as soon as the active half is full.
                let until_drain = (self.free - self.active as i64 + 1).max(1) as u64;
                if until_drain > k {
                    self.store(k);
                    k = 0;
                } else {
                    self.store(until_drain);
                    k -= until_drain;
                    self.flush();
                    self.drain_end_cycle = self.drain(current);
                }
            }
        }
        current - cycle
    }

    /// `empty_all_buffers`: drain what is left, starting at `cycle`.
    fn finish(&mut self, mut cycle: u64) {
        self.flush();
        while self.drain_start < self.lines {
            self.drain_end_cycle = self.drain(cycle);
            cycle = self.drain_end_cycle + 1;
        }
    }
}

/// First DRAM response of an estimate-mode read buffer (`read_buffer_estimate_bw.py`):
/// the buffer's 100 sets hold floor(words / 100) addresses each; if the layer
/// reads at least 50 sets' worth of distinct addresses the active half is
/// prefetched, at 10 words a cycle, to end just before the first demand;
/// otherwise everything read is prefetched to end before cycle 0. DRAM
/// latency is 1 cycle.
fn prefetch_start(distinct: u64, sram_kb: u64, first_demand_cycle: u64) -> i64 {
    const BW: u64 = 10;
    let per_set = sram_kb * 1024 / 100;
    if distinct >= 50 * per_set {
        first_demand_cycle as i64 - (50 * per_set).div_ceil(BW) as i64
    } else {
        -((distinct.div_ceil(per_set) * per_set).div_ceil(BW) as i64)
    }
}

/// SCALE-Sim v3's compute-report numbers for one layer (CALC bandwidth mode).
///
/// In USER mode SCALE-Sim also stalls on its DRAM read model, which this does
/// not reproduce: the result is then SCALE-Sim's stall-free timing.
pub fn layer_timing(cfg: &ScaleSimConfig, m: &GemmMapping) -> LayerTiming {
    let f = Folds::of(m);
    let (r, c) = (m.rows as u64, m.cols as u64);
    // Per fold ofmap demand: OS writes the fold's used rows (flipped, so the
    // unused rows come first) after T - 1 empty lines; WS and IS write T rows
    // after 2R - 1 empty lines.
    let mut wb = WriteBuffer::new(cfg.ofmap_sram_kb, c);
    let mut stalls = 0u64;
    let mut line_index = 0u64;
    for fc in 0..f.col_folds {
        let cols_used = c.min(f.sc - fc * c);
        for fr in 0..f.row_folds {
            let fold = match m.dataflow {
                Dataflow::Os => {
                    let rows_used = r.min(f.sr - fr * r);
                    OfmapFold { prefix: f.t - 1 + (r - rows_used), valid_rows: rows_used, cols_used }
                }
                Dataflow::Ws | Dataflow::Is => OfmapFold { prefix: 2 * r - 1, valid_rows: f.t, cols_used },
            };
            for j in 0..f.lines_per_fold {
                let k = fold.writes_on_line(j);
                if k > 0 {
                    stalls += wb.line(line_index + stalls, k);
                }
                line_index += 1;
            }
        }
    }
    let total_cycles = f.lines() - 1 + stalls;
    wb.finish(total_cycles);
    let ofmap_stop = wb.max_drain_end.unwrap_or(total_cycles);

    // First demand line of each operand (no stall can precede it).
    let (ifmap_first, filter_first) = match m.dataflow {
        Dataflow::Os => (0, 0),
        Dataflow::Ws => (r, r - r.min(m.k)),
        Dataflow::Is => (r - r.min(m.k), r),
    };
    let ifmap_start = prefetch_start(m.ifmap_elems_read, cfg.ifmap_sram_kb, ifmap_first);
    let filter_start = prefetch_start(m.k * m.n, cfg.filter_sram_kb, filter_first);
    let incl_prefetch = (ofmap_stop as i64 - ifmap_start.min(filter_start)).max(0) as u64;

    let (mapping_eff, compute_util) = fold_averages(m);
    LayerTiming {
        total_cycles_incl_prefetch: incl_prefetch,
        total_cycles,
        stall_cycles: stalls,
        overall_util_pct: overall_util(m, total_cycles),
        mapping_efficiency_pct: mapping_eff,
        compute_util_pct: compute_util,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(df: Dataflow, rows: u32, cols: u32, m: u64, k: u64, n: u64) -> GemmMapping {
        GemmMapping { dataflow: df, rows, cols, m, k, n, ifmap_elems_read: m * k }
    }

    #[test]
    fn lines_per_fold_by_dataflow() {
        // M=25, K=216, N=48 on 8x16 (checked against SCALE-Sim 3.0.0 by hand).
        assert_eq!(compute_cycles(&map(Dataflow::Os, 8, 16, 25, 216, 48)), 2855);
        assert_eq!(compute_cycles(&map(Dataflow::Ws, 8, 16, 25, 216, 48)), 4454);
        assert_eq!(compute_cycles(&map(Dataflow::Is, 8, 16, 25, 216, 48)), 4211);
    }

    #[test]
    fn ofmap_fold_writes_sum_to_outputs() {
        for (prefix, valid_rows, cols_used, width) in [(0, 1, 1, 1), (5, 3, 4, 4), (2, 10, 3, 8)] {
            let f = OfmapFold { prefix, valid_rows, cols_used };
            let total: u64 = (0..prefix + valid_rows + width).map(|j| f.writes_on_line(j)).sum();
            assert_eq!(total, valid_rows * cols_used);
        }
    }
}
