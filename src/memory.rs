//! bitmac's own memory-system timing (normative doc: `docs/memory.md`):
//! when each tile's operands are in SRAM, the stall cycles this costs, the
//! SRAM port (banking) limit, weight double-buffering in `ws`, and the DRAM
//! words each operand moves.
//!
//! One function per number: [`Timer::start`] decides the start cycle of a
//! tile given the cycle the array would start it (the "operand ready gate").
//! The cycle engine calls it at every tile boundary with its own stepped
//! cycle and stalls (every PE register holds) until the returned cycle; the
//! fast engine, the energy model and `dse` call [`plan`], which runs the
//! same `Timer` over the closed-form tile lengths of `docs/datapath.md` §5.
//!
//! This model is separate from SCALE-Sim's memory system (`scalesim/`).
//! With the default config ([`MemoryConfig::enabled`] false) nothing
//! stalls, tiles keep the §5 timing and every operand word crosses DRAM
//! once, which is what bitmac reported before the model existed.

use crate::hw::Dataflow;

/// The validated memory-timing part of a hardware config (`memory`
/// section, `docs/hw-config.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryConfig {
    /// SRAM sizes in bytes: ifmap, filter, ofmap.
    pub sram_bytes: [u64; 3],
    /// SRAM port: banks per scratchpad and bytes per bank per cycle
    /// (`None`: unlimited).
    pub sram_port: Option<(u64, u64)>,
    /// DRAM bytes per array cycle (`None`: unlimited).
    pub dram_bytes_per_cycle: Option<u64>,
    /// DRAM latency in array cycles (0 when absent).
    pub dram_latency: u64,
    /// `ws`: preload the next tile's weights while the current tile computes.
    pub weight_double_buffer: bool,
    /// Bits of one ofmap word written back to DRAM (`requant.out_bits`).
    pub ofmap_bits: u32,
    /// Whether any timing field was given: stalls are modelled and reported.
    pub enabled: bool,
}

impl Default for MemoryConfig {
    fn default() -> MemoryConfig {
        MemoryConfig {
            sram_bytes: [256 * 1024, 256 * 1024, 128 * 1024],
            sram_port: None,
            dram_bytes_per_cycle: None,
            dram_latency: 0,
            weight_double_buffer: false,
            ofmap_bits: 8,
            enabled: false,
        }
    }
}

/// What the memory model needs to know of a GEMM on the array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub dataflow: Dataflow,
    pub rows: usize,
    pub cols: usize,
    /// Operand widths in bits (activations, weights).
    pub act_bits: u32,
    pub weight_bits: u32,
    pub mem: MemoryConfig,
}

impl Layout {
    /// The layout of a validated hardware config.
    pub fn of_hw(hw: &crate::hw::HwConfig) -> Layout {
        Layout {
            dataflow: hw.dataflow(),
            rows: hw.rows(),
            cols: hw.cols(),
            act_bits: hw.activations().width(),
            weight_bits: hw.weights().width(),
            mem: hw.memory(),
        }
    }
}

/// The geometry of one tile (`docs/datapath.md` §5, "Tiles"): fold index,
/// K range, rows `r0..r0+ru` (os: M) and columns `c0..c0+cu` (ws/os: N,
/// is: M) it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub fold: usize,
    pub k0: usize,
    pub k1: usize,
    pub r0: usize,
    pub ru: usize,
    pub c0: usize,
    pub cu: usize,
}

/// Call `f` on every tile of an `M x K x N` GEMM in execution order.
pub(crate) fn for_each_tile(
    dataflow: Dataflow,
    r: usize,
    c: usize,
    m: usize,
    k: usize,
    n: usize,
    mut f: impl FnMut(Geometry),
) {
    match dataflow {
        Dataflow::Ws | Dataflow::Is => {
            let cdim = if dataflow == Dataflow::Ws { n } else { m };
            for c0 in (0..cdim).step_by(c) {
                let cu = c.min(cdim - c0);
                for (fold, k0) in (0..k).step_by(r).enumerate() {
                    let k1 = (k0 + r).min(k);
                    f(Geometry { fold, k0, k1, r0: k0, ru: k1 - k0, c0, cu });
                }
            }
        }
        Dataflow::Os => {
            for r0 in (0..m).step_by(r) {
                let ru = r.min(m - r0);
                for c0 in (0..n).step_by(c) {
                    let cu = c.min(n - c0);
                    f(Geometry { fold: 0, k0: 0, k1: k, r0, ru, c0, cu });
                }
            }
        }
    }
}

/// Bytes of `words` packed words of `bits` bits: `ceil(words * bits / 8)`.
fn bytes(words: u64, bits: u32) -> u64 {
    (words * bits as u64).div_ceil(8)
}

/// One operand block a tile reads: which operand (0 ifmap, 1 filter), its
/// identity within the operand, its words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    id: (usize, usize),
    words: u64,
}

/// The ifmap and filter blocks of a tile (`docs/memory.md` §2).
fn blocks(dataflow: Dataflow, g: &Geometry, m: usize, k: usize, n: usize) -> [Block; 2] {
    let (ru, cu) = (g.ru as u64, g.cu as u64);
    match dataflow {
        // Ifmap A[:, k0..k1] (M x ru), filter W[k0..k1, c0..c0+cu].
        Dataflow::Ws => {
            [Block { id: (g.fold, 0), words: m as u64 * ru }, Block { id: (g.fold, g.c0), words: ru * cu }]
        }
        // Ifmap A[c0..c0+cu, k0..k1], filter W[k0..k1, :] (ru x N).
        Dataflow::Is => {
            [Block { id: (g.fold, g.c0), words: cu * ru }, Block { id: (g.fold, 0), words: ru * n as u64 }]
        }
        // Ifmap A[r0..r0+ru, :] (ru x K), filter W[:, c0..c0+cu] (K x cu).
        Dataflow::Os => {
            [Block { id: (g.r0, 0), words: ru * k as u64 }, Block { id: (0, g.c0), words: k as u64 * cu }]
        }
    }
}

/// The output (ofmap) block a tile accumulates into (`docs/memory.md` §2a):
/// its identity and words. `ws`: `M x cu` of the column tile `c0`; `is`:
/// `cu x N` of the column tile `c0`; `os`: the tile's own `ru x cu`.
fn out_block(dataflow: Dataflow, g: &Geometry, m: usize, n: usize) -> Block {
    let (ru, cu) = (g.ru as u64, g.cu as u64);
    match dataflow {
        Dataflow::Ws => Block { id: (g.c0, 0), words: m as u64 * cu },
        Dataflow::Is => Block { id: (g.c0, 0), words: cu * n as u64 },
        Dataflow::Os => Block { id: (g.r0, g.c0), words: ru * cu },
    }
}

/// Length in cycles of a tile (`docs/datapath.md` §5; §5a with double
/// buffering): `pre` is the preload the tile spends itself (R, or 0 for a
/// double-buffered `ws` tile after the first).
fn tile_len(dataflow: Dataflow, r: usize, g: &Geometry, m: usize, k: usize, n: usize, pre: u64) -> u64 {
    let r = r as u64;
    match dataflow {
        Dataflow::Ws => pre + r + m as u64 + g.cu as u64 - 2,
        Dataflow::Is => pre + r + n as u64 + g.cu as u64 - 2,
        Dataflow::Os => k as u64 + g.ru as u64 + g.cu as u64 - 2 + r,
    }
}

/// DRAM traffic of one GEMM as the memory model moves it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Words read from DRAM into the ifmap and filter SRAMs.
    pub ifmap_dram_words: u64,
    pub filter_dram_words: u64,
    /// The same in (packed) bytes.
    pub ifmap_dram_bytes: u64,
    pub filter_dram_bytes: u64,
}

/// The operand ready gate: the state of the DRAM channel and the SRAMs
/// while the tiles of one GEMM run (`docs/memory.md` §3). Feed it the tiles
/// in execution order.
#[derive(Clone, Debug)]
pub struct Timer {
    lay: Layout,
    m: usize,
    k: usize,
    n: usize,
    /// Whether each operand fits its SRAM whole (resident).
    resident: [bool; 2],
    /// The previous tile's block of each operand.
    prev: [Option<(usize, usize)>; 2],
    /// Blocks of resident operands already fetched (sorted, for the
    /// deterministic membership test).
    seen: [std::collections::BTreeSet<(usize, usize)>; 2],
    /// Index of the next tile.
    t: usize,
    /// Start cycle of the previous tile and the cycle the DRAM channel
    /// frees.
    prev_start: u64,
    chan_free: u64,
    /// The output block the previous tile accumulated into, the cycle the
    /// DRAM write port frees, the cycle each half of the double-buffered
    /// ofmap buffer has drained, and the index of the current output block.
    out_prev: Option<Block>,
    write_free: u64,
    half_free: [u64; 2],
    out_j: usize,
    traffic: Traffic,
    stalls: u64,
}

/// What the gate decided for one tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gate {
    /// The tile's first cycle (after its stall).
    pub start: u64,
    /// Stall cycles before it: `start - now`.
    pub stall: u64,
    /// Preload cycles the tile spends itself: R (`ws`/`is`), 0 for a
    /// double-buffered `ws` tile after the first and for `os`.
    pub pre: u64,
}

impl Timer {
    /// A gate for an `M x K x N` GEMM on `lay`.
    pub fn new(lay: Layout, m: usize, k: usize, n: usize) -> Timer {
        let [ib, fb, _] = lay.mem.sram_bytes;
        // Disabled: both resident, every word crosses DRAM once (what the
        // energy model counted before the memory model existed).
        let on = lay.mem.enabled;
        let resident = [
            !on || bytes(m as u64 * k as u64, lay.act_bits) <= ib,
            !on || bytes(k as u64 * n as u64, lay.weight_bits) <= fb,
        ];
        Timer {
            lay,
            m,
            k,
            n,
            resident,
            prev: [None; 2],
            seen: Default::default(),
            t: 0,
            prev_start: 0,
            chan_free: 0,
            out_prev: None,
            write_free: 0,
            half_free: [0; 2],
            out_j: 0,
            traffic: Traffic::default(),
            stalls: 0,
        }
    }

    /// Start the next tile, `g`, which the array could start at cycle
    /// `now` (0 for the first tile, else the previous tile's start plus its
    /// length). Returns its start cycle, stall and own preload; the formulas
    /// are `docs/memory.md` §3.
    pub(crate) fn start(&mut self, g: &Geometry, now: u64) -> Gate {
        let lay = self.lay;
        let mem = lay.mem;
        let (m, k, n) = (self.m, self.k, self.n);
        let r = lay.rows as u64;
        let dbuf = mem.weight_double_buffer && lay.dataflow == Dataflow::Ws && self.t > 0;
        let pre = match lay.dataflow {
            Dataflow::Os => 0,
            _ if dbuf => 0,
            _ => r,
        };
        let blk = blocks(lay.dataflow, g, m, k, n);
        let bits = [lay.act_bits, lay.weight_bits];
        // DRAM: what this tile must fetch.
        let mut fetch = 0u64;
        let mut read = [0u64; 2];
        for x in 0..2 {
            let b = blk[x];
            read[x] = bytes(b.words, bits[x]);
            let kept = self.prev[x] == Some(b.id) || (self.resident[x] && self.seen[x].contains(&b.id));
            if !kept {
                fetch += read[x];
                if x == 0 {
                    self.traffic.ifmap_dram_words += b.words;
                    self.traffic.ifmap_dram_bytes += read[x];
                } else {
                    self.traffic.filter_dram_words += b.words;
                    self.traffic.filter_dram_bytes += read[x];
                }
                if self.resident[x] {
                    self.seen[x].insert(b.id);
                }
            }
            self.prev[x] = Some(b.id);
        }
        let start = if !mem.enabled {
            now
        } else {
            // The fetch starts when the previous tile starts (its buffer
            // half is then free) and the channel is free.
            let f0 = if self.t == 0 { 0 } else { self.prev_start.max(self.chan_free) };
            let ready = if fetch == 0 {
                0
            } else {
                let busy = mem.dram_bytes_per_cycle.map_or(0, |bw| fetch.div_ceil(bw));
                self.chan_free = f0 + busy;
                f0 + busy + mem.dram_latency
            };
            let gate = if dbuf { ready + r } else { ready };
            // The ofmap write-back (§2a): when this tile starts a new output
            // block, the previous block is complete (ws/is: after its last
            // writeback, in cycle `now`; os: at `now`) and drains through
            // the write port; this block's half of the output buffer must
            // have drained the block before the previous one.
            let ob = out_block(lay.dataflow, g, m, n);
            let out_gate = match self.out_prev {
                Some(p) if p.id == ob.id => 0,
                prev => {
                    if let Some(p) = prev {
                        let done = now + u64::from(lay.dataflow != Dataflow::Os);
                        let busy = mem
                            .dram_bytes_per_cycle
                            .map_or(0, |bw| bytes(p.words, mem.ofmap_bits).div_ceil(bw));
                        self.write_free = done.max(self.write_free) + busy;
                        self.half_free[self.out_j % 2] = self.write_free;
                        self.out_j += 1;
                    }
                    self.half_free[self.out_j % 2]
                }
            };
            self.out_prev = Some(ob);
            let gate = gate.max(out_gate);
            // SRAM ports: the tile's reads need ceil(bytes / port) cycles.
            let len = tile_len(lay.dataflow, lay.rows, g, m, k, n, pre);
            let port_stall = mem.sram_port.map_or(0, |(banks, width)| {
                let need = read.iter().map(|&b| b.div_ceil(banks * width)).max().unwrap_or(0);
                need.saturating_sub(len)
            });
            (now + port_stall).max(gate)
        };
        self.prev_start = start;
        self.t += 1;
        self.stalls += start - now;
        Gate { start, stall: start - now, pre }
    }

    /// The DRAM traffic of the tiles started so far.
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }

    /// The stall cycles so far.
    pub fn stall_cycles(&self) -> u64 {
        self.stalls
    }
}

/// The timing of one GEMM with the memory system.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// Total cycles, stalls included.
    pub cycles: u64,
    /// Stall cycles (0 when the model is disabled).
    pub stall_cycles: u64,
    pub traffic: Traffic,
}

/// Run the gate over the closed-form tile lengths: `each(g, gate)` sees
/// every tile. Returns the totals. Zero dimensions give all zeros.
pub(crate) fn plan_with(
    lay: &Layout,
    m: usize,
    k: usize,
    n: usize,
    mut each: impl FnMut(&Geometry, &Gate),
) -> Timing {
    if lay.rows == 0 || lay.cols == 0 || m == 0 || k == 0 || n == 0 {
        return Timing::default();
    }
    let mut timer = Timer::new(*lay, m, k, n);
    let mut now = 0u64;
    for_each_tile(lay.dataflow, lay.rows, lay.cols, m, k, n, |g| {
        let gate = timer.start(&g, now);
        each(&g, &gate);
        now = gate.start + tile_len(lay.dataflow, lay.rows, &g, m, k, n, gate.pre);
    });
    // ws/is: the final writeback cycle (docs/datapath.md §5).
    let tail = u64::from(lay.dataflow != Dataflow::Os);
    Timing { cycles: now + tail, stall_cycles: timer.stall_cycles(), traffic: timer.traffic() }
}

/// THE timing of an `M x K x N` GEMM on `lay`: total cycles with stalls,
/// stall cycles, DRAM traffic (`docs/memory.md`). Used by the fast engine,
/// `energy::for_hw` and `dse`; the cycle engine steps to the same numbers.
pub fn plan(lay: &Layout, m: usize, k: usize, n: usize) -> Timing {
    plan_with(lay, m, k, n, |_, _| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lay(df: Dataflow, mem: MemoryConfig) -> Layout {
        Layout { dataflow: df, rows: 4, cols: 3, act_bits: 8, weight_bits: 8, mem }
    }

    #[test]
    fn disabled_is_the_stall_free_timing() {
        for df in Dataflow::ALL {
            for (m, k, n) in [(5, 9, 7), (1, 1, 1), (33, 17, 40)] {
                let t = plan(&lay(df, MemoryConfig::default()), m, k, n);
                assert_eq!(t.cycles, crate::array::compute_cycles(df, 4, 3, m, k, n));
                assert_eq!(t.stall_cycles, 0);
                // Everything fits the default SRAMs: each word once.
                assert_eq!(t.traffic.ifmap_dram_words, (m * k) as u64);
                assert_eq!(t.traffic.filter_dram_words, (k * n) as u64);
            }
        }
    }

    #[test]
    fn double_buffer_saves_r_per_later_tile() {
        let mem = MemoryConfig { weight_double_buffer: true, enabled: true, ..MemoryConfig::default() };
        let (m, k, n) = (5usize, 9usize, 7usize);
        let tiles = (k.div_ceil(4) * n.div_ceil(3)) as u64;
        let t = plan(&lay(Dataflow::Ws, mem), m, k, n);
        assert_eq!(t.cycles, crate::array::compute_cycles(Dataflow::Ws, 4, 3, m, k, n) - (tiles - 1) * 4);
        assert_eq!(t.stall_cycles, 0);
    }

    #[test]
    fn first_tile_waits_for_its_operands() {
        // ws 4x3, M=2 K=4 N=3, 8-bit: tile 0 fetches A (2x4 = 8 B) and W
        // (4x3 = 12 B) = 20 B at 2 B/cycle: 10 busy cycles + latency 5.
        let mem = MemoryConfig {
            dram_bytes_per_cycle: Some(2),
            dram_latency: 5,
            enabled: true,
            ..MemoryConfig::default()
        };
        let t = plan(&lay(Dataflow::Ws, mem), 2, 4, 3);
        assert_eq!(t.stall_cycles, 15);
        assert_eq!(t.cycles, crate::array::compute_cycles(Dataflow::Ws, 4, 3, 2, 4, 3) + 15);
    }

    #[test]
    fn a_tile_waits_for_its_output_half_to_drain() {
        // os 4x3, M=8 K=1 N=6, 8-bit, 1 B/cycle: 4 tiles of 10 cycles, each
        // completing a 12-byte output block (docs/memory.md §2a, §3, worked
        // by hand): reads stall tile 0 for 7 cycles; blocks 0 and 1 drain
        // to cycles 29 and 41, so tiles 2 and 3 (blocks 2, 3) start at 29
        // and 41 instead of 27 and 39.
        let mem = MemoryConfig { dram_bytes_per_cycle: Some(1), enabled: true, ..MemoryConfig::default() };
        let t = plan(&lay(Dataflow::Os, mem), 8, 1, 6);
        assert_eq!(t.stall_cycles, 7 + 2 + 2);
        assert_eq!(t.cycles, crate::array::compute_cycles(Dataflow::Os, 4, 3, 8, 1, 6) + 11);
        // Unlimited bandwidth: the drains are free and only the missing
        // bandwidth limit is different, so nothing stalls.
        let free = MemoryConfig { dram_latency: 0, enabled: true, ..MemoryConfig::default() };
        assert_eq!(plan(&lay(Dataflow::Os, free), 8, 1, 6).stall_cycles, 0);
    }

    #[test]
    fn small_sram_refetches() {
        // ws: A is read once per column tile when it does not fit.
        let mem =
            MemoryConfig { sram_bytes: [16, 1 << 20, 1 << 20], enabled: true, ..MemoryConfig::default() };
        let (m, k, n) = (4, 8, 9);
        let t = plan(&lay(Dataflow::Ws, mem), m, k, n);
        assert_eq!(t.traffic.ifmap_dram_words, (m * k * n.div_ceil(3)) as u64);
        assert_eq!(t.traffic.filter_dram_words, (k * n) as u64);
    }
}
