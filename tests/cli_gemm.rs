//! `bitmac gemm` end to end, by running the binary: results against an
//! exact GEMM computed here, and one-line errors with exit code 2.

use bitmac::npy::{read_npy, write_npy, Dtype, NpyArray};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bitmac-cli-gemm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn hw(dir: &Path, acc_bits: u32, overflow: &str, dataflow: &str) -> PathBuf {
    let p = dir.join("hw.json");
    let text = format!(
        r#"{{
  "array": {{"rows": 4, "cols": 3, "dataflow": "{dataflow}"}},
  "weights": {{"bits": 8, "signed": true}},
  "activations": {{"bits": 8, "signed": true}},
  "accumulator": {{"bits": {acc_bits}, "overflow": "{overflow}"}},
  "psum": {{"drop_bits": 0, "rounding": "RND", "offset": 0}},
  "requant": {{"rounding": "double", "relu": false, "out_bits": 8, "out_signed": true}},
  "clock": {{"period_ps": 1000}}
}}"#
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn npy(dir: &Path, name: &str, shape: Vec<usize>, dtype: Dtype, data: Vec<i64>) -> PathBuf {
    let p = dir.join(name);
    write_npy(&p, &NpyArray::new(shape, dtype, data).unwrap()).unwrap();
    p
}

fn bitmac(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bitmac")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn data(m: usize, k: usize, n: usize) -> (Vec<i64>, Vec<i64>) {
    let a = (0..m * k).map(|i| ((i * 37 + 11) % 255) as i64 - 127).collect();
    let w = (0..k * n).map(|i| ((i * 53 + 5) % 255) as i64 - 127).collect();
    (a, w)
}

#[test]
fn acc_stage_is_the_exact_gemm_with_a_wide_accumulator() {
    let dir = tmpdir("acc");
    let (m, k, n) = (5, 9, 7);
    let (a, w) = data(m, k, n);
    for df in ["ws", "os", "is"] {
        let h = hw(&dir, 32, "WRAP", df);
        let pa = npy(&dir, "a.npy", vec![m, k], Dtype::I8, a.clone());
        let pw = npy(&dir, "w.npy", vec![k, n], Dtype::I16, w.clone());
        let out = dir.join("acc.npy");
        let stats = dir.join("stats.json");
        for engine in ["fast", "cycle"] {
            let (code, err) = bitmac(&[
                "gemm",
                "--hw",
                s(&h),
                "--a",
                s(&pa),
                "--w",
                s(&pw),
                "--out",
                s(&out),
                "--stage",
                "acc",
                "--stats",
                s(&stats),
                "--engine",
                engine,
            ]);
            assert_eq!(code, 0, "{err}");
            let got = read_npy(&out).unwrap();
            assert_eq!(got.shape, vec![m, n]);
            for i in 0..m {
                for j in 0..n {
                    let want: i64 = (0..k).map(|t| a[i * k + t] * w[t * n + j]).sum();
                    assert_eq!(got.data[i * n + j], want, "{df} {engine} [{i},{j}]");
                }
            }
            let st: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
            assert_eq!(st["overflows"], 0);
            assert_eq!(
                st["cycles"].as_u64().unwrap(),
                bitmac::array::compute_cycles(df.parse().unwrap(), 4, 3, m, k, n)
            );
        }
    }
}

#[test]
fn out_stage_requantizes_with_bias() {
    let dir = tmpdir("out");
    let (m, k, n) = (3, 4, 2);
    let (a, w) = data(m, k, n);
    let h = hw(&dir, 32, "SAT", "ws");
    let pa = npy(&dir, "a.npy", vec![m, k], Dtype::I32, a.clone());
    let pw = npy(&dir, "w.npy", vec![k, n], Dtype::I64, w.clone());
    let pb = npy(&dir, "b.npy", vec![n], Dtype::I32, vec![1000, -3000]);
    let out = dir.join("out.npy");
    let (code, err) = bitmac(&[
        "gemm",
        "--hw",
        s(&h),
        "--a",
        s(&pa),
        "--w",
        s(&pw),
        "--out",
        s(&out),
        "--bias",
        s(&pb),
        "--multiplier",
        "0.001",
    ]);
    assert_eq!(code, 0, "{err}");
    let got = read_npy(&out).unwrap();
    assert_eq!(got.dtype, Dtype::I8);
    let rq = bitmac::requant::Requantizer::new(
        bitmac::requant::quantize_multiplier(0.001).unwrap(),
        bitmac::requant::RequantRounding::Double,
        bitmac::numerics::IntFormat::signed(8).unwrap(),
        false,
    )
    .unwrap();
    for i in 0..m {
        for j in 0..n {
            let acc: i64 = (0..k).map(|t| a[i * k + t] * w[t * n + j]).sum::<i64>() + [1000, -3000][j];
            assert_eq!(got.data[i * n + j], rq.apply(acc as i128).0);
        }
    }
}

#[test]
fn trace_is_written_by_the_cycle_engine() {
    let dir = tmpdir("trace");
    let h = hw(&dir, 8, "SAT", "ws");
    let (a, w) = data(2, 5, 2);
    let pa = npy(&dir, "a.npy", vec![2, 5], Dtype::I8, a);
    let pw = npy(&dir, "w.npy", vec![5, 2], Dtype::I8, w);
    let tr = dir.join("trace.txt");
    let out = dir.join("o.npy");
    let (code, err) = bitmac(&[
        "gemm",
        "--hw",
        s(&h),
        "--a",
        s(&pa),
        "--w",
        s(&pw),
        "--out",
        s(&out),
        "--stage",
        "acc",
        "--engine",
        "cycle",
        "--trace",
        s(&tr),
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&tr).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("# bitmac trace v1 dataflow=ws rows=4 cols=3"));
    // One line per cycle after the header.
    assert_eq!(
        lines.len() as u64 - 1,
        bitmac::array::compute_cycles(bitmac::array::Dataflow::Ws, 4, 3, 2, 5, 2)
    );
    assert!(text.contains(" ovf="), "8-bit SAT accumulator should overflow");
}

#[test]
fn bad_inputs_are_one_line_errors_with_exit_2() {
    let dir = tmpdir("errors");
    let h = hw(&dir, 32, "WRAP", "ws");
    let pa = npy(&dir, "a.npy", vec![2, 3], Dtype::I16, vec![1, 2, 3, 4, 5, 300]);
    let pa_ok = npy(&dir, "a_ok.npy", vec![2, 3], Dtype::I8, vec![1, 2, 3, 4, 5, 6]);
    let pw = npy(&dir, "w.npy", vec![3, 2], Dtype::I8, vec![1, 2, 3, 4, 5, 6]);
    let pw_bad_shape = npy(&dir, "w4.npy", vec![4, 2], Dtype::I8, vec![0; 8]);
    let pw_1d = npy(&dir, "w1.npy", vec![6], Dtype::I8, vec![0; 6]);
    let pb = npy(&dir, "b.npy", vec![3], Dtype::I32, vec![0; 3]);
    let out = dir.join("o.npy");
    let bad_hw = dir.join("bad.json");
    std::fs::write(&bad_hw, std::fs::read_to_string(&h).unwrap().replace("\"bits\": 32", "\"bits\": 65"))
        .unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--a", s(&pa), "--w", s(&pw), "--stage", "acc"], "A[1,2]: 300"),
        (vec!["--a", s(&pa_ok), "--w", s(&pw_bad_shape), "--stage", "acc"], "GEMM shapes"),
        (vec!["--a", s(&pa_ok), "--w", s(&pw_1d), "--stage", "acc"], "must be 2-D"),
        (vec!["--a", s(&pa_ok), "--w", s(&pw)], "needs the requant multiplier"),
        (vec!["--a", s(&pa_ok), "--w", s(&pw), "--multiplier", "0.5", "--bias", s(&pb)], "bias has 3 values"),
        (vec!["--a", s(&pa_ok), "--w", s(&pw), "--stage", "mid"], "--stage"),
        (vec!["--a", s(&pa_ok), "--w", s(&pw), "--stage", "acc", "--engine", "slow"], "engine"),
        (vec!["--a", s(&pa_ok), "--w", s(&pw), "--stage", "acc", "--trace", "t.txt"], "--engine cycle"),
        (vec!["--a", s(&pa_ok), "--w", s(&pw), "--multiplier", "0.5", "--scale-w", "0.1"], "not both"),
        (vec!["--a", "missing.npy", "--w", s(&pw), "--stage", "acc"], "missing.npy"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["gemm", "--hw", s(&h), "--out", s(&out)];
        args.extend(extra.iter().copied());
        let (code, err) = bitmac(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    let (code, err) =
        bitmac(&["gemm", "--hw", s(&bad_hw), "--a", s(&pa_ok), "--w", s(&pw), "--out", s(&out)]);
    assert_eq!(code, 2);
    assert!(err.contains("accumulator.bits: 65"), "{err}");
    assert!(!out.exists(), "no output on error");
}

#[test]
fn every_preset_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/hw");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            bitmac::hw::HwConfig::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 5);
    let d = bitmac::hw::HwConfig::load(&dir.join("default.json")).unwrap();
    assert_eq!((d.rows(), d.cols(), d.acc_bits()), (16, 16, 32));
}

/// With the memory model on (docs/memory.md), `--stats` of both engines
/// report the same `stall_cycles` and `cycles`, equal to `memory::plan`;
/// the values are those of the stall-free run; without it, no
/// `stall_cycles` field.
#[test]
fn memory_stalls_in_stats() {
    let dir = tmpdir("mem");
    let (m, k, n) = (6, 9, 7);
    let (a, w) = data(m, k, n);
    let pa = npy(&dir, "a.npy", vec![m, k], Dtype::I8, a);
    let pw = npy(&dir, "w.npy", vec![k, n], Dtype::I8, w);
    let plain = hw(&dir, 32, "WRAP", "ws");
    let text = std::fs::read_to_string(&plain).unwrap().replace(
        r#""clock": {"period_ps": 1000}"#,
        r#""clock": {"period_ps": 1000}, "memory": {"dram_bytes_per_cycle": 3, "dram_latency": 7, "weight_double_buffer": true}"#,
    );
    let memhw = dir.join("mem.json");
    std::fs::write(&memhw, text).unwrap();
    let run = |h: &Path, engine: &str, tag: &str| {
        let (out, st) = (dir.join(format!("o-{tag}.npy")), dir.join(format!("s-{tag}.json")));
        let args = ["gemm", "--hw", s(h), "--a", s(&pa), "--w", s(&pw), "--out", s(&out), "--stage", "acc"];
        let (code, err) = bitmac(&[&args[..], &["--engine", engine, "--stats", s(&st)]].concat());
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(st).unwrap()).unwrap();
        (read_npy(&out).unwrap().data, v)
    };
    let (free_out, free) = run(&plain, "fast", "free");
    assert!(free.get("stall_cycles").is_none());
    let hwc = bitmac::hw::HwConfig::load(&memhw).unwrap();
    let plan = bitmac::memory::plan(&bitmac::memory::Layout::of_hw(&hwc), m, k, n);
    assert!(plan.stall_cycles > 0);
    for engine in ["fast", "cycle"] {
        let (o, v) = run(&memhw, engine, engine);
        assert_eq!(o, free_out, "{engine}: values change with stalls");
        assert_eq!(v["stall_cycles"], plan.stall_cycles, "{engine}");
        assert_eq!(v["cycles"], plan.cycles, "{engine}");
    }
}
