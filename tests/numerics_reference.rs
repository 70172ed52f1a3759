//! bitmac's numerics against an exact num-bigint reference written from
//! `docs/numerics.md` (not from `src/numerics.rs`): exhaustive for widths
//! <= 8 and k <= 6, proptest for widths up to 64.
//!
//! The reference deliberately uses a different formulation from the
//! implementation where the doc allows it: round-to-nearest with offset `c`
//! is computed as nearest-integer of the rational `(x - c) / 2^k` by
//! comparing `2(x - c)` against odd multiples of `2^k` (the doc states the two
//! formulations are equal), and wrapping is computed with `mod_floor`.

use bitmac::numerics::{IntFormat, LaneRounder, Narrower, OverflowMode, Position, RoundMode, Rounder};
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, ToPrimitive, Zero};
use proptest::prelude::*;

fn big(v: i128) -> BigInt {
    BigInt::from(v)
}

fn pow2(k: u32) -> BigInt {
    BigInt::one() << k
}

/// Reference rounding of `x` dropping `k` bits with mode and offset `c`.
fn ref_round(x: &BigInt, k: u32, mode: RoundMode, c: i128) -> BigInt {
    let n = pow2(k);
    let c = big(c);
    match mode {
        RoundMode::Trn => (x + &c).div_floor(&n),
        // BigInt `/` truncates toward zero.
        RoundMode::TrnZero => (x + &c) / &n,
        _ => {
            if k == 0 {
                return x.clone();
            }
            let y = x - &c;
            let lo = y.div_floor(&n);
            let hi = &lo + 1;
            // 2*(y - lo*n) compared with n: fraction above/below/at one half.
            let twice_frac: BigInt = (&y - &lo * &n) * 2;
            match twice_frac.cmp(&n) {
                std::cmp::Ordering::Less => lo,
                std::cmp::Ordering::Greater => hi,
                std::cmp::Ordering::Equal => match mode {
                    RoundMode::Rnd => hi,
                    RoundMode::RndMinInf => lo,
                    RoundMode::RndZero => {
                        if lo.abs() <= hi.abs() {
                            lo
                        } else {
                            hi
                        }
                    }
                    RoundMode::RndInf => {
                        if lo.abs() >= hi.abs() {
                            lo
                        } else {
                            hi
                        }
                    }
                    RoundMode::RndConv => {
                        if lo.is_even() {
                            lo
                        } else {
                            hi
                        }
                    }
                    RoundMode::RndConvOdd => {
                        if lo.is_odd() {
                            lo
                        } else {
                            hi
                        }
                    }
                    RoundMode::Trn | RoundMode::TrnZero => unreachable!(),
                },
            }
        }
    }
}

fn ref_position(x: &BigInt, k: u32, mode: RoundMode, c: i128) -> (u64, Position) {
    if k == 0 {
        return (0, Position::Below);
    }
    let r = x.mod_floor(&pow2(k));
    // docs/numerics.md: the centre is where the result steps up. For the
    // truncating modes, find it by brute force from the definition: the
    // smallest residue s in 1..2^k with floor((s + c)/2^k) != floor(c/2^k)
    // relative to residue 0 (none when c = 0).
    let h = if mode.is_truncating() && k > 12 {
        // Too many residues to scan: solve floor((s + c)/2^k) > floor(c/2^k)
        // for the smallest s >= 1 directly (c is in -(2^k-1)..=2^k-1).
        let n = pow2(k);
        let c = big(c);
        let s = if c.is_negative() { -c } else { &n - &c };
        if s.is_zero() || s >= n {
            n
        } else {
            s
        }
    } else if mode.is_truncating() {
        let n = pow2(k);
        let base = big(c).div_floor(&n);
        let mut step = n.clone();
        let mut s = BigInt::from(1);
        while s < n {
            if (&s + big(c)).div_floor(&n) != base {
                step = s.clone();
                break;
            }
            s += 1;
        }
        step
    } else {
        pow2(k - 1) + big(c)
    };
    let pos = match r.cmp(&h) {
        std::cmp::Ordering::Less => Position::Below,
        std::cmp::Ordering::Equal => Position::At,
        std::cmp::Ordering::Greater => Position::Above,
    };
    (r.to_u64().unwrap(), pos)
}

fn ref_narrow(x: &BigInt, fmt: IntFormat, mode: OverflowMode) -> (BigInt, bool) {
    let (min, max) = (big(fmt.min()), big(fmt.max()));
    let inside = x >= &min && x <= &max;
    let stored = match mode {
        OverflowMode::Wrap => (x - &min).mod_floor(&pow2(fmt.width())) + &min,
        OverflowMode::Sat => {
            if x > &max {
                max.clone()
            } else if x < &min {
                min.clone()
            } else {
                x.clone()
            }
        }
        OverflowMode::SatZero => {
            if inside {
                x.clone()
            } else {
                BigInt::zero()
            }
        }
        OverflowMode::SatSym => {
            let lo = if fmt.is_signed() { -max.clone() } else { BigInt::zero() };
            if x > &max {
                max.clone()
            } else if x < &lo {
                lo
            } else {
                x.clone()
            }
        }
    };
    let changed = &stored != x;
    (stored, changed)
}

fn all_formats(max_width: u32) -> Vec<IntFormat> {
    let mut v = Vec::new();
    for w in 1..=max_width {
        v.push(IntFormat::signed(w).unwrap());
        v.push(IntFormat::unsigned(w).unwrap());
    }
    v
}

fn check_round(x: i128, k: u32, mode: RoundMode, c: i128) {
    let r = Rounder::new(k, mode, c as i64).unwrap();
    let (got, info) = r.round_info(x);
    let bx = big(x);
    let want = ref_round(&bx, k, mode, c);
    assert_eq!(big(got), want, "x={x} k={k} mode={mode} c={c}");
    let (res, pos) = ref_position(&bx, k, mode, c);
    assert_eq!((info.residue, info.position), (res, pos), "x={x} k={k} mode={mode} c={c}");
    assert_eq!(big(info.error), want * pow2(k) - bx, "error x={x} k={k} mode={mode} c={c}");
}

#[test]
fn exhaustive_rounding_widths_up_to_8_k_up_to_6() {
    let mut checked = 0u64;
    for fmt in all_formats(8) {
        for x in fmt.min()..=fmt.max() {
            for k in 0..=6u32 {
                for mode in RoundMode::ALL {
                    let (lo, hi) = mode.offset_range(k);
                    for c in lo..=hi {
                        check_round(x, k, mode, c);
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 1_000_000, "only {checked} cases");
}

#[test]
fn exhaustive_narrowing_widths_up_to_8() {
    for fmt in all_formats(8) {
        for mode in OverflowMode::ALL {
            let n = Narrower::new(fmt, mode);
            // Every value two 8-bit operands can sum to, and beyond.
            for x in -70_000i128..=70_000 {
                let (got, ovf) = n.narrow(x);
                let (want, want_ovf) = ref_narrow(&big(x), fmt, mode);
                assert_eq!((big(got), ovf), (want, want_ovf), "x={x} fmt={fmt} mode={mode}");
            }
        }
    }
}

#[test]
fn exhaustive_add_and_mul_widths_up_to_8() {
    for src in all_formats(8) {
        let dst_formats =
            [IntFormat::new(src.is_signed(), src.width()).unwrap(), IntFormat::signed(9).unwrap()];
        for dst in dst_formats {
            for mode in OverflowMode::ALL {
                let n = Narrower::new(dst, mode);
                for a in src.min()..=src.max() {
                    for b in src.min()..=src.max() {
                        let (s, so) = n.add(a, b);
                        assert_eq!(
                            (big(s), so),
                            ref_narrow(&(big(a) + big(b)), dst, mode),
                            "{a}+{b} {dst} {mode}"
                        );
                        let (p, po) = n.mul(a, b);
                        assert_eq!(
                            (big(p), po),
                            ref_narrow(&(big(a) * big(b)), dst, mode),
                            "{a}*{b} {dst} {mode}"
                        );
                    }
                }
            }
        }
    }
}

fn any_format() -> impl Strategy<Value = IntFormat> {
    (any::<bool>(), 1u32..=64).prop_map(|(s, w)| IntFormat::new(s, w).unwrap())
}

fn value_in(fmt: IntFormat) -> impl Strategy<Value = i128> {
    let (lo, hi) = (fmt.min(), fmt.max());
    // Mix edge values with uniform ones: overflow bugs live at the edges.
    prop_oneof![
        Just(lo),
        Just(hi),
        Just(0i128.clamp(lo, hi)),
        (0u64..=u64::MAX).prop_map(move |u| {
            let span = (hi - lo) as u128 + 1;
            lo + ((u as u128) % span) as i128
        }),
    ]
}

fn any_mode() -> impl Strategy<Value = RoundMode> {
    proptest::sample::select(RoundMode::ALL.to_vec())
}

fn any_ovf() -> impl Strategy<Value = OverflowMode> {
    proptest::sample::select(OverflowMode::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn rounding_matches_bigint_up_to_64_bits(
        (fmt, x) in any_format().prop_flat_map(|f| (Just(f), value_in(f))),
        k in 0u32..=63,
        mode in any_mode(),
        cfrac in any::<u64>(),
    ) {
        let (lo, hi) = mode.offset_range(k);
        let span = (hi - lo) as u128 + 1;
        let c = lo + ((cfrac as u128) % span) as i128;
        let _ = fmt;
        check_round(x, k, mode, c);
    }

    #[test]
    fn rounding_of_wide_sums_matches_bigint(
        a in any::<i64>(), b in any::<i64>(), k in 0u32..=63, mode in any_mode(), cfrac in any::<u64>(),
    ) {
        // A 65-bit sum, as a 64-bit accumulator would see before narrowing.
        let (lo, hi) = mode.offset_range(k);
        let span = (hi - lo) as u128 + 1;
        let c = lo + ((cfrac as u128) % span) as i128;
        check_round(a as i128 + b as i128, k, mode, c);
    }

    #[test]
    fn add_mul_narrow_match_bigint_up_to_64_bits(
        (sfmt, a, b) in any_format().prop_flat_map(|f| (Just(f), value_in(f), value_in(f))),
        dfmt in any_format(),
        mode in any_ovf(),
    ) {
        let _ = sfmt;
        let n = Narrower::new(dfmt, mode);
        let (s, so) = n.add(a, b);
        prop_assert_eq!((big(s), so), ref_narrow(&(big(a) + big(b)), dfmt, mode));
        let (p, po) = n.mul(a, b);
        prop_assert_eq!((big(p), po), ref_narrow(&(big(a) * big(b)), dfmt, mode));
        let (m, mo) = n.narrow(a);
        prop_assert_eq!((big(m), mo), ref_narrow(&big(a), dfmt, mode));
        // Stored values are always representable.
        prop_assert!(dfmt.contains(s) && dfmt.contains(p) && dfmt.contains(m));
    }

    #[test]
    fn huge_unsigned_products_are_exact(a in (1u64 << 63)..=u64::MAX, b in (1u64 << 63)..=u64::MAX, dfmt in any_format(), mode in any_ovf()) {
        let n = Narrower::new(dfmt, mode);
        let (p, po) = n.mul(a as i128, b as i128);
        prop_assert_eq!((big(p), po), ref_narrow(&(BigInt::from(a) * BigInt::from(b)), dfmt, mode));
    }
}

#[test]
fn bias_formulas_in_docs_hold() {
    // docs/numerics.md, "Bias": over two periods of uniform residues
    // (non-negative x, one even and one odd quotient) the error sum is
    //   truncating:        S = 2n*c - n(n-1)
    //   round-to-nearest:  S = -h(h-1) + (n-h-1)(n-h) + T
    // with n = 2^k, h = 2^(k-1)+c and T the two ties' errors: 2(n-h) when
    // the tie goes up (RND, RND_INF), -2h when it goes down (RND_MIN_INF,
    // RND_ZERO), (n-h) - h for the parity modes. The bias is S / 2n.
    for k in 1..=8u32 {
        let n = 1i128 << k;
        for mode in RoundMode::ALL {
            let (lo, hi) = mode.offset_range(k);
            for c in lo..=hi {
                let (num, den) = bitmac::numerics::uniform_bias_nonneg(mode, k, c as i64).unwrap();
                let s = if mode.is_truncating() {
                    2 * n * c - n * (n - 1)
                } else {
                    let h = n / 2 + c;
                    let t = match mode {
                        RoundMode::Rnd | RoundMode::RndInf => 2 * (n - h),
                        RoundMode::RndMinInf | RoundMode::RndZero => -2 * h,
                        RoundMode::RndConv | RoundMode::RndConvOdd => (n - h) - h,
                        _ => unreachable!(),
                    };
                    -h * (h - 1) + (n - h - 1) * (n - h) + t
                };
                assert_eq!(num * 2 * n, s * den, "mode={mode} k={k} c={c}");
            }
        }
    }
}

/// The tie table in docs/numerics.md, parsed from the document itself, so
/// the doc and the code cannot drift apart.
#[test]
fn tie_table_in_docs_matches() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/numerics.md")).unwrap();
    let start = doc.find("<!-- tie-table -->").expect("tie table marker in docs/numerics.md");
    let mut rows = 0;
    for line in doc[start..].lines().skip(1) {
        let line = line.trim();
        if line.is_empty() || line.starts_with("<!--") {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(mode) = cells[0].trim_matches('`').parse::<RoundMode>() else { continue };
        // Columns: -2.5 -1.5 -0.5 +0.5 +1.5 +2.5 output LSBs = x / 2 with k = 1.
        let xs = [-5i128, -3, -1, 1, 3, 5];
        let r = Rounder::new(1, mode, 0).unwrap();
        for (x, cell) in xs.iter().zip(&cells[1..7]) {
            let want: i128 = cell.parse().unwrap_or_else(|_| panic!("bad cell {cell:?}"));
            assert_eq!(r.round(*x), want, "{mode} at {}/2", x);
            // Same answer at k = 3 (x scaled by 4): ties are ties at any k.
            let r3 = Rounder::new(3, mode, 0).unwrap();
            assert_eq!(r3.round(*x * 4), want, "{mode} at {}/2, k=3", x);
        }
        rows += 1;
    }
    assert_eq!(rows, 8, "the tie table must have one row per mode");
}

#[test]
fn offsets_avoid_ties_as_documented() {
    // Rounding-centre offset for RND with k bits is the same as half-up
    // rounding of (x - c): (x - c + 2^(k-1)) >> k.
    for k in 1..=6u32 {
        let n = 1i128 << k;
        for c in -(n / 2)..n / 2 {
            let r = Rounder::new(k, RoundMode::Rnd, c as i64).unwrap();
            for x in -300i128..300 {
                assert_eq!(r.round(x), (x - c + n / 2) >> k, "k={k} c={c} x={x}");
            }
        }
    }
}

#[test]
fn one_line_errors_for_bad_rounders() {
    let e = Rounder::new(4, RoundMode::RndConv, 8).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("offset") && msg.contains("-8..=7") && !msg.contains('\n'), "{msg}");
    assert_eq!(e.exit_code(), 2);
    let e = IntFormat::signed(65).unwrap_err();
    assert!(e.to_string().contains("1..=64"));
}

/// A rounder's `(k, mode, offset)` with `k <= 32` (the `i64` path's
/// domain) and an offset drawn from the mode's range, edges included.
fn rounder_i64() -> impl Strategy<Value = Rounder> {
    (0u32..=32, any_mode(), any::<u64>(), 0u32..4).prop_map(|(k, mode, r, edge)| {
        let (lo, hi) = mode.offset_range(k);
        let c = match edge {
            0 => lo,
            1 => hi,
            _ => lo + (r as i128).rem_euclid(hi - lo + 1),
        };
        Rounder::new(k, mode, c as i64).unwrap()
    })
}

/// Inputs over the whole `i64` domain of `round_i64` (`|x| <= 2^62`),
/// biased to the domain edges and to residues at the centre (ties).
fn x_i64(k: u32) -> impl Strategy<Value = i64> {
    let lim = 1i64 << 62;
    prop_oneof![
        -lim..=lim,
        Just(lim),
        Just(-lim),
        (-(1i64 << 40)..(1i64 << 40), -2i64..=2).prop_map(move |(q, t)| {
            // Near a multiple of 2^k, and near its midpoint.
            (q << k.min(20)) + t + if k > 0 { 1i64 << (k - 1) } else { 0 } * (q & 1)
        }),
        -70000i64..70000,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// `Rounder::round_i64` / `round_info_i64` (the engines' `i64` psum
    /// rounding) equal `round` / `round_info` in `i128` over every mode,
    /// every k the array allows (0..=32), offsets across each mode's range,
    /// and inputs across `|x| <= 2^62`.
    #[test]
    fn round_i64_matches_i128((r, x) in rounder_i64().prop_flat_map(|r| (Just(r), x_i64(r.k())))) {
        prop_assert!(r.exact_in_i64());
        let (y, info) = r.round_info(x as i128);
        let (y64, info64) = r.round_info_i64(x);
        prop_assert_eq!(y64 as i128, y);
        prop_assert_eq!(r.round_i64(x) as i128, r.round(x as i128));
        prop_assert_eq!(info64.residue, info.residue);
        prop_assert_eq!(info64.position, info.position);
        prop_assert_eq!(info64.error as i128, info.error);
        // The branch-free lane form of the psum writeback (`array::fast`).
        let lr = LaneRounder::new(&r).unwrap();
        prop_assert_eq!(lr.round(x), y64);
        prop_assert_eq!(lr.residue(x) as u64, info.residue);
        // (k = 0 rounds nothing: no tie.)
        prop_assert_eq!(r.k() > 0 && lr.residue(x) == lr.centre(), info.position == Position::At);
    }

    /// `Requantizer::scale_i64` (the output stage's i64 path) equals
    /// `scale` wherever `x * 2^max(shift, 0)` lies in int32, and declines
    /// (`None`) exactly outside it; both roundings, every normalized
    /// multiplier shape.
    #[test]
    fn requant_scale_i64_matches_i128(
        m0 in (1i32 << 30)..=i32::MAX,
        shift in -31i32..=30,
        single in any::<bool>(),
        x in prop_oneof![
            (i32::MIN as i64)..=(i32::MAX as i64),
            -4096i64..=4096,
            any::<i64>().prop_map(|v| v >> 20),
            Just(i32::MIN as i64),
            Just(i32::MAX as i64),
        ],
    ) {
        use bitmac::requant::{Multiplier, RequantRounding, Requantizer};
        let rounding = if single { RequantRounding::Single } else { RequantRounding::Double };
        let rq = Requantizer::new(Multiplier { m0, shift }, rounding, IntFormat::signed(32).unwrap(), false).unwrap();
        let fits = (i32::MIN as i128..=i32::MAX as i128).contains(&((x as i128) << shift.max(0)));
        match rq.scale_i64(x) {
            Some(v) => {
                prop_assert!(fits);
                prop_assert_eq!(v as i128, rq.scale(x as i128));
            }
            None => prop_assert!(!fits),
        }
        // The output stage's whole i64 element (code, saturated, tie,
        // overflow) against `ChannelRequant::apply`.
        use bitmac::ppu::{ChannelRequant, Scaler};
        let cr = ChannelRequant::new(vec![Scaler::Fixed(rq)], 3, -128, 127).unwrap();
        match cr.apply_fixed_i64(x, &rq) {
            Some(got) => prop_assert_eq!(got, cr.apply(x as i128, 0)),
            None => prop_assert!(!fits),
        }
    }
}

/// The same, exhaustively: every mode, k in 0..=6, every allowed offset,
/// every x in -300..300, and the domain edges.
#[test]
fn round_i64_matches_i128_exhaustive_small() {
    for mode in RoundMode::ALL {
        for k in 0..=6u32 {
            let (lo, hi) = mode.offset_range(k);
            for c in lo..=hi {
                let r = Rounder::new(k, mode, c as i64).unwrap();
                for x in (-300i64..300).chain([1 << 62, -(1 << 62), (1 << 62) - 1, -(1 << 62) + 1]) {
                    let (y, info) = r.round_info(x as i128);
                    let (y64, info64) = r.round_info_i64(x);
                    assert_eq!(
                        (y64 as i128, info64.residue, info64.position, info64.error as i128),
                        (y, info.residue, info.position, info.error),
                        "{mode} k={k} c={c} x={x}"
                    );
                    let lr = LaneRounder::new(&r).unwrap();
                    assert_eq!(
                        (lr.round(x), lr.residue(x) as u64, k > 0 && lr.residue(x) == lr.centre()),
                        (y64, info.residue, info.position == Position::At),
                        "lane form: {mode} k={k} c={c} x={x}"
                    );
                }
            }
        }
    }
}
