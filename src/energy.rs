//! The energy model (normative doc: `docs/energy.md`).
//!
//! An energy reference table in the spirit of Accelergy's ERTs: one energy
//! per action of each component (multiply, add, register bit write, SRAM
//! word access, DRAM word access), each scaled by width (and SRAM by
//! capacity) with the formulas of `docs/energy.md`. The defaults are
//! Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm; every formula
//! passes exactly through the cited points. Counts (MACs, accesses) come from
//! the one place that defines them: [`Accesses::of`] for SRAM/DRAM words,
//! the GEMM's own dimensions for MACs, and the actual operands for the
//! zero-operand count when they are given.
//!
//! All energies are f64 picojoules. Sums are taken in the fixed order of
//! [`Breakdown::total`], so the bytes of every report are deterministic.

use crate::error::{Error, Result};
use crate::hw::Dataflow;
use serde::{Deserialize, Serialize};

/// The energy reference table (JSON: the optional `energy` section of a
/// hardware config, every field optional; unknown fields are rejected).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnergyTable {
    /// 8 x 8-bit integer multiply, pJ (Horowitz: 0.2).
    pub mul_8x8_pj: f64,
    /// 32 x 32-bit integer multiply, pJ (Horowitz: 3.1).
    pub mul_32x32_pj: f64,
    /// 8-bit integer add, pJ (Horowitz: 0.03).
    pub add_8_pj: f64,
    /// 32-bit integer add, pJ (Horowitz: 0.1).
    pub add_32_pj: f64,
    /// One register bit written, pJ. Not in Horowitz's table: bitmac's
    /// estimate, the energy of one full-adder bit of the 8-bit add
    /// (0.03 / 8 = 0.00375).
    pub reg_bit_pj: f64,
    /// 64-bit SRAM read from an 8 KB array, pJ (Horowitz: 10).
    pub sram_64b_8kb_pj: f64,
    /// 64-bit SRAM read from a 32 KB array, pJ (Horowitz: 20).
    pub sram_64b_32kb_pj: f64,
    /// 64-bit SRAM read from a 1 MB array, pJ (Horowitz: 100).
    pub sram_64b_1mb_pj: f64,
    /// 64-bit DRAM access, pJ (Horowitz: 1300 to 2600; the default is the
    /// middle, 1950).
    pub dram_64b_pj: f64,
    /// Skip the multiply (not the add or the registers) when either operand
    /// is zero, as zero-gating hardware does. Needs the operands.
    pub skip_zero_products: bool,
    /// Leakage power of a 32 x 32-bit multiplier, mW (Aladdin, Shao et al.,
    /// ISCA 2014, 40 nm, 1-stage at 1 ns, as tabulated by Accelergy's
    /// Aladdin plug-in: 0.08). Scaled by `a·b/1024`.
    pub leak_mul_32x32_mw: f64,
    /// Leakage power of a 32-bit adder, mW (Aladdin: 0.0023). Scaled by
    /// `P/32`.
    pub leak_add_32_mw: f64,
    /// Leakage power of one register bit, mW (Aladdin: 0.00007).
    pub leak_reg_bit_mw: f64,
    /// Leakage power of one SRAM bit, mW. No cited figure: bitmac's
    /// estimate, the Aladdin register bit / 4 (a 6-transistor cell against
    /// a flip-flop of about 24), 0.0000175.
    pub leak_sram_bit_mw: f64,
}

impl Default for EnergyTable {
    fn default() -> EnergyTable {
        EnergyTable {
            mul_8x8_pj: 0.2,
            mul_32x32_pj: 3.1,
            add_8_pj: 0.03,
            add_32_pj: 0.1,
            reg_bit_pj: 0.03 / 8.0,
            sram_64b_8kb_pj: 10.0,
            sram_64b_32kb_pj: 20.0,
            sram_64b_1mb_pj: 100.0,
            dram_64b_pj: 1950.0,
            skip_zero_products: false,
            leak_mul_32x32_mw: 0.08,
            leak_add_32_mw: 0.0023,
            leak_reg_bit_mw: 0.00007,
            leak_sram_bit_mw: 0.00007 / 4.0,
        }
    }
}

impl EnergyTable {
    /// Check every entry: finite, > 0 (and below 1e9 pJ), the SRAM points
    /// increasing with capacity; errors name the JSON path under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let fields = [
            ("mul_8x8_pj", self.mul_8x8_pj),
            ("mul_32x32_pj", self.mul_32x32_pj),
            ("add_8_pj", self.add_8_pj),
            ("add_32_pj", self.add_32_pj),
            ("reg_bit_pj", self.reg_bit_pj),
            ("sram_64b_8kb_pj", self.sram_64b_8kb_pj),
            ("sram_64b_32kb_pj", self.sram_64b_32kb_pj),
            ("sram_64b_1mb_pj", self.sram_64b_1mb_pj),
            ("dram_64b_pj", self.dram_64b_pj),
        ];
        for (name, v) in fields {
            if !(v.is_finite() && v > 0.0 && v < 1e9) {
                return Err(Error::input(format!(
                    "{prefix}.{name}: {v} is out of range (allowed: > 0 and < 1e9 pJ)"
                )));
            }
        }
        for (name, v) in [
            ("leak_mul_32x32_mw", self.leak_mul_32x32_mw),
            ("leak_add_32_mw", self.leak_add_32_mw),
            ("leak_reg_bit_mw", self.leak_reg_bit_mw),
            ("leak_sram_bit_mw", self.leak_sram_bit_mw),
        ] {
            if !(v.is_finite() && (0.0..1e9).contains(&v)) {
                return Err(Error::input(format!(
                    "{prefix}.{name}: {v} is out of range (allowed: >= 0 and < 1e9 mW; 0 turns the term off)"
                )));
            }
        }
        if self.mul_32x32_pj <= self.mul_8x8_pj || self.add_32_pj <= self.add_8_pj {
            return Err(Error::input(format!(
                "{prefix}: the 32-bit entries must exceed the 8-bit ones (mul {} vs {}, add {} vs {})",
                self.mul_32x32_pj, self.mul_8x8_pj, self.add_32_pj, self.add_8_pj
            )));
        }
        if !(self.sram_64b_8kb_pj < self.sram_64b_32kb_pj && self.sram_64b_32kb_pj < self.sram_64b_1mb_pj) {
            return Err(Error::input(format!(
                "{prefix}: SRAM energies must increase with capacity (8 KB {}, 32 KB {}, 1 MB {})",
                self.sram_64b_8kb_pj, self.sram_64b_32kb_pj, self.sram_64b_1mb_pj
            )));
        }
        Ok(())
    }

    /// Multiply of an `a`-bit by a `b`-bit operand:
    /// `E = k0 + k1·a·b`, the line through (64, mul_8x8) and (1024, mul_32x32).
    pub fn mul_pj(&self, a: u32, b: u32) -> f64 {
        let k1 = (self.mul_32x32_pj - self.mul_8x8_pj) / (1024.0 - 64.0);
        let k0 = self.mul_8x8_pj - 64.0 * k1;
        k0 + k1 * (a as f64) * (b as f64)
    }

    /// Add at `b` bits: `E = j0 + j1·b`, the line through (8, add_8) and
    /// (32, add_32).
    pub fn add_pj(&self, b: u32) -> f64 {
        let j1 = (self.add_32_pj - self.add_8_pj) / 24.0;
        let j0 = self.add_8_pj - 8.0 * j1;
        j0 + j1 * b as f64
    }

    /// One access of `bits` bits to an SRAM of `bytes` bytes:
    /// `E64(C)·bits/64`, where `E64` interpolates linearly in
    /// (log2 C, log2 E) through the three cited points and extends the end
    /// segments' slopes beyond them.
    pub fn sram_pj(&self, bytes: u64, bits: u32) -> f64 {
        let pts = [
            (13.0, self.sram_64b_8kb_pj.log2()),
            (15.0, self.sram_64b_32kb_pj.log2()),
            (20.0, self.sram_64b_1mb_pj.log2()),
        ];
        let x = (bytes.max(1) as f64).log2();
        let (a, b) = if x <= pts[1].0 { (pts[0], pts[1]) } else { (pts[1], pts[2]) };
        let y = a.1 + (x - a.0) * (b.1 - a.1) / (b.0 - a.0);
        y.exp2() * bits as f64 / 64.0
    }

    /// Leakage power of one PE (`a`-bit activations, `w`-bit weights,
    /// `p`-bit accumulator), mW: one multiplier, one adder and the
    /// activation, weight and accumulator registers,
    /// `leak_mul_32x32·a·w/1024 + leak_add_32·p/32 + leak_reg_bit·(a + w + p)`.
    pub fn pe_leak_mw(&self, a: u32, w: u32, p: u32) -> f64 {
        self.leak_mul_32x32_mw * (a as f64 * w as f64) / 1024.0
            + self.leak_add_32_mw * p as f64 / 32.0
            + self.leak_reg_bit_mw * (a + w + p) as f64
    }

    /// One DRAM access of `bits` bits: `dram_64b·bits/64`.
    pub fn dram_pj(&self, bits: u32) -> f64 {
        self.dram_64b_pj * bits as f64 / 64.0
    }
}

/// Word accesses of one GEMM (M x K activations, K x N weights) on an
/// R x C array, as bitmac counts them (`docs/energy.md`): SRAM words moved
/// to or from the array, and DRAM words moved to or from the SRAMs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Accesses {
    /// Activation words read from the ifmap SRAM.
    pub ifmap_sram_reads: u64,
    /// Weight words read from the filter SRAM.
    pub filter_sram_reads: u64,
    /// Output words written to the ofmap SRAM (one per output per fold, the
    /// partial sums included).
    pub ofmap_sram_writes: u64,
    /// Partial sums read back from the ofmap SRAM to be accumulated.
    pub ofmap_sram_reads: u64,
    /// Each operand and output word once between DRAM and SRAM: M·K + K·N
    /// reads and M·N writes (the SRAMs hold what a layer reuses; capacity
    /// misses are the memory model's business, `docs/energy.md`).
    pub dram_reads: u64,
    pub dram_writes: u64,
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b.max(1))
}

impl Accesses {
    /// The access counts of an M x K x N GEMM on `rows` x `cols`:
    ///
    /// - ws (K on rows, N on columns): weights once (K·N); activations once
    ///   per column fold (M·K·⌈N/C⌉); outputs once per row fold
    ///   (M·N·⌈K/R⌉ writes, M·N·(⌈K/R⌉−1) reads);
    /// - os (M on rows, N on columns): activations once per column fold
    ///   (M·K·⌈N/C⌉), weights once per row fold (K·N·⌈M/R⌉), outputs once
    ///   (M·N writes, no reads);
    /// - is (K on rows, M on columns): activations once (M·K), weights once
    ///   per column fold (K·N·⌈M/C⌉), outputs once per row fold as in ws.
    pub fn of(dataflow: Dataflow, rows: usize, cols: usize, m: u64, k: u64, n: u64) -> Accesses {
        let (r, c) = (rows as u64, cols as u64);
        let (ifmap, filter, ofmap_w) = match dataflow {
            Dataflow::Ws => (m * k * ceil_div(n, c), k * n, m * n * ceil_div(k, r)),
            Dataflow::Os => (m * k * ceil_div(n, c), k * n * ceil_div(m, r), m * n),
            Dataflow::Is => (m * k, k * n * ceil_div(m, c), m * n * ceil_div(k, r)),
        };
        Accesses {
            ifmap_sram_reads: ifmap,
            filter_sram_reads: filter,
            ofmap_sram_writes: ofmap_w,
            ofmap_sram_reads: ofmap_w - m * n,
            dram_reads: m * k + k * n,
            dram_writes: m * n,
        }
    }
}

/// What one GEMM's energy is computed from.
#[derive(Clone, Copy, Debug)]
pub struct GemmShape {
    pub dataflow: Dataflow,
    pub rows: usize,
    pub cols: usize,
    pub m: u64,
    pub k: u64,
    pub n: u64,
    /// Operand widths in bits (activations, weights) and the accumulator's.
    pub act_bits: u32,
    pub weight_bits: u32,
    pub acc_bits: u32,
    /// SRAM sizes in bytes (ifmap, filter, ofmap).
    pub sram_bytes: [u64; 3],
    /// Products with a zero operand, when the operands are known
    /// ([`zero_products`]); `None` counts none.
    pub zero_products: Option<u64>,
    /// Outputs requantized (M·N), or 0 when the accumulators are the output.
    pub requantized: u64,
    /// Width of an output word written to DRAM (the requantized format's
    /// bits, or the accumulator's).
    pub out_bits: u32,
    /// Activation and weight words read from DRAM, from the memory model
    /// (`docs/memory.md` §2, refetches included); `None`: each word once
    /// (`M·K`, `K·N`).
    pub dram_words: Option<[u64; 2]>,
}

/// Per-component energy of one GEMM, pJ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Breakdown {
    /// Multiplies (M·K·N, less skipped zero products).
    pub mul_pj: f64,
    /// Accumulator adds (M·K·N at the accumulator width).
    pub add_pj: f64,
    /// PE registers: per MAC one activation register (act bits) and one
    /// accumulator register (acc bits) written; weights loaded once per
    /// filter read (weight bits).
    pub reg_pj: f64,
    /// SRAM accesses, each at its operand's width (outputs at acc bits).
    pub sram_pj: f64,
    /// DRAM accesses (operands at their widths, outputs at `out_bits`).
    pub dram_pj: f64,
    /// Requantization: one acc x 32-bit multiply and one 32-bit add per
    /// output.
    pub requant_pj: f64,
    /// Static (leakage) energy of the array and the SRAMs over the GEMM's
    /// cycles, stalls included (`docs/energy.md` §3); 0 where the cycles
    /// are not known (`energy_with_accesses`).
    pub static_pj: f64,
    /// The counts the SRAM and DRAM terms use.
    #[serde(skip)]
    pub accesses: Accesses,
    /// Multiplies skipped for a zero operand.
    pub skipped_products: u64,
}

impl Breakdown {
    /// mul + add + reg + sram + dram + requant + static, summed in that
    /// order.
    pub fn total(&self) -> f64 {
        self.mul_pj
            + self.add_pj
            + self.reg_pj
            + self.sram_pj
            + self.dram_pj
            + self.requant_pj
            + self.static_pj
    }

    /// Add `o` field by field (for per-run totals; order-fixed by the caller).
    pub fn add(&mut self, o: &Breakdown) {
        self.mul_pj += o.mul_pj;
        self.add_pj += o.add_pj;
        self.reg_pj += o.reg_pj;
        self.sram_pj += o.sram_pj;
        self.dram_pj += o.dram_pj;
        self.requant_pj += o.requant_pj;
        self.static_pj += o.static_pj;
        self.skipped_products += o.skipped_products;
        let (a, b) = (&mut self.accesses, &o.accesses);
        a.ifmap_sram_reads += b.ifmap_sram_reads;
        a.filter_sram_reads += b.filter_sram_reads;
        a.ofmap_sram_writes += b.ofmap_sram_writes;
        a.ofmap_sram_reads += b.ofmap_sram_reads;
        a.dram_reads += b.dram_reads;
        a.dram_writes += b.dram_writes;
    }
}

/// Products `a[i][k]·w[k][j]` with a zero factor, over all i, j, k, for
/// row-major `a` (M x K) and `w` (K x N): `M·K·N − Σ_k nzA(k)·nzW(k)`, where
/// `nzA(k)` counts the non-zero activations of column k and `nzW(k)` the
/// non-zero weights of row k.
pub fn zero_products(a: &crate::array::Matrix, w: &crate::array::Matrix) -> u64 {
    use crate::array::Codes;
    // Non-zero counts per column, in the storage width (one pass).
    fn nz_cols<T: Copy + Default + PartialEq>(v: &[T], cols: usize) -> Vec<u64> {
        let mut nz = vec![0u64; cols];
        for row in v.chunks_exact(cols.max(1)) {
            for (c, x) in nz.iter_mut().zip(row) {
                *c += (*x != T::default()) as u64;
            }
        }
        nz
    }
    let count = |x: &crate::array::Matrix| match x.codes() {
        Codes::I16(v) => nz_cols(v, x.cols()),
        Codes::I32(v) => nz_cols(v, x.cols()),
    };
    let (m, k, n) = (a.rows(), a.cols(), w.cols());
    let nz_a = count(a);
    // Non-zero weights per row of W.
    let nonzero: u64 = (0..w.rows().min(k))
        .zip(&nz_a)
        .map(|(r, na)| na * (0..n).filter(|&c| w.get(r, c) != 0).count() as u64)
        .sum();
    (m as u64) * (k as u64) * (n as u64) - nonzero
}

/// The energy of one GEMM under `table`.
pub fn gemm_energy(table: &EnergyTable, g: &GemmShape) -> Breakdown {
    let acc = Accesses::of(g.dataflow, g.rows, g.cols, g.m, g.k, g.n);
    // DRAM words read: the memory model's count when it is on (refetches),
    // else each operand word once.
    let [dram_a, dram_w] = g.dram_words.unwrap_or([g.m * g.k, g.k * g.n]);
    energy_with_accesses(table, g, acc, [dram_a, dram_w, g.m * g.n])
}

/// The energy of one GEMM with the access counts given, not derived:
/// `acc` for the SRAM terms and `dram` = [activation words read, weight
/// words read, output words written] for the DRAM term (what a memory model
/// such as `bitmac scalesim`'s reproduction of SCALE-Sim counts; see
/// `docs/energy.md`). [`gemm_energy`] is this with [`Accesses::of`] and
/// each word crossing once; `acc.dram_reads`/`dram_writes` are set from `dram`.
pub fn energy_with_accesses(
    table: &EnergyTable,
    g: &GemmShape,
    mut acc: Accesses,
    dram: [u64; 3],
) -> Breakdown {
    let macs = g.m * g.k * g.n;
    acc.dram_reads = dram[0] + dram[1];
    acc.dram_writes = dram[2];
    let skipped = if table.skip_zero_products { g.zero_products.unwrap_or(0) } else { 0 };
    let mul = (macs - skipped) as f64 * table.mul_pj(g.act_bits, g.weight_bits);
    let add = macs as f64 * table.add_pj(g.acc_bits);
    let reg_bits =
        macs as f64 * (g.act_bits + g.acc_bits) as f64 + acc.filter_sram_reads as f64 * g.weight_bits as f64;
    let [ib, fb, ob] = g.sram_bytes;
    let sram = acc.ifmap_sram_reads as f64 * table.sram_pj(ib, g.act_bits)
        + acc.filter_sram_reads as f64 * table.sram_pj(fb, g.weight_bits)
        + (acc.ofmap_sram_writes + acc.ofmap_sram_reads) as f64 * table.sram_pj(ob, g.acc_bits);
    let dram = dram[0] as f64 * table.dram_pj(g.act_bits)
        + dram[1] as f64 * table.dram_pj(g.weight_bits)
        + dram[2] as f64 * table.dram_pj(g.out_bits);
    let requant = g.requantized as f64 * (table.mul_pj(g.acc_bits, 32) + table.add_pj(32));
    Breakdown {
        mul_pj: mul,
        add_pj: add,
        reg_pj: reg_bits * table.reg_bit_pj,
        sram_pj: sram,
        dram_pj: dram,
        requant_pj: requant,
        static_pj: 0.0,
        accesses: acc,
        skipped_products: skipped,
    }
}

/// The energy of an M x K x N GEMM on `hw` (its array, formats, SRAMs and
/// table): the one function `gemm --stats`, `run`, `scalesim` and `dse` use.
/// `zero_products` comes from [`zero_products`] when the operands are known.
/// With the memory model enabled (`docs/memory.md`) the DRAM reads are its
/// words ([`crate::memory::plan`]), refetches of operands that do not fit
/// their SRAM included. The static term is [`static_pj`] over the GEMM's
/// cycles from [`crate::memory::plan`] (stalls included).
pub fn for_hw(
    hw: &crate::hw::HwConfig,
    m: u64,
    k: u64,
    n: u64,
    zero_products: Option<u64>,
    requantized: bool,
) -> Breakdown {
    let t = crate::memory::plan(&crate::memory::Layout::of_hw(hw), m as usize, k as usize, n as usize);
    let shape = GemmShape {
        dataflow: hw.dataflow(),
        rows: hw.rows(),
        cols: hw.cols(),
        m,
        k,
        n,
        act_bits: hw.activations().width(),
        weight_bits: hw.weights().width(),
        acc_bits: hw.acc_bits(),
        sram_bytes: hw.sram_bytes(),
        zero_products,
        requantized: if requantized { m * n } else { 0 },
        out_bits: if requantized { hw.requant().out.width() } else { hw.acc_bits() },
        dram_words: hw.memory().enabled.then_some([t.traffic.ifmap_dram_words, t.traffic.filter_dram_words]),
    };
    let mut b = gemm_energy(hw.energy(), &shape);
    b.static_pj = static_pj(hw, t.cycles);
    b
}

/// Static (leakage) energy of `cycles` array cycles on `hw`, pJ:
/// `cycles · T · (R·C·pe_leak(a, w, P) + leak_sram_bit·8·(S_I + S_W + S_O))`
/// with `T` the clock period in ns (mW · ns = pJ) and `S_*` the SRAM
/// sizes in bytes (`docs/energy.md` §3).
pub fn static_pj(hw: &crate::hw::HwConfig, cycles: u64) -> f64 {
    let t = hw.energy();
    let pe = t.pe_leak_mw(hw.activations().width(), hw.weights().width(), hw.acc_bits());
    let sram_bits = 8.0 * hw.sram_bytes().iter().sum::<u64>() as f64;
    let mw = (hw.rows() * hw.cols()) as f64 * pe + t.leak_sram_bit_mw * sram_bits;
    cycles as f64 * (hw.clock_period_ps() as f64 / 1000.0) * mw
}

impl Breakdown {
    /// The JSON form `bitmac gemm --energy` and `bitmac run --json` write:
    /// every term in pJ (Rust's shortest round-trip float formatting), the
    /// total, the skipped products and the access counts; keys sorted
    /// alphabetically (serde_json's map), so the bytes are fixed.
    pub fn to_json(&self) -> serde_json::Value {
        let a = &self.accesses;
        serde_json::json!({
            "mul_pj": self.mul_pj,
            "add_pj": self.add_pj,
            "reg_pj": self.reg_pj,
            "sram_pj": self.sram_pj,
            "dram_pj": self.dram_pj,
            "requant_pj": self.requant_pj,
            "static_pj": self.static_pj,
            "total_pj": self.total(),
            "skipped_products": self.skipped_products,
            "accesses": {
                "ifmap_sram_reads": a.ifmap_sram_reads,
                "filter_sram_reads": a.filter_sram_reads,
                "ofmap_sram_writes": a.ofmap_sram_writes,
                "ofmap_sram_reads": a.ofmap_sram_reads,
                "dram_reads": a.dram_reads,
                "dram_writes": a.dram_writes,
            },
        })
    }
}
