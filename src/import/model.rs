//! One loader for every model format bitmac runs — `bitmac-model/1` (the digits models),
//! `bitmac-graph/1` and ONNX (QONNX, QDQ) — for the bindings (`bitmac.Model` in Python, the
//! `bitmac_model_*` C functions). It only picks the loader and the input quantizer the CLI uses
//! for that format; every sample then runs through the one graph runner
//! (`graph::run::run_all` / `run_batch`), exactly as `bitmac run` does.

use super::onnx::ImportOptions;
use super::run::{is_onnx, ONNX_HW};
use crate::array::{Engine, Stats};
use crate::error::{Error, Result};
use crate::graph::load::{AnyModel, ModelFormat};
use crate::graph::run::{lower, run_all, run_batch, GraphRun};
use crate::graph::{Graph, RequantMode, MAX_ELEMENTS};
use crate::hw::HwConfig;
use std::path::Path;

/// The CLI's default hardware for `bitmac-model/1` and `bitmac-graph/1` models.
pub const DEFAULT_HW: &str = include_str!("../../models/hw/default.json");

/// A loaded model: its quantized graph and its input rule (both from the
/// one loader, [`crate::graph::load::AnyModel`]).
pub struct LoadedModel {
    /// `"bitmac-model/1"`, `"bitmac-graph/1"` or `"onnx"`.
    pub format: &'static str,
    /// The model's name (the file path for `bitmac-graph/1` and ONNX).
    pub name: String,
    any: AnyModel,
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
            if requant == Some(RequantMode::Accumulator) {
                return Err(Error::field("requant", "accumulator", "float32, hardware, double, single"));
            }
        } else if requant.is_some() {
            return Err(Error::input(format!(
                "{}: requant: only for ONNX models (JSON models carry their own requantization)",
                path.display()
            )));
        }
        let any = AnyModel::load(path, requant.unwrap_or(ImportOptions::default().requant))?;
        let name = any.model().map_or_else(|| path.display().to_string(), |m| m.name().to_string());
        Ok(LoadedModel { format: any.format.name(), name, any })
    }

    /// The validated graph every sample runs through.
    pub fn graph(&self) -> &Graph {
        &self.any.graph
    }

    /// The hardware `bitmac run` uses for this model when `--hw` is not given.
    pub fn default_hw(&self) -> &'static str {
        match self.any.format {
            ModelFormat::Onnx => ONNX_HW,
            _ => DEFAULT_HW,
        }
    }

    /// Floats per sample (the graph input's element count).
    pub fn input_len(&self) -> usize {
        self.graph().tensor(self.graph().input()).len()
    }

    /// The input codes of one float32 sample (`input_len` values), by the CLI's rule.
    pub fn quantize(&self, x: &[f32]) -> Result<Vec<i64>> {
        self.any.input_codes(x)
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
        let per_sample: usize = self.graph().tensors().iter().map(|t| t.len()).sum();
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
        let g = self.graph();
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
        let g = self.graph();
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
