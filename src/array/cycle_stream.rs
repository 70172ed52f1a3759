//! The untraced path of the stationary dataflows (`ws`, `is`) of the cycle
//! engine: the same per-cycle state machine as `run_stationary_m` (every PE
//! register stepped every cycle by the same `mac_cycle`, the same two-phase
//! commit, the same memory gate, stalls and preloads, the same first-overflow
//! settling per cycle), with the bookkeeping that only the trace needs
//! replaced by index arithmetic, and a psum buffer laid out so that each
//! cycle's writebacks are contiguous:
//!
//! - **No tags, no pending flags.** After the commit of stream cycle `q` of a
//!   tile, bottom-row column `c` holds the column sum of stream item `s = q -
//!   (R-1) - c` (valid when `0 <= s < stream` and `c < Cu`); the traced path
//!   tracks the same thing with a shifted tag vector. The valid columns of a
//!   cycle are one contiguous range `lo..hi`.
//! - **Diagonal-major psum buffer.** Item `s`, column `c` of a column tile is
//!   stored at diagonal `e = s + c` (= `q - (R-1)`), entry `c`: the
//!   writebacks of one cycle are `hi - lo` consecutive entries, and the
//!   narrowing add with its statistics is one loop the compiler vectorizes.
//! - **Rows retired as they complete.** `ws`: during the last fold of the
//!   last column tile, row `s` is complete once diagonal `s + Cu - 1` has
//!   been written back; completed rows are converted to row-major and handed
//!   to the sink in chunks. With one column tile and one fold the buffer is a
//!   ring of `chunk + Cu - 1` diagonals, so memory does not grow with M.
//!   `is`: a column tile covers `Cu` output rows, delivered after the tile's
//!   last fold.
//!
//! `tests/array_props.rs` holds this path equal to the traced path (values,
//! cycles, stalls, every statistic) for every dataflow, overflow mode, d,
//! memory configuration and chunk size.

use super::{mac_cycle, Buffer, Lane};
use crate::array::{mag_m, Acc, ArrayConfig, Dataflow, Matrix, SAT, SATZ, WRAP};
use crate::error::Result;
use crate::memory::Geometry;

/// Receives row chunks `(row0, acc, exact)` in increasing row order.
pub(crate) type Sink<'s> = dyn FnMut(usize, &[i64], &[i64]) -> Result<()> + 's;

/// The psum buffer of one column tile, diagonal-major: diagonal `e` is `cu`
/// entries at slot `e % cap`. `b`: stored P-bit values (units of 2^d);
/// `ex`: the exact GEMM; `be`: the exact buffer (only when d > 0).
struct Diag {
    cu: usize,
    cap: usize,
    b: Vec<i64>,
    ex: Vec<i64>,
    be: Vec<i64>,
}

impl Diag {
    fn new(cu: usize, cap: usize, rounding: bool) -> Diag {
        Diag {
            cu,
            cap,
            b: vec![0; cap * cu],
            ex: vec![0; cap * cu],
            be: if rounding { vec![0; cap * cu] } else { Vec::new() },
        }
    }

    fn clear(&mut self) {
        self.b.fill(0);
        self.ex.fill(0);
        self.be.fill(0);
    }

    /// Zero the diagonals `e0..e1` (their slots).
    fn clear_diagonals(&mut self, e0: usize, e1: usize) {
        for e in e0..e1 {
            let i = (e % self.cap) * self.cu;
            self.b[i..i + self.cu].fill(0);
            self.ex[i..i + self.cu].fill(0);
            if !self.be.is_empty() {
                self.be[i..i + self.cu].fill(0);
            }
        }
    }

    /// Entry index of item `s`, column `c`.
    #[inline(always)]
    fn at(&self, s: usize, c: usize) -> usize {
        let mut e = s % self.cap + c;
        if e >= self.cap {
            e -= self.cap;
        }
        e * self.cu + c
    }
}

/// The bottom-row outputs committed in the last stream cycle, not yet
/// written back: diagonal `e`, columns `lo..hi`, of column tile `t` (its
/// fold `fold`).
#[derive(Clone, Copy)]
struct Pend {
    e: usize,
    lo: usize,
    hi: usize,
    t: usize,
    fold: usize,
}

/// `add_m` (`narrow_P(s + p)` and whether it overflowed, `s` a stored
/// P-bit value, `|p| <= 2^62`) written without `overflowing_add` and
/// without branches, so the drain loop vectorizes: the `i64` overflow of
/// `s + p` is the sign rule `((s ^ t) & (p ^ t)) < 0`. Same values as
/// `add_m` (the traced path uses `Acc::add`; the property tests hold the
/// two paths equal).
#[inline(always)]
fn add_v<const MODE: u8>(acc: &Acc, s: i64, p: i64) -> (i64, bool) {
    let t = s.wrapping_add(p);
    let of = ((s ^ t) & (p ^ t)) < 0;
    match MODE {
        WRAP => {
            let sh = 64 - acc.bits;
            let r = (t << sh) >> sh;
            (r, of | (r != t))
        }
        SAT => {
            let sat = if p > 0 { acc.max } else { acc.min };
            let c = t.clamp(acc.min, acc.max);
            let r = if of { sat } else { c };
            (r, of | (r != t))
        }
        SATZ => {
            let bad = of | (t > acc.max) | (t < acc.min);
            (if bad { 0 } else { t }, bad)
        }
        _ => {
            let sat = if p > 0 { acc.max } else { -acc.max };
            let c = t.clamp(-acc.max, acc.max);
            let r = if of { sat } else { c };
            (r, of | (r != t))
        }
    }
}

/// Write back a pending bottom row (`p`: the bottom row's psum registers,
/// `x`: the exact values, the shadow registers once they are live) into
/// `d`: the psum-buffer adder `B = narrow_P(B + round_d(s))` with the same
/// statistics as `Buffer::writeback`, columns in increasing order.
#[inline(always)]
fn drain<T: Lane, const MODE: u8>(buf: &mut Buffer, d: &mut Diag, pd: &Pend, p: &[T], x: &[T]) {
    let cfg = buf.cfg;
    let base = (pd.e % d.cap) * d.cu;
    let (lo, hi) = (pd.lo, pd.hi);
    if cfg.rounder.k() == 0 {
        let acc = cfg.acc;
        let db = &mut d.b[base + lo..base + hi];
        let dex = &mut d.ex[base + lo..base + hi];
        let (p, x) = (&p[lo..hi], &x[lo..hi]);
        let (mut mp, mut ma, mut or, mut ovf, mut fc) = (0u64, 0u64, 0u64, 0u64, u64::MAX);
        for i in 0..db.len() {
            let s = p[i].to_i64();
            mp = mp.max(s.unsigned_abs());
            let (nb, of) = add_v::<MODE>(&acc, db[i], s);
            db[i] = nb;
            ma = ma.max(nb.unsigned_abs());
            // d = 0: the exact buffer is the exact GEMM.
            let v = dex[i] + x[i].to_i64();
            dex[i] = v;
            or |= mag_m::<MODE>(v);
            ovf += of as u64;
            fc = fc.min(if of { i as u64 } else { u64::MAX });
        }
        let t = &mut buf.tally;
        t.max_psum = t.max_psum.max(mp);
        t.max_acc = t.max_acc.max(ma);
        t.width_or |= or;
        t.writebacks += (hi - lo) as u64;
        if ovf > 0 {
            t.ovf_psum += ovf;
            buf.event(cfg.rows, lo + fc as usize);
        }
    } else {
        for c in lo..hi {
            let i = base + c;
            let (s, e) = (p[c].to_i64(), x[c].to_i64());
            buf.tally.max_psum = buf.tally.max_psum.max(s.unsigned_abs());
            let (r, info) = cfg.rounder.round_info(s as i128);
            buf.tally.record_round(&info, buf.h);
            let re = cfg.rounder.round(e as i128) as i64;
            let (nb, of) = cfg.acc.add(d.b[i], r as i64);
            d.b[i] = nb;
            buf.tally.max_acc = buf.tally.max_acc.max(nb.unsigned_abs());
            d.ex[i] += e;
            d.be[i] += re;
            buf.tally.width_or |= cfg.acc.mag(d.be[i]);
            buf.tally.writebacks += 1;
            if of {
                buf.tally.ovf_psum += 1;
                buf.event(cfg.rows, c);
            }
        }
    }
}

/// The chunk buffers of the delivery and the rows delivered so far.
struct Out {
    acc: Vec<i64>,
    ex: Vec<i64>,
    /// `ws`: output rows handed to the sink.
    rows: usize,
}

/// `ws`: hand rows `r0..r1` (complete in every tile) to the sink.
fn deliver_ws(
    diags: &[Diag],
    cc: usize,
    n: usize,
    r0: usize,
    r1: usize,
    out: &mut Out,
    sink: &mut Sink,
) -> Result<()> {
    // Every entry is overwritten (the tiles cover all N columns).
    out.acc.resize((r1 - r0) * n, 0);
    out.ex.resize((r1 - r0) * n, 0);
    for (t, d) in diags.iter().enumerate() {
        let c0 = t * cc;
        let cu = d.cu;
        for s in r0..r1 {
            let o = (s - r0) * n + c0;
            let (oa, oe) = (&mut out.acc[o..o + cu], &mut out.ex[o..o + cu]);
            let base = s % d.cap;
            if base + cu <= d.cap {
                // No wrap: entry c is at (base + c) * cu + c, stride cu + 1.
                let i0 = base * cu;
                let (b, ex) = (&d.b[i0..], &d.ex[i0..]);
                for c in 0..cu {
                    oa[c] = b[c * (cu + 1)];
                    oe[c] = ex[c * (cu + 1)];
                }
            } else {
                for c in 0..cu {
                    let i = d.at(s, c);
                    oa[c] = d.b[i];
                    oe[c] = d.ex[i];
                }
            }
        }
    }
    sink(r0, &out.acc, &out.ex)
}

/// `is`: hand the `cu` output rows `c0..c0 + cu` of a finished column tile
/// (`n` = stream items per row) to the sink, at most `chunk` rows at a time.
fn deliver_is(d: &Diag, c0: usize, n: usize, chunk: usize, out: &mut Out, sink: &mut Sink) -> Result<()> {
    let mut c = 0;
    while c < d.cu {
        let c1 = (c + chunk).min(d.cu);
        out.acc.clear();
        out.acc.resize((c1 - c) * n, 0);
        out.ex.clear();
        out.ex.resize((c1 - c) * n, 0);
        for cc in c..c1 {
            for s in 0..n {
                let i = d.at(s, cc);
                out.acc[(cc - c) * n + s] = d.b[i];
                out.ex[(cc - c) * n + s] = d.ex[i];
            }
        }
        sink(c0 + c, &out.acc, &out.ex)?;
        c = c1;
    }
    Ok(())
}

/// The stationary dataflows without a trace, delivering the output rows to
/// `sink` (at most `chunk` rows per call for `ws`). Same cycles, statistics
/// and values as `run_stationary_m` (see the module doc).
#[inline(always)]
pub(super) fn stream_m<T: Lane, const MODE: u8>(
    cfg: &ArrayConfig,
    a: &Matrix,
    w: &Matrix,
    buf: &mut Buffer,
    chunk: usize,
    sink: &mut Sink,
) -> Result<()> {
    let (rr, cc) = (cfg.rows, cfg.cols);
    let (m, k, n) = (a.rows(), a.cols(), w.cols());
    let ws = cfg.dataflow == Dataflow::Ws;
    let (cdim, stream) = if ws { (n, m) } else { (m, n) };
    let stationary = |kk: usize, j: usize| -> T::In {
        T::in_from_i64(if ws { w.get(kk, j) } else { a.get(j, kk) } as i64)
    };
    let (mv, mv_s, mv_k) = if ws { (a.codes(), k, 1) } else { (w.codes(), 1, n) };
    let sz = rr * cc;
    let bottom = (rr - 1) * cc;
    let z = T::default();
    let zi = T::In::default();
    let (mut wreg, mut wnext) = (vec![zi; sz], vec![zi; sz]);
    let (mut areg, mut anext) = (vec![zi; sz], vec![zi; sz]);
    let (mut preg, mut pnext) = (vec![z; sz], vec![z; sz]);
    let (mut ereg, mut enext) = (vec![z; sz], vec![z; sz]);
    let mut or = z;
    let mut edge = vec![zi; rr];
    let mut shadow = false;
    let ntiles = cdim.div_ceil(cc);
    let folds = k.div_ceil(rr);
    let rounding = cfg.rounder.k() > 0;
    let chunk = chunk.max(1);
    // ws with one column tile and one fold: a ring of diagonals.
    let ring = ws && ntiles == 1 && folds == 1;
    let mut diags: Vec<Diag> = Vec::new();
    if ws {
        for t in 0..ntiles {
            let cu = cc.min(cdim - t * cc);
            let cap = if ring { (chunk + cu - 1).min(stream + cu - 1) } else { stream + cu - 1 };
            diags.push(Diag::new(cu, cap, rounding));
        }
    } else {
        // is: the current tile's buffer and the previous one's (its last
        // writeback happens in the next tile's first cycle).
        for _ in 0..ntiles.min(2) {
            diags.push(Diag::new(cc, stream + cc - 1, rounding));
        }
    }
    let mut out = Out { acc: Vec::new(), ex: Vec::new(), rows: 0 };
    let mut pend: Option<Pend> = None;
    let last_cu = cc.min(cdim - (ntiles - 1) * cc);

    // Write back the pending row (if any), then deliver what it completed.
    macro_rules! drain_pending {
        () => {
            if let Some(pd) = pend.take() {
                let src = if shadow { &ereg } else { &preg };
                let di = if ws { pd.t } else { pd.t % 2 };
                drain::<T, MODE>(buf, &mut diags[di], &pd, &preg[bottom..], &src[bottom..]);
                if pd.fold == folds - 1 {
                    if ws && pd.t == ntiles - 1 {
                        let complete = (pd.e + 2).saturating_sub(last_cu).min(stream);
                        while complete - out.rows >= chunk || (complete == stream && out.rows < stream) {
                            let r1 = (out.rows + chunk).min(complete);
                            deliver_ws(&diags, cc, n, out.rows, r1, &mut out, sink)?;
                            if ring {
                                diags[0].clear_diagonals(out.rows, r1);
                            }
                            out.rows = r1;
                        }
                    } else if !ws && pd.e == stream + diags[di].cu - 2 {
                        deliver_is(&diags[di], pd.t * cc, n, chunk, &mut out, sink)?;
                    }
                }
            }
        };
    }

    for t in 0..ntiles {
        let c0 = t * cc;
        let cu = cc.min(cdim - c0);
        if !ws {
            let d = &mut diags[t % 2];
            d.cu = cu;
            d.cap = stream + cu - 1;
            d.clear();
        }
        for (fold, k0) in (0..k).step_by(rr).enumerate() {
            let ru = rr.min(k - k0);
            let g = Geometry { fold, k0, k1: k0 + ru, r0: k0, ru, c0, cu };
            let gate = buf.timer.start(&g, buf.cycle);
            if buf.cycle < gate.start {
                // Every register holds; only the first stall cycle writes
                // anything back, and only it can settle an overflow.
                drain_pending!();
                buf.end_cycle(0, "", "");
                buf.cycle = gate.start;
            }
            if gate.pre == 0 {
                for r in 0..rr {
                    for c in 0..cc {
                        wreg[r * cc + c] = if r < ru && c < cu { stationary(k0 + r, c0 + c) } else { zi };
                    }
                }
            }
            for q in 0..gate.pre as usize {
                drain_pending!();
                let src = rr - 1 - q;
                for c in 0..cc {
                    wnext[c] = if src < ru && c < cu { stationary(k0 + src, c0 + c) } else { zi };
                }
                wnext[cc..].copy_from_slice(&wreg[..sz - cc]);
                std::mem::swap(&mut wreg, &mut wnext);
                buf.end_cycle(0, "", "");
            }
            edge.fill(zi);
            let mut done = 0usize;
            let mut q = 0usize;
            // Moving operand of row r at cycle q: mv[(q - r) * mv_s + (k0 + r) * mv_k].
            let step = mv_k.wrapping_sub(mv_s);
            while done < stream * cu {
                drain_pending!();
                if q + 1 >= ru && q < stream {
                    // Every used row has an item this cycle.
                    mv.gather(q * mv_s + k0 * mv_k, step, &mut edge[..ru], |v| T::in_from_i64(v as i64));
                } else {
                    for (r, e) in edge[..ru].iter_mut().enumerate() {
                        *e = if q >= r && q - r < stream {
                            T::in_from_i64(mv.at((q - r) * mv_s + (k0 + r) * mv_k) as i64)
                        } else {
                            zi
                        };
                    }
                }
                let res = mac_cycle::<T, MODE>(
                    &cfg.acc,
                    rr,
                    cc,
                    &edge,
                    &wreg,
                    &areg,
                    &preg,
                    &mut ereg,
                    &mut anext,
                    &mut pnext,
                    &mut enext,
                    &mut shadow,
                    &mut or,
                );
                let (cnt, first) = res;
                buf.tally.ovf_array += cnt;
                if let Some((r, c)) = first {
                    buf.event(r, c);
                }
                std::mem::swap(&mut areg, &mut anext);
                std::mem::swap(&mut preg, &mut pnext);
                std::mem::swap(&mut ereg, &mut enext);
                // Bottom-row column c now holds item q - (R-1) - c.
                if q + 1 >= rr {
                    let e = q + 1 - rr;
                    let lo = (e + 1).saturating_sub(stream);
                    let hi = cu.min(e + 1);
                    if lo < hi {
                        pend = Some(Pend { e, lo, hi, t, fold });
                        done += hi - lo;
                    }
                }
                buf.end_cycle(0, "", "");
                q += 1;
            }
        }
    }
    buf.tally.width_or |= or.to_i64() as u64;
    if pend.is_some() {
        drain_pending!();
        buf.end_cycle(0, "", "");
    }
    Ok(())
}
