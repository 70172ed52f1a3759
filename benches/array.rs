//! MAC-array benches, each reported as a ratio against a baseline measured
//! in the same run:
//! - fast engine, 512x512x512 int8 GEMM, wide accumulator (P=32 WRAP) and
//!   narrow SAT accumulator (P=16), against a plain cache-blocked
//!   i8 x i8 -> i32 GEMM written here (both single-threaded for the ratio);
//! - cycle engine: simulated cycles per second on 16x16 and 32x32 WS arrays.
//!
//! Criterion prints its usual per-bench figures; the ratios are printed at
//! the end as `RATIO ...` lines (median of several timed runs).

use bitmac::array::{run_array, ArrayConfig, Engine, Matrix};
use bitmac::hw::HwConfig;
use criterion::{criterion_group, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::Instant;

const N: usize = 512;

fn hw(rows: usize, cols: usize, bits: u32, overflow: &str) -> ArrayConfig {
    let text = format!(
        r#"{{"array": {{"rows": {rows}, "cols": {cols}, "dataflow": "ws"}},
        "weights": {{"bits": 8, "signed": true}}, "activations": {{"bits": 8, "signed": true}},
        "accumulator": {{"bits": {bits}, "overflow": "{overflow}"}},
        "requant": {{"rounding": "double", "out_bits": 8, "out_signed": true}},
        "clock": {{"period_ps": 1000}}}}"#
    );
    ArrayConfig::from_hw(&HwConfig::from_json_str(&text, "bench").unwrap()).unwrap()
}

fn data(m: usize, k: usize, n: usize) -> (Vec<i8>, Vec<i8>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    ((0..m * k).map(|_| rng.gen()).collect(), (0..k * n).map(|_| rng.gen()).collect())
}

/// The baseline: a plain cache-blocked i8 x i8 -> i32 GEMM (column blocks
/// of 64 so the W block stays in cache, k-inner accumulation into an i32
/// row, autovectorized).
fn baseline_gemm(a: &[i8], w: &[i8], m: usize, k: usize, n: usize, out: &mut [i32]) {
    const NB: usize = 64;
    for n0 in (0..n).step_by(NB) {
        let nb = NB.min(n - n0);
        for i in 0..m {
            let mut acc = [0i32; NB];
            let acc = &mut acc[..nb];
            for (kk, &av) in a[i * k..(i + 1) * k].iter().enumerate() {
                let av = av as i32;
                for (s, &wv) in acc.iter_mut().zip(&w[kk * n + n0..kk * n + n0 + nb]) {
                    *s += av * wv as i32;
                }
            }
            out[i * n + n0..i * n + n0 + nb].copy_from_slice(acc);
        }
    }
}

fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[reps / 2]
}

fn one_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(f)
}

fn cycle_case(rows: usize) -> (ArrayConfig, Matrix, Matrix, u64) {
    // One fold, one column tile, a long stream: the steady state of WS.
    let (m, k, n) = (4096, rows, rows);
    let cfg = hw(rows, rows, 32, "WRAP");
    let (a, w) = data(m, k, n);
    let a = Matrix::new(m, k, a.iter().map(|&v| v as i32).collect()).unwrap();
    let w = Matrix::new(k, n, w.iter().map(|&v| v as i32).collect()).unwrap();
    let cycles = bitmac::array::compute_cycles(bitmac::array::Dataflow::Ws, rows, rows, m, k, n);
    (cfg, a, w, cycles)
}

fn benches(c: &mut Criterion) {
    let (a8, w8) = data(N, N, N);
    let a = Matrix::new(N, N, a8.iter().map(|&v| v as i32).collect()).unwrap();
    let w = Matrix::new(N, N, w8.iter().map(|&v| v as i32).collect()).unwrap();
    let wide = hw(16, 16, 32, "WRAP");
    let narrow = hw(16, 16, 16, "SAT");
    let mut out = vec![0i32; N * N];
    let mut g = c.benchmark_group("gemm512");
    g.sample_size(10);
    g.throughput(Throughput::Elements((N * N * N) as u64));
    g.bench_function("baseline_i8_i32", |b| b.iter(|| baseline_gemm(black_box(&a8), &w8, N, N, N, &mut out)));
    g.bench_function("fast_wide_p32_wrap", |b| {
        b.iter(|| run_array(&wide, black_box(&a), &w, Engine::Fast, None).unwrap())
    });
    g.bench_function("fast_narrow_p16_sat", |b| {
        b.iter(|| run_array(&narrow, black_box(&a), &w, Engine::Fast, None).unwrap())
    });
    g.finish();
    let mut g = c.benchmark_group("cycle_ws");
    g.sample_size(10);
    for rows in [16, 32] {
        let (cfg, a, w, cycles) = cycle_case(rows);
        g.throughput(Throughput::Elements(cycles));
        g.bench_function(format!("{rows}x{rows}"), |b| {
            b.iter(|| run_array(&cfg, black_box(&a), &w, Engine::Cycle, None).unwrap())
        });
    }
    g.finish();
}

fn ratios() {
    let (a8, w8) = data(N, N, N);
    let a = Matrix::new(N, N, a8.iter().map(|&v| v as i32).collect()).unwrap();
    let w = Matrix::new(N, N, w8.iter().map(|&v| v as i32).collect()).unwrap();
    let mut out = vec![0i32; N * N];
    let base = median_secs(7, || baseline_gemm(black_box(&a8), &w8, N, N, N, &mut out));
    let wide = hw(16, 16, 32, "WRAP");
    let narrow = hw(16, 16, 16, "SAT");
    let t_wide =
        one_thread(|| median_secs(5, || drop(run_array(&wide, black_box(&a), &w, Engine::Fast, None))));
    let t_narrow =
        one_thread(|| median_secs(5, || drop(run_array(&narrow, black_box(&a), &w, Engine::Fast, None))));
    let t_wide_mt = median_secs(5, || drop(run_array(&wide, black_box(&a), &w, Engine::Fast, None)));
    let gmacs = |t: f64| (N * N * N) as f64 / t / 1e9;
    println!("RATIO baseline i8xi8->i32 512^3: {:.3} s ({:.2} GMAC/s)", base, gmacs(base));
    println!(
        "RATIO fast wide (P=32 WRAP, 1 thread) / baseline speed = {:.2} ({:.2} GMAC/s; target >= 0.5)",
        base / t_wide,
        gmacs(t_wide)
    );
    println!(
        "RATIO fast narrow (P=16 SAT, 1 thread) / baseline speed = {:.2} ({:.2} GMAC/s; target >= 0.2)",
        base / t_narrow,
        gmacs(t_narrow)
    );
    println!("RATIO fast wide (all threads) / baseline speed = {:.2}", base / t_wide_mt);
    for rows in [1, 4, 16, 32] {
        let (cfg, a, w, cycles) = cycle_case(rows);
        let t = median_secs(3, || drop(run_array(&cfg, black_box(&a), &w, Engine::Cycle, None)));
        let pe_rate = cycles as f64 * (rows * rows) as f64 / t;
        println!(
            "RATIO cycle engine {rows}x{rows} WS: {:.3e} cycles/s ({:.3e} PE-updates/s; PE-update rate / baseline MAC rate = {:.3})",
            cycles as f64 / t,
            pe_rate,
            pe_rate / ((N * N * N) as f64 / base)
        );
    }
}

criterion_group!(group, benches);

fn main() {
    group();
    ratios();
    Criterion::default().configure_from_args().final_summary();
}
