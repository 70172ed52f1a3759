//! The cycle-level engine: every PE register is updated every cycle, in two
//! phases (compute every next value from the current registers, then commit
//! all of them), exactly as `docs/datapath.md` ("Timing") describes. The
//! timing is *derived* by stepping (a tile's streaming phase ends when its
//! last output has been committed at the bottom of the array), not taken
//! from [`super::compute_cycles`]; the tests check the two agree.
//!
//! State is struct-of-arrays (`R*C` flat vectors per register kind, plus a
//! "next" copy swapped at commit); nothing is allocated per cycle.

// Hardware-shaped code: rows, columns and lanes are indexed explicitly.
#![allow(clippy::needless_range_loop)]

use super::stats::{centre, Tally};
use super::Stats;

#[path = "cycle_stream.rs"]
mod stream;
use super::{add_m, mag_m, mode_code, Acc, ArrayConfig, ArrayOutput, Codes, Dataflow, Matrix, OverflowEvent};
use super::{Simd, SAT, SATS, SATZ, WRAP};
use crate::memory::Geometry;
use std::fmt::Write as _;
use stream::Kern;

/// A register lane type for the stationary-array kernels: `i64` always
/// works; `i32` is used when every value provably fits (P <= 32, products
/// and the exact column shadow below 2^31), which halves the work per PE.
trait Lane: Copy + Default + PartialEq {
    /// The type of the stationary and moving operand registers.
    type In: Copy + Default;
    fn in_from_i64(v: i64) -> Self::In;
    fn in_to_i64(v: Self::In) -> i64;
    /// The exact product of two operands (fits by construction).
    fn prod(w: Self::In, a: Self::In) -> Self;
    fn to_i64(self) -> i64;
    /// The exact sum (fits by construction).
    fn add(self, o: Self) -> Self;
    /// `narrow_P(pin + prod)` and whether it overflowed.
    fn narrow_add<const MODE: u8>(acc: &Acc, pin: Self, prod: Self) -> (Self, bool);
    /// The OR-able width quantity (`Acc::mag`), in this lane type.
    fn mag<const MODE: u8>(self) -> Self;
    fn or(self, o: Self) -> Self;
}

impl Lane for i64 {
    type In = i64;
    #[inline(always)]
    fn in_from_i64(v: i64) -> i64 {
        v
    }
    #[inline(always)]
    fn in_to_i64(v: i64) -> i64 {
        v
    }
    #[inline(always)]
    fn prod(w: i64, a: i64) -> i64 {
        w * a
    }
    #[inline(always)]
    fn to_i64(self) -> i64 {
        self
    }
    #[inline(always)]
    fn add(self, o: i64) -> i64 {
        self + o
    }
    #[inline(always)]
    fn narrow_add<const MODE: u8>(acc: &Acc, pin: i64, prod: i64) -> (i64, bool) {
        add_m::<MODE>(acc, pin, prod)
    }
    #[inline(always)]
    fn mag<const MODE: u8>(self) -> i64 {
        mag_m::<MODE>(self) as i64
    }
    #[inline(always)]
    fn or(self, o: i64) -> i64 {
        self | o
    }
}

impl Lane for i32 {
    /// Operands fit i16 (checked before this lane type is chosen), so the
    /// product is a 16 x 16 -> 32-bit multiply, which vectorizes well even
    /// on baseline x86-64.
    type In = i16;
    #[inline(always)]
    fn in_from_i64(v: i64) -> i16 {
        v as i16
    }
    #[inline(always)]
    fn in_to_i64(v: i16) -> i64 {
        v as i64
    }
    #[inline(always)]
    fn prod(w: i16, a: i16) -> i32 {
        w as i32 * a as i32
    }
    #[inline(always)]
    fn to_i64(self) -> i64 {
        self as i64
    }
    #[inline(always)]
    fn add(self, o: i32) -> i32 {
        self + o
    }
    /// P <= 31: `pin + prod` is exact in i32 (|pin| <= 2^30, |prod| <=
    /// 2^30). P = 32 (WRAP only): wrapping add, overflow by the sign rule.
    #[inline(always)]
    fn narrow_add<const MODE: u8>(acc: &Acc, pin: i32, prod: i32) -> (i32, bool) {
        let (min, max) = (acc.min as i32, acc.max as i32);
        match MODE {
            WRAP => {
                // One branch-free form for every P <= 32: for P < 32 the i32
                // add cannot overflow (the sign rule is false) and the
                // shift pair narrows; for P = 32 the shift is 0 and the sign
                // rule detects the wrap.
                let t = pin.wrapping_add(prod);
                let sh = 32 - acc.bits;
                let r = (t << sh) >> sh;
                (r, (((pin ^ t) & (prod ^ t)) < 0) | (r != t))
            }
            SAT => {
                let t = pin + prod;
                let r = t.clamp(min, max);
                (r, r != t)
            }
            SATZ => {
                let t = pin + prod;
                let bad = t < min || t > max;
                (if bad { 0 } else { t }, bad)
            }
            _ => {
                let t = pin + prod;
                let r = t.clamp(-max, max);
                (r, r != t)
            }
        }
    }
    #[inline(always)]
    fn mag<const MODE: u8>(self) -> i32 {
        if MODE == SATS {
            self.wrapping_abs()
        } else {
            self ^ (self >> 31)
        }
    }
    #[inline(always)]
    fn or(self, o: i32) -> i32 {
        self | o
    }
}

/// Writeback/buffer state shared by the dataflows.
struct Buffer<'t> {
    cfg: ArrayConfig,
    n: usize,
    /// Psum buffer (stored, units of 2^d), its exact shadow, the exact GEMM.
    b: Vec<i64>,
    be: Vec<i64>,
    ex: Vec<i64>,
    tally: Tally,
    h: i64,
    cycle: u64,
    /// Smallest (row, col) overflow position seen in the current cycle.
    cand: Option<(u32, u32)>,
    trace: Option<&'t mut String>,
    /// Trace text of the current cycle's writebacks and overflows.
    wb_text: String,
    ovf_text: String,
    /// Register trace (`docs/datapath.md` §7): every PE register after the
    /// cycle's commit, appended to each trace line (`reg_text`).
    regs: bool,
    reg_text: String,
    /// The memory system's operand ready gate (`docs/memory.md`).
    timer: crate::memory::Timer,
}

impl Buffer<'_> {
    fn event(&mut self, row: usize, col: usize) {
        let p = (row as u32, col as u32);
        self.cand = Some(self.cand.map_or(p, |c| c.min(p)));
        if self.trace.is_some() {
            if !self.ovf_text.is_empty() {
                self.ovf_text.push(';');
            }
            let _ = write!(self.ovf_text, "{row},{col}");
        }
    }

    /// The psum-buffer adder: `B[mm][nn] = narrow_P(B + round_d(s))`.
    fn writeback(&mut self, col: usize, mm: usize, nn: usize, s: i64, e: i64) {
        let cfg = self.cfg;
        let idx = mm * self.n + nn;
        self.tally.max_psum = self.tally.max_psum.max(s.unsigned_abs());
        let (rv, re) = if cfg.rounder.k() == 0 {
            (s, e)
        } else {
            let (r, info) = cfg.rounder.round_info(s as i128);
            self.tally.record_round(&info, self.h);
            (r as i64, cfg.rounder.round(e as i128) as i64)
        };
        let (nb, of) = cfg.acc.add(self.b[idx], rv);
        self.b[idx] = nb;
        self.tally.max_acc = self.tally.max_acc.max(nb.unsigned_abs());
        self.ex[idx] += e;
        // With d = 0 the exact buffer is the exact GEMM (`be` is not kept).
        let bev = if cfg.rounder.k() == 0 {
            self.ex[idx]
        } else {
            self.be[idx] += re;
            self.be[idx]
        };
        self.tally.width_or |= cfg.acc.mag(bev);
        self.tally.writebacks += 1;
        if of {
            self.tally.ovf_psum += 1;
            self.event(cfg.rows, col);
        }
        if self.trace.is_some() {
            if !self.wb_text.is_empty() {
                self.wb_text.push(';');
            }
            let _ = write!(self.wb_text, "{col}:{mm},{nn}:{s}>{nb}");
        }
    }

    /// Close the current cycle: settle the first overflow, emit the trace
    /// line, advance the cycle counter.
    fn end_cycle(&mut self, tile: usize, phase: &str, inputs: &str) {
        if self.tally.first.is_none() {
            if let Some((row, col)) = self.cand {
                self.tally.first = Some(OverflowEvent { cycle: self.cycle, row, col });
            }
        }
        self.cand = None;
        if let Some(t) = self.trace.as_deref_mut() {
            let _ = write!(t, "{} t{} {}", self.cycle, tile, phase);
            if !inputs.is_empty() {
                let _ = write!(t, " {inputs}");
            }
            if !self.wb_text.is_empty() {
                let _ = write!(t, " wb={}", self.wb_text);
            }
            if !self.ovf_text.is_empty() {
                let _ = write!(t, " ovf={}", self.ovf_text);
            }
            if !self.reg_text.is_empty() {
                t.push(' ');
                t.push_str(&self.reg_text);
                self.reg_text.clear();
            }
            t.push('\n');
            self.wb_text.clear();
            self.ovf_text.clear();
        }
        self.cycle += 1;
    }
}

fn join(vals: impl Iterator<Item = Option<i64>>) -> String {
    let mut s = String::new();
    for (i, v) in vals.enumerate() {
        if i > 0 {
            s.push(',');
        }
        match v {
            Some(v) => {
                let _ = write!(s, "{v}");
            }
            None => s.push('.'),
        }
    }
    s
}

/// Register-trace fields of one cycle: ` a=` (activation registers), `w=`
/// (weight registers), `p=` (psum/accumulator registers), each `R*C` values
/// in row-major PE order.
fn reg_fields(
    a: impl Iterator<Item = i64>,
    w: impl Iterator<Item = i64>,
    p: impl Iterator<Item = i64>,
) -> String {
    format!("a={} w={} p={}", join(a.map(Some)), join(w.map(Some)), join(p.map(Some)))
}

/// The register-trace fields of a stationary array (`ws`: the weights are
/// stationary, the activations move; `is`: the other way round).
fn stat_regs<T: Lane>(ws: bool, st: &[T::In], mv: &[T::In], p: &[T]) -> String {
    let st = st.iter().map(|&v| T::in_to_i64(v));
    let mv = mv.iter().map(|&v| T::in_to_i64(v));
    let p = p.iter().map(|&v| v.to_i64());
    if ws {
        reg_fields(mv, st, p)
    } else {
        reg_fields(st, mv, p)
    }
}

pub(crate) fn run(cfg: &ArrayConfig, a: &Matrix, w: &Matrix, trace: Option<&mut String>) -> ArrayOutput {
    if trace.is_none() && cfg.dataflow != Dataflow::Os {
        // The untraced stationary path, collected whole (delivered in
        // chunks, so its own buffer stays small when the GEMM allows it).
        let (m, n) = (a.rows(), w.cols());
        let (mut acc, mut exact) = (Vec::with_capacity(m * n), Vec::with_capacity(m * n));
        let stats = run_chunked(cfg, a, w, None, m.clamp(1, 4096), &mut |r0, ac, ex| {
            // Chunks arrive in row order, each starting where the last ended.
            debug_assert_eq!(r0 * n, acc.len());
            acc.extend_from_slice(ac);
            exact.extend_from_slice(ex);
            Ok(())
        })
        .expect("the collecting sink does not fail");
        return ArrayOutput { m, n, acc, exact, stats };
    }
    run_traced(cfg, a, w, trace, false)
}

/// The engine's state around the PE registers. `keep`: allocate the
/// row-major `M x N` psum buffer (the traced and `os` paths).
fn new_buffer<'t>(
    cfg: &ArrayConfig,
    (m, k, n): (usize, usize, usize),
    trace: Option<&'t mut String>,
    regs: bool,
    keep: bool,
) -> Buffer<'t> {
    let mut buf = Buffer {
        cfg: *cfg,
        n,
        b: if keep { vec![0; m * n] } else { Vec::new() },
        // The exact shadow of the buffer is only needed when bits are dropped.
        be: if keep && cfg.rounder.k() != 0 { vec![0; m * n] } else { Vec::new() },
        ex: if keep { vec![0; m * n] } else { Vec::new() },
        tally: Tally::default(),
        h: centre(&cfg.rounder),
        cycle: 0,
        cand: None,
        regs: regs && trace.is_some(),
        trace,
        wb_text: String::new(),
        ovf_text: String::new(),
        reg_text: String::new(),
        timer: crate::memory::Timer::new(cfg.layout(), m, k, n),
    };
    if let Some(t) = buf.trace.as_deref_mut() {
        let _ = writeln!(
            t,
            "# bitmac trace v1 dataflow={} rows={} cols={} M={m} K={k} N={n} P={} overflow={} d={}",
            cfg.dataflow,
            cfg.rows,
            cfg.cols,
            cfg.acc.bits,
            cfg.acc.mode,
            cfg.rounder.k()
        );
    }
    buf
}

/// The operands of a stationary dataflow as the PE array sees them: the
/// stationary value of K index `kk`, column index `j` (`ws`: `w[kk][j]`,
/// `is`: `a[j][kk]`) and the moving value of stream item `s`, K index `kk`
/// (`ws`: `a[s][kk]`, `is`: `w[kk][s]`). The one place the stationary paths
/// (traced and streamed) read the operand matrices' data.
#[derive(Clone, Copy)]
struct Operands<'m> {
    /// Stationary: `st[kk * st_k + j * st_j]` (in the matrix's storage
    /// width, `Matrix::codes`).
    st: Codes<'m>,
    st_k: usize,
    st_j: usize,
    /// Moving: `mv[s * mv_s + kk * mv_k]`.
    mv: Codes<'m>,
    mv_s: usize,
    mv_k: usize,
    /// Stream length (`M` in `ws`, `N` in `is`) and the stationary
    /// operand's column count (`N` in `ws`, `M` in `is`).
    stream: usize,
    cdim: usize,
    k: usize,
}

impl<'m> Operands<'m> {
    fn new(ws: bool, a: &'m Matrix, w: &'m Matrix) -> Operands<'m> {
        let (m, k, n) = (a.rows(), a.cols(), w.cols());
        if ws {
            Operands {
                st: w.codes(),
                st_k: n,
                st_j: 1,
                mv: a.codes(),
                mv_s: k,
                mv_k: 1,
                stream: m,
                cdim: n,
                k,
            }
        } else {
            Operands {
                st: a.codes(),
                st_k: 1,
                st_j: k,
                mv: w.codes(),
                mv_s: 1,
                mv_k: n,
                stream: n,
                cdim: m,
                k,
            }
        }
    }

    #[inline(always)]
    fn stationary(&self, kk: usize, j: usize) -> i64 {
        self.st.at(kk * self.st_k + j * self.st_j) as i64
    }

    #[inline(always)]
    fn moving(&self, s: usize, kk: usize) -> i64 {
        self.mv.at(s * self.mv_s + kk * self.mv_k) as i64
    }

    /// The left-edge inputs of stream cycle `q` of the fold starting at K
    /// index `k0` with `ru` used rows: row `r < ru` receives item `q - r`
    /// (0 for a bubble: `q < r` or `q - r >= stream`), rows `>= ru` 0.
    #[inline(always)]
    fn edge<I: Copy + Default>(
        &self,
        q: usize,
        k0: usize,
        ru: usize,
        conv: impl Fn(i64) -> I,
        edge: &mut [I],
    ) {
        if q + 1 >= ru && q < self.stream {
            // Every used row has an item this cycle: one strided walk.
            let step = self.mv_k.wrapping_sub(self.mv_s);
            self.mv.gather(q * self.mv_s + k0 * self.mv_k, step, &mut edge[..ru], |v| conv(v as i64));
        } else {
            for (r, e) in edge[..ru].iter_mut().enumerate() {
                *e = if q >= r && q - r < self.stream {
                    conv(self.moving(q - r, k0 + r))
                } else {
                    I::default()
                };
            }
        }
        edge[ru..].fill(I::default());
    }

    /// The largest `|value|` of the moving and of the stationary operand.
    fn max_abs(&self) -> (u64, u64) {
        (self.mv.max_abs() as u64, self.st.max_abs() as u64)
    }

    /// The chain bound: `max|moving| * max over folds f (R K values each)
    /// and columns j of sum_{kk in f} |stationary(kk, j)|`. Every psum
    /// register value of a column chain is a prefix of such a fold's sum of
    /// products, so it is at most this in magnitude.
    fn chain_bound(&self, rows: usize, mvmax: u64) -> u64 {
        let mut l1max = 0u64;
        for k0 in (0..self.k).step_by(rows) {
            for j in 0..self.cdim {
                let l1: u64 =
                    (k0..self.k.min(k0 + rows)).map(|kk| self.stationary(kk, j).unsigned_abs()).sum();
                l1max = l1max.max(l1);
            }
        }
        mvmax.saturating_mul(l1max)
    }
}

/// Whether the stationary kernels may use `i32` lanes: operands fit i16,
/// every product and every column chain of R products fits i32, and P <= 31
/// (or P = 32 WRAP).
fn fits32(cfg: &ArrayConfig, a: &Matrix, w: &Matrix) -> bool {
    let (amax, wmax) = Operands::new(true, a, w).max_abs();
    fits32_max(cfg, amax, wmax)
}

/// [`fits32`] from the operands' largest magnitudes.
fn fits32_max(cfg: &ArrayConfig, amax: u64, wmax: u64) -> bool {
    let prod = amax * wmax;
    let bits = cfg.acc.bits;
    amax <= i16::MAX as u64
        && wmax <= i16::MAX as u64
        && prod <= 1 << 30
        && (cfg.rows as u64) * prod < 1 << 31
        && (bits <= 31 || (bits == 32 && cfg.acc.mode == crate::numerics::OverflowMode::Wrap))
}

fn finish(cfg: &ArrayConfig, buf: Buffer, (m, k, n): (usize, usize, usize)) -> (Stats, Vec<i64>, Vec<i64>) {
    let cycles = buf.cycle;
    let stalls = buf.timer.stall_cycles();
    let mut stats = buf.tally.into_stats(cfg.rounder.k(), (m * k * n) as u64, cycles);
    stats.stall_cycles = cfg.mem.enabled.then_some(stalls);
    (stats, buf.b, buf.ex)
}

/// [`run`] delivering the outputs to `sink` in row chunks (increasing row
/// order, at most `chunk_rows` rows each). Without a trace the stationary
/// dataflows run the streamed path (`cycle_stream.rs`: rows retired as they
/// complete); with a trace, and for `os`, the GEMM runs whole and is
/// delivered afterwards. Values and statistics are the same either way.
pub(crate) fn run_chunked(
    cfg: &ArrayConfig,
    a: &Matrix,
    w: &Matrix,
    trace: Option<&mut String>,
    chunk_rows: usize,
    sink: &mut stream::Sink,
) -> crate::error::Result<Stats> {
    let (m, k, n) = (a.rows(), a.cols(), w.cols());
    let chunk = chunk_rows.max(1);
    if trace.is_some() || cfg.dataflow == Dataflow::Os {
        let out = run_traced(cfg, a, w, trace, false);
        let step = chunk.saturating_mul(n);
        for (i, (ac, ex)) in out.acc.chunks(step).zip(out.exact.chunks(step)).enumerate() {
            sink(i * chunk, ac, ex)?;
        }
        return Ok(out.stats);
    }
    let mut buf = new_buffer(cfg, (m, k, n), None, false, false);
    let ops = Operands::new(cfg.dataflow == Dataflow::Ws, a, w);
    let (mvmax, stmax) = ops.max_abs();
    if fits32_max(cfg, mvmax, stmax) {
        let kern = stream_kernel(cfg, &ops, mvmax, stmax);
        stream_mode::<i32>(cfg, a, w, &mut buf, chunk, sink, kern)?;
    } else {
        stream_mode::<i64>(cfg, a, w, &mut buf, chunk, sink, Kern::General)?;
    }
    Ok(finish(cfg, buf, (m, k, n)).0)
}

/// The streamed path's PE-array kernel, given `i32` lanes
/// ([`fits32_max`] holds; `mvmax`, `stmax`: the largest `|value|` of the
/// moving and the stationary operand). [`Kern::Bounded`] when the chain
/// bound ([`Operands::chain_bound`]) is at most `2^(P-1) - 1`: every psum
/// register value is a prefix of a fold's column chain (a bubble or an
/// unused row or column adds 0), so it lies in `[-(2^(P-1) - 1), 2^(P-1) -
/// 1]`, which every overflow mode stores unchanged (`SAT_SYM` included): no
/// PE adder overflows in any cycle, the stored values are the exact ones
/// (the shadow never starts) and the array's overflow count is 0. The
/// psum-buffer adder is still evaluated per writeback. Else
/// [`Kern::General`].
fn stream_kernel(cfg: &ArrayConfig, ops: &Operands, mvmax: u64, stmax: u64) -> Kern {
    if ops.chain_bound(cfg.rows, mvmax) > cfg.acc.max as u64 {
        return Kern::General;
    }
    Kern::Bounded { p16: mvmax * stmax <= i16::MAX as u64 }
}

fn stream_mode<T: Lane>(
    cfg: &ArrayConfig,
    a: &Matrix,
    w: &Matrix,
    buf: &mut Buffer,
    chunk: usize,
    sink: &mut stream::Sink,
    kern: Kern,
) -> crate::error::Result<()> {
    match mode_code(cfg.acc.mode) {
        WRAP => stream_simd::<T, WRAP>(cfg, a, w, buf, chunk, sink, kern),
        SAT => stream_simd::<T, SAT>(cfg, a, w, buf, chunk, sink, kern),
        SATZ => stream_simd::<T, SATZ>(cfg, a, w, buf, chunk, sink, kern),
        _ => stream_simd::<T, SATS>(cfg, a, w, buf, chunk, sink, kern),
    }
}

/// [`stream::stream_m`] at the config's SIMD level.
#[allow(unsafe_code)]
fn stream_simd<T: Lane, const MODE: u8>(
    cfg: &ArrayConfig,
    a: &Matrix,
    w: &Matrix,
    buf: &mut Buffer,
    chunk: usize,
    sink: &mut stream::Sink,
    kern: Kern,
) -> crate::error::Result<()> {
    match cfg.simd {
        // SAFETY: `cfg.simd` never exceeds `Simd::detect()` (set by
        // `ArrayConfig::from_hw` or capped by `with_simd`), so the CPU has
        // every feature the wrapper enables.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { stream_avx512::<T, MODE>(cfg, a, w, buf, chunk, sink, kern) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { stream_avx2::<T, MODE>(cfg, a, w, buf, chunk, sink, kern) },
        _ => stream::stream_m::<T, MODE>(cfg, a, w, buf, chunk, sink, kern),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn stream_avx2<T: Lane, const MODE: u8>(
    cfg: &ArrayConfig,
    a: &Matrix,
    w: &Matrix,
    buf: &mut Buffer,
    chunk: usize,
    sink: &mut stream::Sink,
    kern: Kern,
) -> crate::error::Result<()> {
    stream::stream_m::<T, MODE>(cfg, a, w, buf, chunk, sink, kern)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn stream_avx512<T: Lane, const MODE: u8>(
    cfg: &ArrayConfig,
    a: &Matrix,
    w: &Matrix,
    buf: &mut Buffer,
    chunk: usize,
    sink: &mut stream::Sink,
    kern: Kern,
) -> crate::error::Result<()> {
    stream::stream_m::<T, MODE>(cfg, a, w, buf, chunk, sink, kern)
}

/// [`run`], optionally with the register trace appended to every trace line
/// (`regs`, needs `trace`). This is the reference path: every register,
/// tag and pending flag stepped as the trace reports them.
pub(crate) fn run_traced(
    cfg: &ArrayConfig,
    a: &Matrix,
    w: &Matrix,
    trace: Option<&mut String>,
    regs: bool,
) -> ArrayOutput {
    let (m, k, n) = (a.rows(), a.cols(), w.cols());
    let mut buf = new_buffer(cfg, (m, k, n), trace, regs, true);
    match cfg.dataflow {
        Dataflow::Ws | Dataflow::Is => {
            if fits32(cfg, a, w) {
                run_stationary::<i32>(cfg, a, w, &mut buf)
            } else {
                run_stationary::<i64>(cfg, a, w, &mut buf)
            }
        }
        Dataflow::Os => run_os(cfg, a, w, &mut buf),
    }
    let (stats, acc, exact) = finish(cfg, buf, (m, k, n));
    ArrayOutput { m, n, acc, exact, stats }
}

/// One row of PEs for one cycle. `an` already holds the activations the
/// row uses this cycle (the edge value at column 0, then the left
/// neighbours' registers); psum and exact shadow come from the row above
/// (`TOP`: row 0, whose column input is 0). Writes the next psum and
/// shadow registers; returns the number of overflowing PEs.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn mac_row<T: Lane, const MODE: u8, const TOP: bool, const TRACK: bool>(
    acc: &Acc,
    wrow: &[T::In],
    an: &[T::In],
    pup: &[T],
    eup: &[T],
    pn: &mut [T],
    en: &mut [T],
    or: &mut T,
) -> u64 {
    let c = wrow.len();
    let (an, pup, eup, pn, en) = (&an[..c], &pup[..c], &eup[..c], &mut pn[..c], &mut en[..c]);
    let mut cnt = 0u32;
    let mut orv = T::default();
    for x in 0..c {
        let prod = T::prod(wrow[x], an[x]);
        let (pin, ein) = if TOP { (T::default(), T::default()) } else { (pup[x], eup[x]) };
        let (ps, of) = T::narrow_add::<MODE>(acc, pin, prod);
        if TRACK {
            let ev = ein.add(prod);
            orv = orv.or(ev.mag::<MODE>());
            en[x] = ev;
        } else {
            // No overflow so far: the stored value is the exact one (if
            // this cycle overflows, the caller discards this pass).
            orv = orv.or(ps.mag::<MODE>());
        }
        pn[x] = ps;
        cnt += of as u32;
    }
    *or = or.or(orv);
    cnt as u64
}

/// One cycle of the PE array with the exact shadow started lazily. Until
/// the first overflow every stored value is exact, so the cycle runs without
/// the shadow; if it overflows, the shadow starts from the (still exact)
/// current registers (`ereg = preg`, `*shadow` set) and the cycle is redone
/// with it. Returns the overflow count and the first overflowing (row, col)
/// of the cycle that counts, and ORs its narrowed values into `or`. The one
/// cycle step of the traced and the streamed (`cycle_stream`) paths.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn mac_cycle<T: Lane, const MODE: u8>(
    acc: &Acc,
    rr: usize,
    cc: usize,
    edge: &[T::In],
    wreg: &[T::In],
    areg: &[T::In],
    preg: &[T],
    ereg: &mut [T],
    anext: &mut [T::In],
    pnext: &mut [T],
    enext: &mut [T],
    shadow: &mut bool,
    or: &mut T,
) -> (u64, Option<(usize, usize)>) {
    let mut cyc_or = T::default();
    let mut res = if *shadow {
        mac_array::<T, MODE, true>(
            acc,
            rr,
            cc,
            edge,
            wreg,
            areg,
            preg,
            ereg,
            anext,
            pnext,
            enext,
            &mut cyc_or,
        )
    } else {
        mac_array::<T, MODE, false>(
            acc,
            rr,
            cc,
            edge,
            wreg,
            areg,
            preg,
            ereg,
            anext,
            pnext,
            enext,
            &mut cyc_or,
        )
    };
    if !*shadow && res.0 > 0 {
        *shadow = true;
        ereg.copy_from_slice(preg);
        cyc_or = T::default();
        res = mac_array::<T, MODE, true>(
            acc,
            rr,
            cc,
            edge,
            wreg,
            areg,
            preg,
            ereg,
            anext,
            pnext,
            enext,
            &mut cyc_or,
        );
    }
    *or = or.or(cyc_or);
    res
}

/// All rows of a stationary array for one cycle (mode fixed at compile
/// time). Returns the overflow count and the first overflowing (row, col).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn mac_array<T: Lane, const MODE: u8, const TRACK: bool>(
    acc: &Acc,
    rr: usize,
    cc: usize,
    edge: &[T::In],
    wreg: &[T::In],
    areg: &[T::In],
    preg: &[T],
    ereg: &[T],
    anext: &mut [T::In],
    pnext: &mut [T],
    enext: &mut [T],
    or: &mut T,
) -> (u64, Option<(usize, usize)>) {
    // Activations move one PE to the right: one flat shift of the whole
    // array, then the left edge of every row. Every row's psum input is the
    // row above's *current* register, so all rows below the top one form a
    // single flat loop (row r reads index i - C).
    let sz = rr * cc;
    anext[1..sz].copy_from_slice(&areg[..sz - 1]);
    for r in 0..rr {
        anext[r * cc] = edge[r];
    }
    let mut total = mac_row::<T, MODE, true, TRACK>(
        acc,
        &wreg[..cc],
        &anext[..cc],
        &preg[..cc],
        &ereg[..cc],
        &mut pnext[..cc],
        &mut enext[..cc],
        or,
    );
    if rr > 1 {
        total += mac_row::<T, MODE, false, TRACK>(
            acc,
            &wreg[cc..],
            &anext[cc..],
            &preg[..sz - cc],
            &ereg[..sz - cc],
            &mut pnext[cc..],
            &mut enext[cc..],
            or,
        );
    }
    let mut first = None;
    if total > 0 {
        // Rare: find the first overflowing PE (row-major order).
        let i = (0..sz)
            .find(|&i| {
                let pin = if i < cc { T::default() } else { preg[i - cc] };
                T::narrow_add::<MODE>(acc, pin, T::prod(wreg[i], anext[i])).1
            })
            .expect("an overflow was counted");
        first = Some((i / cc, i % cc));
    }
    (total, first)
}

/// The bottom row of a stationary array as the psum buffer sees it.
struct DrainRow<'a, T> {
    ws: bool,
    c0: usize,
    p: &'a [T],
    e: &'a [T],
    tag: &'a [i64],
}

impl<T> DrainRow<'_, T> {
    /// The output `(m, n)` of column `c`'s pending column sum.
    #[inline(always)]
    fn out(&self, c: usize) -> (usize, usize) {
        let s = self.tag[c] as usize;
        if self.ws {
            (s, self.c0 + c)
        } else {
            (self.c0 + c, s)
        }
    }
}

/// Weight- and input-stationary dataflows (identical structure: a
/// stationary operand preloaded into the PEs, a moving operand streamed in
/// from the left, column sums leaving at the bottom).
fn run_stationary<T: Lane>(cfg: &ArrayConfig, a: &Matrix, w: &Matrix, buf: &mut Buffer) {
    match mode_code(cfg.acc.mode) {
        WRAP => run_stationary_simd::<T, WRAP>(cfg, a, w, buf),
        SAT => run_stationary_simd::<T, SAT>(cfg, a, w, buf),
        SATZ => run_stationary_simd::<T, SATZ>(cfg, a, w, buf),
        _ => run_stationary_simd::<T, SATS>(cfg, a, w, buf),
    }
}

/// [`run_stationary_m`] at the config's SIMD level.
#[allow(unsafe_code)]
fn run_stationary_simd<T: Lane, const MODE: u8>(cfg: &ArrayConfig, a: &Matrix, w: &Matrix, buf: &mut Buffer) {
    match cfg.simd {
        // SAFETY: `cfg.simd` never exceeds `Simd::detect()` (set by
        // `ArrayConfig::from_hw` or capped by `with_simd`), so the CPU has
        // every feature the wrapper enables.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { stationary_avx512::<T, MODE>(cfg, a, w, buf) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { stationary_avx2::<T, MODE>(cfg, a, w, buf) },
        _ => run_stationary_m::<T, MODE>(cfg, a, w, buf),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn stationary_avx2<T: Lane, const MODE: u8>(cfg: &ArrayConfig, a: &Matrix, w: &Matrix, buf: &mut Buffer) {
    run_stationary_m::<T, MODE>(cfg, a, w, buf)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn stationary_avx512<T: Lane, const MODE: u8>(cfg: &ArrayConfig, a: &Matrix, w: &Matrix, buf: &mut Buffer) {
    run_stationary_m::<T, MODE>(cfg, a, w, buf)
}

/// The stationary dataflows with the overflow mode fixed at compile time
/// (inlined into each SIMD wrapper).
#[inline(always)]
fn run_stationary_m<T: Lane, const MODE: u8>(cfg: &ArrayConfig, a: &Matrix, w: &Matrix, buf: &mut Buffer) {
    let (rr, cc) = (cfg.rows, cfg.cols);
    let k = a.cols();
    let ws = cfg.dataflow == Dataflow::Ws;
    let ops = Operands::new(ws, a, w);
    let (cdim, stream) = (ops.cdim, ops.stream);
    let stationary = |kk: usize, j: usize| -> T::In { T::in_from_i64(ops.stationary(kk, j)) };
    let sz = rr * cc;
    let z = T::default();
    let zi = T::In::default();
    let (mut wreg, mut wnext) = (vec![zi; sz], vec![zi; sz]);
    let (mut areg, mut anext) = (vec![zi; sz], vec![zi; sz]);
    let (mut preg, mut pnext) = (vec![z; sz], vec![z; sz]);
    let (mut ereg, mut enext) = (vec![z; sz], vec![z; sz]);
    let mut or = z;
    // Stream-item tag of each activation register in the bottom row (-1:
    // bubble); a committed bottom psum belongs to the item of its tag.
    let (mut tag, mut tagn) = (vec![-1i64; cc], vec![-1i64; cc]);
    let mut pending = vec![false; cc];
    let mut pend_c0 = 0usize;
    let mut edge = vec![zi; rr];
    let tracing = buf.trace.is_some();
    let mut tile = 0usize;
    // Whether the exact shadow registers are live (from the first overflow on).
    let mut shadow = false;

    // Consume the bottom-row outputs committed in the previous cycle.
    let drain = |buf: &mut Buffer,
                 pending: &mut [bool],
                 preg: &[T],
                 ereg: &[T],
                 tag: &[i64],
                 c0: usize,
                 shadow: bool| {
        let src = if shadow { ereg } else { preg };
        let bottom = (rr - 1) * cc;
        let wide = DrainRow { ws, c0, p: &preg[bottom..], e: &src[bottom..], tag };
        for c in 0..cc {
            if pending[c] {
                pending[c] = false;
                let (mm, nn) = wide.out(c);
                buf.writeback(c, mm, nn, wide.p[c].to_i64(), wide.e[c].to_i64());
            }
        }
    };

    for c0 in (0..cdim).step_by(cc) {
        let cu = cc.min(cdim - c0);
        for k0 in (0..k).step_by(rr) {
            let ru = rr.min(k - k0);
            // The operand ready gate: stall (every PE register holds; the
            // previous tile's last writeback happens in the first stall
            // cycle) until the memory system has this tile's operands.
            let g = Geometry { fold: k0 / rr, k0, k1: k0 + ru, r0: k0, ru, c0, cu };
            let gate = buf.timer.start(&g, buf.cycle);
            while buf.cycle < gate.start {
                drain(buf, &mut pending, &preg, &ereg, &tag, pend_c0, shadow);
                if buf.regs {
                    buf.reg_text = stat_regs::<T>(ws, &wreg, &areg, &preg);
                }
                buf.end_cycle(tile, "stall", "");
            }
            // Double-buffered weights (docs/datapath.md §5a): the preload
            // ran in the shadow registers during the previous tile; they
            // are swapped in at the tile's first cycle.
            if gate.pre == 0 {
                for r in 0..rr {
                    for c in 0..cc {
                        wreg[r * cc + c] = if r < ru && c < cu { stationary(k0 + r, c0 + c) } else { zi };
                    }
                }
            }
            // Preload: R cycles; the stationary row for array row R-1-q
            // enters at the top and every row shifts down by one.
            for q in 0..gate.pre as usize {
                drain(buf, &mut pending, &preg, &ereg, &tag, pend_c0, shadow);
                let src = rr - 1 - q;
                for c in 0..cc {
                    wnext[c] = if src < ru && c < cu { stationary(k0 + src, c0 + c) } else { zi };
                }
                wnext[cc..].copy_from_slice(&wreg[..sz - cc]);
                std::mem::swap(&mut wreg, &mut wnext);
                let ins = if tracing {
                    format!("w[{src}]={}", join(wreg[..cc].iter().map(|&v| Some(T::in_to_i64(v)))))
                } else {
                    String::new()
                };
                if buf.regs {
                    buf.reg_text = stat_regs::<T>(ws, &wreg, &areg, &preg);
                }
                buf.end_cycle(tile, "load", &ins);
            }
            // Stream. (Without a preload, double-buffered, the previous
            // tile's last column sums are drained in the first stream cycle,
            // still with that tile's column offset.)
            let mut done = 0usize;
            let mut q = 0usize;
            while done < stream * cu {
                drain(buf, &mut pending, &preg, &ereg, &tag, pend_c0, shadow);
                pend_c0 = c0;
                ops.edge(q, k0, ru, T::in_from_i64, &mut edge);
                // The exact shadow starts lazily, at the first overflow.
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
                if cnt > 0 {
                    if tracing {
                        // Report every overflowing PE.
                        for r in 0..rr {
                            for c in 0..cc {
                                let pin = if r == 0 { 0 } else { preg[(r - 1) * cc + c].to_i64() };
                                if cfg
                                    .acc
                                    .add(
                                        pin,
                                        T::in_to_i64(wreg[r * cc + c]) * T::in_to_i64(anext[r * cc + c]),
                                    )
                                    .1
                                {
                                    buf.event(r, c);
                                }
                            }
                        }
                    } else if let Some((r, c)) = first {
                        buf.event(r, c);
                    }
                }
                tagn[0] = if q >= rr - 1 && q - (rr - 1) < stream { (q - (rr - 1)) as i64 } else { -1 };
                tagn[1..].copy_from_slice(&tag[..cc - 1]);
                // Commit.
                std::mem::swap(&mut areg, &mut anext);
                std::mem::swap(&mut preg, &mut pnext);
                std::mem::swap(&mut ereg, &mut enext);
                std::mem::swap(&mut tag, &mut tagn);
                for c in 0..cu {
                    if tag[c] >= 0 {
                        pending[c] = true;
                        done += 1;
                    }
                }
                let ins = if tracing {
                    let rows = (0..rr)
                        .map(|r| (r < ru && q >= r && q - r < stream).then_some(T::in_to_i64(edge[r])));
                    format!("in={}", join(rows))
                } else {
                    String::new()
                };
                if buf.regs {
                    buf.reg_text = stat_regs::<T>(ws, &wreg, &areg, &preg);
                }
                buf.end_cycle(tile, "mac", &ins);
                q += 1;
            }
            tile += 1;
        }
    }
    buf.tally.width_or |= or.to_i64() as u64;
    // The last column sums are written back one cycle after they leave.
    if pending.iter().any(|&p| p) {
        drain(buf, &mut pending, &preg, &ereg, &tag, pend_c0, shadow);
        if buf.regs {
            buf.reg_text = stat_regs::<T>(ws, &wreg, &areg, &preg);
        }
        buf.end_cycle(tile - 1, "wb", "");
    }
}

/// Output-stationary dataflow: activations enter from the left, weights
/// from the top, each PE accumulates its own output over all of K, then the
/// array drains row by row through the bottom.
fn run_os(cfg: &ArrayConfig, a: &Matrix, w: &Matrix, buf: &mut Buffer) {
    let (rr, cc) = (cfg.rows, cfg.cols);
    let (m, k, n) = (a.rows(), a.cols(), w.cols());
    let sz = rr * cc;
    let (mut areg, mut anext) = (vec![0i64; sz], vec![0i64; sz]);
    let (mut wreg, mut wnext) = (vec![0i64; sz], vec![0i64; sz]);
    let (mut preg, mut pnext) = (vec![0i64; sz], vec![0i64; sz]);
    let (mut ereg, mut enext) = (vec![0i64; sz], vec![0i64; sz]);
    // K-index tag of the activation registers of the last used row.
    let (mut tag, mut tagn) = (vec![-1i64; cc], vec![-1i64; cc]);
    let mut left = vec![0i64; rr];
    let mut top = vec![0i64; cc];
    let tracing = buf.trace.is_some();
    let mut tile = 0usize;
    for r0 in (0..m).step_by(rr) {
        let ru = rr.min(m - r0);
        for c0 in (0..n).step_by(cc) {
            let cu = cc.min(n - c0);
            // The operand ready gate (docs/memory.md): stall, every
            // register holding (all 0 after the previous drain).
            let g = Geometry { fold: 0, k0: 0, k1: k, r0, ru, c0, cu };
            let gate = buf.timer.start(&g, buf.cycle);
            while buf.cycle < gate.start {
                if buf.regs {
                    buf.reg_text = reg_fields((0..sz).map(|_| 0), (0..sz).map(|_| 0), (0..sz).map(|_| 0));
                }
                buf.end_cycle(tile, "stall", "");
            }
            // Accumulators start the tile at 0; the pipelines are empty.
            for v in [&mut areg, &mut wreg, &mut preg, &mut ereg] {
                v.fill(0);
            }
            tag.fill(-1);
            let mut q = 0usize;
            loop {
                let valid_k = |i: usize| q >= i && q - i < k;
                for (r, l) in left.iter_mut().enumerate() {
                    *l = if r < ru && valid_k(r) { a.get(r0 + r, q - r) as i64 } else { 0 };
                }
                for (c, t) in top.iter_mut().enumerate() {
                    *t = if c < cu && valid_k(c) { w.get(q - c, c0 + c) as i64 } else { 0 };
                }
                let mut first: Option<(usize, usize)> = None;
                for r in 0..rr {
                    for c in 0..cc {
                        let i = r * cc + c;
                        let ain = if c == 0 { left[r] } else { areg[i - 1] };
                        let win = if r == 0 { top[c] } else { wreg[i - cc] };
                        let prod = ain * win;
                        let (ps, of) = cfg.acc.add(preg[i], prod);
                        let ev = ereg[i] + prod;
                        buf.tally.width_or |= cfg.acc.mag(ev);
                        anext[i] = ain;
                        wnext[i] = win;
                        pnext[i] = ps;
                        enext[i] = ev;
                        if of {
                            buf.tally.ovf_array += 1;
                            if first.is_none() {
                                first = Some((r, c));
                            }
                            if tracing {
                                buf.event(r, c);
                            }
                        }
                    }
                }
                if let (Some((r, c)), false) = (first, tracing) {
                    buf.event(r, c);
                }
                tagn[0] = if valid_k(ru - 1) { (q - (ru - 1)) as i64 } else { -1 };
                tagn[1..].copy_from_slice(&tag[..cc - 1]);
                std::mem::swap(&mut areg, &mut anext);
                std::mem::swap(&mut wreg, &mut wnext);
                std::mem::swap(&mut preg, &mut pnext);
                std::mem::swap(&mut ereg, &mut enext);
                std::mem::swap(&mut tag, &mut tagn);
                let ins = if tracing {
                    format!(
                        "in={} top={}",
                        join((0..rr).map(|r| (r < ru && valid_k(r)).then_some(left[r]))),
                        join((0..cc).map(|c| (c < cu && valid_k(c)).then_some(top[c])))
                    )
                } else {
                    String::new()
                };
                if buf.regs {
                    buf.reg_text =
                        reg_fields(areg.iter().copied(), wreg.iter().copied(), preg.iter().copied());
                }
                buf.end_cycle(tile, "mac", &ins);
                q += 1;
                if tag[cu - 1] == (k - 1) as i64 {
                    break;
                }
            }
            // Drain: at drain cycle q the results of row R-1-q leave the
            // bottom of every column and are written back.
            for q in 0..rr {
                let r = rr - 1 - q;
                if r < ru {
                    for c in 0..cu {
                        let i = r * cc + c;
                        buf.writeback(c, r0 + r, c0 + c, preg[i], ereg[i]);
                    }
                }
                let ins = if tracing { format!("row={r}") } else { String::new() };
                if buf.regs {
                    // This engine keeps its registers through the drain and
                    // reads row R-1-q; the hardware of docs/datapath.md §5
                    // shifts the results down (0 entering row 0) and clears
                    // the operand pipelines, which is what is reported.
                    let p = (0..sz).map(|i| if i / cc > q { preg[i - (q + 1) * cc] } else { 0 });
                    buf.reg_text = reg_fields((0..sz).map(|_| 0), (0..sz).map(|_| 0), p);
                }
                buf.end_cycle(tile, "drain", &ins);
            }
            tile += 1;
        }
    }
}
