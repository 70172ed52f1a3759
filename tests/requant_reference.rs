//! Requantization against two independent references:
//! 1. a literal transcription of gemmlowp/TFLite's int32/int64 C++ code
//!    (`SaturatingRoundingDoublingHighMul`, `RoundingDivideByPOT`,
//!    `MultiplyByQuantizedMultiplier`, and the `TFLITE_SINGLE_ROUNDING`
//!    branch), valid for int32 accumulators;
//! 2. an exact num-bigint rational evaluation of the formulas in
//!    `docs/datapath.md` ("Requantization"), for accumulators up to 64 bits.

use bitmac::numerics::IntFormat;
use bitmac::requant::{layer_multiplier, quantize_multiplier, Multiplier, RequantRounding, Requantizer};
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, ToPrimitive};
use proptest::prelude::*;

// ---- 1. literal C++ transcription (int32/int64 as in the source) ----

fn srdhm(a: i32, b: i32) -> i32 {
    let overflow = a == b && a == i32::MIN;
    let ab_64 = a as i64 * b as i64;
    let nudge: i64 = if ab_64 >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // C++ integer division truncates toward zero, as Rust's `/` does.
    let ab_x2_high32 = ((ab_64 + nudge) / (1i64 << 31)) as i32;
    if overflow {
        i32::MAX
    } else {
        ab_x2_high32
    }
}

fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let mask: i32 = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + if x < 0 { 1 } else { 0 };
    (x >> exponent) + if remainder > threshold { 1 } else { 0 }
}

fn tflite_double(x: i32, m0: i32, shift: i32) -> i32 {
    let left = if shift > 0 { shift } else { 0 };
    let right = if shift > 0 { 0 } else { -shift };
    rounding_divide_by_pot(srdhm(x.wrapping_mul(1 << left), m0), right)
}

fn tflite_single(x: i32, m0: i32, shift: i32) -> i32 {
    let total_shift = 31 - shift as i64;
    let round = 1i64 << (total_shift - 1);
    let result = (x as i64 * m0 as i64 + round) >> total_shift;
    result as i32
}

// ---- 2. exact rational reference ----

/// Nearest integer to num/den (den > 0), ties toward +inf.
fn round_half_up(num: &BigInt, den: &BigInt) -> BigInt {
    let n2: BigInt = num * 2 + den;
    let d2: BigInt = den * 2;
    n2.div_floor(&d2)
}

/// Nearest integer to num/den (den > 0), ties away from zero.
fn round_half_away(num: &BigInt, den: &BigInt) -> BigInt {
    let n2: BigInt = num.abs() * 2 + den;
    let d2: BigInt = den * 2;
    let mag = n2.div_floor(&d2);
    if num.is_negative() {
        -mag
    } else {
        mag
    }
}

fn exact(x: i64, m: Multiplier, rounding: RequantRounding) -> BigInt {
    let x = BigInt::from(x);
    let m0 = BigInt::from(m.m0);
    match rounding {
        RequantRounding::Double => {
            let left = m.shift.max(0) as u32;
            let right = (-m.shift).max(0) as u32;
            let high = round_half_up(&((x << left) * m0), &(BigInt::one() << 31u32));
            round_half_away(&high, &(BigInt::one() << right))
        }
        RequantRounding::Single => round_half_up(&(x * m0), &(BigInt::one() << (31 - m.shift) as u32)),
    }
}

fn any_multiplier() -> impl Strategy<Value = Multiplier> {
    // Real multipliers across the useful range, including shift > 0.
    (-40.0f64..8.0).prop_map(|e| quantize_multiplier(2f64.powf(e)).unwrap())
}

fn wide_out() -> IntFormat {
    IntFormat::signed(32).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn double_matches_tflite_on_int32(x in any::<i32>(), m in any_multiplier()) {
        // TFLite's left shift overflows int32 for large x; compare only where
        // the C++ code is defined.
        let left = m.shift.max(0);
        prop_assume!((x as i64) << left <= i32::MAX as i64 && (x as i64) << left >= i32::MIN as i64);
        let rq = Requantizer::new(m, RequantRounding::Double, wide_out(), false).unwrap();
        prop_assert_eq!(rq.scale(x as i128), tflite_double(x, m.m0, m.shift) as i128);
    }

    #[test]
    fn single_matches_tflite_on_int32(x in any::<i32>(), m in any_multiplier()) {
        let rq = Requantizer::new(m, RequantRounding::Single, wide_out(), false).unwrap();
        let want = (x as i64 * m.m0 as i64 + (1i64 << (30 - m.shift))) >> (31 - m.shift);
        prop_assume!(want >= i32::MIN as i64 && want <= i32::MAX as i64);
        prop_assert_eq!(rq.scale(x as i128), tflite_single(x, m.m0, m.shift) as i128);
    }

    #[test]
    fn both_match_exact_rationals_on_int64(x in any::<i64>(), m in any_multiplier(), relu in any::<bool>(), bits in 2u32..=32, signed in any::<bool>()) {
        for rounding in [RequantRounding::Double, RequantRounding::Single] {
            let out = IntFormat::new(signed, bits).unwrap();
            let rq = Requantizer::new(m, rounding, out, relu).unwrap();
            let want = exact(x, m, rounding);
            prop_assert_eq!(BigInt::from(rq.scale(x as i128)), want.clone());
            let lo = if relu { out.min().max(0) } else { out.min() };
            let clamped = want.to_i128().map(|w| w.clamp(lo, out.max())).unwrap_or(if want.is_negative() { lo } else { out.max() });
            let (code, c) = rq.apply(x as i128);
            prop_assert_eq!(code as i128, clamped);
            prop_assert_eq!(c, BigInt::from(clamped) != want);
        }
    }

    #[test]
    fn quantized_multiplier_is_close_and_normalized(e in -31.0f64..29.9) {
        let real = 2f64.powf(e);
        let m = quantize_multiplier(real).unwrap();
        prop_assert!(m.m0 >= 1 << 30);
        // m0 = round(q * 2^31): relative error at most 2^-31.
        prop_assert!(((m.real() - real) / real).abs() <= 2f64.powi(-31) * 1.0000001);
    }
}

#[test]
fn schemes_disagree_on_some_inputs_as_documented() {
    // The notes: the two schemes differ on a fraction of a percent of inputs.
    let m = quantize_multiplier(0.0123).unwrap();
    let d = Requantizer::new(m, RequantRounding::Double, wide_out(), false).unwrap();
    let s = Requantizer::new(m, RequantRounding::Single, wide_out(), false).unwrap();
    let diff = (-200_000i128..200_000).filter(|&x| d.scale(x) != s.scale(x)).count();
    assert!(diff > 0 && diff < 4_000, "{diff} of 400000 differ");
}

#[test]
fn layer_multiplier_rounds_the_product_in_f32() {
    // TFLite computes s_a*s_w in float, then divides in double.
    let (sw, sa, so) = (0.1f32, 0.3f32, 0.7f32);
    let m = layer_multiplier(sw, sa, so).unwrap();
    assert_eq!(m, (sa * sw) as f64 / so as f64);
    assert_ne!(m, sa as f64 * sw as f64 / so as f64);
    assert!(layer_multiplier(0.0, 1.0, 1.0).is_err());
    assert!(layer_multiplier(1.0, f32::NAN, 1.0).is_err());
    assert!(layer_multiplier(1.0, 1.0, -1.0).is_err());
}

#[test]
fn relu_and_output_range_clamp() {
    let m = quantize_multiplier(0.5).unwrap();
    let rq = Requantizer::new(m, RequantRounding::Double, IntFormat::unsigned(4).unwrap(), true).unwrap();
    assert_eq!(rq.apply(-10), (0, true));
    assert_eq!(rq.apply(10), (5, false));
    assert_eq!(rq.apply(100), (15, true));
    let rq = Requantizer::new(m, RequantRounding::Double, IntFormat::signed(4).unwrap(), false).unwrap();
    assert_eq!(rq.apply(-100), (-8, true));
    // shift 0: the only rounding is the doubling high-mul, ties to +inf.
    assert_eq!(rq.apply(-3), (-1, false));
    // M = 0.25 (shift -1): -6 * 0.25 = -1.5; the high-mul is exact (-3),
    // then RoundingDivideByPOT rounds -1.5 away from zero.
    let q = quantize_multiplier(0.25).unwrap();
    let rq = Requantizer::new(q, RequantRounding::Double, IntFormat::signed(4).unwrap(), false).unwrap();
    assert_eq!(rq.apply(-6), (-2, false));
    let rq = Requantizer::new(q, RequantRounding::Single, IntFormat::signed(4).unwrap(), false).unwrap();
    assert_eq!(rq.apply(-6), (-1, false)); // one rounding, ties to +inf
}
