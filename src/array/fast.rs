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
use super::{OverflowEvent, Simd, Stats};
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
    let amax = a.data().iter().map(|v| v.unsigned_abs()).max().unwrap_or(0) as u64;
    let wmax = w.data().iter().map(|v| v.unsigned_abs()).max().unwrap_or(0) as u64;
    let tiles = schedule(cfg, m, k, n);
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
        use32: (fl as u128) * (amax as u128) * (wmax as u128) < (1u128 << 30)
            && amax <= i16::MAX as u64
            && wmax <= i16::MAX as u64,
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
    rows.div_ceil(want_jobs.max(1)).max(min_rows)
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
        let outs: Vec<BlockOut> =
            jobs.par_iter().map(|&(s, e, n0, nb)| run_block(ctx, n0, nb, s, e)).collect();
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
/// real lanes (a padded zero could round to a non-zero value).
fn writeback_round(
    cfg: &ArrayConfig,
    s: &[i64; NB],
    e: &[i64; NB],
    nb: usize,
    st: &mut Buf,
    tally: &mut Tally,
    h: i64,
) -> u64 {
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

/// [`run_block_impl`] at the config's SIMD level.
#[allow(unsafe_code)]
fn run_block(ctx: &Ctx, n0: usize, nb: usize, r0: usize, r1: usize) -> BlockOut {
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
    let ad = ctx.a.data();
    let wd = ctx.w.data();
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
        let arow_all = &ad[mm * k..(mm + 1) * k];
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
    let ad = ctx.a.data();
    let wd = ctx.w.data();
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
                    let p = ad[mm * k + kk] as i64 * wd[kk * n + nn] as i64;
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
