//! The DSE engine against independent references written from
//! `docs/dse.md`: a plain per-adder fold loop on num-bigint, the exact GEMM,
//! the modular result under WRAP; the Pareto front against brute force; the
//! SVG plots are well-formed XML.

mod dse_common;
use bitmac::dse::engine::{self, Counters};
use bitmac::dse::hw::Hw;
use bitmac::dse::pareto::{self, Objective};
use bitmac::dse::svg;
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, ToPrimitive, Zero};
use proptest::prelude::*;
use serde_json::Value;

fn hw(rows: i64, width: i64, ovf: &str, k: i64, mode: &str, offset: i64, dataflow: &str) -> Option<Hw> {
    let mut v: Value = serde_json::from_str(dse_common::BASE).unwrap();
    v["array"]["rows"] = rows.into();
    v["array"]["dataflow"] = dataflow.into();
    v["acc"]["width"] = width.into();
    v["acc"]["overflow"] = ovf.into();
    v["psum"]["dropped_bits"] = k.into();
    v["psum"]["round"] = mode.into();
    v["psum"]["offset"] = offset.into();
    v["weight"]["bits"] = 8.into();
    v["act"]["bits"] = 8.into();
    Hw::from_value(&v).ok()
}

/// Overflow handling written from the docs table, on BigInt.
fn narrow_big(x: &BigInt, width: u32, ovf: &str) -> (BigInt, bool) {
    let min = -(BigInt::one() << (width - 1));
    let max = (BigInt::one() << (width - 1)) - 1;
    if x >= &min && x <= &max {
        if ovf == "SAT_SYM" && x == &min {
            return (-max.clone(), true);
        }
        return (x.clone(), false);
    }
    let r = match ovf {
        "WRAP" => {
            let m = BigInt::one() << width;
            let y = x.mod_floor(&m);
            if y > max {
                y - m
            } else {
                y
            }
        }
        "SAT" => {
            if x > &max {
                max
            } else {
                min
            }
        }
        "SAT_ZERO" => BigInt::zero(),
        _ => {
            if x > &max {
                max.clone()
            } else {
                -max
            }
        }
    };
    (r, true)
}

/// Dropping k bits, written from the numerics docs on BigInt: q = floor(x/2^k),
/// r = x - q*2^k, centre h = 2^(k-1)+c.
fn round_big(x: &BigInt, k: u32, mode: &str, c: i64) -> BigInt {
    if k == 0 {
        return x.clone();
    }
    let p = BigInt::one() << k;
    match mode {
        "TRN" => (x + c).div_floor(&p),
        "TRN_ZERO" => {
            let y = x + c;
            let q = y.abs().div_floor(&p);
            if y.is_negative() {
                -q
            } else {
                q
            }
        }
        _ => {
            let (q, r) = x.div_mod_floor(&p);
            let h = (BigInt::one() << (k - 1)) + c;
            if r > h {
                q + 1
            } else if r < h {
                q
            } else {
                let lo = q.clone();
                let hi = q + 1;
                let even = |v: &BigInt| v.is_even();
                match mode {
                    "RND" => hi,
                    "RND_MIN_INF" => lo,
                    "RND_ZERO" => {
                        if lo >= BigInt::zero() {
                            lo
                        } else {
                            hi
                        }
                    }
                    "RND_INF" => {
                        if lo >= BigInt::zero() {
                            hi
                        } else {
                            lo
                        }
                    }
                    "RND_CONV" => {
                        if even(&lo) {
                            lo
                        } else {
                            hi
                        }
                    }
                    _ => {
                        if even(&lo) {
                            hi
                        } else {
                            lo
                        }
                    }
                }
            }
        }
    }
}

/// The fold semantics of docs/dse.md, one adder at a time.
#[allow(clippy::too_many_arguments)]
fn reference(
    a: &[i32],
    m: usize,
    kd: usize,
    w: &[i32],
    n: usize,
    rows: usize,
    width: u32,
    ovf: &str,
    k: u32,
    mode: &str,
    c: i64,
    os: bool,
) -> (Vec<i64>, u64, u64) {
    let fold = if os { kd } else { rows };
    let mut out = vec![];
    let (mut ovfs, mut rounds) = (0u64, 0u64);
    for i in 0..m {
        for j in 0..n {
            let mut acc = BigInt::zero();
            let mut k0 = 0;
            loop {
                let k1 = (k0 + fold).min(kd);
                for t in k0..k1 {
                    let (v, o) = narrow_big(
                        &(acc.clone() + BigInt::from(a[i * kd + t]) * BigInt::from(w[j * kd + t])),
                        width,
                        ovf,
                    );
                    acc = v;
                    ovfs += o as u64;
                }
                if k1 == kd {
                    break;
                }
                if k > 0 {
                    let y = round_big(&acc, k, mode, c);
                    rounds += 1;
                    let (p, o) = narrow_big(&y, width - k, ovf);
                    ovfs += o as u64;
                    acc = p << k;
                }
                k0 = k1;
            }
            out.push(acc.to_i64().unwrap());
        }
    }
    (out, ovfs, rounds)
}

const MODES: &[&str] =
    &["TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV", "RND_CONV_ODD"];
const OVFS: &[&str] = &["WRAP", "SAT", "SAT_ZERO", "SAT_SYM"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn engine_matches_bigint_fold_reference(
        m in 1usize..4, n in 1usize..4, kd in 1usize..40, rows in 1i64..12,
        width in 6i64..28, ovf in 0usize..4, k in 0i64..6, mode in 0usize..8, off_raw in any::<u32>(),
        os in any::<bool>(), seed in any::<u64>(),
    ) {
        let k = k.min(width - 1);
        let (mode, ovf) = (MODES[mode], OVFS[ovf]);
        let dataflow = if os { "os" } else { "ws" };
        // An offset inside the range the mode allows at this k.
        let (lo, hi) = mode.parse::<bitmac::numerics::RoundMode>().unwrap().offset_range(k as u32);
        let off = (lo + (off_raw as i128) % (hi - lo + 1)) as i64;
        let h = hw(rows, width, ovf, k, mode, off, dataflow).unwrap();
        let mut s = seed;
        let mut next = |lo: i32, hi: i32| { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); lo + ((s >> 33) % ((hi - lo + 1) as u64)) as i32 };
        let a: Vec<i32> = (0..m * kd).map(|_| next(0, 255)).collect();
        let w: Vec<i32> = (0..n * kd).map(|_| next(-128, 127)).collect();
        let mut c = Counters::default();
        let got = engine::gemm(&h, &a, m, kd, &w, n, None, &mut c);
        let (want, ovfs, rounds) = reference(&a, m, kd, &w, n, rows as usize, width as u32, ovf, k as u32, mode, off, os);
        prop_assert_eq!(got, want);
        prop_assert_eq!(c.overflows, ovfs);
        prop_assert_eq!(c.roundings, rounds);
    }

    #[test]
    fn wide_accumulators_are_exact_and_wrap_is_modular(
        m in 1usize..4, n in 1usize..4, kd in 1usize..60, rows in 1i64..9, width in 8i64..40, seed in any::<u64>(),
    ) {
        let mut s = seed;
        let mut next = |lo: i32, hi: i32| { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); lo + ((s >> 33) % ((hi - lo + 1) as u64)) as i32 };
        let a: Vec<i32> = (0..m * kd).map(|_| next(0, 255)).collect();
        let w: Vec<i32> = (0..n * kd).map(|_| next(-128, 127)).collect();
        let exact = engine::gemm_exact(&a, m, kd, &w, n, None);
        let h = hw(rows, width, "WRAP", 0, "RND", 0, "ws").unwrap();
        let got = engine::gemm(&h, &a, m, kd, &w, n, None, &mut Counters::default());
        let modulus = 1i128 << width;
        for (g, e) in got.iter().zip(&exact) {
            let r = (*e as i128).rem_euclid(modulus);
            let r = if r >= modulus / 2 { r - modulus } else { r };
            prop_assert_eq!(*g as i128, r);
        }
        let wide = hw(rows, 40, "SAT", 0, "RND", 0, "ws").unwrap();
        let got = engine::gemm(&wide, &a, m, kd, &w, n, None, &mut Counters::default());
        prop_assert_eq!(got, exact);
    }

    #[test]
    fn pareto_front_matches_brute_force(pts in prop::collection::vec((0u8..6, 0u8..6, 0u8..6), 0..60)) {
        let c: Vec<Objective> = pts.iter().map(|(q, a, y)| Objective { quality: *q as f64, area: *a as f64, cycles: *y as f64 }).collect();
        // Brute force: i is on the front iff no j is >= in quality, <= in
        // area and cycles, and differs somewhere.
        let brute: Vec<usize> = (0..c.len()).filter(|&i| {
            !(0..c.len()).any(|j| {
                let (p, q) = (&c[j], &c[i]);
                p.quality >= q.quality && p.area <= q.area && p.cycles <= q.cycles && (p.quality, p.area, p.cycles) != (q.quality, q.area, q.cycles)
            })
        }).collect();
        prop_assert_eq!(pareto::front(&c), brute);
    }
}

#[test]
fn cycles_follow_the_documented_formula() {
    // ws: folds = ceil(K/R) * ceil(N/C), each 2R + C + M - 2 cycles.
    let h = hw(8, 24, "SAT", 0, "RND", 0, "ws").unwrap(); // R = 8, C = 4
    assert_eq!(engine::gemm_cycles(&h, 10, 20, 9), 3 * 3 * (16 + 4 + 10 - 2));
    let h = hw(8, 24, "SAT", 0, "RND", 0, "os").unwrap();
    assert_eq!(engine::gemm_cycles(&h, 10, 20, 9), 2 * 3 * (16 + 4 + 20 - 2));
}

/// A minimal well-formedness check: every tag closes in order, attributes
/// are quoted, the root is <svg>, entities are the five XML ones.
fn check_xml(s: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = s;
    let mut root = None;
    while let Some(lt) = rest.find('<') {
        let text = &rest[..lt];
        assert!(!text.contains('>'), "stray > in text");
        for (i, _) in text.match_indices('&') {
            let ent = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| ent.starts_with(e)),
                "bad entity"
            );
        }
        let gt = rest[lt..].find('>').expect("unclosed tag") + lt;
        let tag = &rest[lt + 1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.trim()), "mismatched close");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let name: String = body.chars().take_while(|c| !c.is_whitespace()).collect();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '-'),
            "bad tag {tag}"
        );
        assert_eq!(body.matches('"').count() % 2, 0, "unbalanced quotes in {tag}");
        if root.is_none() {
            root = Some(name.clone());
        } else {
            assert!(!stack.is_empty(), "second root element {name}");
        }
        if !self_closing {
            stack.push(name);
        }
    }
    assert!(rest.trim().is_empty());
    assert!(stack.is_empty(), "unclosed {stack:?}");
    assert_eq!(root.as_deref(), Some("svg"));
}

#[test]
fn plots_are_well_formed_svg() {
    let series = vec![
        svg::Series { name: "RND <&> \"x\"".into(), points: vec![(1.0, 0.5), (2.0, 0.75), (3.0, 0.9)] },
        svg::Series { name: "TRN".into(), points: vec![(1.0, -0.25)] },
    ];
    check_xml(&svg::line_plot("t & <t>", "sub", "x", "y", &series));
    check_xml(&svg::line_plot("empty", "", "x", "y", &[]));
    check_xml(&svg::pareto_plot("p", "s", "area", "q", &[(1.0, 2.0), (3.0, 4.0)], &[(3.0, 4.0)]));
    // And the files a real run writes.
    let d = dse_common::scratch("svg");
    let spec = d.join("spec.json");
    dse_common::write(&spec, &dse_common::small_spec());
    bitmac::dse::run(&dse_common::opts(&spec, &d.join("o"))).unwrap();
    for f in ["plot_quality.svg", "plot_bias.svg", "plot_pareto.svg"] {
        check_xml(&std::fs::read_to_string(d.join("o").join(f)).unwrap());
    }
}
