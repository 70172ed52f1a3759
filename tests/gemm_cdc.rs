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
    let base = format!(
        r#"{{"array": {{"rows": 4, "cols": 4, "dataflow": "ws"}},
            "weights": {{"bits": 8, "signed": true}}, "activations": {{"bits": 8, "signed": true}},
            "accumulator": {{"bits": {acc_bits}, "overflow": "SAT"}},
            "psum": {{"drop_bits": 2, "rounding": "RND_CONV", "offset": 0}},
            "requant": {{"rounding": "double", "relu": false, "out_bits": 8, "out_signed": true}},
            "clock": {{"period_ps": 1000}}"#
    );
    let single = HwConfig::from_json_str(&format!("{base}}}"), "single").unwrap();
    let cdc = HwConfig::from_json_str(
        &format!(r#"{base}, "cdc": {{"host_period_ps": {host_ps}, "fifo_depth": {depth}, "sync_stages": {sync}}}}}"#),
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
    }
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
