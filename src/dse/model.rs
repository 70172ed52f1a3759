//! Model workloads: a shipped model (`bitmac-model/1`) on its data set,
//! through the datapath's fast engine, lowered and run by the one graph
//! runner (`crate::graph::run`, the path `bitmac run` uses), all samples as
//! one batch (`docs/dse.md`, "Model workloads").
//!
//! Everything that does not depend on the point (the model, the input codes
//! of every sample, labels, fake-quant predictions, the lowered weights) is
//! loaded once; the exact reference logits are computed once per requant
//! rounding scheme, on first use; and points that differ only in accumulator
//! width and overflow mode share one wide-accumulator run when their width
//! cannot overflow (see [`ModelEval::wide`]).

use super::eval::{error_metrics, hw_metrics, stats_metrics, Evaluator, Gemm, Metrics};
use super::hw::Hw;
use super::spec::{Sweep, WorkloadJson};
use crate::array::{Engine, Stats};
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::hw::HwConfig;
use crate::model::argmax;
use crate::numerics::IntFormat;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

/// One array node's declared formats and GEMM shape (for the format check
/// and the hardware metrics; the GEMMs run through `graph::run`).
struct ArrayLayer {
    name: String,
    /// The layer's declared weight and input code formats.
    wfmt: IntFormat,
    afmt: IntFormat,
    /// Per group: output positions per sample (1 for dense), K, N of the
    /// group's GEMM (`groups` equal GEMMs).
    m: usize,
    kd: usize,
    n: usize,
    groups: usize,
    /// The output is the accumulator itself (logits): not requantized, as in
    /// `graph::run::ArrayNode::accumulator` (energy counts no requant for it).
    accumulator: bool,
}

/// The array nodes of `g`, in node order: the weight and input code formats
/// (`i<bits>`/`u<bits>` of the tensors' quantization) and the GEMM shape.
fn array_layers(g: &Graph) -> Result<Vec<ArrayLayer>> {
    use crate::graph::Op;
    let mut v = Vec::new();
    for node in g.nodes() {
        let (wq, m, kd, n, groups) = match &node.op {
            Op::Conv2d(c) => {
                let y = &g.tensor(node.output).shape;
                let w = c.weight.shape();
                (c.weight.quant(), y[1] * y[2], w[1] * w[2] * w[3], w[0] / c.groups, c.groups)
            }
            Op::Dense(d) => (d.weight.quant(), 1, d.weight.shape()[0], d.weight.shape()[1], 1),
            _ => continue,
        };
        let aq = &g.tensor(node.inputs[0]).quant;
        v.push(ArrayLayer {
            name: node.name.clone(),
            wfmt: IntFormat::new(wq.signed(), wq.bits())?,
            afmt: IntFormat::new(aq.signed(), aq.bits())?,
            m,
            kd,
            n,
            groups,
            accumulator: g.tensor(node.output).quant.is_accumulator(),
        });
    }
    Ok(v)
}

/// The value-dependent metrics of one run.
#[derive(Clone, Debug)]
struct Numerics {
    accuracy: f64,
    agreement: Option<f64>,
    sqnr_db: f64,
    max_abs_err: f64,
    out_bias: f64,
    stats: Stats,
}

/// A run with the widest accumulator the datapath allows at this `d`, and
/// the narrowest width that would have behaved identically.
#[derive(Clone, Debug)]
struct Wide {
    numerics: Numerics,
    min_width: u32,
}

type WideCell = Arc<OnceLock<std::result::Result<Wide, String>>>;

/// The model evaluator.
pub struct ModelEval {
    graph: Graph,
    layers: Vec<ArrayLayer>,
    inputs: Vec<Vec<i64>>,
    labels: Vec<u32>,
    /// The reference's predictions (fake-quant, or the ONNX runtime's);
    /// `None` without a reference (then `agreement` is null).
    fake_quant: Option<Vec<usize>>,
    exact: [OnceLock<Vec<i64>>; 2],
    /// Wide runs by their key (see [`ModelEval::wide`]).
    wide: Mutex<BTreeMap<String, WideCell>>,
    /// Reuse wide runs (always on; off only to test that reuse changes
    /// nothing).
    reuse: bool,
}

impl ModelEval {
    /// Preload the model, data and reference once. The model is any format
    /// `bitmac run` reads (`graph::load::AnyModel`: `bitmac-model/1`,
    /// `bitmac-graph/1`, ONNX), the data a CSV or a float32 `.npy` with
    /// `labels`.
    pub fn load(sweep: &Sweep) -> Result<ModelEval> {
        use crate::graph::load::{AnyModel, Samples};
        let WorkloadJson::Model { model, data, reference, limit, labels, requant } = &sweep.workload else {
            return Err(Error::internal("ModelEval::load on a synthetic workload"));
        };
        let requant = match requant.as_deref() {
            None => crate::graph::RequantMode::Float32,
            Some(s) => crate::graph::RequantMode::parse(s).map_err(|e| e.context("workload.requant"))?,
        };
        let m = AnyModel::load(&sweep.dir.join(model), requant).map_err(|e| e.context("workload.model"))?;
        let ds =
            Samples::load(Some(&sweep.dir.join(data)), labels.as_ref().map(|l| sweep.dir.join(l)).as_deref())
                .map_err(|e| e.context("workload.data"))?;
        let Some(ds_labels) = ds.labels.clone() else {
            return Err(Error::input(
                "workload.labels: missing (a .npy data set needs its labels, an integer .npy, for the accuracy metric)",
            ));
        };
        let refp = super::spec::workload_reference(&sweep.dir, model, reference.as_deref())?;
        let fake_quant = match refp {
            None => None,
            Some(rp) => {
                let rpath = sweep.dir.join(rp);
                let (pred, rlabels) =
                    m.reference_predictions(&rpath).map_err(|e| e.context("workload.reference"))?;
                if rlabels.is_some_and(|l| l.as_slice() != ds_labels.as_slice()) {
                    return Err(Error::input(format!(
                        "workload.reference: {}: labels differ from workload.data (allowed: the reference made from this data file)",
                        rpath.display()
                    )));
                }
                if pred.len() < ds.len() {
                    return Err(Error::field(
                        "workload.reference: samples",
                        pred.len(),
                        format!("at least {} (the data set's samples)", ds.len()),
                    ));
                }
                Some(pred)
            }
        };
        let n = limit.unwrap_or(ds.len()).min(ds.len());
        let mut inputs = Vec::with_capacity(n);
        for i in 0..n {
            let x = ds.sample(i, "sample")?;
            inputs.push(m.input_codes(x).map_err(|e| e.context(format!("workload.data sample {i}")))?);
        }
        let graph = m.graph;
        let layers = array_layers(&graph)?;
        Ok(ModelEval {
            graph,
            layers,
            inputs,
            labels: ds_labels[..n].to_vec(),
            fake_quant: fake_quant.map(|p| p[..n].to_vec()),
            exact: [OnceLock::new(), OnceLock::new()],
            wide: Mutex::new(BTreeMap::new()),
            reuse: true,
        })
    }

    /// Turn the wide-run reuse off (every point runs at its own width);
    /// used by the test that shows reuse changes no byte.
    pub fn without_reuse(mut self) -> ModelEval {
        self.reuse = false;
        self
    }

    /// Run every sample as one batch through the graph runner on `cfg`:
    /// the logits (`acc * 2^d + bias`) and the array statistics of every
    /// layer merged in layer order.
    ///
    /// The nodes keep only their codes and statistics (`Keep::Codes`: no
    /// per-element `i128` accumulator copies): an accumulator output's
    /// codes are its values `acc * 2^d + B'` clamped to `i64`, so they are
    /// the logits unless one sits on that clamp's edge; then the batch is
    /// run again keeping the accumulators (the same values, exactly).
    fn run(&self, cfg: &HwConfig) -> Result<(Vec<i128>, Stats)> {
        use crate::graph::run::{run_batch_with, Keep};
        let low = crate::graph::run::lower(&self.graph, cfg)?;
        let go = |keep| {
            run_batch_with(
                &self.graph,
                &low,
                cfg,
                self.inputs.concat(),
                self.inputs.len(),
                Engine::Fast,
                keep,
            )
        };
        let out = self.graph.output();
        let pos = self.graph.nodes().iter().position(|n| n.output == out);
        let is_acc = self.graph.tensor(out).quant.is_accumulator();
        let mut outs = go(Keep::Codes)?;
        if let Some(i) = pos.filter(|_| is_acc) {
            if outs[i].codes.iter().any(|&v| v == i64::MIN || v == i64::MAX) {
                outs = go(Keep::All)?;
            }
        }
        let mut stats = Stats::default();
        for o in &outs {
            if let Some(st) = &o.stats {
                stats.merge(st);
            }
        }
        // The output tensor's values: the accumulators (`acc * 2^d + B'`)
        // when it is an accumulator tensor (logits), else its codes.
        let logits = match pos {
            Some(i) if is_acc && !outs[i].acc.is_empty() => std::mem::take(&mut outs[i].acc),
            Some(i) => outs[i].codes.iter().map(|&v| v as i128).collect(),
            None => Vec::new(),
        };
        Ok((logits, stats))
    }

    /// The exact pipeline (no overflow, no psum rounding, the hardware
    /// requant of scheme `rq`): the logits of every sample, flattened. Run
    /// by the same graph runner on `cfg` with a 64-bit WRAP accumulator and
    /// no dropped bits, which is exact for every loadable model (|acc| <
    /// 2^53) — `tests/graph.rs` holds that runner equal to the exact
    /// reference.
    fn exact(&self, cfg: &HwConfig) -> Result<&Vec<i64>> {
        let rq = cfg.requant().rounding;
        let cell = &self.exact[rq as usize];
        if let Some(v) = cell.get() {
            return Ok(v);
        }
        let mut spec = cfg.spec().clone();
        spec.accumulator.bits = 64;
        spec.accumulator.overflow = "WRAP".into();
        spec.psum.drop_bits = 0;
        spec.psum.offset = 0;
        spec.cdc = None;
        let (logits, _) = self.run(&HwConfig::from_spec(&spec)?)?;
        Ok(cell.get_or_init(|| logits.iter().map(|&v| v as i64).collect()))
    }

    /// Run every sample through the datapath configured by `cfg`.
    fn numerics(&self, cfg: &HwConfig) -> Result<Numerics> {
        let ns = self.inputs.len();
        let (logits, stats) = self.run(cfg)?;
        let exact = self.exact(cfg)?;
        let classes = self.graph.tensor(self.graph.output()).len().max(1);
        let mut correct = 0usize;
        let mut agree = 0usize;
        for (i, lg) in logits.chunks_exact(classes).enumerate() {
            let p = argmax(lg).unwrap_or(0);
            correct += (p == self.labels[i] as usize) as usize;
            agree += self.fake_quant.as_ref().is_some_and(|f| p == f[i]) as usize;
        }
        let (sqnr_db, max_abs_err, out_bias) = error_metrics(&logits, exact);
        Ok(Numerics {
            accuracy: correct as f64 / ns as f64,
            agreement: self.fake_quant.as_ref().map(|_| agree as f64 / ns as f64),
            sqnr_db,
            max_abs_err,
            out_bias,
            stats,
        })
    }

    /// The run of `hw` with the widest accumulator the datapath allows for
    /// its dropped bits (`P = min(64, 65 - d)`, WRAP), shared by every point
    /// that differs only in accumulator width and overflow mode. The
    /// datapath reports `min_acc_bits`, the narrowest width with no overflow
    /// on this data; a point at least that wide computes exactly the same
    /// values and statistics, so its value metrics are the wide run's. This
    /// reuse changes no result, only the time (a test checks it).
    fn wide(&self, hw: &Hw) -> Result<Wide> {
        let mut spec = hw.cfg.spec().clone();
        spec.accumulator.bits = 64.min(65 - spec.psum.drop_bits);
        spec.accumulator.overflow = "WRAP".into();
        // Fields that do not change values are normalized out of the key.
        spec.clock.period_ps = 1;
        spec.cdc = None;
        spec.array.cols = 1;
        let key = serde_json::to_string(&spec).map_err(|e| Error::internal(format!("hw spec: {e}")))?;
        let cell = {
            let mut map = self.wide.lock().map_err(|_| Error::internal("wide-run cache lock poisoned"))?;
            map.entry(key).or_default().clone()
        };
        let r = cell.get_or_init(|| {
            let run = || -> Result<Wide> {
                let mut full = hw.cfg.spec().clone();
                full.accumulator.bits = spec.accumulator.bits;
                full.accumulator.overflow = "WRAP".into();
                let cfg = HwConfig::from_spec(&full)?;
                let numerics = self.numerics(&cfg)?;
                let min_width = numerics.stats.min_acc_bits;
                Ok(Wide { numerics, min_width })
            };
            run().map_err(|e| e.to_string())
        });
        r.clone().map_err(Error::internal)
    }
}

impl Evaluator for ModelEval {
    fn evaluate(&self, hw: &Hw) -> Result<Metrics> {
        // As `bitmac run`: every layer's declared code formats must fit the
        // multiplier inputs, else the point is skipped with this reason.
        for l in &self.layers {
            for (what, f, h) in
                [("weights", l.wfmt, hw.cfg.weights()), ("activations", l.afmt, hw.cfg.activations())]
            {
                if f.min() < h.min() || f.max() > h.max() {
                    return Err(Error::input(format!(
                        "layer {}: {what}: {f} codes ({}..={}) do not fit the hardware's {h} multiplier input ({}..={})",
                        l.name,
                        f.min(),
                        f.max(),
                        h.min(),
                        h.max()
                    )));
                }
            }
        }
        let num = if self.reuse {
            // An error of the wide run is the point's own (e.g. an operand
            // format too narrow): run it directly to report it.
            let wide = self.wide(hw).ok();
            match wide {
                Some(w) if hw.acc_width() >= w.min_width => {
                    // Statistics that depend on the width itself.
                    let mut n = w.numerics;
                    n.stats.min_acc_bits = w.min_width;
                    n
                }
                _ => self.numerics(&hw.cfg)?,
            }
        } else {
            self.numerics(&hw.cfg)?
        };
        let mut m = Metrics {
            accuracy: Some(num.accuracy),
            agreement: num.agreement,
            sqnr_db: num.sqnr_db,
            max_abs_err: num.max_abs_err,
            out_bias: num.out_bias,
            ..Metrics::default()
        };
        stats_metrics(&num.stats, &mut m);
        let gemms: Vec<Gemm> = self
            .layers
            .iter()
            .flat_map(|l| {
                std::iter::repeat_n(Gemm { m: l.m, k: l.kd, n: l.n, requantized: !l.accumulator }, l.groups)
            })
            .collect();
        let words_in = self.inputs.first().map_or(0, Vec::len) as u64;
        let words_out = self.graph.tensor(self.graph.output()).len() as u64;
        hw_metrics(hw, &gemms, (words_in, words_out), &mut m)?;
        Ok(m)
    }

    fn quality_name(&self) -> &'static str {
        "accuracy"
    }
}
