//! Properties of the LSQ quantizers, checked with proptest against an
//! independent textbook implementation (std `f32::round_ties_even` and
//! explicit comparisons) and against the definitions in `docs/lsq.md`.
#![allow(clippy::needless_range_loop)] // parallel arrays indexed together

use bitmac::lsq::{code_range, round_ties_even_small, LsqConfig, LsqKind, LsqVariant};
use proptest::prelude::*;

fn kinds() -> impl Strategy<Value = (LsqKind, LsqVariant, u32)> {
    (
        prop_oneof![Just(LsqKind::Act), Just(LsqKind::Weight)],
        prop_oneof![Just(LsqVariant::Seed), Just(LsqVariant::Paper)],
        2u32..=16,
    )
}

/// Any non-NaN f32 bit pattern (covers subnormals, ±0, ±inf, huge values).
fn any_x() -> impl Strategy<Value = f32> {
    any::<u32>().prop_map(f32::from_bits).prop_filter("not NaN", |v| !v.is_nan())
}

/// A positive step that the config accepts for the widest range.
fn any_step() -> impl Strategy<Value = f32> {
    prop_oneof![
        (1u32..0x7000_0000).prop_map(f32::from_bits),
        (0.001f32..100.0),
        Just(f32::from_bits(1)),
        Just(1e-30f32),
        Just(1e30f32),
    ]
}

/// The seed's forward written the obvious way (std rounding, std clamp).
fn textbook(x: f32, s: f32, lo: i32, hi: i32) -> (f32, i32) {
    let xbin = (x / s).clamp(lo as f32, hi as f32).round_ties_even();
    (xbin * s, xbin as i32)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn forward_matches_textbook((k, v, nbit) in kinds(), s in any_step(), xs in prop::collection::vec(any::<u32>(), 1..40)) {
        let Ok(cfg) = LsqConfig::new(k, v, nbit, s) else { return Ok(()) };
        let (lo, hi) = code_range(k, v, nbit);
        for bits in xs {
            let x = f32::from_bits(bits);
            if x.is_nan() { continue; }
            let (y, c) = cfg.quantize(x);
            let (ty, tc) = textbook(x, s, lo, hi);
            prop_assert_eq!((y.to_bits(), c), (ty.to_bits(), tc), "x={:e} s={:e}", x, s);
        }
    }

    #[test]
    fn code_in_range_and_y_is_code_times_s((k, v, nbit) in kinds(), s in any_step(), seed in any::<u64>()) {
        let Ok(cfg) = LsqConfig::new(k, v, nbit, s) else { return Ok(()) };
        let (lo, hi) = code_range(k, v, nbit);
        let mut rng = seed;
        for _ in 0..64 {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let kk = (rng >> 33) as i64 % i64::from(hi - lo + 5) + i64::from(lo) - 2;
            let x = (kk as f32 + ((rng >> 20) & 0xff) as f32 / 256.0) * s;
            if x.is_nan() { continue; }
            let (y, c) = cfg.quantize(x);
            prop_assert!(c >= lo && c <= hi, "code {} outside [{}, {}]", c, lo, hi);
            prop_assert!(y == c as f32 * s, "y {:e} != {}*{:e}", y, c, s);
            prop_assert!(y == cfg.dequantize(c));
            // -0.0 only from a negative x (or -0.0).
            if y.to_bits() == (-0.0f32).to_bits() { prop_assert!(x.is_sign_negative()); }
        }
    }

    #[test]
    fn monotonic_in_x((k, v, nbit) in kinds(), s in any_step(), a in any_x(), b in any_x()) {
        let Ok(cfg) = LsqConfig::new(k, v, nbit, s) else { return Ok(()) };
        let (a, b) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(cfg.quantize_code(a) <= cfg.quantize_code(b));
        prop_assert!(cfg.quantize(a).0 <= cfg.quantize(b).0);
    }

    #[test]
    fn nearest_level_inside_range((k, v, nbit) in kinds(), s in (0.01f32..10.0), frac in 0.0f32..1.0, kk in -40000i32..40000) {
        let cfg = LsqConfig::new(k, v, nbit, s).unwrap();
        let (lo, hi) = code_range(k, v, nbit);
        let x = (kk as f32 + frac) * s;
        let xs = x / s;
        let c = cfg.quantize_code(x);
        if xs > lo as f32 && xs < hi as f32 {
            let err = (f64::from(xs) - f64::from(c)).abs();
            prop_assert!(err <= 0.5, "xs={} code={}", xs, c);
            if err == 0.5 { prop_assert_eq!(c % 2, 0, "tie not to even: xs={}", xs); }
        } else if xs <= lo as f32 {
            prop_assert_eq!(c, lo);
        } else {
            prop_assert_eq!(c, hi);
        }
    }

    #[test]
    fn backward_definitions((k, v, nbit) in kinds(), s in any_step(), x in prop::collection::vec(any_x(), 0..50), g in any::<u64>()) {
        let Ok(cfg) = LsqConfig::new(k, v, nbit, s) else { return Ok(()) };
        let (lo, hi) = code_range(k, v, nbit);
        let gy: Vec<f32> = (0..x.len()).map(|i| ((g.rotate_left(i as u32 * 7) & 0xffff) as f32 - 32768.0) / 4096.0).collect();
        let b = cfg.backward(&x, &gy).unwrap();
        let mut sum = 0f64;
        for i in 0..x.len() {
            let xs = x[i] / s;
            let inside = xs > lo as f32 && xs < hi as f32;
            let pass = inside || (v == LsqVariant::Seed && k == LsqKind::Weight);
            let want = if pass { gy[i] } else { 0.0 };
            prop_assert_eq!(b.grad_x[i].to_bits(), want.to_bits());
            let t = if inside { xs.round_ties_even() - xs } else { xs.clamp(lo as f32, hi as f32).round_ties_even() };
            sum += f64::from(t * gy[i]);
        }
        let mut want = sum as f32;
        if v == LsqVariant::Paper && !x.is_empty() {
            want *= (1.0 / (x.len() as f64 * f64::from(hi)).sqrt()) as f32;
        }
        prop_assert_eq!(b.grad_s.to_bits(), want.to_bits());
    }

    #[test]
    fn magic_rounding_matches_std(v in -65536.0f32..65536.0) {
        prop_assert_eq!(round_ties_even_small(v).to_bits(), v.round_ties_even().to_bits());
    }
}

/// Every half-integer k+0.5 of the widest range, its f32 neighbours, and the
/// integers: the small-range rounding equals `f32::round_ties_even`.
#[test]
fn magic_rounding_on_every_tie() {
    for k in -70000i32..70000 {
        for base in [k as f32, k as f32 + 0.5] {
            for v in [
                base,
                f32::from_bits(base.to_bits().wrapping_add(1)),
                f32::from_bits(base.to_bits().wrapping_sub(1)),
            ] {
                if v.is_nan() || v.abs() > 65536.0 {
                    continue;
                }
                assert_eq!(round_ties_even_small(v).to_bits(), v.round_ties_even().to_bits(), "v={v:e}");
            }
        }
    }
}

/// Exhaustive over every f32 with 2^-2 <= |v| < 2^16 (300 M values; ~1 s in
/// release): the small-range rounding equals `f32::round_ties_even`.
#[test]
fn magic_rounding_exhaustive() {
    let lo = 0.25f32.to_bits();
    let hi = 65536.0f32.to_bits();
    let mut bad = 0u64;
    for bits in lo..hi {
        for v in [f32::from_bits(bits), -f32::from_bits(bits)] {
            bad += u64::from(round_ties_even_small(v).to_bits() != v.round_ties_even().to_bits());
        }
    }
    assert_eq!(bad, 0);
    // Below 1/4 every value rounds to a zero of its own sign.
    for v in [0.0f32, -0.0, 1e-45, -1e-45, 0.2499999, -0.2499999] {
        assert_eq!(round_ties_even_small(v).to_bits(), 0.0f32.copysign(v).to_bits());
    }
}

#[test]
fn errors_are_one_line_and_name_the_field() {
    let cfg = LsqConfig::new(LsqKind::Act, LsqVariant::Seed, 4, 0.5).unwrap();
    let e = cfg.backward(&[1.0, 2.0], &[1.0]).unwrap_err();
    assert!(e.is_input() && e.to_string().starts_with("grad_y: length 1"), "{e}");
    let e = cfg.forward(&[1.0, f32::NAN]).unwrap_err();
    assert!(e.to_string().starts_with("x[1]: NaN"), "{e}");
    let e = cfg.backward(&[f32::NAN], &[1.0]).unwrap_err();
    assert!(e.to_string().starts_with("x[0]: NaN"), "{e}");
    for (nbit, step, field) in
        [(1, 1.0, "nbit"), (17, 1.0, "nbit"), (4, 0.0, "step"), (4, -1.0, "step"), (4, f32::INFINITY, "step")]
    {
        let e = LsqConfig::new(LsqKind::Weight, LsqVariant::Paper, nbit, step).unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with(&format!("{field}: ")) && !m.contains('\n') && m.contains("allowed"), "{m}");
    }
    let mut y = vec![0.0; 2];
    let mut c = vec![0; 1];
    assert!(cfg.forward_into(&[1.0, 2.0], &mut y, &mut c).is_err());
}

#[test]
fn infinities_clamp_to_the_range_ends() {
    for v in [LsqVariant::Seed, LsqVariant::Paper] {
        for k in [LsqKind::Act, LsqKind::Weight] {
            let cfg = LsqConfig::new(k, v, 5, 0.125).unwrap();
            assert_eq!(cfg.quantize_code(f32::INFINITY), cfg.code_max());
            assert_eq!(cfg.quantize_code(f32::NEG_INFINITY), cfg.code_min());
            let b = cfg.backward(&[f32::INFINITY], &[2.0]).unwrap();
            assert_eq!(b.grad_s.to_bits(), (cfg.code_max() as f32 * 2.0 * cfg.grad_scale(1)).to_bits());
        }
    }
}
