//! Simulated rising edges per second of the CDC FIFO (tracing off,
//! scoreboard and statistics on), depth 16, S = 2, clocks 10 ns / 13.7 ns,
//! both enables always on, against an in-run baseline: a loop that only
//! merges the two rising-edge streams in time order (the irreducible part of
//! any two-clock event simulator).

use bitmac::cdc::{self, ClockPair, FifoSpec, NoObserver};
use criterion::{black_box, criterion_group, Criterion, Throughput};
use std::time::Instant;

const WORDS: u64 = 200_000;

fn run_fifo() -> u64 {
    let cfg = FifoSpec { depth: 16, sync: 2, data_width: 32, ..Default::default() }.validate().unwrap();
    let clocks = ClockPair::new(10_000, 13_700);
    let rep = cdc::simulate(&cfg, &clocks, black_box(WORDS), 100, 100, None, &mut NoObserver).unwrap();
    assert!(rep.verdict.clean);
    rep.stats.w.edges + rep.stats.r.edges
}

/// Merge two periodic edge streams until `edges` edges were produced.
fn run_baseline(edges: u64) -> u64 {
    let (pw, pr) = (black_box(10_000u64), black_box(13_700u64));
    let (mut tw, mut tr) = (0u64, 0u64);
    let mut n = 0u64;
    let mut acc = 0u64;
    while n < edges {
        let t = tw.min(tr);
        let hw = tw == t;
        let hr = tr == t;
        acc = acc.wrapping_add(t ^ (hw as u64) << 1 ^ hr as u64);
        tw += if hw { pw } else { 0 };
        tr += if hr { pr } else { 0 };
        n += hw as u64 + hr as u64;
    }
    black_box(acc);
    n
}

fn bench(c: &mut Criterion) {
    let edges = run_fifo();
    let mut g = c.benchmark_group("cdc_edges");
    g.throughput(Throughput::Elements(edges));
    g.bench_function("fifo_d16_s2_10ns_13.7ns", |b| b.iter(run_fifo));
    g.bench_function("baseline_edge_merge", |b| b.iter(|| run_baseline(edges)));
    g.finish();
}

/// Print absolute edges/s of both and their ratio: the two are timed
/// alternately, 11 times each, and the best time of each is kept (the
/// machine is shared, so the best run is the least disturbed one).
fn ratio_report() {
    let edges = run_fifo();
    let time = |f: &dyn Fn() -> u64| {
        let t0 = Instant::now();
        black_box(f());
        t0.elapsed().as_secs_f64()
    };
    let (mut tf, mut tb) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..11 {
        tf = tf.min(time(&run_fifo));
        tb = tb.min(time(&|| run_baseline(edges)));
    }
    let (ef, eb) = (edges as f64 / tf, edges as f64 / tb);
    println!(
        "cdc bench: {edges} edges; fifo {ef:.3e} edges/s; baseline edge merge {eb:.3e} edges/s; fifo/baseline = {:.3}",
        ef / eb
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    ratio_report();
    Criterion::default().configure_from_args().final_summary();
}
