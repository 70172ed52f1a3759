//! `bitmac lsq` end to end: the built binary against the PyTorch reference
//! vectors (bit-exact after parsing the printed floats), and every bad input
//! gives one stderr line naming the field, exit code 2, no panic.

mod common_lsq;

use common_lsq::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bitmac-cli-lsq-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_lsq(input: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bitmac")).arg("lsq").arg("--input").arg(input).output().unwrap()
}

#[derive(Serialize)]
struct In<'a> {
    kind: &'a str,
    variant: &'a str,
    nbit: u32,
    step: f32,
    x: Vec<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grad_y: Option<Vec<f32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Out {
    y: Vec<f32>,
    code: Vec<i64>,
    grad_x: Vec<f32>,
    grad_s: f32,
}

/// Every reference case through the CLI. Floats go in as the shortest
/// decimal of each f32 (serde_json/ryu) and the printed output is parsed back
/// to f32; y, code and grad_x must match torch bit for bit. Elements with an
/// infinite x (not expressible in JSON) are dropped, and grad_s is then not
/// compared for that case.
#[test]
fn cli_matches_pytorch_reference_bit_for_bit() {
    let dir = tmpdir("ref");
    let mut checked = 0;
    for (n, c) in all_cases().iter().enumerate() {
        let keep: Vec<usize> = (0..c.x.len()).filter(|&i| f(&c.x[i]).is_finite()).collect();
        let full = keep.len() == c.x.len();
        let input = In {
            kind: &c.kind,
            variant: &c.variant,
            nbit: c.nbit,
            step: f(&c.step),
            x: keep.iter().map(|&i| f(&c.x[i])).collect(),
            grad_y: Some(keep.iter().map(|&i| f(&c.grad_y[i])).collect()),
        };
        let path = dir.join(format!("case{n}.json"));
        std::fs::write(&path, serde_json::to_string(&input).unwrap()).unwrap();
        let out = run_lsq(&path);
        assert_eq!(out.status.code(), Some(0), "{}: {}", c.name, String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        assert_short_floats(&text);
        let got: Out = serde_json::from_str(&text).unwrap();
        assert_eq!(got.y.len(), keep.len());
        for (j, &i) in keep.iter().enumerate() {
            assert_eq!(got.y[j].to_bits(), f(&c.y[i]).to_bits(), "{} y[{i}]", c.name);
            assert_eq!(got.code[j], c.code[i], "{} code[{i}]", c.name);
            assert_eq!(got.grad_x[j].to_bits(), f(&c.grad_x[i]).to_bits(), "{} grad_x[{i}]", c.name);
        }
        if full {
            let torch = f(&c.grad_s);
            let diff = (f64::from(got.grad_s) - f64::from(torch)).abs();
            let bound = f32_sum_error_bound(c.x.len(), f(&c.grad_s_abs_terms))
                + 2f64.powi(-23) * f64::from(torch.abs());
            assert!(
                diff <= 1e-6 * f64::from(torch.abs()) || diff <= bound,
                "{} grad_s {} vs {}",
                c.name,
                got.grad_s,
                torch
            );
        }
        checked += 1;
    }
    assert!(checked >= 200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Output floats are the shortest round-trip decimal of the f32 (no f64
/// widening such as 0.10000000149011612), -0.0 is kept, and a missing
/// grad_y means ones.
#[test]
fn cli_output_format_and_default_grad_y() {
    let dir = tmpdir("fmt");
    let path = dir.join("a.json");
    std::fs::write(&path, r#"{"kind": "act", "nbit": 4, "step": 0.1, "x": [0.1, -0.01, 0.7, 5.0]}"#).unwrap();
    let out = run_lsq(&path);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_short_floats(&text);
    // 0.1f32/0.1f32 = 1 -> y = 1*0.1f32, printed as 0.1; -0.01/0.1 rounds to -0.0.
    assert!(text.starts_with(r#"{"y":[0.1,-0.0,"#), "{text}");
    let got: Out = serde_json::from_str(&text).unwrap();
    assert_eq!(got.code, vec![1, 0, 7, 7]);
    // Seed act: inside -> grad 1; 0.7f32/0.1f32 is exactly 7.0 in f32 (numpy
    // and torch agree), on the boundary, so masked like 5.0/0.1 = 50 > 7.
    assert_eq!(got.grad_x, vec![1.0, 1.0, 0.0, 0.0]);
    // Same as an explicit grad_y of ones.
    let path2 = dir.join("b.json");
    std::fs::write(&path2, r#"{"kind": "act", "variant": "seed", "nbit": 4, "step": 0.1, "x": [0.1, -0.01, 0.7, 5.0], "grad_y": [1,1,1,1]}"#).unwrap();
    let out2 = run_lsq(&path2);
    assert_eq!(String::from_utf8(out2.stdout).unwrap(), text);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every number printed has at most 9 significant digits (the most an f32
/// shortest round-trip needs), so no f64 widening noise.
fn assert_short_floats(text: &str) {
    for tok in text.split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '.' || ch == '-' || ch == '+')) {
        if tok.is_empty() || !tok.starts_with(|ch: char| ch.is_ascii_digit() || ch == '-') {
            continue;
        }
        let mantissa = tok.trim_start_matches('-').split(['e', 'E']).next().unwrap();
        let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
        let sig = digits.trim_start_matches('0').trim_end_matches('0');
        assert!(sig.len() <= 9, "number {tok:?} has {} significant digits", sig.len());
    }
}

fn expect_error(dir: &Path, name: &str, json: Option<&str>, needle: &str) {
    let path = dir.join(format!("{name}.json"));
    if let Some(j) = json {
        std::fs::write(&path, j).unwrap();
    }
    let out = run_lsq(&path);
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{name}: stderr {err:?}");
    assert!(out.stdout.is_empty(), "{name}: wrote to stdout");
    assert_eq!(err.lines().count(), 1, "{name}: not one line: {err:?}");
    assert!(err.ends_with('\n') && !err.contains("panicked"), "{name}: {err:?}");
    assert!(err.contains(needle), "{name}: {err:?} does not name {needle:?}");
}

#[test]
fn cli_bad_inputs_one_line_exit_2() {
    let dir = tmpdir("err");
    let ok = |body: &str| format!(r#"{{"kind": "weight", {body}}}"#);
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        (
            "nbit1",
            Some(ok(r#""nbit": 1, "step": 0.5, "x": [1]"#)),
            "nbit: 1 is out of range (allowed: 2..=16)",
        ),
        (
            "nbit17",
            Some(ok(r#""nbit": 17, "step": 0.5, "x": [1]"#)),
            "nbit: 17 is out of range (allowed: 2..=16)",
        ),
        ("nbit_neg", Some(ok(r#""nbit": -3, "step": 0.5, "x": [1]"#)), "nbit: -3"),
        ("step0", Some(ok(r#""nbit": 4, "step": 0, "x": [1]"#)), "step: 0 is out of range"),
        ("step_neg", Some(ok(r#""nbit": 4, "step": -1, "x": [1]"#)), "step: -1 is out of range"),
        ("step_huge", Some(ok(r#""nbit": 4, "step": 1e39, "x": [1]"#)), "step: 1e39 is out of range"),
        ("step_underflow", Some(ok(r#""nbit": 4, "step": 1e-50, "x": [1]"#)), "step: 1e-50 is out of range"),
        (
            "step_top_overflow",
            Some(ok(r#""nbit": 16, "step": 1e35, "x": [1]"#)),
            "step: 1e35 is out of range",
        ),
        (
            "len",
            Some(ok(r#""nbit": 4, "step": 0.5, "x": [1, 2], "grad_y": [1]"#)),
            "grad_y: length 1 does not match",
        ),
        ("malformed", Some(r#"{"kind": "act", "nbit": 4,, }"#.to_string()), "malformed JSON"),
        ("truncated", Some(r#"{"kind": "act", "nbit": 4"#.to_string()), "truncated JSON"),
        ("unknown_field", Some(ok(r#""nbit": 4, "step": 0.5, "x": [1], "bias": 3"#)), "bias: unknown field"),
        (
            "unknown_kind",
            Some(r#"{"kind": "bias", "nbit": 4, "step": 0.5, "x": [1]}"#.to_string()),
            "kind: \"bias\"",
        ),
        (
            "unknown_variant",
            Some(ok(r#""variant": "lsq+", "nbit": 4, "step": 0.5, "x": [1]"#)),
            "variant: \"lsq+\"",
        ),
        ("missing_step", Some(ok(r#""nbit": 4, "x": [1]"#)), "step: missing"),
        ("x_overflow", Some(ok(r#""nbit": 4, "step": 0.5, "x": [1, 1e39]"#)), "x[1]: 1e39 is out of range"),
        (
            "gy_overflow",
            Some(ok(r#""nbit": 4, "step": 0.5, "x": [1], "grad_y": [-4e38]"#)),
            "grad_y[0]: -4e38",
        ),
        ("x_string", Some(ok(r#""nbit": 4, "step": 0.5, "x": ["1"]"#)), "x[0]: \"1\" has the wrong type"),
        ("nbit_float", Some(ok(r#""nbit": 4.5, "step": 0.5, "x": [1]"#)), "nbit: 4.5 has the wrong type"),
        (
            "grad_s_overflow",
            Some(ok(r#""nbit": 8, "step": 1, "x": [1e3, 1e3], "grad_y": [3e38, 3e38]"#)),
            "grad_s",
        ),
        ("missing_file", None, "missing_file.json"),
    ];
    for (name, json, needle) in &cases {
        expect_error(&dir, name, json.as_deref(), needle);
    }
    // The message names the input file too.
    expect_error(&dir, "named", Some(&ok(r#""nbit": 1, "step": 0.5, "x": [1]"#)), "named.json: nbit");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 10 item 7: `bitmac lsq --input -` reads the JSON from stdin and
/// prints exactly what `--input FILE` prints.
#[test]
fn input_dash_reads_stdin() {
    use std::io::Write;
    let text = r#"{"kind": "act", "variant": "seed", "nbit": 4, "step": 0.125, "x": [0.3, -0.07, 2.5]}"#;
    let dir = std::env::temp_dir().join(format!("bitmac-lsq-stdin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("in.json");
    std::fs::write(&p, text).unwrap();
    let from_file = run_lsq(&p);
    assert!(from_file.status.success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitmac"))
        .args(["lsq", "--input", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let from_stdin = child.wait_with_output().unwrap();
    assert!(from_stdin.status.success());
    assert_eq!(from_stdin.stdout, from_file.stdout);
    std::fs::remove_dir_all(&dir).ok();
}
