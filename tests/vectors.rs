//! `bitmac gen` / `bitmac check`: determinism, round trips, tamper detection
//! with exact locations, `check` never writing, and one-line errors.
//!
//! Also an independent checker written from docs/vectors.md alone (it does
//! not use bitmac's vector types): it validates every committed case's files
//! against their manifest entries.

use bitmac::vectors::{self, CaseSpec};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bitmac(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bitmac")).args(args).output().expect("run bitmac");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh temporary directory (removed by the caller's `Tmp` drop).
struct Tmp(PathBuf);
impl Tmp {
    fn new(tag: &str) -> Tmp {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "bitmac-vectors-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn suite_case_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("testvectors/cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.to_string_lossy().ends_with(".hw.json"))
        .collect();
    v.sort();
    v
}

fn hw_for(case: &Path) -> Option<bitmac::hw::HwSpec> {
    let hw = PathBuf::from(case.to_string_lossy().replace(".json", ".hw.json"));
    hw.is_file().then(|| serde_json::from_str(&std::fs::read_to_string(hw).unwrap()).unwrap())
}

/// Every file's bytes, keyed by name, including the manifest.
fn all_bytes(g: &vectors::Generated) -> BTreeMap<String, Vec<u8>> {
    let mut m: BTreeMap<String, Vec<u8>> = g.files.iter().map(|(e, b)| (e.path.clone(), b.clone())).collect();
    m.insert("manifest.json".into(), g.manifest_bytes.clone());
    m
}

#[test]
fn generation_is_deterministic_across_runs_and_thread_counts() {
    let cases = suite_case_files();
    assert!(cases.len() >= 20);
    // Case file paths (model_node's model and data) are relative to the suite root.
    let base = root().join("testvectors");
    let gen = |spec: &CaseSpec, hw: Option<&bitmac::hw::HwSpec>| {
        all_bytes(&vectors::generate_at(spec, hw, vectors::BITMAC_VERSION, &base).unwrap())
    };
    for c in cases {
        let spec = vectors::read_case(&c).unwrap();
        let hw = hw_for(&c);
        let a = gen(&spec, hw.as_ref());
        let b = gen(&spec, hw.as_ref());
        assert_eq!(a, b, "{}", c.display());
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let p = pool.install(|| gen(&spec, hw.as_ref()));
            assert_eq!(a, p, "{} with {threads} threads", c.display());
        }
    }
}

#[test]
fn the_committed_suite_matches_a_fresh_generation() {
    // The same comparison `bitmac check testvectors/` does, through the library.
    let s = vectors::check_paths(&[root().join("testvectors")]).unwrap();
    assert_eq!(s.cases, suite_case_files().len(), "every case file has a generated directory and vice versa");
    assert!(s.cases >= 26);
}

fn write_case(dir: &Path, json: &str) -> PathBuf {
    let p = dir.join("case.json");
    std::fs::write(&p, json).unwrap();
    p
}

const ROUND: &str = r#"{"kind":"round","name":"r","seed":9,"count":40,"input":"i16","k":5,"mode":"RND_CONV_ODD","offset":-2,"output":"i10","overflow":"SAT_SYM","ties":0.3,"data":{"edges":0.2}}"#;
const COLUMN: &str = r#"{"kind":"pe_column","name":"p","seed":4,"m":5,"k":6,"n":2,"a":"i6","w":"i6","acc":"i9","overflow":"WRAP"}"#;

fn gen_fresh(t: &Tmp, json: &str) -> PathBuf {
    let c = write_case(&t.0, json);
    let out = t.0.join("out");
    let (code, stdout, stderr) =
        bitmac(&["gen", "--case", c.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    out
}

#[test]
fn check_passes_on_a_fresh_gen_and_reports_counts() {
    let t = Tmp::new("fresh");
    let out = gen_fresh(&t, ROUND);
    let (_, _, _) = bitmac(&[
        "gen",
        "--case",
        write_case(&t.0, COLUMN).to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let (code, stdout, stderr) = bitmac(&["check", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    // round: x, y, ovf, pos (hex+json) + stats + manifest = 10;
    // pe_column: a, w, acc, ovf (hex+json) + stream + stats + manifest = 11.
    assert_eq!(stdout.trim(), "2 cases, 21 files match");
    // A case directory given directly works too.
    let (code, stdout, _) = bitmac(&["check", out.join("r").to_str().unwrap()]);
    assert_eq!((code, stdout.trim()), (0, "1 cases, 10 files match"));
}

/// Snapshot of a tree: every path with its bytes and mtime.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                stack.push(e.path());
                m.insert(e.path(), (Vec::new(), md.modified().unwrap()));
            } else {
                m.insert(e.path(), (std::fs::read(e.path()).unwrap(), md.modified().unwrap()));
            }
        }
    }
    m
}

/// Replace the first hex digit of line `line` (1-based) with another digit
/// that keeps it a valid hex/decimal digit, or, for a line without hex
/// digits, flip the first letter's case.
fn flip_digit_on_line(path: &Path, line: usize) -> (String, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let l = &mut lines[line - 1];
    let before = l.clone();
    let pos =
        l.char_indices().find(|(_, c)| c.is_ascii_digit()).map(|(i, _)| i).expect("a digit on the line");
    let c = l.as_bytes()[pos];
    let nc = if c == b'1' { '2' } else { '1' };
    l.replace_range(pos..pos + 1, &nc.to_string());
    let after = l.clone();
    std::fs::write(path, lines.join("\n")).unwrap();
    (before, after)
}

#[test]
fn flipping_one_digit_in_any_file_fails_with_the_exact_location() {
    // Every file type a case can hold: hex, json, stream, stats json, manifest.
    let targets: &[(&str, &str, usize)] = &[
        (ROUND, "x.hex", 17),
        (ROUND, "y.hex", 40),
        (ROUND, "pos.hex", 1),
        (ROUND, "y.json", 12),
        (ROUND, "stats.json", 2),
        (COLUMN, "acc.stream", 3),
        (COLUMN, "w.hex", 5),
        (COLUMN, "acc.json", 7),
        (ROUND, "manifest.json", 6),
    ];
    for &(case, file, line) in targets {
        let t = Tmp::new("tamper");
        let out = gen_fresh(&t, case);
        let name = if case == ROUND { "r" } else { "p" };
        let f = out.join(name).join(file);
        let (before, after) = flip_digit_on_line(&f, line);
        let snap = snapshot(&out);
        let (code, stdout, stderr) = bitmac(&["check", out.to_str().unwrap()]);
        assert_eq!(code, 1, "{file}: {stdout}{stderr}");
        let msg = stderr.trim();
        assert_eq!(msg.lines().count(), 1, "{msg}");
        assert!(msg.contains(&format!("{file} line {line} col ")), "{file}: {msg}");
        assert!(msg.contains(&format!("expected {before:?}, actual {after:?}")), "{file}: {msg}");
        assert!(msg.contains("hand-edited"), "{file}: {msg}");
        if file != "manifest.json" {
            assert!(msg.contains(&format!("hand-edited: {file} (sha256 differs from manifest)")), "{msg}");
        }
        assert_eq!(snap, snapshot(&out), "check wrote into the directory");
    }
}

#[test]
fn a_consistent_edit_of_file_and_sha_is_still_caught() {
    // Someone edits y.hex and updates its sha256 in the manifest: the data
    // differs from the regeneration (reported first, with its location).
    let t = Tmp::new("consistent");
    let out = gen_fresh(&t, ROUND);
    let d = out.join("r");
    let f = d.join("y.hex");
    let old_sha = format!("{:x}", Sha256::digest(std::fs::read(&f).unwrap()));
    flip_digit_on_line(&f, 3);
    let new_sha = format!("{:x}", Sha256::digest(std::fs::read(&f).unwrap()));
    let m = std::fs::read_to_string(d.join("manifest.json")).unwrap().replace(&old_sha, &new_sha);
    std::fs::write(d.join("manifest.json"), m).unwrap();
    let (code, _, stderr) = bitmac(&["check", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("y.hex: matches its manifest sha256 but not its regeneration"), "{stderr}");
    assert!(stderr.contains("y.hex line 3 col"), "{stderr}");
}

#[test]
fn missing_extra_and_corrupt_files_are_reported() {
    let t = Tmp::new("extra");
    let out = gen_fresh(&t, ROUND);
    let d = out.join("r");
    std::fs::write(d.join("notes.txt"), "hello\n").unwrap();
    let (code, _, stderr) = bitmac(&["check", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("unexpected file notes.txt"), "{stderr}");
    std::fs::remove_file(d.join("notes.txt")).unwrap();
    std::fs::remove_file(d.join("ovf.json")).unwrap();
    let (code, _, stderr) = bitmac(&["check", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("ovf.json: missing"), "{stderr}");
    std::fs::write(d.join("manifest.json"), "{\"format\": 1").unwrap();
    let (code, _, stderr) = bitmac(&["check", out.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("hand-edited or corrupt manifest.json"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1);
}

#[test]
fn editing_the_case_inside_the_manifest_is_caught() {
    let t = Tmp::new("case-edit");
    let out = gen_fresh(&t, ROUND);
    let p = out.join("r/manifest.json");
    let m = std::fs::read_to_string(&p).unwrap().replace("\"seed\": 9,", "\"seed\": 10,");
    std::fs::write(&p, m).unwrap();
    let (code, _, stderr) = bitmac(&["check", out.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("x.hex line"), "{stderr}");
}

#[test]
fn check_ignores_directories_without_manifests_and_rejects_empty_trees() {
    let t = Tmp::new("ignore");
    let out = gen_fresh(&t, ROUND);
    std::fs::create_dir_all(out.join("lsq/sub")).unwrap();
    std::fs::write(out.join("lsq/seed_act.json"), "{}").unwrap();
    std::fs::write(out.join("README.md"), "suite\n").unwrap();
    let (code, stdout, stderr) = bitmac(&["check", out.to_str().unwrap()]);
    assert_eq!((code, stdout.trim()), (0, "1 cases, 10 files match"), "{stderr}");
    let (code, _, stderr) = bitmac(&["check", out.join("lsq").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no case directories found"), "{stderr}");
    let (code, _, stderr) = bitmac(&["check", t.0.join("nope").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a directory"), "{stderr}");
}

#[test]
fn bad_case_files_are_one_line_errors_with_exit_2() {
    let bad: &[(&str, &str)] = &[
        (
            r#"{"kind":"round","name":"r","seed":1,"count":4,"input":"i8","k":2,"mode":"RND","output":"i8","overflow":"SAT","colour":1}"#,
            "unknown field `colour`",
        ),
        (
            r#"{"kind":"round","name":"r","seed":1,"count":4,"input":"i8","k":2,"mode":"RND","output":"i8"}"#,
            "missing field `overflow`",
        ),
        (
            r#"{"kind":"round","name":"r","seed":1,"count":4,"input":"i8","k":2,"mode":"ROUND","output":"i8","overflow":"SAT"}"#,
            "mode: rounding mode: unknown \"ROUND\"",
        ),
        (
            r#"{"kind":"round","name":"r","seed":1,"count":4,"input":"i8","k":9,"mode":"RND","output":"i8","overflow":"SAT"}"#,
            "k: 9 is out of range",
        ),
        (
            r#"{"kind":"round","name":"r","seed":1,"count":4,"input":"i8","k":3,"mode":"RND","offset":4,"output":"i8","overflow":"SAT"}"#,
            "offset: 4 is out of range (allowed: -4..=3",
        ),
        (
            r#"{"kind":"round","name":"r","seed":1,"count":0,"input":"i8","k":3,"mode":"RND","output":"i8","overflow":"SAT"}"#,
            "count: 0 is out of range",
        ),
        (
            r#"{"kind":"round","name":"r","seed":1,"count":4,"input":"q8","k":3,"mode":"RND","output":"i8","overflow":"SAT"}"#,
            "input: \"q8\" is out of range",
        ),
        (
            r#"{"kind":"round","name":"r","seed":1,"count":4,"input":"i8","k":3,"mode":"RND","output":"i8","overflow":"SAT","data":{"min":-999}}"#,
            "data.min: -999 is out of range",
        ),
        (
            r#"{"kind":"round","name":"../x","seed":1,"count":4,"input":"i8","k":3,"mode":"RND","output":"i8","overflow":"SAT"}"#,
            "name: \"../x\"",
        ),
        (
            r#"{"kind":"pe_column","name":"p","seed":1,"m":2,"k":2,"n":2,"a":"i8","w":"i8","acc":"i70","overflow":"WRAP"}"#,
            "acc: \"i70\" is out of range",
        ),
        (
            r#"{"kind":"pe_column","name":"p","seed":1,"m":2,"k":2,"n":2,"a":"i8","w":"i8","acc":"i20","overflow":"WRAP","w_data":{"values":[1,2,3]}}"#,
            "w_data.values: 3 values is out of range (allowed: exactly 4",
        ),
        (
            r#"{"kind":"requant","name":"q","seed":1,"count":4,"acc":"i32","s_a":0.1,"s_w":-1,"s_out":0.1,"rounding":"double","output":"i8"}"#,
            "s_w: -1 is out of range",
        ),
        (
            r#"{"kind":"requant","name":"q","seed":1,"count":4,"acc":"i32","s_a":0.1,"s_w":0.1,"s_out":0.1,"rounding":"triple","output":"i8"}"#,
            "rounding: requant rounding: unknown \"triple\"",
        ),
        (r#"{"kind":"teleport","name":"q"}"#, "unknown variant `teleport`"),
        (r#"{"kind":"round", "name": "r""#, "truncated JSON"),
    ];
    for (json, want) in bad {
        let t = Tmp::new("bad");
        let c = write_case(&t.0, json);
        let out = t.0.join("out");
        let (code, stdout, stderr) =
            bitmac(&["gen", "--case", c.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        assert_eq!(code, 2, "{json}: {stdout}{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(want), "{json}\n  wanted: {want}\n  got: {stderr}");
        assert!(stderr.contains("case.json"), "error names the file: {stderr}");
        assert!(!out.exists(), "nothing written on a bad case");
    }
}

#[test]
fn gen_refuses_to_overwrite_a_non_case_directory() {
    let t = Tmp::new("refuse");
    let out = t.0.join("out");
    std::fs::create_dir_all(out.join("r")).unwrap();
    std::fs::write(out.join("r/precious.txt"), "keep").unwrap();
    let c = write_case(&t.0, ROUND);
    let (code, _, stderr) = bitmac(&["gen", "--case", c.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a bitmac case directory"), "{stderr}");
    assert_eq!(std::fs::read_to_string(out.join("r/precious.txt")).unwrap(), "keep");
}

#[test]
fn regenerating_over_an_existing_case_removes_stale_files() {
    let t = Tmp::new("stale");
    let out = gen_fresh(&t, COLUMN);
    // Same name, different kind: the stream file of the old case must go.
    let other = COLUMN.replace("\"pe_column\"", "\"round\"").replace(
        r#""m":5,"k":6,"n":2,"a":"i6","w":"i6","acc":"i9","overflow":"WRAP""#,
        r#""count":8,"input":"i8","k":2,"mode":"RND","output":"i8","overflow":"SAT""#,
    );
    let c = write_case(&t.0, &other);
    let (code, _, stderr) = bitmac(&["gen", "--case", c.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!out.join("p/acc.stream").exists());
    let (code, _, stderr) = bitmac(&["check", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn the_manifest_round_trips_through_its_case() {
    let spec: CaseSpec = vectors::parse_case(ROUND, "x").unwrap();
    let g = vectors::generate(&spec, None).unwrap();
    let back: vectors::Manifest = serde_json::from_slice(&g.manifest_bytes).unwrap();
    assert_eq!(back, g.manifest);
    assert_eq!(vectors::manifest_to_bytes(&back).unwrap(), g.manifest_bytes);
}

// ---------------------------------------------------------------------------
// An independent checker, written from docs/vectors.md only: it reads the
// manifest as plain JSON and validates every file against its entry.

fn doc_check_case(dir: &Path) -> usize {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["format"], "bitmac-vectors/1");
    assert_eq!(m["name"].as_str().unwrap(), dir.file_name().unwrap().to_str().unwrap());
    assert_eq!(m["kind"], m["case"]["kind"]);
    assert_eq!(m["seed"], m["case"]["seed"]);
    let mut tensors: BTreeMap<String, Vec<i128>> = BTreeMap::new();
    let mut npys: BTreeMap<String, Vec<i128>> = BTreeMap::new();
    let files = m["files"].as_array().unwrap();
    for f in files {
        let path = f["path"].as_str().unwrap();
        let bytes = std::fs::read(dir.join(path)).unwrap();
        let sha = format!("{:x}", Sha256::digest(&bytes));
        assert_eq!(f["sha256"].as_str().unwrap(), sha, "{path}");
        let enc = f["encoding"].as_str().unwrap();
        if enc == "npy" {
            // NumPy format 1.0 (docs/vectors.md, "model_node"): magic, version,
            // u16 LE header length, the header dict, then int64 LE values.
            assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{path}");
            let hl = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            let header = std::str::from_utf8(&bytes[10..10 + hl]).unwrap();
            assert!(header.contains("'descr': '<i8'") && header.contains("'fortran_order': False"), "{path}");
            assert_eq!((10 + hl) % 64, 0, "{path}: header padded to 64 bytes");
            let shape: Vec<usize> =
                f["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            let want =
                if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
            assert!(header.contains(&format!("'shape': {want}")), "{path}: {header}");
            let vals: Vec<i128> = bytes[10 + hl..]
                .chunks(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as i128)
                .collect();
            assert_eq!(vals.len(), shape.iter().product::<usize>(), "{path}");
            npys.insert(f["tensor"].as_str().unwrap().to_string(), vals);
            continue;
        }
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{path}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(f["lines"].as_u64().unwrap() as usize, lines.len(), "{path}");
        let tensor = f["tensor"].as_str().unwrap().to_string();
        match enc {
            "readmemh" | "stream" => {
                let w = f["width"].as_u64().unwrap() as u32;
                let signed = f["signed"].as_bool().unwrap();
                let digits = f["digits"].as_u64().unwrap() as usize;
                assert_eq!(digits, w.div_ceil(4) as usize);
                let dtype = f["dtype"].as_str().unwrap();
                let n: usize =
                    f["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).product();
                assert_eq!(lines.len(), n, "{path}");
                let mut vals = Vec::new();
                let mut last_cycle = 0u64;
                for (i, l) in lines.iter().enumerate() {
                    let h = if enc == "stream" {
                        let (c, h) = l.split_once(' ').unwrap();
                        let c: u64 = c.parse().unwrap();
                        assert!(c >= last_cycle, "{path}: cycles non-decreasing");
                        last_cycle = c;
                        h
                    } else {
                        l
                    };
                    assert_eq!(h.len(), digits, "{path} line {}", i + 1);
                    assert!(
                        h.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                        "{path}: lowercase hex"
                    );
                    let bits = u64::from_str_radix(h, 16).unwrap();
                    if dtype == "f32" {
                        vals.push(bits as i128);
                        continue;
                    }
                    assert!(w == 64 || bits < 1u64 << w, "{path} line {}: above the width", i + 1);
                    let v = if signed && w < 128 && (bits >> (w - 1)) & 1 == 1 {
                        bits as i128 - (1i128 << w)
                    } else {
                        bits as i128
                    };
                    vals.push(v);
                }
                if enc == "readmemh" {
                    tensors.insert(tensor, vals);
                }
            }
            "json" => {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["tensor"].as_str().unwrap(), tensor);
                assert_eq!(v["dtype"], f["dtype"]);
                assert_eq!(v["shape"], f["shape"]);
                let data = v["data"].as_array().unwrap();
                // The element i is on line 7 + i.
                for (i, d) in data.iter().enumerate() {
                    let l = lines[6 + i].trim().trim_end_matches(',');
                    assert_eq!(
                        serde_json::from_str::<serde_json::Value>(l).unwrap(),
                        *d,
                        "{path} line {}",
                        7 + i
                    );
                }
                let hex = tensors.get(&tensor).expect("the .hex precedes the .json");
                assert_eq!(hex.len(), data.len());
                for (i, (h, d)) in hex.iter().zip(data).enumerate() {
                    if f["dtype"] == "f32" {
                        let x = f32::from_bits(*h as u32);
                        if x.is_finite() {
                            assert_eq!(d.as_f64().unwrap() as f32, x, "{path} element {i}");
                        }
                    } else {
                        assert_eq!(d.as_i64().unwrap() as i128, *h, "{path} element {i}: json vs hex");
                    }
                }
            }
            "stats-json" => {
                let _: serde_json::Value = serde_json::from_str(&text).unwrap();
            }
            _ => {}
        }
    }
    // Every .npy holds the values of its tensor's .hex.
    for (t, v) in &npys {
        assert_eq!(tensors.get(t), Some(v), "{}: {t}.npy vs {t}.hex", dir.display());
    }
    // No other files.
    let on_disk = std::fs::read_dir(dir).unwrap().count();
    assert_eq!(on_disk, files.len() + 1, "{}", dir.display());
    files.len() + 1
}

#[test]
fn an_independent_checker_from_the_docs_accepts_every_committed_case() {
    let mut cases = 0;
    for e in std::fs::read_dir(root().join("testvectors")).unwrap() {
        let p = e.unwrap().path();
        if p.join("manifest.json").is_file() {
            doc_check_case(&p);
            cases += 1;
        }
    }
    assert!(cases >= 26, "{cases}");
}

#[test]
fn the_suite_readme_lists_every_case() {
    let readme = std::fs::read_to_string(root().join("testvectors/README.md")).unwrap();
    for c in suite_case_files() {
        let name = c.file_stem().unwrap().to_string_lossy().into_owned();
        assert!(readme.contains(&format!("| `{name}` |")), "testvectors/README.md does not list {name}");
    }
}

/// Flip one digit in every file of every committed case (in a temp copy):
/// each flip must fail `check` with the file, the exact line and both
/// contents.
#[test]
fn flipping_a_digit_in_any_committed_file_is_located_exactly() {
    let t = Tmp::new("committed");
    // model_node cases name `../models/...` relative to the suite root: the
    // copied suite gets a `models` link beside it.
    std::os::unix::fs::symlink(root().join("models"), t.0.join("models")).unwrap();
    let mut flips = 0;
    for e in std::fs::read_dir(root().join("testvectors")).unwrap() {
        let src = e.unwrap().path();
        if !src.join("manifest.json").is_file() {
            continue;
        }
        let name = src.file_name().unwrap().to_owned();
        let dst = t.0.join("suite").join(&name);
        std::fs::create_dir_all(&dst).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in &files {
            std::fs::copy(f, dst.join(f.file_name().unwrap())).unwrap();
        }
        assert!(vectors::check_case(&dst).is_ok());
        for f in &files {
            let fname = f.file_name().unwrap().to_string_lossy().into_owned();
            if fname.ends_with(".npy") {
                // Binary (model_node): no lines to locate; its sha256 and
                // the doc checker's hex comparison cover it.
                continue;
            }
            let target = dst.join(&fname);
            let original = std::fs::read(&target).unwrap();
            let text = String::from_utf8(original.clone()).unwrap();
            // The middle line that holds a digit.
            let with_digit: Vec<usize> = text
                .split('\n')
                .enumerate()
                .filter(|(_, l)| l.chars().any(|c| c.is_ascii_digit()))
                .map(|(i, _)| i + 1)
                .collect();
            let line = with_digit[with_digit.len() / 2];
            let (before, after) = flip_digit_on_line(&target, line);
            let err = vectors::check_case(&dst).expect_err(&fname);
            let msg = err.to_string();
            assert!(err.is_mismatch(), "{msg}");
            assert!(msg.contains(&format!("{fname} line {line} col ")), "{fname}: {msg}");
            if !msg.contains("hand-edited or corrupt manifest.json") {
                assert!(msg.contains(&format!("expected {before:?}, actual {after:?}")), "{fname}: {msg}");
            }
            std::fs::write(&target, original).unwrap();
            flips += 1;
        }
    }
    assert!(flips >= 300, "{flips}");
}

#[test]
fn the_cdc_trace_is_byte_identical_to_bitmac_cdc() {
    let t = Tmp::new("cdc");
    let case = r#"{"kind":"cdc","name":"c","seed":9,"wclk_ps":10000,"rclk_ps":13700,"rphase_ps":2500,"depth":4,"sync":3,"data_width":6,"words":80,"wen":70,"ren":65}"#;
    let out = gen_fresh(&t, case);
    let cli = t.0.join("cli.txt");
    let (code, _, stderr) = bitmac(&[
        "cdc",
        "--wclk-ps",
        "10000",
        "--rclk-ps",
        "13700",
        "--rphase-ps",
        "2500",
        "--depth",
        "4",
        "--sync",
        "3",
        "--data-width",
        "6",
        "--words",
        "80",
        "--wen",
        "70",
        "--ren",
        "65",
        "--seed",
        "9",
        "--trace",
        cli.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read(cli).unwrap(), std::fs::read(out.join("c/trace.txt")).unwrap());
    // The popped words are 0, 1, 2, ... (mod 2^6) in order.
    let hex = std::fs::read_to_string(out.join("c/rdata.hex")).unwrap();
    let words: Vec<u64> = hex.lines().map(|l| u64::from_str_radix(l, 16).unwrap()).collect();
    assert_eq!(words, (0..80).map(|k| k % 64).collect::<Vec<u64>>());
}

#[test]
fn datapath_kinds_need_a_valid_hw_config() {
    let t = Tmp::new("hw");
    let case = r#"{"kind":"gemm","name":"g","seed":1,"m":2,"k":3,"n":2,"s_a":0.1,"s_w":0.1,"s_out":0.1}"#;
    let c = write_case(&t.0, case);
    let out = t.0.join("out");
    let (code, _, stderr) = bitmac(&["gen", "--case", c.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("case kind gemm needs a hardware config (--hw HW.json)"), "{stderr}");
    let hw = t.0.join("hw.json");
    let mut spec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("testvectors/cases/gemm_ws_acc32.hw.json")).unwrap(),
    )
    .unwrap();
    spec["accumulator"]["bits"] = serde_json::json!(99);
    std::fs::write(&hw, spec.to_string()).unwrap();
    let (code, _, stderr) = bitmac(&[
        "gen",
        "--hw",
        hw.to_str().unwrap(),
        "--case",
        c.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("accumulator.bits: 99 is out of range"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1);
}

/// The worked example of docs/vectors.md holds for the committed files.
#[test]
fn the_worked_example_in_the_docs_is_true() {
    let d = root().join("testvectors/round_rnd_conv_c0");
    let line2 = |f: &str| std::fs::read_to_string(d.join(f)).unwrap().lines().nth(1).unwrap().to_string();
    assert_eq!(line2("x.hex"), "80df8");
    assert_eq!(line2("y.hex"), "00e0");
    assert_eq!(line2("pos.hex"), "1");
    assert_eq!(line2("ovf.hex"), "1");
    let json_line8 =
        |f: &str| std::fs::read_to_string(d.join(f)).unwrap().lines().nth(7).unwrap().trim().to_string();
    assert_eq!(json_line8("x.json"), "-520712,");
    assert_eq!(json_line8("y.json"), "224,");
    let sha = format!("{:x}", Sha256::digest(std::fs::read(d.join("y.hex")).unwrap()));
    let docs = std::fs::read_to_string(root().join("docs/vectors.md")).unwrap();
    assert!(docs.contains(&format!("\"sha256\": \"{sha}\"")), "docs/vectors.md quotes y.hex's sha256 {sha}");
}

/// Every committed CDC trace replays edge for edge through `bitmac cdc
/// --replay` (the CDC model's own trace checker).
#[test]
fn committed_cdc_traces_replay_with_bitmac_cdc() {
    let mut n = 0;
    for e in std::fs::read_dir(root().join("testvectors")).unwrap() {
        let d = e.unwrap().path();
        let Ok(text) = std::fs::read_to_string(d.join("manifest.json")) else { continue };
        let m: vectors::Manifest = serde_json::from_str(&text).unwrap();
        let CaseSpec::Cdc(c) = &m.case else { continue };
        if c.meta.is_some() {
            continue; // replay re-simulates without metastability
        }
        let (code, stdout, stderr) = bitmac(&[
            "cdc",
            "--replay",
            d.join("trace.txt").to_str().unwrap(),
            "--depth",
            &c.depth.to_string(),
            "--sync",
            &c.sync.to_string(),
            "--data-width",
            &c.data_width.to_string(),
        ]);
        assert_eq!(code, 0, "{}: {stdout}{stderr}", m.name);
        assert!(stdout.trim().ends_with("edges match"), "{stdout}");
        n += 1;
    }
    assert!(n >= 4, "{n}");
}

/// `model_node` writes exactly the files `bitmac run --dump` writes for that
/// node (one function builds both): the committed graph-model case against a
/// fresh dump of the same sample on the same hardware.
#[test]
fn model_node_files_are_the_dump_of_bitmac_run() {
    let t = Tmp::new("dump");
    let dir = t.0.join("d");
    let (code, _, err) = bitmac(&[
        "run",
        "--model",
        root().join("models/digits_resdw.graph.json").to_str().unwrap(),
        "--hw",
        root().join("testvectors/cases/model_node_resdw_dw.hw.json").to_str().unwrap(),
        "--dump",
        dir.to_str().unwrap(),
        "--sample",
        "0",
    ]);
    assert_eq!(code, 0, "{err}");
    let case = root().join("testvectors/model_node_resdw_dw");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("manifest.json")).unwrap()).unwrap();
    let mut n = 0;
    for f in m["files"].as_array().unwrap() {
        let p = f["path"].as_str().unwrap();
        if p == "stats.json" {
            continue;
        }
        assert_eq!(std::fs::read(case.join(p)).unwrap(), std::fs::read(dir.join(p)).unwrap(), "{p}");
        n += 1;
    }
    assert_eq!(n, 6, "in0, acc and out, each .npy and .hex");
    // The dump manifest's entry for the node is the case's stats.json `node`.
    let dm: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("stats.json")).unwrap()).unwrap();
    assert_eq!(dm["nodes"][1], st["node"]);
}

/// The ONNX `model_node` case against ONNX Runtime (ORT_DISABLE_ALL): the
/// node's input and output codes equal the committed ORT codes of the same
/// tensors for that sample (`models/onnx/ort_qdq.py` made them).
#[test]
fn model_node_onnx_codes_equal_onnx_runtime() {
    let case = root().join("testvectors/model_node_qdq_c2");
    let codes = root().join("models/onnx/qdq_cnn.codes.disable_all");
    let sample = 3;
    for (mine, ort) in [
        ("001__c2_Conv.in0.npy", "01__Relu_output_0_QuantizeLinear_Output.npy"),
        ("001__c2_Conv.out.npy", "02__Relu_1_output_0_QuantizeLinear_Output.npy"),
    ] {
        let a = bitmac::npy::read_npy(&case.join(mine)).unwrap();
        let r = bitmac::npy::read_npy(&codes.join(ort)).unwrap();
        let len: usize = a.shape.iter().product();
        assert_eq!(&r.shape[1..], &a.shape[..], "{mine}");
        assert_eq!(a.data, r.data[sample * len..(sample + 1) * len], "{mine} vs ORT {ort}");
    }
}

#[test]
fn model_node_errors_name_the_field() {
    let t = Tmp::new("mnerr");
    let hw = root().join("testvectors/cases/model_node_resdw_dw.hw.json");
    let model = root().join("models/digits_resdw.graph.json");
    for (extra, want) in [
        (r#""node":"nope","sample":0"#, "node: \"nope\""),
        (r#""node":"dw","sample":100000"#, "sample: 100000"),
        (r#""node":"dw","sample":0,"requant":"accumulator""#, "requant"),
    ] {
        let json =
            format!(r#"{{"kind":"model_node","name":"x","model":{:?},{extra}}}"#, model.to_str().unwrap());
        let c = write_case(&t.0, &json);
        let (code, _, err) = bitmac(&[
            "gen",
            "--hw",
            hw.to_str().unwrap(),
            "--case",
            c.to_str().unwrap(),
            "--out",
            t.0.to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "{extra}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(want), "{extra}: {err}");
    }
    assert!(!t.0.join("x").exists(), "nothing written on error");
}
