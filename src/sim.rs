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

/// One layer, lowered for the array: GEMM operands and its requantizer.
struct Lowered {
    weight: Matrix, // K x N
    bias: Vec<i32>,
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
        let (_, k, n) = layer.gemm_dims();
        // Weights as K x N: K runs over (c, ky, kx) for conv (im2col order),
        // over input features for dense; N over output channels.
        let codes = layer.weight().codes();
        let mut w = vec![0i32; k * n];
        for o in 0..n {
            for kk in 0..k {
                w[kk * n + o] = codes[o * k + kk];
            }
        }
        let weight = Matrix::new(k, n, w).map_err(ctx)?;
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
        out.push(Lowered { weight, bias: layer.bias().to_vec(), requant, logits, real_scale });
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

/// Run one batch of input codes (`batch * input_len`) through every layer.
fn run_batch(
    model: &Model,
    lowered: &[Lowered],
    hw: &HwConfig,
    input: Vec<i32>,
    batch: usize,
    engine: Engine,
) -> Result<BatchOut> {
    let mut x = input;
    let mut out = BatchOut { codes: vec![], exact: vec![], acc: vec![], stats: vec![] };
    for (layer, low) in model.layers().iter().zip(lowered) {
        let (gemm, to_nchw) = match layer {
            Layer::Conv2d(c) => {
                let [ci, h, w] = c.input_shape();
                let [kh, kw] = c.kernel();
                let shape = layers::Conv2d {
                    batch,
                    in_ch: ci,
                    height: h,
                    width: w,
                    out_ch: c.out_channels(),
                    kh,
                    kw,
                    stride: (c.stride()[0], c.stride()[1]),
                    padding: (c.padding()[0], c.padding()[1]),
                };
                let r = layers::conv2d(
                    hw,
                    &shape,
                    &x,
                    layer.weight().codes(),
                    Some(&low.bias),
                    &low.requant,
                    engine,
                )?;
                let (oh, ow) = (r.shape[2], r.shape[3]);
                (r.gemm, Some((c.out_channels(), oh * ow)))
            }
            Layer::Dense(_) => {
                let (_, k, _) = layer.gemm_dims();
                let a = Matrix::new(batch, k, std::mem::take(&mut x))?;
                (layers::run_gemm(hw, &a, &low.weight, Some(&low.bias), &low.requant, engine)?, None)
            }
        };
        let n = gemm.n;
        // GEMM rows are (sample, pixel) for conv and sample for dense;
        // reorder to per-sample NCHW / feature order.
        let index = |i: usize| -> usize {
            match to_nchw {
                Some((ch, px)) => {
                    let (b, rest) = (i / (ch * px), i % (ch * px));
                    let (c, p) = (rest / px, rest % px);
                    (b * px + p) * n + c
                }
                None => i,
            }
        };
        let len = gemm.m * n;
        let bias = |g: usize| low.bias[g % n] as i128;
        let exact: Vec<i128> = (0..len).map(|i| gemm.exact[index(i)] as i128 + bias(index(i))).collect();
        let acc: Vec<i128> = (0..len).map(|i| gemm.acc_value(index(i)) + bias(index(i))).collect();
        let codes: Vec<i64> = if low.logits {
            acc.iter().map(|&v| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64).collect()
        } else {
            (0..len).map(|i| gemm.out[index(i)]).collect()
        };
        x = codes.iter().map(|&c| c as i32).collect();
        out.codes.push(codes);
        out.exact.push(exact);
        out.acc.push(acc);
        out.stats.push(gemm.stats);
    }
    Ok(out)
}

/// Per-layer results of running every sample: flat arrays in sample order.
struct Raw {
    cdc: Option<CdcTotals>,
    lowered: Vec<Lowered>,
    stats: Vec<Stats>,
    codes: Vec<Vec<i64>>,
    exact: Vec<Vec<i128>>,
    acc: Vec<Vec<i128>>,
}

fn run_all(
    model: &Model,
    data: &Dataset,
    hw: &HwConfig,
    opts: &RunOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Raw> {
    if opts.batch == 0 {
        return Err(Error::field("batch", 0, "1.."));
    }
    let lowered = lower(model, hw)?;
    let in_len = model.input().len();
    let mut inputs = Vec::with_capacity(data.len());
    for s in 0..data.len() {
        inputs.push(model.input_codes(data.image(s)).map_err(|e| e.context(format!("sample {s}")))?);
    }
    let starts: Vec<usize> = (0..data.len()).step_by(opts.batch).collect();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let batches: Vec<Result<(BatchOut, Option<CdcTotals>)>> = starts
        .par_iter()
        .map(|&s0| {
            let s1 = (s0 + opts.batch).min(data.len());
            let mut x = Vec::with_capacity((s1 - s0) * in_len);
            for inp in &inputs[s0..s1] {
                x.extend_from_slice(inp);
            }
            let r = match hw.cdc() {
                None => run_batch(model, &lowered, hw, x, s1 - s0, opts.engine).map(|b| (b, None)),
                Some(c) => run_batch_cdc(model, &lowered, hw, &c, x, s1 - s0, opts.engine),
            };
            let n = done.fetch_add(s1 - s0, std::sync::atomic::Ordering::Relaxed) + (s1 - s0);
            progress(n);
            r
        })
        .collect();
    // Merge in sample order (deterministic whatever the scheduling).
    let n_layers = model.layers().len();
    let mut stats: Vec<Stats> = vec![Stats::default(); n_layers];
    let mut codes: Vec<Vec<i64>> = vec![Vec::new(); n_layers];
    let mut exact: Vec<Vec<i128>> = vec![Vec::new(); n_layers];
    let mut acc: Vec<Vec<i128>> = vec![Vec::new(); n_layers];
    let mut cdc: Option<CdcTotals> = None;
    for b in batches {
        let (b, c) = b?;
        if let Some(c) = c {
            cdc.get_or_insert_with(CdcTotals::default).merge(&c);
        }
        for l in 0..n_layers {
            stats[l].merge(&b.stats[l]);
            codes[l].extend_from_slice(&b.codes[l]);
            exact[l].extend_from_slice(&b.exact[l]);
            acc[l].extend_from_slice(&b.acc[l]);
        }
    }
    Ok(Raw { lowered, stats, codes, exact, acc, cdc })
}

/// Totals of the clock-domain crossings of a run (`docs/datapath.md`,
/// "Clock domains"): every inference moves its input codes host -> array
/// through the input FIFO, computes, and moves its logits array -> host
/// through the output FIFO; the three phases run back to back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CdcTotals {
    /// Inferences (batches) run.
    pub batches: u64,
    /// Words through the input / output FIFO.
    pub words_in: u64,
    pub words_out: u64,
    /// Time of all batches back to back (ps).
    pub time_ps: u64,
    /// Array-domain and host-domain clock cycles in that time.
    pub array_cycles: u64,
    pub host_cycles: u64,
    /// Array cycles spent computing (the single-clock cycle count).
    pub compute_cycles: u64,
    /// Input FIFO: host edges blocked by wfull, array edges waiting on rempty.
    pub in_write_stalls: u64,
    pub in_read_stalls: u64,
    /// Output FIFO: array edges blocked by wfull, host edges waiting on rempty.
    pub out_write_stalls: u64,
    pub out_read_stalls: u64,
    /// Occupancy histograms (`[k]` = edges after which k words were unread).
    pub in_occupancy: Vec<u64>,
    pub out_occupancy: Vec<u64>,
}

impl CdcTotals {
    /// The totals of one input crossing, `compute` array cycles, and one
    /// output crossing, back to back.
    fn of(
        cdc: &crate::hw::CdcConfig,
        t_array: u64,
        tin: &crate::cdc::TransferReport,
        compute: u64,
        tout: &crate::cdc::TransferReport,
    ) -> CdcTotals {
        let end_in = tin.pop_time_ps.last().copied().unwrap_or(0);
        let end_out = tout.pop_time_ps.last().copied().unwrap_or(0);
        let time_ps = end_in + compute * t_array + end_out;
        CdcTotals {
            batches: 1,
            words_in: tin.popped.len() as u64,
            words_out: tout.popped.len() as u64,
            time_ps,
            array_cycles: time_ps.div_ceil(t_array),
            host_cycles: time_ps.div_ceil(cdc.host_period_ps),
            compute_cycles: compute,
            in_write_stalls: tin.write_stalls,
            in_read_stalls: tin.read_stalls,
            out_write_stalls: tout.write_stalls,
            out_read_stalls: tout.read_stalls,
            in_occupancy: tin.occupancy.clone(),
            out_occupancy: tout.occupancy.clone(),
        }
    }

    fn merge(&mut self, o: &CdcTotals) {
        self.batches += o.batches;
        self.words_in += o.words_in;
        self.words_out += o.words_out;
        self.time_ps += o.time_ps;
        self.array_cycles += o.array_cycles;
        self.host_cycles += o.host_cycles;
        self.compute_cycles += o.compute_cycles;
        self.in_write_stalls += o.in_write_stalls;
        self.in_read_stalls += o.in_read_stalls;
        self.out_write_stalls += o.out_write_stalls;
        self.out_read_stalls += o.out_read_stalls;
        add_hist(&mut self.in_occupancy, &o.in_occupancy);
        add_hist(&mut self.out_occupancy, &o.out_occupancy);
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

/// One batch with the array in its own clock domain: the input codes cross
/// host -> array through an async FIFO (host writes every host edge, the
/// array reads every array edge while words remain), the layers compute, and
/// the logits cross array -> host (the array offers one per array edge, the
/// host reads greedily). The words that come out of each FIFO are the ones
/// used downstream, so a crossing that lost, duplicated or reordered a word
/// would change the results; with a correct FIFO they are bit-identical to
/// the single-clock run.
#[allow(clippy::too_many_arguments)]
fn run_batch_cdc(
    model: &Model,
    lowered: &[Lowered],
    hw: &HwConfig,
    cdc_cfg: &crate::hw::CdcConfig,
    input: Vec<i32>,
    batch: usize,
    engine: Engine,
) -> Result<(BatchOut, Option<CdcTotals>)> {
    let a_fmt = hw.activations();
    let t_array = hw.clock_period_ps();
    // Host -> array: activation codes as two's-complement words.
    let words: Vec<u64> = input.iter().map(|&c| a_fmt.to_bits(c as i128)).collect();
    let tin = cross_domain(cdc_cfg, t_array, &words, a_fmt.width(), true)?;
    let crossed: Vec<i32> = tin.popped.iter().map(|&w| a_fmt.from_bits(w) as i32).collect();
    let mut out = run_batch(model, lowered, hw, crossed, batch, engine)?;
    let compute: u64 = out.stats.iter().map(|s| s.cycles).sum();
    // Array -> host: the logits, as 64-bit two's-complement words.
    let last = out.codes.len() - 1;
    let w64 = crate::numerics::IntFormat::signed(64)?;
    let words: Vec<u64> = out.codes[last].iter().map(|&c| w64.to_bits(c as i128)).collect();
    let tout = cross_domain(cdc_cfg, t_array, &words, 64, false)?;
    out.codes[last] = tout.popped.iter().map(|&w| w64.from_bits(w) as i64).collect();
    let totals = CdcTotals::of(cdc_cfg, t_array, &tin, compute, &tout);
    Ok((out, Some(totals)))
}

/// Move `words` (each `width` bits) across one of the datapath's async FIFOs
/// (`cdc` depth and synchronizer stages): host -> array when `to_array`,
/// else array -> host. The producer offers a word at every edge of its
/// domain while words remain, the consumer takes one at every edge of its
/// domain; the FIFO starts from reset with both clocks at phase 0.
pub fn cross_domain(
    cdc: &crate::hw::CdcConfig,
    array_period_ps: u64,
    words: &[u64],
    width: u32,
    to_array: bool,
) -> Result<crate::cdc::TransferReport> {
    use crate::cdc::{transfer, ClockPair, FifoSpec, Pattern};
    let fifo = FifoSpec {
        depth: cdc.fifo_depth as u64,
        sync: cdc.sync_stages,
        data_width: width,
        ..FifoSpec::default()
    }
    .validate()?;
    let clocks = if to_array {
        ClockPair::new(cdc.host_period_ps, array_period_ps)
    } else {
        ClockPair::new(array_period_ps, cdc.host_period_ps)
    };
    transfer(&fifo, &clocks, words, &Pattern::Always, &Pattern::Always)
}

/// A GEMM with the array in its own clock domain (`hw` must have a `cdc`
/// section): A's codes cross host -> array, the GEMM runs, and the results
/// cross array -> host (the requantized codes at the output width, or the
/// accumulator values `acc * 2^d` as 64-bit words when `stage_acc`). The
/// crossed values replace the GEMM's own, so the returned result is what the
/// host received; with a correct FIFO it equals the single-clock GEMM.
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
    let words: Vec<u64> = a.data().iter().map(|&c| a_fmt.to_bits(c as i128)).collect();
    let tin = cross_domain(&cdc, t_array, &words, a_fmt.width(), true)?;
    let crossed: Vec<i32> = tin.popped.iter().map(|&v| a_fmt.from_bits(v) as i32).collect();
    let a2 = Matrix::new(a.rows(), a.cols(), crossed)?;
    let mut res = layers::run_gemm_traced(hw, &a2, w, bias, requant, engine, trace)?;
    let compute = res.stats.cycles;
    let tout = if stage_acc {
        let w64 = IntFormat::signed(64)?;
        let words: Vec<u64> = res.acc.iter().map(|&v| w64.to_bits(v as i128)).collect();
        let t = cross_domain(&cdc, t_array, &words, 64, false)?;
        res.acc = t.popped.iter().map(|&v| w64.from_bits(v) as i64).collect();
        t
    } else {
        let f = requant.out_format();
        let words: Vec<u64> = res.out.iter().map(|&v| f.to_bits(v as i128)).collect();
        let t = cross_domain(&cdc, t_array, &words, f.width(), false)?;
        res.out = t.popped.iter().map(|&v| f.from_bits(v) as i64).collect();
        t
    };
    Ok((res, CdcTotals::of(&cdc, t_array, &tin, compute, &tout)))
}

impl CdcTotals {
    /// A one-paragraph text summary (cycles per domain, stalls, occupancy).
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
        format!(
            "clock domains: host {} ps, array {array_period_ps} ps; async FIFOs depth {}, {} sync stages\n  array domain: {} cycles ({} computing), host domain: {} cycles, {:.3} us\n  input FIFO (host->array): {} words, {} host stall edges (full), {} array wait edges (empty), occupancy {}\n  output FIFO (array->host): {} words, {} array stall edges (full), {} host wait edges (empty), occupancy {}",
            cdc.host_period_ps,
            cdc.fifo_depth,
            cdc.sync_stages,
            self.array_cycles,
            self.compute_cycles,
            self.host_cycles,
            self.time_ps as f64 / 1e6,
            self.words_in,
            self.in_write_stalls,
            self.in_read_stalls,
            occ(&self.in_occupancy),
            self.words_out,
            self.out_write_stalls,
            self.out_read_stalls,
            occ(&self.out_occupancy),
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
    let raw = run_all(model, data, hw, &opts, &|_| {})?;
    let n = data.len();
    Ok(ModelTrace {
        acc: per_sample(&raw.acc, n),
        exact: per_sample(&raw.exact, n),
        codes: per_sample(&raw.codes, n),
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
    let Raw { lowered, stats: per_layer, codes, exact, acc, cdc } = run_all(model, data, hw, opts, progress)?;
    let n_layers = model.layers().len();
    let classes = model.num_classes();
    let logits = &codes[n_layers - 1];
    let predictions: Vec<usize> =
        (0..data.len()).map(|s| argmax(&logits[s * classes..(s + 1) * classes]).unwrap_or(0)).collect();
    let correct = predictions.iter().zip(data.labels()).filter(|(p, &l)| **p == l as usize).count();

    let mut layers_out = Vec::with_capacity(n_layers);
    let mut total = Stats::default();
    for (l, layer) in model.layers().iter().enumerate() {
        let st = per_layer[l].clone();
        total.merge(&st);
        let pe = (hw.rows() * hw.cols()) as f64;
        let utilization = if st.cycles == 0 { 0.0 } else { st.macs as f64 / (st.cycles as f64 * pe) };
        let (gm, gk, gn) = layer.gemm_dims();
        let (mut max_diff, mut differing) = (None, None);
        if let Some(r) = reference {
            if lowered[l].logits {
                let scale = lowered[l].real_scale;
                let mut m = 0f64;
                for (s, row) in r.fake_quant.logits.iter().enumerate() {
                    for (j, &fq) in row.iter().enumerate() {
                        let int = codes[l][s * classes + j] as f64;
                        m = m.max((int - fq as f64 / scale).abs());
                    }
                }
                max_diff = Some(m);
            } else if let Some(h) = r.fake_quant.hidden_codes.iter().find(|h| h.layer == layer.name()) {
                let len = layer.output_len();
                let (mut m, mut cnt) = (0i64, 0u64);
                for (s, row) in h.codes.iter().enumerate() {
                    for (j, &fq) in row.iter().enumerate() {
                        let d = (codes[l][s * len + j] - fq as i64).abs();
                        m = m.max(d);
                        cnt += (d != 0) as u64;
                    }
                }
                max_diff = Some(m as f64);
                differing = Some(cnt);
            }
        }
        layers_out.push(LayerReport {
            name: layer.name().to_string(),
            kind: layer.kind(),
            gemm: (gm * opts.batch.min(data.len().max(1)), gk, gn),
            stats: st,
            utilization,
            max_diff_vs_fake_quant: max_diff,
            codes_differing: differing,
            multiplier: (!lowered[l].logits).then(|| lowered[l].requant.multiplier()),
        });
    }

    let (mut agree, mut flips_total, mut flips) = (None, 0, Vec::new());
    if let Some(r) = reference {
        let float_bias: Vec<bool> = (0..n_layers)
            .map(|l| fq_used_float_bias(&model.layers()[l], &lowered[l], r, &exact[l]))
            .collect();
        let fq = &r.fake_quant.predictions;
        let mut a = 0;
        for s in 0..data.len() {
            if predictions[s] == fq[s] {
                a += 1;
                continue;
            }
            flips_total += 1;
            if flips.len() < opts.max_explain {
                flips.push(explain(
                    model,
                    &lowered,
                    &float_bias,
                    r,
                    &codes,
                    &exact,
                    &acc,
                    s,
                    predictions[s],
                    data.label(s),
                ));
            }
        }
        agree = Some(a);
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
    codes: &[Vec<i64>],
    exact: &[Vec<i128>],
    acc: &[Vec<i128>],
    s: usize,
    int_pred: usize,
    label: u32,
) -> Flip {
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
        let base = s * layer.output_len();
        if lowered[l].logits {
            // Every hidden layer matched: the final accumulation decided.
            // Report the logit that moved most against fake-quant.
            let row = &r.fake_quant.logits[s];
            let scale = lowered[l].real_scale;
            let (mut best, mut bd) = (0, -1f64);
            for (j, &f) in row.iter().enumerate() {
                let d = (codes[l][base + j] as f64 - f as f64 / scale).abs();
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
                let with_float = |j: usize| exact[l][base + j] as f64 - d(j);
                let (a, b) = (with_float(int_pred), with_float(fq_pred));
                let fq_wins = b > a || (b == a && fq_pred < int_pred);
                if fq_wins && acc[l][base + int_pred] == exact[l][base + int_pred] {
                    let why = format!(
                        "logits differ: integer logit[{int_pred}]={} vs logit[{fq_pred}]={}; the float bias was rounded to \
                         int32 (moving logit[{int_pred}] by {:+.4} and logit[{fq_pred}] by {:+.4} accumulator units): with \
                         the float bias the exact logits are {a:.4} vs {b:.4}, as fake-quant orders them",
                        codes[l][base + int_pred],
                        codes[l][base + fq_pred],
                        d(int_pred),
                        d(fq_pred),
                    );
                    return flip(layer.name(), why);
                }
            }
            let why = format!(
                "logits differ: integer logit[{int_pred}]={} vs logit[{fq_pred}]={}; fake-quant logits {:.4} vs {:.4}; \
                 hidden layers all match, so the final accumulation decided ({})",
                codes[l][base + int_pred],
                codes[l][base + fq_pred],
                row[int_pred],
                row[fq_pred],
                cause(exact[l][base + best], acc[l][base + best], None)
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
            let d = (codes[l][base + j] - f as i64).abs();
            if d > 0 && best.is_none_or(|(_, bd)| d > bd) {
                best = Some((j, d));
            }
        }
        let Some((j, _)) = best else { continue };
        let (int, fq) = (codes[l][base + j], row[j] as i64);
        if float_bias[l] && acc[l][base + j] == exact[l][base + j] {
            let rq = &lowered[l].requant;
            let o = layer.channel_of(j);
            let d = layer.bias_rounding(o).unwrap_or(0.0);
            let m = rq.real_multiplier();
            let (v, vf) = (m * exact[l][base + j] as f64, m * (exact[l][base + j] as f64 - d));
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
            cause(exact[l][base + j], acc[l][base + j], Some((&lowered[l].requant, int)))
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

/// Whether the fake-quant forward of this layer evidently added the float
/// bias `b` (not the int32 bias `bias_int`): the layer records `bias_float`
/// with a non-zero rounding, and over every sample and element the exact
/// values with the float bias (`exact - rounding`) match the fake-quant
/// results better than with the int32 bias: hidden layers count the
/// elements whose nearest code equals the fake-quant code; the last layer
/// sums `|fake-quant logit / (s_w*s_a) - value|`. (The files do not record
/// which bias the fake-quant forward used: the shipped models were trained
/// with the bias fake-quantized onto the accumulator grid, so for them the
/// int32 bias wins and no flip is blamed on the bias.)
fn fq_used_float_bias(layer: &Layer, low: &Lowered, r: &Reference, exact: &[i128]) -> bool {
    let n = layer.out_channels();
    let d: Vec<f64> = (0..n).map(|o| layer.bias_rounding(o).unwrap_or(0.0)).collect();
    if d.iter().all(|&x| x == 0.0) {
        return false;
    }
    let len = layer.output_len();
    if low.logits {
        let (mut e_int, mut e_flt) = (0f64, 0f64);
        for (s, row) in r.fake_quant.logits.iter().enumerate() {
            for (j, &f) in row.iter().enumerate() {
                let (fq, x) = (f as f64 / low.real_scale, exact[s * len + j] as f64);
                e_int += (fq - x).abs();
                e_flt += (fq - (x - d[j])).abs();
            }
        }
        return e_flt < e_int;
    }
    let Some(h) = r.fake_quant.hidden_codes.iter().find(|h| h.layer == layer.name()) else {
        return false;
    };
    let m = low.requant.real_multiplier();
    let (mut n_int, mut n_flt) = (0u64, 0u64);
    for (s, row) in h.codes.iter().enumerate() {
        for (j, &f) in row.iter().enumerate() {
            let x = exact[s * len + j] as f64;
            n_int += u64::from(nearest_code(&low.requant, m * x) == f as i64);
            n_flt += u64::from(nearest_code(&low.requant, m * (x - d[layer.channel_of(j)])) == f as i64);
        }
    }
    n_flt > n_int
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
