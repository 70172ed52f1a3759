//! Rounding kernels of `numerics`: `Rounder::round` per mode and
//! `Narrower::narrow`, as ops/s, each beside a trivial baseline (a plain
//! arithmetic shift) measured in the same run; the ratios are printed as
//! `RATIO ...` lines at the end.

use bitmac::numerics::{IntFormat, Narrower, OverflowMode, RoundMode, Rounder};
use criterion::{criterion_group, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::Instant;

const LEN: usize = 1 << 14;
const K: u32 = 6;

fn inputs() -> Vec<i128> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    (0..LEN).map(|_| rng.gen_range(-(1i128 << 40)..(1i128 << 40))).collect()
}

fn shift_all(xs: &[i128]) -> i128 {
    xs.iter().fold(0i128, |s, &x| s.wrapping_add(x >> K))
}

fn round_all(r: &Rounder, xs: &[i128]) -> i128 {
    xs.iter().fold(0i128, |s, &x| s.wrapping_add(r.round(x)))
}

fn narrow_all(n: &Narrower, xs: &[i128]) -> i128 {
    xs.iter().fold(0i128, |s, &x| s.wrapping_add(n.narrow(x).0))
}

fn benches(c: &mut Criterion) {
    let xs = inputs();
    let mut g = c.benchmark_group("rounding");
    g.throughput(Throughput::Elements(LEN as u64));
    g.bench_function("baseline_shift", |b| b.iter(|| shift_all(black_box(&xs))));
    for mode in RoundMode::ALL {
        let r = Rounder::new(K, mode, 0).unwrap();
        g.bench_function(format!("round_{}", mode.name()), |b| b.iter(|| round_all(&r, black_box(&xs))));
    }
    for mode in OverflowMode::ALL {
        let n = Narrower::new(IntFormat::signed(32).unwrap(), mode);
        g.bench_function(format!("narrow_{}", mode.name()), |b| b.iter(|| narrow_all(&n, black_box(&xs))));
    }
    g.finish();
}

fn median(reps: usize, mut f: impl FnMut() -> i128) -> f64 {
    black_box(f());
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[reps / 2]
}

fn ratios() {
    let xs = inputs();
    let base = median(201, || shift_all(black_box(&xs)));
    println!("RATIO baseline shift: {:.3e} ops/s", LEN as f64 / base);
    for mode in RoundMode::ALL {
        let r = Rounder::new(K, mode, 0).unwrap();
        let t = median(201, || round_all(&r, black_box(&xs)));
        println!(
            "RATIO Rounder::round {:<13} {:.3e} ops/s, {:.2}x baseline speed",
            mode.name(),
            LEN as f64 / t,
            base / t
        );
    }
    for mode in OverflowMode::ALL {
        let n = Narrower::new(IntFormat::signed(32).unwrap(), mode);
        let t = median(201, || narrow_all(&n, black_box(&xs)));
        println!(
            "RATIO Narrower::narrow {:<9} {:.3e} ops/s, {:.2}x baseline speed",
            mode.name(),
            LEN as f64 / t,
            base / t
        );
    }
}

criterion_group!(group, benches);

fn main() {
    group();
    ratios();
    Criterion::default().configure_from_args().final_summary();
}
