//! Running an imported ONNX model on a float32 `.npy` data set through the graph runner, and
//! the `bitmac run --model M.onnx` report (`docs/onnx.md` §8).

use super::onnx::{self, Flavor, ImportOptions, Imported};
use super::reference::{agreement, argmax, Agreement, OnnxReference};
use crate::array::Engine;
use crate::error::{Error, Result};
use crate::graph::run::{lower, run_batches, Keep};
use crate::graph::{RequantMode, TensorId, MAX_ELEMENTS};
use crate::hw::HwConfig;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The shipped hardware preset for ONNX models: 9-bit signed activation operands, so both
/// uint8 and int8 codes fit (`models/hw/onnx.json`).
pub const ONNX_HW: &str = include_str!("../../models/hw/onnx.json");

/// True for a path bitmac reads as ONNX (extension `.onnx`).
pub fn is_onnx(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunOutput {
    pub samples: usize,
    /// argmax of the output codes per sample (lowest index on ties).
    pub predictions: Vec<usize>,
    /// Per graph tensor, every sample's codes (`samples * len`); with
    /// `all_codes` false ([`run_imported`]) only the graph output's (every
    /// other tensor's left empty).
    pub codes: Vec<Vec<i64>>,
}

/// Batches [`run_imported`] runs at once (in parallel): in flight, each
/// keeps 8 bytes per element of every tensor (codes only), within the 40
/// bytes per element of one batch [`graph_memory`] counts.
const PAR_BATCHES: usize = 4;

/// Quantize `x` (float32, `[N, per-sample shape...]`) with the graph's input quantizer and run
/// every sample, `batch` at a time. `all_codes`: keep every tensor's codes (the agreement
/// report reads them); otherwise only the output's, each intermediate tensor freed after its
/// last consumer (`Keep::Output`; the predictions are the same).
pub fn run_imported(
    imp: &Imported,
    hw: &HwConfig,
    x: &crate::npy::NpyF32,
    engine: Engine,
    batch: usize,
    all_codes: bool,
) -> Result<RunOutput> {
    let g = &imp.graph;
    let inshape = &g.tensor(g.input()).shape;
    if x.shape.len() != inshape.len() + 1 || x.shape[1..] != inshape[..] || x.shape[0] == 0 {
        return Err(Error::field(
            "data shape",
            format!("{:?}", x.shape),
            format!(
                "[N >= 1, {}] (the model's input)",
                inshape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let samples = x.shape[0];
    // Every tensor's codes for every sample are kept (the agreement report needs them).
    let per_sample: usize = g.tensors().iter().map(|t| t.len()).sum();
    if per_sample.checked_mul(samples).is_none_or(|n| n > 4 * MAX_ELEMENTS) {
        return Err(Error::field(
            "data samples",
            samples,
            format!("at most {} for this model (all tensors are kept)", 4 * MAX_ELEMENTS / per_sample.max(1)),
        ));
    }
    let batch = batch.clamp(1, 1024);
    let low = lower(g, hw)?;
    let len = g.tensor(g.input()).len();
    let mut codes: Vec<Vec<i64>> = vec![Vec::new(); g.tensors().len()];
    let mut s0 = 0;
    while s0 < samples {
        // Up to PAR_BATCHES batches run in parallel; their codes are
        // appended in sample order (the same bytes at any thread count).
        let mut window = Vec::with_capacity(PAR_BATCHES);
        while s0 < samples && window.len() < PAR_BATCHES {
            let n = batch.min(samples - s0);
            let input = g.quantize_input(&x.data[s0 * len..(s0 + n) * len]).or_else(|_| {
                let mut v = Vec::with_capacity(n * len);
                for s in x.data[s0 * len..(s0 + n) * len].chunks(len) {
                    v.extend(g.quantize_input(s)?);
                }
                Ok::<_, Error>(v)
            })?;
            if all_codes {
                codes[g.input().0].extend_from_slice(&input);
            }
            window.push((input, n));
            s0 += n;
        }
        let keep = if all_codes { Keep::Codes } else { Keep::Output };
        for outs in run_batches(g, &low, hw, window, engine, keep)? {
            for (node, o) in g.nodes().iter().zip(outs) {
                let c = &mut codes[node.output.0];
                if c.is_empty() {
                    // The first batch: sized for every sample once (no
                    // regrowth copies).
                    c.reserve_exact(samples * g.tensor(node.output).len());
                }
                c.extend_from_slice(&o.codes);
            }
        }
    }
    let k = g.tensor(g.output()).len();
    let predictions = codes[g.output().0].chunks(k).map(argmax).collect();
    Ok(RunOutput { samples, predictions, codes })
}

/// The datapath work of running `samples` samples of `g` in batches of `batch` on `hw`, in
/// MAC-steps (`limits::gemm_work` of every array node's GEMMs: a conv is `groups` GEMMs of
/// `(OH*OW*b) x (C/g*KH*KW) x (O/g)`, a dense one `b x K x N`), as `bitmac run` bounds it for
/// `bitmac-model/1` models (docs/limits.md).
pub fn graph_work(
    g: &crate::graph::Graph,
    hw: &HwConfig,
    engine: Engine,
    samples: usize,
    batch: usize,
) -> u128 {
    use crate::graph::Op;
    use crate::limits::gemm_work;
    let batch = batch.clamp(1, samples.max(1));
    let per = |b: usize| -> u128 {
        g.nodes()
            .iter()
            .map(|n| match &n.op {
                Op::Conv2d(c) => {
                    let out = &g.tensor(n.output).shape;
                    let w = c.weight.shape();
                    let m = (out[1] * out[2]).saturating_mul(b);
                    c.groups as u128 * gemm_work(hw, engine, m, w[1] * w[2] * w[3], w[0] / c.groups.max(1))
                }
                Op::Dense(d) => gemm_work(hw, engine, b, d.weight.shape()[0], d.weight.shape()[1]),
                _ => 0,
            })
            .sum()
    };
    let (full, rest) = (samples / batch, samples % batch);
    full as u128 * per(batch) + if rest > 0 { per(rest) } else { 0 }
}

/// The memory a run keeps: 8 bytes per code of every tensor of every sample, plus 40 bytes
/// per output element of a batch (the runner's code and two accumulators).
pub fn graph_memory(g: &crate::graph::Graph, samples: usize, batch: usize) -> u128 {
    let per: u128 = g.tensors().iter().map(|t| t.len() as u128).sum();
    8 * per * samples as u128 + 40 * per * batch.clamp(1, samples.max(1)) as u128
}

/// Arguments of `bitmac run --model M.onnx`.
pub struct CliArgs<'a> {
    pub model: &'a Path,
    pub data: Option<&'a Path>,
    pub labels: Option<&'a Path>,
    /// `None`: the model's `.ref.json` when it exists; `Some("none")`: no comparison.
    pub reference: Option<&'a Path>,
    pub requant: RequantMode,
    pub hw: &'a HwConfig,
    pub hw_name: &'a str,
    pub engine: Engine,
    pub batch: usize,
    pub explain: usize,
    pub json: bool,
    /// `--max-work` (MAC-steps) and `--max-mem` (bytes), docs/limits.md.
    pub max_work: u64,
    pub max_mem: u64,
}

fn sibling_ref(model: &Path) -> PathBuf {
    model.with_extension("ref.json")
}

/// Import, run, compare; returns the report text (JSON with `json`).
pub fn run_cli(a: &CliArgs) -> Result<String> {
    let imp = onnx::load(a.model, ImportOptions { requant: a.requant })?;
    let ref_path = match a.reference {
        Some(p) if p.as_os_str() == "none" => None,
        Some(p) => Some(p.to_path_buf()),
        None => Some(sibling_ref(a.model)).filter(|p| p.exists()),
    };
    let reference = ref_path.as_deref().map(|p| OnnxReference::load(p, &imp)).transpose()?;
    let data = match (a.data, &reference) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(r)) => r.input.clone(),
        (None, None) => {
            return Err(Error::input("--data X.npy is required (the model has no reference naming its data)"))
        }
    };
    let labels = match (a.labels, &reference, a.data) {
        (Some(l), _, _) => Some(l.to_path_buf()),
        (None, Some(r), None) => Some(r.labels.clone()),
        _ => None,
    };
    let x = crate::npy::read_f32(&data)?;
    let samples = x.shape.first().copied().unwrap_or(0);
    let hint = |flag: &str| format!("raise the limit with {flag} N");
    let what = format!("{samples} samples of {} in batches of {}", a.model.display(), a.batch);
    crate::limits::check(
        &what,
        graph_work(&imp.graph, a.hw, a.engine, samples, a.batch),
        a.max_work,
        "MAC-steps",
        Some(&hint("--max-work")),
    )?;
    crate::limits::check(
        &format!("{what} (kept codes)"),
        graph_memory(&imp.graph, samples, a.batch),
        a.max_mem,
        "bytes",
        Some(&hint("--max-mem")),
    )?;
    // Without a reference only the output's codes are read (the predictions).
    let out = run_imported(&imp, a.hw, &x, a.engine, a.batch, reference.is_some())?;
    let labels = match labels {
        None => None,
        Some(p) => {
            let l = crate::npy::read_npy(&p)?;
            if l.shape != [out.samples] {
                return Err(Error::field(
                    format!("{}: shape", p.display()),
                    format!("{:?}", l.shape),
                    format!("[{}] (one label per sample)", out.samples),
                ));
            }
            Some((p, l.data))
        }
    };
    let correct = labels
        .as_ref()
        .map(|(_, l)| out.predictions.iter().zip(l).filter(|(p, l)| **p as i64 == **l).count());
    let g = &imp.graph;
    let k = g.tensor(g.output()).len();
    let agree = match &reference {
        None => None,
        Some(r) => {
            if r.samples != out.samples {
                return Err(Error::input(format!(
                    "{}: {} reference samples but the data has {} (use the reference's data or --reference none)",
                    r.path.display(),
                    r.samples,
                    out.samples
                )));
            }
            let logits = &out.codes[g.output().0];
            Some(agreement(&imp, r, &out.predictions, &|s| &logits[s * k..(s + 1) * k], &|t: TensorId| {
                Some(out.codes[t.0].as_slice())
            })?)
        }
    };
    let flavor = match imp.flavor {
        Flavor::Qonnx => "qonnx",
        Flavor::Qdq => "qdq",
    };
    if a.json {
        Ok(json_report(a, &imp, flavor, &data, &out, correct, &labels, agree.as_ref(), reference.as_ref()))
    } else {
        Ok(text_report(a, &imp, flavor, &data, &out, correct, agree.as_ref(), reference.as_ref()))
    }
}

#[allow(clippy::too_many_arguments)]
fn json_report(
    a: &CliArgs,
    imp: &Imported,
    flavor: &str,
    data: &Path,
    out: &RunOutput,
    correct: Option<usize>,
    labels: &Option<(PathBuf, Vec<i64>)>,
    agree: Option<&Agreement>,
    r: Option<&OnnxReference>,
) -> String {
    use serde_json::json;
    let mut v = json!({
        "model": a.model.display().to_string(),
        "format": "onnx",
        "flavor": flavor,
        "graph": imp.graph.name(),
        "nodes": imp.graph.nodes().iter().map(|n| json!({"name": n.name, "op": n.op.kind()})).collect::<Vec<_>>(),
        "hw": a.hw_name,
        "requant": a.requant.name(),
        "engine": a.engine.name(),
        "data": data.display().to_string(),
        "samples": out.samples,
        "predictions": out.predictions,
    });
    if let (Some(c), Some((p, _))) = (correct, labels) {
        v["labels"] = json!(p.display().to_string());
        v["correct"] = json!(c);
        v["accuracy"] = json!(c as f64 / out.samples as f64);
    }
    if let (Some(ag), Some(r)) = (agree, r) {
        v["reference"] = json!({
            "file": r.path.display().to_string(),
            "runtime": ag.runtime,
            "accuracy": r.accuracy,
            "predictions_equal": ag.predictions_equal,
            "agreement": ag.predictions_equal as f64 / ag.samples as f64,
            "tensors": ag.tensors.iter().map(|t| json!({
                "tensor": t.tensor, "node": t.node, "elements": t.elements,
                "differing": t.differing, "max_abs_diff": t.max_abs_diff,
                "samples_differing": t.samples_differing,
            })).collect::<Vec<_>>(),
            "differences": ag.differences.iter().take(a.explain).map(|d| json!({
                "sample": d.sample, "bitmac": d.bitmac, "reference": d.reference,
                "tensor": d.first.as_ref().map(|f| f.0.clone()),
                "node": d.first.as_ref().and_then(|f| f.1.clone()),
                "element": d.first.as_ref().map(|f| f.2),
                "explanation": d.explanation,
            })).collect::<Vec<_>>(),
        });
    }
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

#[allow(clippy::too_many_arguments)]
fn text_report(
    a: &CliArgs,
    imp: &Imported,
    flavor: &str,
    data: &Path,
    out: &RunOutput,
    correct: Option<usize>,
    agree: Option<&Agreement>,
    r: Option<&OnnxReference>,
) -> String {
    let mut s = String::new();
    let g = &imp.graph;
    let _ = writeln!(
        s,
        "bitmac run: {} model {} ({} nodes) on {} ({} samples)\nhardware: {}; requant {}; engine {}",
        flavor,
        a.model.display(),
        g.nodes().len(),
        data.display(),
        out.samples,
        a.hw_name,
        a.requant.name(),
        a.engine.name()
    );
    if let Some(c) = correct {
        let _ = writeln!(
            s,
            "accuracy (integer-only datapath): {:.2}% ({c}/{})",
            100.0 * c as f64 / out.samples as f64,
            out.samples
        );
    }
    match (agree, r) {
        (Some(ag), Some(r)) => {
            let _ = writeln!(
                s,
                "reference {} ({}): accuracy {:.2}%; predictions equal {}/{} ({:.2}%)",
                r.path.display(),
                ag.runtime,
                100.0 * r.accuracy,
                ag.predictions_equal,
                ag.samples,
                100.0 * ag.predictions_equal as f64 / ag.samples as f64
            );
            for t in &ag.tensors {
                let _ = writeln!(
                    s,
                    "  codes {} ({}): {}/{} differ, max |diff| {}",
                    t.tensor,
                    t.node.as_deref().unwrap_or("input"),
                    t.differing,
                    t.elements,
                    t.max_abs_diff
                );
            }
            for d in ag.differences.iter().take(a.explain) {
                let _ = writeln!(
                    s,
                    "  sample {}: bitmac {} vs reference {}: {}",
                    d.sample, d.bitmac, d.reference, d.explanation
                );
            }
        }
        _ => {
            let _ = writeln!(s, "no reference: agreement not computed");
        }
    }
    s
}
