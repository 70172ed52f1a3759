//! One loader for every model format bitmac runs — `bitmac-model/1` (the digits models),
//! `bitmac-graph/1` and ONNX (QONNX, QDQ) — for the bindings (`bitmac.Model` in Python, the
//! `bitmac_model_*` C functions). It only picks the loader and the input quantizer the CLI uses
//! for that format; every sample then runs through the one graph runner
//! (`graph::run::run_all` / `run_batch`), exactly as `bitmac run` does.

use super::onnx::{self, ImportOptions};
use super::run::{is_onnx, ONNX_HW};
use crate::array::{Engine, Stats};
use crate::error::{Error, Result};
use crate::graph::format::GraphFile;
use crate::graph::run::{lower, run_all, run_batch, GraphRun};
use crate::graph::{Graph, RequantMode, MAX_ELEMENTS};
use crate::hw::HwConfig;
use crate::model::Model;
use std::path::Path;

/// The CLI's default hardware for `bitmac-model/1` and `bitmac-graph/1` models.
pub const DEFAULT_HW: &str = include_str!("../../models/hw/default.json");

/// How float32 input samples become input codes (the CLI's rule per format).
#[derive(Clone, Debug)]
enum InputRule {
    /// `bitmac-model/1`: `Model::input_codes` (raw range checked, the model's input quantizer).
    Model(Box<Model>),
    /// `bitmac-graph/1`: `x = f32(raw) * raw_scale`, then the graph's input quantizer.
    Graph { raw_scale: f32 },
    /// ONNX: the model's own input quantizer on the float32 input.
    Onnx,
}

/// A loaded model: its quantized graph and its input rule.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    pub graph: Graph,
    /// `"bitmac-model/1"`, `"bitmac-graph/1"` or `"onnx"`.
    pub format: &'static str,
    /// The model's name (the ONNX graph name for ONNX).
    pub name: String,
    rule: InputRule,
}

/// One node's values for one sample (what `bitmac run --dump` writes).
#[derive(Clone, Debug)]
pub struct NodeValues {
    pub name: String,
    pub kind: &'static str,
    /// Per input: its shape and codes.
    pub inputs: Vec<(Vec<usize>, Vec<i64>)>,
    /// Array nodes: the hardware accumulators `acc * 2^d + B'` (output shape); empty otherwise.
    pub acc: Vec<i128>,
    pub output_shape: Vec<usize>,
    pub output: Vec<i64>,
}

/// The result of [`LoadedModel::run`].
#[derive(Clone, Debug)]
pub struct ModelRun {
    pub samples: usize,
    /// The output node's codes, `samples * classes`.
    pub logits: Vec<i64>,
    pub classes: usize,
    /// argmax per sample (lowest index on ties), as `bitmac run --json`'s `predictions`.
    pub predictions: Vec<usize>,
    /// The runner's per-node values and statistics.
    pub run: GraphRun,
    /// The array nodes' statistics merged in node order (the CLI's `total`).
    pub total: Stats,
}

impl LoadedModel {
    /// Load `path`: `.onnx` through the importer (with `requant`, default float32), otherwise a
    /// JSON file, `bitmac-graph/1` when its `format` says so, else `bitmac-model/1`.
    pub fn load(path: &Path, requant: Option<RequantMode>) -> Result<LoadedModel> {
        if is_onnx(path) {
            let mut opts = ImportOptions::default();
            if let Some(r) = requant {
                if r == RequantMode::Accumulator {
                    return Err(Error::field("requant", "accumulator", "float32, hardware, double, single"));
                }
                opts.requant = r;
            }
            let imp = onnx::load(path, opts)?;
            let name = path.display().to_string();
            return Ok(LoadedModel { graph: imp.graph, format: "onnx", name, rule: InputRule::Onnx });
        }
        if requant.is_some() {
            return Err(Error::input(format!(
                "{}: requant: only for ONNX models (JSON models carry their own requantization)",
                path.display()
            )));
        }
        let text = crate::io::read_to_string(path)?;
        let what = path.display().to_string();
        if GraphFile::is_graph_json(&text) {
            let f = GraphFile::from_json_str(&text, &what)?;
            let name = what.clone();
            return Ok(LoadedModel {
                graph: f.graph,
                format: "bitmac-graph/1",
                name,
                rule: InputRule::Graph { raw_scale: f.raw_scale },
            });
        }
        let m = Model::from_json_str(&text, &what)?;
        let graph = crate::graph::from_model(&m)?;
        Ok(LoadedModel {
            graph,
            format: "bitmac-model/1",
            name: m.name().to_string(),
            rule: InputRule::Model(Box::new(m)),
        })
    }

    /// The hardware `bitmac run` uses for this model when `--hw` is not given.
    pub fn default_hw(&self) -> &'static str {
        match self.rule {
            InputRule::Onnx => ONNX_HW,
            _ => DEFAULT_HW,
        }
    }

    /// Floats per sample (the graph input's element count).
    pub fn input_len(&self) -> usize {
        self.graph.tensor(self.graph.input()).len()
    }

    /// The input codes of one float32 sample (`input_len` values), by the CLI's rule.
    pub fn quantize(&self, x: &[f32]) -> Result<Vec<i64>> {
        match &self.rule {
            InputRule::Model(m) => Ok(m.input_codes(x)?.into_iter().map(i64::from).collect()),
            InputRule::Graph { raw_scale } => {
                let v: Vec<f32> = x.iter().map(|&r| r * raw_scale).collect();
                self.graph.quantize_input(&v)
            }
            InputRule::Onnx => self.graph.quantize_input(x),
        }
    }

    fn inputs(&self, x: &[f32]) -> Result<Vec<Vec<i64>>> {
        let len = self.input_len();
        if len == 0 || x.is_empty() || !x.len().is_multiple_of(len) {
            return Err(Error::field(
                "x length",
                x.len(),
                format!("a positive multiple of {len} (the input size)"),
            ));
        }
        let samples = x.len() / len;
        let per_sample: usize = self.graph.tensors().iter().map(|t| t.len()).sum();
        if per_sample.checked_mul(samples).is_none_or(|n| n > 4 * MAX_ELEMENTS) {
            return Err(Error::field(
                "x samples",
                samples,
                format!(
                    "at most {} for this model (all tensors are kept)",
                    4 * MAX_ELEMENTS / per_sample.max(1)
                ),
            ));
        }
        x.chunks(len)
            .enumerate()
            .map(|(s, c)| self.quantize(c).map_err(|e| e.context(format!("sample {s}"))))
            .collect()
    }

    /// Run every sample of `x` (`samples * input_len` float32 values) through the graph runner
    /// on `hw`, `batch` samples at a time (results do not depend on `batch`).
    pub fn run(&self, x: &[f32], hw: &HwConfig, engine: Engine, batch: usize) -> Result<ModelRun> {
        let g = &self.graph;
        let inputs = self.inputs(x)?;
        let low = lower(g, hw)?;
        let run = run_all(g, &low, hw, &inputs, batch.clamp(1, 1024), engine, &|_| {})?;
        let last = g.nodes().iter().rposition(|n| n.output == g.output()).unwrap_or(g.nodes().len() - 1);
        let classes = g.tensor(g.output()).len();
        let logits = run.nodes[last].codes.clone();
        let predictions =
            logits.chunks(classes.max(1)).map(|r| crate::model::argmax(r).unwrap_or(0)).collect();
        let mut total = Stats::default();
        for o in &run.nodes {
            if let Some(st) = &o.stats {
                total.merge(st);
            }
        }
        Ok(ModelRun { samples: inputs.len(), logits, classes, predictions, run, total })
    }

    /// One sample's values at every node: each input, the accumulators and the output (the
    /// values `bitmac run --dump` writes), from one `run_batch` of that sample.
    pub fn dump(&self, x: &[f32], hw: &HwConfig, engine: Engine) -> Result<Vec<NodeValues>> {
        let g = &self.graph;
        if x.len() != self.input_len() {
            return Err(Error::field("x length", x.len(), format!("{} (one sample)", self.input_len())));
        }
        let input = self.quantize(x)?;
        let low = lower(g, hw)?;
        let outs = run_batch(g, &low, hw, input.clone(), 1, engine)?;
        let mut values: Vec<Option<Vec<i64>>> = vec![None; g.tensors().len()];
        values[g.input().0] = Some(input);
        let mut nodes = Vec::with_capacity(outs.len());
        for (node, out) in g.nodes().iter().zip(outs) {
            let inputs = node
                .inputs
                .iter()
                .map(|t| (g.tensor(*t).shape.clone(), values[t.0].clone().unwrap_or_default()))
                .collect();
            values[node.output.0] = Some(out.codes.clone());
            nodes.push(NodeValues {
                name: node.name.clone(),
                kind: node.op.kind(),
                inputs,
                acc: out.acc,
                output_shape: g.tensor(node.output).shape.clone(),
                output: out.codes,
            });
        }
        Ok(nodes)
    }
}
