//! Item 9 of issue 10: a mutation fuzzer over every input parser, run by
//! `cargo test`. Each case takes a valid seed input (a shipped or committed
//! file), applies a few random byte-level and token-level mutations, and
//! feeds the result to the parser's entry point in `bitmac::fuzzing`. It
//! asserts that the parser returns (no panic; proptest reports one as a
//! failure with the shrunk input) and that a refusal is one non-empty line.
//!
//! The bounded run here is `BITMAC_FUZZ_CASES` cases per parser (default
//! 64, about a second in all). The long run:
//!
//! ```text
//! BITMAC_FUZZ_CASES=20000 cargo test --release --test fuzz_parsers
//! cargo +nightly fuzz run npy -- -max_total_time=600   # in fuzz/, see fuzz/README.md
//! ```

use proptest::prelude::*;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cases() -> u32 {
    std::env::var("BITMAC_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

/// Seed inputs of each parser: committed files, plus a `.npy` made here.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let read = |p: &str| std::fs::read(root().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    match target {
        "hw_config" => vec![read("models/hw/default.json"), read("models/hw/cdc.json")],
        "model" => vec![read("models/cnn_w4a4.json"), read("models/mlp_w4a4.json")],
        "reference" => vec![read("models/mlp_w4a4.ref.json")],
        "dataset" => {
            // The first 20 lines of the shipped test split.
            let t = read("models/data/digits_test.csv");
            let n = t.iter().enumerate().filter(|(_, &b)| b == b'\n').nth(19).map_or(t.len(), |(i, _)| i + 1);
            vec![t[..n].to_vec()]
        }
        "npy" => {
            let a = bitmac::npy::NpyArray::new(
                vec![3, 4],
                bitmac::npy::Dtype::I8,
                (0..12).map(|v| v - 6).collect(),
            )
            .unwrap();
            let b = bitmac::npy::NpyArray::new(vec![5], bitmac::npy::Dtype::I32, vec![1, -2, 3, 1 << 20, -7])
                .unwrap();
            vec![bitmac::npy::to_npy_bytes(&a), bitmac::npy::to_npy_bytes(&b)]
        }
        "scalesim_config" => vec![read("tests/scalesim/configs/a8x16_ws.cfg")],
        "scalesim_topology" => {
            let mut v = Vec::new();
            for e in std::fs::read_dir(root().join("tests/scalesim/topologies")).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "csv") {
                    v.push(std::fs::read(&p).unwrap());
                }
            }
            v.sort();
            v.truncate(3);
            v
        }
        "sweep_spec" => vec![read("models/sweeps/gemm-array-fifo.json")],
        "vector_case" => vec![
            read("testvectors/cases/pe_column_i8_acc12_sat.json"),
            read("testvectors/cases/lsq_paper_act_4b.json"),
            read("testvectors/cases/cdc_ratio_25to9.json"),
        ],
        "vector_manifest" => vec![read("testvectors/pe_column_i8_acc12_sat/manifest.json")],
        "cdc_trace" => {
            let t = read("testvectors/cdc_ratio_25to9/trace.txt");
            let n = t.iter().enumerate().filter(|(_, &b)| b == b'\n').nth(60).map_or(t.len(), |(i, _)| i + 1);
            vec![t[..n].to_vec()]
        }
        other => panic!("no seeds for {other}"),
    }
}

/// Tokens that hit range checks, number parsing and structure.
const TOKENS: &[&str] = &[
    "-1",
    "0",
    "1",
    "2",
    "255",
    "256",
    "65536",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "1e308",
    "-1e308",
    "1e-320",
    "NaN",
    "inf",
    "0.5",
    "null",
    "true",
    "\"\"",
    "\"x\"",
    "[]",
    "{}",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"",
    "\n",
    "\r\n",
    "#",
    "\u{feff}",
    "é",
    "\0",
    " ",
    "DP",
    "M",
    "W",
    "R",
];

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(usize, u8),
    SetByte(usize, u8),
    Insert(usize, usize),
    Replace(usize, usize, usize),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
    /// Replace the n-th decimal number with a token.
    Number(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let t = TOKENS.len();
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::SetByte(p, b)),
        (any::<usize>(), 0..t).prop_map(|(p, k)| Mutation::Insert(p, k)),
        (any::<usize>(), 1usize..8, 0..t).prop_map(|(p, n, k)| Mutation::Replace(p, n, k)),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Mutation::Delete(p, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Mutation::Duplicate(p, n)),
        (any::<usize>(), 0..t).prop_map(|(n, k)| Mutation::Number(n, k)),
        (any::<usize>(), 0..t).prop_map(|(n, k)| Mutation::Number(n, k)),
    ]
}

fn apply(b: &mut Vec<u8>, m: &Mutation) {
    let at = |p: usize, len: usize| if len == 0 { 0 } else { p % (len + 1) };
    match *m {
        Mutation::FlipBit(p, bit) if !b.is_empty() => {
            let i = p % b.len();
            b[i] ^= 1 << bit;
        }
        Mutation::SetByte(p, v) if !b.is_empty() => {
            let i = p % b.len();
            b[i] = v;
        }
        Mutation::Insert(p, k) => {
            let i = at(p, b.len());
            b.splice(i..i, TOKENS[k].bytes());
        }
        Mutation::Replace(p, n, k) => {
            let i = at(p, b.len());
            let j = (i + n).min(b.len());
            b.splice(i..j, TOKENS[k].bytes());
        }
        Mutation::Delete(p, n) => {
            let i = at(p, b.len());
            let j = (i + n).min(b.len());
            b.drain(i..j);
        }
        Mutation::Truncate(p) => {
            let i = at(p, b.len());
            b.truncate(i);
        }
        Mutation::Duplicate(p, n) => {
            let i = at(p, b.len());
            let j = (i + n).min(b.len());
            let chunk = b[i..j].to_vec();
            b.splice(j..j, chunk);
        }
        Mutation::Number(n, k) => {
            // Digit runs, in order.
            let mut runs = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if b[i].is_ascii_digit() {
                    let s = i;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    runs.push((s, i));
                } else {
                    i += 1;
                }
            }
            if !runs.is_empty() {
                let (s, e) = runs[n % runs.len()];
                b.splice(s..e, TOKENS[k].bytes());
            }
        }
        _ => {}
    }
}

fn fuzz(target: &str) {
    let f = bitmac::fuzzing::TARGETS.iter().find(|(n, _)| *n == target).expect("a target").1;
    let seeds = seeds(target);
    // The seeds themselves are valid inputs.
    for (i, s) in seeds.iter().enumerate() {
        if let Err(e) = f(s) {
            panic!("{target}: seed {i} is refused: {e}");
        }
    }
    let cfg = ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() };
    proptest!(cfg, |(which in 0..seeds.len(), muts in prop::collection::vec(mutation(), 1..6))| {
        let mut b = seeds[which].clone();
        for m in &muts {
            apply(&mut b, m);
        }
        if let Err(e) = f(&b) {
            prop_assert!(!e.trim().is_empty(), "{}: empty error", target);
            prop_assert!(!e.contains('\n') && !e.contains('\r'), "{}: multi-line error: {:?}", target, e);
        }
    });
}

#[test]
fn every_parser_has_a_fuzz_target_here() {
    let names: Vec<&str> = bitmac::fuzzing::TARGETS.iter().map(|(n, _)| *n).collect();
    for n in &names {
        assert!(!seeds(n).is_empty(), "{n}");
    }
    assert_eq!(names.len(), 11);
}

#[test]
fn fuzz_hw_config() {
    fuzz("hw_config");
}
#[test]
fn fuzz_model() {
    fuzz("model");
}
#[test]
fn fuzz_reference() {
    fuzz("reference");
}
#[test]
fn fuzz_dataset() {
    fuzz("dataset");
}
#[test]
fn fuzz_npy() {
    fuzz("npy");
}
#[test]
fn fuzz_scalesim_config() {
    fuzz("scalesim_config");
}
#[test]
fn fuzz_scalesim_topology() {
    fuzz("scalesim_topology");
}
#[test]
fn fuzz_sweep_spec() {
    fuzz("sweep_spec");
}
#[test]
fn fuzz_vector_case() {
    fuzz("vector_case");
}
#[test]
fn fuzz_vector_manifest() {
    fuzz("vector_manifest");
}
#[test]
fn fuzz_cdc_trace() {
    fuzz("cdc_trace");
}
