//! The energy model (`docs/energy.md`): the table's formulas pass through
//! the cited Horowitz points, the access and zero-product counts equal
//! brute-force counts, and bad tables are one-line errors naming the field.

use bitmac::energy::{self, Accesses, EnergyTable, GemmShape};
use bitmac::hw::{Dataflow, HwConfig};
use proptest::prelude::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[test]
fn table_passes_through_the_cited_points() {
    let t = EnergyTable::default();
    assert!(close(t.mul_pj(8, 8), 0.2) && close(t.mul_pj(32, 32), 3.1));
    assert!(close(t.add_pj(8), 0.03) && close(t.add_pj(32), 0.1));
    assert!(close(t.sram_pj(8 << 10, 64), 10.0));
    assert!(close(t.sram_pj(32 << 10, 64), 20.0));
    assert!(close(t.sram_pj(1 << 20, 64), 100.0));
    assert!(close(t.sram_pj(32 << 10, 8), 2.5), "scales with the word width");
    assert!(close(t.dram_pj(64), 1950.0) && close(t.dram_pj(8), 1950.0 / 8.0));
    // Monotone in width and capacity.
    assert!(t.mul_pj(4, 4) < t.mul_pj(4, 8) && t.mul_pj(4, 8) < t.mul_pj(8, 8));
    assert!(t.add_pj(12) < t.add_pj(24));
    let caps = [1u64 << 10, 4 << 10, 8 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20];
    assert!(caps.windows(2).all(|w| t.sram_pj(w[0], 64) < t.sram_pj(w[1], 64)));
}

/// Access counts by walking the folds one by one (an independent form of
/// the closed forms in `Accesses::of`).
fn walk(df: Dataflow, r: u64, c: u64, m: u64, k: u64, n: u64) -> Accesses {
    let tiles = |len: u64, t: u64| (0..len.div_ceil(t)).map(move |i| t.min(len - i * t));
    let mut a = Accesses::default();
    match df {
        Dataflow::Ws => {
            for kt in tiles(k, r) {
                for nt in tiles(n, c) {
                    a.filter_sram_reads += kt * nt;
                    a.ifmap_sram_reads += m * kt;
                }
                a.ofmap_sram_writes += m * n;
            }
        }
        Dataflow::Os => {
            for mt in tiles(m, r) {
                for nt in tiles(n, c) {
                    a.ifmap_sram_reads += mt * k;
                    a.filter_sram_reads += k * nt;
                    a.ofmap_sram_writes += mt * nt;
                }
            }
        }
        Dataflow::Is => {
            for kt in tiles(k, r) {
                for mt in tiles(m, c) {
                    a.ifmap_sram_reads += kt * mt;
                    a.filter_sram_reads += kt * n;
                }
                a.ofmap_sram_writes += m * n;
            }
        }
    }
    a.ofmap_sram_reads = a.ofmap_sram_writes - m * n;
    a.dram_reads = m * k + k * n;
    a.dram_writes = m * n;
    a
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn accesses_equal_the_fold_walk(df in 0usize..3, r in 1u64..9, c in 1u64..9, m in 1u64..40, k in 1u64..40, n in 1u64..40) {
        let df = Dataflow::ALL[df];
        prop_assert_eq!(Accesses::of(df, r as usize, c as usize, m, k, n), walk(df, r, c, m, k, n));
    }

    #[test]
    fn zero_products_equal_brute_force(m in 1usize..7, k in 1usize..7, n in 1usize..7, seed in any::<u64>()) {
        // Codes in -1..=1, so zeros are common.
        let mut x = seed;
        let mut next = || { x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); ((x >> 33) % 3) as i32 - 1 };
        let a: Vec<i32> = (0..m * k).map(|_| next()).collect();
        let w: Vec<i32> = (0..k * n).map(|_| next()).collect();
        let mut brute = 0u64;
        for i in 0..m { for j in 0..n { for q in 0..k {
            brute += (a[i * k + q] * w[q * n + j] == 0) as u64;
        }}}
        // A stored as i16, W as i32: both storage widths count the same.
        let am = bitmac::array::Matrix::new_i16(m, k, a.iter().map(|&v| v as i16).collect()).unwrap();
        let wm = bitmac::array::Matrix::new(k, n, w.clone()).unwrap();
        prop_assert_eq!(energy::zero_products(&am, &wm), brute);
        let a32 = bitmac::array::Matrix::new(m, k, a.clone()).unwrap();
        prop_assert_eq!(energy::zero_products(&a32, &wm), brute);
    }
}

fn shape(zero: Option<u64>) -> GemmShape {
    GemmShape {
        dataflow: Dataflow::Ws,
        rows: 4,
        cols: 4,
        m: 10,
        k: 9,
        n: 6,
        act_bits: 8,
        weight_bits: 4,
        acc_bits: 20,
        sram_bytes: [8 << 10, 8 << 10, 32 << 10],
        zero_products: zero,
        requantized: 60,
        out_bits: 8,
        dram_words: None,
    }
}

#[test]
fn breakdown_adds_up_and_zero_skipping_only_saves_multiplies() {
    let t = EnergyTable::default();
    let b = energy::gemm_energy(&t, &shape(Some(100)));
    let macs = 10.0 * 9.0 * 6.0;
    assert!(close(b.mul_pj, macs * t.mul_pj(8, 4)), "no skipping unless the table asks for it");
    assert!(close(b.add_pj, macs * t.add_pj(20)));
    assert!(close(b.requant_pj, 60.0 * (t.mul_pj(20, 32) + t.add_pj(32))));
    assert!(close(b.total(), b.mul_pj + b.add_pj + b.reg_pj + b.sram_pj + b.dram_pj + b.requant_pj));
    let skip = EnergyTable { skip_zero_products: true, ..t.clone() };
    let s = energy::gemm_energy(&skip, &shape(Some(100)));
    assert_eq!(s.skipped_products, 100);
    assert!(close(s.mul_pj, (macs - 100.0) * t.mul_pj(8, 4)));
    assert!(close(s.total(), b.total() - 100.0 * t.mul_pj(8, 4)));
}

fn hw_with(extra: &str) -> String {
    let base =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/hw/default.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&base).unwrap();
    let e: serde_json::Value = serde_json::from_str(extra).unwrap();
    for (key, val) in e.as_object().unwrap() {
        v[key] = val.clone();
    }
    v.to_string()
}

#[test]
fn hw_config_carries_memory_and_energy() {
    let hw = HwConfig::from_json_str(
        &hw_with(r#"{"memory": {"ifmap_sram_kb": 64}, "energy": {"dram_64b_pj": 1300}}"#),
        "hw.json",
    )
    .unwrap();
    assert_eq!(hw.sram_bytes(), [64 << 10, 256 << 10, 128 << 10]);
    assert_eq!(hw.energy().dram_64b_pj, 1300.0);
    let b = energy::for_hw(&hw, 16, 16, 16, None, true);
    assert!(b.total() > 0.0 && b.dram_pj > 0.0);
    // Absent sections: SCALE-Sim's SRAM sizes and Horowitz's table.
    let d = HwConfig::from_json_str(&hw_with("{}"), "hw.json").unwrap();
    assert_eq!(d.sram_bytes(), [256 << 10, 256 << 10, 128 << 10]);
    assert_eq!(*d.energy(), EnergyTable::default());
}

#[test]
fn bad_tables_name_the_field() {
    for (extra, field) in [
        (r#"{"energy": {"mul_8x8_pj": -1}}"#, "energy.mul_8x8_pj"),
        (r#"{"energy": {"dram_64b_pj": 0}}"#, "energy.dram_64b_pj"),
        (r#"{"energy": {"sram_64b_32kb_pj": 5}}"#, "energy"),
        (r#"{"memory": {"ofmap_sram_kb": 0}}"#, "memory.ofmap_sram_kb"),
        (r#"{"energy": {"nope": 1}}"#, "nope"),
    ] {
        let e = HwConfig::from_json_str(&hw_with(extra), "hw.json").unwrap_err().to_string();
        assert!(e.contains(field) && e.contains("hw.json") && !e.contains('\n'), "{extra}: {e}");
    }
}

#[test]
fn gemm_energy_uses_the_operands_and_the_cli_writes_it() {
    use bitmac::npy::{write_npy, Dtype, NpyArray};
    let d = std::env::temp_dir().join(format!("bitmac-energy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let hw_path = d.join("hw.json");
    std::fs::write(&hw_path, hw_with(r#"{"energy": {"skip_zero_products": true}}"#)).unwrap();
    let (m, k, n) = (5usize, 7usize, 3usize);
    // Every third activation and every second weight is zero.
    let a: Vec<i64> = (0..m * k).map(|i| if i % 3 == 0 { 0 } else { (i % 5) as i64 + 1 }).collect();
    let w: Vec<i64> = (0..k * n).map(|i| if i % 2 == 0 { 0 } else { (i % 7) as i64 - 3 }).collect();
    let mut zeros = 0u64;
    for i in 0..m {
        for j in 0..n {
            for q in 0..k {
                zeros += (a[i * k + q] * w[q * n + j] == 0) as u64;
            }
        }
    }
    write_npy(&d.join("a.npy"), &NpyArray::new(vec![m, k], Dtype::I8, a).unwrap()).unwrap();
    write_npy(&d.join("w.npy"), &NpyArray::new(vec![k, n], Dtype::I8, w).unwrap()).unwrap();
    let p = |s: &str| d.join(s).display().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bitmac"))
        .args(["gemm", "--hw", &p("hw.json"), "--a", &p("a.npy"), "--w", &p("w.npy"), "--out", &p("o.npy")])
        .args(["--stage", "acc", "--energy", &p("e.json")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("e.json")).unwrap()).unwrap();
    assert_eq!(e["skipped_products"], zeros);
    let hw = HwConfig::load(&hw_path).unwrap();
    let t = hw.energy();
    let mul = ((m * k * n) as u64 - zeros) as f64 * t.mul_pj(hw.activations().width(), hw.weights().width());
    assert!(close(e["mul_pj"].as_f64().unwrap(), mul));
    assert_eq!(e["requant_pj"].as_f64().unwrap(), 0.0, "--stage acc: nothing is requantized");
    let parts: f64 = ["mul_pj", "add_pj", "reg_pj", "sram_pj", "dram_pj", "requant_pj", "static_pj"]
        .iter()
        .map(|f| e[f].as_f64().unwrap())
        .sum();
    assert!(close(e["total_pj"].as_f64().unwrap(), parts));
    let _ = std::fs::remove_dir_all(&d);
}

/// Issue 15: the static (leakage) term is docs/energy.md §3's formula,
/// transcribed here, over the GEMM's cycles with its memory stalls, so a
/// slower DRAM (more stalls) costs energy and a zero table turns it off.
#[test]
fn static_energy_is_the_documented_formula_and_stalls_cost_energy() {
    let (m, k, n) = (40u64, 50u64, 30u64);
    let mem = |bw: u64| {
        format!(
            r#"{{"memory": {{"ifmap_sram_kb": 4, "filter_sram_kb": 2, "ofmap_sram_kb": 1, "dram_bytes_per_cycle": {bw}}}}}"#
        )
    };
    let mut prev = None;
    for bw in [64u64, 4, 1] {
        let hw = HwConfig::from_json_str(&hw_with(&mem(bw)), "hw.json").unwrap();
        let plan =
            bitmac::memory::plan(&bitmac::memory::Layout::of_hw(&hw), m as usize, k as usize, n as usize);
        let b = energy::for_hw(&hw, m, k, n, None, true);
        // Independent transcription: 16x16 PEs of 8-bit operands and a
        // 32-bit accumulator, 7 KiB of SRAM, a 1000 ps clock, Aladdin's
        // leakage powers (mW) and the SRAM bit estimate.
        let pe = 0.08 * 64.0 / 1024.0 + 0.0023 * 32.0 / 32.0 + 0.00007 * 48.0;
        let sram = 0.00007 / 4.0 * 8.0 * (7 * 1024) as f64;
        let want = plan.cycles as f64 * 1.0 * (256.0 * pe + sram);
        assert!(close(b.static_pj, want), "bw {bw}: {} vs {want}", b.static_pj);
        assert!(close(
            b.total(),
            b.mul_pj + b.add_pj + b.reg_pj + b.sram_pj + b.dram_pj + b.requant_pj + want
        ));
        if let Some((cycles, st)) = prev {
            assert!(plan.cycles > cycles && b.static_pj > st, "bw {bw}: stalls cost energy");
        }
        prev = Some((plan.cycles, b.static_pj));
    }
    let off = r#"{"energy": {"leak_mul_32x32_mw": 0, "leak_add_32_mw": 0, "leak_reg_bit_mw": 0, "leak_sram_bit_mw": 0}}"#;
    let hw = HwConfig::from_json_str(&hw_with(off), "hw.json").unwrap();
    assert_eq!(energy::for_hw(&hw, m, k, n, None, true).static_pj, 0.0);
    let bad = HwConfig::from_json_str(&hw_with(r#"{"energy": {"leak_sram_bit_mw": -1}}"#), "hw.json")
        .unwrap_err()
        .to_string();
    assert!(bad.contains("energy.leak_sram_bit_mw") && bad.contains("-1"), "{bad}");
}
