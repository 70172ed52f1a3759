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
//!   been written back; it is then gathered to row-major into the chunk
//!   buffer, which is handed to the sink every `chunk` rows. With one column
//!   tile and one fold the buffer is a ring of `Cu` (rounded up to a power
//!   of two) diagonals, diagonal `s` cleared once row `s` is gathered, so
//!   memory does not grow with M and the ring stays in L1.
//! - **Two PE-array kernels** ([`Kern`]): the general one steps the
//!   registers of the traced path with the same `mac_cycle`; the bounded one
//!   (where the chain bound proves no PE adder can overflow) updates the
//!   psum registers in place without the overflow test and the shadow, and
//!   reads the activations from a skewed window instead of shifting them.
//!   `is`: a column tile covers `Cu` output rows, delivered after the tile's
//!   last fold.
//!
//! `tests/array_props.rs` holds this path equal to the traced path (values,
//! cycles, stalls, every statistic) for every dataflow, overflow mode, d,
//! memory configuration and chunk size.

use super::{mac_cycle, Buffer, Lane, Operands};
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

    /// The slot of diagonal `e` (`e % cap`; a mask for the power-of-two
    /// ring, no division in the per-cycle paths).
    #[inline(always)]
    fn slot(&self, e: usize) -> usize {
        if self.cap.is_power_of_two() {
            e & (self.cap - 1)
        } else if e < self.cap {
            e
        } else {
            e % self.cap
        }
    }

    /// Zero the diagonals `e0..e1` (their slots).
    fn clear_diagonals(&mut self, e0: usize, e1: usize) {
        for e in e0..e1 {
            let i = self.slot(e) * self.cu;
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
        let mut e = self.slot(s) + c;
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
    let base = d.slot(pd.e) * d.cu;
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
    /// `ws`: output rows handed to the sink; rows `rows..gathered` are the
    /// first rows of `acc` / `ex` (row-major, `chunk` rows long), not yet
    /// handed over.
    rows: usize,
    gathered: usize,
}

/// `ws`: append output row `s` (complete in every tile) to the chunk
/// buffers, then, in the ring buffer, clear diagonal `s` (every row with an
/// entry on it, `s - Cu + 1 ..= s`, has been gathered) for reuse.
fn gather_ws(diags: &mut [Diag], cc: usize, n: usize, s: usize, ring: bool, out: &mut Out) {
    let o = (s - out.rows) * n;
    for (t, d) in diags.iter().enumerate() {
        let c0 = t * cc;
        let cu = d.cu;
        let (oa, oe) = (&mut out.acc[o + c0..o + c0 + cu], &mut out.ex[o + c0..o + c0 + cu]);
        // Entry c is at slot(s + c) * cu + c: stride cu + 1 from slot(s)
        // up to the end of the buffer, then from slot 0 (the ring's wrap).
        let base = d.slot(s);
        let split = (d.cap - base).min(cu);
        let (b0, b1) = (&d.b[base * cu..], &d.b[split..]);
        let (e0, e1) = (&d.ex[base * cu..], &d.ex[split..]);
        for c in 0..split {
            oa[c] = b0[c * (cu + 1)];
            oe[c] = e0[c * (cu + 1)];
        }
        for c in split..cu {
            oa[c] = b1[(c - split) * (cu + 1)];
            oe[c] = e1[(c - split) * (cu + 1)];
        }
    }
    if ring {
        diags[0].clear_diagonals(s, s + 1);
    }
    out.gathered = s + 1;
}

/// `ws`: hand the gathered rows to the sink and empty the chunk buffers.
fn flush_ws(out: &mut Out, n: usize, sink: &mut Sink) -> Result<()> {
    let len = (out.gathered - out.rows) * n;
    sink(out.rows, &out.acc[..len], &out.ex[..len])?;
    out.rows = out.gathered;
    Ok(())
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

/// Which PE-array kernel the streamed path runs (chosen once per GEMM by
/// `cycle::stream_kernel`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kern {
    /// Every PE adder checked for overflow, the exact shadow started at the
    /// first overflow (`mac_cycle`), activations shifted register to
    /// register.
    General,
    /// The chain bound holds (no PE adder can overflow, `cycle::
    /// stream_kernel`): `i32` psum registers updated in place, no overflow
    /// test, no shadow, activations read from a skewed window. `P16`: every
    /// product fits `i16` (a 16-bit multiply).
    Bounded { p16: bool },
}

/// The PE array of a stationary dataflow as the streamed path steps it:
/// the stationary registers are loaded at the start of a tile's stream
/// (in the untraced path nothing observes them during a preload), and
/// `step` runs one stream cycle (every PE computes and commits).
trait PeArray {
    /// The psum register lane type.
    type L: Lane;
    /// Load the stationary registers: PE `(r, c)` holds `f(r, c)` for `r <
    /// ru`, `c < cu`, else 0; the stream of the fold at K index `k0` starts.
    fn begin(&mut self, ops: &Operands, k0: usize, ru: usize, cu: usize, f: impl Fn(usize, usize) -> i64);
    /// Stream cycle `q`: every PE register computed and committed. Returns
    /// the number of PE adders that overflowed and the first (row, col).
    fn step<const MODE: u8>(&mut self, acc: &Acc, ops: &Operands, q: usize) -> (u64, Option<(usize, usize)>);
    /// The bottom row's psum registers and their exact values.
    fn bottom(&self) -> (&[Self::L], &[Self::L]);
    /// The `mag` OR of every psum register value computed so far.
    fn width_or(&self) -> u64;
}

/// [`Kern::General`]: the registers of `run_stationary_m`, stepped by the
/// same `mac_cycle`.
struct General<T: Lane> {
    rr: usize,
    cc: usize,
    k0: usize,
    ru: usize,
    wreg: Vec<T::In>,
    areg: Vec<T::In>,
    anext: Vec<T::In>,
    preg: Vec<T>,
    pnext: Vec<T>,
    ereg: Vec<T>,
    enext: Vec<T>,
    edge: Vec<T::In>,
    shadow: bool,
    or: T,
}

impl<T: Lane> General<T> {
    fn new(rr: usize, cc: usize) -> General<T> {
        let sz = rr * cc;
        let (z, zi) = (T::default(), T::In::default());
        General {
            rr,
            cc,
            k0: 0,
            ru: 0,
            wreg: vec![zi; sz],
            areg: vec![zi; sz],
            anext: vec![zi; sz],
            preg: vec![z; sz],
            pnext: vec![z; sz],
            ereg: vec![z; sz],
            enext: vec![z; sz],
            edge: vec![zi; rr],
            shadow: false,
            or: z,
        }
    }
}

impl<T: Lane> PeArray for General<T> {
    type L = T;

    #[inline(always)]
    fn begin(&mut self, _: &Operands, k0: usize, ru: usize, cu: usize, f: impl Fn(usize, usize) -> i64) {
        (self.k0, self.ru) = (k0, ru);
        for r in 0..self.rr {
            for c in 0..self.cc {
                self.wreg[r * self.cc + c] =
                    if r < ru && c < cu { T::in_from_i64(f(r, c)) } else { T::In::default() };
            }
        }
    }

    #[inline(always)]
    fn step<const MODE: u8>(&mut self, acc: &Acc, ops: &Operands, q: usize) -> (u64, Option<(usize, usize)>) {
        ops.edge(q, self.k0, self.ru, T::in_from_i64, &mut self.edge);
        let res = mac_cycle::<T, MODE>(
            acc,
            self.rr,
            self.cc,
            &self.edge,
            &self.wreg,
            &self.areg,
            &self.preg,
            &mut self.ereg,
            &mut self.anext,
            &mut self.pnext,
            &mut self.enext,
            &mut self.shadow,
            &mut self.or,
        );
        std::mem::swap(&mut self.areg, &mut self.anext);
        std::mem::swap(&mut self.preg, &mut self.pnext);
        std::mem::swap(&mut self.ereg, &mut self.enext);
        res
    }

    #[inline(always)]
    fn bottom(&self) -> (&[T], &[T]) {
        let b = (self.rr - 1) * self.cc;
        let x = if self.shadow { &self.ereg } else { &self.preg };
        (&self.preg[b..], &x[b..])
    }

    fn width_or(&self) -> u64 {
        self.or.to_i64() as u64
    }
}

/// Lanes per chunk of a [`Bounded`] row (one AVX-512 register of `i32`).
const LANES: usize = 16;
/// Stream cycles per activation window of [`Bounded`].
const BLOCK: usize = 512;

/// [`Kern::Bounded`]: no PE adder can overflow, so every stored psum is
/// its exact value (no shadow, no overflow test, overflow count 0) and each
/// cycle is, per PE, one product, one add and the `mag` OR.
///
/// - Rows are `cp` lanes (`C` rounded up to [`LANES`]; the padding columns
///   hold weight 0, so their psums stay 0).
/// - The psum registers are updated in place, top row first, each row's
///   old value carried to the row below (row `r` adds to row `r - 1`'s
///   value of the previous cycle).
/// - No activation registers: PE `(r, c)` at stream cycle `q` uses the
///   moving value of item `s = q - r - c` (0 for a bubble), which is what
///   the shifted activation register of `run_stationary_m` holds wherever
///   the weight is non-zero (registers are not reset between tiles, but a
///   stale activation only reaches columns `>= Cu` of the next tile, whose
///   weights are 0; `tests/array_props.rs` holds the two paths equal on
///   multi-tile GEMMs). The moving values are kept per row in a skewed
///   window, `act[r][x]` = item `q0 + BLOCK - 1 - r - x`, so the `cp`
///   activations of every row at cycle `q` are the contiguous
///   `act[r][q0 + BLOCK - 1 - q ..]`; the window moves by `BLOCK` cycles at
///   a time (the overlap copied, the rest gathered once).
struct Bounded<const P16: bool> {
    rr: usize,
    cp: usize,
    /// Window row length: `BLOCK + cp - 1`.
    lt: usize,
    k0: usize,
    ru: usize,
    /// First stream cycle of the current window.
    q0: usize,
    w: Vec<i16>,
    p: Vec<i32>,
    act: Vec<i16>,
    or: Vec<i32>,
}

impl<const P16: bool> Bounded<P16> {
    fn new(rr: usize, cc: usize) -> Bounded<P16> {
        let cp = cc.div_ceil(LANES) * LANES;
        let lt = BLOCK + cp - 1;
        Bounded {
            rr,
            cp,
            lt,
            k0: 0,
            ru: 0,
            q0: 0,
            w: vec![0; rr * cp],
            p: vec![0; rr * cp],
            act: vec![0; rr * lt],
            or: vec![0; cp],
        }
    }

    /// Gather window entries `x0..x1` of the used rows: item `s = q0 +
    /// BLOCK - 1 - r - x`, 0 outside the stream.
    fn fill(&mut self, ops: &Operands, x0: usize, x1: usize) {
        let top = self.q0 + BLOCK - 1;
        for r in 0..self.ru {
            let row = &mut self.act[r * self.lt..(r + 1) * self.lt][x0..x1];
            row.fill(0);
            // Items s_hi (at x0) down to s_lo (at x1 - 1), clipped to the stream.
            let Some(s_hi) = (top - r).checked_sub(x0) else { continue };
            let s_hi = s_hi.min(ops.stream.saturating_sub(1));
            let s_lo = (top - r).saturating_sub(x1 - 1);
            if ops.stream == 0 || s_lo > s_hi {
                continue;
            }
            let kk = self.k0 + r;
            let xs = top - r - s_hi - x0;
            let back = 0usize.wrapping_sub(ops.mv_s);
            ops.mv.gather(s_hi * ops.mv_s + kk * ops.mv_k, back, &mut row[xs..xs + (s_hi - s_lo + 1)], |v| {
                v as i16
            });
        }
    }
}

/// One row chunk of [`Bounded::step`]: `pin + w * a`, exact by the chain
/// bound, and the `mag` OR into `or`.
#[inline(always)]
fn bounded_chunk<const MODE: u8, const P16: bool>(
    w: &[i16],
    a: &[i16],
    pin: [i32; LANES],
    or: &mut [i32; LANES],
) -> [i32; LANES] {
    let (w, a) = (&w[..LANES], &a[..LANES]);
    let mut out = [0i32; LANES];
    for x in 0..LANES {
        // |a * w| <= 2^15 - 1 when P16: the 16-bit product is exact.
        let prod = if P16 { a[x].wrapping_mul(w[x]) as i32 } else { a[x] as i32 * w[x] as i32 };
        let v = pin[x].wrapping_add(prod);
        out[x] = v;
        or[x] |= v.mag::<MODE>();
    }
    out
}

impl<const P16: bool> PeArray for Bounded<P16> {
    type L = i32;

    #[inline(always)]
    fn begin(&mut self, ops: &Operands, k0: usize, ru: usize, cu: usize, f: impl Fn(usize, usize) -> i64) {
        for r in 0..self.rr {
            for c in 0..self.cp {
                // Fits i16: `Bounded` needs `i32` lanes (operands within i16).
                self.w[r * self.cp + c] = if r < ru && c < cu { f(r, c) as i16 } else { 0 };
            }
        }
        (self.k0, self.ru, self.q0) = (k0, ru, 0);
        self.act.fill(0);
        self.fill(ops, 0, self.lt);
    }

    #[inline(always)]
    fn step<const MODE: u8>(&mut self, _: &Acc, ops: &Operands, q: usize) -> (u64, Option<(usize, usize)>) {
        let (cp, lt) = (self.cp, self.lt);
        if q == self.q0 + BLOCK {
            // Move the window by BLOCK cycles: its last `cp - 1` entries
            // are the new one's entries `BLOCK..`.
            for r in 0..self.ru {
                self.act.copy_within(r * lt..r * lt + lt - BLOCK, r * lt + BLOCK);
            }
            self.q0 = q;
            self.fill(ops, 0, BLOCK);
        }
        let x0 = self.q0 + BLOCK - 1 - q;
        for ch in (0..cp).step_by(LANES) {
            let mut or: [i32; LANES] = self.or[ch..ch + LANES].try_into().expect("LANES");
            // The old value of the row above (row 0 adds to 0).
            let mut carry = [0i32; LANES];
            let rows =
                self.p.chunks_exact_mut(cp).zip(self.w.chunks_exact(cp)).zip(self.act.chunks_exact(lt));
            for ((prow, wrow), arow) in rows {
                let prow = &mut prow[ch..ch + LANES];
                let old: [i32; LANES] = (&*prow).try_into().expect("LANES");
                let out = bounded_chunk::<MODE, P16>(&wrow[ch..], &arow[x0 + ch..], carry, &mut or);
                prow.copy_from_slice(&out);
                carry = old;
            }
            self.or[ch..ch + LANES].copy_from_slice(&or);
        }
        (0, None)
    }

    #[inline(always)]
    fn bottom(&self) -> (&[i32], &[i32]) {
        let b = &self.p[(self.rr - 1) * self.cp..];
        (b, b)
    }

    fn width_or(&self) -> u64 {
        self.or.iter().fold(0i32, |x, &v| x | v) as i64 as u64
    }
}

/// The stationary dataflows without a trace, delivering the output rows to
/// `sink` (at most `chunk` rows per call for `ws`). Same cycles, statistics
/// and values as `run_stationary_m` (see the module doc), with the PE array
/// kernel `kern`.
#[inline(always)]
pub(super) fn stream_m<T: Lane, const MODE: u8>(
    cfg: &ArrayConfig,
    a: &Matrix,
    w: &Matrix,
    buf: &mut Buffer,
    chunk: usize,
    sink: &mut Sink,
    kern: Kern,
) -> Result<()> {
    let (rr, cc) = (cfg.rows, cfg.cols);
    match kern {
        Kern::General => stream_pe::<MODE, _>(cfg, a, w, buf, chunk, sink, General::<T>::new(rr, cc)),
        Kern::Bounded { p16: true } => {
            stream_pe::<MODE, _>(cfg, a, w, buf, chunk, sink, Bounded::<true>::new(rr, cc))
        }
        Kern::Bounded { p16: false } => {
            stream_pe::<MODE, _>(cfg, a, w, buf, chunk, sink, Bounded::<false>::new(rr, cc))
        }
    }
}

#[inline(always)]
fn stream_pe<const MODE: u8, P: PeArray>(
    cfg: &ArrayConfig,
    a: &Matrix,
    w: &Matrix,
    buf: &mut Buffer,
    chunk: usize,
    sink: &mut Sink,
    mut pe: P,
) -> Result<()> {
    let cc = cfg.cols;
    let (k, n) = (a.cols(), w.cols());
    let ws = cfg.dataflow == Dataflow::Ws;
    let rr = cfg.rows;
    let ops = Operands::new(ws, a, w);
    let (cdim, stream) = (ops.cdim, ops.stream);
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
            // The ring: row s is gathered (and diagonal s cleared) when
            // diagonal s + cu - 1 is written, before diagonal s + cu is.
            // A power of two: the slot is a mask.
            let cap = if ring { cu.next_power_of_two() } else { stream + cu - 1 };
            diags.push(Diag::new(cu, cap, rounding));
        }
    } else {
        // is: the current tile's buffer and the previous one's (its last
        // writeback happens in the next tile's first cycle).
        for _ in 0..ntiles.min(2) {
            diags.push(Diag::new(cc, stream + cc - 1, rounding));
        }
    }
    // ws: the chunk buffers hold `chunk` rows (is: resized per delivery).
    let len = if ws { chunk.min(stream) * n } else { 0 };
    let mut out = Out { acc: vec![0; len], ex: vec![0; len], rows: 0, gathered: 0 };
    let mut pend: Option<Pend> = None;
    let last_cu = cc.min(cdim - (ntiles - 1) * cc);

    // Write back the pending row (if any), then deliver what it completed.
    macro_rules! drain_pending {
        () => {
            if let Some(pd) = pend.take() {
                let di = if ws { pd.t } else { pd.t % 2 };
                let (p, x) = pe.bottom();
                drain::<P::L, MODE>(buf, &mut diags[di], &pd, p, x);
                if pd.fold == folds - 1 {
                    if ws && pd.t == ntiles - 1 {
                        let complete = (pd.e + 2).saturating_sub(last_cu).min(stream);
                        while out.gathered < complete {
                            gather_ws(&mut diags, cc, n, out.gathered, ring, &mut out);
                            if out.gathered - out.rows == chunk || out.gathered == stream {
                                flush_ws(&mut out, n, sink)?;
                            }
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
            // Preload (or, double-buffered, the swap at the first stream
            // cycle): the MAC registers hold, and only the weights the
            // stream starts with are observable here.
            for _ in 0..gate.pre {
                drain_pending!();
                buf.end_cycle(0, "", "");
            }
            pe.begin(&ops, k0, ru, cu, |r, c| ops.stationary(k0 + r, c0 + c));
            let mut done = 0usize;
            let mut q = 0usize;
            while done < stream * cu {
                drain_pending!();
                let (cnt, first) = pe.step::<MODE>(&cfg.acc, &ops, q);
                buf.tally.ovf_array += cnt;
                if let Some((r, c)) = first {
                    buf.event(r, c);
                }
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
    buf.tally.width_or |= pe.width_or();
    if pend.is_some() {
        drain_pending!();
        buf.end_cycle(0, "", "");
    }
    Ok(())
}
