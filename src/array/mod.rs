//! The systolic MAC array: GEMM `A (M x K activations) x W (K x N weights)`
//! on an `R x C` array with a signed P-bit accumulator narrowed at every
//! adder, a partial-sum writeback path (drop d LSBs with a rounding mode and
//! centre offset, re-accumulate in a P-bit buffer) and bitmac's own
//! cycle-exact timing.
//!
//! Normative semantics: `docs/datapath.md`. Two engines implement them and
//! must agree bit for bit (values, statistics, cycle count):
//! - [`cycle`]: steps every PE register every cycle (two-phase), with an
//!   optional per-cycle trace; derives the timing by simulation.
//! - [`fast`]: the same numerics and statistics without stepping cycles
//!   (cache-blocked, vectorizable, parallel over column blocks); the timing
//!   comes from the closed form [`compute_cycles`] and the schedule.

pub mod cycle;
pub mod fast;
pub mod stats;

use crate::error::{Error, Result};
pub use crate::hw::Dataflow;
use crate::hw::HwConfig;
use crate::numerics::{IntFormat, OverflowMode, RoundMode, Rounder};
pub use fast::PreparedWeights;
pub use stats::{OverflowEvent, ResidueHistogram, Stats};
use std::fmt;
use std::str::FromStr;

/// Which engine runs a GEMM. Both give identical results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// The functional engine (default).
    #[default]
    Fast,
    /// The cycle-level engine (slower; can trace).
    Cycle,
}

impl Engine {
    /// The CLI name: `fast` or `cycle`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Fast => "fast",
            Engine::Cycle => "cycle",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Engine {
    type Err = Error;
    fn from_str(s: &str) -> Result<Engine> {
        match s {
            "fast" => Ok(Engine::Fast),
            "cycle" => Ok(Engine::Cycle),
            _ => Err(Error::field("engine", format!("{s:?}"), "fast, cycle")),
        }
    }
}

/// The values of a [`Matrix`] in their storage width. Every operand format
/// is 2..=16 bits (`hw.rs`): `I16` holds every signed format and every
/// unsigned one up to 15 bits (and any data whose values fit `i16`); `I32`
/// holds the rest (`uint16` codes above 32767) and whatever a caller built
/// from `i32` ([`Matrix::new`]). The storage never changes a value: every
/// engine reads `i32` codes through [`Codes::at`] or a widening accessor,
/// so a GEMM gives the same bytes whichever width holds its operands (held
/// by `tests/array_props.rs`). An offset encoding of `uint16` in `i16` was
/// not chosen: it would change what every engine reads.
#[derive(Clone, Debug)]
pub enum Storage {
    I16(Vec<i16>),
    I32(Vec<i32>),
}

/// A borrowed view of a [`Matrix`]'s row-major values (cheap to copy).
#[derive(Clone, Copy, Debug)]
pub enum Codes<'a> {
    I16(&'a [i16]),
    I32(&'a [i32]),
}

impl<'a> Codes<'a> {
    /// Number of values.
    #[inline]
    pub fn len(self) -> usize {
        match self {
            Codes::I16(v) => v.len(),
            Codes::I32(v) => v.len(),
        }
    }
    /// True when there are no values.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
    /// Value `i` as `i32` (exact: a widening).
    #[inline(always)]
    pub fn at(self, i: usize) -> i32 {
        match self {
            Codes::I16(v) => v[i] as i32,
            Codes::I32(v) => v[i],
        }
    }
    /// `out[j] = f(value idx0 + j * step)` (indices wrap as `usize`, so a
    /// "negative" `step` works): the strided gather of the cycle engine's
    /// edge load, with the storage match outside the loop.
    #[inline(always)]
    pub fn gather<U>(self, idx0: usize, step: usize, out: &mut [U], f: impl Fn(i32) -> U) {
        let mut idx = idx0;
        match self {
            Codes::I16(v) => {
                for o in out {
                    *o = f(v[idx] as i32);
                    idx = idx.wrapping_add(step);
                }
            }
            Codes::I32(v) => {
                for o in out {
                    *o = f(v[idx]);
                    idx = idx.wrapping_add(step);
                }
            }
        }
    }
    /// The values `range`, as a view.
    #[inline]
    pub fn slice(self, range: std::ops::Range<usize>) -> Codes<'a> {
        match self {
            Codes::I16(v) => Codes::I16(&v[range]),
            Codes::I32(v) => Codes::I32(&v[range]),
        }
    }
    /// The values as `i32`: borrowed for `I32`, else one widening copy.
    pub fn to_i32(self) -> std::borrow::Cow<'a, [i32]> {
        match self {
            Codes::I16(v) => std::borrow::Cow::Owned(v.iter().map(|&x| x as i32).collect()),
            Codes::I32(v) => std::borrow::Cow::Borrowed(v),
        }
    }
    /// The values as `i32` in `buf` (reused: its length is set to
    /// `self.len()`), or borrowed for `I32`; for per-row or per-chunk loops
    /// that never widen the whole matrix.
    #[inline]
    pub fn widen<'b>(self, buf: &'b mut Vec<i32>) -> &'b [i32]
    where
        'a: 'b,
    {
        match self {
            Codes::I16(v) => {
                buf.clear();
                buf.extend(v.iter().map(|&x| x as i32));
                buf
            }
            Codes::I32(v) => v,
        }
    }
    /// The values in order, as `i32`.
    pub fn iter(self) -> impl Iterator<Item = i32> + 'a {
        let (a, b) = match self {
            Codes::I16(v) => (Some(v.iter().map(|&x| x as i32)), None),
            Codes::I32(v) => (None, Some(v.iter().copied())),
        };
        a.into_iter().flatten().chain(b.into_iter().flatten())
    }
    /// The largest magnitude `max |v|` (0 when empty); one vectorizable
    /// pass in the storage width.
    pub fn max_abs(self) -> u32 {
        // The extremes first (a min/max pass vectorizes at the baseline
        // level), then the larger magnitude.
        fn go<T: Copy + Into<i32>>(v: &[T]) -> u32 {
            let (lo, hi) = v.iter().fold((0i32, 0i32), |(lo, hi), &x| {
                let x: i32 = x.into();
                (lo.min(x), hi.max(x))
            });
            lo.unsigned_abs().max(hi.unsigned_abs())
        }
        match self {
            Codes::I16(v) => go(v),
            Codes::I32(v) => go(v),
        }
    }
    /// The smallest and largest value (`(i32::MAX, i32::MIN)` when empty).
    pub(crate) fn min_max(self) -> (i32, i32) {
        fn go<T: Copy + Into<i32>>(v: &[T]) -> (i32, i32) {
            v.iter().fold((i32::MAX, i32::MIN), |(lo, hi), &x| {
                let x: i32 = x.into();
                (lo.min(x), hi.max(x))
            })
        }
        match self {
            Codes::I16(v) => go(v),
            Codes::I32(v) => go(v),
        }
    }
}

/// A row-major integer matrix of codes, stored in native width
/// ([`Storage`]: `i16` where the values fit, else `i32`; every supported
/// code fits `i32`). Equality compares values, not storage.
#[derive(Clone, Debug)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Storage,
}

impl PartialEq for Matrix {
    fn eq(&self, o: &Matrix) -> bool {
        self.rows == o.rows
            && self.cols == o.cols
            && match (&self.data, &o.data) {
                (Storage::I16(a), Storage::I16(b)) => a == b,
                (Storage::I32(a), Storage::I32(b)) => a == b,
                _ => self.codes().iter().eq(o.codes().iter()),
            }
    }
}
impl Eq for Matrix {}

impl Matrix {
    /// A matrix; `data.len()` must be `rows * cols`, both at least 1.
    /// Stored as `i32` (no extra pass; see [`Matrix::from_storage`]).
    pub fn new(rows: usize, cols: usize, data: Vec<i32>) -> Result<Matrix> {
        Matrix::from_storage(rows, cols, Storage::I32(data))
    }

    /// A matrix stored as `i16`; `data.len()` must be `rows * cols`.
    pub fn new_i16(rows: usize, cols: usize, data: Vec<i16>) -> Result<Matrix> {
        Matrix::from_storage(rows, cols, Storage::I16(data))
    }

    /// A matrix over `data` in its storage width; `rows * cols` values,
    /// both at least 1.
    pub fn from_storage(rows: usize, cols: usize, data: Storage) -> Result<Matrix> {
        let len = match &data {
            Storage::I16(v) => v.len(),
            Storage::I32(v) => v.len(),
        };
        if rows == 0 || cols == 0 {
            return Err(Error::input(format!("matrix shape {rows}x{cols}: dimensions must be at least 1")));
        }
        if rows.checked_mul(cols) != Some(len) {
            return Err(Error::input(format!(
                "matrix shape {rows}x{cols} needs {} values, got {len}",
                rows.saturating_mul(cols),
            )));
        }
        Ok(Matrix { rows, cols, data })
    }

    /// A matrix from `i64` values, each checked against `fmt`; `what` names
    /// the operand in errors (e.g. `A.npy`). Stored as `i16` when `fmt`
    /// fits it, else `i32`.
    pub fn from_i64(rows: usize, cols: usize, data: &[i64], fmt: IntFormat, what: &str) -> Result<Matrix> {
        if let Some((i, &v)) = data.iter().enumerate().find(|(_, &v)| !fmt.contains(v as i128)) {
            return Err(Error::field(
                format!("{what}[{},{}]", i / cols.max(1), i % cols.max(1)),
                v,
                format!("{}..={} ({fmt} multiplier input)", fmt.min(), fmt.max()),
            ));
        }
        if fmt.min() >= i16::MIN as i128 && fmt.max() <= i16::MAX as i128 {
            Matrix::new_i16(rows, cols, data.iter().map(|&v| v as i16).collect())
        } else {
            Matrix::new(rows, cols, data.iter().map(|&v| v as i32).collect())
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Row-major values in their storage width.
    #[inline]
    pub fn codes(&self) -> Codes<'_> {
        match &self.data {
            Storage::I16(v) => Codes::I16(v),
            Storage::I32(v) => Codes::I32(v),
        }
    }
    /// Row-major values when stored as `i16`.
    pub fn as_i16(&self) -> Option<&[i16]> {
        match &self.data {
            Storage::I16(v) => Some(v),
            Storage::I32(_) => None,
        }
    }
    /// Row-major values when stored as `i32`.
    pub fn as_i32(&self) -> Option<&[i32]> {
        match &self.data {
            Storage::I32(v) => Some(v),
            Storage::I16(_) => None,
        }
    }
    /// Row-major values as `i32`: borrowed when stored so, else a widening
    /// copy of the whole matrix (for small operands; loops over a large
    /// one use [`Matrix::rows_i32`] or [`Codes::at`]).
    pub fn to_i32(&self) -> std::borrow::Cow<'_, [i32]> {
        self.codes().to_i32()
    }
    /// Rows `r0..r1` as `i32` (row-major), widened into `buf` unless stored
    /// as `i32`.
    pub fn rows_i32<'a>(&'a self, r0: usize, r1: usize, buf: &'a mut Vec<i32>) -> &'a [i32] {
        self.codes().slice(r0 * self.cols..r1 * self.cols).widen(buf)
    }
    /// This matrix stored as `i32`: borrowed when it is, else a widened
    /// copy. `PreparedWeights` holds W this way (its per-block loops index
    /// it; A, the large operand, is read in its own width).
    pub fn with_i32_storage(&self) -> std::borrow::Cow<'_, Matrix> {
        match &self.data {
            Storage::I32(_) => std::borrow::Cow::Borrowed(self),
            Storage::I16(v) => std::borrow::Cow::Owned(Matrix {
                rows: self.rows,
                cols: self.cols,
                data: Storage::I32(v.iter().map(|&x| x as i32).collect()),
            }),
        }
    }
    /// The largest magnitude of any value.
    pub fn max_abs(&self) -> u32 {
        self.codes().max_abs()
    }
    /// Element `(r, c)`.
    #[inline]
    pub fn get(&self, r: usize, c: usize) -> i32 {
        self.codes().at(r * self.cols + c)
    }
    /// Check every value against `fmt`, naming the operand.
    pub fn check_format(&self, fmt: IntFormat, what: &str) -> Result<()> {
        // The extremes decide it (one vectorizable pass); the scan that
        // names the first bad element runs only when one is out of range.
        let (lo, hi) = self.codes().min_max();
        if self.codes().is_empty() || (fmt.contains(lo as i128) && fmt.contains(hi as i128)) {
            return Ok(());
        }
        match self.codes().iter().position(|v| !fmt.contains(v as i128)) {
            None => Ok(()),
            Some(i) => Err(Error::field(
                format!("{what}[{},{}]", i / self.cols, i % self.cols),
                self.codes().at(i),
                format!("{}..={} ({fmt} multiplier input)", fmt.min(), fmt.max()),
            )),
        }
    }
}

/// The signed P-bit accumulator with its overflow mode, as `i64` bounds.
/// Equivalent to `numerics::Narrower` on a signed P-bit format (checked by a
/// test) but specialized for the hot loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acc {
    pub(crate) bits: u32,
    pub(crate) mode: OverflowMode,
    pub(crate) min: i64,
    pub(crate) max: i64,
}

impl Acc {
    /// A signed `bits`-bit accumulator (2..=64).
    pub fn new(bits: u32, mode: OverflowMode) -> Acc {
        debug_assert!((2..=64).contains(&bits));
        let max = if bits == 64 { i64::MAX } else { (1i64 << (bits - 1)) - 1 };
        Acc { bits, mode, min: -max - 1, max }
    }

    /// `narrow_P(s + p)` for `s` a stored P-bit value and `p` any `i64` with
    /// `|p| <= 2^62` (a product, or a rounded column sum): the stored value
    /// and whether it differs from the exact sum. Exact even when `s + p`
    /// leaves `i64` (only possible for P = 64): the exact sum then has the
    /// sign of `p`, and its low 64 bits are the wrapped value.
    #[inline(always)]
    pub fn add(&self, s: i64, p: i64) -> (i64, bool) {
        let (t, of) = s.overflowing_add(p);
        match self.mode {
            OverflowMode::Wrap => {
                let sh = 64 - self.bits;
                let r = (t << sh) >> sh;
                (r, of | (r != t))
            }
            OverflowMode::Sat => {
                if of {
                    (if p > 0 { self.max } else { self.min }, true)
                } else if t > self.max {
                    (self.max, true)
                } else if t < self.min {
                    (self.min, true)
                } else {
                    (t, false)
                }
            }
            OverflowMode::SatZero => {
                if of | (t > self.max) | (t < self.min) {
                    (0, true)
                } else {
                    (t, false)
                }
            }
            OverflowMode::SatSym => {
                if of {
                    (if p > 0 { self.max } else { -self.max }, true)
                } else if t > self.max {
                    (self.max, true)
                } else if t < -self.max {
                    (-self.max, true)
                } else {
                    (t, false)
                }
            }
        }
    }

    /// The quantity whose bit length decides the width a value `v` needs in
    /// this mode (OR-able across values): `v ^ (v >> 63)` (fits signed
    /// `bitlen + 1` bits), or `|v|` for `SAT_SYM`, where the minimum itself
    /// is an overflow.
    #[inline(always)]
    pub(crate) fn mag(&self, v: i64) -> u64 {
        if self.mode == OverflowMode::SatSym {
            v.unsigned_abs()
        } else {
            (v ^ (v >> 63)) as u64
        }
    }
}

/// Overflow modes as const-generic parameters of the hot loops.
pub(crate) const WRAP: u8 = 1;
pub(crate) const SAT: u8 = 2;
pub(crate) const SATZ: u8 = 3;
pub(crate) const SATS: u8 = 4;

/// The const-generic code of a mode.
pub(crate) fn mode_code(mode: OverflowMode) -> u8 {
    match mode {
        OverflowMode::Wrap => WRAP,
        OverflowMode::Sat => SAT,
        OverflowMode::SatZero => SATZ,
        OverflowMode::SatSym => SATS,
    }
}

/// [`Acc::add`] with the mode fixed at compile time (same semantics).
#[inline(always)]
pub(crate) fn add_m<const MODE: u8>(acc: &Acc, s: i64, p: i64) -> (i64, bool) {
    let (t, of) = s.overflowing_add(p);
    match MODE {
        WRAP => {
            let sh = 64 - acc.bits;
            let r = (t << sh) >> sh;
            (r, of | (r != t))
        }
        SAT => {
            let r = if of {
                if p > 0 {
                    acc.max
                } else {
                    acc.min
                }
            } else {
                t.clamp(acc.min, acc.max)
            };
            (r, of | (r != t))
        }
        SATZ => {
            let bad = of | (t > acc.max) | (t < acc.min);
            (if bad { 0 } else { t }, bad)
        }
        _ => {
            let r = if of {
                if p > 0 {
                    acc.max
                } else {
                    -acc.max
                }
            } else {
                t.clamp(-acc.max, acc.max)
            };
            (r, of | (r != t))
        }
    }
}

/// `Acc::mag` with the mode fixed at compile time.
#[inline(always)]
pub(crate) fn mag_m<const MODE: u8>(v: i64) -> u64 {
    if MODE == SATS {
        v.unsigned_abs()
    } else {
        (v ^ (v >> 63)) as u64
    }
}

/// The smallest signed width holding every value whose `Acc::mag` OR is
/// `or`.
pub(crate) fn width_of_mag(or: u64) -> u32 {
    64 - or.leading_zeros() + 1
}

/// The instruction-set level the engines' hot loops run at, chosen at run
/// time from the CPU (`is_x86_feature_detected!`), so the default build is
/// fast without `-C target-cpu=native`. The same portable source is
/// compiled once per level (`#[target_feature]` wrappers in `fast.rs` and
/// `cycle.rs`, the only `unsafe` in bitmac); the
/// compiler vectorizes it for that level's registers. Integer results are
/// identical at every level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Simd {
    /// Baseline target features (x86-64: SSE2).
    Portable,
    /// AVX2 (256-bit integer lanes).
    Avx2,
    /// AVX-512 F + BW + VL (512-bit lanes, mask registers).
    Avx512,
}

impl Simd {
    /// The best level this CPU supports (detected once).
    pub fn detect() -> Simd {
        static LEVEL: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                {
                    return Simd::Avx512;
                }
                if is_x86_feature_detected!("avx2") {
                    return Simd::Avx2;
                }
            }
            Simd::Portable
        })
    }

    /// Every level this CPU supports, lowest first.
    pub fn available() -> Vec<Simd> {
        [Simd::Portable, Simd::Avx2, Simd::Avx512].into_iter().filter(|&l| l <= Simd::detect()).collect()
    }
}

/// Everything the engines need, derived from a validated [`HwConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayConfig {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) dataflow: Dataflow,
    pub(crate) wfmt: IntFormat,
    pub(crate) afmt: IntFormat,
    pub(crate) acc: Acc,
    pub(crate) rounder: Rounder,
    /// The instruction-set level of the engines' hot loops.
    pub(crate) simd: Simd,
    /// The memory system (`docs/memory.md`): stalls, double buffering.
    pub(crate) mem: crate::memory::MemoryConfig,
}

impl ArrayConfig {
    /// The array part of a hardware config.
    pub fn from_hw(hw: &HwConfig) -> Result<ArrayConfig> {
        let p = hw.psum();
        Ok(ArrayConfig {
            rows: hw.rows(),
            cols: hw.cols(),
            dataflow: hw.dataflow(),
            wfmt: hw.weights(),
            afmt: hw.activations(),
            acc: Acc::new(hw.acc_bits(), hw.overflow()),
            rounder: Rounder::new(p.drop_bits, p.rounding, p.offset)?,
            simd: Simd::detect(),
            mem: hw.memory(),
        })
    }

    /// What the memory model needs of this config.
    pub fn layout(&self) -> crate::memory::Layout {
        crate::memory::Layout {
            dataflow: self.dataflow,
            rows: self.rows,
            cols: self.cols,
            act_bits: self.afmt.width(),
            weight_bits: self.wfmt.width(),
            mem: self.mem,
        }
    }

    /// The same config with the hot loops compiled for `level` (capped at
    /// [`Simd::detect`]). Results do not depend on the level (every level
    /// runs the same integer code); tests and benches use this to exercise
    /// and compare each dispatched variant.
    pub fn with_simd(mut self, level: Simd) -> ArrayConfig {
        self.simd = level.min(Simd::detect());
        self
    }

    /// The level the hot loops run at.
    pub fn simd(&self) -> Simd {
        self.simd
    }

    /// Dropped LSBs d of the partial-sum writeback.
    pub fn drop_bits(&self) -> u32 {
        self.rounder.k()
    }
    /// Psum rounding mode.
    pub fn psum_rounding(&self) -> RoundMode {
        self.rounder.mode()
    }
}

/// What the array produced for one GEMM.
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayOutput {
    /// M.
    pub m: usize,
    /// N.
    pub n: usize,
    /// The final psum-buffer contents (P-bit, in units of `2^d`), row-major
    /// M x N. The accumulator value is `acc * 2^d`.
    pub acc: Vec<i64>,
    /// The exact integer GEMM `sum_k a*w` (no overflow, no rounding).
    pub exact: Vec<i64>,
    /// Datapath statistics (the output-stage fields are filled by `layers`).
    pub stats: Stats,
}

/// Limits that keep every exact intermediate inside `i64`.
pub const MAX_K: usize = 1 << 28;

/// [`check_operands`] (same errors, same order) with one pass over A that
/// also finds `max|A|`, then the weights prepared for this GEMM.
fn prepare_fast(cfg: &ArrayConfig, a: &Matrix, w: &Matrix) -> Result<(PreparedWeights, u64)> {
    check_shapes(a, w)?;
    let amax = fast::check_format_max(cfg.afmt, a, "A")?;
    let wmax = fast::check_format_max(cfg.wfmt, w, "W")?;
    Ok((PreparedWeights::build(cfg, w, wmax), amax))
}

/// Check shapes and operand formats for a GEMM on `cfg`.
pub fn check_operands(cfg: &ArrayConfig, a: &Matrix, w: &Matrix) -> Result<()> {
    check_shapes(a, w)?;
    a.check_format(cfg.afmt, "A")?;
    w.check_format(cfg.wfmt, "W")?;
    Ok(())
}

/// The shape and K checks of [`check_operands`].
fn check_shapes(a: &Matrix, w: &Matrix) -> Result<()> {
    if a.cols() != w.rows() {
        return Err(Error::input(format!(
            "GEMM shapes: A is {}x{} and W is {}x{} (A's columns must equal W's rows, K)",
            a.rows(),
            a.cols(),
            w.rows(),
            w.cols()
        )));
    }
    if a.cols() > MAX_K {
        return Err(Error::field("GEMM K", a.cols(), format!("1..={MAX_K}")));
    }
    Ok(())
}

/// Caller-owned result buffers of a GEMM run by [`PreparedWeights::run`],
/// reusable across runs: each run resizes them to `M x N` and reuses their
/// allocations (no fresh `M x N` arrays, no page faults once they are
/// large enough). Row-major, like [`ArrayOutput`].
#[derive(Clone, Debug, Default)]
pub struct ArrayBuffers {
    m: usize,
    n: usize,
    acc: Vec<i64>,
    exact: Vec<i64>,
    exact_is_acc: bool,
}

impl ArrayBuffers {
    /// Empty buffers (the first run allocates them).
    pub fn new() -> ArrayBuffers {
        ArrayBuffers::default()
    }

    /// M of the last run.
    pub fn m(&self) -> usize {
        self.m
    }

    /// N of the last run.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The final psum-buffer contents of the last run (P-bit, in units of
    /// `2^d`), `M x N`: [`ArrayOutput::acc`].
    pub fn acc(&self) -> &[i64] {
        &self.acc[..self.m * self.n]
    }

    /// The exact GEMM of the last run, `M x N`: [`ArrayOutput::exact`].
    /// When [`ArrayBuffers::exact_is_acc`] holds this is [`ArrayBuffers::acc`]
    /// itself (the engine did not write a copy).
    pub fn exact(&self) -> &[i64] {
        if self.exact_is_acc {
            self.acc()
        } else {
            &self.exact[..self.m * self.n]
        }
    }

    /// Whether the last run proved every stored value equal to the exact
    /// one (d = 0 and no adder overflowed: then, by induction over the
    /// adders, every stored value is the exact sum) and so left the exact
    /// array unwritten: [`ArrayBuffers::exact`] returns the accumulators.
    /// Only the fast engine elides it; the flag is false after a cycle-
    /// engine run.
    pub fn exact_is_acc(&self) -> bool {
        self.exact_is_acc
    }

    /// The buffers as an [`ArrayOutput`] with `stats` (the exact array
    /// copied from the accumulators where it was elided).
    pub fn into_output(mut self, stats: Stats) -> ArrayOutput {
        let len = self.m * self.n;
        self.acc.truncate(len);
        let exact = if self.exact_is_acc {
            self.acc.clone()
        } else {
            self.exact.truncate(len);
            self.exact
        };
        ArrayOutput { m: self.m, n: self.n, acc: self.acc, exact, stats }
    }

    /// Size both arrays for an `m x n` run, reusing the allocations (a
    /// fresh allocation is zeroed by the allocator, pages untouched until
    /// written).
    pub(crate) fn shape(&mut self, m: usize, n: usize) {
        let len = m * n;
        for v in [&mut self.acc, &mut self.exact] {
            if v.capacity() < len {
                *v = vec![0; len];
            } else {
                v.resize(len, 0);
            }
        }
        self.m = m;
        self.n = n;
        self.exact_is_acc = false;
    }
}

/// Run a GEMM on the array with the chosen engine. `trace` (cycle engine
/// only) receives the per-cycle trace described in `docs/datapath.md`.
/// Prepares the weights for this call and returns fresh arrays: a caller
/// running many GEMMs on the same weights keeps a [`PreparedWeights`] and
/// an [`ArrayBuffers`] instead (same results).
pub fn run_array(
    cfg: &ArrayConfig,
    a: &Matrix,
    w: &Matrix,
    engine: Engine,
    trace: Option<&mut String>,
) -> Result<ArrayOutput> {
    match engine {
        Engine::Fast => {
            let (pw, amax) = prepare_fast(cfg, a, w)?;
            if trace.is_some() {
                return Err(Error::input("--trace needs the cycle engine (--engine cycle)"));
            }
            let mut out = ArrayBuffers::new();
            let stats = pw.run_checked(a, amax, Engine::Fast, &mut out);
            Ok(out.into_output(stats))
        }
        Engine::Cycle => {
            check_operands(cfg, a, w)?;
            let mut out = cycle::run(cfg, a, w, trace);
            a2q_stats(&mut out.stats, cfg, a, w);
            Ok(out)
        }
    }
}

fn a2q_stats(stats: &mut Stats, cfg: &ArrayConfig, a: &Matrix, w: &Matrix) {
    stats.a2q_bits_types = stats::a2q_bits_types(a.cols(), cfg.wfmt, cfg.afmt);
    stats.a2q_bits_weights = stats::a2q_bits_weights(w, cfg.afmt);
}

/// [`run_array`] delivering the results in row chunks, so a large GEMM
/// never holds its whole `M x N` accumulator and exact arrays: `sink(r0,
/// acc, exact)` receives rows `r0..r0 + acc.len() / N` (row-major, the same
/// values [`run_array`] returns), in increasing row order, chunks of at
/// most `chunk_rows` rows (the cycle engine retires `ws`/`is` rows as they
/// complete when it runs without a trace, see `cycle_stream.rs`). Returns
/// the statistics, identical to [`run_array`]'s for any chunk size and
/// thread count. An error from `sink` stops the run. The fast engine runs
/// [`PreparedWeights::run_chunked`] (`exact` may be the same slice as
/// `acc` where they provably agree).
pub fn run_array_chunked(
    cfg: &ArrayConfig,
    a: &Matrix,
    w: &Matrix,
    engine: Engine,
    trace: Option<&mut String>,
    chunk_rows: usize,
    mut sink: impl FnMut(usize, &[i64], &[i64]) -> Result<()>,
) -> Result<Stats> {
    match engine {
        Engine::Fast => {
            let (pw, amax) = prepare_fast(cfg, a, w)?;
            if trace.is_some() {
                return Err(Error::input("--trace needs the cycle engine (--engine cycle)"));
            }
            pw.run_chunked_checked(a, amax, Engine::Fast, chunk_rows, sink)
        }
        Engine::Cycle => {
            check_operands(cfg, a, w)?;
            let mut stats = cycle::run_chunked(cfg, a, w, trace, chunk_rows, &mut sink)?;
            a2q_stats(&mut stats, cfg, a, w);
            Ok(stats)
        }
    }
}

/// Run a GEMM on the cycle engine and return its per-cycle trace with the
/// register fields of `docs/datapath.md` §7 (every PE's activation, weight
/// and psum register after every cycle) appended to every line. For
/// checking an RTL array register by register (`tests/rtl_array.rs`).
pub fn trace_registers(cfg: &ArrayConfig, a: &Matrix, w: &Matrix) -> Result<(ArrayOutput, String)> {
    check_operands(cfg, a, w)?;
    let mut text = String::new();
    let mut out = cycle::run_traced(cfg, a, w, Some(&mut text), true);
    a2q_stats(&mut out.stats, cfg, a, w);
    Ok((out, text))
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

/// bitmac's cycle count for an `M x K` by `K x N` GEMM on a `rows x cols`
/// array (`docs/datapath.md`, "Timing"): tiles run back to back, each
/// - ws: `2R + M + Cu - 2` (R cycles weight preload, M streamed rows,
///   `R + Cu - 2` fill/drain), plus one final cycle for the last writeback;
/// - is: `2R + N + Cu - 2`, plus one final cycle;
/// - os: `K + Ru + Cu - 2` MAC wavefront plus `R` drain cycles.
///
/// `Cu`/`Ru` are the columns/rows a tile uses (the last tile may be partial).
/// Zero dimensions give 0.
pub fn compute_cycles(dataflow: Dataflow, rows: usize, cols: usize, m: usize, k: usize, n: usize) -> u64 {
    if rows == 0 || cols == 0 || m == 0 || k == 0 || n == 0 {
        return 0;
    }
    let (r, c, m, k, n) = (rows as u64, cols as u64, m as u64, k as u64, n as u64);
    match dataflow {
        Dataflow::Ws => {
            let f = ceil_div(k, r);
            let j = ceil_div(n, c);
            f * (j * (2 * r + m - 2) + n) + 1
        }
        Dataflow::Is => {
            let f = ceil_div(k, r);
            let i = ceil_div(m, c);
            f * (i * (2 * r + n - 2) + m) + 1
        }
        Dataflow::Os => {
            let i = ceil_div(m, r);
            let j = ceil_div(n, c);
            i * j * (k + r - 2) + j * m + i * n
        }
    }
}

/// One tile of the schedule (see `docs/datapath.md`, "Tiles"): its
/// geometry (fold, K range, rows and columns used, [`crate::memory::Geometry`])
/// and when it runs. Dereferences to the geometry (`t.k0`, `t.c0`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tile {
    /// Fold index, K range, first row-mapped index (os: m) and rows used,
    /// first column-mapped index (ws/os: n, is: m) and columns used.
    pub g: crate::memory::Geometry,
    /// First cycle of the tile (after its memory stall, `docs/memory.md`).
    pub start: u64,
    /// Preload cycles the tile spends itself (R; 0 for `os` and for a
    /// double-buffered `ws` tile after the first): its stream starts at
    /// `start + pre`.
    pub pre: u64,
}

impl std::ops::Deref for Tile {
    type Target = crate::memory::Geometry;
    fn deref(&self) -> &crate::memory::Geometry {
        &self.g
    }
}

/// The tiles in execution order, with their start cycles (the memory
/// model's gate, [`crate::memory::plan_with`], decides stalls and preloads),
/// and the GEMM's timing from the same pass.
pub(crate) fn schedule(
    cfg: &ArrayConfig,
    m: usize,
    k: usize,
    n: usize,
) -> (Vec<Tile>, crate::memory::Timing) {
    let mut tiles = Vec::new();
    let timing = crate::memory::plan_with(&cfg.layout(), m, k, n, |g, gate| {
        tiles.push(Tile { g: *g, start: gate.start, pre: gate.pre });
    });
    (tiles, timing)
}

/// The cycle count (stalls included) and the stall cycles of an `M x K x
/// N` GEMM on `cfg`: with the memory model off
/// ([`crate::memory::MemoryConfig::enabled`] false: no stalls, every tile
/// preloads itself) the closed form [`compute_cycles`] and 0, held equal to
/// [`crate::memory::plan`] by
/// `tests/array_props.rs::closed_form_timing_is_the_timer`; otherwise the
/// memory model's [`crate::memory::plan`] (one pass of its `Timer`).
pub(crate) fn cycles_and_stalls(cfg: &ArrayConfig, m: usize, k: usize, n: usize) -> (u64, u64) {
    if cfg.mem.enabled {
        let t = crate::memory::plan(&cfg.layout(), m, k, n);
        return (t.cycles, t.stall_cycles);
    }
    (compute_cycles(cfg.dataflow, cfg.rows, cfg.cols, m, k, n), 0)
}

/// Number of tiles of an `M x K x N` GEMM (the length of [`schedule`]).
pub(crate) fn tile_count(cfg: &ArrayConfig, m: usize, k: usize, n: usize) -> usize {
    match cfg.dataflow {
        Dataflow::Ws => n.div_ceil(cfg.cols) * k.div_ceil(cfg.rows),
        Dataflow::Is => m.div_ceil(cfg.cols) * k.div_ceil(cfg.rows),
        Dataflow::Os => m.div_ceil(cfg.rows) * n.div_ceil(cfg.cols),
    }
}

/// Index into [`schedule`] of the tile computing fold `f` of output
/// `(mm, nn)`; `folds` = ceil(K / R) (ws/is), `ntiles` = ceil(N / C) (os).
#[inline]
pub(crate) fn tile_index(
    cfg: &ArrayConfig,
    folds: usize,
    ntiles: usize,
    mm: usize,
    nn: usize,
    f: usize,
) -> usize {
    match cfg.dataflow {
        Dataflow::Ws => (nn / cfg.cols) * folds + f,
        Dataflow::Is => (mm / cfg.cols) * folds + f,
        Dataflow::Os => (mm / cfg.rows) * ntiles + nn / cfg.cols,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::Narrower;

    #[test]
    fn acc_add_matches_narrower() {
        let vals = [i64::MIN, i64::MIN + 1, -5, -1, 0, 1, 7, i64::MAX - 1, i64::MAX];
        let ps = [-(1i64 << 62), -(1i64 << 32), -3, -1, 0, 1, 2, 1 << 32, 1 << 62];
        for bits in [2u32, 3, 8, 31, 32, 33, 63, 64] {
            for mode in OverflowMode::ALL {
                let acc = Acc::new(bits, mode);
                let nar = Narrower::new(IntFormat::signed(bits).unwrap(), mode);
                for &s0 in &vals {
                    // s must be a stored value of the format.
                    let s = nar.narrow(s0 as i128).0 as i64;
                    for &p in &ps {
                        let (want, wo) = nar.add(s as i128, p as i128);
                        let (got, go) = acc.add(s, p);
                        assert_eq!((got as i128, go), (want, wo), "bits={bits} {mode} s={s} p={p}");
                    }
                }
            }
        }
    }

    #[test]
    fn compute_cycles_matches_schedule() {
        for df in Dataflow::ALL {
            for (r, c, m, k, n) in [(4, 3, 5, 9, 7), (1, 1, 1, 1, 1), (16, 16, 33, 17, 40), (3, 8, 2, 2, 2)] {
                let cfg = ArrayConfig {
                    rows: r,
                    cols: c,
                    dataflow: df,
                    wfmt: IntFormat::signed(8).unwrap(),
                    afmt: IntFormat::signed(8).unwrap(),
                    acc: Acc::new(32, OverflowMode::Wrap),
                    rounder: Rounder::new(0, RoundMode::Rnd, 0).unwrap(),
                    simd: Simd::Portable,
                    mem: crate::memory::MemoryConfig::default(),
                };
                let (tiles, t) = schedule(&cfg, m, k, n);
                assert_eq!(tiles.len(), tile_count(&cfg, m, k, n));
                assert_eq!(cycles_and_stalls(&cfg, m, k, n), (t.cycles, t.stall_cycles));
                let last = tiles.last().unwrap();
                let len = match df {
                    Dataflow::Ws => (2 * r + m + last.cu - 2) as u64 + 1,
                    Dataflow::Is => (2 * r + n + last.cu - 2) as u64 + 1,
                    Dataflow::Os => (k + last.ru + last.cu - 2 + r) as u64,
                };
                assert_eq!(compute_cycles(df, r, c, m, k, n), last.start + len, "{df} {r}x{c} {m} {k} {n}");
            }
        }
    }
}
