//! Model workloads: a shipped model (`bitmac-model/1`) on its data set,
//! through the datapath's fast engine (`crate::layers::run_gemm`), layer by
//! layer (`docs/dse.md`, "Model workloads").
//!
//! Everything that does not depend on the point (the model, the input codes
//! of every sample, labels, fake-quant predictions, the lowered weights) is
//! loaded once; the exact reference logits are computed once per requant
//! rounding scheme, on first use; and points that differ only in accumulator
//! width and overflow mode share one wide-accumulator run when their width
//! cannot overflow (see [`ModelEval::wide`]).

use super::engine;
use super::eval::{error_metrics, hw_metrics, stats_metrics, Evaluator, Metrics};
use super::hw::Hw;
use super::spec::{default_reference, Sweep, WorkloadJson};
use crate::array::{Engine, Matrix, Stats};
use crate::error::{Error, Result};
use crate::hw::HwConfig;
use crate::layers::run_gemm;
use crate::model::{argmax, Dataset, Layer, Model, Reference};
use crate::numerics::IntFormat;
use crate::requant::{quantize_multiplier, Multiplier, RequantRounding, Requantizer};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Conv geometry `(c, h, w, kh, kw, stride, pad)`.
type ConvGeom = (usize, usize, usize, usize, usize, (usize, usize), (usize, usize));

/// One layer lowered to a GEMM.
struct Lowered {
    name: String,
    /// The layer's declared weight and input code formats.
    wfmt: IntFormat,
    afmt: IntFormat,
    /// `None` for dense.
    conv: Option<ConvGeom>,
    /// Output positions per sample (1 for dense), K, N.
    m: usize,
    kd: usize,
    n: usize,
    /// `n x kd` weight codes (conv: `[oc][c][kh][kw]`, the im2col order).
    w_nk: Vec<i32>,
    /// The same, `kd x n` (the datapath's W operand).
    w: Matrix,
    bias: Vec<i32>,
    /// The requant multiplier, output format and ReLU (hidden layers).
    out: Option<(Multiplier, IntFormat, bool)>,
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
    layers: Vec<Lowered>,
    inputs: Vec<Vec<i32>>,
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
                m.input_codes(ds.image(i)).map_err(|e| e.context(format!("workload.data sample {i}")))?,
            );
        }
        let mut layers = Vec::new();
        for (l, layer) in m.layers().iter().enumerate() {
            let (mm, kd, nn) = layer.gemm_dims();
            let conv = match layer {
                Layer::Conv2d(c) => {
                    let [ci, h, w] = c.input_shape();
                    let [kh, kw] = c.kernel();
                    let [sh, sw] = c.stride();
                    let [ph, pw] = c.padding();
                    Some((ci, h, w, kh, kw, (sh, sw), (ph, pw)))
                }
                Layer::Dense(_) => None,
            };
            let wq = layer.weight().quant();
            let aq = layer.input_quant();
            // The multiplier as `bitmac run` derives it: the one function
            // `Model::multiplier` -> `requant::step_multiplier`.
            let out = match (m.output_quant(l), m.multiplier(l)?) {
                (Some(q), Some(mult)) => Some((mult, IntFormat::new(q.signed(), q.bits())?, layer.relu())),
                _ => None,
            };
            let w_nk = layer.weight().codes().to_vec();
            let mut wt = vec![0i32; kd * nn];
            for o in 0..nn {
                for t in 0..kd {
                    wt[t * nn + o] = w_nk[o * kd + t];
                }
            }
            layers.push(Lowered {
                name: layer.name().to_string(),
                wfmt: IntFormat::new(wq.signed(), wq.bits())?,
                afmt: IntFormat::new(aq.signed(), aq.bits())?,
                conv,
                m: mm,
                kd,
                n: nn,
                w_nk,
                w: Matrix::new(kd, nn, wt)?,
                bias: layer.bias().to_vec(),
                out,
            });
        }
        Ok(ModelEval {
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

    /// The requantizers of the hidden layers for a scheme.
    fn requantizers(&self, rq: RequantRounding) -> Result<Vec<Option<Requantizer>>> {
        self.layers
            .iter()
            .map(|l| match l.out {
                Some((mult, fmt, relu)) => Ok(Some(Requantizer::new(mult, rq, fmt, relu)?)),
                None => Ok(None),
            })
            .collect()
    }

    /// The lowered activations of a layer for all samples (rows = samples x
    /// output positions, in `layers::im2col`'s `(sample, oy, ox)` order).
    fn lower(l: &Lowered, a: Vec<i32>, ns: usize) -> Result<Vec<i32>> {
        match l.conv {
            Some((ci, h, w, kh, kw, s, p)) => {
                let shape = crate::layers::Conv2d {
                    batch: ns,
                    in_ch: ci,
                    height: h,
                    width: w,
                    out_ch: l.n,
                    kh,
                    kw,
                    stride: s,
                    padding: p,
                };
                let (am, _) = crate::layers::im2col(&shape, &a, &l.w_nk)?;
                Ok(am.data().to_vec())
            }
            None => Ok(a),
        }
    }

    /// Scatter `m x n` output codes of every sample into its next NCHW input.
    fn scatter(l: &Lowered, ns: usize, code: impl Fn(usize) -> i32) -> Vec<i32> {
        let mut next = vec![0i32; ns * l.m * l.n];
        for s in 0..ns {
            let base = s * l.m * l.n;
            for i in 0..l.m {
                for j in 0..l.n {
                    next[base + j * l.m + i] = code(base + i * l.n + j);
                }
            }
        }
        next
    }

    /// The exact pipeline (exact GEMMs, the hardware requant of scheme `rq`):
    /// the logits of every sample, flattened.
    fn exact(&self, rq: RequantRounding) -> Result<&Vec<i64>> {
        let cell = &self.exact[rq as usize];
        if let Some(v) = cell.get() {
            return Ok(v);
        }
        let reqs = self.requantizers(rq)?;
        let ns = self.inputs.len();
        let mut a: Vec<i32> = self.inputs.concat();
        let mut logits = Vec::new();
        for (l, req) in self.layers.iter().zip(&reqs) {
            let act = Self::lower(l, a, ns)?;
            let acc = engine::gemm_exact(&act, ns * l.m, l.kd, &l.w_nk, l.n, Some(&l.bias));
            match req {
                Some(rq) => a = Self::scatter(l, ns, |i| rq.apply(acc[i] as i128).0 as i32),
                None => {
                    logits = acc;
                    a = Vec::new();
                }
            }
        }
        Ok(cell.get_or_init(|| logits))
    }

    /// Run every sample through the datapath configured by `cfg`.
    fn numerics(&self, cfg: &HwConfig) -> Result<Numerics> {
        let rqs = cfg.requant().rounding;
        let reqs = self.requantizers(rqs)?;
        // The last layer's requantizer is unused (its accumulators are the
        // logits) but the datapath API wants one.
        let dummy = Requantizer::new(quantize_multiplier(1.0)?, rqs, IntFormat::signed(32)?, false)?;
        let ns = self.inputs.len();
        let mut a: Vec<i32> = self.inputs.concat();
        let mut logits: Vec<i128> = Vec::new();
        let mut stats = Stats::default();
        for (li, (l, req)) in self.layers.iter().zip(&reqs).enumerate() {
            let act = Self::lower(l, a, ns)?;
            let am = Matrix::new(ns * l.m, l.kd, act)?;
            let r = run_gemm(cfg, &am, &l.w, Some(&l.bias), req.as_ref().unwrap_or(&dummy), Engine::Fast)
                .map_err(|e| e.context(format!("layer {li}")))?;
            if li == 0 {
                stats = r.stats.clone();
            } else {
                stats.merge(&r.stats);
            }
            match req {
                Some(_) => a = Self::scatter(l, ns, |i| r.out[i] as i32),
                None => {
                    logits = (0..r.m * r.n).map(|i| r.acc_value(i) + l.bias[i % r.n] as i128).collect();
                    a = Vec::new();
                }
            }
        }
        let exact = self.exact(rqs)?;
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
        hw_metrics(hw, &gemms, (words_in, words_out), &mut m)?;
        Ok(m)
    }

    fn quality_name(&self) -> &'static str {
        "accuracy"
    }
}
