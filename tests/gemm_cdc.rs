//! `bitmac gemm` with the array in its own clock domain: whatever the clock
//! ratio, FIFO depth and synchronizer stages, the host receives exactly the
//! single-clock results (the crossed words are the ones returned, so a lossy
//! crossing would show here).

use bitmac::array::{Engine, Matrix};
use bitmac::hw::HwConfig;
use bitmac::layers::run_gemm;
use bitmac::requant::{quantize_multiplier, Requantizer};
use bitmac::sim::gemm_cdc;
use proptest::prelude::*;

fn hw(host_ps: u64, depth: u64, sync: u64, acc_bits: u32) -> (HwConfig, HwConfig) {
    hw_with(host_ps, depth, sync, acc_bits, "ws", "")
}

/// The single-clock config and the same with a `cdc` section (`extra`: more
/// `cdc` fields, e.g. `, "read_stages": 2`).
fn hw_with(
    host_ps: u64,
    depth: u64,
    sync: u64,
    acc_bits: u32,
    df: &str,
    extra: &str,
) -> (HwConfig, HwConfig) {
    let base = format!(
        r#"{{"array": {{"rows": 4, "cols": 4, "dataflow": "{df}"}},
            "weights": {{"bits": 8, "signed": true}}, "activations": {{"bits": 8, "signed": true}},
            "accumulator": {{"bits": {acc_bits}, "overflow": "SAT"}},
            "psum": {{"drop_bits": 2, "rounding": "RND_CONV", "offset": 0}},
            "requant": {{"rounding": "double", "relu": false, "out_bits": 8, "out_signed": true}},
            "clock": {{"period_ps": 1000}}"#
    );
    let single = HwConfig::from_json_str(&format!("{base}}}"), "single").unwrap();
    let cdc = HwConfig::from_json_str(
        &format!(r#"{base}, "cdc": {{"host_period_ps": {host_ps}, "fifo_depth": {depth}, "sync_stages": {sync}{extra}}}}}"#),
        "cdc",
    )
    .unwrap();
    (single, cdc)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn crossing_changes_no_bit(
        host_ps in 100u64..5000, depth_log in 1u32..6, sync in 2u64..5,
        m in 1usize..9, k in 1usize..20, n in 1usize..9, seed in any::<u64>(), acc_bits in 12u32..33,
        stage_acc in any::<bool>(),
    ) {
        let (single, cdc) = hw(host_ps, 1 << depth_log, sync, acc_bits);
        let mut x = seed;
        let mut next = || { x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((x >> 33) % 256) as i32 - 128 };
        let a = Matrix::new(m, k, (0..m * k).map(|_| next()).collect()).unwrap();
        let w = Matrix::new(k, n, (0..k * n).map(|_| next()).collect()).unwrap();
        let rq = Requantizer::new(quantize_multiplier(0.0123).unwrap(), single.requant().rounding, single.requant().out, false).unwrap();
        let want = run_gemm(&single, &a, &w, None, &rq, Engine::Fast).unwrap();
        let (got, totals) = gemm_cdc(&cdc, &a, &w, None, &rq, Engine::Fast, None, stage_acc).unwrap();
        prop_assert_eq!(&got.out, &want.out);
        prop_assert_eq!(&got.acc, &want.acc);
        prop_assert_eq!(totals.words_in as usize, m * k);
        prop_assert_eq!(totals.words_out as usize, m * n);
        prop_assert_eq!(totals.compute_cycles, want.stats.cycles);
        prop_assert!(totals.array_cycles > totals.compute_cycles);
        prop_assert!(totals.in_occupancy.len() <= (1usize << depth_log) + 1);
        prop_assert_eq!((totals.lost, totals.duplicated, totals.reordered), (0, 0, 0));
    }

    /// Overlap (docs/cdc.md §18) with every dataflow, FIFO variant and
    /// seeded metastability: the host receives exactly the single-clock
    /// results, the scoreboards of both FIFOs find nothing, and the
    /// overlapped run is never slower than the back-to-back one by more than
    /// the clock alignment (a few edges of each clock).
    #[test]
    fn overlap_changes_no_bit(
        host_ps in 200u64..4000, depth_log in 1u32..6, sync in 2u64..5, df in 0usize..3,
        m in 1usize..7, k in 1usize..14, n in 1usize..7, seed in any::<u64>(),
        stages in 0u32..4, registered in any::<bool>(), meta in any::<bool>(), stage_acc in any::<bool>(),
    ) {
        let df = ["ws", "is", "os"][df];
        let depth = 1u64 << depth_log;
        let mut extra = format!(r#", "read_stages": {stages}, "read_data": "{}", "almost_full": {}, "almost_empty": 0, "seed": {}"#,
            if registered { "registered" } else { "fwft" }, depth, seed % 1000);
        if meta {
            let lim = host_ps.min(1000) - 1;
            extra.push_str(&format!(r#", "meta": {{"setup_ps": {}, "hold_ps": {}}}"#, lim / 3, lim / 3));
        }
        let (single, cdc) = hw_with(host_ps, depth, sync, 32, df, &extra);
        let mut x = seed;
        let mut next = || { x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((x >> 33) % 256) as i32 - 128 };
        let a = Matrix::new(m, k, (0..m * k).map(|_| next()).collect()).unwrap();
        let w = Matrix::new(k, n, (0..k * n).map(|_| next()).collect()).unwrap();
        let rq = Requantizer::new(quantize_multiplier(0.0123).unwrap(), single.requant().rounding, single.requant().out, false).unwrap();
        let want = run_gemm(&single, &a, &w, None, &rq, Engine::Fast).unwrap();
        let (got, t) = gemm_cdc(&cdc, &a, &w, None, &rq, Engine::Fast, None, stage_acc).unwrap();
        prop_assert_eq!(&got.out, &want.out);
        prop_assert_eq!(&got.acc, &want.acc);
        prop_assert_eq!((t.lost, t.duplicated, t.reordered), (0, 0, 0));
        prop_assert_eq!(t.compute_cycles, want.stats.cycles);
        // The compute cannot end before C array edges, nor the output before it.
        prop_assert!(t.time_ps >= t.compute_cycles * 1000);
        let slack = 4 * (host_ps + 1000) * (sync + 4);
        prop_assert!(t.time_ps <= t.back_to_back_ps + slack, "{} vs {}", t.time_ps, t.back_to_back_ps);
    }
}

/// The overlap's counts re-derived from the rules of docs/cdc.md §18 by a
/// direct, cycle-by-cycle stepper over the two FIFOs' per-word records.
#[test]
fn overlap_counts_follow_the_documented_rules() {
    use bitmac::cdc::overlap::{gemm_schedule, overlap};
    use bitmac::hw::Dataflow;
    for (df, host, depth) in [(Dataflow::Ws, 1370u64, 4u64), (Dataflow::Os, 400, 2), (Dataflow::Is, 2900, 8)]
    {
        let (m, k, n) = (5usize, 11usize, 6usize);
        let sched = gemm_schedule(df, 4, 3, m, k, n);
        let cfg =
            bitmac::cdc::FifoSpec { depth, sync: 2, data_width: 8, ..Default::default() }.validate().unwrap();
        let win: Vec<u64> = (0..(m * k) as u64).map(|i| i * 37 % 256).collect();
        let wout: Vec<u64> = (0..(m * n) as u64).map(|i| i * 11 % 256).collect();
        let ov = overlap(&cfg, &cfg, host, 1000, &win, &wout, &sched).unwrap();
        assert_eq!(ov.tin.popped, win);
        assert_eq!(ov.tout.popped, wout);
        // Compute cycle c runs at the first array edge after cycle c-1's
        // edge at which every word due by c (this or any later word needed
        // at or before c) has been delivered.
        let mut e: i64 = -1;
        let mut edge_of = Vec::new();
        for c in 0..sched.cycles {
            let due = (0..win.len())
                .filter(|&w| sched.need[w..].iter().any(|&nd| nd <= c))
                .map(|w| ov.tin.pop_edge[w] as i64)
                .max();
            e = (e + 1).max(due.unwrap_or(0));
            edge_of.push(e as u64);
        }
        assert_eq!(ov.compute_end_edge, *edge_of.last().unwrap());
        assert_eq!(ov.compute_stalls, ov.compute_end_edge + 1 - sched.cycles);
        // Output word j is written at an array edge after the edge of the
        // cycle that made it (and every earlier word) final.
        for j in 0..wout.len() {
            let r = sched.ready[..=j].iter().max().copied().unwrap();
            assert!(ov.tout.push_edge[j] > edge_of[r as usize], "{df:?} word {j}");
        }
        assert_eq!(ov.time_ps, *ov.tout.pop_time_ps.last().unwrap());
    }
}

/// The hardware config's `cdc` options are validated with their JSON paths.
#[test]
fn cdc_options_errors_name_the_field() {
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/hw/cdc.json")).unwrap();
    for (field, value, needle) in [
        ("read_stages", "4", "cdc.read_stages"),
        ("read_data", "\"fast\"", "cdc.read_data"),
        ("almost_full", "0", "cdc.almost_full"),
        ("almost_full", "17", "cdc.almost_full"),
        ("almost_empty", "16", "cdc.almost_empty"),
        ("meta", r#"{"setup_ps": 1000, "hold_ps": 0}"#, "cdc.meta.setup_ps"),
        ("meta", r#"{"setup_ps": 500, "hold_ps": 500}"#, "cdc.meta.hold_ps"),
        ("meta", r#"{"setup_ps": 5}"#, "hold_ps"),
    ] {
        let mut v: serde_json::Value = serde_json::from_str(&base).unwrap();
        v["cdc"][field] = serde_json::from_str(value).unwrap();
        let err = HwConfig::from_json_str(&v.to_string(), "hw").unwrap_err().to_string();
        assert!(err.contains(needle), "{field}={value}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// Metastability on in both datapath FIFOs, several seeds: the scoreboard
/// proves no word lost, duplicated or reordered, and the host gets the
/// single-clock results; different seeds draw different events.
#[test]
fn datapath_metastability_scoreboard_is_clean() {
    let mut events = std::collections::BTreeSet::new();
    for seed in 0..6u64 {
        let extra = format!(r#", "meta": {{"setup_ps": 300, "hold_ps": 300}}, "seed": {seed}"#);
        let (single, cdc) = hw_with(1370, 4, 2, 32, "ws", &extra);
        let a = Matrix::new(6, 13, (0..78).map(|i| (i * 29 % 256) - 128).collect()).unwrap();
        let w = Matrix::new(13, 5, (0..65).map(|i| (i * 17 % 256) - 128).collect()).unwrap();
        let rq = Requantizer::new(
            quantize_multiplier(0.0123).unwrap(),
            single.requant().rounding,
            single.requant().out,
            false,
        )
        .unwrap();
        let want = run_gemm(&single, &a, &w, None, &rq, Engine::Fast).unwrap();
        let (got, t) = gemm_cdc(&cdc, &a, &w, None, &rq, Engine::Fast, None, false).unwrap();
        assert_eq!(got.out, want.out, "seed {seed}");
        assert_eq!((t.lost, t.duplicated, t.reordered), (0, 0, 0), "seed {seed}");
        assert!(t.meta_events > 0, "seed {seed}");
        events.insert((t.meta_events, t.time_ps));
    }
    assert!(events.len() > 1, "every seed gave the same run: {events:?}");
}

#[test]
fn gemm_cli_reports_clock_domains() {
    let dir = std::env::temp_dir().join(format!("bitmac-gemm-cdc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hwp = dir.join("hw.json");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/hw/cdc.json")).unwrap();
    std::fs::write(&hwp, text).unwrap();
    let a = bitmac::npy::NpyArray::new(
        vec![3, 5],
        bitmac::npy::Dtype::U8,
        (0..15).map(|i| i * 7 % 256).collect(),
    )
    .unwrap();
    let w = bitmac::npy::NpyArray::new(vec![5, 2], bitmac::npy::Dtype::I8, (0..10).map(|i| i - 5).collect())
        .unwrap();
    bitmac::npy::write_npy(&dir.join("a.npy"), &a).unwrap();
    bitmac::npy::write_npy(&dir.join("w.npy"), &w).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bitmac"))
        .args(["gemm", "--hw", hwp.to_str().unwrap(), "--a"])
        .arg(dir.join("a.npy"))
        .arg("--w")
        .arg(dir.join("w.npy"))
        .arg("--out")
        .arg(dir.join("o.npy"))
        .args(["--stage", "acc"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("clock domains") && err.contains("input FIFO") && err.contains("output FIFO"),
        "{err}"
    );
    assert!(err.contains("overlapped:") && err.contains("back to back"), "{err}");
    let o = bitmac::npy::read_npy(&dir.join("o.npy")).unwrap();
    // Exact GEMM (wide accumulator, no psum rounding in the cdc preset).
    for i in 0..3 {
        for j in 0..2 {
            let want: i64 = (0..5).map(|t| a.data[i * 5 + t] * w.data[t * 2 + j]).sum();
            assert_eq!(o.data[i * 2 + j], want);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The shipped `cdc` preset shows the overlap in `bitmac run --json`: the
/// end-to-end time beats the back-to-back time, no word is lost.
#[test]
fn cdc_preset_run_shows_overlap() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bitmac"))
        .args(["run", "--json", "--hw", &format!("{root}/models/hw/cdc.json")])
        .args(["--model", &format!("{root}/models/mlp_w4a4.json")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &v["cdc"];
    let (t, b2b) = (c["time_ps"].as_u64().unwrap(), c["back_to_back_ps"].as_u64().unwrap());
    assert!(t < b2b, "overlapped {t} ps vs back to back {b2b} ps");
    // The compute alone takes C array cycles; the overlap cannot beat that.
    assert!(t >= c["compute_cycles"].as_u64().unwrap() * 1000);
    assert_eq!(
        (c["lost"].as_u64(), c["duplicated"].as_u64(), c["reordered"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
}
