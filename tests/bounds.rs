//! Issue 10 item 3: bounded work and bounded reads. Every class of
//! unbounded input ends in a one-line error with exit code 2, well within a
//! generous timeout (no timings asserted: the timeout only catches hangs);
//! and an interrupted `gen` recovers on its own. Limits: docs/limits.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run bitmac with a 30 s watchdog (a hang fails the test instead of
/// blocking it); returns (exit code, stdout, stderr).
fn bitmac(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitmac"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bitmac");
    let t0 = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bitmac {args:?} did not finish within 30 s (a hang)");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Expect exit 2 and exactly one stderr line containing every `want`.
fn refused(args: &[&str], want: &[&str]) -> String {
    let (code, stdout, stderr) = bitmac(args);
    assert_eq!(code, 2, "{args:?}: exit {code}\n{stdout}{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: not one line: {stderr}");
    for w in want {
        assert!(stderr.contains(w), "{args:?}: wanted {w:?} in: {stderr}");
    }
    stderr
}

struct Tmp(PathBuf);
impl Tmp {
    fn new(tag: &str) -> Tmp {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "bitmac-bounds-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const HW_1X1: &str = r#"{"array": {"rows": 1, "cols": 1, "dataflow": "ws"}, "weights": {"bits": 8, "signed": true}, "activations": {"bits": 8, "signed": true}, "accumulator": {"bits": 32, "overflow": "WRAP"}, "psum": {"drop_bits": 0, "rounding": "RND", "offset": 0}, "requant": {"rounding": "double", "relu": false, "out_bits": 8, "out_signed": true}, "clock": {"period_ps": 1000}}"#;

fn npy(t: &Tmp, name: &str, shape: Vec<usize>) -> String {
    let n = shape.iter().product();
    let a = bitmac::npy::NpyArray::new(shape, bitmac::npy::Dtype::I8, vec![1; n]).unwrap();
    let p = t.0.join(name);
    bitmac::npy::write_npy(&p, &a).unwrap();
    p.to_str().unwrap().to_string()
}

fn mkfifo(p: &str) {
    let ok = Command::new("mkfifo").arg(p).status().expect("mkfifo").success();
    assert!(ok, "mkfifo {p}");
}

#[test]
fn device_and_fifo_inputs_are_refused_without_reading() {
    let t = Tmp::new("dev");
    let fifo = t.path("pipe.json");
    mkfifo(&fifo);
    let hw = t.file("hw.json", HW_1X1);
    let a = npy(&t, "a.npy", vec![2, 3]);
    let w = npy(&t, "w.npy", vec![3, 2]);
    let out = t.path("o.npy");
    // /dev/zero would be a 4 GB read, a FIFO without a writer a block.
    for bad in ["/dev/zero", fifo.as_str()] {
        let kind = if bad == "/dev/zero" { "character device" } else { "named pipe" };
        refused(&["gemm", "--hw", bad, "--a", &a, "--w", &w, "--out", &out, "--stage", "acc"], &[bad, kind]);
        refused(&["gemm", "--hw", &hw, "--a", bad, "--w", &w, "--out", &out, "--stage", "acc"], &[bad, kind]);
        refused(&["gen", "--case", bad, "--out", &t.path("g")], &[bad, kind]);
        refused(&["run", "--model", bad], &[bad, kind]);
        refused(&["scalesim", "--config", bad, "--topology", bad, "--out", &t.path("s")], &[bad, kind]);
        refused(&["dse", "--spec", bad, "--out", &t.path("d")], &[bad, kind]);
    }
    assert!(!Path::new(&out).exists(), "nothing written");
}

#[test]
fn gemm_work_output_and_trace_are_bounded() {
    let t = Tmp::new("gemm");
    let hw = t.file("hw.json", HW_1X1);
    let (a, w) = (npy(&t, "a.npy", vec![64, 64]), npy(&t, "w.npy", vec![64, 64]));
    let out = t.path("o.npy");
    let base = ["gemm", "--hw", &hw, "--a", &a, "--w", &w, "--out", &out, "--stage", "acc"];
    // 64^3 = 262144 MACs: refused under a lower --max-work, run under the default.
    let mut args = base.to_vec();
    args.extend(["--max-work", "1000"]);
    refused(&args, &["GEMM 64x64x64", "262144 MAC-steps", "--max-work"]);
    // Cycle engine on a 1x1 array: cycles x 1 x 1 PE-steps.
    let mut args = base.to_vec();
    args.extend(["--engine", "cycle", "--max-work", "200000"]);
    refused(&args, &["engine cycle", "--max-work"]);
    assert!(!Path::new(&out).exists(), "nothing written on a refusal");
    let (code, _, stderr) = bitmac(&base);
    assert_eq!(code, 0, "{stderr}");
    // A 2^28-element output from two 16 KiB operands.
    let (a, w) = (npy(&t, "a2.npy", vec![1 << 14, 1]), npy(&t, "w2.npy", vec![1, 1 << 14]));
    refused(
        &["gemm", "--hw", &hw, "--a", &a, "--w", &w, "--out", &out, "--stage", "acc"],
        &["output 16384x16384", "elements"],
    );
}

#[test]
fn gen_refuses_huge_cases_before_running_them() {
    let t = Tmp::new("gen");
    let hw = t.file("hw.json", HW_1X1);
    let out = t.path("out");
    // Within the element limits, but 256^3 MACs on a 1x1 array (a minute
    // and 1.4 GB before the limit).
    let g = t.file(
        "g.json",
        r#"{"kind":"gemm","name":"big","seed":1,"m":256,"k":256,"n":256,"s_a":0.05,"s_w":0.02,"s_out":0.25}"#,
    );
    refused(&["gen", "--hw", &hw, "--case", &g, "--out", &out], &["m, k, n", "vector cases are kept small"]);
    // Every conv2d size at its maximum: the im2col product overflows 64 bits.
    let c = t.file(
        "c.json",
        r#"{"kind":"conv2d","name":"c","seed":1,"batch":4096,"in_ch":4096,"height":4096,"width":4096,"out_ch":4096,"kh":4096,"kw":4096,"s_a":0.05,"s_w":0.02,"s_out":0.25}"#,
    );
    refused(&["gen", "--hw", &hw, "--case", &c, "--out", &out], &["elements"]);
    // A CDC case whose clocks are 10^6 apart: billions of edges.
    let d = t.file(
        "d.json",
        r#"{"kind":"cdc","name":"d","seed":1,"wclk_ps":1000000000,"rclk_ps":1000,"depth":4,"sync":2,"data_width":8,"words":4096}"#,
    );
    refused(&["gen", "--case", &d, "--out", &out], &["edges", "vector cases are kept small"]);
    assert!(!Path::new(&out).exists(), "nothing written");
}

#[test]
fn scalesim_topology_work_is_bounded() {
    let t = Tmp::new("scalesim");
    let cfg = std::fs::read_to_string(root().join("tests/scalesim/configs/a8x16_ws.cfg")).unwrap();
    let cfg =
        cfg.replace("ArrayHeight:    8", "ArrayHeight: 1").replace("ArrayWidth:     16", "ArrayWidth: 1");
    assert!(cfg.contains("ArrayHeight: 1") && cfg.contains("ArrayWidth: 1"));
    let cfg = t.file("one.cfg", &cfg);
    // One layer is 2^26 folds on a 1x1 array; 2^20 such layers are allowed
    // by the per-layer limits.
    let topo = t.file("big.csv", "Layer, M, N, K,\nx, 1048576, 64, 1048576,\n");
    refused(
        &["scalesim", "--config", &cfg, "--topology", &topo, "--out", &t.path("o")],
        &["big.csv", "67108864 folds", "--max-work"],
    );
    assert!(!t.0.join("o").exists());
}

#[test]
fn run_work_and_memory_are_bounded() {
    refused(&["run", "--max-work", "1000"], &["samples of", "MAC-steps", "--max-work"]);
    refused(&["run", "--max-mem", "1000"], &["samples of", "bytes", "--max-mem"]);
}

#[test]
fn dse_point_count_is_bounded_before_expansion() {
    let t = Tmp::new("dse");
    let spec = t.file(
        "s.json",
        &format!(
            r#"{{"name":"huge","base":"{}","workload":{{"kind":"gemm","m":4,"k":4,"n":4,"seed":1}},
               "grid":{{"clock.period_ps":{{"from":1,"to":1000}},"cdc.host_period_ps":{{"from":1,"to":1000}},"array.rows":{{"from":1,"to":256}}}},
               "plots":{{"x":"array.rows","series":"array.cols","bias_x":"array.rows"}}}}"#,
            root().join("models/hw/default.json").display()
        ),
    );
    let err = refused(&["dse", "--spec", &spec, "--out", &t.path("o")], &["10000000"]);
    assert!(err.contains("s.json"), "{err}");
}

#[test]
fn an_interrupted_gen_recovers_and_check_ignores_stale_temps() {
    let t = Tmp::new("recover");
    let out = t.0.join("out");
    let case = t.file(
        "r.json",
        r#"{"kind":"round","name":"r","seed":3,"count":16,"input":"i8","k":2,"mode":"RND","output":"i8","overflow":"SAT"}"#,
    );
    let (code, _, stderr) = bitmac(&["gen", "--case", &case, "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let files: Vec<String> = std::fs::read_dir(out.join("r"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "manifest.json")
        .collect();
    assert!(!files.is_empty());
    // What an older gen killed mid-write left: some files, a temporary, no
    // manifest; and a newer gen's temporary directories of a dead process.
    std::fs::remove_file(out.join("r/manifest.json")).unwrap();
    std::fs::remove_file(out.join("r").join(&files[0])).unwrap();
    std::fs::write(out.join("r").join(format!(".{}.4000000001.tmp", files[0])), "partial").unwrap();
    std::fs::create_dir_all(out.join(".r.4000000002.tmpdir")).unwrap();
    std::fs::write(out.join(".r.4000000002.tmpdir/half.hex"), "00\n").unwrap();
    std::fs::create_dir_all(out.join(".r.4000000003.old")).unwrap();
    let (code, _, stderr) = bitmac(&["gen", "--case", &case, "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "gen re-runs over its own partial output: {stderr}");
    assert!(!out.join(".r.4000000002.tmpdir").exists() && !out.join(".r.4000000003.old").exists());
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["r".to_string()], "only the case is left");
    let (code, stdout, stderr) = bitmac(&["check", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // A stale temporary inside a complete case: reported, ignored, kept.
    let stale = out.join("r").join(".stats.json.4000000004.tmp");
    std::fs::write(&stale, "x").unwrap();
    let (code, stdout, stderr) = bitmac(&["check", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stderr.contains("stale temporary file .stats.json.4000000004.tmp"), "{stderr}");
    assert!(stale.exists(), "check never modifies what it checks");
    // A foreign file is still never overwritten.
    std::fs::write(out.join("r/notes.txt"), "mine").unwrap();
    let (code, _, stderr) = bitmac(&["gen", "--case", &case, "--out", out.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("notes.txt"), "{stderr}");
    assert_eq!(std::fs::read_to_string(out.join("r/notes.txt")).unwrap(), "mine");
}
