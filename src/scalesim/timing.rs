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
use crate::error::{Error, Result};
use crate::scalesim::config::ScaleSimConfig;
use num_bigint::BigUint;

/// Most folds [`layer_timing`] and [`fold_averages`] accept: SCALE-Sim's
/// float averages are reproduced by summing fold by fold (a few seconds at
/// this limit; SCALE-Sim itself would need years).
pub const MAX_FOLDS: u64 = 1 << 32;

/// `n / d` correctly rounded to f64 (round half to even), as Python's
/// `int / int` true division is. `d` must be non-zero.
pub fn exact_ratio(n: u128, d: u128) -> f64 {
    const LIM: u128 = 1 << 53;
    if n < LIM && d < LIM {
        // Both exact in f64, so IEEE division rounds the true quotient once.
        return n as f64 / d as f64;
    }
    if n == 0 {
        return 0.0;
    }
    let bits = |x: u128| 128 - x.leading_zeros() as i64;
    // Scale so the integer quotient has 55 or 56 bits.
    let s = 55 - (bits(n) - bits(d));
    let (num, den) = if s >= 0 {
        (BigUint::from(n) << s as usize, BigUint::from(d))
    } else {
        (BigUint::from(n), BigUint::from(d) << (-s) as usize)
    };
    let q = &num / &den;
    let sticky = &num % &den != BigUint::from(0u32);
    let q: u128 = q.try_into().expect("quotient has at most 56 bits");
    let shift = bits(q) - 53;
    let mut mant = q >> shift;
    let rem = q & ((1u128 << shift) - 1);
    let half = 1u128 << (shift - 1);
    if rem > half || (rem == half && (sticky || mant & 1 == 1)) {
        mant += 1;
    }
    // mant <= 2^53 is exact in f64; the power of two scales exactly.
    mant as f64 * 2f64.powi((shift - s) as i32)
}

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

    /// Total folds (saturating; see [`Folds::checked_lines`]).
    pub fn count(&self) -> u64 {
        self.row_folds.saturating_mul(self.col_folds)
    }

    /// Demand lines of the whole layer (SCALE-Sim's stall-free cycles + 1),
    /// or an error past [`MAX_FOLDS`] folds or 2^62 lines.
    pub fn checked_lines(&self) -> Result<u64> {
        let count = self.row_folds as u128 * self.col_folds as u128;
        if count > MAX_FOLDS as u128 {
            return Err(Error::input(format!(
                "{count} folds on this array (allowed: at most 2^32; use a larger array or a smaller layer)"
            )));
        }
        let lines = count * self.lines_per_fold as u128;
        if lines > 1 << 62 {
            return Err(Error::input(format!("{lines} cycles (allowed: at most 2^62)")));
        }
        Ok(lines as u64)
    }
}

/// SCALE-Sim's stall-free "Total Cycles": one less than its demand lines.
/// This is the whole of SCALE-Sim's compute timing; memory only adds stalls.
pub fn compute_cycles(m: &GemmMapping) -> Result<u64> {
    Ok(Folds::of(m).checked_lines()? - 1)
}

/// SCALE-Sim's "Mapping Efficiency %" and "Compute Util %": per-fold ratios
/// averaged over folds, in SCALE-Sim's fold order (column folds outer, row
/// folds inner) and float operation order, so the f64 results are bit-equal
/// to its Python floats.
///
/// Cost: one step per fold ([`MAX_FOLDS`] at most; callers check).
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
            map_sum += exact_ratio(used as u128, (r * c) as u128);
            util_sum +=
                exact_ratio(used as u128 * f.t as u128, (r * c) as u128 * f.util_cycles_per_fold as u128);
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
    let den = total_cycles as u128 * m.rows as u128 * m.cols as u128;
    if den == 0 {
        return 0.0;
    }
    exact_ratio(m.m as u128 * m.n as u128 * m.k as u128 * 100, den)
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
/// Also used line by line by [`super::memory`].
pub(crate) struct WriteBuffer {
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
    pub(crate) max_drain_end: Option<u64>,
    /// First cycle of any drain (SCALE-Sim's "DRAM OFMAP Start Cycle").
    pub(crate) min_drain_start: Option<u64>,
    /// Words written to DRAM, as SCALE-Sim counts them (each drain: its
    /// lines x width, less the empty slots of its last line).
    pub(crate) dram_writes: u64,
}

impl WriteBuffer {
    pub(crate) fn new(ofmap_sram_kb: u64, width: u64) -> WriteBuffer {
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
            min_drain_start: None,
            dram_writes: 0,
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
        self.dram_writes += data;
        self.min_drain_start = Some(self.min_drain_start.map_or(cycle, |m| m.min(cycle)));
        self.drain_start = end;
        let last = cycle + n - 1;
        self.max_drain_end = Some(self.max_drain_end.map_or(last, |m| m.max(last)));
        last
    }

    /// Serve `k` writes arriving together at `cycle` (`service_writes` for
    /// one demand line); returns the stall cycles the line incurred.
    pub(crate) fn line(&mut self, cycle: u64, mut k: u64) -> u64 {
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

    /// `n` consecutive demand lines with `k` writes each, the first at
    /// `cycle`; returns their stall cycles. Equal to calling [`Self::line`]
    /// per line, but jumps over runs of lines where nothing but storing can
    /// happen (no drain start, no stall).
    fn lines_const(&mut self, cycle: u64, n: u64, k: u64) -> u64 {
        let mut stalls = 0;
        let mut done = 0;
        while done < n {
            let cur = cycle + done + stalls;
            let safe = if cur < self.drain_end_cycle {
                // Lines that keep at least one word free, before the drain ends.
                let room = if self.free >= 1 { (self.free as u64 - 1) / k } else { 0 };
                room.min(self.drain_end_cycle - cur)
            } else if self.free >= self.active as i64 {
                // Lines that keep the free space at or above the active half.
                (self.free as u64 - self.active) / k
            } else {
                0
            };
            let m = safe.min(n - done);
            if m > 0 {
                self.store(m * k);
                done += m;
            } else {
                stalls += self.line(cur, k);
                done += 1;
            }
        }
        stalls
    }

    /// `empty_all_buffers`: drain what is left, starting at `cycle`.
    pub(crate) fn finish(&mut self, mut cycle: u64) {
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
/// USER mode's read stalls depend on the address streams, which only the
/// memory model ([`super::memory::layer_accesses`]) has: a USER config is an
/// error here.
pub fn layer_timing(cfg: &ScaleSimConfig, m: &GemmMapping) -> Result<LayerTiming> {
    if cfg.bandwidth_mode != crate::scalesim::BandwidthMode::Calc {
        return Err(Error::input(
            "InterfaceBandwidth USER: the closed-form timing is CALC mode's; use the memory model \
             (scalesim::scalesim_reports)",
        ));
    }
    let f = Folds::of(m);
    let lines = f.checked_lines()?;
    let (stalls, ofmap_stop) = ofmap_writes(cfg, m, &f, false);
    let total_cycles = lines - 1 + stalls;
    let (r, _) = (m.rows as u64, m.cols as u64);

    // First demand line of each operand (no stall can precede it).
    let (ifmap_first, filter_first) = match m.dataflow {
        Dataflow::Os => (0, 0),
        Dataflow::Ws => (r, r - r.min(m.k)),
        Dataflow::Is => (r - r.min(m.k), r),
    };
    let ifmap_start = prefetch_start(m.ifmap_elems_read, cfg.ifmap_sram_kb, ifmap_first);
    let filter_start = prefetch_start(m.k * m.n, cfg.filter_sram_kb, filter_first);
    let incl_prefetch = (ofmap_stop as i128 - ifmap_start.min(filter_start) as i128).max(0) as u64;

    let (mapping_eff, compute_util) = fold_averages(m);
    Ok(LayerTiming {
        total_cycles_incl_prefetch: incl_prefetch,
        total_cycles,
        stall_cycles: stalls,
        overall_util_pct: overall_util(m, total_cycles),
        mapping_efficiency_pct: mapping_eff,
        compute_util_pct: compute_util,
    })
}

/// Run the ofmap demand of every fold through the write buffer; returns
/// (stall cycles, ofmap DRAM stop cycle). `line_by_line` disables the
/// run-length shortcut (for testing that it changes nothing).
fn ofmap_writes(cfg: &ScaleSimConfig, m: &GemmMapping, f: &Folds, line_by_line: bool) -> (u64, u64) {
    let (r, c) = (m.rows as u64, m.cols as u64);
    let mut wb = WriteBuffer::new(cfg.ofmap_sram_kb, c);
    let mut stalls = 0u64;
    let mut base = 0u64; // first line of the current fold
    for fc in 0..f.col_folds {
        let cols_used = c.min(f.sc - fc * c);
        for fr in 0..f.row_folds {
            // OS writes the fold's used rows (flipped, so the unused rows come
            // first) after T - 1 empty lines; WS and IS write T rows after
            // 2R - 1 empty lines.
            let fold = match m.dataflow {
                Dataflow::Os => {
                    let rows_used = r.min(f.sr - fr * r);
                    OfmapFold { prefix: f.t - 1 + (r - rows_used), valid_rows: rows_used, cols_used }
                }
                Dataflow::Ws | Dataflow::Is => OfmapFold { prefix: 2 * r - 1, valid_rows: f.t, cols_used },
            };
            if line_by_line {
                for j in 0..f.lines_per_fold {
                    let k = fold.writes_on_line(j);
                    if k > 0 {
                        stalls += wb.line(base + j + stalls, k);
                    }
                }
            } else {
                // Writes per line ramp up 1, 2, .., a - 1, stay at a for
                // |cols_used - valid_rows| + 1 lines, then ramp down.
                let (p, v, cu) = (fold.prefix, fold.valid_rows, fold.cols_used);
                let a = cu.min(v);
                let mut j = p;
                for w in 1..a {
                    stalls += wb.line(base + j + stalls, w);
                    j += 1;
                }
                let plateau = cu.max(v) - a + 1;
                stalls += wb.lines_const(base + j + stalls, plateau, a);
                j += plateau;
                for w in (1..a).rev() {
                    stalls += wb.line(base + j + stalls, w);
                    j += 1;
                }
                debug_assert_eq!(j, p + v + cu - 1);
            }
            base += f.lines_per_fold;
        }
    }
    let last_line_cycle = base - 1 + stalls;
    wb.finish(last_line_cycle);
    (stalls, wb.max_drain_end.unwrap_or(last_line_cycle))
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
        assert_eq!(compute_cycles(&map(Dataflow::Os, 8, 16, 25, 216, 48)).unwrap(), 2855);
        assert_eq!(compute_cycles(&map(Dataflow::Ws, 8, 16, 25, 216, 48)).unwrap(), 4454);
        assert_eq!(compute_cycles(&map(Dataflow::Is, 8, 16, 25, 216, 48)).unwrap(), 4211);
        // Too many folds is an error, not an overflow or a hang.
        assert!(compute_cycles(&map(Dataflow::Ws, 1, 1, 1, 1 << 40, 1 << 6)).is_err());
    }

    fn cfg(ofmap_kb: u64) -> ScaleSimConfig {
        ScaleSimConfig {
            run_name: "t".into(),
            rows: 1,
            cols: 1,
            dataflow: Dataflow::Os,
            ifmap_sram_kb: 1,
            filter_sram_kb: 1,
            ofmap_sram_kb: ofmap_kb,
            bandwidth_mode: crate::scalesim::BandwidthMode::Calc,
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// The run-length shortcut gives the same stalls and DRAM stop as
        /// serving the write buffer one demand line at a time.
        #[test]
        fn run_length_shortcut_equals_line_by_line(
            df in 0usize..3, rows in 1u32..40, cols in 1u32..1100,
            m in 1u64..300, k in 1u64..300, n in 1u64..300, ofmap_kb in 1u64..4,
        ) {
            let dataflow = [Dataflow::Os, Dataflow::Ws, Dataflow::Is][df];
            let g = map(dataflow, rows, cols, m, k, n);
            let c = cfg(ofmap_kb);
            let f = Folds::of(&g);
            proptest::prop_assert_eq!(ofmap_writes(&c, &g, &f, false), ofmap_writes(&c, &g, &f, true));
        }

        /// CALC mode never stalls (docs/scalesim.md gives the proof), so
        /// Total Cycles is the closed form.
        #[test]
        fn calc_mode_never_stalls(
            df in 0usize..3, rows in 1u32..64, cols in 1u32..1100,
            m in 1u64..400, k in 1u64..400, n in 1u64..400, ofmap_kb in 1u64..3,
        ) {
            let dataflow = [Dataflow::Os, Dataflow::Ws, Dataflow::Is][df];
            let g = map(dataflow, rows, cols, m, k, n);
            let t = layer_timing(&cfg(ofmap_kb), &g).unwrap();
            proptest::prop_assert_eq!(t.stall_cycles, 0);
            proptest::prop_assert_eq!(t.total_cycles, compute_cycles(&g).unwrap());
        }

        /// exact_ratio is the correctly rounded quotient: it equals f64
        /// division where that is exact, and brackets the true quotient.
        #[test]
        fn exact_ratio_is_correctly_rounded(n in 1u128..(1u128 << 100), d in 1u128..(1u128 << 100)) {
            let q = exact_ratio(n, d);
            // q = a * 2^e exactly; compare n/d with q's neighbours' midpoints
            // in exact integer arithmetic: |n - q d| <= ulp(q)/2 * d.
            let (mant, exp) = {
                let bits = q.to_bits();
                let e = ((bits >> 52) & 0x7ff) as i64 - 1075;
                (((bits & ((1u64 << 52) - 1)) | (1u64 << 52)) as u128, e)
            };
            let nb = BigUint::from(n);
            let db = BigUint::from(d);
            // Scale everything by 2^(-exp + 1) when exp < 0 to stay integral.
            let sh = (1 - exp).max(0) as usize;
            let lhs = nb << sh; // n * 2^sh
            let qd = (BigUint::from(mant) * &db) << ((exp + sh as i64) as usize); // q*d*2^sh
            let half_ulp_d = &db << ((exp - 1 + sh as i64) as usize); // ulp/2 * d * 2^sh
            let diff = if lhs > qd { &lhs - &qd } else { &qd - &lhs };
            proptest::prop_assert!(diff <= half_ulp_d);
        }
    }

    #[test]
    fn exact_ratio_small_cases() {
        assert_eq!(exact_ratio(1, 3), 1.0 / 3.0);
        assert_eq!(exact_ratio((1 << 60) + 1, 1 << 60), 1.0);
        assert_eq!(exact_ratio(3 << 70, 1 << 70), 3.0);
        // Halfway between 1 and 1 + 2^-52 rounds to even (1.0); just above rounds up.
        assert_eq!(exact_ratio((1 << 60) + (1 << 7), 1 << 60), 1.0);
        assert_eq!(exact_ratio((1 << 60) + (1 << 7) + 1, 1 << 60), 1.0 + f64::EPSILON);
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
