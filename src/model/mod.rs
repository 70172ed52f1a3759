//! Quantized models: the `bitmac-model/1` file format (`docs/model-format.md`),
//! its validating loader, the data set and reference files that come with the
//! shipped models, and a pure-Rust integer reference inference.
//!
//! Invariants of a loaded [`Model`] (checked once in [`Model::load`] /
//! [`Model::from_json_str`]; code using a `Model` may rely on them):
//! - at least one layer; each layer's `input_shape` equals the previous
//!   layer's `output_shape` (the first equals the model's input shape), and
//!   every `output_shape` is the one the layer's geometry produces;
//! - every weight array has exactly `product(shape)` codes, each inside the
//!   code range of its quantizer's bits (2..=16) and signedness;
//! - every step is a finite float32 > 0; biases fit int32;
//! - every accumulator of the exact integer inference fits in 2^53 (so it
//!   is exact in i64 and in f64);
//! - the last layer has no ReLU (it outputs logits).

mod data;
mod forward;
mod reference;

pub use data::{Dataset, DIGITS_CLASSES, DIGITS_FEATURES, DIGITS_PIXEL_MAX};
pub use forward::{
    argmax, layer_accumulators, reference_forward, reference_requant, reference_trace, LayerTrace,
};
pub use reference::{sha256_hex, FakeQuantRef, HiddenCodes, IntegerRef, Reference, REF_FORMAT};

use crate::error::{json_error, Error, Result};
use serde::Deserialize;
use std::path::Path;

/// The shipped default model, relative to the repository root.
pub const DEFAULT_MODEL_PATH: &str = "models/cnn_w4a4.json";
/// The shipped test split, relative to the repository root.
pub const DEFAULT_DATA_PATH: &str = "models/data/digits_test.csv";

// The default model, its reference and the test split are compiled in, so
// `bitmac run` works from any directory (the files are the committed ones;
// `Reference::verify_bytes` checks they belong together).
const EMBEDDED_MODEL: &str = include_str!("../../models/cnn_w4a4.json");
const EMBEDDED_REFERENCE: &str = include_str!("../../models/cnn_w4a4.ref.json");
const EMBEDDED_TEST_DATA: &str = include_str!("../../models/data/digits_test.csv");

/// The embedded default model (`models/cnn_w4a4.json` at build time).
pub fn default_model() -> Result<Model> {
    Model::from_json_str(EMBEDDED_MODEL, &format!("(embedded) {DEFAULT_MODEL_PATH}"))
}

/// The embedded test split (`models/data/digits_test.csv` at build time).
pub fn default_test_data() -> Result<Dataset> {
    Dataset::parse(EMBEDDED_TEST_DATA, &format!("(embedded) {DEFAULT_DATA_PATH}"))
}

/// SHA-256 (hex) of the embedded default model file's bytes.
pub fn default_model_sha256() -> String {
    sha256_hex(EMBEDDED_MODEL.as_bytes())
}

/// SHA-256 (hex) of the embedded test split's bytes.
pub fn default_test_data_sha256() -> String {
    sha256_hex(EMBEDDED_TEST_DATA.as_bytes())
}

/// The embedded reference of the default model, checked against the
/// embedded model and data (SHA-256). Its paths point into `models/`.
pub fn default_reference() -> Result<Reference> {
    let r = Reference::from_json_str(
        EMBEDDED_REFERENCE,
        "(embedded) models/cnn_w4a4.ref.json",
        Path::new("models"),
    )?;
    r.verify_bytes(EMBEDDED_MODEL.as_bytes(), EMBEDDED_TEST_DATA.as_bytes())?;
    Ok(r)
}

/// The `format` value of a model file this build reads.
pub const MODEL_FORMAT: &str = "bitmac-model/1";

/// Largest element count of any activation or weight tensor (2^26): keeps a
/// malformed file from making bitmac allocate gigabytes.
pub const MAX_ELEMENTS: usize = 1 << 26;

/// Largest worst-case |accumulator| allowed (2^53): accumulators stay exact
/// in i64 and when converted to f64 for the reference requant.
pub const MAX_ACC_MAGNITUDE: u128 = 1 << 53;

// ---------------------------------------------------------------------------
// Validated types

/// One LSQ quantizer: `bits`, signedness and the float32 step size.
/// Codes range over `[-2^(bits-1), 2^(bits-1)-1]` when signed and
/// `[0, 2^bits-1]` when unsigned (the LSQ paper's Qn/Qp).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quant {
    bits: u32,
    signed: bool,
    step: f32,
}

impl Quant {
    /// A validated quantizer: `bits` in 2..=16, `step` finite and > 0.
    pub fn new(bits: u32, signed: bool, step: f32) -> Result<Quant> {
        if !(2..=16).contains(&bits) {
            return Err(Error::field("bits", bits, "2..=16"));
        }
        if !(step.is_finite() && step > 0.0) {
            return Err(Error::field("step", step, "finite float32 > 0"));
        }
        Ok(Quant { bits, signed, step })
    }

    /// Bit width, 2..=16.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// True for two's-complement codes, false for unsigned codes.
    pub fn signed(&self) -> bool {
        self.signed
    }

    /// The step size (float32, finite, > 0).
    pub fn step(&self) -> f32 {
        self.step
    }

    /// Smallest code: `-2^(bits-1)` signed, `0` unsigned.
    pub fn min_code(&self) -> i64 {
        if self.signed {
            -(1i64 << (self.bits - 1))
        } else {
            0
        }
    }

    /// Largest code: `2^(bits-1)-1` signed, `2^bits-1` unsigned.
    pub fn max_code(&self) -> i64 {
        if self.signed {
            (1i64 << (self.bits - 1)) - 1
        } else {
            (1i64 << self.bits) - 1
        }
    }

    /// The LSQ forward on one float32 value, exactly as PyTorch computes it:
    /// `round_half_even(clamp(v / step, min_code, max_code))`, where `/` is an
    /// IEEE float32 division (round to nearest even) and the clamp bounds
    /// are exact in float32 (|bounds| <= 2^16). NaN input gives 0 (never
    /// produced by bitmac's inputs).
    pub fn quantize(&self, v: f32) -> i32 {
        let x = (v / self.step).clamp(self.min_code() as f32, self.max_code() as f32);
        // round_ties_even, not round: torch.round ties to even.
        x.round_ties_even() as i32
    }
}

/// A weight tensor: its quantizer, shape and integer codes (row-major in
/// `shape`: OIHW for conv2d, [out][in] for dense).
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    quant: Quant,
    shape: Vec<usize>,
    codes: Vec<i32>,
}

impl Weights {
    /// The weight quantizer (bits, signedness, step).
    pub fn quant(&self) -> &Quant {
        &self.quant
    }
    /// The tensor shape: `[O, C, KH, KW]` for conv2d, `[out, in]` for dense.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The codes, row-major in `shape`. Viewed as a matrix they are
    /// `[out][K]` with `K = C*KH*KW` (conv2d, K index `(c*KH + ky)*KW + kx`)
    /// or `K = in` (dense).
    pub fn codes(&self) -> &[i32] {
        &self.codes
    }
}

/// A 2-D convolution (cross-correlation, as PyTorch's conv2d), zero padding,
/// no dilation, no groups. Input and output are `[C, H, W]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    name: String,
    input_shape: [usize; 3],
    output_shape: [usize; 3],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    input_quant: Quant,
    weight: Weights,
    bias: Vec<i32>,
    bias_float: Option<Vec<f32>>,
    relu: bool,
}

impl Conv2d {
    /// `[C, H, W]` of the input.
    pub fn input_shape(&self) -> [usize; 3] {
        self.input_shape
    }
    /// `[O, OH, OW]` of the output, `OH = (H + 2*ph - kh) / sh + 1` (floor).
    pub fn output_shape(&self) -> [usize; 3] {
        self.output_shape
    }
    /// `[kh, kw]`.
    pub fn kernel(&self) -> [usize; 2] {
        self.kernel
    }
    /// `[sh, sw]`, each >= 1.
    pub fn stride(&self) -> [usize; 2] {
        self.stride
    }
    /// `[ph, pw]`: zero rows/columns added on each side (code 0).
    pub fn padding(&self) -> [usize; 2] {
        self.padding
    }
    /// Output channels `O`.
    pub fn out_channels(&self) -> usize {
        self.output_shape[0]
    }
}

/// A fully connected layer `[out][in]`. When its input is `[C, H, W]` it is
/// flattened in NCHW (C-major) order first: element `(c, y, x)` has index
/// `(c*H + y)*W + x`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    name: String,
    input_shape: Vec<usize>,
    in_features: usize,
    out_features: usize,
    flatten: bool,
    input_quant: Quant,
    weight: Weights,
    bias: Vec<i32>,
    bias_float: Option<Vec<f32>>,
    relu: bool,
}

impl Dense {
    /// Number of inputs (the product of the input shape).
    pub fn in_features(&self) -> usize {
        self.in_features
    }
    /// Number of outputs.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
    /// True when the input is `[C, H, W]` and is flattened C-major first.
    pub fn flatten(&self) -> bool {
        self.flatten
    }
}

/// One layer of a model (a plain chain; the datapath runs conv2d and dense
/// with fused ReLU, and flatten).
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// A 2-D convolution.
    Conv2d(Conv2d),
    /// A fully connected layer (with an optional NCHW flatten of its input).
    Dense(Dense),
}

macro_rules! common {
    ($self:ident, $f:ident) => {
        match $self {
            Layer::Conv2d(l) => &l.$f,
            Layer::Dense(l) => &l.$f,
        }
    };
}

impl Layer {
    /// The layer's name (unique within the model).
    pub fn name(&self) -> &str {
        common!(self, name)
    }
    /// `"conv2d"` or `"dense"` (the file's `type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Conv2d(_) => "conv2d",
            Layer::Dense(_) => "dense",
        }
    }
    /// The quantizer of this layer's input activations (its step is `s_a`).
    pub fn input_quant(&self) -> &Quant {
        common!(self, input_quant)
    }
    /// The weight tensor.
    pub fn weight(&self) -> &Weights {
        common!(self, weight)
    }
    /// The int32 bias, one per output channel / feature, in accumulator
    /// units (`s_w * s_a`).
    pub fn bias(&self) -> &[i32] {
        common!(self, bias)
    }
    /// The float bias the bias was rounded from, if the file carries it
    /// (informational; the integer path uses [`Layer::bias`]).
    pub fn bias_float(&self) -> Option<&[f32]> {
        common!(self, bias_float).as_deref()
    }
    /// True when ReLU is fused before the output quantizer.
    pub fn relu(&self) -> bool {
        *common!(self, relu)
    }
    /// The input shape (`[C, H, W]` or `[N]`).
    pub fn input_shape(&self) -> &[usize] {
        match self {
            Layer::Conv2d(l) => &l.input_shape,
            Layer::Dense(l) => &l.input_shape,
        }
    }
    /// The output shape (`[O, OH, OW]` or `[out]`).
    pub fn output_shape(&self) -> Vec<usize> {
        match self {
            Layer::Conv2d(l) => l.output_shape.to_vec(),
            Layer::Dense(l) => vec![l.out_features],
        }
    }
    /// Number of input elements.
    pub fn input_len(&self) -> usize {
        self.input_shape().iter().product()
    }
    /// Number of output elements.
    pub fn output_len(&self) -> usize {
        self.output_shape().iter().product()
    }
    /// The output channel (conv2d) or feature (dense) of output element `j`
    /// (NCHW order for conv2d).
    pub fn channel_of(&self, j: usize) -> usize {
        match self {
            Layer::Conv2d(l) => j / (l.output_shape[1] * l.output_shape[2]),
            Layer::Dense(_) => j,
        }
    }
    /// How much rounding the float bias to the int32 bias moved output
    /// channel `o`, in accumulator units (`s_w * s_a`):
    /// `bias_int[o] - f64(b[o]) / (f64(s_w) * f64(s_a))` (docs/model-format.md
    /// 1.4; at most 0.5 in magnitude for a bias exported by that rule).
    /// `None` when the file has no `bias_float`.
    pub fn bias_rounding(&self, o: usize) -> Option<f64> {
        let b = *self.bias_float()?.get(o)?;
        let unit = self.weight().quant().step() as f64 * self.input_quant().step() as f64;
        Some(self.bias()[o] as f64 - b as f64 / unit)
    }
    /// Number of output channels (conv2d) or features (dense): the length
    /// of the bias and the GEMM's N.
    pub fn out_channels(&self) -> usize {
        match self {
            Layer::Conv2d(l) => l.out_channels(),
            Layer::Dense(l) => l.out_features,
        }
    }
    /// The layer as a GEMM `[M][K] x [K][N]`: `(M, K, N)` with M the
    /// number of output positions (`OH*OW` for conv2d, 1 for dense), K the
    /// reduction length (`C*KH*KW` or `in`), N the output channels.
    pub fn gemm_dims(&self) -> (usize, usize, usize) {
        let w = self.weight().shape();
        let k: usize = w[1..].iter().product();
        match self {
            Layer::Conv2d(l) => (l.output_shape[1] * l.output_shape[2], k, l.out_channels()),
            Layer::Dense(l) => (1, k, l.out_features),
        }
    }
}

/// How raw data becomes the float input of the first layer's quantizer:
/// `x = f32(raw) * scale` (one IEEE float32 multiplication).
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    shape: Vec<usize>,
    raw_min: i64,
    raw_max: i64,
    scale: f32,
}

impl InputSpec {
    /// Input shape, `[C, H, W]` or `[N]`.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Smallest raw value accepted.
    pub fn raw_min(&self) -> i64 {
        self.raw_min
    }
    /// Largest raw value accepted.
    pub fn raw_max(&self) -> i64 {
        self.raw_max
    }
    /// The float32 scale applied to raw values.
    pub fn scale(&self) -> f32 {
        self.scale
    }
    /// Number of input elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Never true for a validated model (kept for the `len` convention).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A validated quantized model (see the module invariants).
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    name: String,
    description: String,
    input: InputSpec,
    layers: Vec<Layer>,
}

impl Model {
    /// Read and validate a model file. Every error is one line naming the
    /// file, the layer (index and name) when it concerns one, and the field.
    pub fn load(path: &Path) -> Result<Model> {
        let text = crate::io::read_to_string(path)?;
        Model::from_json_str(&text, &path.display().to_string())
    }

    /// Parse and validate a model from JSON text; `what` (usually the file
    /// name) prefixes every error.
    pub fn from_json_str(text: &str, what: &str) -> Result<Model> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| json_error(what, &e))?;
        let spec: ModelJson = serde_path_to_error::deserialize(&value).map_err(|e| {
            let path = e.path().to_string();
            Error::input(format!("{}: {}", locate(&value, &path), e.inner())).context(what)
        })?;
        spec.validate().map_err(|e| e.context(what))
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Free-form description.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// The input description (shape, raw range, scale).
    pub fn input(&self) -> &InputSpec {
        &self.input
    }
    /// The layers, in execution order (at least one).
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
    /// Number of logits (the last layer's output length).
    pub fn num_classes(&self) -> usize {
        self.layers.last().map_or(0, Layer::output_len)
    }

    /// The quantizer of layer `l`'s output: the next layer's input
    /// quantizer, or `None` for the last layer (raw int logits).
    pub fn output_quant(&self, l: usize) -> Option<&Quant> {
        self.layers.get(l + 1).map(Layer::input_quant)
    }

    /// The real multiplier of the f64 **integer reference** (not the
    /// hardware's) for hidden layer `l`, `M_ref = (f64(s_w) * f64(s_a)) /
    /// f64(s_out)`: the product is exact in f64, the division rounds to
    /// nearest even. It is the formula of `models/export.py`, which computed
    /// the committed `integer` references; only [`super::reference_trace`]
    /// uses it. `None` for the last layer. The hardware multiplier is
    /// [`Model::multiplier`].
    pub fn reference_multiplier(&self, l: usize) -> Option<f64> {
        let layer = self.layers.get(l)?;
        let out = self.output_quant(l)?;
        let sw = layer.weight().quant().step() as f64;
        let sa = layer.input_quant().step() as f64;
        Some((sw * sa) / out.step() as f64)
    }

    /// The hardware requantization multiplier of hidden layer `l`:
    /// [`crate::requant::step_multiplier`]`(s_w, s_a, s_out)`, the one
    /// function every command uses (`docs/requant.md`). `Ok(None)` for the
    /// last layer (its accumulators are the logits; no requantization).
    pub fn multiplier(&self, l: usize) -> Result<Option<crate::requant::Multiplier>> {
        let (Some(layer), Some(out)) = (self.layers.get(l), self.output_quant(l)) else {
            return Ok(None);
        };
        crate::requant::step_multiplier(layer.weight().quant().step(), layer.input_quant().step(), out.step())
            .map(Some)
            .map_err(|e| e.context(format!("layer {l} ({}) multiplier", layer.name())))
    }

    /// The real value of one unit of layer `l`'s accumulator,
    /// `f64(s_w) * f64(s_a)` (exact): the fake-quant pre-activation is
    /// about `acc * acc_scale(l)`; for the last layer the float logits are
    /// about `integer logits * acc_scale`.
    pub fn acc_scale(&self, l: usize) -> f64 {
        let layer = &self.layers[l];
        layer.weight().quant().step() as f64 * layer.input_quant().step() as f64
    }

    /// The output code range `(lo, hi)` of hidden layer `l`: the next
    /// quantizer's range, with `lo` raised to 0 when ReLU is fused. `None`
    /// for the last layer.
    pub fn output_range(&self, l: usize) -> Option<(i64, i64)> {
        let q = self.output_quant(l)?;
        let lo = if self.layers[l].relu() { q.min_code().max(0) } else { q.min_code() };
        Some((lo, q.max_code()))
    }

    /// The first layer's input codes for one raw sample:
    /// `code = round_half_even(clamp(f32(raw) * scale / s_in, lo, hi))`,
    /// every operation in IEEE float32 (round to nearest even), exactly as
    /// the PyTorch fake-quant forward computes them. Errors if the length
    /// differs from the input size or a value is outside `raw_min..=raw_max`.
    ///
    /// `raw` holds each raw value as the f32 `f32(raw)` (see
    /// [`Dataset`]: exact for integer samples below 2^24).
    pub fn input_codes(&self, raw: &[f32]) -> Result<Vec<i32>> {
        if raw.len() != self.input.len() {
            return Err(Error::field("input length", raw.len(), self.input.len()));
        }
        let q = self.layers[0].input_quant();
        let (lo, hi) = (self.input.raw_min as f32, self.input.raw_max as f32);
        raw.iter()
            .enumerate()
            .map(|(i, &r)| {
                if !(lo..=hi).contains(&r) {
                    return Err(Error::field(
                        format!("input[{i}]"),
                        r,
                        format!("{}..={}", self.input.raw_min, self.input.raw_max),
                    ));
                }
                Ok(q.quantize(r * self.input.scale))
            })
            .collect()
    }
}

/// Turn a serde path such as `layers[2].weight.step` into
/// `layer 2 (conv2): weight.step`, reading the layer's name from the JSON.
fn locate(value: &serde_json::Value, path: &str) -> String {
    if let Some(rest) = path.strip_prefix("layers[") {
        if let Some(end) = rest.find(']') {
            if let Ok(i) = rest[..end].parse::<usize>() {
                let name = value
                    .get("layers")
                    .and_then(|l| l.get(i))
                    .and_then(|l| l.get("name"))
                    .and_then(|n| n.as_str())
                    .unwrap_or("?");
                let field = rest[end + 1..].trim_start_matches('.');
                if field.is_empty() {
                    // serde's message names the field (e.g. "missing field `relu`").
                    return format!("layer {i} ({name})");
                }
                return format!("layer {i} ({name}): {field}");
            }
        }
    }
    if path.is_empty() || path == "." {
        "(top level)".to_string()
    } else {
        path.to_string()
    }
}

// ---------------------------------------------------------------------------
// The JSON boundary

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelJson {
    format: String,
    name: String,
    #[serde(default)]
    description: String,
    input: InputJson,
    layers: Vec<LayerJson>,
    /// Free-form provenance (training script, seed, ...); not interpreted.
    #[serde(default)]
    #[allow(dead_code)]
    training: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputJson {
    shape: Vec<i64>,
    raw_min: i64,
    raw_max: i64,
    scale: f64,
    #[serde(default)]
    scale_bits: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuantJson {
    bits: i64,
    signed: bool,
    step: f64,
    #[serde(default)]
    step_bits: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightJson {
    bits: i64,
    signed: bool,
    step: f64,
    #[serde(default)]
    step_bits: Option<String>,
    shape: Vec<i64>,
    codes: Vec<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerJson {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    input_shape: Vec<i64>,
    output_shape: Vec<i64>,
    #[serde(default)]
    out_channels: Option<i64>,
    #[serde(default)]
    kernel: Option<Vec<i64>>,
    #[serde(default)]
    stride: Option<Vec<i64>>,
    #[serde(default)]
    padding: Option<Vec<i64>>,
    #[serde(default)]
    out_features: Option<i64>,
    #[serde(default)]
    flatten: Option<bool>,
    input_quant: QuantJson,
    weight: WeightJson,
    bias: Vec<i64>,
    #[serde(default)]
    bias_float: Option<Vec<f64>>,
    relu: bool,
}

fn fmt_shape(s: &[impl std::fmt::Display]) -> String {
    let parts: Vec<String> = s.iter().map(|v| v.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// A decimal step/scale to float32 (nearest, ties to even), checked finite
/// and > 0, and against its `*_bits` hex form when present.
fn to_f32(field: &str, v: f64, bits: Option<&str>) -> Result<f32> {
    let f = v as f32;
    if !(f.is_finite() && f > 0.0) {
        // Debug formatting keeps 1e-50 short (Display would print 50 zeros).
        return Err(Error::field(field, format!("{v:?}"), "finite float32 > 0"));
    }
    if let Some(b) = bits {
        let parsed = b
            .strip_prefix("0x")
            .filter(|h| h.len() == 8)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| {
                Error::field(format!("{field}_bits"), format!("{b:?}"), "\"0x\" + 8 hex digits")
            })?;
        if parsed != f.to_bits() {
            return Err(Error::input(format!(
                "{field}_bits: {b} does not match {field} {v:?} (float32 bits 0x{:08x})",
                f.to_bits()
            )));
        }
    }
    Ok(f)
}

fn quant_from(field: &str, bits: i64, signed: bool, step: f64, step_bits: Option<&str>) -> Result<Quant> {
    if !(2..=16).contains(&bits) {
        return Err(Error::field(format!("{field}.bits"), bits, "2..=16"));
    }
    let step = to_f32(&format!("{field}.step"), step, step_bits)?;
    Ok(Quant { bits: bits as u32, signed, step })
}

/// A shape: 1 or 3 dims (`what` says which are allowed), each in 1..=MAX_ELEMENTS,
/// product <= MAX_ELEMENTS.
fn shape_from(field: &str, s: &[i64], lens: &[usize]) -> Result<Vec<usize>> {
    if !lens.contains(&s.len()) {
        let allowed: Vec<String> = lens.iter().map(|l| l.to_string()).collect();
        return Err(Error::field(
            field,
            format!("{} ({} dims)", fmt_shape(s), s.len()),
            format!("{} dims", allowed.join(" or ")),
        ));
    }
    let mut total: usize = 1;
    let mut out = Vec::with_capacity(s.len());
    for &d in s {
        if d < 1 || d as u64 > MAX_ELEMENTS as u64 {
            return Err(Error::field(field, fmt_shape(s), format!("every dimension in 1..={MAX_ELEMENTS}")));
        }
        total = total.saturating_mul(d as usize);
        out.push(d as usize);
    }
    if total > MAX_ELEMENTS {
        return Err(Error::field(field, fmt_shape(s), format!("at most {MAX_ELEMENTS} elements")));
    }
    Ok(out)
}

fn pair(field: &str, v: &Option<Vec<i64>>, kind: &str, min: i64) -> Result<[usize; 2]> {
    let v = v.as_ref().ok_or_else(|| Error::input(format!("{field}: missing (required for {kind})")))?;
    if v.len() != 2 || v.iter().any(|&x| x < min || x > MAX_ELEMENTS as i64) {
        return Err(Error::field(field, fmt_shape(v), format!("[a,b] with each in {min}..={MAX_ELEMENTS}")));
    }
    Ok([v[0] as usize, v[1] as usize])
}

fn forbid<T>(field: &str, v: &Option<T>, kind: &str) -> Result<()> {
    if v.is_some() {
        return Err(Error::input(format!("{field}: not allowed for a {kind} layer")));
    }
    Ok(())
}

impl ModelJson {
    fn validate(self) -> Result<Model> {
        if self.format != MODEL_FORMAT {
            return Err(Error::field("format", format!("{:?}", self.format), format!("{MODEL_FORMAT:?}")));
        }
        if self.name.is_empty() {
            return Err(Error::field("name", "\"\"", "a non-empty string"));
        }
        let input_shape = shape_from("input.shape", &self.input.shape, &[1, 3])?;
        if self.input.raw_min > self.input.raw_max || self.input.raw_min < 0 || self.input.raw_max > 255 {
            return Err(Error::field(
                "input.raw_min..raw_max",
                format!("{}..{}", self.input.raw_min, self.input.raw_max),
                "0 <= raw_min <= raw_max <= 255",
            ));
        }
        let scale = to_f32("input.scale", self.input.scale, self.input.scale_bits.as_deref())?;
        let input =
            InputSpec { shape: input_shape, raw_min: self.input.raw_min, raw_max: self.input.raw_max, scale };
        if self.layers.is_empty() {
            return Err(Error::field("layers", "[] (no layers)", "at least one layer"));
        }
        let n = self.layers.len();
        let mut layers: Vec<Layer> = Vec::with_capacity(n);
        let mut prev_out: Vec<usize> = input.shape.clone();
        for (i, lj) in self.layers.into_iter().enumerate() {
            let ctx = format!("layer {i} ({})", lj.name);
            if let Some(j) = layers.iter().position(|l| l.name() == lj.name) {
                return Err(Error::input(format!("name: duplicate of layer {j}")).context(ctx));
            }
            let layer = layer_from(lj, &prev_out, i == 0, i + 1 == n).map_err(|e| e.context(&ctx))?;
            prev_out = layer.output_shape();
            layers.push(layer);
        }
        let model = Model { name: self.name, description: self.description, input, layers };
        check_accumulators(&model)?;
        Ok(model)
    }
}

fn layer_from(lj: LayerJson, prev_out: &[usize], first: bool, last: bool) -> Result<Layer> {
    if lj.name.is_empty() {
        return Err(Error::field("name", "\"\"", "a non-empty string"));
    }
    let input_quant = quant_from(
        "input_quant",
        lj.input_quant.bits,
        lj.input_quant.signed,
        lj.input_quant.step,
        lj.input_quant.step_bits.as_deref(),
    )?;
    let wq = quant_from(
        "weight",
        lj.weight.bits,
        lj.weight.signed,
        lj.weight.step,
        lj.weight.step_bits.as_deref(),
    )?;
    let input_shape = shape_from("input_shape", &lj.input_shape, &[1, 3])?;
    if input_shape != prev_out {
        let prev = if first { "the model input shape" } else { "the previous layer's output_shape" };
        return Err(Error::input(format!(
            "input_shape: {} does not match {prev} {}",
            fmt_shape(&input_shape),
            fmt_shape(prev_out)
        )));
    }
    let wshape = shape_from("weight.shape", &lj.weight.shape, &[2, 4])?;
    if lj.weight.codes.len() != wshape.iter().product::<usize>() {
        return Err(Error::input(format!(
            "weight.codes: has {} codes but weight.shape {} needs {}",
            lj.weight.codes.len(),
            fmt_shape(&wshape),
            wshape.iter().product::<usize>()
        )));
    }
    let (lo, hi) = (wq.min_code(), wq.max_code());
    let mut codes = Vec::with_capacity(lj.weight.codes.len());
    for (j, &c) in lj.weight.codes.iter().enumerate() {
        if c < lo || c > hi {
            let sign = if wq.signed { "signed" } else { "unsigned" };
            return Err(Error::field(
                format!("weight.codes[{j}]"),
                c,
                format!("{lo}..={hi} for {} {sign} bits", wq.bits),
            ));
        }
        codes.push(c as i32);
    }
    let weight = Weights { quant: wq, shape: wshape.clone(), codes };
    let kind = lj.kind.as_str();
    let out_ch = wshape[0];
    let layer = match kind {
        "conv2d" => {
            forbid("out_features", &lj.out_features, kind)?;
            forbid("flatten", &lj.flatten, kind)?;
            if input_shape.len() != 3 {
                return Err(Error::field("input_shape", fmt_shape(&input_shape), "[C,H,W] for conv2d"));
            }
            let o =
                lj.out_channels.ok_or_else(|| Error::input("out_channels: missing (required for conv2d)"))?;
            if o < 1 || o > MAX_ELEMENTS as i64 {
                return Err(Error::field("out_channels", o, format!("1..={MAX_ELEMENTS}")));
            }
            let o = o as usize;
            let kernel = pair("kernel", &lj.kernel, kind, 1)?;
            let stride = pair("stride", &lj.stride, kind, 1)?;
            let padding = pair("padding", &lj.padding, kind, 0)?;
            let [c, h, w] = [input_shape[0], input_shape[1], input_shape[2]];
            let expect_w = vec![o, c, kernel[0], kernel[1]];
            if wshape != expect_w {
                return Err(Error::input(format!(
                    "weight.shape: {} does not match [out_channels, C, kh, kw] = {}",
                    fmt_shape(&wshape),
                    fmt_shape(&expect_w)
                )));
            }
            let (ph, pw) = (h + 2 * padding[0], w + 2 * padding[1]);
            if ph < kernel[0] || pw < kernel[1] {
                return Err(Error::input(format!(
                    "kernel: {} is larger than the padded input {}x{}",
                    fmt_shape(&kernel),
                    ph,
                    pw
                )));
            }
            let out = [o, (ph - kernel[0]) / stride[0] + 1, (pw - kernel[1]) / stride[1] + 1];
            let declared = shape_from("output_shape", &lj.output_shape, &[3])?;
            if declared != out {
                return Err(Error::input(format!(
                    "output_shape: {} does not match the conv2d geometry, which gives {}",
                    fmt_shape(&declared),
                    fmt_shape(&out)
                )));
            }
            Layer::Conv2d(Conv2d {
                name: lj.name,
                input_shape: [c, h, w],
                output_shape: out,
                kernel,
                stride,
                padding,
                input_quant,
                weight,
                bias: Vec::new(),
                bias_float: None,
                relu: lj.relu,
            })
        }
        "dense" => {
            forbid("out_channels", &lj.out_channels, kind)?;
            forbid("kernel", &lj.kernel, kind)?;
            forbid("stride", &lj.stride, kind)?;
            forbid("padding", &lj.padding, kind)?;
            let flatten = lj.flatten.unwrap_or(false);
            if flatten != (input_shape.len() == 3) {
                return Err(Error::field(
                    "flatten",
                    flatten,
                    format!("{} for input_shape {}", input_shape.len() == 3, fmt_shape(&input_shape)),
                ));
            }
            let o =
                lj.out_features.ok_or_else(|| Error::input("out_features: missing (required for dense)"))?;
            let inf: usize = input_shape.iter().product();
            let expect_w = vec![o.max(0) as usize, inf];
            if o < 1 || wshape != expect_w {
                return Err(Error::input(format!(
                    "weight.shape: {} does not match [out_features, in_features] = [{},{}]",
                    fmt_shape(&wshape),
                    o,
                    inf
                )));
            }
            let declared = shape_from("output_shape", &lj.output_shape, &[1])?;
            if declared != [o as usize] {
                return Err(Error::input(format!(
                    "output_shape: {} does not match out_features {o}",
                    fmt_shape(&declared)
                )));
            }
            Layer::Dense(Dense {
                name: lj.name,
                input_shape,
                in_features: inf,
                out_features: o as usize,
                flatten,
                input_quant,
                weight,
                bias: Vec::new(),
                bias_float: None,
                relu: lj.relu,
            })
        }
        other => return Err(Error::field("type", format!("{other:?}"), "\"conv2d\" or \"dense\"")),
    };
    if lj.bias.len() != out_ch {
        return Err(Error::input(format!(
            "bias: has {} values but the layer has {out_ch} output channels",
            lj.bias.len()
        )));
    }
    let mut bias = Vec::with_capacity(out_ch);
    for (j, &b) in lj.bias.iter().enumerate() {
        let b32 = i32::try_from(b).map_err(|_| Error::field(format!("bias[{j}]"), b, "int32"))?;
        bias.push(b32);
    }
    let bias_float = match lj.bias_float {
        None => None,
        Some(bf) => {
            if bf.len() != out_ch {
                return Err(Error::input(format!(
                    "bias_float: has {} values but the layer has {out_ch} output channels",
                    bf.len()
                )));
            }
            let mut v = Vec::with_capacity(out_ch);
            for (j, &b) in bf.iter().enumerate() {
                let f = b as f32;
                if !f.is_finite() {
                    return Err(Error::field(format!("bias_float[{j}]"), format!("{b:?}"), "finite float32"));
                }
                v.push(f);
            }
            Some(v)
        }
    };
    if last && lj.relu {
        return Err(Error::field("relu", true, "false for the last layer (it outputs logits)"));
    }
    Ok(match layer {
        Layer::Conv2d(mut l) => {
            l.bias = bias;
            l.bias_float = bias_float;
            Layer::Conv2d(l)
        }
        Layer::Dense(mut l) => {
            l.bias = bias;
            l.bias_float = bias_float;
            Layer::Dense(l)
        }
    })
}

/// Worst case |acc| = max over outputs of sum|w| * max|a| + |bias| must stay
/// below 2^53 so the reference inference is exact in i64 and in f64.
fn check_accumulators(model: &Model) -> Result<()> {
    for (i, layer) in model.layers.iter().enumerate() {
        let q = layer.input_quant();
        let amax = q.min_code().unsigned_abs().max(q.max_code().unsigned_abs()) as u128;
        let (_, k, n) = layer.gemm_dims();
        let codes = layer.weight().codes();
        for o in 0..n {
            let l1: u128 = codes[o * k..(o + 1) * k].iter().map(|&c| c.unsigned_abs() as u128).sum();
            let bound = l1 * amax + layer.bias()[o].unsigned_abs() as u128;
            if bound >= MAX_ACC_MAGNITUDE {
                return Err(Error::field(
                    format!("weight.codes (output channel {o})"),
                    format!("worst-case |accumulator| {bound}"),
                    "< 2^53",
                )
                .context(format!("layer {i} ({})", layer.name())));
            }
        }
    }
    Ok(())
}
