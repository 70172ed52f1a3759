//! Running a `bitmac-graph/1` model on a data set and reporting it the way
//! `bitmac run` reports the digits models (`sim::RunReport`), plus the
//! post-processing unit's per-node statistics and the bias rounding.

use super::format::GraphFile;
use super::run::{lower, run_all, Lowered};
use super::*;
use crate::array::Stats;
use crate::hw::HwConfig;
use crate::model::{argmax, sha256_hex, Dataset};
use crate::ppu::PpuStats;
use crate::sim::{Flip, LayerReport, RunOptions, RunReport};
use serde::Deserialize;
use std::path::Path;

/// The `format` of a graph reference file.
pub const GRAPH_REF_FORMAT: &str = "bitmac-graph-ref/1";

/// A graph model's fake-quant reference (written by the script that
/// exported the model, e.g. `models/graph_train.py`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphReference {
    pub format: String,
    pub model_sha256: String,
    pub data_sha256: String,
    pub samples: usize,
    pub float_accuracy: f64,
    pub fake_quant_accuracy: f64,
    /// Fake-quant predictions per sample.
    pub predictions: Vec<usize>,
    /// Fake-quant logits per sample, in accumulator units of the last node
    /// (`float logits / (s_in * s_w[o])`).
    pub logits: Vec<Vec<f64>>,
}

impl GraphReference {
    /// Load and check the format; `model_bytes`/`data_bytes` are checked
    /// against the recorded SHA-256 when given.
    pub fn load(
        path: &Path,
        model_bytes: Option<&[u8]>,
        data_bytes: Option<&[u8]>,
    ) -> Result<GraphReference> {
        let text = crate::io::read_to_string(path)?;
        let what = path.display().to_string();
        let r: GraphReference =
            serde_json::from_str(&text).map_err(|e| crate::error::json_error(&what, &e))?;
        if r.format != GRAPH_REF_FORMAT {
            return Err(Error::field(format!("{what}: format"), format!("{:?}", r.format), GRAPH_REF_FORMAT));
        }
        if r.predictions.len() != r.samples || r.logits.len() != r.samples {
            return Err(Error::input(format!("{what}: predictions/logits must have {} rows", r.samples)));
        }
        for (name, bytes, want) in
            [("model", model_bytes, &r.model_sha256), ("data", data_bytes, &r.data_sha256)]
        {
            if let Some(b) = bytes {
                let got = sha256_hex(b);
                if &got != want {
                    return Err(Error::input(format!(
                        "{what}: the {name} file's SHA-256 is {got}, the reference was made from {want}; regenerate it or pass --reference none"
                    )));
                }
            }
        }
        Ok(r)
    }

    /// The reference file beside a model: `X.graph.json` -> `X.ref.json`.
    pub fn path_for_model(model: &Path) -> std::path::PathBuf {
        let s = model.display().to_string();
        std::path::PathBuf::from(
            s.strip_suffix(".graph.json").map_or(format!("{s}.ref.json"), |b| format!("{b}.ref.json")),
        )
    }
}

/// One node's post-processing statistics and bias rounding in a run.
#[derive(Clone, Debug)]
pub struct NodeReport {
    pub name: String,
    pub kind: &'static str,
    pub output_shape: Vec<usize>,
    pub ppu: PpuStats,
    /// Array nodes with a float bias: the largest |rounded − float| bias,
    /// in accumulator LSBs (`docs/graph.md` §7).
    pub bias_max_rounding_error: Option<f64>,
}

/// Run a graph model on `data` (`x = f32(raw) * raw_scale`, quantized by
/// the graph input) and build the run report.
pub fn run_graph_model(
    file: &GraphFile,
    data: &Dataset,
    reference: Option<&GraphReference>,
    hw: &HwConfig,
    opts: &RunOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(RunReport, Vec<NodeReport>)> {
    let g = &file.graph;
    if hw.cdc().is_some() {
        return Err(Error::input(
            "graph models: the hw config's cdc section is not supported yet (remove it)",
        ));
    }
    if let Some(r) = reference {
        if r.samples != data.len() {
            return Err(Error::input(format!(
                "reference has {} samples but the data set has {}",
                r.samples,
                data.len()
            )));
        }
    }
    let out_t = g.tensor(g.output());
    let classes = out_t.len();
    let lowered = lower(g, hw)?;
    let mut inputs = Vec::with_capacity(data.len());
    for s in 0..data.len() {
        let x: Vec<f32> = data.image(s).iter().map(|&r| r * file.raw_scale).collect();
        inputs.push(g.quantize_input(&x).map_err(|e| e.context(format!("sample {s}")))?);
    }
    let run = run_all(g, &lowered, hw, &inputs, opts.batch, opts.engine, progress)?;
    let logits = &run.nodes[g.nodes().len() - 1].codes;
    let predictions: Vec<usize> =
        (0..data.len()).map(|s| argmax(&logits[s * classes..(s + 1) * classes]).unwrap_or(0)).collect();
    let correct = predictions.iter().zip(data.labels()).filter(|(p, &l)| **p == l as usize).count();
    let mut layers = Vec::new();
    let mut nodes = Vec::new();
    let mut total = Stats::default();
    let pe = (hw.rows() * hw.cols()) as f64;
    let last = g.nodes().len() - 1;
    for (i, (node, out)) in g.nodes().iter().zip(&run.nodes).enumerate() {
        let mut bias_err = None;
        if let (Some(st), Lowered::Array(a)) = (&out.stats, &lowered[i]) {
            total.merge(st);
            let utilization = if st.cycles == 0 { 0.0 } else { st.macs as f64 / (st.cycles as f64 * pe) };
            let px = a.conv.as_ref().map_or(1, |c| c.oh * c.ow);
            let mut max_diff = None;
            if let (Some(r), true) = (reference, i == last) {
                let mut m = 0f64;
                for (s, row) in r.logits.iter().enumerate() {
                    for (j, &fq) in row.iter().enumerate().take(classes) {
                        m = m.max((logits[s * classes + j] as f64 - fq).abs());
                    }
                }
                max_diff = Some(m);
            }
            layers.push(LayerReport {
                name: node.name.clone(),
                kind: node.op.kind(),
                gemm: (px * opts.batch.min(data.len().max(1)), a.k / a.weights.len(), a.n),
                stats: st.clone(),
                utilization,
                max_diff_vs_fake_quant: max_diff,
                codes_differing: None,
                multiplier: match a.requant.scaler(0) {
                    crate::ppu::Scaler::Fixed(r) if !a.accumulator && a.requant.per_tensor() => {
                        Some(r.multiplier())
                    }
                    _ => None,
                },
            });
            let (b, w) = match &node.op {
                Op::Conv2d(c) => (&c.bias, &c.weight),
                Op::Dense(d) => (&d.bias, &d.weight),
                _ => unreachable!("array node"),
            };
            let s_in = g.input_quant(i).scale().at(0);
            bias_err =
                b.rounding_error(s_in, w.quant().scale()).map(|e| e.iter().fold(0f64, |m, v| m.max(v.abs())));
        }
        nodes.push(NodeReport {
            name: node.name.clone(),
            kind: node.op.kind(),
            output_shape: g.tensor(node.output).shape.clone(),
            ppu: out.ppu.clone(),
            bias_max_rounding_error: bias_err,
        });
    }
    let (mut agree, mut flips_total, mut flips) = (None, 0, Vec::new());
    if let Some(r) = reference {
        let mut a = 0;
        for s in 0..data.len() {
            let fq = r.predictions[s];
            if predictions[s] == fq {
                a += 1;
                continue;
            }
            flips_total += 1;
            if flips.len() < opts.max_explain {
                let row = &logits[s * classes..(s + 1) * classes];
                let ip = predictions[s];
                flips.push(Flip {
                    sample: s,
                    label: data.label(s),
                    integer: ip,
                    fake_quant: fq,
                    layer: g.nodes()[last].name.clone(),
                    why: format!(
                        "integer logit[{ip}]={} vs logit[{fq}]={}; fake-quant logits (accumulator units) {:.3} vs {:.3} \
                         (no per-node fake-quant codes in the reference: the first differing node is not located)",
                        row[ip], row[fq], r.logits[s][ip], r.logits[s][fq]
                    ),
                });
            }
        }
        agree = Some(a);
    }
    let report = RunReport {
        model: g.name().to_string(),
        samples: data.len(),
        rows: hw.rows(),
        cols: hw.cols(),
        engine: opts.engine,
        batch: opts.batch,
        correct,
        predictions,
        fake_quant_accuracy: reference.map(|r| r.fake_quant_accuracy),
        float_accuracy: reference.map(|r| r.float_accuracy),
        agree,
        flips_total,
        flips,
        layers,
        total,
        cdc: None,
    };
    Ok((report, nodes))
}
