//! SCALE-Sim v3's memory system (CALC and USER bandwidth modes), reproduced
//! on the actual address streams: the per-cycle demand lines of the ifmap,
//! filter and ofmap operands, served by SCALE-Sim's read buffers (CALC:
//! `read_buffer_estimate_bw.py`, never stalls; USER: `read_buffer.py`,
//! stalls on late prefetches) and its ofmap write buffer (`write_buffer.py`,
//! shared with [`super::timing`]). It yields the numbers of
//! `BANDWIDTH_REPORT.csv` and `DETAILED_ACCESS_REPORT.csv`, USER mode's
//! COMPUTE_REPORT cycles ([`LayerAccesses::timing`]), and the SRAM/DRAM
//! access counts the energy report uses. Every rule is stated in
//! `docs/scalesim.md` ("The memory system", "USER bandwidth mode").
//!
//! Cost: one step per demand-matrix element (`lines x (R + 2C)` per layer,
//! [`demand_elems`]) plus one word per address of the ifmap and filter
//! address spaces, plus in USER mode two steps and one stored set id per
//! prefetch-matrix entry ([`prefetch_elems`]); `bitmac scalesim` checks the
//! sum ([`layer_work`]) against [`crate::limits::SCALESIM_MAX_MEMORY_WORK`]
//! before it starts.

use super::timing::{exact_ratio, fold_averages, overall_util, Folds, WriteBuffer};
use super::{py_float, BandwidthMode, Dataflow, GemmMapping, Layer, LayerShape, LayerTiming, ScaleSimConfig};
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
    /// The COMPUTE_REPORT row of this layer from the memory model (how
    /// SCALE-Sim itself fills it): Total and Stall Cycles as simulated,
    /// Total Cycles (incl. prefetch) = ofmap DRAM stop - min(ifmap, filter
    /// DRAM start) (0 if negative), utilizations from the fold mapping.
    pub fn timing(&self, m: &GemmMapping) -> LayerTiming {
        let incl = self.dram[2].stop - self.dram[0].start.min(self.dram[1].start);
        let (mapping_eff, compute_util) = fold_averages(m);
        LayerTiming {
            total_cycles_incl_prefetch: incl.max(0) as u64,
            total_cycles: self.total_cycles,
            stall_cycles: self.stall_cycles,
            overall_util_pct: overall_util(m, self.total_cycles),
            mapping_efficiency_pct: mapping_eff,
            compute_util_pct: compute_util,
        }
    }

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
/// address-space words, plus in USER mode both operands' prefetch-matrix
/// entries (read twice to build the read sets, one stored set id each). A
/// USER-mode miss costs one binary search however many rotations it needs
/// ([`UserReadBuffer`]), so the demand elements bound the rest.
pub fn layer_work(cfg: &ScaleSimConfig, layer: &Layer, m: &GemmMapping) -> u128 {
    let user = match cfg.bandwidth_mode {
        BandwidthMode::Calc => 0,
        BandwidthMode::User(_) => prefetch_elems(m),
    };
    demand_elems(m) + address_space(layer) + user
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

/// SCALE-Sim's USER-mode read buffer (`read_buffer.py` without custom
/// layouts or Ramulator), one per operand. Every rule is in
/// `docs/scalesim.md` ("USER mode"); in short:
///
/// - the operand's *prefetch order* (its prefetch matrix, see
///   [`prefetch_order`]) without its -1 entries is cut into sets of
///   `E = ceil(words / 100)` addresses, plus a last partial (possibly empty)
///   set: `n_sets = floor(count / E) + 1`;
/// - the active window is a circular run of `n_active = min(n_sets,
///   ceil(A / E))` sets starting at `win_start` (initially 0), `A =
///   ceil(words / 2)`; a miss rotates it by `n_prefetch = min(n_sets -
///   n_active, ceil((words - A) / E))` sets and issues one DRAM prefetch of
///   `ceil((words - A) / bw)` rows of `bw` words;
/// - the first demand line triggers the active-half prefetch: `min(ceil(A /
///   bw), fetch_rows)` rows answered at cycles `-rows .. -1`, where
///   `fetch_rows = ceil(prefetch-matrix elements / bw)`.
#[derive(Clone)]
struct UserReadBuffer {
    bw: u64,
    n_sets: u64,
    n_active: u64,
    n_prefetch: u64,
    win_start: u64,
    /// Rows of one later prefetch, `ceil((words - A) / bw)`.
    prefetch_rows: u64,
    /// Rows of the prefetch (fetch) matrix, `ceil(elements / bw)`.
    fetch_rows: u64,
    /// Rows of the first (active-half) prefetch.
    active_rows: u64,
    /// Per address, the ids of the sets holding it (ascending), CSR form:
    /// `ids[first[a] .. first[a + 1]]`.
    first: Vec<u64>,
    ids: Vec<u32>,
    started: bool,
    /// SCALE-Sim's `last_prefetch_cycle`: the last DRAM response so far.
    last_prefetch: i64,
    dram_reads: u64,
}

impl UserReadBuffer {
    /// `order` visits the prefetch matrix's entries in SCALE-Sim's order
    /// (-1 = no address) and returns their number.
    fn new(sram_kb: u64, bw: u64, space: u64, order: impl Fn(&mut dyn FnMut(i64)) -> u64) -> Result<Self> {
        let words = sram_kb * 1024;
        let per_set = words.div_ceil(100);
        let active = words.div_ceil(2);
        let prefetch = words - active;
        let space = usize::try_from(space).map_err(|_| Error::input("address space too large"))?;
        // Pass 1: addresses per set id, counted per address.
        let mut count = vec![0u64; space + 1];
        let mut valid = 0u64;
        let elems = order(&mut |a| {
            if a >= 0 {
                count[a as usize + 1] += 1;
                valid += 1;
            }
        });
        for i in 1..count.len() {
            count[i] += count[i - 1];
        }
        let first = count;
        let n_sets = valid / per_set + 1;
        if n_sets > u32::MAX as u64 {
            return Err(Error::input("too many read-buffer sets"));
        }
        // Pass 2: the set id of every entry, in order (so each address's ids ascend).
        let mut fill = first.clone();
        let mut ids = vec![0u32; valid as usize];
        let mut seen = 0u64;
        order(&mut |a| {
            if a >= 0 {
                let slot = &mut fill[a as usize];
                ids[*slot as usize] = (seen / per_set) as u32;
                *slot += 1;
                seen += 1;
            }
        });
        let n_active = n_sets.min(active.div_ceil(per_set));
        let n_prefetch = (n_sets - n_active).min(prefetch.div_ceil(per_set));
        let fetch_rows = elems.div_ceil(bw);
        Ok(UserReadBuffer {
            bw,
            n_sets,
            n_active,
            n_prefetch,
            win_start: 0,
            prefetch_rows: prefetch.div_ceil(bw),
            fetch_rows,
            active_rows: active.div_ceil(bw).min(fetch_rows),
            first,
            ids,
            started: false,
            last_prefetch: 0,
            dram_reads: 0,
        })
    }

    /// `active_buffer_hit`: is some set holding `addr` in the circular window
    /// of `n_active` sets starting at `win_start`? Errors if no set holds it
    /// (SCALE-Sim would loop forever).
    fn hit(&self, addr: usize) -> Result<bool> {
        let ids = &self.ids[self.first[addr] as usize..self.first[addr + 1] as usize];
        if ids.is_empty() {
            return Err(Error::input(format!(
                "address {addr} is demanded but not in the prefetch matrix (SCALE-Sim would hang)"
            )));
        }
        let s = self.win_start;
        let e = (s + self.n_active) % self.n_sets;
        let p = ids.partition_point(|&i| (i as u64) < s);
        Ok(if s < e { p < ids.len() && (ids[p] as u64) < e } else { p < ids.len() || (ids[0] as u64) < e })
    }

    /// How many `new_prefetch` rotations `addr` needs before it hits (0: it
    /// hits now). SCALE-Sim rotates one step at a time; this finds the
    /// count directly: with `s1` the window start after one rotation and
    /// `dist` the circular distance from `s1` to the nearest set holding
    /// `addr` at or after it, the windows `[s1 + i*n_prefetch, +n_active)`
    /// overlap (`n_prefetch <= n_active`), so the first that reaches `dist`
    /// is `i = ceil((dist - n_active + 1) / n_prefetch)`.
    fn rotations_to_hit(&self, addr: usize) -> Result<u64> {
        if self.hit(addr)? {
            return Ok(0);
        }
        // A miss implies n_active < n_sets, hence n_prefetch >= 1.
        let ids = &self.ids[self.first[addr] as usize..self.first[addr + 1] as usize];
        let s1 = (self.win_start + self.n_prefetch) % self.n_sets;
        let p = ids.partition_point(|&i| (i as u64) < s1);
        let x = if p < ids.len() { ids[p] as u64 } else { ids[0] as u64 + self.n_sets };
        let dist = x - s1;
        Ok(if dist < self.n_active { 1 } else { 1 + (dist - self.n_active + 1).div_ceil(self.n_prefetch) })
    }

    /// `n` `new_prefetch` calls for one address, at line `cycle` with the
    /// line's `offset` so far; returns the new offset. Each rotates the
    /// window by `n_prefetch` sets and fetches `prefetch_rows` rows, issued
    /// one a cycle from `last_prefetch + 1` and answered a cycle later (so
    /// `last_prefetch` grows by `d = prefetch_rows + 1`); then SCALE-Sim's
    /// `potential = last_prefetch - (cycle + offset)` is added to the offset,
    /// twice when positive. With `c = cycle + offset` that is `c = L +
    /// max(w, 0)` for `w = L - c`, and `w` obeys `w' = d - max(w, 0)`, which
    /// repeats with period 2 from the second call on: the result is exact
    /// without stepping through all `n` calls.
    fn prefetch_times(&mut self, n: u64, cycle: i64, offset: i64) -> Result<i64> {
        if n == 0 {
            return Ok(offset);
        }
        if self.prefetch_rows > self.fetch_rows {
            // SCALE-Sim's column_stack of the response cycles and the
            // (shorter, wrapped) request rows fails here. Unreachable when a
            // miss is possible (the sets then hold more than A >= prefetch
            // words), kept as a guard.
            return Err(Error::input(format!(
                "SCALE-Sim's USER read buffer fetches {} rows from a {}-row prefetch matrix (it crashes there)",
                self.prefetch_rows, self.fetch_rows
            )));
        }
        let steps = |n: u64| -> i64 { i64::try_from(n).unwrap_or(i64::MAX) };
        self.win_start =
            ((self.win_start as u128 + n as u128 * self.n_prefetch as u128) % self.n_sets as u128) as u64;
        self.dram_reads = self
            .dram_reads
            .checked_add(n.saturating_mul(self.prefetch_rows * self.bw))
            .ok_or_else(|| Error::input("DRAM reads overflow"))?;
        let d = self.prefetch_rows as i64 + 1;
        let base = self.last_prefetch;
        let last = steps(n)
            .checked_mul(d)
            .and_then(|x| x.checked_add(base))
            .ok_or_else(|| Error::input("prefetch cycle overflow"))?;
        // w of call i (1-based), for i = 1 and the representative of n's parity.
        let w1 = base + d - (cycle + offset);
        let w = match n {
            1 => w1,
            _ => {
                let w2 = d - w1.max(0);
                if n.is_multiple_of(2) {
                    w2
                } else {
                    d - w2.max(0)
                }
            }
        };
        self.last_prefetch = last;
        Ok(last + w.max(0) - cycle)
    }

    /// `service_reads` for one demand line at `cycle`: the serviced cycle.
    fn line(&mut self, cycle: i64, addrs: &[i64]) -> Result<i64> {
        self.start(cycle);
        let mut offset = HIT_LATENCY;
        for &a in addrs {
            if a >= 0 {
                let n = self.rotations_to_hit(a as usize)?;
                offset = self.prefetch_times(n, cycle, offset)?;
            }
        }
        Ok(cycle + offset)
    }

    /// `prefetch_active_buffer(start_cycle = cycle)`, on the first line
    /// (cycle 0): `active_rows` rows answered at `cycle - active_rows ..
    /// cycle - 1`.
    fn start(&mut self, cycle: i64) {
        if !self.started {
            self.started = true;
            self.dram_reads += self.active_rows * self.bw;
            self.last_prefetch = cycle - 1;
        }
    }

    /// SCALE-Sim's `service_reads` loop as written: one rotation and one hit
    /// test at a time (the reference for [`Self::line`]).
    #[cfg(test)]
    fn line_stepwise(&mut self, cycle: i64, addrs: &[i64]) -> Result<i64> {
        self.start(cycle);
        let mut offset = HIT_LATENCY;
        for &a in addrs {
            if a < 0 {
                continue;
            }
            while !self.hit(a as usize)? {
                assert!(self.prefetch_rows <= self.fetch_rows);
                self.win_start = (self.win_start + self.n_prefetch) % self.n_sets;
                self.dram_reads += self.prefetch_rows * self.bw;
                self.last_prefetch += self.prefetch_rows as i64 + 1;
                let potential = self.last_prefetch - (cycle + offset);
                offset += potential;
                if potential > 0 {
                    offset += potential;
                }
            }
        }
        Ok(cycle + offset)
    }

    /// DRAM Start/Stop/Reads: the active prefetch's first response
    /// (`-active_rows`) to the last response of any prefetch.
    fn finish(&self) -> Span {
        Span { start: -(self.active_rows as i64), stop: self.last_prefetch, count: self.dram_reads }
    }
}

const HIT_LATENCY: i64 = 1;

/// The two read buffers SCALE-Sim uses: CALC mode's estimate-bandwidth
/// buffer (never stalls) and USER mode's.
enum ReadBuffer {
    Estimate(EstimateReadBuffer),
    User(UserReadBuffer),
}

impl ReadBuffer {
    /// Serve one demand line at `cycle`; the cycle it is serviced at (the
    /// hit latency later, plus USER mode's stalls).
    fn line(&mut self, cycle: i64, addrs: &[i64]) -> Result<i64> {
        match self {
            ReadBuffer::Estimate(b) => {
                b.line(cycle, addrs)?;
                Ok(cycle + HIT_LATENCY)
            }
            ReadBuffer::User(b) => b.line(cycle, addrs),
        }
    }

    fn finish(&mut self) -> Result<Span> {
        match self {
            ReadBuffer::Estimate(b) => b.finish(),
            ReadBuffer::User(b) => Ok(b.finish()),
        }
    }
}

/// Which operand a prefetch order is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Operand {
    Ifmap,
    Filter,
}

/// Visit SCALE-Sim's prefetch matrix of one operand (`systolic_compute_*.py`
/// `create_*_prefetch_mat`) in the order its USER read buffer reads it, -1
/// for padding and no-address entries; returns the number of entries. The
/// matrix stacks one block per fold of the operand's spatial dimension,
/// padded with -1 to the array side:
///
/// | dataflow | ifmap (rows x width, block b row t column x) | filter |
/// |---|---|---|
/// | os | `Fr*K x R`: ifmap(bR + x, t), rolled | `Fc*K x C`: filter(t, bC + x), rolled |
/// | ws | `Fr*M x R`: ifmap(t, bR + x), rolled | `Fc*K x C`: filter(t, bC + x), row-major |
/// | is | `Fc*K x C`: ifmap(bC + x, t), row-major | `Fr*N x R`: filter(bR + x, t), rolled |
///
/// "rolled" is SCALE-Sim's anti-diagonal roll-out: diagonal d = 0, 1, ...,
/// rows from `min(d, rows - 1)` down to `max(0, d - width + 1)`, column `d - row`.
fn prefetch_order(m: &GemmMapping, ifmap: &IfmapAddr, op: Operand, visit: &mut dyn FnMut(i64)) -> u64 {
    let (r, c) = (m.rows as u64, m.cols as u64);
    let (mm, k, n) = (m.m, m.k, m.n);
    let filt = |kk: u64, nn: u64| (nn * k + kk) as i64;
    // (block height, width, spatial extent, rolled, entry(row t in block, block b, column x) for in-range x)
    let (height, width, extent, rolled): (u64, u64, u64, bool) = match (m.dataflow, op) {
        (Dataflow::Os, Operand::Ifmap) => (k, r, mm, true),
        (Dataflow::Os, Operand::Filter) => (k, c, n, true),
        (Dataflow::Ws, Operand::Ifmap) => (mm, r, k, true),
        (Dataflow::Ws, Operand::Filter) => (k, c, n, false),
        (Dataflow::Is, Operand::Ifmap) => (k, c, mm, false),
        (Dataflow::Is, Operand::Filter) => (n, r, k, true),
    };
    let at = |row: u64, x: u64| -> i64 {
        let (b, t) = (row / height, row % height);
        let s = b * width + x;
        if s >= extent {
            return -1;
        }
        match (m.dataflow, op) {
            (Dataflow::Os, Operand::Ifmap) => ifmap.at(s, t),
            (Dataflow::Os, Operand::Filter) | (Dataflow::Ws, Operand::Filter) => filt(t, s),
            (Dataflow::Ws, Operand::Ifmap) => ifmap.at(t, s),
            (Dataflow::Is, Operand::Ifmap) => ifmap.at(s, t),
            (Dataflow::Is, Operand::Filter) => filt(s, t),
        }
    };
    let rows = extent.div_ceil(width) * height;
    if rolled {
        for d in 0..rows + width - 1 {
            let hi = d.min(rows - 1);
            let lo = (d + 1).saturating_sub(width);
            for row in (lo..=hi).rev() {
                visit(at(row, d - row));
            }
        }
    } else {
        for row in 0..rows {
            for x in 0..width {
                visit(at(row, x));
            }
        }
    }
    rows * width
}

/// Entries of both operands' prefetch matrices (USER mode's extra work).
pub fn prefetch_elems(m: &GemmMapping) -> u128 {
    let (r, c) = (m.rows as u128, m.cols as u128);
    let (mm, k, n) = (m.m as u128, m.k as u128, m.n as u128);
    let blocks = |extent: u128, side: u128| extent.div_ceil(side) * side;
    match m.dataflow {
        Dataflow::Os => blocks(mm, r) * k + blocks(n, c) * k,
        Dataflow::Ws => blocks(k, r) * mm + blocks(n, c) * k,
        Dataflow::Is => blocks(mm, c) * k + blocks(k, r) * n,
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
    let (mut ifbuf, mut fbuf, ofmap_width) = match cfg.bandwidth_mode {
        BandwidthMode::Calc => (
            ReadBuffer::Estimate(EstimateReadBuffer::new(cfg.ifmap_sram_kb, if_space)),
            ReadBuffer::Estimate(EstimateReadBuffer::new(cfg.filter_sram_kb, k * n)),
            // CALC mode: the ofmap DRAM write line is the array width.
            c,
        ),
        BandwidthMode::User(bw) => (
            ReadBuffer::User(UserReadBuffer::new(cfg.ifmap_sram_kb, bw.ifmap, if_space, |v| {
                prefetch_order(m, &ifmap, Operand::Ifmap, v)
            })?),
            ReadBuffer::User(UserReadBuffer::new(cfg.filter_sram_kb, bw.filter, k * n, |v| {
                prefetch_order(m, &ifmap, Operand::Filter, v)
            })?),
            bw.ofmap,
        ),
    };
    let mut wb = WriteBuffer::new(cfg.ofmap_sram_kb, ofmap_width);
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
    // The last line's ofmap serviced cycle: SCALE-Sim's Total Cycles.
    let mut last_ofmap = 0u64;
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
                // Reads are served after the hit latency (1) plus USER mode's
                // read stalls (which may be negative); writes at once plus
                // any write-buffer stall. All three see the same cycle.
                let if_out = ifbuf.line(cycle, &li)?;
                let f_out = fbuf.line(cycle, &lf)?;
                if_span.see(if_out, &li);
                f_span.see(f_out, &lf);
                let writes = lo.iter().filter(|&&a| a >= 0).count() as u64;
                let write_stall = if writes > 0 { wb.line(cycle as u64, writes) } else { 0 };
                o_span.see(cycle + write_stall as i64, &lo);
                last_ofmap = cycle as u64 + write_stall;
                // The line's stall is the largest of the three (>= 0: the
                // write stall is); all later lines move by it.
                let read_stall = (if_out - cycle - HIT_LATENCY).max(f_out - cycle - HIT_LATENCY);
                stalls += (write_stall as i64).max(read_stall) as u64;
                line_no += 1;
            }
        }
    }
    // Total Cycles is the last line's ofmap serviced cycle: the last line's
    // own read stall is counted in Stall Cycles but not in Total Cycles.
    let last_cycle = last_ofmap;
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
    use crate::scalesim::ConvShape;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// USER mode's read buffer: finding the rotation count directly and
        /// applying the waits in closed form gives exactly what SCALE-Sim's
        /// one-rotation-at-a-time loop gives (serviced cycles, DRAM reads,
        /// last prefetch cycle, window), on random prefetch orders and demands.
        #[test]
        fn user_read_buffer_equals_stepwise_loop(
            order in proptest::collection::vec(-1i64..300, 1..4000),
            kb in 1u64..3, bw in 1u64..40,
            picks in proptest::collection::vec(proptest::collection::vec(0usize..4000, 0..9), 1..60),
            gap in 0i64..3,
        ) {
            let present: Vec<i64> = order.iter().copied().filter(|&a| a >= 0).collect();
            proptest::prop_assume!(!present.is_empty());
            let visit = |v: &mut dyn FnMut(i64)| { for &a in &order { v(a) } order.len() as u64 };
            let mut fast = UserReadBuffer::new(kb, bw, 300, visit).unwrap();
            proptest::prop_assume!(fast.prefetch_rows <= fast.fetch_rows);
            let mut slow = fast.clone();
            let mut cycle = 0i64;
            for line in &picks {
                let addrs: Vec<i64> = line.iter().map(|&i| present[i % present.len()]).collect();
                let a = fast.line(cycle, &addrs).unwrap();
                let b = slow.line_stepwise(cycle, &addrs).unwrap();
                proptest::prop_assert_eq!(a, b);
                proptest::prop_assert_eq!(
                    (fast.win_start, fast.last_prefetch, fast.dram_reads),
                    (slow.win_start, slow.last_prefetch, slow.dram_reads)
                );
                cycle += 1 + gap + (a - cycle - 1).max(0);
            }
        }
    }

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
