//! MAC-array benches, each reported as a ratio against a baseline measured
//! in the same run (best of several timed runs: the machine is shared, and
//! the minimum is the least noisy estimate of a kernel's cost):
//! - fast engine, 512^3 and 2048^3 int8 GEMMs, wide accumulator (P=32 WRAP)
//!   and narrow SAT accumulator (P=16), single thread and all threads,
//!   against the strongest plain i8 x i8 -> i32 GEMM written here:
//!   pre-widened i16 operands, register-blocked (4 rows x 16 or 64 columns),
//!   compiled for the best CPU feature level present (runtime dispatch), and
//!   on AVX-512 VNNI a `vpdpwssd` kernel (the exact s8 x s8 limit); the
//!   engine three ways, each its own labelled `RATIO` line: `run_array`
//!   (weights prepared and fresh result arrays per call),
//!   `PreparedWeights::new` + `run` per call into reused `ArrayBuffers`, and
//!   the prepared weights reused across calls;
//! - cycle engine: simulated cycles per second on 16x16 and 32x32 WS arrays.
//!
//! Criterion prints its usual figures for a quick 512^3 group; the ratios
//! are printed as `RATIO ...` lines, each in wall time and in process CPU
//! time (user + sys of every thread: on a shared machine the work done, not
//! the time slices lost to other processes). `BITMAC_BENCH_BIG=0` skips
//! 2048^3, `BITMAC_BENCH_CYCLE=0` the cycle engine, `BITMAC_BENCH_FAST=0` the
//! fast engine and the baselines.

// Kernel-shaped code: rows, columns and lanes are indexed explicitly.
#![allow(clippy::needless_range_loop)]

use bitmac::array::{
    run_array, run_array_chunked, ArrayBuffers, ArrayConfig, Engine, Matrix, PreparedWeights, Simd,
};
use bitmac::hw::HwConfig;
use criterion::{criterion_group, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::Instant;

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

/// Operands pre-widened to i16 and W packed per 16-column block
/// (`[block][k][16]`), the layout the register-blocked kernels read.
struct Packed {
    m: usize,
    k: usize,
    n: usize,
    a: Vec<i16>,
    w16: Vec<i16>,
    /// W packed for `vpdpwssd`: per 64-column block, per k pair, 64 lanes of
    /// (w[2p][n], w[2p+1][n]).
    wpair: Vec<i16>,
}

fn pack(a: &[i8], w: &[i8], m: usize, k: usize, n: usize) -> Packed {
    assert!(m.is_multiple_of(4) && n.is_multiple_of(64) && k.is_multiple_of(2));
    let a: Vec<i16> = a.iter().map(|&v| v as i16).collect();
    let mut w16 = vec![0i16; k * n];
    for b in 0..n / 16 {
        for kk in 0..k {
            for x in 0..16 {
                w16[(b * k + kk) * 16 + x] = w[kk * n + b * 16 + x] as i16;
            }
        }
    }
    let mut wpair = vec![0i16; k * n];
    for b in 0..n / 64 {
        for p in 0..k / 2 {
            for x in 0..64 {
                let base = ((b * (k / 2) + p) * 64 + x) * 2;
                wpair[base] = w[(2 * p) * n + b * 64 + x] as i16;
                wpair[base + 1] = w[(2 * p + 1) * n + b * 64 + x] as i16;
            }
        }
    }
    Packed { m, k, n, a, w16, wpair }
}

/// Portable register-blocked kernel: 4 rows x 16 columns of i32
/// accumulators held in registers across the whole K loop.
#[inline(always)]
fn gemm_i16_blocked(p: &Packed, rows: std::ops::Range<usize>, out: &mut [i32]) {
    let o0 = rows.start;
    let (k, n) = (p.k, p.n);
    for i in rows.step_by(4) {
        for b in 0..n / 16 {
            let mut acc = [[0i32; 16]; 4];
            let wb = &p.w16[b * k * 16..(b + 1) * k * 16];
            for kk in 0..k {
                let wr: &[i16; 16] = wb[kk * 16..kk * 16 + 16].try_into().unwrap();
                for r in 0..4 {
                    let av = p.a[(i + r) * k + kk] as i32;
                    for x in 0..16 {
                        acc[r][x] += av * wr[x] as i32;
                    }
                }
            }
            for r in 0..4 {
                out[(i + r - o0) * n + b * 16..(i + r - o0) * n + b * 16 + 16].copy_from_slice(&acc[r]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gemm_i16_avx2(p: &Packed, rows: std::ops::Range<usize>, out: &mut [i32]) {
    gemm_i16_blocked(p, rows, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn gemm_i16_avx512(p: &Packed, rows: std::ops::Range<usize>, out: &mut [i32]) {
    gemm_i16_blocked(p, rows, out)
}

/// AVX-512 VNNI: 4 rows x 64 columns, 16 zmm accumulators, one
/// `vpdpwssd` per 32 MACs (exact: i16 x i16 products summed in i32, and
/// the int8 sums of 512 or 2048 products cannot overflow i32).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn gemm_vnni(p: &Packed, rows: std::ops::Range<usize>, out: &mut [i32]) {
    use std::arch::x86_64::*;
    let (k, n) = (p.k, p.n);
    let kp = k / 2;
    let o0 = rows.start;
    for i in rows.step_by(4) {
        for b in 0..n / 64 {
            let mut acc = [[_mm512_setzero_si512(); 4]; 4];
            let wb = p.wpair.as_ptr().add(b * kp * 128);
            for q in 0..kp {
                let w0 = _mm512_loadu_si512(wb.add(q * 128) as *const _);
                let w1 = _mm512_loadu_si512(wb.add(q * 128 + 32) as *const _);
                let w2 = _mm512_loadu_si512(wb.add(q * 128 + 64) as *const _);
                let w3 = _mm512_loadu_si512(wb.add(q * 128 + 96) as *const _);
                for r in 0..4 {
                    let ap = p.a.as_ptr().add((i + r) * k + 2 * q) as *const i32;
                    let av = _mm512_set1_epi32(ap.read_unaligned());
                    acc[r][0] = _mm512_dpwssd_epi32(acc[r][0], av, w0);
                    acc[r][1] = _mm512_dpwssd_epi32(acc[r][1], av, w1);
                    acc[r][2] = _mm512_dpwssd_epi32(acc[r][2], av, w2);
                    acc[r][3] = _mm512_dpwssd_epi32(acc[r][3], av, w3);
                }
            }
            for r in 0..4 {
                for v in 0..4 {
                    let dst = out[(i + r - o0) * n + b * 64 + v * 16..][..16].as_mut_ptr();
                    _mm512_storeu_si512(dst as *mut _, acc[r][v]);
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Base {
    Portable,
    Avx2,
    Avx512,
    Vnni,
}

fn available() -> Vec<Base> {
    let mut v = vec![Base::Portable];
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") {
            v.push(Base::Avx2);
        }
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
            v.push(Base::Avx512);
            if is_x86_feature_detected!("avx512vnni") {
                v.push(Base::Vnni);
            }
        }
    }
    v
}

fn run_base(kind: Base, p: &Packed, rows: std::ops::Range<usize>, out: &mut [i32]) {
    match kind {
        Base::Portable => gemm_i16_blocked(p, rows, out),
        // SAFETY: `available()` lists a kind only when the CPU has its features.
        #[cfg(target_arch = "x86_64")]
        Base::Avx2 => unsafe { gemm_i16_avx2(p, rows, out) },
        #[cfg(target_arch = "x86_64")]
        Base::Avx512 => unsafe { gemm_i16_avx512(p, rows, out) },
        #[cfg(target_arch = "x86_64")]
        Base::Vnni => unsafe { gemm_vnni(p, rows, out) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!(),
    }
}

/// The baseline over all rows, on `threads` threads (rows split into equal
/// runs of 4-row groups; each thread writes its own rows of `out`, which
/// kernels index from the first row of their range).
fn baseline(kind: Base, p: &Packed, out: &mut [i32], threads: usize) {
    if threads <= 1 {
        run_base(kind, p, 0..p.m, out);
        return;
    }
    let per = (p.m / 4).div_ceil(threads) * 4;
    let n = p.n;
    std::thread::scope(|s| {
        for (t, chunk) in out.chunks_mut(per * n).enumerate() {
            let r0 = t * per;
            s.spawn(move || run_base(kind, p, r0..r0 + chunk.len() / n, chunk));
        }
    });
}

/// CPU time of the whole process (every thread, live or exited), seconds:
/// `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`, nanosecond resolution. On a
/// shared machine it counts the work a run did, not the time slices other
/// processes took from it.
fn cpu_now() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The best wall time and the best process CPU time (user + sys, all
/// threads) of `reps` runs of `f`, seconds.
fn best_secs(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    // A warm-up run, except for single long runs (2048^3).
    if reps > 1 {
        f();
    }
    (0..reps)
        .map(|_| {
            let c = cpu_now();
            let t = Instant::now();
            f();
            (t.elapsed().as_secs_f64(), cpu_now() - c)
        })
        .fold((f64::INFINITY, f64::INFINITY), |(w, c), (w1, c1)| (w.min(w1), c.min(c1)))
}

/// On-CPU time of the calling thread (`/proc/thread-self/schedstat`, ns
/// resolution; Linux), or wall time where that file is missing.
fn thread_cpu_secs() -> f64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .map(|ns| ns as f64 * 1e-9)
        .unwrap_or_else(|| START.get_or_init(Instant::now).elapsed().as_secs_f64())
}

/// On-CPU seconds per call of `f`: the best of 3 groups, each running `f`
/// until the group has used at least 0.3 s of CPU (the kernel updates the
/// thread's CPU time at scheduler ticks, so single short runs are too coarse).
fn cpu_per_run(mut f: impl FnMut()) -> f64 {
    f();
    (0..3)
        .map(|_| {
            let (c0, mut reps) = (thread_cpu_secs(), 0u32);
            while thread_cpu_secs() - c0 < 0.3 {
                f();
                reps += 1;
            }
            (thread_cpu_secs() - c0) / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// A timed closure of the ratio loop.
type Job<'a> = Box<dyn FnMut() + Send + 'a>;

fn with_threads<R: Send>(n: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap().install(f)
}

fn cycle_case(rows: usize) -> (ArrayConfig, Matrix, Matrix, u64) {
    // One fold, one column tile, a long stream: the steady state of WS.
    let (m, k, n) = (16384, rows, rows);
    let cfg = hw(rows, rows, 32, "WRAP");
    let (a, w) = data(m, k, n);
    let a = Matrix::new(m, k, a.iter().map(|&v| v as i32).collect()).unwrap();
    let w = Matrix::new(k, n, w.iter().map(|&v| v as i32).collect()).unwrap();
    let cycles = bitmac::array::compute_cycles(bitmac::array::Dataflow::Ws, rows, rows, m, k, n);
    (cfg, a, w, cycles)
}

fn mats(a8: &[i8], w8: &[i8], m: usize, k: usize, n: usize) -> (Matrix, Matrix) {
    (
        Matrix::new(m, k, a8.iter().map(|&v| v as i32).collect()).unwrap(),
        Matrix::new(k, n, w8.iter().map(|&v| v as i32).collect()).unwrap(),
    )
}

fn benches(c: &mut Criterion) {
    const N: usize = 512;
    let (a8, w8) = data(N, N, N);
    let p = pack(&a8, &w8, N, N, N);
    let (a, w) = mats(&a8, &w8, N, N, N);
    let best = *available().last().unwrap();
    let wide = hw(16, 16, 32, "WRAP");
    let narrow = hw(16, 16, 16, "SAT");
    let mut out = vec![0i32; N * N];
    let mut g = c.benchmark_group("gemm512");
    g.sample_size(10);
    g.throughput(Throughput::Elements((N * N * N) as u64));
    g.bench_function(format!("baseline_{best:?}"), |b| b.iter(|| baseline(best, black_box(&p), &mut out, 1)));
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

/// `all_levels`: every SIMD level of the engine and every baseline (512^3);
/// otherwise (2048^3, where the portable builds would take minutes) only
/// the detected level and the two AVX-512 baselines (or the best one).
fn gemm_ratios(size: usize, reps: usize, all_levels: bool) {
    let (m, k, n) = (size, size, size);
    let (a8, w8) = data(m, k, n);
    let p = pack(&a8, &w8, m, k, n);
    let (a, w) = mats(&a8, &w8, m, k, n);
    let macs = (m * k * n) as f64;
    let gmacs = |t: f64| macs / t / 1e9;
    // Every baseline must compute the same product.
    let mut reference = vec![0i32; m * n];
    run_base(Base::Portable, &p, 0..m, &mut reference);
    let fast = run_array(&hw(16, 16, 32, "WRAP"), &a, &w, Engine::Fast, None).unwrap();
    assert!(fast.exact.iter().zip(&reference).all(|(&e, &r)| e == r as i64), "engine != baseline");
    for threads in [1usize, 2] {
        let mut best_base = (f64::INFINITY, Base::Portable);
        let mut best_cpu = (f64::INFINITY, Base::Portable);
        let mut out = vec![0i32; m * n];
        let kinds: Vec<Base> = if all_levels {
            available()
        } else {
            let av = available();
            av.iter()
                .copied()
                .filter(|&b| b == Base::Avx512 || b == Base::Vnni)
                .chain(av.last().copied())
                .fold(Vec::new(), |mut v, b| {
                    if !v.contains(&b) {
                        v.push(b);
                    }
                    v
                })
        };
        for kind in kinds {
            let (t, cpu) = best_secs(reps, || baseline(kind, black_box(&p), &mut out, threads));
            assert_eq!(out, reference, "{kind:?} baseline");
            println!(
                "RATIO {size}^3 {threads}t baseline {kind:?}: {:.2} GMAC/s wall, {:.2} GMAC per CPU-second",
                gmacs(t),
                gmacs(cpu)
            );
            if t < best_base.0 {
                best_base = (t, kind);
            }
            if cpu < best_cpu.0 {
                best_cpu = (cpu, kind);
            }
        }
        let (tb, kind) = best_base;
        let (cb, ckind) = best_cpu;
        for (name, bits, mode, target) in
            [("wide P=32 WRAP", 32, "WRAP", 0.5), ("narrow P=16 SAT", 16, "SAT", 0.25)]
        {
            let mut levels = vec![Simd::Portable];
            levels.extend([Simd::Avx2, Simd::Avx512].into_iter().filter(|&l| l <= Simd::detect()));
            if !all_levels {
                levels = vec![Simd::detect()];
            }
            for level in levels {
                let cfg = hw(16, 16, bits, mode).with_simd(level);
                // Three ways a user runs the engine: `run_array` (weights
                // prepared and fresh M x N result arrays per call); the
                // prepared API as one GEMM per weight set uses it
                // (`PreparedWeights::new` every call, results into reused
                // `ArrayBuffers`); and weights prepared once, reused by every
                // call (a model node running batch after batch).
                let (mut bufs, mut bufs2) = (ArrayBuffers::new(), ArrayBuffers::new());
                let pw = PreparedWeights::new(&cfg, &w).unwrap();
                let variants: [(&str, Job<'_>); 3] = [
                    ("run_array", Box::new(|| drop(run_array(&cfg, black_box(&a), &w, Engine::Fast, None)))),
                    (
                        "PreparedWeights::new + run, buffers reused",
                        Box::new(|| {
                            let pw = PreparedWeights::new(&cfg, black_box(&w)).unwrap();
                            pw.run(black_box(&a), Engine::Fast, &mut bufs).unwrap();
                        }),
                    ),
                    (
                        "prepared weights and buffers reused across calls",
                        Box::new(|| drop(pw.run(black_box(&a), Engine::Fast, &mut bufs2))),
                    ),
                ];
                for (how, mut f) in variants {
                    if !all_levels || level == Simd::detect() || how == "run_array" {
                        let (t, cpu) = with_threads(threads, || best_secs(reps, &mut f));
                        println!(
                            "RATIO {size}^3 {threads}t fast {name} [{level:?}] ({how}): {:.2} GMAC/s = {:.3} x best baseline ({kind:?} {:.2} GMAC/s) wall; {:.2} GMAC per CPU-s = {:.3} x ({ckind:?} {:.2}) CPU; target >= {target}",
                            gmacs(t),
                            tb / t,
                            gmacs(tb),
                            gmacs(cpu),
                            cb / cpu,
                            gmacs(cb)
                        );
                    }
                }
            }
        }
    }
}

fn ratios() {
    // BITMAC_BENCH_FAST=0: the cycle engine only.
    if std::env::var("BITMAC_BENCH_FAST").map_or(true, |v| v != "0") {
        gemm_ratios(512, 5, true);
        if std::env::var("BITMAC_BENCH_BIG").map_or(true, |v| v != "0") {
            gemm_ratios(2048, 1, false);
        }
    }
    if std::env::var("BITMAC_BENCH_CYCLE").is_ok_and(|v| v == "0") {
        return;
    }
    for rows in [16, 32] {
        let (cfg0, a, w, cycles) = cycle_case(rows);
        let mut levels = vec![Simd::Portable];
        levels.extend([Simd::Avx2, Simd::Avx512].into_iter().filter(|&l| l <= Simd::detect()));
        for level in levels {
            let cfg = cfg0.with_simd(level);
            let target = if rows == 16 { 2e7 } else { 5e6 };
            // Wall and on-CPU time of this thread, best of 5 each: on a
            // shared machine the CPU figure is the one that measures the
            // engine (the wall figure also measures the scheduler).
            let (wall, _) = best_secs(5, || drop(run_array(&cfg, black_box(&a), &w, Engine::Cycle, None)));
            let cpu = cpu_per_run(|| drop(run_array(&cfg, black_box(&a), &w, Engine::Cycle, None)));
            println!(
                "RATIO cycle engine {rows}x{rows} WS [{level:?}]: {:.3e} cycles/s wall, {:.3e} cycles per CPU-second (target >= {target:.0e})",
                cycles as f64 / wall,
                cycles as f64 / cpu
            );
            // The engine alone: rows streamed to a sink that keeps nothing
            // (what `bitmac gemm` runs), without the whole M x N result.
            let cpu_s = cpu_per_run(|| {
                run_array_chunked(&cfg, black_box(&a), &w, Engine::Cycle, None, 4096, |_, ac, _| {
                    black_box(ac);
                    Ok(())
                })
                .unwrap();
            });
            println!(
                "RATIO cycle engine {rows}x{rows} WS [{level:?}] streamed: {:.3e} cycles per CPU-second (target >= {target:.0e})",
                cycles as f64 / cpu_s
            );
        }
    }
}

criterion_group!(group, benches);

fn main() {
    if std::env::var("BITMAC_BENCH_RATIOS_ONLY").is_err() {
        group();
    }
    ratios();
    Criterion::default().configure_from_args().final_summary();
}
