//! Layers against direct references written here: conv2d (stride, padding,
//! NCHW/OIHW) and dense against a direct loop nest with the bias added
//! before requantization; the output-error statistic against its
//! definition; per-run merging; determinism across thread counts.

use bitmac::array::{Engine, Matrix, Stats};
use bitmac::hw::HwConfig;
use bitmac::layers::{conv2d, dense, run_gemm, Conv2d};
use bitmac::numerics::IntFormat;
use bitmac::requant::{quantize_multiplier, RequantRounding, Requantizer};
use rand::{Rng, SeedableRng};

fn hw(bits: u32, overflow: &str, dataflow: &str) -> HwConfig {
    let text = format!(
        r#"{{"array": {{"rows": 4, "cols": 5, "dataflow": "{dataflow}"}},
        "weights": {{"bits": 8, "signed": true}}, "activations": {{"bits": 8, "signed": true}},
        "accumulator": {{"bits": {bits}, "overflow": "{overflow}"}},
        "requant": {{"rounding": "double", "out_bits": 8, "out_signed": true}},
        "clock": {{"period_ps": 1000}}}}"#
    );
    HwConfig::from_json_str(&text, "test").unwrap()
}

fn rq(m: f64, relu: bool) -> Requantizer {
    Requantizer::new(
        quantize_multiplier(m).unwrap(),
        RequantRounding::Double,
        IntFormat::signed(8).unwrap(),
        relu,
    )
    .unwrap()
}

#[test]
fn conv2d_matches_direct_convolution() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let s = Conv2d {
        batch: 2,
        in_ch: 3,
        height: 5,
        width: 6,
        out_ch: 4,
        kh: 3,
        kw: 2,
        stride: (2, 1),
        padding: (1, 2),
    };
    let x: Vec<i32> = (0..2 * 3 * 5 * 6).map(|_| rng.gen_range(-128..=127)).collect();
    let w: Vec<i32> = (0..4 * 3 * 3 * 2).map(|_| rng.gen_range(-128..=127)).collect();
    let bias: Vec<i32> = (0..4).map(|_| rng.gen_range(-5000..=5000)).collect();
    let r = rq(0.002, true);
    let (oh, ow) = ((5 + 2 - 3) / 2 + 1, (6 + 4 - 2) + 1);
    for df in ["ws", "os", "is"] {
        let h = hw(32, "WRAP", df);
        let res = conv2d(&h, &s, &x, &w, Some(&bias), &r, Engine::Fast).unwrap();
        assert_eq!(res.shape, [2, 4, oh, ow]);
        for b in 0..2 {
            for o in 0..4 {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = bias[o] as i64;
                        for c in 0..3 {
                            for ky in 0..3 {
                                for kx in 0..2 {
                                    let iy = (oy * 2 + ky) as i64 - 1;
                                    let ix = ox as i64 + kx as i64 - 2;
                                    if iy < 0 || ix < 0 || iy >= 5 || ix >= 6 {
                                        continue;
                                    }
                                    let xv = x[((b * 3 + c) * 5 + iy as usize) * 6 + ix as usize] as i64;
                                    acc += xv * w[((o * 3 + c) * 3 + ky) * 2 + kx] as i64;
                                }
                            }
                        }
                        let got = res.out[((b * 4 + o) * oh + oy) * ow + ox];
                        assert_eq!(got, r.apply(acc as i128).0, "{df} b{b} o{o} y{oy} x{ox}");
                    }
                }
            }
        }
        // A narrow saturating accumulator: the two engines still agree.
        let h = hw(12, "SAT_SYM", df);
        let f = conv2d(&h, &s, &x, &w, Some(&bias), &r, Engine::Fast).unwrap();
        let c = conv2d(&h, &s, &x, &w, Some(&bias), &r, Engine::Cycle).unwrap();
        assert_eq!(f, c);
        assert!(f.gemm.stats.overflows() > 0);
    }
}

#[test]
fn dense_uses_pytorch_layout_and_bias() {
    let x = Matrix::new(2, 3, vec![1, -2, 3, 4, 5, -6]).unwrap();
    let wt = Matrix::new(2, 3, vec![7, 8, 9, -1, -2, -3]).unwrap(); // out x in
    let r = rq(1.0 / 64.0, false);
    let res = dense(&hw(32, "WRAP", "ws"), &x, &wt, Some(&[100, -100]), &r, Engine::Cycle).unwrap();
    let want_acc = [7 - 16 + 27, -1 + 4 - 9, 28 + 40 - 54, -4 - 10 + 18];
    assert_eq!(res.exact, want_acc.to_vec());
    for (i, &a) in want_acc.iter().enumerate() {
        assert_eq!(res.out[i], r.apply((a + [100, -100][i % 2]) as i128).0);
    }
}

#[test]
fn output_error_statistic_follows_its_definition() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let (m, k, n) = (7, 40, 9);
    let a = Matrix::new(m, k, (0..m * k).map(|_| rng.gen_range(-128..=127)).collect()).unwrap();
    let w = Matrix::new(k, n, (0..k * n).map(|_| rng.gen_range(-128..=127)).collect()).unwrap();
    let bias: Vec<i32> = (0..n).map(|_| rng.gen_range(-3000..=3000)).collect();
    let r = rq(0.0007, false);
    let h = hw(16, "SAT", "ws");
    let res = run_gemm(&h, &a, &w, Some(&bias), &r, Engine::Fast).unwrap();
    let (mut sum, mut sq) = (0f64, 0f64);
    for i in 0..m * n {
        let exact: i64 = (0..k).map(|t| a.get(i / n, t) as i64 * w.get(t, i % n) as i64).sum();
        let y = (r.real_multiplier() * (exact + bias[i % n] as i64) as f64).clamp(-128.0, 127.0);
        let e = res.out[i] as f64 - y;
        sum += e;
        sq += e * e;
    }
    assert!((res.stats.out_err_sum - sum).abs() < 1e-9);
    assert!((res.stats.out_err_sq - sq).abs() < 1e-9);
    assert_eq!(res.stats.outputs, (m * n) as u64);
}

#[test]
fn stats_merge_shifts_the_first_overflow_and_adds() {
    let mut a = Stats { cycles: 100, overflows_array: 2, max_abs_acc: 7, gemms: 1, ..Default::default() };
    let b = Stats {
        cycles: 50,
        overflows_array: 1,
        max_abs_acc: 9,
        gemms: 1,
        first_overflow: Some(bitmac::array::OverflowEvent { cycle: 3, row: 1, col: 2 }),
        ..Default::default()
    };
    a.merge(&b);
    assert_eq!(a.cycles, 150);
    assert_eq!(a.overflows_array, 3);
    assert_eq!(a.max_abs_acc, 9);
    assert_eq!(a.first_overflow.unwrap().cycle, 103);
    let json = a.to_json();
    let gemms = json.find("\"gemms\"").unwrap();
    let cycles = json.find("\"cycles\"").unwrap();
    let a2q = json.find("\"a2q_bits_weights\"").unwrap();
    assert!(gemms < cycles && cycles < a2q, "stable field order");
}

#[test]
fn fast_engine_is_deterministic_across_thread_counts() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let (m, k, n) = (33, 70, 150);
    let a = Matrix::new(m, k, (0..m * k).map(|_| rng.gen_range(-128..=127)).collect()).unwrap();
    let w = Matrix::new(k, n, (0..k * n).map(|_| rng.gen_range(-128..=127)).collect()).unwrap();
    let r = rq(0.001, false);
    let h = hw(14, "SAT", "ws");
    let many = run_gemm(&h, &a, &w, None, &r, Engine::Fast).unwrap();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| run_gemm(&h, &a, &w, None, &r, Engine::Fast).unwrap());
    assert_eq!(many, one);
    assert_eq!(many.stats.to_json(), one.stats.to_json());
}
