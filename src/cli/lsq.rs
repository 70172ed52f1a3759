//! `bitmac lsq --input FILE`: apply an LSQ quantizer (forward and backward)
//! to the JSON in FILE and print the result as JSON on stdout.
//!
//! Input (unknown fields rejected):
//! `{"kind": "act"|"weight", "variant": "seed"|"paper" (default "seed"),
//!   "nbit": int, "step": float, "x": [float], "grad_y": [float] (optional)}`.
//! Each JSON number is read as the nearest f64 (as Python's `json` does),
//! then rounded to the nearest f32 (as `torch.tensor(..., dtype=torch.float32)`
//! does); a value that would round to ±inf in f32 is an error. A missing
//! `grad_y` means all ones, i.e. the gradients of `y.sum()`.
//!
//! Output: `{"y": [...], "code": [...], "grad_x": [...], "grad_s": float}`,
//! each float printed as the shortest decimal that parses back to the same
//! f32 (ryu), `-0.0` kept. See `docs/lsq.md`.

use crate::error::{Error, Result};
use crate::lsq::{fmt_f64, LsqConfig, LsqKind, LsqVariant};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Arguments of `bitmac lsq`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// JSON input: {"kind": "act"|"weight", "variant": "seed"|"paper", "nbit": 2..=16,
    /// "step": float, "x": [float], "grad_y": [float] (optional, default all ones)};
    /// `-` reads it from stdin.
    #[arg(long, value_name = "FILE")]
    pub input: PathBuf,
}

/// The JSON input, as read (validated into [`LsqConfig`] before use).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct LsqSpec {
    kind: String,
    #[serde(default)]
    variant: Option<String>,
    nbit: i64,
    step: f64,
    x: Vec<f64>,
    #[serde(default)]
    grad_y: Option<Vec<f64>>,
}

/// The JSON output.
#[derive(Serialize, Debug)]
struct LsqOut {
    y: Vec<f32>,
    code: Vec<i32>,
    grad_x: Vec<f32>,
    grad_s: f32,
}

/// Run `bitmac lsq`.
pub fn run(args: Args) -> Result<i32> {
    let path = args.input.display().to_string();
    // `--input -` reads the JSON from stdin (bounded like a file read).
    let spec: LsqSpec = if args.input.as_os_str() == "-" {
        use std::io::Read;
        let limit = crate::io::MAX_INPUT_BYTES;
        let mut text = String::new();
        std::io::stdin()
            .take(limit + 1)
            .read_to_string(&mut text)
            .map_err(|e| Error::input(format!("stdin: {e}")))?;
        if text.len() as u64 > limit {
            return Err(Error::input(format!("stdin: more than {limit} bytes (the input size limit)")));
        }
        crate::error::parse_json(&text, "stdin", &|_| None)?
    } else {
        crate::io::read_json(&args.input)?
    };
    let out = compute(spec).map_err(|e| e.context(&path))?;
    let text =
        serde_json::to_string(&out).map_err(|e| Error::internal(format!("lsq: serialising output: {e}")))?;
    println!("{text}");
    Ok(0)
}

fn compute(spec: LsqSpec) -> Result<LsqOut> {
    let kind = LsqKind::parse("kind", &spec.kind)?;
    let variant = match &spec.variant {
        Some(v) => LsqVariant::parse("variant", v)?,
        None => LsqVariant::Seed,
    };
    let cfg = LsqConfig::from_boundary(kind, variant, spec.nbit, spec.step)?;
    let x = to_f32("x", &spec.x)?;
    let grad_y = match &spec.grad_y {
        Some(g) => {
            if g.len() != x.len() {
                return Err(crate::lsq::length_mismatch(x.len(), g.len()));
            }
            to_f32("grad_y", g)?
        }
        None => vec![1.0; x.len()],
    };
    let fwd = cfg.forward(&x)?;
    let bwd = cfg.backward(&x, &grad_y)?;
    if !bwd.grad_s.is_finite() {
        return Err(Error::input(format!(
            "grad_s: the f32 sum overflowed to {} (allowed: finite; scale grad_y down)",
            bwd.grad_s
        )));
    }
    Ok(LsqOut { y: fwd.y, code: fwd.code, grad_x: bwd.grad_x, grad_s: bwd.grad_s })
}

/// Round each f64 to the nearest f32, rejecting values that overflow to ±inf.
fn to_f32(field: &str, v: &[f64]) -> Result<Vec<f32>> {
    v.iter()
        .enumerate()
        .map(|(i, &a)| {
            let b = a as f32;
            if b.is_finite() {
                Ok(b)
            } else {
                Err(Error::field(
                    format!("{field}[{i}]"),
                    fmt_f64(a),
                    format!("finite in f32, |v| <= {:e}", f32::MAX),
                ))
            }
        })
        .collect()
}
