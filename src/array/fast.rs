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
use super::{schedule, tile_index, Acc, ArrayConfig, ArrayOutput, Dataflow, Matrix, Tile};
use super::{width_of_mag, OverflowEvent, Simd, Stats};
use crate::numerics::OverflowMode;
use rayon::prelude::*;

/// Column block width: lanes of the inner loops. The weight block is
/// repacked `K x NB` (zero-padded) so every inner loop has a constant trip
/// count and its accumulators stay in registers.
pub const NB: usize = 16;

struct BlockOut {
    acc: Vec<i64>,
    exact: Vec<i64>,
    tally: Tally,
    tile_counts: Vec<u64>,
}

/// Shared, read-only context of one GEMM.
struct Ctx<'a> {
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
    /// The plain-GEMM path may run ([`plain_block`]'s global conditions:
    /// AVX-512 VNNI level, d = 0, i16 operands); per block it still checks
    /// the no-overflow proof and the width condition.
    plain: bool,
    /// Per fold: the number of K pairs of the plain-GEMM packing.
    pairs: Vec<usize>,
    /// The saturating i16 path may run ([`sat16_block`]'s global
    /// conditions: those of `plain`, P = 16 `SAT`, every product fits i16,
    /// the i16 counters' limits, and for `is` / `os` an even row count per
    /// tile); per block it still checks `B <= 2^31 - 1` and the width
    /// condition.
    sat16: bool,
}

/// A GEMM prepared for the fast engine: the context, the column blocks and
/// the schedule. Rows are independent (the psum buffer of output row `m`
/// only ever sees row `m` of A), so [`Prepared::run_rows`] can run any row
/// range, in any split, and the integer tallies merge exactly
/// (sums, maxima, ORs and a minimum: order-free).
pub(crate) struct Prepared<'a> {
    ctx: Ctx<'a>,
    blocks: Vec<(usize, usize)>,
    tiles: Vec<Tile>,
}

/// The accumulators and exact sums of a row range, row-major `rows x N`.
pub(crate) struct Rows {
    pub acc: Vec<i64>,
    pub exact: Vec<i64>,
}

pub(crate) fn prepare<'a>(cfg: &'a ArrayConfig, a: &'a Matrix, w: &'a Matrix) -> Prepared<'a> {
    let (m, k, n) = (a.rows(), a.cols(), w.cols());
    let fl = if cfg.dataflow == Dataflow::Os { k } else { cfg.rows };
    let amax = a.max_abs() as u64;
    let wmax = w.max_abs() as u64;
    let tiles = schedule(cfg, m, k, n);
    let use32 = (fl as u128) * (amax as u128) * (wmax as u128) < (1u128 << 30)
        && amax <= i16::MAX as u64
        && wmax <= i16::MAX as u64;
    let ctx = Ctx {
        cfg,
        a,
        w,
        m,
        k,
        n,
        fl,
        folds: k.div_ceil(fl),
        tfolds: k.div_ceil(cfg.rows),
        ntiles_n: n.div_ceil(cfg.cols),
        ntiles: tiles.len(),
        amax,
        use32,
        plain: use32 && cfg.simd == Simd::Avx512 && cfg.rounder.k() == 0 && has_vnni(),
        pairs: (0..k.div_ceil(fl)).map(|f| (((f + 1) * fl).min(k) - f * fl).div_ceil(2)).collect(),
        sat16: false,
    };
    let ctx = Ctx {
        sat16: ctx.plain
            && cfg.acc.bits == 16
            && cfg.acc.mode == OverflowMode::Sat
            && (amax as u128) * (wmax as u128) <= i16::MAX as u128
            && fl < SAT16_MAX_COUNT
            && ctx.folds < SAT16_MAX_COUNT
            && match cfg.dataflow {
                Dataflow::Ws => true,
                Dataflow::Is => cfg.cols.is_multiple_of(2),
                Dataflow::Os => cfg.rows.is_multiple_of(2),
            },
        ..ctx
    };
    let mut blocks = Vec::new();
    match cfg.dataflow {
        Dataflow::Ws | Dataflow::Os => {
            for c0 in (0..n).step_by(cfg.cols) {
                let c1 = (c0 + cfg.cols).min(n);
                for b0 in (c0..c1).step_by(NB) {
                    blocks.push((b0, NB.min(c1 - b0)));
                }
            }
        }
        Dataflow::Is => {
            for b0 in (0..n).step_by(NB) {
                blocks.push((b0, NB.min(n - b0)));
            }
        }
    }
    Prepared { ctx, blocks, tiles }
}

/// Rows per parallel job: enough work per job to amortize the weight
/// repacking (`K x NB` per job), small enough to spread over the threads.
fn job_rows(k: usize, rows: usize, blocks: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let min_rows = (1usize << 16).div_ceil(k.max(1)).max(64);
    let want_jobs = (4 * threads).div_ceil(blocks.max(1));
    // Even, so that every job but the last starts and ends on a row pair of
    // the saturating i16 path ([`pair_rows2`]).
    rows.div_ceil(want_jobs.max(1)).max(min_rows).next_multiple_of(2)
}

impl Prepared<'_> {
    /// Output rows `r0..r1`: accumulators and exact sums, with the tallies
    /// and per-tile overflow counts added into `tally` / `tile_counts`.
    pub(crate) fn run_rows(
        &self,
        r0: usize,
        r1: usize,
        tally: &mut Tally,
        tile_counts: &mut Vec<u64>,
    ) -> Rows {
        let ctx = &self.ctx;
        let n = ctx.n;
        let jr = job_rows(ctx.k, r1 - r0, self.blocks.len());
        let jobs: Vec<(usize, usize, usize, usize)> = (r0..r1)
            .step_by(jr)
            .flat_map(|s| self.blocks.iter().map(move |&(n0, nb)| (s, (s + jr).min(r1), n0, nb)))
            .collect();
        // The plain-GEMM path's A operand for these rows, paired once here
        // for every column block (`plain_block`).
        let apair = if ctx.plain { pair_rows(ctx, r0, r1) } else { Vec::new() };
        let np: usize = ctx.pairs.iter().sum();
        // The saturating i16 path pairs rows `(r0 + 2i, r0 + 2i + 1)`; for
        // `is` / `os` a pair must not straddle a tile's rows (tiles hold an
        // even number of rows there, so `r0` must be even).
        let sat16 = ctx.sat16 && (ctx.cfg.dataflow == Dataflow::Ws || r0.is_multiple_of(2));
        let a2 = if sat16 { pair_rows2(ctx, r0, r1) } else { Vec::new() };
        let k = ctx.k;
        let outs: Vec<BlockOut> = jobs
            .par_iter()
            .map(|&(s, e, n0, nb)| {
                let ap = &apair[if ctx.plain { (s - r0) * np..(e - r0) * np } else { 0..0 }];
                let a2 = &a2[if sat16 { (s - r0) / 2 * k..(e - r0).div_ceil(2) * k } else { 0..0 }];
                run_block(ctx, ap, sat16.then_some(a2), n0, nb, s, e)
            })
            .collect();
        let rows = r1 - r0;
        let mut acc = vec![0i64; rows * n];
        let mut exact = vec![0i64; rows * n];
        if tile_counts.len() != ctx.ntiles {
            *tile_counts = vec![0; ctx.ntiles];
        }
        for (&(s, e, n0, nb), out) in jobs.iter().zip(&outs) {
            for (j, mm) in (s..e).enumerate() {
                let d = (mm - r0) * n + n0;
                acc[d..d + nb].copy_from_slice(&out.acc[j * nb..(j + 1) * nb]);
                exact[d..d + nb].copy_from_slice(&out.exact[j * nb..(j + 1) * nb]);
            }
            tally.merge(&out.tally);
            for (t, c) in tile_counts.iter_mut().zip(&out.tile_counts) {
                *t += c;
            }
        }
        Rows { acc, exact }
    }

    /// The statistics once every row has run: the first overflow event
    /// (re-running the earliest tile that overflowed) and the cycle count.
    pub(crate) fn finish(&self, mut tally: Tally, tile_counts: &[u64]) -> Stats {
        let ctx = &self.ctx;
        if let Some(t) = tile_counts.iter().position(|&c| c > 0) {
            tally.first = scan_tile(ctx, &self.tiles[t]);
        }
        let cfg = ctx.cfg;
        let t = crate::memory::plan(&cfg.layout(), ctx.m, ctx.k, ctx.n);
        let mut st = tally.into_stats(cfg.rounder.k(), (ctx.m * ctx.k * ctx.n) as u64, t.cycles);
        st.stall_cycles = cfg.mem.enabled.then_some(t.stall_cycles);
        st
    }
}

pub(crate) fn run(cfg: &ArrayConfig, a: &Matrix, w: &Matrix) -> ArrayOutput {
    let p = prepare(cfg, a, w);
    let mut tally = Tally::default();
    let mut tile_counts = Vec::new();
    let rows = p.run_rows(0, p.ctx.m, &mut tally, &mut tile_counts);
    let stats = p.finish(tally, &tile_counts);
    ArrayOutput { m: p.ctx.m, n: p.ctx.n, acc: rows.acc, exact: rows.exact, stats }
}

use super::{add_m, SAT, SATS, SATZ, WRAP};
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

/// Writeback with rounding (d > 0): `B = narrow_P(B + round_d(S))`, with the
/// exact shadow `BE += round_d(S_exact)` and `EX += S_exact`; only the `nb`
/// real lanes (a padded zero could round to a non-zero value). In `i64`
/// ([`writeback_round64`]) where that is exact, else in `i128`.
fn writeback_round(
    cfg: &ArrayConfig,
    s: &[i64; NB],
    e: &[i64; NB],
    nb: usize,
    st: &mut Buf,
    tally: &mut Tally,
    h: i64,
) -> u64 {
    // `|S| < 2^61` (a stored P-bit value, P <= 62) and `|S_exact| <= 2^60`
    // (at most 2^28 products of at most 2^32): inside `round_i64`'s domain.
    if cfg.acc.bits <= 62 && cfg.rounder.exact_in_i64() {
        return match cfg.acc.mode {
            OverflowMode::Wrap => writeback_round64::<WRAP>(cfg, s, e, nb, st, tally, h),
            OverflowMode::Sat => writeback_round64::<SAT>(cfg, s, e, nb, st, tally, h),
            OverflowMode::SatZero => writeback_round64::<SATZ>(cfg, s, e, nb, st, tally, h),
            OverflowMode::SatSym => writeback_round64::<SATS>(cfg, s, e, nb, st, tally, h),
        };
    }
    let acc = cfg.acc;
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

/// [`writeback_round`] in `i64` with the overflow mode fixed at compile
/// time: the same values and tallies (`Rounder::round_info_i64` is held
/// equal to `round_info`; the error sums are exact: `|error| < 2^33`, so
/// the sum over a block's at most 16 lanes fits `i64`, and the squares are
/// summed in `u128`).
#[allow(clippy::too_many_arguments)]
fn writeback_round64<const MODE: u8>(
    cfg: &ArrayConfig,
    s: &[i64; NB],
    e: &[i64; NB],
    nb: usize,
    st: &mut Buf,
    tally: &mut Tally,
    h: i64,
) -> u64 {
    use super::stats::HIST_HALF;
    use crate::numerics::Position;
    let acc = cfg.acc;
    let rd = &cfg.rounder;
    let mut cnt = 0u64;
    let (mut err_sum, mut err_sq, mut ties) = (0i64, 0u128, 0u64);
    for x in 0..nb {
        let sv = s[x];
        st.max_psum = st.max_psum.max(sv.unsigned_abs());
        let (r, info) = rd.round_info_i64(sv);
        ties += (info.position == Position::At) as u64;
        let rel = info.residue as i64 - h;
        if rel < -HIST_HALF {
            tally.hist.below += 1;
        } else if rel > HIST_HALF {
            tally.hist.above += 1;
        } else {
            tally.hist.bins[(rel + HIST_HALF) as usize] += 1;
        }
        err_sum += info.error;
        let ae = info.error.unsigned_abs() as u128;
        err_sq += ae * ae;
        let (nbv, of) = add_m::<MODE>(&acc, st.b[x], r);
        cnt += of as u64;
        st.b[x] = nbv;
        st.max_acc = st.max_acc.max(nbv.unsigned_abs());
        st.be[x] += rd.round_i64(e[x]);
        st.or |= super::mag_m::<MODE>(st.be[x]);
        st.ex[x] += e[x];
    }
    tally.rounded += nb as u64;
    tally.ties += ties;
    tally.err_sum += err_sum as i128;
    tally.err_sq += err_sq;
    cnt
}

/// [`run_block_impl`] at the config's SIMD level.
#[allow(unsafe_code)]
fn run_block(
    ctx: &Ctx,
    apair: &[i32],
    a2: Option<&[i32]>,
    n0: usize,
    nb: usize,
    r0: usize,
    r1: usize,
) -> BlockOut {
    let bounds = if ctx.plain { block_bounds(ctx, n0, nb) } else { (0, 0) };
    if ctx.plain {
        if let Some(out) = plain_block(ctx, bounds, apair, n0, nb, r0, r1) {
            PATH_COUNTS[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return out;
        }
    }
    if let Some(a2) = a2 {
        if let Some(out) = sat16_block(ctx, bounds, apair, a2, n0, nb, r0, r1) {
            PATH_COUNTS[1].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return out;
        }
    }
    match ctx.cfg.simd {
        // SAFETY: `cfg.simd` never exceeds `Simd::detect()` (set by
        // `ArrayConfig::from_hw` or capped by `with_simd`), so the CPU has
        // every feature the wrapper enables.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { run_block_avx512(ctx, n0, nb, r0, r1) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { run_block_avx2(ctx, n0, nb, r0, r1) },
        _ => run_block_impl(ctx, n0, nb, r0, r1),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_block_avx2(ctx: &Ctx, n0: usize, nb: usize, r0: usize, r1: usize) -> BlockOut {
    run_block_impl(ctx, n0, nb, r0, r1)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn run_block_avx512(ctx: &Ctx, n0: usize, nb: usize, r0: usize, r1: usize) -> BlockOut {
    run_block_impl(ctx, n0, nb, r0, r1)
}

/// One column block over rows `r0..r1` (inlined into each SIMD wrapper).
#[inline(always)]
fn run_block_impl(ctx: &Ctx, n0: usize, nb: usize, r0: usize, r1: usize) -> BlockOut {
    let cfg = ctx.cfg;
    let (k, n) = (ctx.k, ctx.n);
    let m = r1 - r0;
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
    let safe: Vec<bool> = (0..ctx.folds)
        .map(|f| {
            let (k0, k1) = (f * ctx.fl, ((f + 1) * ctx.fl).min(k));
            let mut norms = [0u64; NB];
            for kk in k0..k1 {
                for (s, &v) in norms.iter_mut().zip(&wp[kk * NB..(kk + 1) * NB]) {
                    *s += v.unsigned_abs() as u64;
                }
            }
            let worst = norms.iter().copied().max().unwrap_or(0);
            (worst as u128) * (ctx.amax as u128) <= acc.max as u128
        })
        .collect();
    let sym = acc.mode == OverflowMode::SatSym;
    let mode = match acc.mode {
        OverflowMode::Wrap => WRAP,
        OverflowMode::Sat => SAT,
        OverflowMode::SatZero => SATZ,
        OverflowMode::SatSym => SATS,
    };
    let d = cfg.rounder.k();
    let h = centre(&cfg.rounder);
    let mut out = BlockOut {
        acc: vec![0; m * nb],
        exact: vec![0; m * nb],
        tally: Tally::default(),
        tile_counts: vec![0; ctx.ntiles],
    };
    let (mut s32, mut e32, mut o32) = ([0i32; NB], [0i32; NB], [0i32; NB]);
    let (mut s64, mut e64) = ([0i64; NB], [0i64; NB]);
    let mut st = Buf { b: [0; NB], be: [0; NB], ex: [0; NB], max_psum: 0, max_acc: 0, or: 0 };
    for (j, mm) in (r0..r1).enumerate() {
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
                writeback_round(cfg, &s64, &e64, nb, &mut st, &mut out.tally, h)
            };
            out.tally.writebacks += nb as u64;
            out.tally.ovf_psum += wcnt;
            out.tally.ovf_array += cnt;
            let tile = tile_index(cfg, ctx.tfolds, ctx.ntiles_n, mm, n0, f);
            out.tile_counts[tile] += cnt + wcnt;
        }
        out.acc[j * nb..(j + 1) * nb].copy_from_slice(&st.b[..nb]);
        out.exact[j * nb..(j + 1) * nb].copy_from_slice(&st.ex[..nb]);
    }
    for &o in &o32 {
        st.or |= o as u32 as u64;
    }
    out.tally.width_or |= st.or;
    out.tally.max_psum = out.tally.max_psum.max(st.max_psum);
    out.tally.max_acc = out.tally.max_acc.max(st.max_acc);
    out
}

/// Rows `r0..r1` of A as the plain-GEMM path reads them: per row, per
/// fold, the K pairs `(a[k], a[k+1])` as one i32 word (low half `a[k]`,
/// both as i16; a missing `k + 1` at the end of an odd fold as 0).
fn pair_rows(ctx: &Ctx, r0: usize, r1: usize) -> Vec<i32> {
    let k = ctx.k;
    let np: usize = ctx.pairs.iter().sum();
    let mut abuf = Vec::new();
    let ad = ctx.a.rows_i32(r0, r1, &mut abuf);
    let mut v = vec![0i32; (r1 - r0) * np];
    for (row, dst) in ad.chunks(k.max(1)).zip(v.chunks_mut(np.max(1))) {
        let mut q = 0;
        for (f, &pc) in ctx.pairs.iter().enumerate() {
            let (k0, k1) = (f * ctx.fl, ((f + 1) * ctx.fl).min(k));
            for p in 0..pc {
                let lo = row[k0 + 2 * p] as i16 as u16 as u32;
                let hi = if k0 + 2 * p + 1 < k1 { row[k0 + 2 * p + 1] as i16 as u16 as u32 } else { 0 };
                dst[q] = (lo | (hi << 16)) as i32;
                q += 1;
            }
        }
    }
    v
}

/// Whether this CPU has AVX-512 VNNI (`vpdpwssd`), for [`plain_block`].
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

/// The plain-GEMM path of one column block (`docs/performance.md`, "The
/// plain-GEMM path"), or `None` where its conditions fail (the caller then
/// runs the chain path). Conditions, each making the result exactly the
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
fn plain_block(
    ctx: &Ctx,
    bounds: (u128, u64),
    apair: &[i32],
    n0: usize,
    nb: usize,
    r0: usize,
    r1: usize,
) -> Option<BlockOut> {
    let cfg = ctx.cfg;
    debug_assert!(ctx.plain);
    let (worst, bf) = bounds;
    if worst > cfg.acc.max.min(i32::MAX as i64) as u128 {
        return None;
    }
    let (mut out, ext) = exact_rows(ctx, apair, n0, nb, r0, r1);
    let (mut max_psum, mut max_acc) = (0u64, 0u64);
    for x in 0..NB {
        let [fh, fl, bh, bl] = [ext[0][x] as i64, ext[1][x] as i64, ext[2][x] as i64, ext[3][x] as i64];
        max_psum = max_psum.max(fh.unsigned_abs()).max(fl.unsigned_abs());
        max_acc = max_acc.max(bh.unsigned_abs()).max(bl.unsigned_abs());
    }
    let or = ext_or(cfg, &ext);
    if width_of_mag(or) < width_of_mag(bf) {
        return None;
    }
    out.tally.writebacks = ((r1 - r0) * ctx.folds * nb) as u64;
    out.tally.max_psum = max_psum;
    out.tally.max_acc = max_acc;
    out.tally.width_or = or;
    Some(out)
}

/// The bounds of a column block: `(B, Bf)` with `B = max|A| * max_{n in
/// block} sum_k |w_kn|` (every chain prefix and every buffer value of the
/// block is at most `B` in magnitude) and `Bf = max|A| * max_{fold f, n in
/// block} sum_{k in f} |w_kn|` (every chain prefix within a fold).
fn block_bounds(ctx: &Ctx, n0: usize, nb: usize) -> (u128, u64) {
    let (k, n) = (ctx.k, ctx.n);
    let wd = ctx.w.to_i32();
    let mut total = [0u64; NB];
    let mut worst_fold = 0u64;
    for f in 0..ctx.folds {
        let (k0, k1) = (f * ctx.fl, ((f + 1) * ctx.fl).min(k));
        let mut norms = [0u64; NB];
        for kk in k0..k1 {
            for x in 0..nb {
                norms[x] += wd[kk * n + n0 + x].unsigned_abs() as u64;
            }
        }
        for x in 0..NB {
            total[x] += norms[x];
        }
        worst_fold = worst_fold.max(norms.iter().copied().max().unwrap_or(0));
    }
    let worst = total.iter().copied().max().unwrap_or(0) as u128 * ctx.amax as u128;
    (worst, worst_fold * ctx.amax)
}

/// The OR of `mag` over the per-lane extremes [`exact_rows`] returns (the
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

/// The exact GEMM of a column block by `vpdpwssd` (needs `B <= 2^31 - 1`
/// from [`block_bounds`], so every value read at a fold boundary is in i32
/// range): a [`BlockOut`] whose `acc` and `exact` are both the exact
/// buffer after the last fold (tallies empty), and the per-lane `[max fold
/// sum, min fold sum, max buffer, min buffer]` of the exact values.
fn exact_rows(
    ctx: &Ctx,
    apair: &[i32],
    n0: usize,
    nb: usize,
    r0: usize,
    r1: usize,
) -> (BlockOut, [[i32; NB]; 4]) {
    let wp = pack_wpairs(ctx, n0, nb);
    let mut out = BlockOut {
        acc: vec![0; (r1 - r0) * nb],
        exact: vec![0; (r1 - r0) * nb],
        tally: Tally::default(),
        tile_counts: vec![0; ctx.ntiles],
    };
    let ext = plain_rows_dispatch(ctx, apair, &wp, nb, r0, r1, &mut out);
    (out, ext)
}

/// W of a column block packed for `vpdpwssd`: per fold and K pair, 16
/// lanes of `(w[k][n], w[k+1][n])`, a missing `k` (odd fold length,
/// padded lane) as 0.
fn pack_wpairs(ctx: &Ctx, n0: usize, nb: usize) -> Vec<i16> {
    let (k, n) = (ctx.k, ctx.n);
    let wd = ctx.w.to_i32();
    // W packed per fold and pair: 16 lanes of (w[k][n], w[k+1][n]), a
    // missing k (odd fold length, padded lane) as 0.
    let pairs = &ctx.pairs;
    let np: usize = pairs.iter().sum();
    let mut wp = vec![0i16; np * 2 * NB];
    let mut q = 0;
    for f in 0..ctx.folds {
        let (k0, k1) = (f * ctx.fl, ((f + 1) * ctx.fl).min(k));
        for p in 0..pairs[f] {
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

/// The saturating i16 path of one column block (P = 16 `SAT`, d = 0;
/// `docs/performance.md`, "The saturating i16 path"), or `None` where its
/// per-block conditions fail (the caller then runs the chain path):
/// - the exact values (the `exact` output, every fold sum and buffer value)
///   come from [`exact_rows`] (`vpdpwssd`), which needs `B <= 2^31 - 1`
///   ([`block_bounds`]);
/// - the width statistic is decided exactly as in [`plain_block`]: the bit
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
#[allow(clippy::too_many_arguments)]
fn sat16_block(
    ctx: &Ctx,
    bounds: (u128, u64),
    apair: &[i32],
    a2: &[i32],
    n0: usize,
    nb: usize,
    r0: usize,
    r1: usize,
) -> Option<BlockOut> {
    let cfg = ctx.cfg;
    debug_assert!(ctx.sat16);
    let (worst, bf) = bounds;
    if worst > i32::MAX as u128 {
        return None;
    }
    // The exact GEMM, and the OR over the exact buffer values (after every
    // fold); the fold sums, like every chain prefix inside a fold, are
    // bounded by `Bf`. Only where the buffers do not decide the width,
    // the fold sums as well.
    let wp = pack_wpairs(ctx, n0, nb);
    let mut out = BlockOut {
        acc: Vec::new(),
        exact: vec![0; (r1 - r0) * nb],
        tally: Tally::default(),
        tile_counts: vec![0; ctx.ntiles],
    };
    let [hi, lo] = exact_buf_dispatch(ctx, apair, &wp, nb, r0, r1, &mut out.exact);
    let mut or = 0u64;
    for v in hi.iter().chain(&lo) {
        or |= cfg.acc.mag(*v as i64);
    }
    if width_of_mag(or) < width_of_mag(bf) {
        let (full, ext) = exact_rows(ctx, apair, n0, nb, r0, r1);
        or = ext_or(cfg, &ext);
        if width_of_mag(or) < width_of_mag(bf) {
            return None;
        }
        out.exact = full.exact;
    }
    out.acc = vec![0; (r1 - r0) * nb];
    // W per k: 16 i32 words, each the column's weight in both i16 halves
    // (lanes 2x and 2x + 1 of the i16 vector: rows m and m + 1, column x;
    // padded columns 0).
    let (k, n) = (ctx.k, ctx.n);
    let wd = ctx.w.to_i32();
    let mut w2 = vec![0i32; k * NB];
    for kk in 0..k {
        for x in 0..nb {
            let v = wd[kk * n + n0 + x] as i16 as u16 as u32;
            w2[kk * NB + x] = (v | v << 16) as i32;
        }
    }
    sat16_rows_dispatch(ctx, a2, &w2, n0, nb, r0, r1, &mut out);
    out.tally.writebacks = ((r1 - r0) * ctx.folds * nb) as u64;
    out.tally.width_or = or;
    Some(out)
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
    out: &mut BlockOut,
) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `ctx.sat16` implies `ctx.plain`: `has_vnni()` and
        // `cfg.simd == Avx512` (avx512f/bw/vl detected), the features
        // `sat16_rows` enables.
        unsafe { sat16_rows(ctx, a2, w2, n0, nb, r0, r1, out) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ctx, a2, w2, n0, nb, r0, r1, out);
        unreachable!("sat16_block needs AVX-512")
    }
}

/// Rows `r0..r1` of the saturating i16 path, one row pair per zmm (32 i16
/// lanes: lane `2x` row m, lane `2x + 1` row m + 1, column `n0 + x`).
/// Writes `out.acc` (the stored buffer), the overflow counts, the per-tile
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
    out: &mut BlockOut,
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
                    let j = (mm + h - r0) * nb;
                    for x in 0..nb {
                        out.acc[j + x] = lanes[2 * x + h] as i16 as i64;
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
    let rows: [&[i32]; PR] = std::array::from_fn(|p| &arows[p][k0..k1]);
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

#[allow(unsafe_code)]
fn exact_buf_dispatch(
    ctx: &Ctx,
    apair: &[i32],
    wp: &[i16],
    nb: usize,
    r0: usize,
    r1: usize,
    exact: &mut [i64],
) -> [[i32; NB]; 2] {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: called only under `ctx.plain` (`has_vnni()` and
        // `cfg.simd == Avx512`), the features `exact_buf_rows` enables.
        unsafe { exact_buf_rows(ctx, apair, wp, nb, r0, r1, exact) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ctx, apair, wp, nb, r0, r1, exact);
        unreachable!("exact_buf_rows needs AVX-512 VNNI")
    }
}

/// The exact GEMM of rows `r0..r1` of a column block by `vpdpwssd`, 8 rows
/// at a time (8 independent accumulators, one weight load per 8; exact in
/// i32 under `B <= 2^31 - 1`). Writes `exact` and returns each lane's
/// largest and smallest exact buffer value (after every fold), not the
/// fold sums (which are chain prefixes, bounded by `Bf`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(unsafe_code)]
fn exact_buf_rows(
    ctx: &Ctx,
    apair: &[i32],
    wp: &[i16],
    nb: usize,
    r0: usize,
    r1: usize,
    exact: &mut [i64],
) -> [[i32; NB]; 2] {
    use std::arch::x86_64::*;
    const RB: usize = 8;
    let np: usize = ctx.pairs.iter().sum();
    assert_eq!(wp.len(), np * 2 * NB);
    assert_eq!(apair.len(), (r1 - r0) * np);
    assert_eq!(exact.len(), (r1 - r0) * nb);
    let zero = _mm512_setzero_si512();
    let (mut hi, mut lo) = (zero, zero);
    let mut lanes = [0i32; NB];
    let mut mm = r0;
    while mm < r1 {
        let rb = RB.min(r1 - mm);
        // Rows past the end reuse the group's first row (not read).
        let rows: [&[i32]; RB] =
            std::array::from_fn(|r| &apair[(mm - r0 + if r < rb { r } else { 0 }) * np..][..np]);
        let mut buf = [zero; RB];
        let mut q0 = 0;
        for &pc in &ctx.pairs {
            let q1 = q0 + pc;
            for (q, wc) in (q0..q1).zip(wp[q0 * 2 * NB..q1 * 2 * NB].chunks_exact(2 * NB)) {
                // SAFETY: `wc` is 32 i16 = 64 bytes, one unaligned zmm load.
                let wv = unsafe { _mm512_loadu_si512(wc.as_ptr() as *const _) };
                for r in 0..RB {
                    buf[r] = _mm512_dpwssd_epi32(buf[r], _mm512_set1_epi32(rows[r][q]), wv);
                }
            }
            q0 = q1;
            // The buffer after this fold (rows past the end repeat the
            // group's first row: same values, no effect on the extremes).
            for r in 0..RB {
                hi = _mm512_max_epi32(hi, buf[r]);
                lo = _mm512_min_epi32(lo, buf[r]);
            }
        }
        for r in 0..rb {
            // SAFETY: `lanes` holds 16 i32.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr() as *mut _, buf[r]) };
            let j = (mm - r0 + r) * nb;
            for x in 0..nb {
                exact[j + x] = lanes[x] as i64;
            }
        }
        mm += rb;
    }
    let mut ext = [[0i32; NB]; 2];
    for (e, v) in ext.iter_mut().zip([hi, lo]) {
        // SAFETY: each `e` holds 16 i32.
        unsafe { _mm512_storeu_si512(e.as_mut_ptr() as *mut _, v) };
    }
    ext
}

#[allow(unsafe_code)]
fn plain_rows_dispatch(
    ctx: &Ctx,
    apair: &[i32],
    wp: &[i16],
    nb: usize,
    r0: usize,
    r1: usize,
    out: &mut BlockOut,
) -> [[i32; NB]; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: called only after `has_vnni()` and `cfg.simd == Avx512`
        // (avx512f/bw/vl detected), the features `plain_rows` enables.
        unsafe { plain_rows(ctx, apair, wp, nb, r0, r1, out) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ctx, apair, wp, nb, r0, r1, out);
        unreachable!("plain_block needs AVX-512 VNNI")
    }
}

/// Rows `r0..r1` of the plain-GEMM path, 8 rows at a time (one zmm of 16
/// i32 column lanes per row; the packed weight pair is loaded once per 8
/// `vpdpwssd`). Writes `acc` = `exact` = the buffer after the last fold and
/// returns the per-lane extremes of the fold sums and buffer values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(unsafe_code)]
fn plain_rows(
    ctx: &Ctx,
    apair: &[i32],
    wp: &[i16],
    nb: usize,
    r0: usize,
    r1: usize,
    out: &mut BlockOut,
) -> [[i32; NB]; 4] {
    use std::arch::x86_64::*;
    const RB: usize = 8;
    let pairs = &ctx.pairs;
    let np: usize = pairs.iter().sum();
    assert_eq!(wp.len(), np * 2 * NB);
    assert_eq!(apair.len(), (r1 - r0) * np);
    let zero = _mm512_setzero_si512();
    let (mut fh, mut fl, mut bh, mut bl) = (zero, zero, zero, zero);
    let mut lanes = [0i32; NB];
    let mut mm = r0;
    while mm < r1 {
        let rb = RB.min(r1 - mm);
        // Rows past the end (the last group) reuse the group's first row;
        // their results are not read.
        let rows: [&[i32]; RB] =
            std::array::from_fn(|r| &apair[(mm - r0 + if r < rb { r } else { 0 }) * np..][..np]);
        let mut buf = [zero; RB];
        let mut prev = [zero; RB];
        let mut q0 = 0;
        for &pc in pairs {
            let q1 = q0 + pc;
            for (q, wc) in (q0..q1).zip(wp[q0 * 2 * NB..q1 * 2 * NB].chunks_exact(2 * NB)) {
                // SAFETY: `wc` is 32 i16 = 64 bytes, one unaligned zmm load.
                let wv = unsafe { _mm512_loadu_si512(wc.as_ptr() as *const _) };
                // 8 independent accumulators: enough to hide the
                // instruction's latency.
                for r in 0..RB {
                    buf[r] = _mm512_dpwssd_epi32(buf[r], _mm512_set1_epi32(rows[r][q]), wv);
                }
            }
            q0 = q1;
            for r in 0..rb {
                let fs = _mm512_sub_epi32(buf[r], prev[r]);
                fh = _mm512_max_epi32(fh, fs);
                fl = _mm512_min_epi32(fl, fs);
                bh = _mm512_max_epi32(bh, buf[r]);
                bl = _mm512_min_epi32(bl, buf[r]);
                prev[r] = buf[r];
            }
        }
        for r in 0..rb {
            // SAFETY: `lanes` holds 16 i32.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr() as *mut _, buf[r]) };
            let j = (mm - r0 + r) * nb;
            for x in 0..nb {
                out.acc[j + x] = lanes[x] as i64;
                out.exact[j + x] = lanes[x] as i64;
            }
        }
        mm += rb;
    }
    let mut ext = [[0i32; NB]; 4];
    for (e, v) in ext.iter_mut().zip([fh, fl, bh, bl]) {
        // SAFETY: each `e` holds 16 i32.
        unsafe { _mm512_storeu_si512(e.as_mut_ptr() as *mut _, v) };
    }
    ext
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
