//! Bit-accurate integer numerics: formats, rounding when dropping LSBs, and
//! overflow handling when narrowing. Every other block builds on this file.
//!
//! All arithmetic here is exact: inputs are `i128`, which holds every value of
//! every supported format (signed or unsigned, width 1..=64) and every sum or
//! product of two of them except the product of two values above 2^63 in
//! magnitude, which [`Narrower::mul`] handles without overflowing. Nothing in
//! this module relies on Rust's default rounding or overflow behaviour: `>>`
//! on a negative `i128` is an arithmetic shift (floor division by 2^k), which
//! is the only shift semantics used and is stated where used.
//!
//! The exact definitions, with tables, are in `docs/numerics.md`; the tests in
//! `tests/numerics_*.rs` check this file against a num-bigint reference written
//! from that document.

use crate::error::{Error, Result};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// An integer format: signedness and width in bits (1..=64).
///
/// Invariant: `1 <= width <= 64` (checked by [`IntFormat::new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IntFormat {
    signed: bool,
    width: u32,
}

impl IntFormat {
    /// A validated format. `width` must be in 1..=64.
    pub fn new(signed: bool, width: u32) -> Result<IntFormat> {
        if !(1..=64).contains(&width) {
            return Err(Error::field("width", width, "1..=64"));
        }
        Ok(IntFormat { signed, width })
    }

    /// A signed (two's complement) format of `width` bits.
    pub fn signed(width: u32) -> Result<IntFormat> {
        IntFormat::new(true, width)
    }

    /// An unsigned format of `width` bits.
    pub fn unsigned(width: u32) -> Result<IntFormat> {
        IntFormat::new(false, width)
    }

    /// True for two's-complement formats.
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// Width in bits.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Smallest representable value: `-2^(w-1)` signed, `0` unsigned.
    pub fn min(&self) -> i128 {
        if self.signed {
            -(1i128 << (self.width - 1))
        } else {
            0
        }
    }

    /// Largest representable value: `2^(w-1)-1` signed, `2^w-1` unsigned.
    pub fn max(&self) -> i128 {
        if self.signed {
            (1i128 << (self.width - 1)) - 1
        } else {
            (1i128 << self.width) - 1
        }
    }

    /// True when `v` is representable.
    pub fn contains(&self, v: i128) -> bool {
        v >= self.min() && v <= self.max()
    }

    /// The two's-complement bit pattern of `v` at this width (the low `width`
    /// bits), as an unsigned number. `v` need not be in range: the pattern is
    /// `v mod 2^width`.
    pub fn to_bits(&self, v: i128) -> u64 {
        let mask: u128 = if self.width == 64 { u64::MAX as u128 } else { (1u128 << self.width) - 1 };
        ((v as u128) & mask) as u64
    }

    /// Inverse of [`IntFormat::to_bits`]: interpret the low `width` bits of
    /// `bits` in this format (sign-extending for signed formats).
    pub fn from_bits(&self, bits: u64) -> i128 {
        let mask: u128 = if self.width == 64 { u64::MAX as u128 } else { (1u128 << self.width) - 1 };
        let u = (bits as u128) & mask;
        if self.signed && (u >> (self.width - 1)) & 1 == 1 {
            u as i128 - (1i128 << self.width)
        } else {
            u as i128
        }
    }
}

impl fmt::Display for IntFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", if self.signed { "i" } else { "u" }, self.width)
    }
}

/// The eight `ac_fixed` rounding modes for dropping LSBs.
///
/// With `lo = floor(v)` and `hi = lo + 1` the two candidates around the exact
/// quotient `v`:
///
/// | mode         | rule                                    |
/// |--------------|-----------------------------------------|
/// | `Trn`        | floor (toward -inf)                     |
/// | `TrnZero`    | toward zero                             |
/// | `Rnd`        | nearest, ties to `hi` (+inf, half-up)   |
/// | `RndZero`    | nearest, ties toward zero               |
/// | `RndMinInf`  | nearest, ties to `lo` (-inf, half-down) |
/// | `RndInf`     | nearest, ties away from zero            |
/// | `RndConv`    | nearest, ties to even                   |
/// | `RndConvOdd` | nearest, ties to odd                    |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoundMode {
    Trn,
    TrnZero,
    Rnd,
    RndZero,
    RndMinInf,
    RndInf,
    RndConv,
    RndConvOdd,
}

impl RoundMode {
    /// Every mode, in `ac_fixed` order.
    pub const ALL: [RoundMode; 8] = [
        RoundMode::Trn,
        RoundMode::TrnZero,
        RoundMode::Rnd,
        RoundMode::RndZero,
        RoundMode::RndMinInf,
        RoundMode::RndInf,
        RoundMode::RndConv,
        RoundMode::RndConvOdd,
    ];

    /// The `ac_fixed` spelling, e.g. `RND_CONV`.
    pub fn name(self) -> &'static str {
        match self {
            RoundMode::Trn => "TRN",
            RoundMode::TrnZero => "TRN_ZERO",
            RoundMode::Rnd => "RND",
            RoundMode::RndZero => "RND_ZERO",
            RoundMode::RndMinInf => "RND_MIN_INF",
            RoundMode::RndInf => "RND_INF",
            RoundMode::RndConv => "RND_CONV",
            RoundMode::RndConvOdd => "RND_CONV_ODD",
        }
    }

    /// True for `Trn` and `TrnZero`, which add the offset before truncating
    /// instead of moving a rounding centre.
    pub fn is_truncating(self) -> bool {
        matches!(self, RoundMode::Trn | RoundMode::TrnZero)
    }

    /// The allowed rounding-centre offsets when dropping `k` bits, as an
    /// inclusive range. `k = 0`: only 0. Round-to-nearest modes: the centre
    /// `2^(k-1)+c` must be a possible residue, so `c` is in
    /// `-2^(k-1) ..= 2^(k-1)-1`. Truncating modes: `c` is in
    /// `-(2^k-1) ..= 2^k-1`.
    pub fn offset_range(self, k: u32) -> (i128, i128) {
        if k == 0 {
            (0, 0)
        } else if self.is_truncating() {
            (-((1i128 << k) - 1), (1i128 << k) - 1)
        } else {
            (-(1i128 << (k - 1)), (1i128 << (k - 1)) - 1)
        }
    }
}

impl fmt::Display for RoundMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RoundMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<RoundMode> {
        RoundMode::ALL.iter().copied().find(|m| m.name() == s).ok_or_else(|| {
            Error::input(format!(
                "rounding mode: unknown {s:?} (allowed: TRN, TRN_ZERO, RND, RND_ZERO, RND_MIN_INF, RND_INF, RND_CONV, RND_CONV_ODD)"
            ))
        })
    }
}

/// Overflow handling when a value does not fit its destination format.
///
/// | mode      | out-of-range result                                   |
/// |-----------|-------------------------------------------------------|
/// | `Wrap`    | two's-complement modulo `2^w`                         |
/// | `Sat`     | clamp to `[min, max]`                                 |
/// | `SatZero` | 0                                                     |
/// | `SatSym`  | clamp to `[-max, max]` (signed); `min` itself -> `-max`. Unsigned: as `Sat` |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OverflowMode {
    Wrap,
    Sat,
    SatZero,
    SatSym,
}

impl OverflowMode {
    /// Every mode.
    pub const ALL: [OverflowMode; 4] =
        [OverflowMode::Wrap, OverflowMode::Sat, OverflowMode::SatZero, OverflowMode::SatSym];

    /// The `ac_fixed` spelling, e.g. `SAT_SYM`.
    pub fn name(self) -> &'static str {
        match self {
            OverflowMode::Wrap => "WRAP",
            OverflowMode::Sat => "SAT",
            OverflowMode::SatZero => "SAT_ZERO",
            OverflowMode::SatSym => "SAT_SYM",
        }
    }
}

impl fmt::Display for OverflowMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OverflowMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<OverflowMode> {
        OverflowMode::ALL.iter().copied().find(|m| m.name() == s).ok_or_else(|| {
            Error::input(format!("overflow mode: unknown {s:?} (allowed: WRAP, SAT, SAT_ZERO, SAT_SYM)"))
        })
    }
}

/// Where a rounded value's residue fell relative to the rounding centre.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Position {
    Below,
    At,
    Above,
}

/// What a rounding did, for tie counting and bias measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundInfo {
    /// `x mod 2^k` (Euclidean, so in `0 .. 2^k`), of the input before any
    /// offset is applied.
    pub residue: u64,
    /// `residue` compared with the rounding centre: `2^(k-1) + c` for the
    /// round-to-nearest modes; for the truncating modes the residue at which
    /// `floor((x + c) / 2^k)` steps up: `2^k - c` (c > 0), `-c` (c < 0), and
    /// none for c = 0 (every residue is `Below`). `At` is a tie. For `k = 0`
    /// there is nothing to round: `Below`, residue 0.
    pub position: Position,
    /// `result * 2^k - x`: the exact rounding error in input LSBs.
    pub error: i128,
}

/// Drops `k` LSBs with a rounding mode and a rounding-centre offset.
///
/// Validated at construction (`k` in 0..=63, offset in
/// [`RoundMode::offset_range`]); [`Rounder::round`] then never fails and
/// never overflows (its result is the exact rounded quotient as an `i128`;
/// narrowing to a format is a separate step, [`Narrower`]).
///
/// Definition (`q = floor(x / 2^k)`, `r = x - q*2^k` in `0..2^k`,
/// `h = 2^(k-1) + c`):
/// - `Trn`: `floor((x + c) / 2^k)`.
/// - `TrnZero`: `(x + c) / 2^k` rounded toward zero.
/// - round-to-nearest modes: `q + 1` if `r > h`, `q` if `r < h`, and when
///   `r == h` the tie rule picks between `lo = q` and `hi = q + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rounder {
    k: u32,
    mode: RoundMode,
    offset: i128,
    /// The rounding centre (see [`RoundInfo::position`]), precomputed.
    centre: i128,
    mask: i128,
}

impl Rounder {
    /// A validated rounder dropping `k` bits (0..=63) with `mode` and `offset`.
    pub fn new(k: u32, mode: RoundMode, offset: i64) -> Result<Rounder> {
        if k > 63 {
            return Err(Error::field("dropped bits (k)", k, "0..=63"));
        }
        let (lo, hi) = mode.offset_range(k);
        let c = offset as i128;
        if c < lo || c > hi {
            return Err(Error::field(
                format!("rounding-centre offset for {mode} dropping {k} bits"),
                offset,
                format!("{lo}..={hi}"),
            ));
        }
        // The centre is the residue at which the result steps from the lower
        // to the upper candidate. Round-to-nearest: 2^(k-1)+c (a residue
        // exactly there is a tie). Truncating with c added: floor((x+c)/2^k)
        // steps up at residue 2^k - c (c > 0) or -c (c < 0); with c = 0 it
        // never steps inside a period, so the centre is 2^k (never reached).
        let centre = if k == 0 {
            0
        } else if mode.is_truncating() {
            if c >= 0 {
                (1i128 << k) - c
            } else {
                -c
            }
        } else {
            (1i128 << (k - 1)) + c
        };
        Ok(Rounder { k, mode, offset: c, centre, mask: (1i128 << k) - 1 })
    }

    /// Number of LSBs dropped.
    pub fn k(&self) -> u32 {
        self.k
    }

    /// The rounding mode.
    pub fn mode(&self) -> RoundMode {
        self.mode
    }

    /// The rounding-centre offset `c`, in input LSBs.
    pub fn offset(&self) -> i64 {
        self.offset as i64
    }

    /// The exact result of dropping `k` LSBs of `x`. `x` may be any value with
    /// `|x| < 2^126` (every sum of two 64-bit values qualifies).
    #[inline]
    pub fn round(&self, x: i128) -> i128 {
        if self.k == 0 {
            return x;
        }
        // `>>` on i128 is an arithmetic shift: floor division by 2^k.
        match self.mode {
            RoundMode::Trn => (x + self.offset) >> self.k,
            RoundMode::TrnZero => {
                let y = x + self.offset;
                let q = y >> self.k;
                // floor -> toward zero: negative values with a residue go up.
                if y < 0 && (y & self.mask) != 0 {
                    q + 1
                } else {
                    q
                }
            }
            _ => {
                let q = x >> self.k;
                let r = x & self.mask;
                match r.cmp(&self.centre) {
                    Ordering::Less => q,
                    Ordering::Greater => q + 1,
                    Ordering::Equal => self.tie(q),
                }
            }
        }
    }

    /// The tie rule for round-to-nearest modes, choosing between `lo = q` and
    /// `hi = q + 1`.
    #[inline]
    fn tie(&self, q: i128) -> i128 {
        let (lo, hi) = (q, q + 1);
        match self.mode {
            RoundMode::Rnd => hi,
            RoundMode::RndMinInf => lo,
            // lo and hi are consecutive integers, so either lo >= 0 (both
            // non-negative: the smaller magnitude is lo) or hi <= 0 (both
            // non-positive: the smaller magnitude is hi).
            RoundMode::RndZero => {
                if lo >= 0 {
                    lo
                } else {
                    hi
                }
            }
            RoundMode::RndInf => {
                if lo >= 0 {
                    hi
                } else {
                    lo
                }
            }
            RoundMode::RndConv => {
                if lo & 1 == 0 {
                    lo
                } else {
                    hi
                }
            }
            RoundMode::RndConvOdd => {
                if lo & 1 != 0 {
                    lo
                } else {
                    hi
                }
            }
            // Truncating modes never reach the tie rule.
            RoundMode::Trn | RoundMode::TrnZero => lo,
        }
    }

    /// Like [`Rounder::round`], also reporting the residue, its position
    /// against the centre, and the exact error.
    #[inline]
    pub fn round_info(&self, x: i128) -> (i128, RoundInfo) {
        let y = self.round(x);
        if self.k == 0 {
            return (y, RoundInfo { residue: 0, position: Position::Below, error: 0 });
        }
        let r = x & self.mask;
        let position = match r.cmp(&self.centre) {
            Ordering::Less => Position::Below,
            Ordering::Equal => Position::At,
            Ordering::Greater => Position::Above,
        };
        (y, RoundInfo { residue: r as u64, position, error: (y << self.k) - x })
    }

    /// Whether [`Rounder::round_i64`] / [`Rounder::round_info_i64`] apply:
    /// `k <= 32` (every psum rounder of the array qualifies: `d <= 32` is
    /// validated).
    #[inline]
    pub fn exact_in_i64(&self) -> bool {
        self.k <= 32
    }

    /// [`Rounder::round`] in `i64`, for the engines' hot loops: the same
    /// result for every `x` with `|x| <= 2^62` when
    /// [`Rounder::exact_in_i64`] (then `x + c`, with `|c| <= 2^32`, and the
    /// result times `2^k` fit `i64`: no intermediate can wrap). Held equal
    /// to [`Rounder::round`] by `tests/numerics_reference.rs`.
    #[inline]
    pub fn round_i64(&self, x: i64) -> i64 {
        debug_assert!(self.exact_in_i64() && x.unsigned_abs() <= 1 << 62);
        if self.k == 0 {
            return x;
        }
        let (k, c, mask) = (self.k, self.offset as i64, self.mask as i64);
        match self.mode {
            RoundMode::Trn => (x + c) >> k,
            RoundMode::TrnZero => {
                let y = x + c;
                let q = y >> k;
                if y < 0 && (y & mask) != 0 {
                    q + 1
                } else {
                    q
                }
            }
            _ => {
                let q = x >> k;
                match (x & mask).cmp(&(self.centre as i64)) {
                    Ordering::Less => q,
                    Ordering::Greater => q + 1,
                    // The same tie rule as `round` (exact: `q` fits i64).
                    Ordering::Equal => self.tie(q as i128) as i64,
                }
            }
        }
    }

    /// [`Rounder::round_info`] in `i64` (same domain as
    /// [`Rounder::round_i64`]): the result, and the info with the error as
    /// an `i64` (`|error| < 2^(k+1)`: `result * 2^k = x + error` fits).
    #[inline]
    pub fn round_info_i64(&self, x: i64) -> (i64, RoundInfo64) {
        let y = self.round_i64(x);
        if self.k == 0 {
            return (y, RoundInfo64 { residue: 0, position: Position::Below, error: 0 });
        }
        let r = x & self.mask as i64;
        let position = match r.cmp(&(self.centre as i64)) {
            Ordering::Less => Position::Below,
            Ordering::Equal => Position::At,
            Ordering::Greater => Position::Above,
        };
        (y, RoundInfo64 { residue: r as u64, position, error: (y << self.k) - x })
    }
}

/// [`Rounder::round_i64`] as straight-line lane arithmetic for the
/// engines' SIMD loops: no branch on the value and no per-mode `match`, so
/// a loop over lanes vectorizes (the psum writeback of `array::fast`).
/// The same result as [`Rounder::round_i64`] for every `x` with `|x| <=
/// 2^62` and `k <= 32` (held equal by `tests/numerics_reference.rs`).
///
/// How: `t = x + a` (`a = c` for the truncating modes, else 0), `q =
/// floor(t / 2^k)`, `u = t mod 2^k`; the result is `q + up` with
/// - round-to-nearest: `up = u > h || (u == h && tie(q))`, `h` the centre
///   `2^(k-1) + c`; `tie(q)` (the tie goes to `hi = q + 1`) is bit
///   `2*[q < 0] + (q & 1)` of a 4-bit table per mode (`Rnd` 1111,
///   `RndMinInf` 0000, `RndZero` 1100: up when `q < 0`, `RndInf` 0011,
///   `RndConv` 1010: up when `q` is odd, `RndConvOdd` 0101);
/// - `TrnZero`: `up = t < 0 && u != 0` (floor to toward-zero);
/// - `Trn`, and `k = 0`: `up = 0` (with `a = c`, resp. `a = 0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneRounder {
    k: u32,
    add: i64,
    mask: i64,
    centre: i64,
    nearest: bool,
    trn_zero: bool,
    tie_table: u64,
}

impl LaneRounder {
    /// The lane form of `r`; `None` when `r.k() > 32` (outside
    /// [`Rounder::exact_in_i64`]).
    pub fn new(r: &Rounder) -> Option<LaneRounder> {
        if !r.exact_in_i64() {
            return None;
        }
        let k = r.k;
        let nearest = k > 0 && !r.mode.is_truncating();
        let tie_table = match r.mode {
            RoundMode::Rnd => 0b1111,
            RoundMode::RndZero => 0b1100,
            RoundMode::RndInf => 0b0011,
            RoundMode::RndConv => 0b1010,
            RoundMode::RndConvOdd => 0b0101,
            RoundMode::RndMinInf | RoundMode::Trn | RoundMode::TrnZero => 0,
        };
        Some(LaneRounder {
            k,
            add: if k > 0 && r.mode.is_truncating() { r.offset as i64 } else { 0 },
            mask: r.mask as i64,
            centre: r.centre as i64,
            nearest,
            trn_zero: k > 0 && r.mode == RoundMode::TrnZero,
            tie_table,
        })
    }

    /// Bits dropped.
    #[inline(always)]
    pub fn k(&self) -> u32 {
        self.k
    }

    /// The centre (as [`RoundInfo::position`] compares the residue with;
    /// 0 for `k = 0`).
    #[inline(always)]
    pub fn centre(&self) -> i64 {
        self.centre
    }

    /// `x mod 2^k` (the [`RoundInfo::residue`] of `x`).
    #[inline(always)]
    pub fn residue(&self, x: i64) -> i64 {
        x & self.mask
    }

    /// [`Rounder::round_i64`] of `x`, `|x| <= 2^62`.
    #[inline(always)]
    pub fn round(&self, x: i64) -> i64 {
        let t = x + self.add;
        let q = t >> self.k;
        let u = t & self.mask;
        // `q < 0` is bit 1 of the table index, `q` odd bit 0.
        let idx = ((q >> 63) & 2) | (q & 1);
        let tie = (self.tie_table >> idx) & 1 != 0;
        let near_up = (u > self.centre) | ((u == self.centre) & tie);
        let tz_up = (t < 0) & (u != 0);
        q + ((self.nearest & near_up) | (self.trn_zero & tz_up)) as i64
    }
}

/// [`RoundInfo`] from [`Rounder::round_info_i64`]: the same fields, the
/// error as an `i64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundInfo64 {
    /// As [`RoundInfo::residue`].
    pub residue: u64,
    /// As [`RoundInfo::position`].
    pub position: Position,
    /// As [`RoundInfo::error`].
    pub error: i64,
}

/// Applies an overflow mode when a value is stored into a format.
///
/// Validated at construction; the hot-path methods never fail. "Overflowed"
/// always means: the stored value differs from the exact value (so `SatSym`
/// storing `min` reports an overflow, since it stores `-max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Narrower {
    fmt: IntFormat,
    mode: OverflowMode,
    min: i128,
    max: i128,
    /// The smallest value `SatSym` keeps (`-max` signed, 0 unsigned).
    sym_min: i128,
}

impl Narrower {
    /// A narrower into `fmt` with overflow mode `mode`.
    pub fn new(fmt: IntFormat, mode: OverflowMode) -> Narrower {
        let (min, max) = (fmt.min(), fmt.max());
        let sym_min = if fmt.is_signed() { -max } else { 0 };
        Narrower { fmt, mode, min, max, sym_min }
    }

    /// The destination format.
    pub fn format(&self) -> IntFormat {
        self.fmt
    }

    /// The overflow mode.
    pub fn mode(&self) -> OverflowMode {
        self.mode
    }

    /// Store the exact value `x` (any `i128`): returns the stored value and
    /// whether it differs from `x`.
    #[inline]
    pub fn narrow(&self, x: i128) -> (i128, bool) {
        match self.mode {
            OverflowMode::Wrap => {
                if x >= self.min && x <= self.max {
                    (x, false)
                } else {
                    (self.fmt.from_bits(self.fmt.to_bits(x)), true)
                }
            }
            OverflowMode::Sat => {
                if x > self.max {
                    (self.max, true)
                } else if x < self.min {
                    (self.min, true)
                } else {
                    (x, false)
                }
            }
            OverflowMode::SatZero => {
                if x >= self.min && x <= self.max {
                    (x, false)
                } else {
                    (0, true)
                }
            }
            OverflowMode::SatSym => {
                if x > self.max {
                    (self.max, true)
                } else if x < self.sym_min {
                    (self.sym_min, true)
                } else {
                    (x, false)
                }
            }
        }
    }

    /// `a + b`, exact, then stored. Inputs are any values of 64-bit formats.
    #[inline]
    pub fn add(&self, a: i128, b: i128) -> (i128, bool) {
        self.narrow(a + b)
    }

    /// `a * b`, exact, then stored. Inputs are any values of 64-bit formats
    /// (signed or unsigned); a product beyond `i128` (possible only for two
    /// unsigned values above 2^63) is handled exactly: it is out of every
    /// 64-bit range, so saturating modes saturate by its sign and `Wrap`
    /// keeps its low bits, which wrapping `i128` multiplication preserves.
    #[inline]
    pub fn mul(&self, a: i128, b: i128) -> (i128, bool) {
        match a.checked_mul(b) {
            Some(p) => self.narrow(p),
            None => {
                let negative = (a < 0) != (b < 0);
                let stored = match self.mode {
                    OverflowMode::Wrap => self.fmt.from_bits(self.fmt.to_bits(a.wrapping_mul(b))),
                    OverflowMode::Sat => {
                        if negative {
                            self.min
                        } else {
                            self.max
                        }
                    }
                    OverflowMode::SatZero => 0,
                    OverflowMode::SatSym => {
                        if negative {
                            self.sym_min
                        } else {
                            self.max
                        }
                    }
                };
                (stored, true)
            }
        }
    }
}

/// Drop `k` bits with `rounder`, then store into `narrower`'s format: the
/// narrowing step of a datapath (`ac_fixed` assignment to a narrower type).
/// Returns the stored value, whether it overflowed, and the rounding info.
#[inline]
pub fn round_and_narrow(rounder: &Rounder, narrower: &Narrower, x: i128) -> (i128, bool, RoundInfo) {
    let (y, info) = rounder.round_info(x);
    let (z, ovf) = narrower.narrow(y);
    (z, ovf, info)
}

/// The expected rounding error (bias) of a mode when dropping `k` bits from a
/// value whose residue is uniform over `0..2^k`, in input LSBs, as the exact
/// fraction `(numerator, denominator)`; a non-negative input is assumed for the
/// sign-dependent modes (`TrnZero`, `RndZero`, `RndInf`), whose bias over
/// symmetric data is 0. Used by the docs table and its test.
pub fn uniform_bias_nonneg(mode: RoundMode, k: u32, offset: i64) -> Result<(i128, i128)> {
    let r = Rounder::new(k, mode, offset)?;
    if k > 20 {
        return Err(Error::field("dropped bits (k) for the bias table", k, "0..=20"));
    }
    let n = 1i128 << k;
    // Average over two full periods of residues (one with an even and one
    // with an odd quotient, so the parity tie rules balance) starting at a
    // large multiple of 2^k so all values stay non-negative with an offset.
    let base = n * 1024;
    let sum: i128 = (0..2 * n).map(|i| r.round_info(base + i).1.error).sum();
    Ok((sum, 2 * n))
}

#[cfg(test)]
mod tests {

    /// docs/numerics.md, "Signed 1-bit with SAT_SYM": every value stores 0.
    #[test]
    fn sat_sym_signed_one_bit_stores_zero() {
        let n = Narrower::new(IntFormat::signed(1).unwrap(), OverflowMode::SatSym);
        for (x, ovf) in [(-5, true), (-1, true), (0, false), (1, true), (7, true)] {
            assert_eq!(n.narrow(x), (0, ovf), "{x}");
        }
        // SAT keeps -1 (the format's minimum), unlike SAT_SYM.
        let s = Narrower::new(IntFormat::signed(1).unwrap(), OverflowMode::Sat);
        assert_eq!(s.narrow(-5), (-1, true));
    }

    use super::*;

    #[test]
    fn formats_validate_width() {
        assert!(IntFormat::signed(0).is_err());
        assert!(IntFormat::signed(65).is_err());
        let f = IntFormat::signed(64).unwrap();
        assert_eq!(f.min(), i64::MIN as i128);
        assert_eq!(f.max(), i64::MAX as i128);
        let u = IntFormat::unsigned(64).unwrap();
        assert_eq!(u.max(), u64::MAX as i128);
        let one = IntFormat::signed(1).unwrap();
        assert_eq!((one.min(), one.max()), (-1, 0));
    }

    #[test]
    fn bits_roundtrip() {
        let f = IntFormat::signed(5).unwrap();
        for v in -16..=15 {
            assert_eq!(f.from_bits(f.to_bits(v)), v);
        }
        assert_eq!(f.to_bits(-1), 0x1f);
    }

    #[test]
    fn offset_range_is_enforced() {
        assert!(Rounder::new(3, RoundMode::Rnd, -4).is_ok());
        assert!(Rounder::new(3, RoundMode::Rnd, 3).is_ok());
        assert!(Rounder::new(3, RoundMode::Rnd, 4).is_err());
        assert!(Rounder::new(3, RoundMode::Trn, 7).is_ok());
        assert!(Rounder::new(3, RoundMode::Trn, 8).is_err());
        assert!(Rounder::new(0, RoundMode::Rnd, 1).is_err());
        assert!(Rounder::new(64, RoundMode::Rnd, 0).is_err());
    }

    #[test]
    fn names_parse_back() {
        for m in RoundMode::ALL {
            assert_eq!(m.name().parse::<RoundMode>().unwrap(), m);
        }
        for m in OverflowMode::ALL {
            assert_eq!(m.name().parse::<OverflowMode>().unwrap(), m);
        }
        assert!("RND_HALF".parse::<RoundMode>().is_err());
    }
}
