//! `gemm` and `conv2d`: layers through the datapath (`crate::layers`) on the
//! hardware config given with `--hw` (docs/datapath.md is normative for the
//! arithmetic and the timing).
//!
//! Both engines run (cycle-level, with its per-cycle trace, and fast); a
//! disagreement is a bitmac bug (internal error), never a vector.
//!
//! Files (gemm): `a` (input, `M x K`, the hardware's activation format),
//! `w` (weight, `K x N`), `bias` (param, `i32`, `N`, when given), `acc`
//! (accumulator, `M x N`: the final psum-buffer contents, P-bit values in
//! units of `2^d`), `out` (output, `M x N`, requantized codes), `exact`
//! (accumulator, `i64`, `M x N`: the exact integer GEMM without overflow or
//! rounding), `mult` (param, `i32`, `[m0, shift]`), `acc.stream` (the
//! cycle of each output's final psum-buffer writeback and the stored
//! value), optionally `array.trace` (the cycle engine's trace), and
//! `stats.json` (the datapath statistics).
//!
//! conv2d: `x` (input, NCHW) and `w` (weight, OIHW) instead of `a`/`w`;
//! `acc`, `exact` and `acc.stream` are in im2col GEMM order (row
//! `(b*OH + oy)*OW + ox`, column = output channel); `out` is NCHW.

use super::super::case::check_size;
use super::super::data::{rng, IntGen, IntGenSpec};
use super::super::files::{Artifact, Role, Stream, Tensor, Text};
use super::KindOutput;
use crate::array::{compute_cycles, Engine, Matrix};
use crate::error::{Error, Result};
use crate::hw::HwConfig;
use crate::layers::{conv2d, run_gemm_traced, Conv2d, GemmResult};
use crate::numerics::IntFormat;
use crate::requant::{step_multiplier, Requantizer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest tensor a vector case may hold (elements), to keep suites small.
const MAX_ELEMS: usize = 1 << 16;

/// Case JSON of kind `gemm`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GemmCase {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub seed: u64,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    #[serde(default)]
    pub a_data: IntGenSpec,
    #[serde(default)]
    pub w_data: IntGenSpec,
    /// int32 bias per output column (drawn with this generator; absent: no bias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<IntGenSpec>,
    /// LSQ steps giving the requant multiplier `s_w * s_a / s_out`.
    pub s_a: f32,
    pub s_w: f32,
    pub s_out: f32,
    /// Also write the cycle engine's per-cycle trace (`array.trace`).
    #[serde(default)]
    pub trace: bool,
}

/// Case JSON of kind `conv2d`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2dCase {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub seed: u64,
    pub batch: usize,
    pub in_ch: usize,
    pub height: usize,
    pub width: usize,
    pub out_ch: usize,
    pub kh: usize,
    pub kw: usize,
    /// `[vertical, horizontal]`, default `[1, 1]`.
    #[serde(default = "ones")]
    pub stride: [usize; 2],
    /// `[top/bottom, left/right]` zero padding, default `[0, 0]`.
    #[serde(default)]
    pub padding: [usize; 2],
    #[serde(default)]
    pub x_data: IntGenSpec,
    #[serde(default)]
    pub w_data: IntGenSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<IntGenSpec>,
    pub s_a: f32,
    pub s_w: f32,
    pub s_out: f32,
    #[serde(default)]
    pub trace: bool,
}

fn ones() -> [usize; 2] {
    [1, 1]
}

const STREAM_A: u64 = 0;
const STREAM_W: u64 = 1;
const STREAM_BIAS: u64 = 2;

fn requantizer(hw: &HwConfig, s_a: f32, s_w: f32, s_out: f32) -> Result<Requantizer> {
    for (f, v) in [("s_a", s_a), ("s_w", s_w), ("s_out", s_out)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(Error::field(f, v, "finite and > 0"));
        }
    }
    let mult = step_multiplier(s_w, s_a, s_out)?;
    let rq = hw.requant();
    Requantizer::new(mult, rq.rounding, rq.out, rq.relu)
}

fn check_elems(field: &str, n: impl Into<u128>) -> Result<()> {
    let n: u128 = n.into();
    if n > MAX_ELEMS as u128 {
        return Err(Error::field(
            field,
            format!("{n} elements"),
            format!("at most {MAX_ELEMS} (vector cases are kept small)"),
        ));
    }
    Ok(())
}

/// Refuse a case whose cycle-engine run or array trace would exceed the
/// vector-case limits of `docs/limits.md` (estimated from the shape with
/// [`compute_cycles`], before anything is drawn or run).
fn check_gen_work(hw: &HwConfig, m: usize, k: usize, n: usize, field: &str) -> Result<()> {
    use crate::limits::{check, trace_bytes_bound, GEN_MAX_PE_STEPS, GEN_MAX_TRACE_BYTES};
    let (r, cols) = (hw.rows(), hw.cols());
    let cycles = compute_cycles(hw.dataflow(), r, cols, m, k, n);
    let steps = cycles as u128 * r as u128 * cols as u128;
    let hint = Some("vector cases are kept small: use a smaller shape or a larger array");
    check(
        &format!("{field} (cycles x rows x cols on {r}x{cols})"),
        steps,
        GEN_MAX_PE_STEPS,
        "PE-steps",
        hint,
    )?;
    check(
        &format!("{field} (array trace)"),
        trace_bytes_bound(cycles, r, cols),
        GEN_MAX_TRACE_BYTES,
        "bytes",
        hint,
    )
}

fn draw_bias(spec: &Option<IntGenSpec>, n: usize, seed: u64) -> Result<Option<Vec<i32>>> {
    let Some(spec) = spec else { return Ok(None) };
    let f = IntFormat::signed(32)?;
    let v = IntGen::new(spec, f, "bias", n)?.draw(&mut rng(seed, STREAM_BIAS), n);
    Ok(Some(v.into_iter().map(|x| x as i32).collect()))
}

/// `(cycle, row, col, stored value)` of every psum-buffer writeback in a
/// cycle-engine trace (`wb=COL:ROW,COL:S>STORED;...` fields).
fn writebacks(trace: &str) -> Result<Vec<(u64, usize, usize, i64)>> {
    let bad = |l: &str| Error::internal(format!("datapath trace line not understood: {l}"));
    let mut out = Vec::new();
    for l in trace.lines() {
        if l.starts_with('#') || l.trim().is_empty() {
            continue;
        }
        let mut tok = l.split_whitespace();
        let cycle: u64 = tok.next().and_then(|c| c.parse().ok()).ok_or_else(|| bad(l))?;
        for t in tok {
            let Some(list) = t.strip_prefix("wb=") else { continue };
            for e in list.split(';') {
                // COL:ROW,COL:S>STORED
                let mut parts = e.splitn(3, ':');
                let _arr_col = parts.next().ok_or_else(|| bad(l))?;
                let rc = parts.next().ok_or_else(|| bad(l))?;
                let sv = parts.next().ok_or_else(|| bad(l))?;
                let (r, c) = rc.split_once(',').ok_or_else(|| bad(l))?;
                let (_, stored) = sv.split_once('>').ok_or_else(|| bad(l))?;
                out.push((
                    cycle,
                    r.parse().map_err(|_| bad(l))?,
                    c.parse().map_err(|_| bad(l))?,
                    stored.parse().map_err(|_| bad(l))?,
                ));
            }
        }
    }
    Ok(out)
}

/// The stream: each output's final writeback, in cycle order (ties in
/// trace order). Checks it against the final buffer contents.
fn final_stream(trace: &str, res: &GemmResult) -> Result<Vec<(u64, i128)>> {
    let wbs = writebacks(trace)?;
    let mut last: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (i, &(_, r, c, _)) in wbs.iter().enumerate() {
        last.insert((r, c), i);
    }
    if last.len() != res.m * res.n {
        return Err(Error::internal(format!(
            "datapath trace has final writebacks for {} of {} outputs",
            last.len(),
            res.m * res.n
        )));
    }
    let mut idx: Vec<usize> = last.values().copied().collect();
    idx.sort_unstable();
    let mut out = Vec::with_capacity(idx.len());
    for i in idx {
        let (cy, r, c, v) = wbs[i];
        if res.acc[r * res.n + c] != v {
            return Err(Error::internal(format!(
                "datapath trace: final writeback of ({r},{c}) differs from the buffer"
            )));
        }
        out.push((cy, i128::from(v)));
    }
    Ok(out)
}

/// Run the cycle engine (traced) and the fast engine; they must agree.
fn both_engines(
    run: impl Fn(Engine, Option<&mut String>) -> Result<GemmResult>,
) -> Result<(GemmResult, String)> {
    let mut trace = String::new();
    let cyc = run(Engine::Cycle, Some(&mut trace))?;
    let fast = run(Engine::Fast, None)?;
    if cyc.acc != fast.acc || cyc.out != fast.out || cyc.stats.to_json() != fast.stats.to_json() {
        return Err(Error::internal("the cycle and fast engines disagree on this case"));
    }
    Ok((cyc, trace))
}

#[allow(clippy::too_many_arguments)]
fn outputs(
    hw: &HwConfig,
    out_fmt: IntFormat,
    mult: crate::requant::Multiplier,
    res: &GemmResult,
    trace: String,
    keep_trace: bool,
    out_shape: &[usize],
    out_codes: Option<Vec<i64>>,
    out: &mut KindOutput,
) -> Result<()> {
    let (m, n) = (res.m, res.n);
    let pfmt = IntFormat::signed(hw.acc_bits())?;
    let i64f = IntFormat::signed(64)?;
    let acc: Vec<i128> = res.acc.iter().map(|&v| i128::from(v)).collect();
    out.artifacts.push(Artifact::Tensor(Tensor::int("acc", Role::Accumulator, &[m, n], pfmt, acc)));
    if let Some(codes) = &out_codes {
        let codes = codes.iter().map(|&v| i128::from(v)).collect();
        out.artifacts.push(Artifact::Tensor(Tensor::int("out", Role::Output, out_shape, out_fmt, codes)));
    }
    let exact = res.exact.iter().map(|&v| i128::from(v)).collect();
    out.artifacts.push(Artifact::Tensor(Tensor::int("exact", Role::Accumulator, &[m, n], i64f, exact)));
    if out_codes.is_some() {
        out.artifacts.push(Artifact::Tensor(Tensor::int(
            "mult",
            Role::Param,
            &[2],
            IntFormat::signed(32)?,
            vec![i128::from(mult.m0), i128::from(mult.shift)],
        )));
    }
    let stream = final_stream(&trace, res)?;
    out.artifacts.push(Artifact::Stream(Stream {
        name: "acc".into(),
        role: Role::Accumulator,
        fmt: pfmt,
        entries: stream,
    }));
    if keep_trace {
        out.artifacts.push(Artifact::Text(Text {
            file: "array.trace".into(),
            role: Role::Trace,
            encoding: "datapath-trace".into(),
            tensor: "array".into(),
            bytes: trace.into_bytes(),
        }));
    }
    let stats: serde_json::Value = serde_json::from_str(&res.stats.to_json())
        .map_err(|e| Error::internal(format!("datapath stats JSON: {e}")))?;
    if let serde_json::Value::Object(map) = stats {
        for (k, v) in map {
            out.stats.insert(k, v);
        }
    }
    if out_codes.is_some() {
        out.stats.insert("m0".into(), serde_json::json!(mult.m0));
        out.stats.insert("shift".into(), serde_json::json!(mult.shift));
    }
    Ok(())
}

pub(crate) fn generate_gemm(c: &GemmCase, hw: &HwConfig) -> Result<KindOutput> {
    check_size("m", c.m, 1, 4096)?;
    check_size("k", c.k, 1, 4096)?;
    check_size("n", c.n, 1, 4096)?;
    check_elems("m*k", (c.m * c.k) as u64)?;
    check_elems("k*n", (c.k * c.n) as u64)?;
    check_elems("m*n", (c.m * c.n) as u64)?;
    check_gen_work(hw, c.m, c.k, c.n, "m, k, n")?;
    let rq = requantizer(hw, c.s_a, c.s_w, c.s_out)?;
    let (fa, fw) = (hw.activations(), hw.weights());
    let a = IntGen::new(&c.a_data, fa, "a_data", c.m * c.k)?.draw(&mut rng(c.seed, STREAM_A), c.m * c.k);
    let w = IntGen::new(&c.w_data, fw, "w_data", c.k * c.n)?.draw(&mut rng(c.seed, STREAM_W), c.k * c.n);
    let bias = draw_bias(&c.bias, c.n, c.seed)?;
    let am = Matrix::new(c.m, c.k, a.iter().map(|&v| v as i32).collect())?;
    let wm = Matrix::new(c.k, c.n, w.iter().map(|&v| v as i32).collect())?;
    let (res, trace) = both_engines(|e, t| run_gemm_traced(hw, &am, &wm, bias.as_deref(), &rq, e, t))?;
    let mut out = KindOutput::default();
    out.artifacts.push(Artifact::Tensor(Tensor::int("a", Role::Input, &[c.m, c.k], fa, a)));
    out.artifacts.push(Artifact::Tensor(Tensor::int("w", Role::Weight, &[c.k, c.n], fw, w)));
    if let Some(b) = &bias {
        let v = b.iter().map(|&x| i128::from(x)).collect();
        out.artifacts.push(Artifact::Tensor(Tensor::int(
            "bias",
            Role::Param,
            &[c.n],
            IntFormat::signed(32)?,
            v,
        )));
    }
    let codes = res.out.clone();
    outputs(hw, rq.out_format(), rq.multiplier(), &res, trace, c.trace, &[c.m, c.n], Some(codes), &mut out)?;
    Ok(out)
}

pub(crate) fn generate_conv2d(c: &Conv2dCase, hw: &HwConfig) -> Result<KindOutput> {
    for (f, v) in [
        ("batch", c.batch),
        ("in_ch", c.in_ch),
        ("height", c.height),
        ("width", c.width),
        ("out_ch", c.out_ch),
        ("kh", c.kh),
        ("kw", c.kw),
    ] {
        check_size(f, v, 1, 4096)?;
    }
    check_size("stride[0]", c.stride[0], 1, 64)?;
    check_size("stride[1]", c.stride[1], 1, 64)?;
    check_size("padding[0]", c.padding[0], 0, 64)?;
    check_size("padding[1]", c.padding[1], 0, 64)?;
    let shape = Conv2d {
        batch: c.batch,
        in_ch: c.in_ch,
        height: c.height,
        width: c.width,
        out_ch: c.out_ch,
        kh: c.kh,
        kw: c.kw,
        stride: (c.stride[0], c.stride[1]),
        padding: (c.padding[0], c.padding[1]),
    };
    let (oh, ow) = shape.out_hw()?;
    // Products in u128: six factors of up to 2^13 overflow usize.
    let p = |v: &[usize]| v.iter().fold(1u128, |a, &x| a * x as u128);
    check_elems("x", p(&[c.batch, c.in_ch, c.height, c.width]))?;
    check_elems("w", p(&[c.out_ch, c.in_ch, c.kh, c.kw]))?;
    check_elems("output", p(&[c.batch, c.out_ch, oh, ow]))?;
    check_elems("im2col", p(&[c.batch, oh, ow, c.in_ch, c.kh, c.kw]))?;
    // Within the element limits these products fit usize.
    let nx = c.batch * c.in_ch * c.height * c.width;
    let nw = c.out_ch * c.in_ch * c.kh * c.kw;
    // The cycle engine runs twice (conv2d and its traced im2col GEMM).
    check_gen_work(hw, c.batch * oh * ow, c.in_ch * c.kh * c.kw, c.out_ch, "conv2d shape")?;
    let rq = requantizer(hw, c.s_a, c.s_w, c.s_out)?;
    let (fa, fw) = (hw.activations(), hw.weights());
    let x = IntGen::new(&c.x_data, fa, "x_data", nx)?.draw(&mut rng(c.seed, STREAM_A), nx);
    let w = IntGen::new(&c.w_data, fw, "w_data", nw)?.draw(&mut rng(c.seed, STREAM_W), nw);
    let bias = draw_bias(&c.bias, c.out_ch, c.seed)?;
    let xi: Vec<i32> = x.iter().map(|&v| v as i32).collect();
    let wi: Vec<i32> = w.iter().map(|&v| v as i32).collect();
    let cyc = conv2d(hw, &shape, &xi, &wi, bias.as_deref(), &rq, Engine::Cycle)?;
    let fast = conv2d(hw, &shape, &xi, &wi, bias.as_deref(), &rq, Engine::Fast)?;
    if cyc != fast {
        return Err(Error::internal("the cycle and fast engines disagree on this conv2d case"));
    }
    // conv2d has no traced variant: trace the GEMM it lowers to (the same
    // operands, checked to give the same result) for the stream.
    let (am, wm) = crate::layers::im2col(&shape, &xi, &wi)?;
    let mut trace = String::new();
    let g = run_gemm_traced(hw, &am, &wm, bias.as_deref(), &rq, Engine::Cycle, Some(&mut trace))?;
    if g != cyc.gemm {
        return Err(Error::internal("conv2d and its im2col GEMM disagree"));
    }
    let (res, nchw) = (cyc.gemm, cyc.out);
    let mut out = KindOutput::default();
    out.artifacts.push(Artifact::Tensor(Tensor::int(
        "x",
        Role::Input,
        &[c.batch, c.in_ch, c.height, c.width],
        fa,
        x,
    )));
    out.artifacts.push(Artifact::Tensor(Tensor::int(
        "w",
        Role::Weight,
        &[c.out_ch, c.in_ch, c.kh, c.kw],
        fw,
        w,
    )));
    if let Some(b) = &bias {
        let v = b.iter().map(|&x| i128::from(x)).collect();
        out.artifacts.push(Artifact::Tensor(Tensor::int(
            "bias",
            Role::Param,
            &[c.out_ch],
            IntFormat::signed(32)?,
            v,
        )));
    }
    outputs(
        hw,
        rq.out_format(),
        rq.multiplier(),
        &res,
        trace,
        c.trace,
        &[c.batch, c.out_ch, oh, ow],
        Some(nchw),
        &mut out,
    )?;
    Ok(out)
}

/// Case JSON of kind `model_layer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelLayerCase {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Recorded for uniformity; nothing is drawn (the data are shipped).
    #[serde(default)]
    pub seed: u64,
    /// `default`: the embedded default model and its test split.
    pub model: String,
    /// Layer name, e.g. `conv1`.
    pub layer: String,
    /// 0-based indices into the shipped test split (1..=64 of them): the batch.
    pub samples: Vec<usize>,
    #[serde(default)]
    pub trace: bool,
}

pub(crate) fn generate_model_layer(c: &ModelLayerCase, hw: &HwConfig) -> Result<KindOutput> {
    use crate::graph::run::{lower, run_array_group, Lowered};
    use crate::model::{default_model, default_test_data, reference_trace};
    if c.model != "default" {
        return Err(Error::field(
            "model",
            format!("{:?}", c.model),
            "\"default\" (the embedded default model)",
        ));
    }
    let model = default_model()?;
    let data = default_test_data()?;
    let (l, layer) =
        model.layers().iter().enumerate().find(|(_, x)| x.name() == c.layer).ok_or_else(|| {
            let names: Vec<&str> = model.layers().iter().map(|x| x.name()).collect();
            Error::field("layer", format!("{:?}", c.layer), names.join(", "))
        })?;
    check_size("samples (count)", c.samples.len(), 1, 64)?;
    let batch = c.samples.len();
    // The layer's input codes: the model's integer reference (docs/model-format.md).
    let mut x: Vec<i64> = Vec::new();
    let mut ref_acc: Vec<Vec<i64>> = Vec::new();
    for (i, &s) in c.samples.iter().enumerate() {
        if s >= data.len() {
            return Err(Error::field(
                format!("samples[{i}]"),
                s,
                format!("0..={} (the test split)", data.len() - 1),
            ));
        }
        let codes0 = model.input_codes(data.image(s))?;
        let trace = reference_trace(&model, &codes0)?;
        let input = if l == 0 { codes0 } else { trace[l - 1].codes.clone().unwrap_or_default() };
        x.extend(input.iter().map(|&v| i64::from(v)));
        ref_acc.push(trace[l].acc.clone());
    }
    let (fa, fw) = (hw.activations(), hw.weights());
    // The layer as the one graph runner lowers it (graph::from_model, then
    // graph::run::lower: im2col, weight layout, bias, the requantizer with
    // the multiplier of requant::step_multiplier, the one `bitmac run` uses).
    let graph = crate::graph::from_model(&model)?;
    let lowered = lower(&graph, hw)?;
    let Some(Lowered::Array(node)) = lowered.get(l) else {
        return Err(Error::internal(format!("layer {}: not lowered to an array node", c.layer)));
    };
    let hidden = model.output_quant(l).is_some();
    let out_fmt = match model.output_quant(l) {
        Some(q) => IntFormat::new(q.signed(), q.bits())?,
        // The last layer's accumulators are the logits: no output stage.
        None => IntFormat::signed(32)?,
    };
    let mult = match node.requant.scaler(0) {
        crate::ppu::Scaler::Fixed(r) => r.multiplier(),
        crate::ppu::Scaler::Float32(_) => {
            return Err(Error::internal("model layer with a float32 requantizer"))
        }
    };
    let wcodes = layer.weight().codes();
    let bias = node.bias.clone();
    let n = node.n;
    let (rows, xshape, wshape, oshape) = match &node.conv {
        Some(g) => (
            batch * g.oh * g.ow,
            vec![batch, g.c, g.h, g.w],
            vec![g.o, g.c, g.kh, g.kw],
            vec![batch, g.o, g.oh, g.ow],
        ),
        None => (batch, vec![batch, node.k], vec![n, node.k], vec![batch, n]),
    };
    check_elems("im2col", (rows * node.k) as u64)?;
    check_gen_work(hw, rows, node.k, n, "layer")?;
    if let Some(i) = x.iter().position(|&v| !fa.contains(v as i128)) {
        return Err(Error::field(
            format!("x[{i}]"),
            x[i],
            format!("{}..={} (layer {} input codes vs hw activations {fa})", fa.min(), fa.max(), c.layer),
        ));
    }
    node.weights[0]
        .check_format(fw, "w")
        .map_err(|e| e.context(format!("layer {} weights vs hw weights {fw}", c.layer)))?;
    let cfg = crate::array::ArrayConfig::from_hw(hw)?;
    let run = |e: Engine, t: Option<&mut String>| -> Result<GemmResult> {
        let r = run_array_group(&cfg, node, &x, batch, 0, e, t)?;
        Ok(GemmResult {
            m: r.array.m,
            n: r.array.n,
            out: r.codes,
            acc: r.array.acc,
            drop_bits: cfg.drop_bits(),
            exact: r.array.exact,
            stats: r.stats,
        })
    };
    let (res, trace) = both_engines(run)?;
    // Output layout: NCHW for conv2d (GEMM rows are (b, oy, ox)), [b, o] for dense.
    let per = res.m / batch; // OH*OW (1 for dense)
    let mut codes = vec![0i64; res.m * n];
    for b in 0..batch {
        for p in 0..per {
            for o in 0..n {
                let g = (b * per + p) * n + o;
                codes[(b * n + o) * per + p] = res.out[g];
                // Independent check: the model's exact reference accumulator.
                let want = ref_acc[b][o * per + p];
                if res.exact[g] + i64::from(bias[o]) != want {
                    return Err(Error::internal(format!(
                        "layer {}: datapath exact accumulator differs from the model reference at sample {b}",
                        c.layer
                    )));
                }
            }
        }
    }
    let mut out = KindOutput::default();
    let xi = x.iter().map(|&v| i128::from(v)).collect();
    out.artifacts.push(Artifact::Tensor(Tensor::int("x", Role::Input, &xshape, fa, xi)));
    let wi = wcodes.iter().map(|&v| i128::from(v)).collect();
    out.artifacts.push(Artifact::Tensor(Tensor::int("w", Role::Weight, &wshape, fw, wi)));
    let bi = bias.iter().map(|&v| i128::from(v)).collect();
    out.artifacts.push(Artifact::Tensor(Tensor::int("bias", Role::Param, &[n], IntFormat::signed(32)?, bi)));
    outputs(hw, out_fmt, mult, &res, trace, c.trace, &oshape, hidden.then_some(codes), &mut out)?;
    Ok(out)
}
