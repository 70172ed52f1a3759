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

use super::eval::{error_metrics, hw_metrics, stats_metrics, Evaluator, Metrics};
use super::hw::Hw;
use super::spec::{default_reference, Sweep, WorkloadJson};
use crate::array::{Engine, Stats};
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::hw::HwConfig;
use crate::model::{argmax, Dataset, Model, Reference};
use crate::numerics::IntFormat;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

/// One layer's declared formats and GEMM shape (for the format check and
/// the hardware metrics; the GEMMs run through `graph::run`).
struct Lowered {
    name: String,
    /// The layer's declared weight and input code formats.
    wfmt: IntFormat,
    afmt: IntFormat,
    /// Output positions per sample (1 for dense), K, N.
    m: usize,
    kd: usize,
    n: usize,
}

/// The value-dependent metrics of one run.
#[derive(Clone, Debug)]
struct Numerics {
    accuracy: f64,
    agreement: f64,
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
    layers: Vec<Lowered>,
    inputs: Vec<Vec<i64>>,
    labels: Vec<u32>,
    fake_quant: Vec<usize>,
    exact: [OnceLock<Vec<i64>>; 2],
    /// Wide runs by their key (see [`ModelEval::wide`]).
    wide: Mutex<BTreeMap<String, WideCell>>,
    /// Reuse wide runs (always on; off only to test that reuse changes
    /// nothing).
    reuse: bool,
}

impl ModelEval {
    /// Preload the model, data and reference once.
    pub fn load(sweep: &Sweep) -> Result<ModelEval> {
        let WorkloadJson::Model { model, data, reference, limit } = &sweep.workload else {
            return Err(Error::internal("ModelEval::load on a synthetic workload"));
        };
        let m = Model::load(&sweep.dir.join(model)).map_err(|e| e.context("workload.model"))?;
        let ds = Dataset::load(&sweep.dir.join(data)).map_err(|e| e.context("workload.data"))?;
        let rpath = sweep.dir.join(reference.clone().unwrap_or_else(|| default_reference(model)));
        let r = Reference::load(&rpath).map_err(|e| e.context("workload.reference"))?;
        r.check_model(&m).map_err(|e| e.context("workload.reference"))?;
        if r.labels.as_slice() != ds.labels() {
            return Err(Error::input(format!(
                "workload.reference: {}: labels differ from workload.data (allowed: the reference made from this data file)",
                rpath.display()
            )));
        }
        let n = limit.unwrap_or(ds.len()).min(ds.len());
        let mut inputs = Vec::with_capacity(n);
        for i in 0..n {
            inputs.push(
                m.input_codes(ds.image(i))
                    .map_err(|e| e.context(format!("workload.data sample {i}")))?
                    .into_iter()
                    .map(i64::from)
                    .collect(),
            );
        }
        let mut layers = Vec::new();
        for layer in m.layers() {
            let (mm, kd, nn) = layer.gemm_dims();
            let wq = layer.weight().quant();
            let aq = layer.input_quant();
            layers.push(Lowered {
                name: layer.name().to_string(),
                wfmt: IntFormat::new(wq.signed(), wq.bits())?,
                afmt: IntFormat::new(aq.signed(), aq.bits())?,
                m: mm,
                kd,
                n: nn,
            });
        }
        let graph = crate::graph::from_model(&m).map_err(|e| e.context("workload.model"))?;
        Ok(ModelEval {
            graph,
            layers,
            inputs,
            labels: ds.labels()[..n].to_vec(),
            fake_quant: r.fake_quant.predictions[..n].to_vec(),
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
    fn run(&self, cfg: &HwConfig) -> Result<(Vec<i128>, Stats)> {
        let low = crate::graph::run::lower(&self.graph, cfg)?;
        let outs = crate::graph::run::run_batch(
            &self.graph,
            &low,
            cfg,
            self.inputs.concat(),
            self.inputs.len(),
            Engine::Fast,
        )?;
        let mut stats = Stats::default();
        for o in &outs {
            if let Some(st) = &o.stats {
                stats.merge(st);
            }
        }
        let logits = outs.last().map(|o| o.acc.clone()).unwrap_or_default();
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
        let classes = self.layers.last().map_or(1, |l| l.n);
        let mut correct = 0usize;
        let mut agree = 0usize;
        for (i, lg) in logits.chunks_exact(classes).enumerate() {
            let p = argmax(lg).unwrap_or(0);
            correct += (p == self.labels[i] as usize) as usize;
            agree += (p == self.fake_quant[i]) as usize;
        }
        let (sqnr_db, max_abs_err, out_bias) = error_metrics(&logits, exact);
        Ok(Numerics {
            accuracy: correct as f64 / ns as f64,
            agreement: agree as f64 / ns as f64,
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
            agreement: Some(num.agreement),
            sqnr_db: num.sqnr_db,
            max_abs_err: num.max_abs_err,
            out_bias: num.out_bias,
            ..Metrics::default()
        };
        stats_metrics(&num.stats, &mut m);
        let gemms: Vec<(usize, usize, usize)> = self.layers.iter().map(|l| (l.m, l.kd, l.n)).collect();
        let words_in = self.inputs.first().map_or(0, Vec::len) as u64;
        let words_out = self.layers.last().map_or(0, |l| l.m * l.n) as u64;
        hw_metrics(hw, &gemms, (words_in, words_out), true, &mut m)?;
        Ok(m)
    }

    fn quality_name(&self) -> &'static str {
        "accuracy"
    }
}
