//! The fast functional engine: the numerics of `docs/datapath.md` without
//! stepping cycles.
//!
//! Structure: the output columns are cut into blocks of at most [`NB`]
//! columns that never straddle a column tile (ws, os); blocks run in
//! parallel (rayon) and are merged in block order, so results do not depend
//! on the thread count. Within a block, for every output row and fold, the
//! column chain (the fold's products added in K order, narrowed to P bits at
//! every adder) runs over the block's columns as one vectorizable loop, then
//! the fold's column sums are written back into the psum buffer (exactly as
//! the hardware's buffer adder does, per element).
//!
//! Shortcuts, each exact:
//! - **No-overflow proof.** For a fold and a block, if
//!   `max|A| * max_n sum_{k in fold} |w_kn| <= 2^(P-1) - 1` no chain prefix
//!   can leave the accumulator range (this is A2Q's l1 condition evaluated on
//!   the actual data), so the chain is a plain exact sum: no narrowing, no
//!   overflow checks.
//! - **WRAP is a ring homomorphism.** The stored WRAP chain is the exact
//!   prefix sum reduced mod 2^P, so the chain is computed exactly and wrapped
//!   once at the end of the fold. Overflow *counts* are still exact: adder r
//!   overflows iff `floor((E_r - min) / 2^P) != floor((E_{r-1} - min) / 2^P)`
//!   for the exact prefix sums `E` (the stored value `E_{r-1} mod 2^P` plus
//!   the product leaves the range exactly when the exact prefix crosses a
//!   multiple of 2^P shifted by `min`).
//! - **i32 lanes** when every chain value provably fits (`fold length *
//!   max|a| * max|w| < 2^30`, and P <= 30 wherever narrowing is needed);
//!   otherwise a scalar `i64` path with per-adder narrowing.
//!
//! Overflow counts are kept per tile; the first overflow event is then found
//! by re-running the earliest tile (in schedule order) that overflowed, with
//! per-adder checks and the timing formulas of `docs/datapath.md`. Tiles run
//! strictly one after another, so every event of an earlier tile precedes
//! every event of a later one.

// Hardware-shaped code: rows, columns and lanes are indexed explicitly.
#![allow(clippy::needless_range_loop)]

use super::stats::{centre, Tally};
use super::{tile_count, tile_index, Acc, ArrayBuffers, ArrayConfig, Dataflow, Matrix, Tile};
use super::{width_of_mag, OverflowEvent, Simd, Stats};
use crate::error::Result;
use crate::numerics::OverflowMode;
use rayon::prelude::*;

/// Column block width: lanes of the inner loops. The weight block is
/// repacked `K x NB` (zero-padded) so every inner loop has a constant trip
/// count and its accumulators stay in registers.
pub const NB: usize = 16;

/// Column blocks the plain-GEMM path runs at once (one zmm of 16 i32 lanes
/// each, sharing every activation broadcast).
const GROUP: usize = 4;

/// The weight side of the fast engine, prepared once for a config and a
/// `K x N` weight matrix and reusable by every GEMM that shares them (a
/// model node runs one per batch): the weights checked against the
/// config's weight format, their largest magnitude, the A2Q width from the
/// weights, the column blocks with their `l1` norms (whole K and per fold,
/// which the no-overflow proofs read), and the packings of the AVX-512 VNNI
/// paths (K pairs for `vpdpwssd`; for P = 16 `SAT` each weight in both i16
/// halves). Results do not depend on whether weights are prepared once or
/// per GEMM: [`crate::array::run_array`] prepares them per call.
///
/// Build with [`PreparedWeights::new`]; run with [`PreparedWeights::run`]
/// (results into caller-owned, reusable [`ArrayBuffers`]) or
/// [`PreparedWeights::run_chunked`] (row chunks to a sink).
#[derive(Clone, Debug)]
pub struct PreparedWeights {
    cfg: ArrayConfig,
    w: Matrix,
    k: usize,
    n: usize,
    /// Fold length: R (ws/is) or K (os), and the number of folds.
    fl: usize,
    folds: usize,
    wmax: u64,
    a2q_bits_weights: u32,
    /// Per fold: the number of K pairs of the `vpdpwssd` packing, and their
    /// sum.
    pairs: Vec<usize>,
    np: usize,
    blocks: Vec<BlockW>,
    /// The VNNI packings exist: the config runs at [`Simd::Avx512`] on a CPU
    /// with VNNI, d = 0, and every weight fits i16 (the weight side of
    /// [`Ctx::plain`]).
    vnni: bool,
}

/// One column block of W (`nb <= NB` columns from `n0`, never straddling a
/// column tile for ws / os).
#[derive(Clone, Debug)]
struct BlockW {
    n0: usize,
    nb: usize,
    /// `max_{n in block} sum_k |w_kn|`.
    total: u64,
    /// Per fold f: `max_{n in block} sum_{k in f} |w_kn|`; and their max.
    fold_norms: Vec<u64>,
    worst_fold: u64,
    /// `vpdpwssd` packing ([`pack_wpairs`]; empty unless `vnni`).
    wp: Vec<i16>,
    /// Saturating i16 packing: per k, 16 i32 words each holding the
    /// column's weight in both i16 halves (padded columns 0; empty unless
    /// `vnni` and P = 16 `SAT`).
    w2: Vec<i32>,
}

impl PreparedWeights {
    /// Prepare `w` (`K x N`) for GEMMs on `cfg`: checks K against
    /// [`super::MAX_K`] and every weight against the config's weight format
    /// (the error names `W[k,n]`, its value and the range).
    pub fn new(cfg: &ArrayConfig, w: &Matrix) -> Result<PreparedWeights> {
        if w.rows() > super::MAX_K {
            return Err(crate::error::Error::field("GEMM K", w.rows(), format!("1..={}", super::MAX_K)));
        }
        let wmax = check_format_max(cfg.wfmt, w, "W")?;
        Ok(PreparedWeights::build(cfg, w, wmax))
    }

    /// [`PreparedWeights::new`] without the checks (the caller made them;
    /// `wmax = max|W|`).
    pub(crate) fn build(cfg: &ArrayConfig, w: &Matrix, wmax: u64) -> PreparedWeights {
        let (k, n) = (w.rows(), w.cols());
        let fl = if cfg.dataflow == Dataflow::Os { k } else { cfg.rows };
        let folds = k.div_ceil(fl);
        let wd = &*w.to_i32();
        let pairs: Vec<usize> = (0..folds).map(|f| (((f + 1) * fl).min(k) - f * fl).div_ceil(2)).collect();
        let np = pairs.iter().sum();
        let vnni = cfg.simd == Simd::Avx512 && cfg.rounder.k() == 0 && wmax <= i16::MAX as u64 && has_vnni();
        let sat = vnni && cfg.acc.bits == 16 && cfg.acc.mode == OverflowMode::Sat;
        let mut spans = Vec::new();
        match cfg.dataflow {
            Dataflow::Ws | Dataflow::Os => {
                for c0 in (0..n).step_by(cfg.cols) {
                    let c1 = (c0 + cfg.cols).min(n);
                    for b0 in (c0..c1).step_by(NB) {
                        spans.push((b0, NB.min(c1 - b0)));
                    }
                }
            }
            Dataflow::Is => {
                for b0 in (0..n).step_by(NB) {
                    spans.push((b0, NB.min(n - b0)));
                }
            }
        }
        let blocks: Vec<BlockW> = spans
            .into_iter()
            .map(|(n0, nb)| block_w(cfg.simd, wd, n, k, fl, &pairs, np, n0, nb, vnni, sat))
            .collect();
        let max_total = blocks.iter().map(|b| b.total).max().unwrap_or(0);
        PreparedWeights {
            cfg: *cfg,
            // Held as i32 (the per-block loops index it); A keeps its width.
            w: w.with_i32_storage().into_owned(),
            k,
            n,
            fl,
            folds,
            wmax,
            // The largest column norm is the largest block `total`.
            a2q_bits_weights: super::stats::a2q_bits_from_norm(max_total, cfg.afmt),
            pairs,
            np,
            blocks,
            vnni,
        }
    }

    /// The config the weights were prepared for.
    pub fn config(&self) -> &ArrayConfig {
        &self.cfg
    }

    /// The weights (`K x N`).
    pub fn weights(&self) -> &Matrix {
        &self.w
    }

    /// K (rows of W).
    pub fn k(&self) -> usize {
        self.k
    }

    /// N (columns of W, output columns).
    pub fn n(&self) -> usize {
        self.n
    }

    /// A2Q's minimum accumulator width from these weights
    /// ([`super::stats::a2q_bits_weights`]), computed once.
    pub fn a2q_bits_weights(&self) -> u32 {
        self.a2q_bits_weights
    }

    /// Check A against these weights: shapes (A's columns = K) and every
    /// activation against the config's activation format (errors name
    /// `A[m,k]`).
    pub(crate) fn check_a(&self, a: &Matrix) -> Result<u64> {
        if a.cols() != self.k {
            return Err(crate::error::Error::input(format!(
                "GEMM shapes: A is {}x{} and W is {}x{} (A's columns must equal W's rows, K)",
                a.rows(),
                a.cols(),
                self.k,
                self.n
            )));
        }
        check_format_max(self.cfg.afmt, a, "A")
    }

    /// The statistics fields that depend only on the shapes and weights.
    pub(crate) fn a2q_stats(&self, st: &mut Stats) {
        st.a2q_bits_types = super::stats::a2q_bits_types(self.k, self.cfg.wfmt, self.cfg.afmt);
        st.a2q_bits_weights = self.a2q_bits_weights;
    }

    /// `A x W` on the array with `engine`, results into `out` (resized to
    /// `M x N`, its allocations reused across calls: no fresh `M x N`
    /// arrays once they are large enough). Returns the statistics,
    /// identical to [`super::run_array`]'s, as are `out.acc()` and
    /// `out.exact()`. Where every stored value provably equals the exact
    /// one (d = 0 and no adder overflowed: by induction every stored value
    /// is then the exact sum) the fast engine does not write the exact
    /// array at all and sets [`ArrayBuffers::exact_is_acc`]; `out.exact()`
    /// then returns the accumulators. Errors: A's shape or a value outside
    /// the activation format (nothing is written).
    pub fn run(&self, a: &Matrix, engine: super::Engine, out: &mut ArrayBuffers) -> Result<Stats> {
        let amax = self.check_a(a)?;
        Ok(self.run_checked(a, amax, engine, out))
    }

    /// [`PreparedWeights::run`] on an A already checked, `amax = max|A|`.
    pub(crate) fn run_checked(
        &self,
        a: &Matrix,
        amax: u64,
        engine: super::Engine,
        out: &mut ArrayBuffers,
    ) -> Stats {
        let mut stats = match engine {
            super::Engine::Fast => {
                let g = Gemm::new(self, a, amax);
                let (m, n) = (a.rows(), self.n);
                out.shape(m, n);
                let mut tally = Tally::default();
                let mut tiles = Vec::new();
                let same = g.run_rows(0, m, &mut tally, &mut tiles, &mut out.acc, &mut out.exact);
                out.exact_is_acc = same;
                g.finish(tally, &tiles)
            }
            super::Engine::Cycle => {
                let o = super::cycle::run(&self.cfg, a, &self.w, None);
                out.m = o.m;
                out.n = o.n;
                out.acc = o.acc;
                out.exact = o.exact;
                out.exact_is_acc = false;
                o.stats
            }
        };
        self.a2q_stats(&mut stats);
        stats
    }

    /// [`PreparedWeights::run`] delivering the results in row chunks, as
    /// [`super::run_array_chunked`] does: `sink(r0, acc, exact)` receives
    /// rows `r0..r0 + acc.len() / N` in increasing row order, at most
    /// `chunk_rows` rows at a time (the fast engine reuses one pair of
    /// chunk buffers; where a chunk's exact values provably equal its
    /// accumulators, `exact` is the same slice as `acc`). Returns the
    /// statistics, identical for any chunk size and thread count. An error
    /// from `sink` stops the run.
    pub fn run_chunked(
        &self,
        a: &Matrix,
        engine: super::Engine,
        chunk_rows: usize,
        sink: impl FnMut(usize, &[i64], &[i64]) -> Result<()>,
    ) -> Result<Stats> {
        let amax = self.check_a(a)?;
        self.run_chunked_checked(a, amax, engine, chunk_rows, sink)
    }

    /// [`PreparedWeights::run_chunked`] on an A already checked.
    pub(crate) fn run_chunked_checked(
        &self,
        a: &Matrix,
        amax: u64,
        engine: super::Engine,
        chunk_rows: usize,
        mut sink: impl FnMut(usize, &[i64], &[i64]) -> Result<()>,
    ) -> Result<Stats> {
        let mut stats = match engine {
            super::Engine::Fast => {
                let g = Gemm::new(self, a, amax);
                let (m, n) = (a.rows(), self.n);
                let mut tally = Tally::default();
                let mut tiles = Vec::new();
                let step = chunk_rows.max(1);
                let cap = step.min(m) * n;
                let (mut acc, mut exact) = (vec![0i64; cap], vec![0i64; cap]);
                let mut r0 = 0;
                while r0 < m {
                    let r1 = r0.saturating_add(step).min(m);
                    let len = (r1 - r0) * n;
                    let (ac, ex) = (&mut acc[..len], &mut exact[..len]);
                    let same = g.run_rows(r0, r1, &mut tally, &mut tiles, ac, ex);
                    sink(r0, ac, if same { ac } else { ex })?;
                    r0 = r1;
                }
                g.finish(tally, &tiles)
            }
            super::Engine::Cycle => {
                super::cycle::run_chunked(&self.cfg, a, &self.w, None, chunk_rows, &mut sink)?
            }
        };
        self.a2q_stats(&mut stats);
        Ok(stats)
    }
}

/// One column block of W prepared ([`BlockW`]) at the SIMD level `simd`
/// (the same integer results at every level).
#[allow(unsafe_code, clippy::too_many_arguments)]
fn block_w(
    simd: Simd,
    wd: &[i32],
    n: usize,
    k: usize,
    fl: usize,
    pairs: &[usize],
    np: usize,
    n0: usize,
    nb: usize,
    vnni: bool,
    sat: bool,
) -> BlockW {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
        #[allow(clippy::too_many_arguments)]
        fn avx512(
            wd: &[i32],
            n: usize,
            k: usize,
            fl: usize,
            pairs: &[usize],
            np: usize,
            n0: usize,
            nb: usize,
            vnni: bool,
            sat: bool,
        ) -> BlockW {
            block_w_impl(wd, n, k, fl, pairs, np, n0, nb, vnni, sat)
        }
        if simd == Simd::Avx512 {
            // SAFETY: `simd` never exceeds `Simd::detect()`: the CPU has
            // the features `avx512` enables.
            return unsafe { avx512(wd, n, k, fl, pairs, np, n0, nb, vnni, sat) };
        }
    }
    let _ = simd;
    block_w_impl(wd, n, k, fl, pairs, np, n0, nb, vnni, sat)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block_w_impl(
    wd: &[i32],
    n: usize,
    k: usize,
    fl: usize,
    pairs: &[usize],
    np: usize,
    n0: usize,
    nb: usize,
    vnni: bool,
    sat: bool,
) -> BlockW {
    let folds = k.div_ceil(fl);
    // One pass over the block's weights: the fold norms, the
    // whole-K norms and the packings.
    let mut total = [0u64; NB];
    let mut fold_norms = Vec::with_capacity(folds);
    let mut wp = if vnni { vec![0i16; np * 2 * NB] } else { Vec::new() };
    let mut w2 = if sat { vec![0i32; k * NB] } else { Vec::new() };
    let mut q0 = 0;
    for f in 0..folds {
        let (k0, k1) = (f * fl, ((f + 1) * fl).min(k));
        let mut norms = [0u64; NB];
        for kk in k0..k1 {
            // A fixed-size copy for a full block (no `memcpy` call per row).
            let src = &wd[kk * n + n0..kk * n + n0 + nb];
            let mut row = [0i32; NB];
            match <&[i32; NB]>::try_from(src) {
                Ok(r) => row = *r,
                Err(_) => row[..nb].copy_from_slice(src),
            }
            for x in 0..NB {
                norms[x] += row[x].unsigned_abs() as u64;
            }
            if vnni {
                // `pack_wpairs`'s layout: pair `q0 + (kk - k0) / 2`,
                // half `(kk - k0) % 2`.
                let (q, h) = (q0 + (kk - k0) / 2, (kk - k0) % 2);
                let dst = &mut wp[q * 2 * NB..(q + 1) * 2 * NB];
                for x in 0..NB {
                    dst[2 * x + h] = row[x] as i16;
                }
            }
            if sat {
                let dst = &mut w2[kk * NB..(kk + 1) * NB];
                for x in 0..NB {
                    let v = row[x] as i16 as u16 as u32;
                    dst[x] = (v | v << 16) as i32;
                }
            }
        }
        q0 += pairs[f];
        for x in 0..NB {
            total[x] += norms[x];
        }
        fold_norms.push(norms.iter().copied().max().unwrap_or(0));
    }
    debug_assert!(!vnni || wp == pack_wpairs(wd, n, k, fl, pairs, n0, nb));
    let total = total.iter().copied().max().unwrap_or(0);
    BlockW { n0, nb, total, worst_fold: fold_norms.iter().copied().max().unwrap_or(0), fold_norms, wp, w2 }
}

/// The smallest and largest value of `d` (`(i32::MAX, i32::MIN)` when
/// empty), vectorized at the best SIMD level of the CPU (`pminsd` needs
/// SSE4.1, above the baseline target).
#[allow(unsafe_code)]
fn extremes(d: &[i32]) -> (i32, i32) {
    #[inline(always)]
    fn imp(d: &[i32]) -> (i32, i32) {
        let (mut lo, mut hi) = ([i32::MAX; 16], [i32::MIN; 16]);
        let mut it = d.chunks_exact(16);
        for c in &mut it {
            for x in 0..16 {
                lo[x] = lo[x].min(c[x]);
                hi[x] = hi[x].max(c[x]);
            }
        }
        for &v in it.remainder() {
            lo[0] = lo[0].min(v);
            hi[0] = hi[0].max(v);
        }
        (lo.iter().copied().min().unwrap_or(i32::MAX), hi.iter().copied().max().unwrap_or(i32::MIN))
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn avx2(d: &[i32]) -> (i32, i32) {
            imp(d)
        }
        if Simd::detect() >= Simd::Avx2 {
            // SAFETY: the CPU has AVX2 (`Simd::detect`).
            return unsafe { avx2(d) };
        }
    }
    imp(d)
}

/// Check every value of `x` against `fmt` (the error names `what[r,c]`,
/// [`Matrix::check_format`]) and return `max|x|`: one pass over the
/// extremes (the scan naming the first bad element runs only when one is
/// out of range).
pub(crate) fn check_format_max(fmt: crate::numerics::IntFormat, x: &Matrix, what: &str) -> Result<u64> {
    let (lo, hi) = match x.codes() {
        super::Codes::I32(d) => extremes(d),
        c => c.min_max(),
    };
    if !(fmt.contains(lo as i128) && fmt.contains(hi as i128)) {
        x.check_format(fmt, what)?;
    }
    Ok(lo.unsigned_abs().max(hi.unsigned_abs()) as u64)
}

/// Shared, read-only context of one GEMM: the prepared weights and A.
struct Ctx<'a> {
    pw: &'a PreparedWeights,
    cfg: &'a ArrayConfig,
    a: &'a Matrix,
    w: &'a Matrix,
    m: usize,
    k: usize,
    n: usize,
    /// Fold length: R (ws/is) or K (os).
    fl: usize,
    folds: usize,
    /// Folds for tile indexing (ws/is) and column tiles (os).
    tfolds: usize,
    ntiles_n: usize,
    ntiles: usize,
    amax: u64,
    use32: bool,
    /// The plain-GEMM path may run ([`plain_group`]'s global conditions:
    /// AVX-512 VNNI level, d = 0, i16 operands); per block it still checks
    /// the no-overflow proof and the width condition.
    plain: bool,
    /// Per fold: the number of K pairs of the plain-GEMM packing.
    pairs: &'a [usize],
    np: usize,
    /// The saturating i16 path may run ([`sat16_group`]'s global
    /// conditions: those of `plain`, P = 16 `SAT`, every product fits i16,
    /// the i16 counters' limits, and for `is` / `os` an even row count per
    /// tile); per block it still checks `B <= 2^31 - 1` and the width
    /// condition.
    sat16: bool,
}

/// A GEMM prepared for the fast engine: the context. Rows are independent
/// (the psum buffer of output row `m` only ever sees row `m` of A), so
/// [`Gemm::run_rows`] can run any row range, in any split, and the integer
/// tallies merge exactly (sums, maxima, ORs and a minimum: order-free).
struct Gemm<'a> {
    ctx: Ctx<'a>,
}

/// What one parallel job (a range of rows, every column block) tallied.
struct JobOut {
    tally: Tally,
    tile_counts: Vec<u64>,
    /// Column blocks (indices into `PreparedWeights::blocks`) whose `exact`
    /// the job did not write because it equals `acc` (the plain path).
    unwritten: Vec<usize>,
}

/// Where a job writes: rows `r0..` of the row-major `N`-column outputs.
struct View<'a> {
    acc: &'a mut [i64],
    exact: &'a mut [i64],
    n: usize,
    r0: usize,
}

impl<'a> Gemm<'a> {
    fn new(pw: &'a PreparedWeights, a: &'a Matrix, amax: u64) -> Gemm<'a> {
        let cfg = &pw.cfg;
        let (m, k, n) = (a.rows(), pw.k, pw.n);
        let fl = pw.fl;
        let wmax = pw.wmax;
        let use32 = (fl as u128) * (amax as u128) * (wmax as u128) < (1u128 << 30)
            && amax <= i16::MAX as u64
            && wmax <= i16::MAX as u64;
        let plain = use32 && pw.vnni;
        let sat16 = plain
            && cfg.acc.bits == 16
            && cfg.acc.mode == OverflowMode::Sat
            && (amax as u128) * (wmax as u128) <= i16::MAX as u128
            && fl < SAT16_MAX_COUNT
            && pw.folds < SAT16_MAX_COUNT
            && match cfg.dataflow {
                Dataflow::Ws => true,
                Dataflow::Is => cfg.cols.is_multiple_of(2),
                Dataflow::Os => cfg.rows.is_multiple_of(2),
            };
        let ctx = Ctx {
            pw,
            cfg,
            a,
            w: &pw.w,
            m,
            k,
            n,
            fl,
            folds: pw.folds,
            tfolds: k.div_ceil(cfg.rows),
            ntiles_n: n.div_ceil(cfg.cols),
            ntiles: tile_count(cfg, m, k, n),
            amax,
            use32,
            plain,
            pairs: &pw.pairs,
            np: pw.np,
            sat16,
        };
        Gemm { ctx }
    }

    /// Output rows `r0..r1` into `acc` / `exact` (row-major `(r1 - r0) x
    /// N`), with the tallies and per-tile overflow counts added into
    /// `tally` / `tile_counts`. Returns true when `exact` was left unwritten
    /// because it equals `acc` (d = 0 and no overflow in these rows).
    fn run_rows(
        &self,
        r0: usize,
        r1: usize,
        tally: &mut Tally,
        tile_counts: &mut Vec<u64>,
        acc: &mut [i64],
        exact: &mut [i64],
    ) -> bool {
        let ctx = &self.ctx;
        let n = ctx.n;
        assert_eq!(acc.len(), (r1 - r0) * n);
        assert_eq!(exact.len(), (r1 - r0) * n);
        if tile_counts.len() != ctx.ntiles {
            *tile_counts = vec![0; ctx.ntiles];
        }
        let jr = job_rows(ctx.k, n, r1 - r0);
        let outs: Vec<JobOut> = acc
            .par_chunks_mut(jr * n)
            .zip(exact.par_chunks_mut(jr * n))
            .enumerate()
            .map(|(j, (ac, ex))| {
                let s = r0 + j * jr;
                let e = s + ac.len() / n;
                run_job(ctx, s, e, View { acc: ac, exact: ex, n, r0: s })
            })
            .collect();
        let mut chunk = Tally::default();
        for out in &outs {
            chunk.merge(&out.tally);
            for (t, c) in tile_counts.iter_mut().zip(&out.tile_counts) {
                *t += c;
            }
        }
        let same = ctx.cfg.rounder.k() == 0 && chunk.ovf_array == 0 && chunk.ovf_psum == 0;
        tally.merge(&chunk);
        if !same {
            // Blocks the plain path left without `exact` (it equals their
            // `acc`) next to blocks that overflowed: copy.
            for (j, out) in outs.iter().enumerate() {
                let s = j * jr;
                let e = (s + jr).min(r1 - r0);
                for &bi in &out.unwritten {
                    let b = &ctx.pw.blocks[bi];
                    for row in s..e {
                        let d = row * n + b.n0;
                        exact[d..d + b.nb].copy_from_slice(&acc[d..d + b.nb]);
                    }
                }
            }
        }
        same
    }

    /// The statistics once every row has run: the first overflow event
    /// (re-running the earliest tile that overflowed) and the cycle count,
    /// each from one pass of the schedule (none when the memory model is
    /// off and nothing overflowed: the closed form gives the cycles).
    fn finish(&self, mut tally: Tally, tile_counts: &[u64]) -> Stats {
        let ctx = &self.ctx;
        let cfg = ctx.cfg;
        let (cycles, stalls) = match tile_counts.iter().position(|&c| c > 0) {
            Some(t) => {
                let (tiles, timing) = super::schedule(cfg, ctx.m, ctx.k, ctx.n);
                tally.first = scan_tile(ctx, &tiles[t]);
                (timing.cycles, timing.stall_cycles)
            }
            None => super::cycles_and_stalls(cfg, ctx.m, ctx.k, ctx.n),
        };
        let mut st = tally.into_stats(cfg.rounder.k(), (ctx.m * ctx.k * ctx.n) as u64, cycles);
        st.stall_cycles = cfg.mem.enabled.then_some(stalls);
        st
    }
}

/// Rows per parallel job: about four jobs per thread, each at least 2^16
/// MACs' worth of rows, a multiple of 8 (so every job but the last starts
/// and ends on a row pair of the saturating i16 path and a row group of
/// the plain path).
fn job_rows(k: usize, n: usize, rows: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let min_rows = (1usize << 16).div_ceil(k.max(1) * n.max(1));
    rows.div_ceil(4 * threads).max(min_rows).max(1).next_multiple_of(8)
}

/// One job: rows `v.r0..v.r0 + rows` of every column block.
fn run_job(ctx: &Ctx, r0: usize, r1: usize, mut v: View) -> JobOut {
    let mut out = JobOut { tally: Tally::default(), tile_counts: vec![0; ctx.ntiles], unwritten: Vec::new() };
    // The plain-GEMM path's A operand for these rows, paired once here for
    // every column block.
    let apair = if ctx.plain { pair_rows(ctx, r0, r1) } else { Vec::new() };
    // The saturating i16 path pairs rows `(r0 + 2i, r0 + 2i + 1)`; for
    // `is` / `os` a pair must not straddle a tile's rows (tiles hold an
    // even number of rows there, so `r0` must be even).
    let sat16 = ctx.sat16 && (ctx.cfg.dataflow == Dataflow::Ws || r0.is_multiple_of(2));
    let a2 = if sat16 { pair_rows2(ctx, r0, r1) } else { Vec::new() };
    let nblocks = ctx.pw.blocks.len();
    let mut b = 0;
    while b < nblocks {
        let g = GROUP.min(nblocks - b);
        if ctx.plain && plain_group(ctx, &apair, b, g, r0, r1, &mut v, &mut out) {
            PATH_COUNTS[0].fetch_add(g as u64, std::sync::atomic::Ordering::Relaxed);
            out.unwritten.extend(b..b + g);
        } else if sat16 && sat16_group(ctx, &apair, &a2, b, g, r0, r1, &mut v, &mut out) {
            PATH_COUNTS[1].fetch_add(g as u64, std::sync::atomic::Ordering::Relaxed);
        } else {
            for bi in b..b + g {
                run_block(ctx, &apair, sat16.then_some(&a2[..]), bi, r0, r1, &mut v, &mut out);
            }
        }
        b += g;
    }
    out
}

use super::stats::HIST_HALF;
use super::{add_m, mag_m, SAT, SATS, SATZ, WRAP};
use crate::numerics::LaneRounder;
const SAFE: u8 = 0;

#[inline(always)]
fn mag32<const SYM: bool>(e: i32) -> i32 {
    if SYM {
        e.wrapping_abs()
    } else {
        e ^ (e >> 31)
    }
}

/// One fold of the column chain over a block, in i32 lanes. Returns the
/// stored column sums `s`, the exact ones `e`, ORs into `o` a value with
/// the bit length of the largest `mag` of every exact prefix, and returns
/// the number of adder overflows.
#[inline(always)]
fn fold32<const MODE: u8, const SYM: bool>(
    arow: &[i16],
    wp: &[i16],
    k0: usize,
    s_out: &mut [i32; NB],
    e_out: &mut [i32; NB],
    o_io: &mut [i32; NB],
    acc: &Acc,
) -> u64 {
    let (min, max, bits) =
        (acc.min.max(i32::MIN as i64) as i32, acc.max.min(i32::MAX as i64) as i32, acc.bits);
    let mut s = [0i32; NB];
    let mut e = [0i32; NB];
    // The largest and smallest exact prefix per lane: `mag` is V-shaped
    // (decreasing below 0, increasing above), so the largest `mag` over a
    // lane's prefixes is `max(mag(hi), mag(lo))`, and the OR of the two has
    // the bit length of the OR over every prefix, which is all that the
    // width statistic reads. Two min/max per MAC instead of three ops.
    let mut hi = [0i32; NB];
    let mut lo = [0i32; NB];
    let mut cnt = [0i32; NB];
    for (kk, &av) in arow.iter().enumerate() {
        let base = (k0 + kk) * NB;
        let wr: &[i16; NB] = wp[base..base + NB].try_into().expect("packed block");
        let av = av as i32;
        for x in 0..NB {
            // i16 x i16 -> i32: both operands are sign-extended 16-bit
            // values, so the multiply vectorizes well even on baseline x86-64.
            let p = av * wr[x] as i32;
            match MODE {
                SAFE => {
                    e[x] += p;
                    hi[x] = hi[x].max(e[x]);
                    lo[x] = lo[x].min(e[x]);
                }
                WRAP => {
                    let ne = e[x] + p;
                    cnt[x] += (((e[x] - min) >> bits) != ((ne - min) >> bits)) as i32;
                    e[x] = ne;
                    hi[x] = hi[x].max(ne);
                    lo[x] = lo[x].min(ne);
                }
                _ => {
                    let t = s[x] + p;
                    let ns = match MODE {
                        SAT => t.clamp(min, max),
                        SATZ => {
                            if t < min || t > max {
                                0
                            } else {
                                t
                            }
                        }
                        _ => t.clamp(-max, max),
                    };
                    cnt[x] += (ns != t) as i32;
                    s[x] = ns;
                    e[x] += p;
                    hi[x] = hi[x].max(e[x]);
                    lo[x] = lo[x].min(e[x]);
                }
            }
        }
    }
    match MODE {
        SAFE => s = e,
        WRAP => {
            let sh = 32 - bits;
            for x in 0..NB {
                s[x] = (e[x] << sh) >> sh;
            }
        }
        _ => {}
    }
    for x in 0..NB {
        o_io[x] |= mag32::<SYM>(hi[x]) | mag32::<SYM>(lo[x]);
    }
    *s_out = s;
    *e_out = e;
    cnt.iter().map(|&c| c as u64).sum()
}

/// Per-block running state of the psum buffer for one output row.
struct Buf {
    /// Stored buffer (units of 2^d), exact shadow `sum round_d(S_exact)`,
    /// exact GEMM.
    b: [i64; NB],
    be: [i64; NB],
    ex: [i64; NB],
    max_psum: u64,
    max_acc: u64,
    or: u64,
}

/// Write one fold's column sums back into the psum buffer, d = 0:
/// `B = narrow_P(B + S)`, `EX += S_exact` (= the exact buffer). Padded
/// lanes carry zeros and change nothing. Returns the buffer overflows.
#[inline(always)]
fn writeback_d0<const MODE: u8>(acc: &Acc, s: &[i64; NB], e: &[i64; NB], st: &mut Buf) -> u64 {
    let mut cnt = 0u64;
    let (mut mp, mut ma, mut or) = (st.max_psum, st.max_acc, st.or);
    for x in 0..NB {
        let sv = s[x];
        mp = mp.max(sv.unsigned_abs());
        let (nb, of) = add_m::<MODE>(acc, st.b[x], sv);
        cnt += of as u64;
        st.b[x] = nb;
        ma = ma.max(nb.unsigned_abs());
        st.ex[x] += e[x];
        or |= acc.mag(st.ex[x]);
    }
    st.be = st.ex;
    st.max_psum = mp;
    st.max_acc = ma;
    st.or = or;
    cnt
}

/// Residue-histogram slots of the chain path's writeback ([`Hist4`]):
/// `0` below `-HIST_HALF`, `1..=2*HIST_HALF+1` the bins, the last above.
const HB: usize = 2 * HIST_HALF as usize + 3;

/// Four copies of the residue histogram, lane `x` counting into copy
/// `x % 4`, so consecutive increments of one bin (a small `d` has few
/// residues) do not wait on each other; summed into the tally by
/// [`flush_hist`] once per block.
type Hist4 = [[u64; HB]; 4];

/// Add `h` into `t.hist` (the sums are order-free: the same counts).
fn flush_hist(h: &Hist4, t: &mut Tally) {
    for c in h {
        t.hist.below += c[0];
        for (b, &v) in t.hist.bins.iter_mut().zip(&c[1..HB - 1]) {
            *b += v;
        }
        t.hist.above += c[HB - 1];
    }
}

/// Writeback with rounding (d > 0): `B = narrow_P(B + round_d(S))`, with the
/// exact shadow `BE += round_d(S_exact)` and `EX += S_exact`; only the `nb`
/// real lanes round (a padded zero could round to a non-zero value). In
/// `i64` lanes ([`writeback_lanes`], `lr` given: `d <= 32` and `P <= 63`),
/// else in `i128` ([`writeback_round128`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn writeback_round(
    cfg: &ArrayConfig,
    lr: Option<&LaneRounder>,
    s: &[i64; NB],
    e: &[i64; NB],
    nb: usize,
    st: &mut Buf,
    tally: &mut Tally,
    hist: &mut Hist4,
) -> u64 {
    match lr {
        Some(lr) => match cfg.acc.mode {
            OverflowMode::Wrap => writeback_lanes::<WRAP>(&cfg.acc, lr, s, e, nb, st, tally, hist),
            OverflowMode::Sat => writeback_lanes::<SAT>(&cfg.acc, lr, s, e, nb, st, tally, hist),
            OverflowMode::SatZero => writeback_lanes::<SATZ>(&cfg.acc, lr, s, e, nb, st, tally, hist),
            OverflowMode::SatSym => writeback_lanes::<SATS>(&cfg.acc, lr, s, e, nb, st, tally, hist),
        },
        None => writeback_round128(cfg, s, e, nb, st, tally),
    }
}

/// [`writeback_round`] in `i128`, for `P = 64` or `d > 32`.
#[inline(never)]
fn writeback_round128(
    cfg: &ArrayConfig,
    s: &[i64; NB],
    e: &[i64; NB],
    nb: usize,
    st: &mut Buf,
    tally: &mut Tally,
) -> u64 {
    let acc = cfg.acc;
    let h = centre(&cfg.rounder);
    let mut cnt = 0u64;
    for x in 0..nb {
        let sv = s[x];
        st.max_psum = st.max_psum.max(sv.unsigned_abs());
        let (r, info) = cfg.rounder.round_info(sv as i128);
        tally.record_round(&info, h);
        let (nbv, of) = acc.add(st.b[x], r as i64);
        cnt += of as u64;
        st.b[x] = nbv;
        st.max_acc = st.max_acc.max(nbv.unsigned_abs());
        st.be[x] += cfg.rounder.round(e[x] as i128) as i64;
        st.or |= acc.mag(st.be[x]);
        st.ex[x] += e[x];
    }
    cnt
}

/// [`add_m`] for operands whose sum cannot leave `i64` (then `add_m`'s
/// `overflowing_add` never reports, and this is the same function), as
/// plain lane arithmetic.
#[inline(always)]
fn add_lane<const MODE: u8>(acc: &Acc, b: i64, r: i64) -> (i64, bool) {
    let t = b + r;
    let v = match MODE {
        WRAP => {
            let sh = 64 - acc.bits;
            (t << sh) >> sh
        }
        SAT => t.clamp(acc.min, acc.max),
        SATZ => {
            if (t > acc.max) | (t < acc.min) {
                0
            } else {
                t
            }
        }
        _ => t.clamp(-acc.max, acc.max),
    };
    (v, v != t)
}

/// [`writeback_round`] in `i64` lanes, the overflow mode fixed at compile
/// time and the rounding mode in [`LaneRounder`]'s branch-free form, so
/// the loop over the block's `NB` lanes vectorizes (padded lanes masked:
/// they carry `S = S_exact = 0` and add nothing). The same values and
/// tallies as the `i128` path:
/// - `LaneRounder::round` equals `Rounder::round` for `|x| <= 2^62, d <=
///   32` (`tests/numerics_reference.rs`); `|S| <= 2^62` (a stored value
///   of `P <= 63` bits) and `|S_exact| <= 2^60` (at most 2^28 products of
///   at most 2^32);
/// - `B + round_d(S)` stays inside `i64` (`|B| <= 2^62`, `|round_d(S)| <=
///   2^61 + 1`), so [`add_lane`] is `Acc::add`;
/// - the residue is `S mod 2^d`, a tie is residue `==` the centre, the
///   error `round_d(S) * 2^d - S` (`|error| < 2^(d+1)`); the error sum
///   over at most 16 lanes fits `i64`, and so does the sum of squares for
///   `d <= 27` (`< 16 * 2^56`; larger `d` sums them in `u128` per lane).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn writeback_lanes<const MODE: u8>(
    acc: &Acc,
    lr: &LaneRounder,
    s: &[i64; NB],
    e: &[i64; NB],
    nb: usize,
    st: &mut Buf,
    tally: &mut Tally,
    hist: &mut Hist4,
) -> u64 {
    // Element-wise loops over arrays and separate reductions: the shape
    // LLVM vectorizes (one loop doing all of it stayed scalar).
    let lr = *lr;
    let (k, h) = (lr.k(), lr.centre());
    let mut r = [0i64; NB];
    let mut re = [0i64; NB];
    let mut idx = [0u8; NB];
    let mut err = [0i64; NB];
    let mut tie = [0i64; NB];
    let mut of = [0i64; NB];
    for x in 0..NB {
        // All ones on the real lanes; padded lanes add nothing.
        let valid = -((x < nb) as i64);
        r[x] = lr.round(s[x]) & valid;
        re[x] = lr.round(e[x]) & valid;
        let res = lr.residue(s[x]);
        tie[x] = ((res == h) as i64) & valid;
        idx[x] = ((res - h).clamp(-HIST_HALF - 1, HIST_HALF + 1) + HIST_HALF + 1) as u8;
        // 0 on padded lanes (r = S = 0 there).
        err[x] = (r[x] << k) - s[x];
    }
    let (mut mp, mut ma, mut or) = (st.max_psum, st.max_acc, st.or);
    for x in 0..NB {
        mp = mp.max(s[x].unsigned_abs());
        let (nbv, o) = add_lane::<MODE>(acc, st.b[x], r[x]);
        of[x] = o as i64;
        st.b[x] = nbv;
        ma = ma.max(nbv.unsigned_abs());
        let be = st.be[x] + re[x];
        st.be[x] = be;
        or |= mag_m::<MODE>(be);
        st.ex[x] += e[x];
    }
    for (x, &i) in idx[..nb].iter().enumerate() {
        hist[x & 3][i as usize] += 1;
    }
    let err_sum: i64 = err.iter().sum();
    let err_sq: u128 = if k <= 27 {
        // |error| < 2^28: the i32 square is exact.
        err.iter().map(|&v| (v as i32 as i64) * (v as i32 as i64)).sum::<i64>() as u128
    } else {
        err.iter().map(|&v| (v.unsigned_abs() as u128) * (v.unsigned_abs() as u128)).sum()
    };
    st.max_psum = mp;
    st.max_acc = ma;
    st.or = or;
    tally.rounded += nb as u64;
    tally.ties += tie.iter().sum::<i64>() as u64;
    tally.err_sum += err_sum as i128;
    tally.err_sq += err_sq;
    of.iter().sum::<i64>() as u64
}

/// Column block `bi` over rows `r0..r1`, written into `v` and tallied into
/// `out`: the plain-GEMM path alone where it holds, else the saturating
/// i16 path, else the chain path at the config's SIMD level.
#[allow(unsafe_code, clippy::too_many_arguments)]
fn run_block(
    ctx: &Ctx,
    apair: &[i32],
    a2: Option<&[i32]>,
    bi: usize,
    r0: usize,
    r1: usize,
    v: &mut View,
    out: &mut JobOut,
) {
    if ctx.plain && plain_group(ctx, apair, bi, 1, r0, r1, v, out) {
        PATH_COUNTS[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        out.unwritten.push(bi);
        return;
    }
    if let Some(a2) = a2 {
        if sat16_group(ctx, apair, a2, bi, 1, r0, r1, v, out) {
            PATH_COUNTS[1].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
    }
    match ctx.cfg.simd {
        // SAFETY: `cfg.simd` never exceeds `Simd::detect()` (set by
        // `ArrayConfig::from_hw` or capped by `with_simd`), so the CPU has
        // every feature the wrapper enables.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { run_block_avx512(ctx, bi, r0, r1, v, out) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { run_block_avx2(ctx, bi, r0, r1, v, out) },
        _ => run_block_impl(ctx, bi, r0, r1, v, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_block_avx2(ctx: &Ctx, bi: usize, r0: usize, r1: usize, v: &mut View, out: &mut JobOut) {
    run_block_impl(ctx, bi, r0, r1, v, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn run_block_avx512(ctx: &Ctx, bi: usize, r0: usize, r1: usize, v: &mut View, out: &mut JobOut) {
    run_block_impl(ctx, bi, r0, r1, v, out)
}

/// One column block over rows `r0..r1` (inlined into each SIMD wrapper).
#[inline(always)]
fn run_block_impl(ctx: &Ctx, bi: usize, r0: usize, r1: usize, v: &mut View, out: &mut JobOut) {
    let cfg = ctx.cfg;
    let bw = &ctx.pw.blocks[bi];
    let (n0, nb) = (bw.n0, bw.nb);
    let (k, n) = (ctx.k, ctx.n);
    let acc = cfg.acc;
    let mut abuf = Vec::new();
    let ad = ctx.a.rows_i32(r0, r1, &mut abuf);
    let wd = ctx.w.to_i32();
    // The weight block, repacked K x NB with zero padding.
    // (i16 for the i32-lane path, whose operands fit i16 by construction).
    let mut wp = vec![0i32; k * NB];
    for kk in 0..k {
        wp[kk * NB..kk * NB + nb].copy_from_slice(&wd[kk * n + n0..kk * n + n0 + nb]);
    }
    let wp16: Vec<i16> = if ctx.use32 { wp.iter().map(|&v| v as i16).collect() } else { Vec::new() };
    let mut arow16 = vec![0i16; if ctx.use32 { k } else { 0 }];
    // Per fold: does the no-overflow proof hold for every column of the block?
    let safe: Vec<bool> =
        bw.fold_norms.iter().map(|&worst| (worst as u128) * (ctx.amax as u128) <= acc.max as u128).collect();
    let sym = acc.mode == OverflowMode::SatSym;
    let mode = match acc.mode {
        OverflowMode::Wrap => WRAP,
        OverflowMode::Sat => SAT,
        OverflowMode::SatZero => SATZ,
        OverflowMode::SatSym => SATS,
    };
    let d = cfg.rounder.k();
    // The i64-lane writeback where it is exact (d <= 32, P <= 63).
    let lr = LaneRounder::new(&cfg.rounder).filter(|_| acc.bits <= 63);
    let mut hist: Hist4 = [[0; HB]; 4];
    let (mut s32, mut e32, mut o32) = ([0i32; NB], [0i32; NB], [0i32; NB]);
    let (mut s64, mut e64) = ([0i64; NB], [0i64; NB]);
    let mut st = Buf { b: [0; NB], be: [0; NB], ex: [0; NB], max_psum: 0, max_acc: 0, or: 0 };
    for mm in r0..r1 {
        st.b = [0; NB];
        st.be = [0; NB];
        st.ex = [0; NB];
        let arow_all = &ad[(mm - r0) * k..(mm - r0 + 1) * k];
        if ctx.use32 {
            for (d16, &v) in arow16.iter_mut().zip(arow_all) {
                *d16 = v as i16;
            }
        }
        for f in 0..ctx.folds {
            let (k0, k1) = (f * ctx.fl, ((f + 1) * ctx.fl).min(k));
            let arow = &arow_all[k0..k1];
            let cnt = if ctx.use32 {
                let (arow, wp) = (&arow16[k0..k1], &wp16);
                let (s, e, o) = (&mut s32, &mut e32, &mut o32);
                let c = match (safe[f], mode, sym) {
                    (true, _, false) => fold32::<SAFE, false>(arow, wp, k0, s, e, o, &acc),
                    (true, _, true) => fold32::<SAFE, true>(arow, wp, k0, s, e, o, &acc),
                    (false, WRAP, _) => fold32::<WRAP, false>(arow, wp, k0, s, e, o, &acc),
                    (false, SAT, _) => fold32::<SAT, false>(arow, wp, k0, s, e, o, &acc),
                    (false, SATZ, _) => fold32::<SATZ, false>(arow, wp, k0, s, e, o, &acc),
                    (false, _, _) => fold32::<SATS, true>(arow, wp, k0, s, e, o, &acc),
                };
                for x in 0..NB {
                    s64[x] = s32[x] as i64;
                    e64[x] = e32[x] as i64;
                }
                c
            } else {
                fold64(arow, &wp, k0, &mut s64, &mut e64, &mut st.or, &acc)
            };
            let wcnt = if d == 0 {
                match mode {
                    WRAP => writeback_d0::<WRAP>(&acc, &s64, &e64, &mut st),
                    SAT => writeback_d0::<SAT>(&acc, &s64, &e64, &mut st),
                    SATZ => writeback_d0::<SATZ>(&acc, &s64, &e64, &mut st),
                    _ => writeback_d0::<SATS>(&acc, &s64, &e64, &mut st),
                }
            } else {
                writeback_round(cfg, lr.as_ref(), &s64, &e64, nb, &mut st, &mut out.tally, &mut hist)
            };
            out.tally.writebacks += nb as u64;
            out.tally.ovf_psum += wcnt;
            out.tally.ovf_array += cnt;
            let tile = tile_index(cfg, ctx.tfolds, ctx.ntiles_n, mm, n0, f);
            out.tile_counts[tile] += cnt + wcnt;
        }
        let d = (mm - v.r0) * v.n + n0;
        v.acc[d..d + nb].copy_from_slice(&st.b[..nb]);
        v.exact[d..d + nb].copy_from_slice(&st.ex[..nb]);
    }
    for &o in &o32 {
        st.or |= o as u32 as u64;
    }
    flush_hist(&hist, &mut out.tally);
    out.tally.width_or |= st.or;
    out.tally.max_psum = out.tally.max_psum.max(st.max_psum);
    out.tally.max_acc = out.tally.max_acc.max(st.max_acc);
}

/// Rows `r0..r1` of A as the plain-GEMM path reads them: per row, per
/// fold, the K pairs `(a[k], a[k+1])` as one i32 word (low half `a[k]`,
/// both as i16; a missing `k + 1` at the end of an odd fold as 0).
fn pair_rows(ctx: &Ctx, r0: usize, r1: usize) -> Vec<i32> {
    let k = ctx.k;
    let np = ctx.np;
    let mut abuf = Vec::new();
    let ad = ctx.a.rows_i32(r0, r1, &mut abuf);
    let mut v = vec![0i32; (r1 - r0) * np];
    let pack = |lo: i32, hi: i32| (lo as i16 as u16 as u32 | (hi as i16 as u16 as u32) << 16) as i32;
    for (row, dst) in ad.chunks(k.max(1)).zip(v.chunks_mut(np.max(1))) {
        if ctx.fl.is_multiple_of(2) {
            // Every fold but the last has even length: the pairs are
            // `(a[2q], a[2q + 1])` in order, and only an odd K leaves the
            // last pair `(a[K - 1], 0)`.
            for (d, p) in dst.iter_mut().zip(row.chunks_exact(2)) {
                *d = pack(p[0], p[1]);
            }
            if k % 2 == 1 {
                dst[np - 1] = pack(row[k - 1], 0);
            }
            continue;
        }
        let mut q = 0;
        for (f, &pc) in ctx.pairs.iter().enumerate() {
            let (k0, k1) = (f * ctx.fl, ((f + 1) * ctx.fl).min(k));
            for p in 0..pc {
                let hi = if k0 + 2 * p + 1 < k1 { row[k0 + 2 * p + 1] } else { 0 };
                dst[q] = pack(row[k0 + 2 * p], hi);
                q += 1;
            }
        }
    }
    v
}

/// Whether this CPU has AVX-512 VNNI (`vpdpwssd`), for [`plain_group`].
fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *VNNI.get_or_init(|| is_x86_feature_detected!("avx512vnni"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The plain-GEMM path of `g` consecutive column blocks from `b0` over rows
/// `r0..r1` (`docs/performance.md`, "The plain-GEMM path"): writes their
/// `acc` (= `exact`, left unwritten) into `v`, tallies into `out` and
/// returns true; or returns false where its conditions fail (the caller then
/// runs each block alone; `acc` may have been written and is overwritten). Conditions, each making the result exactly the
/// chain path's:
/// - d = 0 and i16 operands ([`Ctx::use32`]);
/// - **whole-chain no-overflow proof** for the block: `B = max|A| *
///   max_{n in block} sum_k |w_kn| <= min(2^(P-1) - 1, 2^31 - 1)`. Every
///   prefix of every column chain and every psum-buffer value is a prefix
///   of `sum_k a_k w_kn` in K order, so all are bounded by `B`: no adder
///   and no buffer add narrows, in any overflow mode, and the stored values
///   are the exact ones;
/// - the **width statistic** is decided: `width_or` only enters the
///   statistics through its bit length, and the chain prefixes inside a fold
///   (which this path does not see) are bounded by `Bf = max|A| *
///   max_{fold, n} sum_{k in fold} |w_kn|`; the path sees the fold sums and
///   buffer values exactly, and is used only when the bit length of their
///   `mag` OR is at least that of `Bf`.
///
/// Then the stored fold sum, the exact fold sum and the buffer after every
/// fold are plain integer dot products, computed with `vpdpwssd` (i16 pairs
/// summed into i32 lanes, wrapping in i32, exact because every value read
/// (at fold boundaries) is in i32 range), and `max_psum`, `max_acc` and the
/// width from each lane's largest and smallest fold sum and buffer value
/// (`mag` is V-shaped, so the extremes carry the largest `mag`).
///
/// A group of blocks is decided as one: the proof must hold for every block
/// of it, and the width condition is taken against the largest `Bf` of the
/// group with the OR over the whole group (the width statistic is an OR
/// over all blocks, so this decides it exactly as per block would).
#[allow(clippy::too_many_arguments)]
fn plain_group(
    ctx: &Ctx,
    apair: &[i32],
    b0: usize,
    g: usize,
    r0: usize,
    r1: usize,
    v: &mut View,
    out: &mut JobOut,
) -> bool {
    let cfg = ctx.cfg;
    debug_assert!(ctx.plain);
    let blocks = &ctx.pw.blocks[b0..b0 + g];
    let lim = cfg.acc.max.min(i32::MAX as i64) as u128;
    if blocks.iter().any(|b| b.total as u128 * ctx.amax as u128 > lim) {
        return false;
    }
    let bf = blocks.iter().map(|b| b.worst_fold).max().unwrap_or(0) * ctx.amax;
    let rows = (r0 - v.r0)..(r1 - v.r0);
    let ext = plain_dispatch::<true>(ctx, apair, blocks, rows, v.acc, v.n);
    let or = ext_or(cfg, &ext);
    if width_of_mag(or) < width_of_mag(bf) {
        return false;
    }
    let (mut max_psum, mut max_acc) = (0u64, 0u64);
    for x in 0..NB {
        let [fh, fl, bh, bl] = [ext[0][x] as i64, ext[1][x] as i64, ext[2][x] as i64, ext[3][x] as i64];
        max_psum = max_psum.max(fh.unsigned_abs()).max(fl.unsigned_abs());
        max_acc = max_acc.max(bh.unsigned_abs()).max(bl.unsigned_abs());
    }
    let cols: usize = blocks.iter().map(|b| b.nb).sum();
    out.tally.writebacks += ((r1 - r0) * ctx.folds * cols) as u64;
    out.tally.max_psum = out.tally.max_psum.max(max_psum);
    out.tally.max_acc = out.tally.max_acc.max(max_acc);
    out.tally.width_or |= or;
    true
}

/// The OR of `mag` over the per-lane extremes [`plain_rows`] returns (the
/// exact fold sums and buffer values): by `mag`'s V shape, it has the bit
/// length of the OR over every fold sum and buffer value of the block.
fn ext_or(cfg: &ArrayConfig, ext: &[[i32; NB]; 4]) -> u64 {
    let mut or = 0u64;
    for e in ext {
        for &v in e {
            or |= cfg.acc.mag(v as i64);
        }
    }
    or
}

/// W of a column block packed for `vpdpwssd`: per fold and K pair, 16
/// lanes of `(w[k][n], w[k+1][n])`, a missing `k` (odd fold length,
/// padded lane) as 0.
fn pack_wpairs(wd: &[i32], n: usize, k: usize, fl: usize, pairs: &[usize], n0: usize, nb: usize) -> Vec<i16> {
    let np: usize = pairs.iter().sum();
    let mut wp = vec![0i16; np * 2 * NB];
    let mut q = 0;
    for (f, &pc) in pairs.iter().enumerate() {
        let (k0, k1) = (f * fl, ((f + 1) * fl).min(k));
        for p in 0..pc {
            for h in 0..2 {
                let kk = k0 + 2 * p + h;
                if kk < k1 {
                    for x in 0..nb {
                        wp[(q * NB + x) * 2 + h] = wd[kk * n + n0 + x] as i16;
                    }
                }
            }
            q += 1;
        }
    }
    wp
}

#[allow(unsafe_code)]
fn plain_dispatch<const FOLD: bool>(
    ctx: &Ctx,
    apair: &[i32],
    blocks: &[BlockW],
    rows: std::ops::Range<usize>,
    dst: &mut [i64],
    n: usize,
) -> [[i32; NB]; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: called only under `ctx.plain` (`has_vnni()` and
        // `cfg.simd == Avx512`: avx512f/bw/vl detected), the features
        // `plain_rows` enables.
        unsafe {
            use std::arch::x86_64::*;
            let mut ext = [_mm512_setzero_si512(); 4];
            let (p, np) = (ctx.pairs, ctx.np);
            let main = rows.start..rows.start + (rows.len() / PLAIN_RB) * PLAIN_RB;
            let rest = main.end..rows.end;
            macro_rules! go {
                ($cb:literal) => {{
                    let w: [&[i16]; $cb] = std::array::from_fn(|c| &blocks[c].wp[..]);
                    let c: [(usize, usize); $cb] = std::array::from_fn(|c| (blocks[c].n0, blocks[c].nb));
                    plain_rows::<PLAIN_RB, $cb, FOLD>(p, np, apair, w, c, main, dst, n, &mut ext);
                    plain_rows::<1, $cb, FOLD>(p, np, apair, w, c, rest, dst, n, &mut ext);
                }};
            }
            match blocks.len() {
                1 => go!(1),
                2 => go!(2),
                3 => go!(3),
                _ => go!(4),
            }
            let mut out = [[0i32; NB]; 4];
            for (e, v) in out.iter_mut().zip(ext) {
                _mm512_storeu_si512(e.as_mut_ptr() as *mut _, v);
            }
            out
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ctx, apair, blocks, rows, dst, n);
        unreachable!("plain_group needs AVX-512 VNNI")
    }
}

/// Rows per register tile of [`plain_rows`].
const PLAIN_RB: usize = 4;

/// Rows `rows` (indices into `apair`, `np` pairs per row, and into `dst`,
/// `n` columns per row) of the plain-GEMM path for `CB` column blocks
/// (`cols[c] = (n0, nb)`, weights `wps[c]`), `RB` rows at a time: `RB x CB`
/// zmm accumulators of 16 i32 lanes, each activation pair broadcast once
/// per `CB` `vpdpwssd`, each weight vector loaded once per `RB`. With
/// `FOLD`, per fold the accumulators hold the fold sums (from 0), added
/// into the running buffer, and the per-lane extremes of both go into `ext`
/// = `[max fold sum, min fold sum, max buffer, min buffer]`; without, the
/// accumulators are the buffer and only its extremes are kept (`ext[0]`,
/// `ext[1]` unchanged). Writes `dst` = the buffer after the last
/// fold (i64, the block's `nb` columns only).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(unsafe_code, clippy::too_many_arguments)]
fn plain_rows<const RB: usize, const CB: usize, const FOLD: bool>(
    pairs: &[usize],
    np: usize,
    apair: &[i32],
    wps: [&[i16]; CB],
    cols: [(usize, usize); CB],
    rows: std::ops::Range<usize>,
    dst: &mut [i64],
    n: usize,
    ext: &mut [std::arch::x86_64::__m512i; 4],
) {
    use std::arch::x86_64::*;
    assert!(rows.len().is_multiple_of(RB));
    assert!(apair.len() >= rows.end * np && dst.len() >= rows.end * n);
    for c in 0..CB {
        assert_eq!(wps[c].len(), np * 2 * NB);
        assert!(cols[c].0 + cols[c].1 <= n && cols[c].1 <= NB);
    }
    let zero = _mm512_setzero_si512();
    let [mut fh, mut fl, mut bh, mut bl] = *ext;
    let mut mm = rows.start;
    while mm < rows.end {
        // No closures here: a closure does not inherit this function's
        // target features, so intrinsics inside one become calls.
        let mut ar: [&[i32]; RB] = [&[]; RB];
        for r in 0..RB {
            ar[r] = &apair[(mm + r) * np..(mm + r + 1) * np];
        }
        let mut buf = [[zero; CB]; RB];
        let mut q0 = 0;
        for &pc in pairs {
            let q1 = q0 + pc;
            let mut a_f: [&[i32]; RB] = [&[]; RB];
            for r in 0..RB {
                a_f[r] = &ar[r][q0..q1];
            }
            let mut w_f: [&[i16]; CB] = [&[]; CB];
            for c in 0..CB {
                w_f[c] = &wps[c][q0 * 2 * NB..q1 * 2 * NB];
            }
            // FOLD: the fold sum from 0, then added into the buffer; else
            // straight into the buffer.
            let mut fs = if FOLD { [[zero; CB]; RB] } else { buf };
            for q in 0..pc {
                let mut w = [zero; CB];
                for c in 0..CB {
                    let wc = &w_f[c][q * 2 * NB..(q + 1) * 2 * NB];
                    // SAFETY: `wc` is 32 i16 = 64 bytes, one unaligned zmm load.
                    w[c] = unsafe { _mm512_loadu_si512(wc.as_ptr() as *const _) };
                }
                for r in 0..RB {
                    let av = _mm512_set1_epi32(a_f[r][q]);
                    for c in 0..CB {
                        fs[r][c] = _mm512_dpwssd_epi32(fs[r][c], av, w[c]);
                    }
                }
            }
            q0 = q1;
            for r in 0..RB {
                for c in 0..CB {
                    if FOLD {
                        buf[r][c] = _mm512_add_epi32(buf[r][c], fs[r][c]);
                        fh = _mm512_max_epi32(fh, fs[r][c]);
                        fl = _mm512_min_epi32(fl, fs[r][c]);
                    } else {
                        buf[r][c] = fs[r][c];
                    }
                    bh = _mm512_max_epi32(bh, buf[r][c]);
                    bl = _mm512_min_epi32(bl, buf[r][c]);
                }
            }
        }
        for r in 0..RB {
            for c in 0..CB {
                let (n0, nb) = cols[c];
                let row = &mut dst[(mm + r) * n + n0..(mm + r) * n + n0 + nb];
                store_i64(row, buf[r][c]);
            }
        }
        mm += RB;
    }
    *ext = [fh, fl, bh, bl];
}

/// The first `dst.len()` (at most 16) i32 lanes of `v`, sign-extended, into
/// `dst` (masked stores: nothing past `dst` is written).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
#[allow(unsafe_code)]
fn store_i64(dst: &mut [i64], v: std::arch::x86_64::__m512i) {
    use std::arch::x86_64::*;
    let nb = dst.len();
    assert!(nb <= NB);
    let lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v));
    let hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(v));
    let p = dst.as_mut_ptr();
    // SAFETY: the masks select lanes `0..nb` of `dst` only (masked-off
    // lanes are neither written nor faulted on).
    unsafe {
        if nb == NB {
            _mm512_storeu_si512(p as *mut _, lo);
            _mm512_storeu_si512(p.add(8) as *mut _, hi);
        } else {
            let m = (1u32 << nb) - 1;
            _mm512_mask_storeu_epi64(p, (m & 0xff) as u8, lo);
            if nb > 8 {
                _mm512_mask_storeu_epi64(p.add(8), (m >> 8) as u8, hi);
            }
        }
    }
}

/// Column blocks run by the plain-GEMM path (`[0]`) and the saturating i16
/// path (`[1]`) since the process started: lets tests check that a path
/// they mean to exercise really ran (no effect on any result).
static PATH_COUNTS: [std::sync::atomic::AtomicU64; 2] =
    [std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)];

/// How many column blocks the plain-GEMM path and the saturating i16 path
/// have run in this process, `(plain, sat16)`; for tests.
#[doc(hidden)]
pub fn path_counts() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (PATH_COUNTS[0].load(Relaxed), PATH_COUNTS[1].load(Relaxed))
}

/// The saturating i16 path keeps its saturation counts in u16 lanes: at
/// most `fold length + 1` per lane, fold and row pair (chain adders and the
/// buffer adder) and `folds` per lane and row pair (buffer adders), flushed
/// before they could pass `u16::MAX`.
const SAT16_MAX_COUNT: usize = 1 << 15;

/// Rows `r0..r1` of A as the saturating i16 path reads them: per row pair
/// `(r0 + 2i, r0 + 2i + 1)` and k one i32 word, low half `a[r0 + 2i][k]`,
/// high half `a[r0 + 2i + 1][k]` (both as i16; 0 past `r1`). Broadcast to
/// 16 i32 lanes it gives the 32 i16 lanes "row m, row m + 1" per column.
fn pair_rows2(ctx: &Ctx, r0: usize, r1: usize) -> Vec<i32> {
    let k = ctx.k;
    let mut abuf = Vec::new();
    let ad = ctx.a.rows_i32(r0, r1, &mut abuf);
    let pairs = (r1 - r0).div_ceil(2);
    let mut v = vec![0i32; pairs * k];
    for (i, dst) in v.chunks_mut(k.max(1)).enumerate() {
        let m0 = r0 + 2 * i;
        let lo = &ad[(m0 - r0) * k..(m0 - r0 + 1) * k];
        if m0 + 1 < r1 {
            let hi = &ad[(m0 - r0 + 1) * k..(m0 - r0 + 2) * k];
            for ((d, &l), &h) in dst.iter_mut().zip(lo).zip(hi) {
                *d = (l as i16 as u16 as u32 | (h as i16 as u16 as u32) << 16) as i32;
            }
        } else {
            for (d, &l) in dst.iter_mut().zip(lo) {
                *d = l as i16 as u16 as i32;
            }
        }
    }
    v
}

/// The saturating i16 path of column blocks (P = 16 `SAT`, d = 0;
/// `docs/performance.md`, "The saturating i16 path"): true when it ran,
/// false where its conditions fail (the caller then runs each block alone,
/// down to the chain path):
/// - the exact values (the `exact` output, every fold sum and buffer value)
///   come from [`plain_rows`] (`vpdpwssd`), which needs `B <= 2^31 - 1`;
/// - the width statistic is decided exactly as in [`plain_group`]: the bit
///   length of the `mag` OR over the exact fold sums and buffer values is
///   at least that of `Bf`, the bound on every chain prefix inside a fold
///   (which this path does not see exactly);
/// - the stored values and the saturation counts come from [`sat16_rows`]:
///   a signed 16-bit saturating add (`vpaddsw`) is exactly `narrow_16`
///   under `SAT` of an i16 value plus an i16 product (every product fits
///   i16 by [`Ctx::sat16`]), the adder saturates exactly when the
///   saturating and the wrapping add (`vpaddw`) differ (an out-of-range sum
///   of two i16 values wraps to the other sign), and the chain runs in K
///   order from 0 at every fold, the buffer add after each fold, as the
///   chain path does. `max_abs_psum` / `max_abs_acc` come from each lane's
///   largest and smallest stored fold sum and buffer value.
///
/// A group of `g` consecutive blocks from `b0` is decided as one, as in
/// [`plain_group`] (every block's `B`, the group's largest `Bf`, the OR
/// over the group); the exact pass runs the group at once.
#[allow(clippy::too_many_arguments)]
fn sat16_group(
    ctx: &Ctx,
    apair: &[i32],
    a2: &[i32],
    b0: usize,
    g: usize,
    r0: usize,
    r1: usize,
    v: &mut View,
    out: &mut JobOut,
) -> bool {
    let cfg = ctx.cfg;
    debug_assert!(ctx.sat16);
    let blocks = &ctx.pw.blocks[b0..b0 + g];
    if blocks.iter().any(|b| b.total as u128 * ctx.amax as u128 > i32::MAX as u128) {
        return false;
    }
    let bf = blocks.iter().map(|b| b.worst_fold).max().unwrap_or(0) * ctx.amax;
    // The exact GEMM, and the OR over the exact buffer values (after every
    // fold); the fold sums, like every chain prefix inside a fold, are
    // bounded by `Bf`. Only where the buffers do not decide the width,
    // the fold sums as well.
    let rows = (r0 - v.r0)..(r1 - v.r0);
    let ext = plain_dispatch::<false>(ctx, apair, blocks, rows.clone(), v.exact, v.n);
    let mut or = 0u64;
    for x in ext[2].iter().chain(&ext[3]) {
        or |= cfg.acc.mag(*x as i64);
    }
    if width_of_mag(or) < width_of_mag(bf) {
        let ext = plain_dispatch::<true>(ctx, apair, blocks, rows, v.exact, v.n);
        or = ext_or(cfg, &ext);
        if width_of_mag(or) < width_of_mag(bf) {
            return false;
        }
    }
    for b in blocks {
        sat16_rows_dispatch(ctx, a2, &b.w2, b.n0, b.nb, r0, r1, v, out);
        out.tally.writebacks += ((r1 - r0) * ctx.folds * b.nb) as u64;
    }
    out.tally.width_or |= or;
    true
}

#[allow(unsafe_code, clippy::too_many_arguments)]
fn sat16_rows_dispatch(
    ctx: &Ctx,
    a2: &[i32],
    w2: &[i32],
    n0: usize,
    nb: usize,
    r0: usize,
    r1: usize,
    v: &mut View,
    out: &mut JobOut,
) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `ctx.sat16` implies `ctx.plain`: `has_vnni()` and
        // `cfg.simd == Avx512` (avx512f/bw/vl detected), the features
        // `sat16_rows` enables.
        unsafe { sat16_rows(ctx, a2, w2, n0, nb, r0, r1, v, out) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ctx, a2, w2, n0, nb, r0, r1, v, out);
        unreachable!("sat16_group needs AVX-512")
    }
}

/// Rows `r0..r1` of the saturating i16 path, one row pair per zmm (32 i16
/// lanes: lane `2x` row m, lane `2x + 1` row m + 1, column `n0 + x`).
/// Writes `v.acc` (the stored buffer), the overflow counts, the per-tile
/// counts and `max_psum` / `max_acc` into `out`. Counts live in u16 lanes
/// (per fold: chain and buffer adders; one more vector for the buffer
/// adders alone), summed into `out` before any lane could pass `u16::MAX`
/// and at every change of tile (`is`: every `C` rows, `os`: every `R`
/// rows; both even by [`Ctx::sat16`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[allow(unsafe_code, clippy::too_many_arguments)]
fn sat16_rows(
    ctx: &Ctx,
    a2: &[i32],
    w2: &[i32],
    n0: usize,
    nb: usize,
    r0: usize,
    r1: usize,
    v: &mut View,
    out: &mut JobOut,
) {
    use std::arch::x86_64::*;
    let cfg = ctx.cfg;
    let (k, fl, folds) = (ctx.k, ctx.fl, ctx.folds);
    assert_eq!(w2.len(), k * NB);
    assert_eq!(a2.len(), (r1 - r0).div_ceil(2) * k);
    // Rows of one tile for a fixed fold and block (`tile_index`).
    let seg = match cfg.dataflow {
        Dataflow::Ws => usize::MAX,
        Dataflow::Is => cfg.cols,
        Dataflow::Os => cfg.rows,
    };
    let lim = (u16::MAX as usize / (fl + 1).max(folds)).max(1);
    let zero = _mm512_setzero_si512();
    let one = _mm512_set1_epi16(1);
    let mut tot = vec![zero; folds];
    let mut wbc = zero;
    let (mut sh, mut sl, mut bh, mut bl) = (zero, zero, zero, zero);
    let mut lanes = [0u16; 32];
    let sum16 = |v: __m512i, lanes: &mut [u16; 32]| -> u64 {
        // SAFETY: `lanes` holds 32 u16 = 64 bytes.
        unsafe { _mm512_storeu_si512(lanes.as_mut_ptr() as *mut _, v) };
        lanes.iter().map(|&c| c as u64).sum()
    };
    let mut flush = |tot: &mut [__m512i], wbc: &mut __m512i, mm: usize, lanes: &mut [u16; 32]| {
        let mut all = 0u64;
        for (f, t) in tot.iter_mut().enumerate() {
            let c = sum16(*t, lanes);
            out.tile_counts[tile_index(cfg, ctx.tfolds, ctx.ntiles_n, mm, n0, f)] += c;
            all += c;
            *t = zero;
        }
        let w = sum16(*wbc, lanes);
        *wbc = zero;
        out.tally.ovf_psum += w;
        out.tally.ovf_array += all - w;
    };
    let (mut since, mut seg_row) = (0usize, r0);
    let mut mm = r0;
    let npairs = a2.len() / k;
    let mut q = 0;
    while q < npairs {
        // Two row pairs at once (one weight load per two chains) when both
        // belong to the same tile and stay under the flush limit.
        let pr = if q + 1 < npairs && (mm + 2) / seg == mm / seg && since + 2 <= lim { 2 } else { 1 };
        let arows = [&a2[q * k..(q + 1) * k], &a2[(q + pr - 1) * k..(q + pr) * k]];
        let mut b = [zero; 2];
        for f in 0..folds {
            let (k0, k1) = (f * fl, ((f + 1) * fl).min(k));
            let (sv, mut c) = if pr == 2 {
                sat16_fold::<2>(arows, w2, k0, k1, tot[f], one)
            } else {
                let (s1, c) = sat16_fold::<1>([arows[0]], w2, k0, k1, tot[f], one);
                ([s1[0], zero], c)
            };
            for p in 0..pr {
                let s = sv[p];
                let t = _mm512_add_epi16(b[p], s);
                b[p] = _mm512_adds_epi16(b[p], s);
                let ov = _mm512_cmpneq_epi16_mask(t, b[p]);
                c = count16(c, ov, one);
                wbc = count16(wbc, ov, one);
                sh = _mm512_max_epi16(sh, s);
                sl = _mm512_min_epi16(sl, s);
                bh = _mm512_max_epi16(bh, b[p]);
                bl = _mm512_min_epi16(bl, b[p]);
            }
            tot[f] = c;
        }
        for p in 0..pr {
            // SAFETY: `lanes` holds 32 u16 = 64 bytes.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr() as *mut _, b[p]) };
            for h in 0..2 {
                if mm + h < r1 {
                    let j = (mm + h - v.r0) * v.n + n0;
                    for x in 0..nb {
                        v.acc[j + x] = lanes[2 * x + h] as i16 as i64;
                    }
                }
            }
            mm += 2;
        }
        q += pr;
        since += pr;
        if since >= lim || mm >= r1 || mm / seg != seg_row / seg {
            flush(&mut tot, &mut wbc, seg_row, &mut lanes);
            since = 0;
            seg_row = mm;
        }
    }
    let mut ext = [[0i16; 32]; 4];
    for (e, v) in ext.iter_mut().zip([sh, sl, bh, bl]) {
        // SAFETY: each `e` holds 32 i16.
        unsafe { _mm512_storeu_si512(e.as_mut_ptr() as *mut _, v) };
    }
    for x in 0..32 {
        out.tally.max_psum =
            out.tally.max_psum.max(ext[0][x].unsigned_abs() as u64).max(ext[1][x].unsigned_abs() as u64);
        out.tally.max_acc =
            out.tally.max_acc.max(ext[2][x].unsigned_abs() as u64).max(ext[3][x].unsigned_abs() as u64);
    }
}

/// One fold of the saturating i16 chain for `PR` row pairs (sharing each
/// weight load): per k, the exact i16 product (`vpmullw`: it fits), the
/// saturating add (`vpaddsw` = `narrow_16` under `SAT`) and, where it
/// differs from the wrapping add (`vpaddw`), one count in `c`. Returns
/// the stored column sums and `c`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
#[inline]
#[allow(unsafe_code)]
fn sat16_fold<const PR: usize>(
    arows: [&[i32]; PR],
    w2: &[i32],
    k0: usize,
    k1: usize,
    c: std::arch::x86_64::__m512i,
    one: std::arch::x86_64::__m512i,
) -> ([std::arch::x86_64::__m512i; PR], std::arch::x86_64::__m512i) {
    use std::arch::x86_64::*;
    let mut s = [_mm512_setzero_si512(); PR];
    let mut c = c;
    // No closures here (they would not inherit the target features).
    let mut rows: [&[i32]; PR] = [&[]; PR];
    for p in 0..PR {
        rows[p] = &arows[p][k0..k1];
    }
    for (kk, wc) in w2[k0 * NB..k1 * NB].chunks_exact(NB).enumerate() {
        // SAFETY: `wc` is 16 i32 = 64 bytes, one unaligned zmm load.
        let wv = unsafe { _mm512_loadu_si512(wc.as_ptr() as *const _) };
        for p in 0..PR {
            let pv = _mm512_mullo_epi16(_mm512_set1_epi32(rows[p][kk]), wv);
            let t = _mm512_add_epi16(s[p], pv);
            s[p] = _mm512_adds_epi16(s[p], pv);
            c = count16(c, _mm512_cmpneq_epi16_mask(t, s[p]), one);
        }
    }
    (s, c)
}

/// `c + 1` in the 16-bit lanes selected by `m` (`vpaddw c{m}, c, one`):
/// one masked add, where LLVM would otherwise expand
/// `_mm512_mask_add_epi16` into `vpmovm2w` + `vpsubw` (two operations on
/// the vector ports, in the innermost loop of [`sat16_rows`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
#[allow(unsafe_code)]
fn count16(
    c: std::arch::x86_64::__m512i,
    m: std::arch::x86_64::__mmask32,
    one: std::arch::x86_64::__m512i,
) -> std::arch::x86_64::__m512i {
    let mut c = c;
    // SAFETY: register-only AVX-512BW instruction (the enabled features).
    unsafe {
        std::arch::asm!(
            "vpaddw {c}{{{m}}}, {c}, {one}",
            c = inout(zmm_reg) c,
            m = in(kreg) m,
            one = in(zmm_reg) one,
            options(pure, nomem, nostack),
        );
    }
    c
}

/// The scalar i64 path of [`fold32`] (wide data or long folds): per-adder
/// narrowing with [`Acc::add`].
fn fold64(
    arow: &[i32],
    wp: &[i32],
    k0: usize,
    s: &mut [i64; NB],
    e: &mut [i64; NB],
    or: &mut u64,
    acc: &Acc,
) -> u64 {
    let mut cnt = 0u64;
    for x in 0..NB {
        let (mut sv, mut ev) = (0i64, 0i64);
        for (kk, &av) in arow.iter().enumerate() {
            let p = av as i64 * wp[(k0 + kk) * NB + x] as i64;
            let (ns, of) = acc.add(sv, p);
            cnt += of as u64;
            sv = ns;
            ev += p;
            *or |= acc.mag(ev);
        }
        s[x] = sv;
        e[x] = ev;
    }
    cnt
}

/// The first overflow event of tile `t` (smallest cycle, row, column), by
/// re-running its outputs with per-adder checks (`docs/datapath.md`,
/// "Timing" gives each adder's cycle).
fn scan_tile(ctx: &Ctx, t: &Tile) -> Option<OverflowEvent> {
    let cfg = ctx.cfg;
    let acc = cfg.acc;
    let r_all = cfg.rows as u64;
    let (k, n) = (ctx.k, ctx.n);
    let ad = ctx.a.codes();
    let wd = ctx.w.to_i32();
    let (mrange, nrange) = match cfg.dataflow {
        Dataflow::Ws => (0..ctx.m, t.c0..t.c0 + t.cu),
        Dataflow::Is => (t.c0..t.c0 + t.cu, 0..n),
        Dataflow::Os => (t.r0..t.r0 + t.ru, t.c0..t.c0 + t.cu),
    };
    let mut best: Option<OverflowEvent> = None;
    fn note(best: &mut Option<OverflowEvent>, cycle: u64, row: u64, col: u64) {
        let ev = OverflowEvent { cycle, row: row as u32, col: col as u32 };
        *best = Some(best.map_or(ev, |b| b.min(ev)));
    }
    // Every event of output (mm, nn) happens at or after `s0 + s`
    // with `s` the stream index (ws: mm, is: nn); streams run in increasing
    // order, so once that bound passes the best cycle found, nothing later
    // can be earlier (ties in cycle still compare row and column: `>`).
    // The stream starts at `s0` (after the tile's own preload, if any).
    let s0 = t.start + t.pre;
    let bound = |s: usize| s0 + s as u64;
    for mm in mrange {
        if cfg.dataflow == Dataflow::Ws && best.is_some_and(|b| bound(mm) > b.cycle) {
            break;
        }
        for nn in nrange.clone() {
            if cfg.dataflow == Dataflow::Is && best.is_some_and(|b| bound(nn) > b.cycle) {
                break;
            }
            let mut b = 0i64;
            for f in 0..=t.fold {
                let (k0, k1) = if cfg.dataflow == Dataflow::Os {
                    (0, k)
                } else {
                    (f * cfg.rows, ((f + 1) * cfg.rows).min(k))
                };
                let mut s = 0i64;
                let last = f == t.fold;
                for kk in k0..k1 {
                    let p = ad.at(mm * k + kk) as i64 * wd[kk * n + nn] as i64;
                    let (ns, of) = acc.add(s, p);
                    s = ns;
                    if of && last {
                        let rr = (kk - k0) as u64;
                        match cfg.dataflow {
                            Dataflow::Ws => {
                                let c = (nn - t.c0) as u64;
                                note(&mut best, s0 + mm as u64 + rr + c, rr, c)
                            }
                            Dataflow::Is => {
                                let c = (mm - t.c0) as u64;
                                note(&mut best, s0 + nn as u64 + rr + c, rr, c)
                            }
                            Dataflow::Os => {
                                let (r, c) = ((mm - t.r0) as u64, (nn - t.c0) as u64);
                                note(&mut best, t.start + kk as u64 + r + c, r, c)
                            }
                        }
                    }
                }
                let rv = cfg.rounder.round(s as i128) as i64;
                let (nb, of) = acc.add(b, rv);
                b = nb;
                if of && last {
                    match cfg.dataflow {
                        Dataflow::Ws => {
                            let c = (nn - t.c0) as u64;
                            note(&mut best, s0 + r_all + mm as u64 + c, r_all, c)
                        }
                        Dataflow::Is => {
                            let c = (mm - t.c0) as u64;
                            note(&mut best, s0 + r_all + nn as u64 + c, r_all, c)
                        }
                        Dataflow::Os => {
                            let (r, c) = ((mm - t.r0) as u64, (nn - t.c0) as u64);
                            let d0 = t.start + (k + t.ru + t.cu - 2) as u64;
                            note(&mut best, d0 + (r_all - 1 - r), r_all, c)
                        }
                    }
                }
            }
        }
    }
    best
}
