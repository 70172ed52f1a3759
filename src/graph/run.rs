//! The one graph runner: lowers a [`Graph`] for a hardware config (array
//! nodes to GEMMs with the zero-point fold, PPU nodes to their rescalers)
//! and runs batches of samples through it (`docs/graph.md` §4–5,
//! `docs/ppu.md`). `bitmac run`, `bitmac dse`, `bitmac gen` and the library
//! run every model through [`lower`] and [`run_batch`].

use super::*;
use crate::array::{run_array, ArrayBuffers, ArrayConfig, Engine, Matrix, PreparedWeights, Stats};
use crate::hw::HwConfig;
use crate::numerics::IntFormat;
use crate::ppu::{self, AddRescale, ChannelRequant, ConcatRescale, PpuStats, Scaler};
use crate::requant::{layer_multiplier, RequantRounding};
use std::sync::OnceLock;

/// The geometry of a lowered conv (the one im2col's, `layers::im2col_group`).
pub use crate::layers::ConvGeom;

/// An array node lowered for the hardware.
#[derive(Clone, Debug)]
pub struct ArrayNode {
    /// Per group, the `K x N/g` weight matrix of `w - z_w`.
    pub weights: Vec<Matrix>,
    /// The bias the PPU adds, after the zero-point fold (`B'`, one per
    /// output channel).
    pub bias: Vec<i32>,
    /// The per-channel requantizer (for `accumulator` mode: the identity
    /// multiplier and the int32 range, used for the output statistics only).
    pub requant: ChannelRequant,
    /// The output is the accumulator itself (logits).
    pub accumulator: bool,
    /// The input zero point (im2col pads with it).
    pub z_in: i64,
    /// `Some` for conv, `None` for dense.
    pub conv: Option<ConvGeom>,
    /// K and N of the whole node (N = output channels).
    pub k: usize,
    pub n: usize,
    /// Per group, the weights prepared for the engine
    /// ([`PreparedWeights`]: checked, packed, normed), built on the first
    /// fast-engine GEMM of the group and reused by every later one (every
    /// batch and image of the run, across threads), with the config they
    /// were prepared for (a run on another config prepares per GEMM).
    pub prepared: Vec<OnceLock<(ArrayConfig, PreparedWeights)>>,
}

/// One lowered node.
#[derive(Clone, Debug)]
pub enum Lowered {
    Array(Box<ArrayNode>),
    Add {
        rescale: AddRescale,
        z_out: i64,
        lo: i64,
        hi: i64,
    },
    /// `outer`: the product of the per-sample dimensions before the axis.
    Concat {
        inputs: Vec<ConcatRescale>,
        outer: usize,
        z_out: i64,
        lo: i64,
        hi: i64,
    },
    MaxPool {
        window: Window,
        geom: [usize; 5],
    },
    AvgPool {
        pool: AvgPool,
        geom: [usize; 5],
        z: i64,
        lo: i64,
        hi: i64,
    },
    Clamp {
        lo: i64,
        hi: i64,
    },
    Copy,
}

fn act_range(act: Activation, q: &Quant) -> (i64, i64) {
    match act {
        Activation::None => (q.min_code(), q.max_code()),
        Activation::Relu => (q.min_code().max(q.zero_point()), q.max_code()),
        Activation::Clamp { lo, hi } => (lo, hi),
    }
}

fn rounding(mode: RequantMode, hw: &HwConfig) -> RequantRounding {
    match mode {
        RequantMode::Single => RequantRounding::Single,
        RequantMode::Double => RequantRounding::Double,
        _ => hw.requant().rounding,
    }
}

/// The real multiplier of output channel `o` of an array node:
/// `f64(f32(s_in * s_w[o])) / f64(s_out)` (`requant::layer_multiplier`).
pub fn array_multiplier(s_in: f32, w: &Scale, o: usize, s_out: f32) -> Result<f64> {
    layer_multiplier(w.at(o), s_in, s_out)
}

/// The float32 scale of output channel `o` in `float32` mode:
/// `f32(f32(s_in * s_w[o]) / s_out)` (two float32 operations, as ONNX
/// Runtime's QLinearConv computes its output scales).
pub fn array_scale_f32(s_in: f32, w: &Scale, o: usize, s_out: f32) -> f32 {
    (s_in * w.at(o)) / s_out
}

fn fits(v: i64, fmt: IntFormat) -> bool {
    fmt.contains(v as i128)
}

/// Lower every node of `g` for `hw` (`docs/graph.md` §5). Errors name the
/// node.
pub fn lower(g: &Graph, hw: &HwConfig) -> Result<Vec<Lowered>> {
    let mut out = Vec::with_capacity(g.nodes().len());
    for (i, node) in g.nodes().iter().enumerate() {
        let ctx = |e: Error| e.context(format!("node {i} ({}, {})", node.name, node.op.kind()));
        out.push(lower_node(g, node, hw).map_err(ctx)?);
    }
    Ok(out)
}

fn lower_node(g: &Graph, node: &Node, hw: &HwConfig) -> Result<Lowered> {
    let x = g.tensor(node.inputs[0]);
    let yq = &g.tensor(node.output).quant;
    Ok(match &node.op {
        Op::Conv2d(c) => {
            let [ch, h, w] = [x.shape[0], x.shape[1], x.shape[2]];
            let y = g.tensor(node.output);
            let [kh, kw] = c.kernel();
            let geom = ConvGeom {
                c: ch,
                h,
                w,
                o: c.out_channels(),
                oh: y.shape[1],
                ow: y.shape[2],
                kh,
                kw,
                stride: c.stride,
                pads: c.pads,
                dilation: c.dilation,
                groups: c.groups,
            };
            // OIHW [O][K_g] rows; group G owns rows G*N_g..(G+1)*N_g.
            let (o, g_) = (geom.o, geom.groups);
            let kg = (ch / g_) * kh * kw;
            let codes = c.weight.codes();
            let rows: Vec<&[i32]> = (0..o).map(|r| &codes[r * kg..(r + 1) * kg]).collect();
            Lowered::Array(Box::new(lower_array(
                x,
                yq,
                &c.weight,
                &rows,
                kg,
                g_,
                &c.bias,
                c.act,
                c.requant,
                hw,
                Some(geom),
            )?))
        }
        Op::Dense(d) => {
            let [k, n] = [d.weight.shape()[0], d.weight.shape()[1]];
            // [K, N] -> one row of K codes per output channel.
            let cols: Vec<Vec<i32>> =
                (0..n).map(|j| (0..k).map(|kk| d.weight.codes()[kk * n + j]).collect()).collect();
            let rows: Vec<&[i32]> = cols.iter().map(|v| v.as_slice()).collect();
            Lowered::Array(Box::new(lower_array(
                x, yq, &d.weight, &rows, k, 1, &d.bias, d.act, d.requant, hw, None,
            )?))
        }
        Op::Add { act, requant } => {
            let b = g.tensor(node.inputs[1]);
            let z = [x.quant.zero_point(), b.quant.zero_point()];
            let s = [x.quant.scale().at(0), b.quant.scale().at(0)];
            let s_out = yq.scale().at(0);
            let rescale = match requant {
                RequantMode::Float32 => AddRescale::Float32 { z, s, s_out },
                m => AddRescale::fixed(z, s, s_out, rounding(*m, hw))?,
            };
            let (lo, hi) = act_range(*act, yq);
            Lowered::Add { rescale, z_out: yq.zero_point(), lo, hi }
        }
        Op::Concat { axis, requant } => {
            let outer = x.shape[..*axis].iter().product();
            let mut inputs = Vec::new();
            for t in &node.inputs {
                let q = &g.tensor(*t).quant;
                let (s_in, s_out) = (q.scale().at(0), yq.scale().at(0));
                inputs.push(if q == yq {
                    ConcatRescale::Copy
                } else if *requant == RequantMode::Float32 {
                    ConcatRescale::Float32 { z_in: q.zero_point(), s_in, s_out }
                } else {
                    ConcatRescale::Fixed {
                        z_in: q.zero_point(),
                        m: Scaler::fixed(s_in as f64 / s_out as f64, rounding(*requant, hw))?,
                    }
                });
            }
            Lowered::Concat { inputs, outer, z_out: yq.zero_point(), lo: yq.min_code(), hi: yq.max_code() }
        }
        Op::MaxPool(w) => Lowered::MaxPool { window: *w, geom: pool_geom(g, node) },
        Op::AveragePool(p) => Lowered::AvgPool {
            pool: *p,
            geom: pool_geom(g, node),
            z: yq.zero_point(),
            lo: yq.min_code(),
            hi: yq.max_code(),
        },
        Op::GlobalAveragePool { rounding } => {
            let [c, h, w] = [x.shape[0], x.shape[1], x.shape[2]];
            Lowered::AvgPool {
                pool: AvgPool { window: Window::square(1, 1), count_include_pad: true, rounding: *rounding }
                    .global(h, w),
                geom: [c, h, w, 1, 1],
                z: yq.zero_point(),
                lo: yq.min_code(),
                hi: yq.max_code(),
            }
        }
        Op::Relu => {
            Lowered::Clamp { lo: x.quant.zero_point().max(x.quant.min_code()), hi: x.quant.max_code() }
        }
        Op::Clip { lo, hi } => Lowered::Clamp { lo: *lo, hi: *hi },
        Op::Flatten | Op::Reshape { .. } => Lowered::Copy,
    })
}

impl AvgPool {
    fn global(mut self, h: usize, w: usize) -> AvgPool {
        self.window = Window { kernel: [h, w], stride: [1, 1], pads: [0; 4], dilation: [1, 1] };
        self
    }
}

fn pool_geom(g: &Graph, node: &Node) -> [usize; 5] {
    let x = g.tensor(node.inputs[0]);
    let y = g.tensor(node.output);
    [x.shape[0], x.shape[1], x.shape[2], y.shape[1], y.shape[2]]
}

#[allow(clippy::too_many_arguments)]
fn lower_array(
    x: &TensorInfo,
    yq: &Quant,
    weight: &Weights,
    rows: &[&[i32]],
    k: usize,
    groups: usize,
    bias: &Bias,
    act: Activation,
    mode: RequantMode,
    hw: &HwConfig,
    conv: Option<ConvGeom>,
) -> Result<ArrayNode> {
    let (afmt, wfmt) = (hw.activations(), hw.weights());
    let xq = &x.quant;
    if !fits(xq.min_code(), afmt) || !fits(xq.max_code(), afmt) {
        return Err(Error::input(format!(
            "input {}: codes {}..={} do not fit the hardware's {afmt} multiplier input ({}..={})",
            x.name,
            xq.min_code(),
            xq.max_code(),
            afmt.min(),
            afmt.max()
        )));
    }
    let z_w = weight.quant().zero_point();
    let z_in = xq.zero_point();
    let n = rows.len();
    let ng = n / groups;
    let mut weights = Vec::with_capacity(groups);
    let mut folded = Vec::with_capacity(n);
    let (wlo, whi) = (wfmt.min(), wfmt.max());
    for gi in 0..groups {
        let mut m = vec![0i32; k * ng];
        for j in 0..ng {
            let o = gi * ng + j;
            let row = &rows[o][..k];
            // Range check through the row's extremes (the first offending
            // element is named when one is out of range).
            let (lo, hi) = row.iter().fold((i32::MAX, i32::MIN), |(l, h), &c| (l.min(c), h.max(c)));
            if k > 0
                && !((wlo..=whi).contains(&(lo as i128 - z_w as i128))
                    && (wlo..=whi).contains(&(hi as i128 - z_w as i128)))
            {
                let kk = row.iter().position(|&c| !fits(c as i64 - z_w, wfmt)).unwrap_or(0);
                let v = row[kk] as i64 - z_w;
                return Err(Error::field(
                    format!("weight[{o}][{kk}] - zero point"),
                    v,
                    format!("{}..={} ({wfmt} multiplier input)", wfmt.min(), wfmt.max()),
                ));
            }
            // Exact: |code| < 2^31 and k < 2^32, so the code sum fits i64.
            let code_sum: i64 = row.iter().map(|&c| c as i64).sum();
            let sum = code_sum as i128 - k as i128 * z_w as i128;
            let b = bias.codes()[o] as i128 - z_in as i128 * sum;
            if !(i32::MIN as i128..=i32::MAX as i128).contains(&b) {
                return Err(Error::field(
                    format!("bias[{o}] after the zero-point fold (B - z_in * sum(w))"),
                    b,
                    "int32",
                ));
            }
            folded.push(b as i32);
        }
        // The `K x N/g` layout, 16 channels at a time (contiguous writes).
        for j0 in (0..ng).step_by(16) {
            let j1 = (j0 + 16).min(ng);
            let src: Vec<&[i32]> = (j0..j1).map(|j| &rows[gi * ng + j][..k]).collect();
            for (kk, dst) in m.chunks_exact_mut(ng).enumerate() {
                for (d, r) in dst[j0..j1].iter_mut().zip(&src) {
                    // In range (checked above), so `as i32` is exact.
                    *d = (r[kk] as i64 - z_w) as i32;
                }
            }
        }
        weights.push(Matrix::new(k, ng, m)?);
    }
    let s_in = xq.scale().at(0);
    let accumulator = mode == RequantMode::Accumulator;
    let requant = if accumulator {
        ChannelRequant::new(
            vec![Scaler::fixed(1.0, RequantRounding::Double)?],
            0,
            i32::MIN as i64,
            i32::MAX as i64,
        )?
    } else {
        let s_out = yq.scale().at(0);
        let per = weight.quant().scale().channels().is_some();
        let count = if per { n } else { 1 };
        let mut scalers = Vec::with_capacity(count);
        for o in 0..count {
            scalers.push(match mode {
                RequantMode::Float32 => {
                    Scaler::Float32(array_scale_f32(s_in, weight.quant().scale(), o, s_out))
                }
                m => {
                    Scaler::fixed(array_multiplier(s_in, weight.quant().scale(), o, s_out)?, rounding(m, hw))?
                }
            });
        }
        let (lo, hi) = act_range(act, yq);
        ChannelRequant::new(scalers, yq.zero_point(), lo, hi)?
    };
    let prepared = (0..groups).map(|_| OnceLock::new()).collect();
    Ok(ArrayNode { weights, bias: folded, requant, accumulator, z_in, conv, k: k * groups, n, prepared })
}

/// What one node produced for a batch.
#[derive(Clone, Debug, Default)]
pub struct NodeOut {
    /// Output codes, `batch * len`, per-sample element order (NCHW).
    pub codes: Vec<i64>,
    /// Array nodes: per output element (same order as `codes`), the
    /// hardware accumulator `acc * 2^d + B'` and the exact `S + B'`.
    pub acc: Vec<i128>,
    pub exact: Vec<i128>,
    /// Array nodes: the datapath statistics (groups merged in order).
    pub stats: Option<Stats>,
    /// The post-processing unit's statistics.
    pub ppu: PpuStats,
}

/// What [`run_batch_with`] keeps of each node's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Codes, the array nodes' `acc` and `exact`, statistics.
    All,
    /// Codes and statistics only (`acc` and `exact` left empty; the
    /// statistics and codes are the same as with `All`).
    Codes,
    /// Statistics of every node, codes of the graph's output tensor only
    /// (every other node's `codes` left empty). Each other tensor is freed
    /// after its last consumer has run, so the allocator reuses its
    /// memory for the next nodes (fewer fresh pages); the statistics and
    /// the output codes are the same as with `All`.
    Output,
}

/// Run every node of `g` on one batch of input codes (`batch * input
/// len`, already checked against the input quantization). Returns one
/// [`NodeOut`] per node ([`run_batch_with`] keeping everything).
pub fn run_batch(
    g: &Graph,
    lowered: &[Lowered],
    hw: &HwConfig,
    input: Vec<i64>,
    batch: usize,
    engine: Engine,
) -> Result<Vec<NodeOut>> {
    run_batch_with(g, lowered, hw, input, batch, engine, Keep::All)
}

/// [`run_batch`], keeping `keep` of each node.
pub fn run_batch_with(
    g: &Graph,
    lowered: &[Lowered],
    hw: &HwConfig,
    input: Vec<i64>,
    batch: usize,
    engine: Engine,
    keep: Keep,
) -> Result<Vec<NodeOut>> {
    let cfg = ArrayConfig::from_hw(hw)?;
    // Every tensor's codes live here while the batch runs (each node's
    // output is written once: the graph is in SSA form); they move into the
    // `NodeOut`s at the end, so no node's codes are copied.
    let mut values: Vec<Vec<i64>> = vec![Vec::new(); g.tensors().len()];
    values[g.input().0] = input;
    // `Keep::Output`: the index of the last node reading each tensor (the
    // graph's output is never freed).
    let mut last_use = vec![usize::MAX; g.tensors().len()];
    if keep == Keep::Output {
        for (i, node) in g.nodes().iter().enumerate() {
            for t in &node.inputs {
                last_use[t.0] = i;
            }
        }
        last_use[g.output().0] = usize::MAX;
    }
    let mut outs = Vec::with_capacity(g.nodes().len());
    // The GEMM result arrays, reused by every array node of the batch.
    let mut bufs = ArrayBuffers::new();
    for (i, (node, low)) in g.nodes().iter().zip(lowered).enumerate() {
        let ctx = |e: Error| e.context(format!("node {i} ({}, {})", node.name, node.op.kind()));
        let ins: Vec<&[i64]> = node.inputs.iter().map(|t| values[t.0].as_slice()).collect();
        let lens: Vec<usize> = node.inputs.iter().map(|t| g.tensor(*t).len()).collect();
        let mut out =
            run_node(&cfg, low, &ins, &lens, g.tensor(node.output).len(), batch, engine, keep, &mut bufs)
                .map_err(ctx)?;
        values[node.output.0] = std::mem::take(&mut out.codes);
        for t in &node.inputs {
            if last_use[t.0] == i {
                values[t.0] = Vec::new();
            }
        }
        outs.push(out);
    }
    for (node, out) in g.nodes().iter().zip(&mut outs) {
        if keep != Keep::Output || node.output == g.output() {
            out.codes = std::mem::take(&mut values[node.output.0]);
        }
    }
    Ok(outs)
}

/// Run `batches` (each: the input codes and the number of samples) through
/// [`run_batch_with`] in parallel (rayon), returning their outputs in the
/// order given, so the result (and the error reported: the first in
/// batch order) is independent of the thread count.
pub fn run_batches(
    g: &Graph,
    lowered: &[Lowered],
    hw: &HwConfig,
    batches: Vec<(Vec<i64>, usize)>,
    engine: Engine,
    keep: Keep,
) -> Result<Vec<Vec<NodeOut>>> {
    use rayon::prelude::*;
    let outs: Vec<Result<Vec<NodeOut>>> =
        batches.into_par_iter().map(|(x, n)| run_batch_with(g, lowered, hw, x, n, engine, keep)).collect();
    // The first error in batch order, whichever thread met it first.
    outs.into_iter().collect()
}

#[allow(clippy::too_many_arguments)]
fn run_node(
    cfg: &ArrayConfig,
    low: &Lowered,
    ins: &[&[i64]],
    lens: &[usize],
    out_len: usize,
    batch: usize,
    engine: Engine,
    keep: Keep,
    bufs: &mut ArrayBuffers,
) -> Result<NodeOut> {
    let mut out = NodeOut::default();
    match low {
        Lowered::Array(a) => run_array_node(cfg, a, ins[0], batch, engine, keep, bufs, &mut out)?,
        Lowered::Add { rescale, z_out, lo, hi } => {
            if let Some((codes, sat, tie)) = rescale.apply_f32_narrow(ins[0], ins[1], *z_out, *lo, *hi) {
                out.codes = codes;
                out.ppu.saturated += sat;
                out.ppu.ties += tie;
                out.ppu.outputs = out.codes.len() as u64;
                return Ok(out);
            }
            out.codes = Vec::with_capacity(ins[0].len());
            for (&p, &q) in ins[0].iter().zip(ins[1]) {
                let (v, tie, ovf) = rescale.apply(p, q);
                let (c, sat) = ppu::clamp(v + *z_out as i128, *lo, *hi);
                out.codes.push(c);
                out.ppu.saturated += sat as u64;
                out.ppu.ties += tie as u64;
                out.ppu.overflows += ovf as u64;
            }
        }
        Lowered::Concat { inputs, outer, z_out, lo, hi } => {
            // Per-sample shape [.., D_axis, ..]: with `outer` elements before
            // the axis and `inner` after, each input contributes blocks of
            // D_i * inner per outer index. The ratio lens[i]/outer is D_i*inner.
            out.codes = Vec::with_capacity(batch * out_len);
            let outer = *outer;
            for b in 0..batch {
                for o in 0..outer {
                    for (j, r) in inputs.iter().enumerate() {
                        let blk = lens[j] / outer;
                        for &v in &ins[j][b * lens[j] + o * blk..b * lens[j] + (o + 1) * blk] {
                            let (y, tie, ovf) = r.apply(v, *z_out);
                            let (c, sat) = ppu::clamp(y + *z_out as i128, *lo, *hi);
                            out.codes.push(c);
                            out.ppu.saturated += sat as u64;
                            out.ppu.ties += tie as u64;
                            out.ppu.overflows += ovf as u64;
                        }
                    }
                }
            }
        }
        Lowered::MaxPool { window, geom } => {
            pool(ins[0], batch, *geom, window, &mut out, |vals, _| {
                (*vals.iter().max().unwrap_or(&0), false, false)
            });
        }
        Lowered::AvgPool { pool: p, geom, z, lo, hi } => {
            let (z, lo, hi) = (*z, *lo, *hi);
            pool(ins[0], batch, *geom, &p.window, &mut out, |vals, total| {
                let n = if p.count_include_pad { total } else { vals.len() };
                let s: i128 = vals.iter().map(|&v| (v - z) as i128).sum();
                let (q, tie) = ppu::div_round(s, n as i128, p.rounding);
                let (c, sat) = ppu::clamp(q + z as i128, lo, hi);
                (c, sat, tie)
            });
        }
        Lowered::Clamp { lo, hi } => {
            out.codes = ins[0]
                .iter()
                .map(|&v| {
                    let (c, sat) = ppu::clamp(v as i128, *lo, *hi);
                    out.ppu.saturated += sat as u64;
                    c
                })
                .collect();
        }
        Lowered::Copy => out.codes = ins[0].to_vec(),
    }
    out.ppu.outputs = out.codes.len() as u64;
    Ok(out)
}

/// Run a 2-D window op over `[C, H, W]` samples: `f(real elements, window
/// size) -> (code, saturated, tie)`.
fn pool(
    x: &[i64],
    batch: usize,
    geom: [usize; 5],
    win: &Window,
    out: &mut NodeOut,
    f: impl Fn(&[i64], usize) -> (i64, bool, bool),
) {
    let [c, h, w, oh, ow] = geom;
    let total = win.kernel[0] * win.kernel[1];
    let mut vals = Vec::with_capacity(total);
    out.codes = Vec::with_capacity(batch * c * oh * ow);
    for b in 0..batch {
        for ch in 0..c {
            let base = (b * c + ch) * h * w;
            for oy in 0..oh {
                for ox in 0..ow {
                    vals.clear();
                    for ky in 0..win.kernel[0] {
                        let iy = (oy * win.stride[0] + ky * win.dilation[0]) as isize - win.pads[0] as isize;
                        if iy < 0 || iy as usize >= h {
                            continue;
                        }
                        for kx in 0..win.kernel[1] {
                            let ix =
                                (ox * win.stride[1] + kx * win.dilation[1]) as isize - win.pads[1] as isize;
                            if ix >= 0 && (ix as usize) < w {
                                vals.push(x[base + iy as usize * w + ix as usize]);
                            }
                        }
                    }
                    let (v, sat, tie) = f(&vals, total);
                    out.codes.push(v);
                    out.ppu.saturated += sat as u64;
                    out.ppu.ties += tie as u64;
                }
            }
        }
    }
}

/// One group's GEMM of an array node on a batch, exactly as the runner
/// runs it: the `A` operand (im2col with `z_in` padding, or the dense
/// input), the array's output, the PPU's codes (GEMM order: row = (sample,
/// pixel), column = the group's channel) and the statistics (the array's
/// merged with the output stage's).
#[derive(Clone, Debug)]
pub struct GroupRun {
    pub a: Matrix,
    pub array: crate::array::ArrayOutput,
    pub codes: Vec<i64>,
    pub stats: Stats,
    pub ppu: PpuStats,
}

/// Run group `gi` of array node `a` on `batch` samples `x` (per-sample
/// NCHW or features). `trace` (cycle engine only) receives the array's
/// per-cycle trace (`docs/datapath.md` §7).
pub fn run_array_group(
    cfg: &ArrayConfig,
    a: &ArrayNode,
    x: &[i64],
    batch: usize,
    gi: usize,
    engine: Engine,
    trace: Option<&mut String>,
) -> Result<GroupRun> {
    let am = group_operand(cfg, a, x, batch, gi)?;
    let (arr, codes, st, ps) = match trace {
        Some(t) => {
            let arr = run_array(cfg, &am, &a.weights[gi], engine, Some(t))?;
            let (codes, st, ps) =
                group_output(cfg, a, gi, arr.acc.as_slice(), arr.exact.as_slice(), &arr.stats);
            (arr, codes, st, ps)
        }
        None => {
            let mut bufs = ArrayBuffers::new();
            let stats = group_gemm(cfg, a, &am, gi, engine, &mut bufs)?;
            let (codes, st, ps) = group_output(cfg, a, gi, bufs.acc(), bufs.exact(), &stats);
            (bufs.into_output(stats), codes, st, ps)
        }
    };
    Ok(GroupRun { a: am, array: arr, codes, stats: st, ppu: ps })
}

/// The `A` operand of group `gi` (the one place the graph runner builds a
/// [`Matrix`]): im2col with `z_in` padding, or the dense input.
fn group_operand(cfg: &ArrayConfig, a: &ArrayNode, x: &[i64], batch: usize, gi: usize) -> Result<Matrix> {
    match &a.conv {
        // Tensor codes and the zero point lie in the input quantization's
        // code range, which `lower` checked fits the multiplier input format
        // (so `i32`): no per-element re-check.
        Some(geom) => crate::layers::im2col_group(geom, x, batch, gi, a.z_in as i32, |v| v as i32),
        None => Matrix::from_i64(batch, a.k, x, cfg_afmt(cfg), "input"),
    }
}

/// Group `gi`'s GEMM into `bufs`: through the node's prepared weights when
/// they were (or can now be) prepared for `cfg`, else prepared for this
/// call ([`PreparedWeights`] gives [`run_array`]'s results either way).
fn group_gemm(
    cfg: &ArrayConfig,
    a: &ArrayNode,
    am: &Matrix,
    gi: usize,
    engine: Engine,
    bufs: &mut ArrayBuffers,
) -> Result<Stats> {
    let w = &a.weights[gi];
    if engine == Engine::Fast {
        if let Some(slot) = a.prepared.get(gi) {
            // A weight outside the format: left unprepared, so the per-call
            // path below reports the error as `run_array` does.
            if slot.get().is_none() {
                if let Ok(p) = PreparedWeights::new(cfg, w) {
                    let _ = slot.set((*cfg, p));
                }
            }
            if let Some((_, p)) = slot.get().filter(|(c, _)| c == cfg) {
                return p.run(am, engine, bufs);
            }
        }
    }
    PreparedWeights::new(cfg, w)?.run(am, engine, bufs)
}

/// The output stage of group `gi` on its GEMM results: the codes in GEMM
/// order, the array statistics merged with the output stage's, the PPU's.
fn group_output(
    cfg: &ArrayConfig,
    a: &ArrayNode,
    gi: usize,
    acc: &[i64],
    exact: &[i64],
    stats: &Stats,
) -> (Vec<i64>, Stats, PpuStats) {
    let ng = a.n / a.weights.len();
    let bias = &a.bias[gi * ng..(gi + 1) * ng];
    let rq = a.requant.offset(gi * ng, ng);
    let mut st = stats.clone();
    let (codes, ps) = ppu::gemm_output(acc, exact, cfg.drop_bits(), ng, Some(bias), &rq, &mut st);
    (codes, st, ps)
}

#[allow(clippy::too_many_arguments)]
fn run_array_node(
    cfg: &ArrayConfig,
    a: &ArrayNode,
    x: &[i64],
    batch: usize,
    engine: Engine,
    keep: Keep,
    bufs: &mut ArrayBuffers,
    out: &mut NodeOut,
) -> Result<()> {
    let n = a.n;
    let groups = a.weights.len();
    let ng = n / groups;
    let px = a.conv.as_ref().map_or(1, |c| c.oh * c.ow);
    let len = batch * px * n;
    let all = keep == Keep::All;
    out.codes = vec![0; len];
    if all {
        out.acc = vec![0; len];
        out.exact = vec![0; len];
    }
    let mut stats = Stats::default();
    let d = cfg.drop_bits();
    for gi in 0..groups {
        let am = group_operand(cfg, a, x, batch, gi)?;
        let gst = group_gemm(cfg, a, &am, gi, engine, bufs)?;
        drop(am);
        let (acc, exact) = (bufs.acc(), bufs.exact());
        let (codes, st, ps) = group_output(cfg, a, gi, acc, exact, &gst);
        let bias = &a.bias[gi * ng..(gi + 1) * ng];
        stats.merge(&st);
        out.ppu.merge(&ps);
        // GEMM rows are (sample, pixel), columns the group's channels;
        // scatter to per-sample NCHW: element (b, o, p) at (b*n + o)*px + p.
        let acc_of = |gidx: usize, j: usize| ((acc[gidx] as i128) << d) + bias[j] as i128;
        for b in 0..batch {
            if a.accumulator {
                for j in 0..ng {
                    let dst = (b * n + gi * ng + j) * px;
                    for p in 0..px {
                        let v = acc_of((b * px + p) * ng + j, j);
                        out.codes[dst + p] = v.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
                    }
                }
            } else {
                // A transpose in tiles of SCATTER_TILE pixels: the tile's
                // GEMM rows stay in cache while every channel's run of
                // pixels is written contiguously (a plain column walk
                // misses the cache on every read when `ng` is large).
                let rows = &codes[b * px * ng..(b + 1) * px * ng];
                for p0 in (0..px).step_by(SCATTER_TILE) {
                    let p1 = (p0 + SCATTER_TILE).min(px);
                    let tile = &rows[p0 * ng..p1 * ng];
                    for j in 0..ng {
                        let dst = &mut out.codes[(b * n + gi * ng + j) * px..][p0..p1];
                        for (o, &v) in dst.iter_mut().zip(tile[j..].iter().step_by(ng)) {
                            *o = v;
                        }
                    }
                }
            }
            if all {
                for (j, &bj) in bias.iter().enumerate() {
                    let dst = (b * n + gi * ng + j) * px;
                    for p in 0..px {
                        let gidx = (b * px + p) * ng + j;
                        out.acc[dst + p] = acc_of(gidx, j);
                        out.exact[dst + p] = exact[gidx] as i128 + bj as i128;
                    }
                }
            }
        }
    }
    out.stats = Some(stats);
    Ok(())
}

/// Pixels per tile of the GEMM-order to NCHW scatter (`run_array_node`).
const SCATTER_TILE: usize = 16;

fn cfg_afmt(cfg: &ArrayConfig) -> IntFormat {
    cfg.afmt
}

impl ChannelRequant {
    /// The requantizer of channels `c0..c0+n` (a group's view).
    pub fn offset(&self, c0: usize, n: usize) -> ChannelRequant {
        let (lo, hi) = self.range();
        let scalers = (0..n).map(|j| *self.scaler(c0 + j)).collect();
        ChannelRequant::new(scalers, self.zero_point(), lo, hi).unwrap_or_else(|_| self.clone())
    }
}

/// Every node's values over a whole data set, in sample order.
#[derive(Clone, Debug, Default)]
pub struct GraphRun {
    /// One entry per node: codes/acc/exact concatenated over samples,
    /// statistics merged in sample order.
    pub nodes: Vec<NodeOut>,
}

/// The memory [`run_all`] keeps, in bytes (`docs/limits.md`, `--max-mem`):
/// for every sample, every node output element's code (8 bytes) and, at
/// most, its two accumulators (16 bytes each), counted for every node
/// (an upper bound: only array nodes keep accumulators); the input codes
/// (8 bytes per element); and one batch of the same in flight.
pub fn run_all_memory(g: &Graph, samples: usize, batch: usize) -> u128 {
    let outs: u128 = g.nodes().iter().map(|n| g.tensor(n.output).len() as u128).sum();
    let input = g.tensor(g.input()).len() as u128;
    let per = 40 * outs + 8 * input;
    per * samples as u128 + per * batch.clamp(1, samples.max(1)) as u128
}

/// Run `inputs` (one code vector per sample) through `g` in batches of
/// `batch`, in parallel over batches, merging in sample order (the result
/// is independent of the thread count). `progress` gets the number of
/// samples finished.
pub fn run_all(
    g: &Graph,
    lowered: &[Lowered],
    hw: &HwConfig,
    inputs: &[Vec<i64>],
    batch: usize,
    engine: Engine,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<GraphRun> {
    use rayon::prelude::*;
    if batch == 0 {
        return Err(Error::field("batch", 0, "1.."));
    }
    let in_len = g.tensor(g.input()).len();
    let iq = &g.tensor(g.input()).quant;
    for (s, x) in inputs.iter().enumerate() {
        if x.len() != in_len {
            return Err(Error::field(format!("sample {s}: input length"), x.len(), in_len));
        }
        if let Some(i) = x.iter().position(|&v| !iq.contains(v)) {
            return Err(Error::field(
                format!("sample {s}: input[{i}]"),
                x[i],
                format!("{}..={}", iq.min_code(), iq.max_code()),
            ));
        }
    }
    let starts: Vec<usize> = (0..inputs.len()).step_by(batch).collect();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let batches: Vec<Result<Vec<NodeOut>>> = starts
        .par_iter()
        .map(|&s0| {
            let s1 = (s0 + batch).min(inputs.len());
            let x: Vec<i64> = inputs[s0..s1].iter().flatten().copied().collect();
            let r = run_batch(g, lowered, hw, x, s1 - s0, engine);
            let n = done.fetch_add(s1 - s0, std::sync::atomic::Ordering::Relaxed) + (s1 - s0);
            progress(n);
            r
        })
        .collect();
    let mut run = GraphRun { nodes: vec![NodeOut::default(); g.nodes().len()] };
    for b in batches {
        for (acc, o) in run.nodes.iter_mut().zip(b?) {
            acc.codes.extend_from_slice(&o.codes);
            acc.acc.extend_from_slice(&o.acc);
            acc.exact.extend_from_slice(&o.exact);
            if let Some(st) = &o.stats {
                acc.stats.get_or_insert_with(Stats::default).merge(st);
            }
            acc.ppu.merge(&o.ppu);
        }
    }
    Ok(run)
}
