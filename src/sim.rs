//! The end-to-end model runner behind `bitmac run`: a quantized model on a
//! data set, every layer through the MAC array (`layers`), compared with the
//! PyTorch fake-quant reference shipped beside the model.
//!
//! Per layer `l` (see `docs/model-format.md` and `docs/datapath.md`):
//! - the GEMM runs on the hardware config's array with the layer's codes;
//! - hidden layers requantize with `Model::multiplier` (= `requant::step_multiplier`)
//!   (`docs/requant.md`), the output format being the next layer's input
//!   quantizer (bits, signedness) and ReLU fused as the model says;
//! - the last layer's logits are the exact integers `acc * 2^d + bias`
//!   (no requantization), and the prediction is the arg-max, lowest index
//!   winning ties.
//!
//! Samples run one inference at a time (batch 1 by default, `batch` in
//! [`RunOptions`]), in parallel over batches; per-batch results are merged
//! in sample order, so every number in the report is independent of the
//! thread count.

use crate::array::{Engine, Matrix, Stats};
use crate::error::{Error, Result};
use crate::hw::HwConfig;
use crate::layers;
use crate::model::{argmax, Dataset, Layer, Model, Reference};
use crate::numerics::IntFormat;
use crate::requant::{layer_multiplier, quantize_multiplier, RequantRounding, Requantizer};
use rayon::prelude::*;

/// Options of a model run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Which array engine runs the GEMMs.
    pub engine: Engine,
    /// Samples per inference batch (1 = one image at a time).
    pub batch: usize,
    /// Explain at most this many differing predictions.
    pub max_explain: usize,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions { engine: Engine::Fast, batch: 1, max_explain: 20 }
    }
}

/// One layer's requantizer, as the report and the explanations describe it
/// (the GEMMs themselves run through the graph lowering, `graph::run`).
struct Lowered {
    requant: Requantizer,
    /// True for the last layer: logits, no requantization.
    logits: bool,
    /// Exact real multiplier `s_w*s_a/s_out` (hidden) or `s_w*s_a` (last).
    real_scale: f64,
}

/// Per-layer results of a run.
#[derive(Clone, Debug)]
pub struct LayerReport {
    pub name: String,
    pub kind: &'static str,
    /// GEMM dimensions per inference batch: M x K x N.
    pub gemm: (usize, usize, usize),
    /// Datapath statistics summed over the run.
    pub stats: Stats,
    /// MACs / (cycles * R * C).
    pub utilization: f64,
    /// Hidden layers: the largest |integer code - fake-quant code| (codes are
    /// `fake-quant value / step`). Last layer: the largest
    /// |integer logit - fake-quant logit / (s_w*s_a)|, in accumulator LSBs.
    /// `None` without a reference.
    pub max_diff_vs_fake_quant: Option<f64>,
    /// Elements whose integer code differs from the fake-quant code (hidden
    /// layers; `None` for the last layer or without a reference).
    pub codes_differing: Option<u64>,
    /// The requantization multiplier the datapath used (hidden layers;
    /// `None` for the last layer, whose accumulators are the logits).
    pub multiplier: Option<crate::requant::Multiplier>,
    /// Energy of one inference of this layer (`docs/energy.md`; value
    /// independent: no zero skipping).
    pub energy: crate::energy::Breakdown,
}

/// Why one sample's prediction differs from the fake-quant prediction.
#[derive(Clone, Debug)]
pub struct Flip {
    pub sample: usize,
    pub label: u32,
    pub integer: usize,
    pub fake_quant: usize,
    /// The first layer whose output codes differ from the fake-quant codes.
    pub layer: String,
    /// A one-line explanation: element, codes, exact value, and the cause.
    pub why: String,
}

/// The report of a model run.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub model: String,
    pub samples: usize,
    pub rows: usize,
    pub cols: usize,
    pub engine: Engine,
    pub batch: usize,
    pub correct: usize,
    pub predictions: Vec<usize>,
    pub fake_quant_accuracy: Option<f64>,
    pub float_accuracy: Option<f64>,
    /// Samples whose integer prediction equals the fake-quant one.
    pub agree: Option<usize>,
    pub flips_total: usize,
    pub flips: Vec<Flip>,
    pub layers: Vec<LayerReport>,
    pub total: Stats,
    /// The clock-domain crossings, when the hardware config has a `cdc`
    /// section.
    pub cdc: Option<CdcTotals>,
}

impl RunReport {
    /// Integer-only accuracy in [0, 1].
    pub fn accuracy(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.correct as f64 / self.samples as f64
        }
    }
}

/// Check that a model's operand formats fit the hardware multipliers, then
/// lower every layer.
fn lower(model: &Model, hw: &HwConfig) -> Result<Vec<Lowered>> {
    let n_layers = model.layers().len();
    let mut out = Vec::with_capacity(n_layers);
    for (l, layer) in model.layers().iter().enumerate() {
        let ctx = |e: Error| e.context(format!("layer {l} ({})", layer.name()));
        let wq = layer.weight().quant();
        let aq = layer.input_quant();
        let wfmt = IntFormat::new(wq.signed(), wq.bits()).map_err(ctx)?;
        let afmt = IntFormat::new(aq.signed(), aq.bits()).map_err(ctx)?;
        fits(wfmt, hw.weights(), "weights").map_err(ctx)?;
        fits(afmt, hw.activations(), "activations").map_err(ctx)?;
        let rounding = hw.requant().rounding;
        let (requant, logits, real_scale) = match model.output_quant(l) {
            Some(oq) => {
                // The one multiplier function (requant::step_multiplier).
                let mult =
                    model.multiplier(l)?.ok_or_else(|| Error::internal("hidden layer without multiplier"))?;
                let m = layer_multiplier(wq.step(), aq.step(), oq.step()).map_err(ctx)?;
                let ofmt = IntFormat::new(oq.signed(), oq.bits()).map_err(ctx)?;
                let rq = Requantizer::new(mult, rounding, ofmt, layer.relu()).map_err(ctx)?;
                (rq, false, m)
            }
            None => {
                // Logits are the accumulators themselves: a multiplier of
                // exactly 1 (m0 = 2^30, shift = 1) keeps the GEMM call
                // uniform and makes the output-error statistics the
                // accumulator error in accumulator LSBs.
                let rq = Requantizer::new(
                    quantize_multiplier(1.0)?,
                    RequantRounding::Double,
                    IntFormat::signed(32)?,
                    false,
                )?;
                (rq, true, (wq.step() * aq.step()) as f64)
            }
        };
        out.push(Lowered { requant, logits, real_scale });
    }
    Ok(out)
}

fn fits(layer: IntFormat, hw: IntFormat, what: &str) -> Result<()> {
    if layer.min() < hw.min() || layer.max() > hw.max() {
        return Err(Error::input(format!(
            "{what}: {layer} codes ({}..={}) do not fit the hardware's {hw} multiplier input ({}..={})",
            layer.min(),
            layer.max(),
            hw.min(),
            hw.max()
        )));
    }
    Ok(())
}

/// What one batch produced: per-layer outputs (codes, NCHW/feature order per
/// sample), exact accumulators, stored accumulator values, and stats.
struct BatchOut {
    /// `codes[l]`: layer l's output codes, `batch * output_len` (hidden) or
    /// the logits (last).
    codes: Vec<Vec<i64>>,
    /// `exact[l]` and `acc[l]`: per element (same order as `codes`), the
    /// exact sum + bias and the hardware accumulator value + bias.
    exact: Vec<Vec<i128>>,
    acc: Vec<Vec<i128>>,
    stats: Vec<Stats>,
}

/// The model as a graph, lowered once for the hardware: the one lowering
/// every command uses (`graph::run`, `docs/graph.md` §5 and §9).
struct Plan {
    graph: crate::graph::Graph,
    nodes: Vec<crate::graph::run::Lowered>,
}

fn plan(model: &Model, hw: &HwConfig) -> Result<Plan> {
    let graph = crate::graph::from_model(model)?;
    let nodes = crate::graph::run::lower(&graph, hw)?;
    Ok(Plan { graph, nodes })
}

/// Run one batch of input codes (`batch * input_len`) through every layer
/// (one graph node per layer).
fn run_batch(plan: &Plan, hw: &HwConfig, input: Vec<i32>, batch: usize, engine: Engine) -> Result<BatchOut> {
    let x: Vec<i64> = input.into_iter().map(i64::from).collect();
    let outs = crate::graph::run::run_batch(&plan.graph, &plan.nodes, hw, x, batch, engine)?;
    let mut out = BatchOut { codes: vec![], exact: vec![], acc: vec![], stats: vec![] };
    for o in outs {
        out.codes.push(o.codes);
        out.exact.push(o.exact);
        out.acc.push(o.acc);
        out.stats.push(o.stats.unwrap_or_default());
    }
    Ok(out)
}

/// The model lowered once for a run: the report's per-layer requantizers
/// and the graph plan every batch runs.
struct Prepared {
    lowered: Vec<Lowered>,
    plan: Plan,
}

fn prepare(model: &Model, hw: &HwConfig, opts: &RunOptions) -> Result<Prepared> {
    if opts.batch == 0 {
        return Err(Error::field("batch", 0, "1.."));
    }
    Ok(Prepared { lowered: lower(model, hw)?, plan: plan(model, hw)? })
}

/// Per-layer results of samples `s0..s1`: flat arrays in sample order.
struct Window {
    stats: Vec<Stats>,
    codes: Vec<Vec<i64>>,
    exact: Vec<Vec<i128>>,
    acc: Vec<Vec<i128>>,
    cdc: Option<CdcTotals>,
}

/// Run samples `s0..s1` (`s0` a multiple of the batch, so the batches are
/// the ones a run over all samples makes: the stats and CDC totals do not
/// depend on the windowing). Batches run in parallel and merge in sample
/// order (deterministic whatever the scheduling). `done` counts finished
/// samples for `progress`.
#[allow(clippy::too_many_arguments)]
fn run_window(
    model: &Model,
    data: &Dataset,
    hw: &HwConfig,
    opts: &RunOptions,
    prep: &Prepared,
    (s0, s1): (usize, usize),
    done: &std::sync::atomic::AtomicUsize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Window> {
    let in_len = model.input().len();
    let starts: Vec<usize> = (s0..s1).step_by(opts.batch).collect();
    let batches: Vec<Result<(BatchOut, Option<CdcTotals>)>> = starts
        .par_iter()
        .map(|&b0| {
            let b1 = (b0 + opts.batch).min(s1);
            let mut x = Vec::with_capacity((b1 - b0) * in_len);
            for s in b0..b1 {
                x.extend(model.input_codes(data.image(s)).map_err(|e| e.context(format!("sample {s}")))?);
            }
            let r = match hw.cdc() {
                None => run_batch(&prep.plan, hw, x, b1 - b0, opts.engine).map(|b| (b, None)),
                Some(c) => {
                    run_batch_cdc(&prep.plan, hw, &c, x, b1 - b0, (b0 / opts.batch) as u64, opts.engine)
                }
            };
            let n = done.fetch_add(b1 - b0, std::sync::atomic::Ordering::Relaxed) + (b1 - b0);
            progress(n);
            r
        })
        .collect();
    let n_layers = model.layers().len();
    let mut w = Window {
        stats: vec![Stats::default(); n_layers],
        codes: vec![Vec::new(); n_layers],
        exact: vec![Vec::new(); n_layers],
        acc: vec![Vec::new(); n_layers],
        cdc: None,
    };
    for b in batches {
        let (b, c) = b?;
        if let Some(c) = c {
            w.cdc.get_or_insert_with(CdcTotals::default).merge(&c);
        }
        for l in 0..n_layers {
            w.stats[l].merge(&b.stats[l]);
            w.codes[l].extend_from_slice(&b.codes[l]);
            w.exact[l].extend_from_slice(&b.exact[l]);
            w.acc[l].extend_from_slice(&b.acc[l]);
        }
    }
    Ok(w)
}

/// The samples `run_model` holds per-element results for at once (rounded
/// up to a multiple of the batch): its memory does not grow with the data
/// set beyond the per-sample prediction (`docs/limits.md`).
pub const RUN_WINDOW_SAMPLES: usize = 1024;

/// The window of `run_model` for batches of `batch`.
pub fn run_window_samples(batch: usize) -> usize {
    RUN_WINDOW_SAMPLES.div_ceil(batch.max(1)) * batch.max(1)
}

/// Totals of the clock-domain crossings of a run (`docs/cdc.md` §18): every
/// inference moves its input codes host -> array through the input FIFO and
/// its results array -> host through the output FIFO, overlapped with the
/// compute; inferences (batches) run one after another.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CdcTotals {
    /// Inferences (batches) run.
    pub batches: u64,
    /// Words through the input / output FIFO.
    pub words_in: u64,
    pub words_out: u64,
    /// End-to-end time of all batches, crossings overlapped with the compute
    /// (ps): per batch, the host's take of the last output word.
    pub time_ps: u64,
    /// The same batches with input crossing, compute and output crossing back
    /// to back (ps): `t_in + C * T_array + t_out` per batch.
    pub back_to_back_ps: u64,
    /// Array-domain and host-domain clock cycles in `time_ps`.
    pub array_cycles: u64,
    pub host_cycles: u64,
    /// Array cycles spent computing (the single-clock cycle count).
    pub compute_cycles: u64,
    /// Array edges on which the compute waited for an input word.
    pub compute_stalls: u64,
    /// Input FIFO: host edges blocked by wfull, array edges waiting on an
    /// empty port.
    pub in_write_stalls: u64,
    pub in_read_stalls: u64,
    /// Output FIFO: array edges blocked by wfull, host edges waiting on an
    /// empty port.
    pub out_write_stalls: u64,
    pub out_read_stalls: u64,
    /// Occupancy histograms (`[k]` = edges after which k words were unread).
    pub in_occupancy: Vec<u64>,
    pub out_occupancy: Vec<u64>,
    /// Latency histograms (`[k]` = words taken k read edges after their
    /// push, `cdc::Stats::lat_write_pop`, docs/cdc.md section 5): input
    /// FIFO in array edges, output FIFO in host edges.
    pub in_latency: Vec<u64>,
    pub out_latency: Vec<u64>,
    /// Metastability events in both FIFOs (0 with `cdc.meta` off).
    pub meta_events: u64,
    /// Scoreboard findings of both FIFOs: words lost, duplicated, reordered.
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

impl CdcTotals {
    /// The totals of one overlapped inference; `tout_b2b` is the output
    /// crossing run on its own from reset (the back-to-back comparison).
    fn of(
        cdc: &crate::hw::CdcConfig,
        t_array: u64,
        ov: &crate::cdc::overlap::Overlap,
        compute: u64,
        tout_b2b: &crate::cdc::TransferReport,
    ) -> CdcTotals {
        let (tin, tout) = (&ov.tin, &ov.tout);
        let end_in = tin.pop_time_ps.last().copied().unwrap_or(0);
        let end_out = tout_b2b.pop_time_ps.last().copied().unwrap_or(0);
        let time_ps = ov.time_ps;
        let sb = |f: fn(&crate::cdc::Verdict) -> u64| f(&tin.report.verdict) + f(&tout.report.verdict);
        CdcTotals {
            batches: 1,
            words_in: tin.popped.len() as u64,
            words_out: tout.popped.len() as u64,
            time_ps,
            back_to_back_ps: end_in + compute * t_array + end_out,
            array_cycles: time_ps.div_ceil(t_array),
            host_cycles: time_ps.div_ceil(cdc.host_period_ps),
            compute_cycles: compute,
            compute_stalls: ov.compute_stalls,
            in_write_stalls: tin.write_stalls,
            in_read_stalls: tin.read_stalls,
            out_write_stalls: tout.write_stalls,
            out_read_stalls: tout.read_stalls,
            in_occupancy: tin.occupancy.clone(),
            out_occupancy: tout.occupancy.clone(),
            in_latency: tin.report.stats.lat_write_pop.clone(),
            out_latency: tout.report.stats.lat_write_pop.clone(),
            meta_events: (tin.report.events.len() + tout.report.events.len()) as u64,
            lost: sb(|v| v.lost),
            duplicated: sb(|v| v.duplicated),
            reordered: sb(|v| v.reordered),
        }
    }

    fn merge(&mut self, o: &CdcTotals) {
        self.batches += o.batches;
        self.words_in += o.words_in;
        self.words_out += o.words_out;
        self.time_ps += o.time_ps;
        self.back_to_back_ps += o.back_to_back_ps;
        self.array_cycles += o.array_cycles;
        self.host_cycles += o.host_cycles;
        self.compute_cycles += o.compute_cycles;
        self.compute_stalls += o.compute_stalls;
        self.in_write_stalls += o.in_write_stalls;
        self.in_read_stalls += o.in_read_stalls;
        self.out_write_stalls += o.out_write_stalls;
        self.out_read_stalls += o.out_read_stalls;
        add_hist(&mut self.in_occupancy, &o.in_occupancy);
        add_hist(&mut self.out_occupancy, &o.out_occupancy);
        add_hist(&mut self.in_latency, &o.in_latency);
        add_hist(&mut self.out_latency, &o.out_latency);
        self.meta_events += o.meta_events;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
    }

    /// The totals as JSON (the `cdc` object of `bitmac run --json` and
    /// `bitmac gemm --stats`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "batches": self.batches, "words_in": self.words_in, "words_out": self.words_out,
            "time_ps": self.time_ps, "back_to_back_ps": self.back_to_back_ps,
            "array_cycles": self.array_cycles, "host_cycles": self.host_cycles,
            "compute_cycles": self.compute_cycles, "compute_stalls": self.compute_stalls,
            "in_write_stalls": self.in_write_stalls, "in_read_stalls": self.in_read_stalls,
            "out_write_stalls": self.out_write_stalls, "out_read_stalls": self.out_read_stalls,
            "in_occupancy": self.in_occupancy, "out_occupancy": self.out_occupancy,
            "in_latency": self.in_latency, "out_latency": self.out_latency,
            "meta_events": self.meta_events,
            "lost": self.lost, "duplicated": self.duplicated, "reordered": self.reordered,
        })
    }
}

fn add_hist(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// The validated FIFO of the datapath's crossings (`cdc` section: depth,
/// synchronizers, variant, metastability) for `width`-bit words and `seed`.
pub fn datapath_fifo(cdc: &crate::hw::CdcConfig, width: u32, seed: u64) -> Result<crate::cdc::FifoConfig> {
    crate::cdc::FifoSpec {
        depth: cdc.fifo_depth as u64,
        sync: cdc.sync_stages,
        data_width: width,
        meta: cdc.meta,
        seed,
        ..crate::cdc::FifoSpec::default()
    }
    .validate()?
    .with_variant(cdc.variant)
}

/// Run one inference's crossings overlapped with its compute (docs/cdc.md
/// §18) and the output crossing once more on its own (the back-to-back
/// comparison). Batch `b` uses seed `cdc.seed + 2b` for the input FIFO and
/// `cdc.seed + 2b + 1` for the output FIFO (wrapping).
#[allow(clippy::too_many_arguments)]
fn crossings(
    cdc: &crate::hw::CdcConfig,
    t_array: u64,
    b: u64,
    tin: crate::cdc::TransferReport,
    words_out: &[u64],
    width_out: u32,
    sched: &crate::cdc::overlap::Schedule,
    compute: u64,
) -> Result<(Vec<u64>, CdcTotals)> {
    let seed = cdc.seed.wrapping_add(b.wrapping_mul(2));
    let cfg_out = datapath_fifo(cdc, width_out, seed.wrapping_add(1))?;
    let ov = crate::cdc::overlap::overlap_after_input(
        &cfg_out,
        cdc.host_period_ps,
        t_array,
        tin,
        words_out,
        sched,
    )?;
    let b2b = crate::cdc::transfer(
        &cfg_out,
        &crate::cdc::ClockPair::new(t_array, cdc.host_period_ps),
        words_out,
        &crate::cdc::Pattern::Always,
        &crate::cdc::Pattern::Always,
    )?;
    let totals = CdcTotals::of(cdc, t_array, &ov, compute, &b2b);
    Ok((ov.tout.popped, totals))
}

/// The input crossing of batch `b` (seed `cdc.seed + 2b`).
fn cross_in(
    cdc: &crate::hw::CdcConfig,
    t_array: u64,
    b: u64,
    words: &[u64],
    width: u32,
) -> Result<crate::cdc::TransferReport> {
    let seed = cdc.seed.wrapping_add(b.wrapping_mul(2));
    let cfg_in = datapath_fifo(cdc, width, seed)?;
    crate::cdc::overlap::cross_input(&cfg_in, cdc.host_period_ps, t_array, words)
}

/// The schedule of a model run's crossings: the first layer's input words
/// and the last layer's results at the GEMM timing when that layer is a
/// dense node on the array (the input tensor being the graph input), else
/// the coarse rule (inputs due at cycle 0, results final at the last cycle
/// of the run) — docs/cdc.md §18.
fn run_schedule(
    plan: &Plan,
    hw: &HwConfig,
    batch: usize,
    stats: &[Stats],
    words_in: usize,
    words_out: usize,
) -> crate::cdc::overlap::Schedule {
    use crate::cdc::overlap::{gemm_schedule, Schedule};
    let total: u64 = stats.iter().map(|s| s.cycles).sum();
    let dense = |i: usize| -> Option<Schedule> {
        match plan.nodes.get(i)? {
            crate::graph::run::Lowered::Array(a) if a.conv.is_none() && a.weights.len() == 1 => {
                let s = gemm_schedule(hw.dataflow(), hw.rows(), hw.cols(), batch, a.k, a.n);
                (s.cycles == stats.get(i)?.cycles).then_some(s)
            }
            _ => None,
        }
    };
    let mut sched = Schedule::coarse(words_in, words_out, total);
    let first_is_input =
        plan.graph.nodes().first().is_some_and(|n| n.inputs.first() == Some(&plan.graph.input()));
    if let Some(s) = dense(0).filter(|s| first_is_input && s.need.len() == words_in) {
        sched.need = s.need;
    }
    let last = plan.nodes.len().saturating_sub(1);
    if let Some(s) = dense(last).filter(|s| s.ready.len() == words_out) {
        let offset = total - stats[last].cycles;
        sched = sched.with_outputs(&s, offset, total);
    }
    sched
}

/// One batch with the array in its own clock domain: the input codes cross
/// host -> array through an async FIFO while the layers compute, and the
/// logits cross array -> host while the array still computes
/// (docs/cdc.md §18). The words that come out of each FIFO are the ones
/// used downstream, so a crossing that lost, duplicated or reordered a word
/// would change the results; with a correct FIFO they are bit-identical to
/// the single-clock run.
fn run_batch_cdc(
    plan: &Plan,
    hw: &HwConfig,
    cdc_cfg: &crate::hw::CdcConfig,
    input: Vec<i32>,
    batch: usize,
    b: u64,
    engine: Engine,
) -> Result<(BatchOut, Option<CdcTotals>)> {
    let a_fmt = hw.activations();
    let t_array = hw.clock_period_ps();
    // Host -> array: activation codes as two's-complement words.
    let words: Vec<u64> = input.iter().map(|&c| a_fmt.to_bits(c as i128)).collect();
    let tin = cross_in(cdc_cfg, t_array, b, &words, a_fmt.width())?;
    let crossed: Vec<i32> = tin.popped.iter().map(|&w| a_fmt.from_bits(w) as i32).collect();
    let mut out = run_batch(plan, hw, crossed, batch, engine)?;
    let compute: u64 = out.stats.iter().map(|s| s.cycles).sum();
    // Array -> host: the logits, as 64-bit two's-complement words.
    let last = out.codes.len() - 1;
    let w64 = crate::numerics::IntFormat::signed(64)?;
    let words_out: Vec<u64> = out.codes[last].iter().map(|&c| w64.to_bits(c as i128)).collect();
    let sched = run_schedule(plan, hw, batch, &out.stats, words.len(), words_out.len());
    let (popped, totals) = crossings(cdc_cfg, t_array, b, tin, &words_out, 64, &sched, compute)?;
    out.codes[last] = popped.iter().map(|&w| w64.from_bits(w) as i64).collect();
    Ok((out, Some(totals)))
}

/// A GEMM with the array in its own clock domain (`hw` must have a `cdc`
/// section): A's codes cross host -> array while the GEMM computes, and the
/// results cross array -> host as they become final (the requantized codes
/// at the output width, or the accumulator values `acc * 2^d` as 64-bit
/// words when `stage_acc`); docs/cdc.md §18. The crossed values replace the
/// GEMM's own, so the returned result is what the host received; with a
/// correct FIFO it equals the single-clock GEMM.
#[allow(clippy::too_many_arguments)]
pub fn gemm_cdc(
    hw: &HwConfig,
    a: &Matrix,
    w: &Matrix,
    bias: Option<&[i32]>,
    requant: &Requantizer,
    engine: Engine,
    trace: Option<&mut String>,
    stage_acc: bool,
) -> Result<(layers::GemmResult, CdcTotals)> {
    let cdc = hw.cdc().ok_or_else(|| Error::input("the hardware config has no cdc section"))?;
    let t_array = hw.clock_period_ps();
    let a_fmt = hw.activations();
    let words: Vec<u64> = a.codes().iter().map(|c| a_fmt.to_bits(c as i128)).collect();
    let tin = cross_in(&cdc, t_array, 0, &words, a_fmt.width())?;
    let crossed: Vec<i32> = tin.popped.iter().map(|&v| a_fmt.from_bits(v) as i32).collect();
    let a2 = Matrix::new(a.rows(), a.cols(), crossed)?;
    let mut res = layers::run_gemm_traced(hw, &a2, w, bias, requant, engine, trace)?;
    let compute = res.stats.cycles;
    let (m, k, n) = (a.rows(), a.cols(), w.cols());
    let mut sched = crate::cdc::overlap::gemm_schedule(hw.dataflow(), hw.rows(), hw.cols(), m, k, n);
    if sched.cycles != compute {
        // A timing the §5 formulas do not describe (e.g. memory stalls): the
        // coarse rule.
        sched = crate::cdc::overlap::Schedule::coarse(m * k, m * n, compute);
    }
    let totals = if stage_acc {
        let w64 = IntFormat::signed(64)?;
        let words: Vec<u64> = res.acc.iter().map(|&v| w64.to_bits(v as i128)).collect();
        let (popped, t) = crossings(&cdc, t_array, 0, tin, &words, 64, &sched, compute)?;
        res.acc = popped.iter().map(|&v| w64.from_bits(v) as i64).collect();
        t
    } else {
        let f = requant.out_format();
        let words: Vec<u64> = res.out.iter().map(|&v| f.to_bits(v as i128)).collect();
        let (popped, t) = crossings(&cdc, t_array, 0, tin, &words, f.width(), &sched, compute)?;
        res.out = popped.iter().map(|&v| f.from_bits(v) as i64).collect();
        t
    };
    Ok((res, totals))
}

impl CdcTotals {
    /// A text summary (cycles per domain, overlap, stalls, occupancy).
    pub fn summary(&self, cdc: &crate::hw::CdcConfig, array_period_ps: u64) -> String {
        let occ = |h: &[u64]| -> String {
            let n: u64 = h.iter().sum();
            let mean = if n == 0 {
                0.0
            } else {
                h.iter().enumerate().map(|(k, &v)| k as f64 * v as f64).sum::<f64>() / n as f64
            };
            format!("mean {mean:.2}, max {}", h.iter().rposition(|&v| v > 0).unwrap_or(0))
        };
        let v = cdc.variant;
        let variant = if v.is_plain() { String::new() } else { format!(";{}", v.describe()) };
        let meta = match cdc.meta {
            Some(m) => {
                format!("; metastability setup {} ps, hold {} ps, seed {}", m.setup_ps, m.hold_ps, cdc.seed)
            }
            None => String::new(),
        };
        let saved = self.back_to_back_ps.saturating_sub(self.time_ps);
        let pct =
            if self.back_to_back_ps == 0 { 0.0 } else { 100.0 * saved as f64 / self.back_to_back_ps as f64 };
        format!(
            "clock domains: host {} ps, array {array_period_ps} ps; async FIFOs depth {}, {} sync stages{variant}{meta}\n  overlapped: {} ps end to end ({:.3} us) vs {} ps back to back ({pct:.1}% saved); array domain {} cycles ({} computing, {} compute stall edges waiting for input), host domain {} cycles\n  input FIFO (host->array): {} words, {} host wait edges (full), {} array wait edges (empty), occupancy {}\n  output FIFO (array->host): {} words, {} array stall edges (full), {} host wait edges (empty), occupancy {}\n  scoreboard: {} lost, {} duplicated, {} reordered; {} metastability events",
            cdc.host_period_ps,
            cdc.fifo_depth,
            cdc.sync_stages,
            self.time_ps,
            self.time_ps as f64 / 1e6,
            self.back_to_back_ps,
            self.array_cycles,
            self.compute_cycles,
            self.compute_stalls,
            self.host_cycles,
            self.words_in,
            self.in_write_stalls,
            self.in_read_stalls,
            occ(&self.in_occupancy),
            self.words_out,
            self.out_write_stalls,
            self.out_read_stalls,
            occ(&self.out_occupancy),
            self.lost,
            self.duplicated,
            self.reordered,
            self.meta_events,
        )
    }
}

/// Every layer's accumulators (`acc * 2^d + bias`) and output codes (logits
/// for the last layer) per sample: `acc[layer][sample][element]`, elements
/// in the model's output order (NCHW for conv, features for dense).
#[derive(Clone, Debug)]
pub struct ModelTrace {
    pub acc: Vec<Vec<Vec<i128>>>,
    pub exact: Vec<Vec<Vec<i128>>>,
    pub codes: Vec<Vec<Vec<i64>>>,
}

/// Split each layer's flat, sample-major values into `samples` equal rows.
fn per_sample<T: Clone>(flat: &[Vec<T>], samples: usize) -> Vec<Vec<Vec<T>>> {
    flat.iter().map(|v| v.chunks(v.len() / samples.max(1)).map(<[T]>::to_vec).collect()).collect()
}

/// Run `model` on `data` and return every layer's values per sample (for
/// tests, vectors and debugging; no reference needed).
pub fn run_model_trace(
    model: &Model,
    data: &Dataset,
    hw: &HwConfig,
    engine: Engine,
    batch: usize,
) -> Result<ModelTrace> {
    let opts = RunOptions { engine, batch, max_explain: 0 };
    let prep = prepare(model, hw, &opts)?;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let w = run_window(model, data, hw, &opts, &prep, (0, data.len()), &done, &|_| {})?;
    let n = data.len();
    Ok(ModelTrace {
        acc: per_sample(&w.acc, n),
        exact: per_sample(&w.exact, n),
        codes: per_sample(&w.codes, n),
    })
}

/// Run `model` on `data` through the datapath described by `hw`.
/// `reference` (the PyTorch fake-quant outputs for the same data) enables
/// the agreement numbers and the explanations of differing predictions.
/// `progress` is called with the number of samples finished so far.
pub fn run_model(
    model: &Model,
    data: &Dataset,
    reference: Option<&Reference>,
    hw: &HwConfig,
    opts: &RunOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<RunReport> {
    if let Some(r) = reference {
        if r.samples() != data.len() {
            return Err(Error::input(format!(
                "reference has {} samples but the data set has {}; pass the matching --data or --reference",
                r.samples(),
                data.len()
            )));
        }
    }
    let prep = prepare(model, hw, opts)?;
    let lowered = &prep.lowered;
    let n_layers = model.layers().len();
    let classes = model.num_classes();
    let n = data.len();
    // Run window by window, keeping only what the report needs: the
    // prediction per sample, per-layer running maxima and counts, the
    // float-bias votes, and the per-layer values of the first `max_explain`
    // differing samples (explained once every vote is in).
    let mut per_layer = vec![Stats::default(); n_layers];
    let mut cdc: Option<CdcTotals> = None;
    let mut predictions = Vec::with_capacity(n);
    let mut max_diff = vec![0f64; n_layers];
    let mut differing = vec![0u64; n_layers];
    let mut votes: Vec<BiasVote> = (0..n_layers).map(|_| BiasVote::default()).collect();
    let (mut agree_n, mut flips_total, mut kept) = (0usize, 0usize, Vec::<SampleTrace>::new());
    let done = std::sync::atomic::AtomicUsize::new(0);
    let step = run_window_samples(opts.batch);
    for s0 in (0..n).step_by(step) {
        let s1 = (s0 + step).min(n);
        let w = run_window(model, data, hw, opts, &prep, (s0, s1), &done, progress)?;
        if let Some(c) = &w.cdc {
            cdc.get_or_insert_with(CdcTotals::default).merge(c);
        }
        for (st, ws) in per_layer.iter_mut().zip(&w.stats) {
            st.merge(ws);
        }
        let logits = &w.codes[n_layers - 1];
        for s in 0..s1 - s0 {
            predictions.push(argmax(&logits[s * classes..(s + 1) * classes]).unwrap_or(0));
        }
        let Some(r) = reference else { continue };
        for (l, layer) in model.layers().iter().enumerate() {
            let len = layer.output_len();
            if lowered[l].logits {
                let scale = lowered[l].real_scale;
                for (s, row) in r.fake_quant.logits[s0..s1].iter().enumerate() {
                    for (j, &fq) in row.iter().enumerate() {
                        let int = w.codes[l][s * len + j] as f64;
                        max_diff[l] = max_diff[l].max((int - fq as f64 / scale).abs());
                    }
                }
            } else if let Some(h) = r.fake_quant.hidden_codes.iter().find(|h| h.layer == layer.name()) {
                for (s, row) in h.codes[s0..s1].iter().enumerate() {
                    for (j, &fq) in row.iter().enumerate() {
                        let d = (w.codes[l][s * len + j] - fq as i64).abs();
                        max_diff[l] = max_diff[l].max(d as f64);
                        differing[l] += (d != 0) as u64;
                    }
                }
            }
            votes[l].count(layer, &lowered[l], r, &w.exact[l], s0);
        }
        for (s, (&p, &fq)) in predictions.iter().zip(&r.fake_quant.predictions).enumerate().take(s1).skip(s0)
        {
            if p == fq {
                agree_n += 1;
                continue;
            }
            flips_total += 1;
            if kept.len() < opts.max_explain {
                let at = |l: usize| {
                    (s - s0) * model.layers()[l].output_len()..(s - s0 + 1) * model.layers()[l].output_len()
                };
                kept.push(SampleTrace {
                    sample: s,
                    codes: (0..n_layers).map(|l| w.codes[l][at(l)].to_vec()).collect(),
                    exact: (0..n_layers).map(|l| w.exact[l][at(l)].to_vec()).collect(),
                    acc: (0..n_layers).map(|l| w.acc[l][at(l)].to_vec()).collect(),
                });
            }
        }
    }
    let correct = predictions.iter().zip(data.labels()).filter(|(p, &l)| **p == l as usize).count();

    let mut layers_out = Vec::with_capacity(n_layers);
    let mut total = Stats::default();
    for (l, layer) in model.layers().iter().enumerate() {
        let st = per_layer[l].clone();
        total.merge(&st);
        let pe = (hw.rows() * hw.cols()) as f64;
        let utilization = if st.cycles == 0 { 0.0 } else { st.macs as f64 / (st.cycles as f64 * pe) };
        let (gm, gk, gn) = layer.gemm_dims();
        let has_ref = reference.is_some();
        let hidden_ref = reference.is_some_and(|r| {
            !lowered[l].logits && r.fake_quant.hidden_codes.iter().any(|h| h.layer == layer.name())
        });
        layers_out.push(LayerReport {
            name: layer.name().to_string(),
            kind: layer.kind(),
            gemm: (gm * opts.batch.min(data.len().max(1)), gk, gn),
            stats: st,
            utilization,
            max_diff_vs_fake_quant: (has_ref && (lowered[l].logits || hidden_ref)).then_some(max_diff[l]),
            codes_differing: hidden_ref.then_some(differing[l]),
            multiplier: (!lowered[l].logits).then(|| lowered[l].requant.multiplier()),
            energy: crate::energy::for_hw(hw, gm as u64, gk as u64, gn as u64, None, !lowered[l].logits),
        });
    }

    let (mut agree, mut flips) = (None, Vec::new());
    if let Some(r) = reference {
        let float_bias: Vec<bool> = (0..n_layers).map(|l| votes[l].decide(&model.layers()[l])).collect();
        for t in &kept {
            flips.push(explain(
                model,
                lowered,
                &float_bias,
                r,
                t,
                predictions[t.sample],
                data.label(t.sample),
            ));
        }
        agree = Some(agree_n);
    }
    Ok(RunReport {
        model: model.name().to_string(),
        samples: data.len(),
        rows: hw.rows(),
        cols: hw.cols(),
        engine: opts.engine,
        batch: opts.batch,
        correct,
        predictions,
        fake_quant_accuracy: reference.map(|r| r.fake_quant.accuracy),
        float_accuracy: reference.map(|r| r.float_accuracy),
        agree,
        flips_total,
        flips,
        layers: layers_out,
        total,
        cdc,
    })
}

/// Find the first layer where sample `s`'s integer codes leave the
/// fake-quant codes, and say why at its most-different element.
#[allow(clippy::too_many_arguments)]
fn explain(
    model: &Model,
    lowered: &[Lowered],
    float_bias: &[bool],
    r: &Reference,
    t: &SampleTrace,
    int_pred: usize,
    label: u32,
) -> Flip {
    let (s, codes, exact, acc) = (t.sample, &t.codes, &t.exact, &t.acc);
    let fq_pred = r.fake_quant.predictions[s];
    let flip = |layer: &str, why: String| Flip {
        sample: s,
        label,
        integer: int_pred,
        fake_quant: fq_pred,
        layer: layer.into(),
        why,
    };
    for (l, layer) in model.layers().iter().enumerate() {
        if lowered[l].logits {
            // Every hidden layer matched: the final accumulation decided.
            // Report the logit that moved most against fake-quant.
            let row = &r.fake_quant.logits[s];
            let scale = lowered[l].real_scale;
            let (mut best, mut bd) = (0, -1f64);
            for (j, &f) in row.iter().enumerate() {
                let d = (codes[l][j] as f64 - f as f64 / scale).abs();
                if d > bd {
                    best = j;
                    bd = d;
                }
            }
            if float_bias[l] {
                // With the float bias (the int32 bias minus its rounding)
                // the exact logits would order the two classes as
                // fake-quant does: the bias rounding decided.
                let d = |j: usize| layer.bias_rounding(j).unwrap_or(0.0);
                let with_float = |j: usize| exact[l][j] as f64 - d(j);
                let (a, b) = (with_float(int_pred), with_float(fq_pred));
                let fq_wins = b > a || (b == a && fq_pred < int_pred);
                if fq_wins && acc[l][int_pred] == exact[l][int_pred] {
                    let why = format!(
                        "logits differ: integer logit[{int_pred}]={} vs logit[{fq_pred}]={}; the float bias was rounded to \
                         int32 (moving logit[{int_pred}] by {:+.4} and logit[{fq_pred}] by {:+.4} accumulator units): with \
                         the float bias the exact logits are {a:.4} vs {b:.4}, as fake-quant orders them",
                        codes[l][int_pred],
                        codes[l][fq_pred],
                        d(int_pred),
                        d(fq_pred),
                    );
                    return flip(layer.name(), why);
                }
            }
            let why = format!(
                "logits differ: integer logit[{int_pred}]={} vs logit[{fq_pred}]={}; fake-quant logits {:.4} vs {:.4}; \
                 hidden layers all match, so the final accumulation decided ({})",
                codes[l][int_pred],
                codes[l][fq_pred],
                row[int_pred],
                row[fq_pred],
                cause(exact[l][best], acc[l][best], None)
            );
            return flip(layer.name(), why);
        }
        let Some(h) = r.fake_quant.hidden_codes.iter().find(|h| h.layer == layer.name()) else {
            continue;
        };
        // The most-different element of the first hidden layer that differs.
        let row = &h.codes[s];
        let mut best: Option<(usize, i64)> = None;
        for (j, &f) in row.iter().enumerate() {
            let d = (codes[l][j] - f as i64).abs();
            if d > 0 && best.is_none_or(|(_, bd)| d > bd) {
                best = Some((j, d));
            }
        }
        let Some((j, _)) = best else { continue };
        let (int, fq) = (codes[l][j], row[j] as i64);
        if float_bias[l] && acc[l][j] == exact[l][j] {
            let rq = &lowered[l].requant;
            let o = layer.channel_of(j);
            let d = layer.bias_rounding(o).unwrap_or(0.0);
            let m = rq.real_multiplier();
            let (v, vf) = (m * exact[l][j] as f64, m * (exact[l][j] as f64 - d));
            if nearest_code(rq, vf) == fq && nearest_code(rq, v) != fq {
                let why = format!(
                    "{} output {}: integer code {int} vs fake-quant {fq}; exact value {v:.4} output LSBs; the float bias \
                     b[{o}] was rounded to the int32 bias {} (by {d:+.4} accumulator units = {:+.4} output LSBs): with \
                     the float bias the exact value is {vf:.4}, which rounds to the fake-quant code",
                    layer.name(),
                    element_name(layer, j),
                    layer.bias()[o],
                    d * m,
                );
                return flip(layer.name(), why);
            }
        }
        let why = format!(
            "{} output {}: integer code {int} vs fake-quant {fq}; {}",
            layer.name(),
            element_name(layer, j),
            cause(exact[l][j], acc[l][j], Some((&lowered[l].requant, int)))
        );
        return flip(layer.name(), why);
    }
    flip("-", "no layer differs from the reference (argmax tie)".into())
}

/// Classify a differing element: overflow or psum rounding changed the
/// accumulator; or the requantization scheme did not return the nearest
/// integer to the exact scaled value (double rounding); or the integer path
/// is the exactly-rounded value and fake-quant's float32 arithmetic landed
/// on the other side of the rounding boundary.
fn cause(exact: i128, acc: i128, rq: Option<(&Requantizer, i64)>) -> String {
    let Some((rq, code)) = rq else {
        return if acc != exact {
            format!(
                "the accumulator is {acc} instead of the exact {exact} (overflow or partial-sum rounding)"
            )
        } else {
            "exact accumulator".to_string()
        };
    };
    // The hardware's own multiplier m0*2^(shift-31) is exact in f64; the
    // product is accurate to far below half an LSB for these magnitudes.
    let v = rq.real_multiplier() * exact as f64;
    let at = format!("exact value {v:.4} output LSBs");
    if acc != exact {
        return format!(
            "{at}; the accumulator is {acc} instead of the exact {exact} (overflow or partial-sum rounding moved it by {})",
            acc - exact
        );
    }
    let fmt = rq.out_format();
    let lo = if rq.relu() { fmt.min().max(0) } else { fmt.min() } as f64;
    let nearest = (v + 0.5).floor().clamp(lo, fmt.max() as f64) as i64;
    if code != nearest {
        format!(
            "{at}; exact accumulator; {} requantization returns {code}, not the nearest integer {nearest} \
             (double rounding: the high multiply rounds first, then the shift rounds a .5 away from zero)",
            rq.rounding()
        )
    } else {
        format!(
            "{at}; exact accumulator and exactly rounded requantization; fake-quant's float32 arithmetic \
             landed on the other side of the {} boundary",
            v.floor() + 0.5
        )
    }
}

/// The integer nearest to `v` (ties up), clamped to `rq`'s output range.
fn nearest_code(rq: &Requantizer, v: f64) -> i64 {
    let fmt = rq.out_format();
    let lo = if rq.relu() { fmt.min().max(0) } else { fmt.min() } as f64;
    (v + 0.5).floor().clamp(lo, fmt.max() as f64) as i64
}

/// One differing sample's per-layer values (its own elements only), kept
/// by `run_model` to explain the flip after the run.
struct SampleTrace {
    sample: usize,
    codes: Vec<Vec<i64>>,
    exact: Vec<Vec<i128>>,
    acc: Vec<Vec<i128>>,
}

/// Whether the fake-quant forward of a layer evidently added the float
/// bias `b` (not the int32 bias `bias_int`): the layer records `bias_float`
/// with a non-zero rounding, and over every sample and element the exact
/// values with the float bias (`exact - rounding`) match the fake-quant
/// results better than with the int32 bias: hidden layers count the
/// elements whose nearest code equals the fake-quant code; the last layer
/// sums `|fake-quant logit / (s_w*s_a) - value|`. (The files do not record
/// which bias the fake-quant forward used: the shipped models were trained
/// with the bias fake-quantized onto the accumulator grid, so for them the
/// int32 bias wins and no flip is blamed on the bias.) Counted window by
/// window, in sample order, so the sums are those of one pass.
#[derive(Default)]
struct BiasVote {
    e_int: f64,
    e_flt: f64,
    n_int: u64,
    n_flt: u64,
}

impl BiasVote {
    fn roundings(layer: &Layer) -> Option<Vec<f64>> {
        let d: Vec<f64> = (0..layer.out_channels()).map(|o| layer.bias_rounding(o).unwrap_or(0.0)).collect();
        d.iter().any(|&x| x != 0.0).then_some(d)
    }

    /// Count the samples `s0..` whose exact values `exact` (sample-major) holds.
    fn count(&mut self, layer: &Layer, low: &Lowered, r: &Reference, exact: &[i128], s0: usize) {
        let Some(d) = Self::roundings(layer) else { return };
        let len = layer.output_len();
        let n = exact.len() / len.max(1);
        if low.logits {
            for (s, row) in r.fake_quant.logits[s0..s0 + n].iter().enumerate() {
                for (j, &f) in row.iter().enumerate() {
                    let (fq, x) = (f as f64 / low.real_scale, exact[s * len + j] as f64);
                    self.e_int += (fq - x).abs();
                    self.e_flt += (fq - (x - d[j])).abs();
                }
            }
            return;
        }
        let Some(h) = r.fake_quant.hidden_codes.iter().find(|h| h.layer == layer.name()) else {
            return;
        };
        let m = low.requant.real_multiplier();
        for (s, row) in h.codes[s0..s0 + n].iter().enumerate() {
            for (j, &f) in row.iter().enumerate() {
                let x = exact[s * len + j] as f64;
                self.n_int += u64::from(nearest_code(&low.requant, m * x) == f as i64);
                self.n_flt +=
                    u64::from(nearest_code(&low.requant, m * (x - d[layer.channel_of(j)])) == f as i64);
            }
        }
    }

    fn decide(&self, layer: &Layer) -> bool {
        Self::roundings(layer).is_some() && (self.e_flt < self.e_int || self.n_flt > self.n_int)
    }
}

fn element_name(layer: &Layer, j: usize) -> String {
    let shape = layer.output_shape();
    if shape.len() == 3 {
        let (h, w) = (shape[1], shape[2]);
        format!("[c={}, y={}, x={}]", j / (h * w), (j / w) % h, j % w)
    } else {
        format!("[{j}]")
    }
}
