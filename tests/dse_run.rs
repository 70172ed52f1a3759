//! End-to-end properties of `bitmac dse`: determinism across thread counts,
//! resume after a kill, shards + merge, skipped combinations, and one-line
//! errors with exit code 2.

mod dse_common;
use bitmac::dse::{self, Shard};
use dse_common::*;
use std::process::Command;

fn setup(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let d = scratch(name);
    let spec = d.join("spec.json");
    write(&spec, &small_spec());
    (d, spec)
}

#[test]
fn thread_count_does_not_change_any_byte() {
    let (d, spec) = setup("threads");
    let s1 = dse::run(&opts(&spec, &d.join("t1"))).unwrap();
    let mut o = opts(&spec, &d.join("t2"));
    o.threads = Some(2);
    let s2 = dse::run(&o).unwrap();
    assert_eq!(s1, s2);
    assert_eq!(s1.points, 3 * 2 * 4 * 3 + 17);
    assert_same(&d.join("t1"), &d.join("t2"));
}

#[test]
fn skipped_points_carry_their_reason() {
    let (d, spec) = setup("skip");
    let s = dse::run(&opts(&spec, &d.join("o"))).unwrap();
    // k = 1 nearest modes allow offsets -1..=0: offsets -2 and 1 are skipped
    // for RND and RND_CONV (2 modes x 2 offsets x 3 widths); TRN at k = 1
    // allows -1..=1, so offset -2 is skipped (3 widths).
    assert_eq!(s.skipped, 2 * 2 * 3 + 3);
    let csv = std::fs::read_to_string(d.join("o/results.csv")).unwrap();
    let line = csv.lines().find(|l| l.contains(",skipped,")).unwrap();
    assert!(line.contains("psum.offset"), "{line}");
    assert!(line.contains("allowed"), "{line}");
}

/// Simulate a kill: keep a subset of the finished records in a scrambled
/// completion order plus half of one more line, drop the final files, then
/// `--resume`; every final file must equal an uninterrupted run's.
#[test]
fn resume_after_kill_is_byte_identical() {
    let (d, spec) = setup("resume");
    let full = d.join("full");
    dse::run(&opts(&spec, &full)).unwrap();
    let lines: Vec<String> =
        std::fs::read_to_string(full.join("results.jsonl")).unwrap().lines().map(String::from).collect();

    let cut = d.join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    std::fs::copy(full.join("sweep.json"), cut.join("sweep.json")).unwrap();
    let mut partial = String::new();
    // Finished out of order: every third record, descending.
    for l in lines.iter().rev().step_by(3) {
        partial.push_str(l);
        partial.push('\n');
    }
    let half = &lines[1][..lines[1].len() / 2];
    partial.push_str(half);
    write(&cut.join("results.jsonl"), &partial);

    let mut o = opts(&spec, &cut);
    o.resume = true;
    o.threads = Some(2);
    let s = dse::run(&o).unwrap();
    assert_eq!(s.evaluated, lines.len() - lines.iter().rev().step_by(3).count());
    assert_same(&full, &cut);

    // Resuming a finished sweep evaluates nothing and changes nothing.
    let s = dse::run(&o).unwrap();
    assert_eq!(s.evaluated, 0);
    assert_same(&full, &cut);
}

#[test]
fn three_shards_merged_equal_one_run() {
    let (d, spec) = setup("shards");
    dse::run(&opts(&spec, &d.join("single"))).unwrap();
    let mut dirs = Vec::new();
    for i in 0..3 {
        let out = d.join(format!("shard{i}"));
        let mut o = opts(&spec, &out);
        o.shard = Some(Shard { shard: i, of: 3 });
        dse::run(&o).unwrap();
        dirs.push(out);
    }
    // Give them out of order: merge must not care.
    let given = vec![dirs[2].clone(), dirs[0].clone(), dirs[1].clone()];
    dse::merge(&given, &d.join("merged")).unwrap();
    assert_same(&d.join("single"), &d.join("merged"));

    // A missing shard is an input error naming it.
    let e = dse::merge(&dirs[..2], &d.join("merged2")).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("2/3"), "{e}");
}

fn bitmac(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bitmac")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_one_line_error(args: &[&str], needle: &str) {
    let (code, err) = bitmac(args);
    assert_eq!(code, 2, "args {args:?}: stderr {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "args {args:?}: not one line: {err}");
    assert!(err.contains(needle), "args {args:?}: {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn spec_errors_are_one_line_exit_2() {
    let d = scratch("errors");
    let out = d.join("out");
    let out = out.to_str().unwrap();
    let spec = small_spec();
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown-field", spec.replacen("\"name\"", "\"nmae\"", 1), "nmae"),
        (
            "unknown-param",
            spec.replace("\"accumulator.bits\": [9", "\"accumulator.bist\": [9"),
            "accumulator.bist",
        ),
        ("width-range", spec.replace("[9, 12, 20]", "[9, 12, 65]"), "2..=64"),
        ("round-name", spec.replace("\"RND_CONV\"]", "\"RND_HALF\"]"), "RND_CONV_ODD"),
        ("empty-list", spec.replace("[9, 12, 20]", "[]"), "empty"),
        ("bad-kind", spec.replace("\"gemm\"", "\"fft\""), "fft"),
        ("gemm-dim", spec.replace("\"m\": 6", "\"m\": 0"), "workload.m"),
        ("float-on-int", spec.replace("{\"int\": [1, 12]}", "{\"float\": [1, 12]}"), "array.rows"),
        ("pow2", spec.replace("[2, 4, 8]", "[2, 6, 8]"), "power of two"),
        ("malformed", spec[..spec.len() / 2].to_string(), "JSON"),
        ("base-range", spec.replace("\"rows\": 8", "\"rows\": 0"), "array.rows"),
        ("reject", spec.replacen("\"name\"", "\"invalid\": \"reject\", \"name\"", 1), "reject"),
    ];
    for (name, text, needle) in &cases {
        let p = d.join(format!("{name}.json"));
        write(&p, text);
        assert_one_line_error(&["dse", "--spec", p.to_str().unwrap(), "--out", out], needle);
    }
    assert_one_line_error(
        &["dse", "--spec", d.join("missing.json").to_str().unwrap(), "--out", out],
        "missing.json",
    );
    let good = d.join("good.json");
    write(&good, &spec);
    let g = good.to_str().unwrap();
    assert_one_line_error(&["dse", "--spec", g, "--out", out, "--shard", "3/3"], "--shard");
    assert_one_line_error(&["dse", "--spec", g, "--out", out, "--threads", "0"], "--threads");
    assert_one_line_error(&["dse", "--out", out], "--spec");

    // A finished out dir: rerun without --resume, and --resume with another spec.
    let (code, err) = bitmac(&["dse", "--spec", g, "--out", out, "--threads", "1"]);
    assert_eq!(code, 0, "{err}");
    assert_one_line_error(&["dse", "--spec", g, "--out", out], "--resume");
    let other = d.join("other.json");
    write(&other, &spec.replace("\"seed\": 11", "\"seed\": 12"));
    assert_one_line_error(&["dse", "--spec", other.to_str().unwrap(), "--out", out, "--resume"], "spec hash");
    assert_one_line_error(&["dse", "--spec", g, "--out", out, "--resume", "--shard", "0/2"], "--shard");
    // A corrupt complete line in the middle is an error naming the line.
    let jsonl = std::path::Path::new(out).join("results.jsonl");
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[3] = "{\"id\": oops}";
    write(&jsonl, &(lines.join("\n") + "\n"));
    assert_one_line_error(&["dse", "--spec", g, "--out", out, "--resume"], "results.jsonl:4");
    // Merging an incomplete directory.
    assert_one_line_error(&["dse", "merge", out, "--out", d.join("m").to_str().unwrap()], "results.jsonl");
}

#[test]
fn point_ids_are_stable_and_ordered() {
    // Grid odometer over sorted paths (last fastest), then random samples.
    let (d, spec) = setup("ids");
    let sweep = dse::Sweep::load(&spec).unwrap();
    let p0 = &sweep.points.get(0);
    let p1 = &sweep.points.get(1);
    assert_eq!(p0["accumulator.bits"], 9);
    assert_eq!(p0["psum.rounding"], "TRN");
    // psum.round is the last sorted grid path, so it varies fastest.
    assert_eq!(p1["psum.rounding"], "RND");
    assert_eq!(p1["accumulator.bits"], 9);
    // The first grid path (accumulator.bits) varies slowest.
    assert_eq!(sweep.points.get(2 * 4 * 3)["accumulator.bits"], 12);
    // Random points keep grid paths at base values and draw their own.
    let r = &sweep.points.get(72);
    assert_eq!(r["accumulator.bits"], 16);
    assert_eq!(r["psum.rounding"], "RND");
    let rows = r["array.rows"].as_i64().unwrap();
    assert!((1..=12).contains(&rows));
    // Loading again gives the same points and hash.
    let again = dse::Sweep::load(&spec).unwrap();
    assert_eq!(sweep.points, again.points);
    assert_eq!(sweep.hash, again.hash);
    let _ = d;
}

#[test]
fn wide_exact_gemm_has_no_error() {
    // d = 0 and a 40-bit accumulator: the datapath equals the exact GEMM, so
    // SQNR is at its cap and there is no error, rounding or overflow.
    let d = scratch("exact");
    let spec = d.join("spec.json");
    let text = small_spec()
        .replace("\"psum.drop_bits\": [1, 3]", "\"psum.drop_bits\": [0]")
        .replace("\"psum.offset\": {\"from\": -2, \"to\": 1}", "\"psum.offset\": [0]")
        .replace("[9, 12, 20]", "[40]");
    write(&spec, &text);
    dse::run(&opts(&spec, &d.join("o"))).unwrap();
    let csv = std::fs::read_to_string(d.join("o/results.csv")).unwrap();
    let mut lines = csv.lines();
    let head: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    let mut n = 0;
    // The 3 grid points (the random ones keep the base's d = 2).
    for l in lines.take(3) {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f[col("status")], "ok", "{l}");
        assert_eq!(f[col("sqnr_db")], "200", "{l}");
        assert_eq!(f[col("max_abs_err")], "0", "{l}");
        assert_eq!(f[col("overflows")], "0", "{l}");
        assert_eq!(f[col("roundings")], "0", "{l}");
        n += 1;
    }
    assert_eq!(n, 3);
}
