//! Evaluating one point: the [`Evaluator`] interface, the metrics, and the
//! synthetic GEMM / conv workloads.

use super::engine;
use super::hw::Hw;
use super::spec::{Sweep, WorkloadJson};
use crate::array::{Engine, Matrix, Stats};
use crate::error::Result;
use crate::layers::run_gemm;
use crate::numerics::IntFormat;
use crate::requant::{quantize_multiplier, Requantizer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// SQNR values are clamped to `-SQNR_CAP_DB..=SQNR_CAP_DB` (an exact result
/// has infinite SQNR, which JSON cannot hold).
pub const SQNR_CAP_DB: f64 = 200.0;

/// The metrics of one point. Field order is the CSV column order.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Top-1 accuracy on the data set (model workloads; else null).
    pub accuracy: Option<f64>,
    /// Fraction of samples whose predicted class equals the fake-quant
    /// reference's (model workloads; else null).
    pub agreement: Option<f64>,
    /// 10 log10(sum exact^2 / sum (out - exact)^2) over the final outputs
    /// (GEMM accumulators or model logits), clamped to +-200 dB.
    pub sqnr_db: f64,
    /// max |out - exact| over the final outputs, in output LSBs.
    pub max_abs_err: f64,
    /// mean (out - exact) over the final outputs, in output LSBs.
    pub out_bias: f64,
    /// Mean psum rounding error in psum LSBs (`2^k` input LSBs); null when
    /// no rounding happened.
    pub psum_bias: Option<f64>,
    /// Partial-sum roundings performed.
    pub roundings: u64,
    /// Roundings whose residue hit the rounding centre exactly.
    pub ties: u64,
    /// Overflow events (accumulator adders, psum stores, bias add).
    pub overflows: u64,
    /// Array compute cycles for one inference (model) or the GEMM.
    pub cycles: u64,
    /// MACs / (cycles * rows * cols).
    pub utilization: f64,
    /// Output FIFO write stalls for one inference or the GEMM.
    pub fifo_stalls: u64,
    /// log10 of the synchronizer MTBF in seconds.
    pub mtbf_log10_s: f64,
    /// The area proxy in bit-cells.
    pub area: u64,
    /// Energy of one inference (model) or the GEMM, pJ, from
    /// `energy::for_hw` per GEMM (value-independent: no zero skipping).
    #[serde(default)]
    pub energy_pj: f64,
    /// Memory stall cycles of one inference or the GEMM (`docs/memory.md`;
    /// 0 when the memory model is off), included in `cycles`.
    #[serde(default)]
    pub stall_cycles: u64,
}

/// The CSV metric column names, in [`Metrics`] field order.
pub const METRIC_COLUMNS: &[&str] = &[
    "accuracy",
    "agreement",
    "sqnr_db",
    "max_abs_err",
    "out_bias",
    "psum_bias",
    "roundings",
    "ties",
    "overflows",
    "cycles",
    "utilization",
    "fifo_stalls",
    "mtbf_log10_s",
    "area",
    "energy_pj",
    "stall_cycles",
];

fn opt(x: Option<f64>) -> String {
    x.map(|v| v.to_string()).unwrap_or_default()
}

impl Metrics {
    /// The CSV cells, in [`METRIC_COLUMNS`] order (empty for null).
    pub fn csv_cells(&self) -> Vec<String> {
        vec![
            opt(self.accuracy),
            opt(self.agreement),
            self.sqnr_db.to_string(),
            self.max_abs_err.to_string(),
            self.out_bias.to_string(),
            opt(self.psum_bias),
            self.roundings.to_string(),
            self.ties.to_string(),
            self.overflows.to_string(),
            self.cycles.to_string(),
            self.utilization.to_string(),
            self.fifo_stalls.to_string(),
            self.mtbf_log10_s.to_string(),
            self.area.to_string(),
            self.energy_pj.to_string(),
            self.stall_cycles.to_string(),
        ]
    }

    /// The quality objective of the Pareto front: accuracy when the workload
    /// has one, else SQNR.
    pub fn quality(&self) -> f64 {
        self.accuracy.unwrap_or(self.sqnr_db)
    }
}

/// Evaluates points. Implementations are shared across rayon threads and
/// must be deterministic: the same `hw` gives the same metrics whatever the
/// thread or the order of calls.
pub trait Evaluator: Sync {
    /// Evaluate one validated configuration. An input error (exit code 2)
    /// means the workload cannot run on this hardware and the point is
    /// recorded as `skipped` with the message; other errors abort the sweep.
    fn evaluate(&self, hw: &Hw) -> Result<Metrics>;

    /// The name of the quality objective (`accuracy` or `sqnr_db`).
    fn quality_name(&self) -> &'static str;
}

/// Build the evaluator for a sweep's workload (preloading models and data
/// once).
pub fn evaluator(sweep: &Sweep) -> Result<Box<dyn Evaluator>> {
    match &sweep.workload {
        WorkloadJson::Gemm { m, k, n, seed } => {
            Ok(Box::new(Synthetic { shape: Shape::Gemm { m: *m, k: *k, n: *n }, seed: *seed }))
        }
        WorkloadJson::Conv { c, h, w, oc, kh, kw, stride, pad, seed } => Ok(Box::new(Synthetic {
            shape: Shape::Conv { c: *c, h: *h, w: *w, oc: *oc, kh: *kh, kw: *kw, stride: *stride, pad: *pad },
            seed: *seed,
        })),
        WorkloadJson::Model { .. } => {
            super::model::ModelEval::load(sweep).map(|e| Box::new(e) as Box<dyn Evaluator>)
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Gemm { m: usize, k: usize, n: usize },
    Conv { c: usize, h: usize, w: usize, oc: usize, kh: usize, kw: usize, stride: usize, pad: usize },
}

/// Synthetic workloads: codes drawn uniformly over the point's operand
/// formats from a `ChaCha8Rng` seeded with the workload seed (activations
/// first, row-major, then weights), so a point's data depends only on the
/// seed and its bit widths.
struct Synthetic {
    shape: Shape,
    seed: u64,
}

fn draw(rng: &mut ChaCha8Rng, f: IntFormat, n: usize) -> Vec<i32> {
    let (lo, hi) = (f.min() as i32, f.max() as i32);
    (0..n).map(|_| rng.gen_range(lo..=hi)).collect()
}

/// Error metrics of `out` against `exact`.
pub fn error_metrics(out: &[i128], exact: &[i64]) -> (f64, f64, f64) {
    let mut sig = 0f64;
    let mut noise = 0f64;
    let mut maxe = 0i128;
    let mut sum = 0i128;
    for (o, e) in out.iter().zip(exact) {
        let d = *o - *e as i128;
        sig += (*e as f64) * (*e as f64);
        noise += (d as f64) * (d as f64);
        maxe = maxe.max(d.abs());
        sum += d;
    }
    let sqnr = if noise == 0.0 {
        SQNR_CAP_DB
    } else if sig == 0.0 {
        -SQNR_CAP_DB
    } else {
        (10.0 * (sig / noise).log10()).clamp(-SQNR_CAP_DB, SQNR_CAP_DB)
    };
    let n = out.len().max(1) as f64;
    (sqnr, maxe as f64, sum as f64 / n)
}

/// One GEMM of an inference, for the value-independent metrics.
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// The outputs are requantized (model layers other than the logits) or
    /// are the accumulators themselves (the logits layer, GEMM workloads):
    /// the same flag `bitmac run` passes to `energy::for_hw`.
    pub requantized: bool,
}

/// The value-independent metrics of a run: timing (the datapath's
/// [`crate::memory::plan`] per GEMM, summed), FIFO, MTBF and area. `gemms` lists
/// the GEMMs of one inference; `words` its (input, output) words crossing the
/// FIFOs.
pub fn hw_metrics(hw: &Hw, gemms: &[Gemm], words: (u64, u64), m: &mut Metrics) -> Result<()> {
    let c = &hw.cfg;
    // The memory model's timing (stalls included; docs/memory.md), the
    // closed form of docs/datapath.md §5 when the model is off.
    let lay = crate::memory::Layout::of_hw(c);
    let timings: Vec<_> = gemms.iter().map(|g| crate::memory::plan(&lay, g.m, g.k, g.n)).collect();
    m.cycles = timings.iter().map(|t| t.cycles).sum();
    m.stall_cycles = timings.iter().map(|t| t.stall_cycles).sum();
    let macs: u64 = gemms.iter().map(|g| (g.m * g.k * g.n) as u64).sum();
    m.utilization = macs as f64 / (m.cycles.max(1) as f64 * (c.rows() * c.cols()) as f64);
    m.fifo_stalls = engine::fifo_stalls(hw, words.0, words.1)?;
    m.mtbf_log10_s = engine::mtbf_log10_s(hw)?;
    m.area = engine::area_proxy(hw);
    // Summed in layer order, so the bytes do not depend on threads.
    m.energy_pj = gemms
        .iter()
        .map(|g| crate::energy::for_hw(c, g.m as u64, g.k as u64, g.n as u64, None, g.requantized).total())
        .sum();
    Ok(())
}

/// Copy the datapath statistics into the metrics.
pub fn stats_metrics(s: &Stats, m: &mut Metrics) {
    m.psum_bias = s.psum_err_mean();
    m.roundings = s.psum_rounded;
    m.ties = s.psum_ties;
    m.overflows = s.overflows();
}

impl Evaluator for Synthetic {
    fn evaluate(&self, hw: &Hw) -> Result<Metrics> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let (afmt, wfmt) = (hw.cfg.activations(), hw.cfg.weights());
        let (a, m, kd, w, n) = match self.shape {
            Shape::Gemm { m, k, n } => {
                let a = draw(&mut rng, afmt, m * k);
                let w = draw(&mut rng, wfmt, k * n);
                (a, m, k, w, n)
            }
            Shape::Conv { c, h, w, oc, kh, kw, stride, pad } => {
                let x = draw(&mut rng, afmt, c * h * w);
                // Filters drawn as [oc][c][kh][kw] (OIHW), lowered by the
                // datapath's own im2col.
                let f = draw(&mut rng, wfmt, oc * c * kh * kw);
                let shape = crate::layers::Conv2d {
                    batch: 1,
                    in_ch: c,
                    height: h,
                    width: w,
                    out_ch: oc,
                    kh,
                    kw,
                    stride: (stride, stride),
                    padding: (pad, pad),
                };
                let (am, wm) = crate::layers::im2col(&shape, &x, &f)?;
                (am.to_i32().into_owned(), am.rows(), am.cols(), wm.to_i32().into_owned(), oc)
            }
        };
        // The requant stage is not measured on synthetic workloads (they have
        // no scales): any valid requantizer will do.
        let rq = Requantizer::new(
            quantize_multiplier(1.0 / 65536.0)?,
            hw.cfg.requant().rounding,
            hw.cfg.requant().out,
            false,
        )?;
        let r = run_gemm(&hw.cfg, &Matrix::new(m, kd, a)?, &Matrix::new(kd, n, w)?, None, &rq, Engine::Fast)?;
        let out: Vec<i128> = (0..m * n).map(|i| r.acc_value(i)).collect();
        let (sqnr_db, max_abs_err, out_bias) = error_metrics(&out, &r.exact);
        let mut met = Metrics { sqnr_db, max_abs_err, out_bias, ..Metrics::default() };
        stats_metrics(&r.stats, &mut met);
        let g = Gemm { m, k: kd, n, requantized: false };
        hw_metrics(hw, &[g], ((m * kd) as u64, (m * n) as u64), &mut met)?;
        Ok(met)
    }

    fn quality_name(&self) -> &'static str {
        "sqnr_db"
    }
}
