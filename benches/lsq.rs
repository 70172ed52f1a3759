//! LSQ forward (and backward) throughput in elements/s, beside a trivial
//! baseline measured in the same run: `y[i] = x[i] * c` over the same data.
//! After criterion finishes, the ratio of each LSQ kernel to the baseline is
//! printed (from criterion's saved estimates), so numbers from different
//! machines are comparable.
//!
//! Run: `cargo bench --bench lsq -- --warm-up-time 1 --measurement-time 3`

use bitmac::lsq::{LsqConfig, LsqKind, LsqVariant};
use criterion::{black_box, criterion_group, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N: usize = 1 << 16;
const GROUP: &str = "lsq_forward";

fn data() -> (Vec<f32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(20_190_525);
    // Spread over a 4-bit range and beyond (step 0.05): a mix of in-range
    // values and clipped ones, with no NaN.
    let x = (0..N).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let g = (0..N).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    (x, g)
}

fn bench(c: &mut Criterion) {
    let (x, gy) = data();
    let mut y = vec![0.0f32; N];
    let mut code = vec![0i32; N];
    let mut group = c.benchmark_group(GROUP);
    group.throughput(Throughput::Elements(N as u64));

    let step = 0.05f32;
    group.bench_function("baseline_mul", |b| {
        b.iter(|| {
            let s = black_box(step);
            for (yi, xi) in y.iter_mut().zip(&x) {
                *yi = *xi * s;
            }
            black_box(&y);
        })
    });
    for (variant, kind, nbit) in [
        (LsqVariant::Seed, LsqKind::Act, 4),
        (LsqVariant::Seed, LsqKind::Weight, 8),
        (LsqVariant::Paper, LsqKind::Act, 4),
    ] {
        let cfg = LsqConfig::new(kind, variant, nbit, step).unwrap();
        let id = format!("{}_{}_{}b", variant.name(), kind.name(), nbit);
        group.bench_function(BenchmarkId::new("forward_into", &id), |b| {
            b.iter(|| {
                black_box(&cfg).forward_into(black_box(&x), &mut y, &mut code).unwrap();
                black_box((&y, &code));
            })
        });
    }
    let cfg = LsqConfig::new(LsqKind::Act, LsqVariant::Seed, 4, step).unwrap();
    group.bench_function("quantize_code_loop", |b| {
        b.iter(|| {
            let cfg = black_box(&cfg);
            for (ci, xi) in code.iter_mut().zip(&x) {
                *ci = cfg.quantize_code(*xi);
            }
            black_box(&code);
        })
    });
    // The same forward with std's round_ties_even (a libm call without
    // SSE4.1), to justify the small-range rounding in `lsq.rs`.
    group.bench_function("std_round_ties_even_forward", |b| {
        b.iter(|| {
            let s = black_box(step);
            for ((yi, ci), xi) in y.iter_mut().zip(code.iter_mut()).zip(&x) {
                let xb = (*xi / s).clamp(-7.0, 7.0).round_ties_even();
                *yi = xb * s;
                *ci = xb as i32;
            }
            black_box((&y, &code));
        })
    });
    group.bench_function("backward_seed_act_4b", |b| {
        b.iter(|| black_box(black_box(&cfg).backward(black_box(&x), black_box(&gy)).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench);

/// Print each benchmark's time relative to `baseline_mul` (criterion's mean
/// estimates of this run).
fn print_ratios() {
    let root = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("criterion")
        .join(GROUP);
    let mean = |rel: &str| -> Option<f64> {
        let text = std::fs::read_to_string(root.join(rel).join("new/estimates.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["mean"]["point_estimate"].as_f64()
    };
    let Some(base) = mean("baseline_mul") else { return };
    println!("\nratios to baseline_mul ({:.0} Melem/s), {N} elements:", N as f64 / base * 1e3);
    let ids = [
        "forward_into/seed_act_4b",
        "forward_into/seed_weight_8b",
        "forward_into/paper_act_4b",
        "quantize_code_loop",
        "std_round_ties_even_forward",
        "backward_seed_act_4b",
    ];
    for id in ids {
        if let Some(t) = mean(id) {
            println!("  {id:32} {:7.0} Melem/s  {:5.2}x baseline time", N as f64 / t * 1e3, t / base);
        }
    }
}

fn main() {
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
    print_ratios();
}
