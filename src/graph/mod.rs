//! The quantized graph: a DAG of nodes over integer tensors, each tensor
//! carrying its quantization (bits, signedness, narrow range, scale per
//! tensor or per output channel, zero point). Normative doc: `docs/graph.md`.
//!
//! Layout (the data every producer — the `bitmac-model/1` loader, the
//! `bitmac-graph/1` loader, the ONNX importer — builds, and every consumer —
//! the runner, the exact reference, the vector generator — reads):
//! - activation tensors are per sample, `[C, H, W]` (NCHW without N) or
//!   `[N]` (features); the batch dimension is never part of a shape;
//! - activation codes are `i64` at graph level (requantized tensors hold
//!   at most 32-bit codes; the array narrows them to its multiplier input
//!   format and rejects codes that do not fit);
//! - conv weights are OIHW integer codes `[O, C/groups, KH, KW]`, dense
//!   weights are `[K, N]` (K inputs, N outputs; row-major, `w[k*N + n]`);
//! - biases are int32 in accumulator units (`s_in * s_w[o]`);
//! - nodes are a topologically ordered `Vec<Node>` referring to tensors by
//!   [`TensorId`] (an index into [`Graph::tensors`]); every tensor except
//!   the graph input is produced by exactly one node, before any use.
//!
//! A [`Graph`] can only be made by [`GraphBuilder`], which validates every
//! node as it is added (shapes inferred and checked, codes in range, scales
//! finite and > 0); code holding a `Graph` may rely on that.

mod builder;
pub mod dump;
mod fold;
pub mod format;
mod from_model;
pub mod load;
pub use from_model::from_model;
pub mod reference;
pub mod report;
pub mod run;

pub use builder::GraphBuilder;
pub use fold::{fold_batchnorm, BatchNorm};

use crate::error::{Error, Result};

/// Index of a tensor in [`Graph::tensors`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TensorId(pub usize);

/// A scale: one float32 per tensor, or one per output channel (axis 0 of
/// conv weights `[O, C/g, KH, KW]`, axis 1 of dense weights `[K, N]`, the
/// channel of an accumulator tensor).
#[derive(Clone, Debug, PartialEq)]
pub enum Scale {
    /// One scale for every element.
    Tensor(f32),
    /// One scale per channel.
    Channel(Vec<f32>),
}

impl Scale {
    /// The scale of channel `c` (the single scale for `Tensor`).
    pub fn at(&self, c: usize) -> f32 {
        match self {
            Scale::Tensor(s) => *s,
            Scale::Channel(v) => v[c],
        }
    }
    /// Number of channels of a per-channel scale, `None` for per tensor.
    pub fn channels(&self) -> Option<usize> {
        match self {
            Scale::Tensor(_) => None,
            Scale::Channel(v) => Some(v.len()),
        }
    }
    fn check(&self, what: &str) -> Result<()> {
        let bad = |i: Option<usize>, s: f32| {
            let f = match i {
                None => format!("{what}.scale"),
                Some(i) => format!("{what}.scale[{i}]"),
            };
            Err(Error::field(f, s, "finite float32 > 0"))
        };
        match self {
            Scale::Tensor(s) if !(s.is_finite() && *s > 0.0) => bad(None, *s),
            Scale::Channel(v) if v.is_empty() => {
                Err(Error::field(format!("{what}.scale"), "[]", "at least one channel"))
            }
            Scale::Channel(v) => match v.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
                Some(i) => bad(Some(i), v[i]),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// The quantization of a tensor: the real value of code `q` in channel `c`
/// is `(q - zero_point) * scale.at(c)`.
///
/// Code range (QONNX `Quant`): signed `[-2^(b-1) + narrow, 2^(b-1) - 1]`,
/// unsigned `[0, 2^b - 1 - narrow]`. The seed's symmetric LSQ range
/// `±(2^(b-1)-1)` is signed with `narrow`; the LSQ paper's (and the shipped
/// digits models') `[-2^(b-1), 2^(b-1)-1]` is signed without.
#[derive(Clone, Debug, PartialEq)]
pub struct Quant {
    bits: u32,
    signed: bool,
    narrow: bool,
    scale: Scale,
    zero_point: i64,
}

/// Widest code of a requantized tensor (and of weights).
pub const MAX_CODE_BITS: u32 = 32;
/// Width of an accumulator tensor (the output of a conv/dense in
/// [`RequantMode::Accumulator`]): the exact `acc * 2^d + bias`.
pub const ACC_BITS: u32 = 64;

impl Quant {
    /// A validated quantization: `bits` in 1..=32 (2..=32 when signed),
    /// scale(s) finite and > 0, zero point inside the code range.
    pub fn new(bits: u32, signed: bool, narrow: bool, scale: Scale, zero_point: i64) -> Result<Quant> {
        let min_bits = if signed { 2 } else { 1 };
        if !(min_bits..=MAX_CODE_BITS).contains(&bits) {
            return Err(Error::field("bits", bits, format!("{min_bits}..={MAX_CODE_BITS}")));
        }
        if !signed && narrow && bits == 1 {
            return Err(Error::field("narrow", "true", "false for 1-bit unsigned codes"));
        }
        scale.check("quant")?;
        let q = Quant { bits, signed, narrow, scale, zero_point };
        if !(q.min_code()..=q.max_code()).contains(&zero_point) {
            return Err(Error::field(
                "zero_point",
                zero_point,
                format!("{}..={} (the code range)", q.min_code(), q.max_code()),
            ));
        }
        Ok(q)
    }

    /// A symmetric per-tensor quantization (zero point 0, not narrow).
    pub fn symmetric(bits: u32, signed: bool, scale: f32) -> Result<Quant> {
        Quant::new(bits, signed, false, Scale::Tensor(scale), 0)
    }

    /// The quantization of an accumulator tensor: 64-bit signed codes, zero
    /// point 0, scale `s_in * s_w[c]` (an f32 product per channel).
    pub(crate) fn accumulator(scale: Scale) -> Quant {
        Quant { bits: ACC_BITS, signed: true, narrow: false, scale, zero_point: 0 }
    }

    /// Bit width (1..=32, or 64 for an accumulator tensor).
    pub fn bits(&self) -> u32 {
        self.bits
    }
    /// Two's-complement codes (true) or unsigned codes (false).
    pub fn signed(&self) -> bool {
        self.signed
    }
    /// Narrow range: one code fewer at the bottom (signed) or top (unsigned).
    pub fn narrow(&self) -> bool {
        self.narrow
    }
    /// The scale(s).
    pub fn scale(&self) -> &Scale {
        &self.scale
    }
    /// The zero point (a code).
    pub fn zero_point(&self) -> i64 {
        self.zero_point
    }
    /// True for the 64-bit accumulator tensors.
    pub fn is_accumulator(&self) -> bool {
        self.bits == ACC_BITS
    }
    /// Smallest code.
    pub fn min_code(&self) -> i64 {
        if self.bits == ACC_BITS {
            i64::MIN
        } else if self.signed {
            -(1i64 << (self.bits - 1)) + self.narrow as i64
        } else {
            0
        }
    }
    /// Largest code.
    pub fn max_code(&self) -> i64 {
        if self.bits == ACC_BITS {
            i64::MAX
        } else if self.signed {
            (1i64 << (self.bits - 1)) - 1
        } else {
            (1i64 << self.bits) - 1 - self.narrow as i64
        }
    }
    /// True when `q` is inside the code range.
    pub fn contains(&self, q: i64) -> bool {
        (self.min_code()..=self.max_code()).contains(&q)
    }
    /// Quantize one float32 value (the graph input quantizer, QONNX `Quant`
    /// with `ROUND` and ONNX `QuantizeLinear`): `q = clamp(rne(x / s) + z,
    /// lo, hi)` where `x / s` is one IEEE float32 division and `rne` rounds
    /// half to even. Per-tensor scale only (channel 0 otherwise). NaN gives
    /// the zero point.
    pub fn quantize(&self, x: f32) -> i64 {
        let v = x / self.scale.at(0);
        if v.is_nan() {
            return self.zero_point;
        }
        // Clamp in f64 first so the conversion never saturates silently;
        // clamp-then-round equals round-then-clamp for integer bounds.
        let r = (v as f64).clamp(-(2f64.powi(40)), 2f64.powi(40)).round_ties_even() as i64;
        (r + self.zero_point).clamp(self.min_code(), self.max_code())
    }
}

/// A constant weight tensor: shape, integer codes (row-major) and
/// quantization (per-tensor or per-output-channel scale; one zero point,
/// subtracted from every code before the array sees it).
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    shape: Vec<usize>,
    codes: Vec<i32>,
    quant: Quant,
}

impl Weights {
    /// Validated weights: `codes.len() == product(shape)`, every code in
    /// the quant's range, per-channel scale length equal to the output
    /// channel count (`out_channels`, checked by the builder).
    pub fn new(shape: Vec<usize>, codes: Vec<i32>, quant: Quant) -> Result<Weights> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if shape.is_empty() || shape.contains(&0) || n != Some(codes.len()) {
            return Err(Error::input(format!(
                "weights: shape {shape:?} does not match {} codes (every dimension >= 1)",
                codes.len()
            )));
        }
        if n.unwrap_or(usize::MAX) > MAX_ELEMENTS {
            return Err(Error::field("weights elements", codes.len(), format!("<= {MAX_ELEMENTS}")));
        }
        // Decided by the extremes (one vectorizable pass); the scan for the
        // first bad code runs only when one is out of range.
        let (lo, hi) = codes.iter().fold((i32::MAX, i32::MIN), |(l, h), &c| (l.min(c), h.max(c)));
        let ok = codes.is_empty() || (quant.contains(lo as i64) && quant.contains(hi as i64));
        let bad = if ok { None } else { codes.iter().position(|&c| !quant.contains(c as i64)) };
        if let Some(i) = bad {
            return Err(Error::field(
                format!("weights.codes[{i}]"),
                codes[i],
                format!("{}..={}", quant.min_code(), quant.max_code()),
            ));
        }
        Ok(Weights { shape, codes, quant })
    }
    /// Shape: `[O, C/groups, KH, KW]` (conv) or `[K, N]` (dense).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Codes, row-major in `shape`.
    pub fn codes(&self) -> &[i32] {
        &self.codes
    }
    /// The quantization.
    pub fn quant(&self) -> &Quant {
        &self.quant
    }
    /// Replace the quantization (used by the BatchNorm fold), revalidated.
    pub(crate) fn with(shape: Vec<usize>, codes: Vec<i32>, quant: Quant) -> Result<Weights> {
        Weights::new(shape, codes, quant)
    }
}

/// Largest element count of any tensor (2^26).
pub const MAX_ELEMENTS: usize = 1 << 26;

/// An int32 bias per output channel, in accumulator units
/// (`s_in * s_w[o]`), with the float bias it was rounded from, if known.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Bias {
    codes: Vec<i32>,
    float: Option<Vec<f32>>,
}

impl Bias {
    /// An integer bias (`float` is informational: the real bias the codes
    /// were rounded from, one per channel).
    pub fn new(codes: Vec<i32>, float: Option<Vec<f32>>) -> Result<Bias> {
        if let Some(f) = &float {
            if f.len() != codes.len() {
                return Err(Error::input(format!(
                    "bias: {} float values for {} integer values",
                    f.len(),
                    codes.len()
                )));
            }
        }
        Ok(Bias { codes, float })
    }
    /// Round a real bias to int32 accumulator units (`docs/graph.md`, "Bias
    /// rounding"): `b[o] = rne(f64(bias[o]) / (f64(s_in) * f64(s_w[o])))`,
    /// the division in f64 rounding to nearest even, then rounded half to
    /// even to an integer; outside int32 is an error naming the channel.
    pub fn from_float(bias: &[f32], s_in: f32, w_scale: &Scale) -> Result<Bias> {
        let mut codes = Vec::with_capacity(bias.len());
        for (o, &b) in bias.iter().enumerate() {
            if !b.is_finite() {
                return Err(Error::field(format!("bias[{o}]"), b, "finite"));
            }
            let unit = s_in as f64 * w_scale.at(o) as f64;
            let v = (b as f64 / unit).round_ties_even();
            if !(i32::MIN as f64..=i32::MAX as f64).contains(&v) {
                return Err(Error::field(
                    format!("bias[{o}]"),
                    b,
                    format!("|bias / (s_in*s_w)| < 2^31 (is {v:e} accumulator units)"),
                ));
            }
            codes.push(v as i32);
        }
        Ok(Bias { codes, float: Some(bias.to_vec()) })
    }
    /// The int32 codes.
    pub fn codes(&self) -> &[i32] {
        &self.codes
    }
    /// The float bias, when known.
    pub fn float(&self) -> Option<&[f32]> {
        self.float.as_deref()
    }
    /// Per channel, the rounding error in accumulator LSBs:
    /// `codes[o] - f64(float[o]) / (f64(s_in) * f64(s_w[o]))` (|e| <= 0.5).
    pub fn rounding_error(&self, s_in: f32, w_scale: &Scale) -> Option<Vec<f64>> {
        let f = self.float.as_ref()?;
        Some(
            f.iter()
                .zip(&self.codes)
                .enumerate()
                .map(|(o, (&b, &q))| q as f64 - b as f64 / (s_in as f64 * w_scale.at(o) as f64))
                .collect(),
        )
    }
}

/// How a node's accumulator (or rescaled sum) becomes output codes
/// (`docs/graph.md`, "Requantization"; `docs/ppu.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequantMode {
    /// The hardware config's `requant.rounding` (TFLite double or single).
    Hardware,
    /// TFLite double rounding (gemmlowp), whatever the hardware says.
    Double,
    /// `TFLITE_SINGLE_ROUNDING`.
    Single,
    /// ONNX Runtime's CPU kernels (MLAS `MlasRequantizeOutput`):
    /// `rne(f32(acc) * f32(scale)) + zero_point`, clamped.
    Float32,
    /// No requantization: the output is the exact accumulator
    /// `acc * 2^d + bias` (64-bit codes; a graph output, e.g. logits).
    Accumulator,
}

impl RequantMode {
    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            RequantMode::Hardware => "hardware",
            RequantMode::Double => "double",
            RequantMode::Single => "single",
            RequantMode::Float32 => "float32",
            RequantMode::Accumulator => "accumulator",
        }
    }
    /// Parse a JSON name.
    pub fn parse(s: &str) -> Result<RequantMode> {
        Ok(match s {
            "hardware" => RequantMode::Hardware,
            "double" => RequantMode::Double,
            "single" => RequantMode::Single,
            "float32" => RequantMode::Float32,
            "accumulator" => RequantMode::Accumulator,
            _ => {
                return Err(Error::field(
                    "requant",
                    format!("{s:?}"),
                    "hardware, double, single, float32, accumulator",
                ))
            }
        })
    }
}

/// A fused activation: a clamp of the output codes after requantization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Activation {
    /// Clamp to the output code range only.
    #[default]
    None,
    /// ReLU: the lower clamp is raised to the output zero point.
    Relu,
    /// Clamp to `[lo, hi]` (output codes, inside the code range; ReLU6 and
    /// Clip, converted to codes by the producer).
    Clamp { lo: i64, hi: i64 },
}

/// Rounding of the integer division of an average pool
/// (`docs/ppu.md`, "Pools").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DivRounding {
    /// Nearest, ties to even (ONNX QDQ: float average then `QuantizeLinear`).
    HalfEven,
    /// Nearest, ties away from zero (TFLite's `(sum ± n/2) / n`).
    HalfAway,
    /// Floor (QONNX `Trunc` with `FLOOR`).
    Floor,
}

impl DivRounding {
    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            DivRounding::HalfEven => "half_even",
            DivRounding::HalfAway => "half_away",
            DivRounding::Floor => "floor",
        }
    }
    /// Parse a JSON name.
    pub fn parse(s: &str) -> Result<DivRounding> {
        Ok(match s {
            "half_even" => DivRounding::HalfEven,
            "half_away" => DivRounding::HalfAway,
            "floor" => DivRounding::Floor,
            _ => return Err(Error::field("rounding", format!("{s:?}"), "half_even, half_away, floor")),
        })
    }
}

/// A 2-D convolution (cross-correlation, ONNX `Conv`), on the MAC array.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    /// `[O, C/groups, KH, KW]`.
    pub weight: Weights,
    pub bias: Bias,
    /// `[sh, sw]`, each >= 1.
    pub stride: [usize; 2],
    /// `[top, left, bottom, right]` (ONNX `pads` order); padded input
    /// elements hold the input zero point (real 0).
    pub pads: [usize; 4],
    /// `[dh, dw]`, each >= 1.
    pub dilation: [usize; 2],
    /// Groups (1 = dense conv; C = depthwise); divides C and O.
    pub groups: usize,
    pub act: Activation,
    pub requant: RequantMode,
}

impl Conv2d {
    /// A conv with stride 1, no padding, no dilation, one group, no
    /// activation and the hardware's requant mode.
    pub fn new(weight: Weights, bias: Bias) -> Conv2d {
        Conv2d {
            weight,
            bias,
            stride: [1, 1],
            pads: [0; 4],
            dilation: [1, 1],
            groups: 1,
            act: Activation::None,
            requant: RequantMode::Hardware,
        }
    }
    /// Kernel `[KH, KW]`.
    pub fn kernel(&self) -> [usize; 2] {
        [self.weight.shape[2], self.weight.shape[3]]
    }
    /// Output channels O.
    pub fn out_channels(&self) -> usize {
        self.weight.shape[0]
    }
}

/// A fully connected layer (ONNX `Gemm`/`MatMul`), on the MAC array. Its
/// input of any shape is read flat in row-major (C-major for `[C, H, W]`)
/// order: `K = product(input shape)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// `[K, N]`.
    pub weight: Weights,
    pub bias: Bias,
    pub act: Activation,
    pub requant: RequantMode,
}

/// A 2-D pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// `[KH, KW]`.
    pub kernel: [usize; 2],
    /// `[sh, sw]`.
    pub stride: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// `[dh, dw]`.
    pub dilation: [usize; 2],
}

impl Window {
    /// A `k x k` window with stride `s`, no padding, no dilation.
    pub fn square(k: usize, s: usize) -> Window {
        Window { kernel: [k, k], stride: [s, s], pads: [0; 4], dilation: [1, 1] }
    }
    /// Output `(OH, OW)` for an `H x W` input:
    /// `O = floor((H + pt + pb - d*(K-1) - 1) / s) + 1`.
    pub fn out_hw(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let dim =
            |n: usize, p0: usize, p1: usize, k: usize, s: usize, d: usize, axis: &str| -> Result<usize> {
                if k == 0 || s == 0 || d == 0 {
                    return Err(Error::input(format!(
                        "{axis}: kernel {k}, stride {s}, dilation {d} (each must be >= 1)"
                    )));
                }
                let span = d * (k - 1) + 1;
                let padded = n + p0 + p1;
                if span > padded {
                    return Err(Error::input(format!(
                        "{axis}: the dilated kernel ({span}) is larger than the padded input ({padded})"
                    )));
                }
                Ok((padded - span) / s + 1)
            };
        let [kh, kw] = self.kernel;
        let [pt, pl, pb, pr] = self.pads;
        Ok((
            dim(h, pt, pb, kh, self.stride[0], self.dilation[0], "height")?,
            dim(w, pl, pr, kw, self.stride[1], self.dilation[1], "width")?,
        ))
    }
}

/// An average pool (ONNX `AveragePool`); output quantization equals the
/// input's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool {
    pub window: Window,
    /// Count padded elements in the divisor (ONNX `count_include_pad`).
    pub count_include_pad: bool,
    pub rounding: DivRounding,
}

/// One node's operation. Array nodes (`Conv2d`, `Dense`) run on the MAC
/// array and requantize in the post-processing unit; every other op runs in
/// the post-processing unit (`docs/ppu.md`).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Conv2d(Conv2d),
    Dense(Dense),
    /// Residual add of two tensors of the same shape, rescaled to the
    /// output quantization (TFLite quantized ADD, or float32 as ONNX QDQ).
    Add {
        act: Activation,
        requant: RequantMode,
    },
    /// Concatenation along `axis` (of the per-sample shape; 0 = channels
    /// for `[C, H, W]`), each input rescaled to the output quantization.
    Concat {
        axis: usize,
        requant: RequantMode,
    },
    /// Max over each window; padding never wins.
    MaxPool(Window),
    AveragePool(AvgPool),
    /// Average over H x W per channel: `[C, H, W] -> [C, 1, 1]`.
    GlobalAveragePool {
        rounding: DivRounding,
    },
    /// `max(x, zero_point)`.
    Relu,
    /// Clamp to `[lo, hi]` input codes (ReLU6, Clip).
    Clip {
        lo: i64,
        hi: i64,
    },
    /// `[C, H, W] -> [C*H*W]`, C-major.
    Flatten,
    /// Any shape with the same element count (row-major order kept).
    Reshape {
        shape: Vec<usize>,
    },
}

impl Op {
    /// The op's name (reports, errors, the JSON `op`).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv2d(_) => "conv2d",
            Op::Dense(_) => "dense",
            Op::Add { .. } => "add",
            Op::Concat { .. } => "concat",
            Op::MaxPool(_) => "maxpool",
            Op::AveragePool(_) => "avgpool",
            Op::GlobalAveragePool { .. } => "global_avgpool",
            Op::Relu => "relu",
            Op::Clip { .. } => "clip",
            Op::Flatten => "flatten",
            Op::Reshape { .. } => "reshape",
        }
    }
    /// True for the ops that run on the MAC array.
    pub fn on_array(&self) -> bool {
        matches!(self, Op::Conv2d(_) | Op::Dense(_))
    }
}

/// A tensor of the graph: name, per-sample shape and quantization.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub quant: Quant,
}

impl TensorInfo {
    /// Number of elements per sample.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Never true in a validated graph.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One node: its name (unique), operation, input tensors and output tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<TensorId>,
    pub output: TensorId,
}

/// A validated quantized graph (see the module doc for the invariants).
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    name: String,
    tensors: Vec<TensorInfo>,
    nodes: Vec<Node>,
    input: TensorId,
    output: TensorId,
}

impl Graph {
    /// The graph's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Every tensor, indexed by [`TensorId`].
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    /// One tensor.
    pub fn tensor(&self, t: TensorId) -> &TensorInfo {
        &self.tensors[t.0]
    }
    /// The nodes in topological (execution) order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    /// The graph input.
    pub fn input(&self) -> TensorId {
        self.input
    }
    /// The graph output.
    pub fn output(&self) -> TensorId {
        self.output
    }
    /// The node producing tensor `t` (`None` for the graph input).
    pub fn producer(&self, t: TensorId) -> Option<usize> {
        self.nodes.iter().position(|n| n.output == t)
    }
    /// The input quantization of node `i`'s first input.
    pub fn input_quant(&self, node: usize) -> &Quant {
        &self.tensor(self.nodes[node].inputs[0]).quant
    }
    /// Quantize a float32 input sample with the graph input's quantizer
    /// ([`Quant::quantize`]); the length must be the input's element count.
    pub fn quantize_input(&self, x: &[f32]) -> Result<Vec<i64>> {
        let t = self.tensor(self.input);
        if x.len() != t.len() {
            return Err(Error::field("input length", x.len(), t.len()));
        }
        Ok(x.iter().map(|&v| t.quant.quantize(v)).collect())
    }
}
