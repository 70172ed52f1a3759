//! SCALE-Sim v3's memory system (CALC bandwidth mode), reproduced on the
//! actual address streams: the per-cycle demand lines of the ifmap, filter
//! and ofmap operands, served by SCALE-Sim's estimate-bandwidth read buffers
//! (`read_buffer_estimate_bw.py`) and its ofmap write buffer
//! (`write_buffer.py`, shared with [`super::timing`]). It yields the numbers
//! of `BANDWIDTH_REPORT.csv` and `DETAILED_ACCESS_REPORT.csv`, and the
//! SRAM/DRAM access counts the energy report uses. Every rule is stated in
//! `docs/scalesim.md` ("The memory system").
//!
//! Cost: one step per demand-matrix element (`lines x (R + 2C)` per layer,
//! [`demand_elems`]) plus one word per address of the ifmap and filter
//! address spaces; `bitmac scalesim` checks the sum against
//! [`crate::limits::SCALESIM_MAX_MEMORY_WORK`] before it starts.

use super::timing::{exact_ratio, Folds, WriteBuffer};
use super::{py_float, Dataflow, GemmMapping, Layer, LayerShape, ScaleSimConfig};
use crate::error::{Error, Result};

/// One operand's accesses as SCALE-Sim reports them: the first and last
/// cycle and the number of words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub start: i64,
    pub stop: i64,
    pub count: u64,
}

/// The memory-system numbers of one layer (SCALE-Sim's
/// `DETAILED_ACCESS_REPORT.csv` row, plus the total and stall cycles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LayerAccesses {
    /// "Total Cycles" (the cycle of the last demand line, stalls included).
    pub total_cycles: u64,
    pub stall_cycles: u64,
    /// SRAM ifmap reads, filter reads, ofmap writes (requests from the array).
    pub sram: [Span; 3],
    /// DRAM ifmap reads, filter reads, ofmap writes (SRAM <-> DRAM traffic).
    pub dram: [Span; 3],
}

impl LayerAccesses {
    /// The six averages of SCALE-Sim's `BANDWIDTH_REPORT.csv` row: SRAM words
    /// / Total Cycles (Python `int / int`, correctly rounded; 0.0 when Total
    /// Cycles is 0, where SCALE-Sim divides by zero), then DRAM words /
    /// (stop - start + 1) (one f64 division, as numpy's float64 does).
    pub fn bandwidths(&self) -> [f64; 6] {
        let mut out = [0.0; 6];
        for (i, s) in self.sram.iter().enumerate() {
            out[i] = if self.total_cycles == 0 {
                0.0
            } else {
                exact_ratio(s.count as u128, self.total_cycles as u128)
            };
        }
        for (i, d) in self.dram.iter().enumerate() {
            out[3 + i] = d.count as f64 / (d.stop - d.start + 1) as f64;
        }
        out
    }
}

/// Demand-matrix elements of one layer: lines x (ifmap width + filter width
/// + ofmap width), R + 2C for os and ws, 2C + R for is (the same sum).
pub fn demand_elems(m: &GemmMapping) -> u128 {
    let f = Folds::of(m);
    f.row_folds as u128
        * f.col_folds as u128
        * f.lines_per_fold as u128
        * (m.rows as u128 + 2 * m.cols as u128)
}

/// Words of the address spaces the read buffers index (ifmap and filter).
pub fn address_space(layer: &Layer) -> u128 {
    let d = layer.gemm_dims();
    let ifmap = match &layer.shape {
        LayerShape::Conv(c) => c.ifmap_h as u128 * c.ifmap_w as u128 * c.channels as u128,
        LayerShape::Gemm { m, k, .. } => *m as u128 * *k as u128,
    };
    ifmap + d.k as u128 * d.n as u128
}

/// The work estimate of [`layer_accesses`] for a layer: demand elements plus
/// address-space words.
pub fn layer_work(layer: &Layer, m: &GemmMapping) -> u128 {
    demand_elems(m) + address_space(layer)
}

/// SCALE-Sim's ifmap operand matrix (M x K) as an address function:
/// `addr(m, k) = ((oy*S + fy) * W + ox*S + fx) * C + c` relative to
/// `IfmapOffset`, with `(oy, ox) = divmod(m, E_w)` and `(fy, fx, c)` the
/// window position of k (row-major, channel fastest); -1 ("no address") when
/// the window element lies outside the ifmap (SCALE-Sim's edge-window
/// quirk). A GEMM row is the conv layer `M x K` ifmap, `1 x K` filter.
struct IfmapAddr {
    /// Per output pixel m: (input row, input column, base address).
    px: Vec<(u64, u64, i64)>,
    /// Per window element k: (row, column, address offset).
    win: Vec<(u64, u64, i64)>,
    h: u64,
    w: u64,
}

impl IfmapAddr {
    fn new(layer: &Layer) -> IfmapAddr {
        let (h, w, fw, c, s, ew, m, k) = match &layer.shape {
            LayerShape::Conv(cs) => {
                let (eh, ew) = cs.ofmap_dims();
                let k = cs.filter_h * cs.filter_w * cs.channels;
                (cs.ifmap_h, cs.ifmap_w, cs.filter_w, cs.channels, cs.stride, ew, eh * ew, k)
            }
            LayerShape::Gemm { m, k, .. } => (*m, *k, *k, 1, 1, 1, *m, *k),
        };
        let px = (0..m)
            .map(|i| {
                let (r, col) = ((i / ew) * s, (i % ew) * s);
                (r, col, ((r * w + col) * c) as i64)
            })
            .collect();
        let win = (0..k)
            .map(|j| {
                let (fy, rest) = (j / (fw * c), j % (fw * c));
                let (fx, ch) = (rest / c, rest % c);
                (fy, fx, ((fy * w + fx) * c + ch) as i64)
            })
            .collect();
        IfmapAddr { px, win, h, w }
    }

    #[inline]
    fn at(&self, m: u64, k: u64) -> i64 {
        let (pr, pc, pa) = self.px[m as usize];
        let (wr, wc, wa) = self.win[k as usize];
        if pr + wr < self.h && pc + wc < self.w {
            pa + wa
        } else {
            -1
        }
    }
}

/// SCALE-Sim's estimate-bandwidth read buffer (`ReadBufferEstimateBw`) with
/// its default shape: 100 sets of `P = floor(words / 100)` addresses, the
/// first 50 the active half; prefetches at 10 words a cycle; DRAM latency 1.
struct EstimateReadBuffer {
    per_set: u64,
    /// Per address, the id of the last set it was put in (u32::MAX: none).
    last_set: Vec<u32>,
    current_set: u64,
    elems_current: u64,
    read_start: u64,
    read_end: u64,
    prefetch_start: u64,
    active_done: bool,
    last_start: i64,
    last_end: i64,
    first_request: Option<i64>,
    dram_reads: u64,
    dram_first: Option<i64>,
    dram_last: i64,
}

const SETS_ACTIVE: u64 = 50;
const SETS_PREFETCH: u64 = 50;
const DEFAULT_BW: u64 = 10;
const DRAM_LATENCY: i64 = 1;

impl EstimateReadBuffer {
    fn new(sram_kb: u64, address_space: u64) -> EstimateReadBuffer {
        EstimateReadBuffer {
            per_set: sram_kb * 1024 / 100,
            last_set: vec![u32::MAX; address_space as usize],
            current_set: 0,
            elems_current: 0,
            read_start: 0,
            read_end: SETS_ACTIVE - 1,
            prefetch_start: 0,
            active_done: false,
            last_start: -2,
            last_end: -1,
            first_request: None,
            dram_reads: 0,
            dram_first: None,
            dram_last: 0,
        }
    }

    /// `prefetch()`: the DRAM requests of one prefetch, one row a cycle from
    /// `last_start` to `last_end`, answered one cycle later.
    fn prefetch(&mut self, words: u64) -> Result<()> {
        let cycles = self.last_end - self.last_start + 1;
        if cycles <= 0 {
            return Err(Error::input(
                "SCALE-Sim's estimate-bandwidth read buffer filled two prefetch windows in one cycle \
                 (it divides by zero there; use a larger SRAM or a narrower array)",
            ));
        }
        self.dram_reads += words;
        self.dram_first.get_or_insert(self.last_start + DRAM_LATENCY);
        self.dram_last = self.last_end + DRAM_LATENCY;
        Ok(())
    }

    /// `manage_prefetches(cycle, addr)`.
    fn access(&mut self, cycle: i64, addr: usize) -> Result<()> {
        let s = self.last_set[addr];
        let window_end = self.current_set.min(self.read_end + 1);
        if s != u32::MAX {
            let s = s as u64;
            // A hit in the active window, or already in the set being filled.
            if (self.read_start <= s && s < window_end) || s == self.current_set {
                return Ok(());
            }
        }
        self.last_set[addr] =
            u32::try_from(self.current_set).map_err(|_| Error::input("too many read-buffer sets"))?;
        self.elems_current += 1;
        if self.elems_current < self.per_set {
            return Ok(());
        }
        self.elems_current = 0;
        self.current_set += 1;
        if self.current_set != self.read_end + 1 {
            return Ok(());
        }
        let words = SETS_PREFETCH * self.per_set;
        if !self.active_done {
            // The active half, timed to arrive just before the first demand.
            let first = self.first_request.unwrap_or(0);
            self.last_end = first - 1 - DRAM_LATENCY;
            self.last_start = self.last_end - words.div_ceil(DEFAULT_BW) as i64 + 1;
            self.prefetch(SETS_ACTIVE * self.per_set)?;
            self.prefetch_start = self.read_end + 1;
            self.active_done = true;
        } else {
            self.prefetch(words)?;
            self.prefetch_start += SETS_PREFETCH;
        }
        self.read_start += SETS_PREFETCH;
        self.read_end += SETS_PREFETCH;
        self.last_start = self.last_end + 1;
        self.last_end = cycle;
        Ok(())
    }

    /// Serve one demand line at `cycle` (`service_reads`).
    fn line(&mut self, cycle: i64, addrs: &[i64]) -> Result<()> {
        if self.first_request.is_none() && addrs.iter().any(|&a| a >= 0) {
            self.first_request = Some(cycle);
        }
        for &a in addrs {
            if a >= 0 {
                self.access(cycle, a as usize)?;
            }
        }
        Ok(())
    }

    /// `complete_all_prefetches()`: fetch what is left; returns the DRAM span.
    fn finish(&mut self) -> Result<Span> {
        let sets = if self.elems_current > 0 { self.current_set + 1 } else { self.current_set };
        if !self.active_done {
            // Everything read fits: one prefetch ending before cycle 0.
            self.last_end = -1 - DRAM_LATENCY;
            self.last_start = self.last_end - (sets * self.per_set).div_ceil(DEFAULT_BW) as i64 + 1;
        }
        let inserted_since = self.inserted_total() - self.dram_reads;
        self.prefetch(inserted_since)?;
        Ok(Span { start: self.dram_first.unwrap_or(0), stop: self.dram_last, count: self.dram_reads })
    }

    fn inserted_total(&self) -> u64 {
        self.current_set * self.per_set + self.elems_current
    }
}

/// First and last serviced cycle of lines that carry an address.
#[derive(Default)]
struct SramSpan {
    first: Option<i64>,
    last: i64,
}

impl SramSpan {
    fn see(&mut self, cycle: i64, addrs: &[i64]) {
        if addrs.iter().any(|&a| a >= 0) {
            self.first.get_or_insert(cycle);
            self.last = cycle;
        }
    }
}

/// SCALE-Sim's SRAM request counts (`get_ifmap_requests` etc.): the sizes of
/// the operand slices each fold cuts, `-1` entries included. os: ifmap
/// `ceil(N/C)·M·K`, filter `ceil(M/R)·K·N`, ofmap `M·N + folds·(R + C)` (a
/// quirk: os also adds the padded block's rows + columns per fold); ws: ifmap
/// `ceil(N/C)·M·K`, filter `K·N`, ofmap `ceil(K/R)·M·N`; is: ifmap `M·K`,
/// filter `ceil(M/C)·K·N`, ofmap `ceil(K/R)·M·N`.
pub fn sram_requests(m: &GemmMapping) -> [u64; 3] {
    let f = Folds::of(m);
    let (mm, k, n) = (m.m, m.k, m.n);
    let (r, c) = (m.rows as u64, m.cols as u64);
    match m.dataflow {
        Dataflow::Os => [f.col_folds * mm * k, f.row_folds * k * n, mm * n + f.count() * (r + c)],
        Dataflow::Ws => [f.col_folds * mm * k, k * n, f.row_folds * mm * n],
        Dataflow::Is => [mm * k, f.col_folds * k * n, f.row_folds * mm * n],
    }
}

/// Run one layer's demand lines through SCALE-Sim's CALC-mode memory system.
pub fn layer_accesses(cfg: &ScaleSimConfig, layer: &Layer, m: &GemmMapping) -> Result<LayerAccesses> {
    let f = Folds::of(m);
    f.checked_lines()?;
    let (r, c) = (m.rows as u64, m.cols as u64);
    let (mm, k, n) = (m.m, m.k, m.n);
    let ifmap = IfmapAddr::new(layer);
    let if_space = match &layer.shape {
        LayerShape::Conv(cs) => cs.ifmap_h * cs.ifmap_w * cs.channels,
        LayerShape::Gemm { m, k, .. } => m * k,
    };
    let mut ifbuf = EstimateReadBuffer::new(cfg.ifmap_sram_kb, if_space);
    let mut fbuf = EstimateReadBuffer::new(cfg.filter_sram_kb, k * n);
    // CALC mode: the ofmap DRAM write line is the array width.
    let mut wb = WriteBuffer::new(cfg.ofmap_sram_kb, c);
    let (mut if_span, mut f_span, mut o_span) =
        (SramSpan::default(), SramSpan::default(), SramSpan::default());
    // Widths of the three demand lines.
    let (wi, wf) = match m.dataflow {
        Dataflow::Os | Dataflow::Ws => (r, c),
        Dataflow::Is => (c, r),
    };
    let mut li = vec![-1i64; wi as usize];
    let mut lf = vec![-1i64; wf as usize];
    let mut lo = vec![-1i64; c as usize];
    let filt = |kk: u64, nn: u64| (nn * k + kk) as i64;
    let ofm = |row: u64, col: u64| (row * n + col) as i64;
    let mut stalls = 0u64;
    let mut line_no = 0u64;
    for fc in 0..f.col_folds {
        let c0 = fc * c;
        let cu = c.min(f.sc - c0);
        for fr in 0..f.row_folds {
            let r0 = fr * r;
            let ru = r.min(f.sr - r0);
            for j in 0..f.lines_per_fold {
                // Skewed blocks: column x of line j holds row j - x of the
                // block (see docs/scalesim.md for each dataflow's blocks).
                let skew = |x: u64, pre: u64, len: u64| -> Option<u64> {
                    let t = j.checked_sub(x)?.checked_sub(pre)?;
                    (t < len).then_some(t)
                };
                match m.dataflow {
                    Dataflow::Os => {
                        for x in 0..r {
                            li[x as usize] = match skew(x, 0, k) {
                                Some(t) if x < ru => ifmap.at(r0 + x, t),
                                _ => -1,
                            };
                        }
                        for x in 0..c {
                            lf[x as usize] = match skew(x, 0, k) {
                                Some(t) if x < cu => filt(t, c0 + x),
                                _ => -1,
                            };
                            lo[x as usize] = match skew(x, k - 1, r) {
                                Some(t) if x < cu && r - 1 - t < ru => ofm(r0 + (r - 1 - t), c0 + x),
                                _ => -1,
                            };
                        }
                    }
                    Dataflow::Ws => {
                        for x in 0..r {
                            li[x as usize] = match skew(x, r, mm) {
                                Some(t) if x < ru => ifmap.at(t, r0 + x),
                                _ => -1,
                            };
                        }
                        for x in 0..c {
                            lf[x as usize] = if j < r && r - 1 - j < ru && x < cu {
                                filt(r0 + (r - 1 - j), c0 + x)
                            } else {
                                -1
                            };
                            lo[x as usize] = match skew(x, 2 * r - 1, mm) {
                                Some(t) if x < cu => ofm(t, c0 + x),
                                _ => -1,
                            };
                        }
                    }
                    Dataflow::Is => {
                        for x in 0..c {
                            li[x as usize] = if j < r && r - 1 - j < ru && x < cu {
                                ifmap.at(c0 + x, r0 + (r - 1 - j))
                            } else {
                                -1
                            };
                            lo[x as usize] = match skew(x, 2 * r - 1, n) {
                                Some(t) if x < cu => ofm(c0 + x, t),
                                _ => -1,
                            };
                        }
                        for x in 0..r {
                            lf[x as usize] = match skew(x, r, n) {
                                Some(t) if x < ru => filt(r0 + x, t),
                                _ => -1,
                            };
                        }
                    }
                }
                let cycle = (line_no + stalls) as i64;
                ifbuf.line(cycle, &li)?;
                fbuf.line(cycle, &lf)?;
                // Reads are served after the hit latency (1); writes at once
                // (plus any write-buffer stall).
                if_span.see(cycle + 1, &li);
                f_span.see(cycle + 1, &lf);
                let writes = lo.iter().filter(|&&a| a >= 0).count() as u64;
                let line_stall = if writes > 0 { wb.line(cycle as u64, writes) } else { 0 };
                o_span.see(cycle + line_stall as i64, &lo);
                stalls += line_stall;
                line_no += 1;
            }
        }
    }
    let last_cycle = line_no - 1 + stalls;
    wb.finish(last_cycle);
    let reqs = sram_requests(m);
    let sram_span = |s: &SramSpan, count: u64| Span { start: s.first.unwrap_or(0), stop: s.last, count };
    let ofmap_dram = Span {
        start: wb.min_drain_start.unwrap_or(0) as i64,
        stop: wb.max_drain_end.unwrap_or(last_cycle) as i64,
        count: wb.dram_writes,
    };
    Ok(LayerAccesses {
        total_cycles: last_cycle,
        stall_cycles: stalls,
        sram: [sram_span(&if_span, reqs[0]), sram_span(&f_span, reqs[1]), sram_span(&o_span, reqs[2])],
        dram: [ifbuf.finish()?, fbuf.finish()?, ofmap_dram],
    })
}

/// SCALE-Sim v3's `BANDWIDTH_REPORT.csv` header (sparsity off), verbatim.
pub const BANDWIDTH_REPORT_HEADER: &str =
    "LayerID, Avg IFMAP SRAM BW, Avg FILTER SRAM BW, Avg OFMAP SRAM BW, \
Avg IFMAP DRAM BW, Avg FILTER DRAM BW, Avg OFMAP DRAM BW,";

/// SCALE-Sim v3's `DETAILED_ACCESS_REPORT.csv` header, verbatim.
pub const DETAILED_ACCESS_REPORT_HEADER: &str = "LayerID, \
SRAM IFMAP Start Cycle, SRAM IFMAP Stop Cycle, SRAM IFMAP Reads, \
SRAM Filter Start Cycle, SRAM Filter Stop Cycle, SRAM Filter Reads, \
SRAM OFMAP Start Cycle, SRAM OFMAP Stop Cycle, SRAM OFMAP Writes, \
DRAM IFMAP Start Cycle, DRAM IFMAP Stop Cycle, DRAM IFMAP Reads, \
DRAM Filter Start Cycle, DRAM Filter Stop Cycle, DRAM Filter Reads, \
DRAM OFMAP Start Cycle, DRAM OFMAP Stop Cycle, DRAM OFMAP Writes,";

/// Render `BANDWIDTH_REPORT.csv`: six floats a row as Python's `str`.
pub fn bandwidth_report_csv(layers: &[LayerAccesses]) -> String {
    let mut s = String::from(BANDWIDTH_REPORT_HEADER);
    s.push('\n');
    for (id, a) in layers.iter().enumerate() {
        let cols: Vec<String> = a.bandwidths().iter().map(|&x| py_float(x)).collect();
        s.push_str(&format!("{id}, {},\n", cols.join(", ")));
    }
    s
}

/// Render `DETAILED_ACCESS_REPORT.csv`: cycles are numpy floats in
/// SCALE-Sim (`9.0`, `-33.0`), counts are integers.
pub fn detailed_access_report_csv(layers: &[LayerAccesses]) -> String {
    let mut s = String::from(DETAILED_ACCESS_REPORT_HEADER);
    s.push('\n');
    for (id, a) in layers.iter().enumerate() {
        let cols: Vec<String> = a
            .sram
            .iter()
            .chain(a.dram.iter())
            .map(|sp| format!("{}, {}, {}", py_float(sp.start as f64), py_float(sp.stop as f64), sp.count))
            .collect();
        s.push_str(&format!("{id}, {},\n", cols.join(", ")));
    }
    s
}

/// Operand widths and the energy table of `bitmac scalesim`'s energy report.
#[derive(Clone, Debug)]
pub struct EnergySetup {
    pub table: crate::energy::EnergyTable,
    pub act_bits: u32,
    pub weight_bits: u32,
    pub acc_bits: u32,
    /// Width of the (requantized) output words written to DRAM.
    pub out_bits: u32,
}

impl Default for EnergySetup {
    /// SCALE-Sim's 1-byte words for activations, weights and outputs, a
    /// 32-bit accumulator, and `src/energy.rs`'s default (Horowitz) table.
    fn default() -> EnergySetup {
        EnergySetup { table: Default::default(), act_bits: 8, weight_bits: 8, acc_bits: 32, out_bits: 8 }
    }
}

/// One layer's energy from the memory model's counts
/// ([`crate::energy::energy_with_accesses`]): SRAM ifmap and filter reads
/// and ofmap writes as SCALE-Sim counts them (its os ofmap quirk included),
/// partial-sum read-backs as `energy::Accesses::of` counts them (0 for os),
/// DRAM words as the read buffers fetched and the write buffer drained;
/// outputs requantized (one requant per output).
pub fn layer_energy(
    cfg: &ScaleSimConfig,
    m: &GemmMapping,
    a: &LayerAccesses,
    e: &EnergySetup,
) -> crate::energy::Breakdown {
    let dataflow = match m.dataflow {
        Dataflow::Os => crate::hw::Dataflow::Os,
        Dataflow::Ws => crate::hw::Dataflow::Ws,
        Dataflow::Is => crate::hw::Dataflow::Is,
    };
    let shape = crate::energy::GemmShape {
        dataflow,
        rows: m.rows as usize,
        cols: m.cols as usize,
        m: m.m,
        k: m.k,
        n: m.n,
        act_bits: e.act_bits,
        weight_bits: e.weight_bits,
        acc_bits: e.acc_bits,
        sram_bytes: [cfg.ifmap_sram_kb * 1024, cfg.filter_sram_kb * 1024, cfg.ofmap_sram_kb * 1024],
        zero_products: None,
        // The DRAM counts are passed to energy_with_accesses below.
        dram_words: None,
        requantized: m.m * m.n,
        out_bits: e.out_bits,
    };
    let mut acc = crate::energy::Accesses::of(dataflow, shape.rows, shape.cols, m.m, m.k, m.n);
    acc.ifmap_sram_reads = a.sram[0].count;
    acc.filter_sram_reads = a.sram[1].count;
    acc.ofmap_sram_writes = a.sram[2].count;
    crate::energy::energy_with_accesses(
        &e.table,
        &shape,
        acc,
        [a.dram[0].count, a.dram[1].count, a.dram[2].count],
    )
}

/// `ENERGY_REPORT.csv` header (bitmac's own file, in SCALE-Sim's style).
pub const ENERGY_REPORT_HEADER: &str = "LayerID, Layer, MACs, \
IFMAP SRAM Reads, FILTER SRAM Reads, OFMAP SRAM Writes, OFMAP SRAM Reads, \
IFMAP DRAM Reads, FILTER DRAM Reads, OFMAP DRAM Writes, \
MUL pJ, ADD pJ, REG pJ, SRAM pJ, DRAM pJ, REQUANT pJ, Total pJ,";

/// One row of `ENERGY_REPORT.csv`.
pub struct EnergyRow<'a> {
    pub name: &'a str,
    pub macs: u64,
    /// DRAM ifmap reads, filter reads, ofmap writes (the memory model's).
    pub dram: [u64; 3],
    pub energy: crate::energy::Breakdown,
}

/// Render `ENERGY_REPORT.csv`: one row per layer, energies as Python's
/// `str(float)` ([`py_float`]), then a `Total` row summing the layers in
/// order (counts as integers, energies as f64 sums in layer order).
pub fn energy_report_csv(rows: &[EnergyRow]) -> String {
    let mut s = String::from(ENERGY_REPORT_HEADER);
    s.push('\n');
    let line = |id: &str, name: &str, macs: u64, dram: [u64; 3], b: &crate::energy::Breakdown| {
        let a = &b.accesses;
        format!(
            "{id}, {name}, {macs}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {},\n",
            a.ifmap_sram_reads,
            a.filter_sram_reads,
            a.ofmap_sram_writes,
            a.ofmap_sram_reads,
            dram[0],
            dram[1],
            dram[2],
            py_float(b.mul_pj),
            py_float(b.add_pj),
            py_float(b.reg_pj),
            py_float(b.sram_pj),
            py_float(b.dram_pj),
            py_float(b.requant_pj),
            py_float(b.total()),
        )
    };
    let mut total = crate::energy::Breakdown::default();
    let (mut macs, mut dram) = (0u64, [0u64; 3]);
    for (id, r) in rows.iter().enumerate() {
        s.push_str(&line(&id.to_string(), r.name, r.macs, r.dram, &r.energy));
        total.add(&r.energy);
        macs += r.macs;
        for (t, d) in dram.iter_mut().zip(r.dram) {
            *t += d;
        }
    }
    s.push_str(&line("Total", "", macs, dram, &total));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalesim::{BandwidthMode, ConvShape};

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(60))]
        /// The line-by-line memory model and the closed-form timing model
        /// (timing.rs) agree on Total Cycles, Stall Cycles and on Total
        /// Cycles (incl. prefetch) = ofmap DRAM stop - earliest read
        /// prefetch, for random conv layers, arrays, dataflows and SRAMs.
        #[test]
        fn memory_model_agrees_with_timing_model(
            df in 0usize..3, rows in 1u32..12, cols in 1u32..12,
            h in 1u64..14, w in 1u64..14, fh in 1u64..5, fw in 1u64..5, ch in 1u64..5, nf in 1u64..20,
            stride in 1u64..4, kb in (1u64..3, 1u64..3, 1u64..3),
        ) {
            let (h, w) = (h.max(fh), w.max(fw));
            let layer = Layer {
                name: "t".into(),
                shape: LayerShape::Conv(ConvShape {
                    ifmap_h: h, ifmap_w: w, filter_h: fh, filter_w: fw, channels: ch, num_filters: nf, stride,
                }),
                line: 1,
            };
            let dataflow = [Dataflow::Os, Dataflow::Ws, Dataflow::Is][df];
            let cfg = ScaleSimConfig {
                run_name: "t".into(), rows, cols, dataflow,
                ifmap_sram_kb: kb.0, filter_sram_kb: kb.1, ofmap_sram_kb: kb.2,
                bandwidth_mode: BandwidthMode::Calc,
            };
            let m = GemmMapping::new(&layer, dataflow, rows, cols);
            let t = super::super::timing::layer_timing(&cfg, &m).unwrap();
            let a = layer_accesses(&cfg, &layer, &m).unwrap();
            proptest::prop_assert_eq!(a.total_cycles, t.total_cycles);
            proptest::prop_assert_eq!(a.stall_cycles, t.stall_cycles);
            let incl = a.dram[2].stop - a.dram[0].start.min(a.dram[1].start);
            proptest::prop_assert_eq!(incl.max(0) as u64, t.total_cycles_incl_prefetch);
            // Every request the SRAMs see is a slice element; DRAM reads
            // cover at least the distinct addresses read.
            proptest::prop_assert!(a.dram[1].count >= m.k * m.n);
            proptest::prop_assert!(a.dram[0].count >= m.ifmap_elems_read);
        }
    }
}
