//! ONNX import (QONNX and QDQ) onto the quantized graph. Normative doc: `docs/onnx.md`.
//!
//! The importer walks the ONNX nodes once, in file order (ONNX requires topological order),
//! keeping for every ONNX tensor name a [`Val`]: a constant, a quantized constant (weights,
//! biases), a quantized activation (a graph tensor), or a *pending* float result (a conv,
//! dense, add, concat or pool whose output quantizer has not been seen yet). A quantizer
//! (`Quant`, `QuantizeLinear`, `Trunc`) applied to a pending result adds the graph node with
//! that output quantization. Everything else is an error naming the node, its op type and what
//! is unsupported: `node 'NAME' (OP): ...`.
//!
//! Only translation happens here; the integer semantics of every node are the graph's
//! (`docs/graph.md`).

use super::proto::{self, attr_type, data_type, AttributeProto, NodeProto, TensorProto};
use crate::error::{Error, Result};
use crate::graph::{
    Activation, AvgPool, Bias, Conv2d, Dense, DivRounding, Graph, GraphBuilder, Op, Quant, RequantMode,
    Scale, TensorId, Weights, Window, MAX_ELEMENTS,
};
use std::collections::BTreeMap;
use std::path::Path;

/// Import options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// The requantization mode of every requantizing node (conv, dense, add, concat, rescaling
    /// pools). `Float32` is ONNX Runtime's (the default for ONNX models).
    pub requant: RequantMode,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { requant: RequantMode::Float32 }
    }
}

/// What the importer recognised, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// QONNX (`Quant` nodes).
    Qonnx,
    /// ONNX QDQ (`QuantizeLinear`/`DequantizeLinear`, QLinear ops).
    Qdq,
}

/// An imported model: the graph and what it came from.
#[derive(Clone, Debug)]
pub struct Imported {
    pub graph: Graph,
    pub flavor: Flavor,
    /// The ONNX graph output's name.
    pub output_name: String,
    /// Every ONNX tensor that names a graph tensor (a quantizer's output, a MaxPool's, ...),
    /// in file order: how reference codes keyed by ONNX tensor name find bitmac's.
    pub bindings: Vec<(String, TensorId)>,
}

/// Read and import an `.onnx` file. Errors name the file.
pub fn load(path: &Path, opts: ImportOptions) -> Result<Imported> {
    let ctx = |e: Error| e.context(path.display());
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, &e))?;
    if meta.len() > proto::MAX_MODEL_BYTES {
        return Err(ctx(Error::field(
            "file size",
            meta.len(),
            format!("<= {} bytes", proto::MAX_MODEL_BYTES),
        )));
    }
    let bytes = crate::io::read(path)?;
    import_bytes(&bytes, opts).map_err(ctx)
}

/// Import an ONNX model from its bytes.
pub fn import_bytes(bytes: &[u8], opts: ImportOptions) -> Result<Imported> {
    let model = proto::decode_model(bytes).map_err(Error::input)?;
    let graph = model.graph.as_ref().ok_or_else(|| Error::input("the model has no graph"))?;
    let mut opset = None;
    for o in &model.opset_import {
        let d = o.domain.as_deref().unwrap_or("");
        if d.is_empty() || d == "ai.onnx" {
            opset = o.version;
        }
    }
    let opset = opset.unwrap_or(1);
    if !(7..=23).contains(&opset) {
        return Err(Error::field("opset_import (ai.onnx)", opset, "7..=23"));
    }
    let name = graph.name.clone().unwrap_or_default();
    let mut imp = Importer::new(if name.is_empty() { "onnx".into() } else { name }, opts);
    imp.run(graph)
}

// ---------------------------------------------------------------------------------------------
// Constants

/// A constant's values, shared (`Arc`): the importer passes constants
/// between ONNX nodes by value, and a clone must not copy the weights.
#[derive(Clone, Debug)]
enum Data {
    F32(std::sync::Arc<Vec<f32>>),
    Int(std::sync::Arc<Vec<i64>>),
}

fn f32d(v: Vec<f32>) -> Data {
    Data::F32(std::sync::Arc::new(v))
}

fn intd(v: Vec<i64>) -> Data {
    Data::Int(std::sync::Arc::new(v))
}

#[derive(Clone, Debug)]
struct Const {
    dims: Vec<usize>,
    data: Data,
    /// The ONNX element type, for messages and QDQ code widths.
    dtype: i32,
}

impl Const {
    fn f32s(&self) -> Option<Vec<f32>> {
        match &self.data {
            Data::F32(v) => Some(v.to_vec()),
            Data::Int(_) => None,
        }
    }
    fn ints(&self) -> Option<&[i64]> {
        match &self.data {
            Data::Int(v) => Some(v.as_slice()),
            Data::F32(_) => None,
        }
    }
    /// Integer values of an integer tensor or of an integer-valued float tensor.
    fn as_ints(&self) -> Option<Vec<i64>> {
        match &self.data {
            Data::Int(v) => Some(v.to_vec()),
            Data::F32(v) => v
                .iter()
                .map(|&x| {
                    if x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15 {
                        Some(x as i64)
                    } else {
                        None
                    }
                })
                .collect(),
        }
    }
}

fn decode_tensor(t: &TensorProto) -> std::result::Result<Const, String> {
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return Err("external data (a separate weights file) is not supported".into());
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(format!("negative dimension {d}"));
        }
        dims.push(d as usize);
    }
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_ELEMENTS);
    let n = n.ok_or_else(|| format!("shape {dims:?} has more than {MAX_ELEMENTS} elements"))?;
    let dt = t.data_type.unwrap_or(0);
    let raw = t.raw_data.as_deref();
    let bad_len = |got: usize| format!("{} tensor of shape {dims:?} holds {got} values", data_type::name(dt));
    let data = match dt {
        data_type::FLOAT => match raw {
            Some(r) => {
                if r.len() != n * 4 {
                    return Err(bad_len(r.len() / 4));
                }
                f32d(r.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            }
            None => {
                if t.float_data.len() != n {
                    return Err(bad_len(t.float_data.len()));
                }
                f32d(t.float_data.clone())
            }
        },
        data_type::UINT8 | data_type::INT8 | data_type::UINT16 | data_type::INT16 | data_type::INT32 => {
            let size = match dt {
                data_type::UINT8 | data_type::INT8 => 1,
                data_type::UINT16 | data_type::INT16 => 2,
                _ => 4,
            };
            match raw {
                Some(r) => {
                    if r.len() != n * size {
                        return Err(bad_len(r.len() / size));
                    }
                    intd(match dt {
                        // One byte per value: no per-element dispatch.
                        data_type::UINT8 => r.iter().map(|&b| b as i64).collect(),
                        data_type::INT8 => r.iter().map(|&b| b as i8 as i64).collect(),
                        _ => r
                            .chunks_exact(size)
                            .map(|c| match dt {
                                data_type::UINT8 => c[0] as i64,
                                data_type::INT8 => c[0] as i8 as i64,
                                data_type::UINT16 => u16::from_le_bytes([c[0], c[1]]) as i64,
                                data_type::INT16 => i16::from_le_bytes([c[0], c[1]]) as i64,
                                _ => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
                            })
                            .collect(),
                    })
                }
                None => {
                    if t.int32_data.len() != n {
                        return Err(bad_len(t.int32_data.len()));
                    }
                    let (lo, hi) = int_range(dt);
                    if let Some(v) = t.int32_data.iter().find(|&&v| !(lo..=hi).contains(&(v as i64))) {
                        return Err(format!("value {v} outside {}", data_type::name(dt)));
                    }
                    intd(t.int32_data.iter().map(|&v| v as i64).collect())
                }
            }
        }
        data_type::INT64 => match raw {
            Some(r) => {
                if r.len() != n * 8 {
                    return Err(bad_len(r.len() / 8));
                }
                intd(r.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect())
            }
            None => {
                if t.int64_data.len() != n {
                    return Err(bad_len(t.int64_data.len()));
                }
                intd(t.int64_data.clone())
            }
        },
        // Two 4-bit values per byte, the first element in the low nibble (onnx.proto).
        data_type::INT4 | data_type::UINT4 => {
            let r = raw.ok_or_else(|| format!("{} tensors must use raw_data", data_type::name(dt)))?;
            if r.len() != n.div_ceil(2) {
                return Err(bad_len(r.len() * 2));
            }
            intd(
                (0..n)
                    .map(|i| {
                        let nib = (r[i / 2] >> (4 * (i % 2))) & 0xF;
                        if dt == data_type::INT4 {
                            ((nib as i8) << 4 >> 4) as i64
                        } else {
                            nib as i64
                        }
                    })
                    .collect(),
            )
        }
        _ => return Err(format!("element type {} is not supported", data_type::name(dt))),
    };
    Ok(Const { dims, data, dtype: dt })
}

fn int_range(dt: i32) -> (i64, i64) {
    match dt {
        data_type::UINT8 => (0, 255),
        data_type::INT8 => (-128, 127),
        data_type::UINT16 => (0, 65535),
        data_type::INT16 => (-32768, 32767),
        data_type::INT4 => (-8, 7),
        data_type::UINT4 => (0, 15),
        _ => (i32::MIN as i64, i32::MAX as i64),
    }
}

// ---------------------------------------------------------------------------------------------
// Values

/// Quantization parameters as read from a quantizer node (before the graph validates them).
#[derive(Clone, Debug)]
struct QParams {
    bits: u32,
    signed: bool,
    narrow: bool,
    /// One scale (per tensor) or one per element of `axis`.
    scale: Vec<f32>,
    /// The axis of a per-axis scale (of the quantized tensor's full ONNX shape).
    axis: Option<usize>,
    zero_point: Vec<i64>,
}

impl QParams {
    /// The graph quantization of an activation (per tensor).
    fn activation(&self) -> std::result::Result<Quant, String> {
        if self.scale.len() != 1 || self.zero_point.len() != 1 {
            return Err("a per-channel activation quantizer (activations are per tensor)".into());
        }
        Quant::new(self.bits, self.signed, self.narrow, Scale::Tensor(self.scale[0]), self.zero_point[0])
            .map_err(|e| format!("activation quantization: {e}"))
    }
}

/// A quantized constant (weights or bias): integer codes and their quantization.
#[derive(Clone, Debug)]
struct QConst {
    dims: Vec<usize>,
    /// Shared, as [`Data`]'s values.
    codes: std::sync::Arc<Vec<i64>>,
    q: QParams,
    /// The float values before quantization (QONNX), for the bias report.
    float: Option<Vec<f32>>,
}

#[derive(Clone, Debug)]
enum PendAct {
    None,
    Relu,
    /// Real-valued bounds (ONNX `Clip` min, max).
    Clip(f32, f32),
}

#[derive(Clone, Debug)]
enum PendOp {
    Conv { x: TensorId, conv: Conv2d },
    Dense { x: TensorId, dense: Dense, has_bias: bool },
    Add { a: TensorId, b: TensorId },
    Concat { xs: Vec<TensorId>, axis: usize },
    AvgPool { x: TensorId, window: Window, count_include_pad: bool },
    Gap { x: TensorId },
}

#[derive(Clone, Debug)]
struct Pending {
    /// The ONNX node that started it (its name becomes the graph node's).
    node: String,
    op: PendOp,
    act: PendAct,
}

#[derive(Clone, Debug)]
enum Val {
    /// The float graph input, before its quantizer.
    Input,
    Const(Const),
    QConst(QConst),
    /// A quantized activation, as its real (dequantized) value: QONNX `Quant` output, QDQ
    /// `DequantizeLinear` output.
    Act(TensorId),
    /// QDQ integer codes (`QuantizeLinear` output) of a graph tensor.
    Codes(TensorId),
    Pending(Box<Pending>),
}

struct Importer {
    b: GraphBuilder,
    opts: ImportOptions,
    vals: BTreeMap<String, Val>,
    input_name: String,
    input_shape: Vec<usize>,
    input_id: Option<TensorId>,
    used_names: BTreeMap<String, usize>,
    qonnx: bool,
    qdq: bool,
    bindings: Vec<(String, TensorId)>,
}

type R<T> = std::result::Result<T, String>;

fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name.as_deref() == Some(name))
}

fn attr_i(n: &NodeProto, name: &str, default: i64) -> R<i64> {
    match attr(n, name) {
        None => Ok(default),
        Some(a) if a.r#type == Some(attr_type::INT) || (a.r#type.is_none() && a.i.is_some()) => {
            Ok(a.i.unwrap_or(0))
        }
        Some(_) => Err(format!("attribute {name} must be an int")),
    }
}

fn attr_f(n: &NodeProto, name: &str, default: f32) -> R<f32> {
    match attr(n, name) {
        None => Ok(default),
        Some(a) if a.r#type == Some(attr_type::FLOAT) || (a.r#type.is_none() && a.f.is_some()) => {
            Ok(a.f.unwrap_or(0.0))
        }
        Some(_) => Err(format!("attribute {name} must be a float")),
    }
}

fn attr_s(n: &NodeProto, name: &str, default: &str) -> R<String> {
    match attr(n, name) {
        None => Ok(default.to_string()),
        Some(a) if a.r#type == Some(attr_type::STRING) || (a.r#type.is_none() && a.s.is_some()) => {
            Ok(String::from_utf8_lossy(a.s.as_deref().unwrap_or(&[])).into_owned())
        }
        Some(_) => Err(format!("attribute {name} must be a string")),
    }
}

fn attr_ints(n: &NodeProto, name: &str) -> R<Option<Vec<i64>>> {
    match attr(n, name) {
        None => Ok(None),
        Some(a) if a.r#type == Some(attr_type::INTS) || a.r#type.is_none() => Ok(Some(a.ints.clone())),
        Some(_) => Err(format!("attribute {name} must be a list of ints")),
    }
}

/// Refuse attributes outside `known` (an attribute the importer would silently ignore could
/// change the semantics).
fn only_attrs(n: &NodeProto, known: &[&str]) -> R<()> {
    for a in &n.attribute {
        let name = a.name.as_deref().unwrap_or("");
        if !known.contains(&name) {
            return Err(format!("attribute {name} is not supported"));
        }
        if a.r#type == Some(attr_type::GRAPH) || a.ref_attr_name.is_some() {
            return Err(format!("attribute {name}: sub-graphs and attribute references are not supported"));
        }
    }
    Ok(())
}

fn usize_list(v: &[i64], what: &str, min: i64) -> R<Vec<usize>> {
    v.iter()
        .map(|&x| {
            if x >= min && x <= 1 << 20 {
                Ok(x as usize)
            } else {
                Err(format!("{what} {v:?}: each must be {min}..=2^20"))
            }
        })
        .collect()
}

/// Conv/pool geometry: kernel from `kernel`, `strides`, `pads`, `dilations` (2-D only).
fn window_attrs(n: &NodeProto, kernel: [usize; 2]) -> R<Window> {
    let auto_pad = attr_s(n, "auto_pad", "NOTSET")?;
    if auto_pad != "NOTSET" && auto_pad != "VALID" {
        return Err(format!("auto_pad {auto_pad} is not supported (NOTSET or VALID; give explicit pads)"));
    }
    let two = |name: &str, default: usize| -> R<[usize; 2]> {
        match attr_ints(n, name)? {
            None => Ok([default, default]),
            Some(v) if v.len() == 2 => {
                let u = usize_list(&v, name, 1)?;
                Ok([u[0], u[1]])
            }
            Some(v) => Err(format!("{name} {v:?}: only 2-D (two values) is supported")),
        }
    };
    let stride = two("strides", 1)?;
    let dilation = two("dilations", 1)?;
    let pads = match attr_ints(n, "pads")? {
        None => [0; 4],
        Some(v) if v.len() == 4 => {
            let u = usize_list(&v, "pads", 0)?;
            // ONNX order [top, left, bottom, right] = graph order.
            [u[0], u[1], u[2], u[3]]
        }
        Some(v) => Err(format!("pads {v:?}: only 2-D (four values) is supported"))?,
    };
    if auto_pad == "VALID" && pads != [0; 4] {
        return Err("auto_pad VALID with non-zero pads".into());
    }
    if let Some(k) = attr_ints(n, "kernel_shape")? {
        let u = usize_list(&k, "kernel_shape", 1)?;
        if u.len() != 2 || (kernel != [0, 0] && u != kernel) {
            return Err(format!("kernel_shape {k:?} does not match the weights' {kernel:?} (2-D only)"));
        }
        return Ok(Window { kernel: [u[0], u[1]], stride, pads, dilation });
    }
    if kernel == [0, 0] {
        return Err("kernel_shape is required".into());
    }
    Ok(Window { kernel, stride, pads, dilation })
}

fn round_mode(mode: &str) -> R<DivRounding> {
    match mode.to_ascii_uppercase().as_str() {
        "ROUND" | "HALF_EVEN" => Ok(DivRounding::HalfEven),
        "FLOOR" => Ok(DivRounding::Floor),
        m => Err(format!("rounding_mode {m} is not supported (ROUND, HALF_EVEN, FLOOR)")),
    }
}

/// Per-axis position of a scale/zero-point tensor of shape `sdims` broadcast against `xdims`
/// (numpy rules, right-aligned): `None` when it has one element, else the one axis where it
/// has more than one element and matches `xdims`.
fn broadcast_axis(sdims: &[usize], len: usize, xdims: &[usize]) -> R<Option<usize>> {
    if len == 1 {
        return Ok(None);
    }
    if sdims.len() > xdims.len() {
        return Err(format!("scale shape {sdims:?} does not broadcast to {xdims:?}"));
    }
    let off = xdims.len() - sdims.len();
    let big: Vec<usize> = (0..sdims.len()).filter(|&i| sdims[i] != 1).collect();
    match big.as_slice() {
        [i] if sdims[*i] == xdims[off + *i] => Ok(Some(off + *i)),
        _ => Err(format!(
            "scale shape {sdims:?}: only per-tensor or one per-axis scale is supported (tensor {xdims:?})"
        )),
    }
}

impl Importer {
    fn new(name: String, opts: ImportOptions) -> Importer {
        Importer {
            b: GraphBuilder::new(&name),
            opts,
            vals: BTreeMap::new(),
            input_name: String::new(),
            input_shape: Vec::new(),
            input_id: None,
            used_names: BTreeMap::new(),
            qonnx: false,
            qdq: false,
            bindings: Vec::new(),
        }
    }

    fn run(&mut self, g: &proto::GraphProto) -> Result<Imported> {
        for t in &g.initializer {
            let name = t.name.clone().unwrap_or_default();
            let c = decode_tensor(t).map_err(|e| Error::input(format!("initializer '{name}': {e}")))?;
            self.vals.insert(name, Val::Const(c));
        }
        let inputs: Vec<_> =
            g.input.iter().filter(|v| !self.vals.contains_key(v.name.as_deref().unwrap_or(""))).collect();
        if inputs.len() != 1 {
            return Err(Error::input(format!(
                "graph: {} inputs besides the initializers (exactly one, the data input, is supported)",
                inputs.len()
            )));
        }
        let vi = inputs[0];
        let iname = vi.name.clone().unwrap_or_default();
        let tt = vi.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
        let tt = tt.ok_or_else(|| Error::input(format!("graph input '{iname}': not a tensor")))?;
        if tt.elem_type != Some(data_type::FLOAT) {
            return Err(Error::input(format!(
                "graph input '{iname}': element type {} (FLOAT is supported)",
                data_type::name(tt.elem_type.unwrap_or(0))
            )));
        }
        let dims = tt.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default();
        if dims.len() < 2 {
            return Err(Error::input(format!(
                "graph input '{iname}': rank {} (N x ... with rank >= 2)",
                dims.len()
            )));
        }
        let mut shape = Vec::new();
        for (i, d) in dims.iter().enumerate().skip(1) {
            match d.dim_value {
                Some(v) if (1..=1 << 20).contains(&v) => shape.push(v as usize),
                _ => {
                    return Err(Error::input(format!(
                        "graph input '{iname}': dimension {i} is {:?} (a fixed size 1..=2^20; only the batch may be symbolic)",
                        d.dim_value.map(|v| v.to_string()).or(d.dim_param.clone()).unwrap_or_default()
                    )))
                }
            }
        }
        self.input_name = iname.clone();
        self.input_shape = shape;
        self.vals.insert(iname, Val::Input);

        for (idx, n) in g.node.iter().enumerate() {
            let op = n.op_type.clone().unwrap_or_default();
            let name = match n.name.as_deref() {
                Some(s) if !s.is_empty() => s.to_string(),
                _ => format!("{op}_{idx}"),
            };
            self.node(n, &name, &op).map_err(|e| Error::input(format!("node '{name}' ({op}): {e}")))?;
        }

        if g.output.len() != 1 {
            return Err(Error::input(format!(
                "graph: {} outputs (exactly one is supported)",
                g.output.len()
            )));
        }
        let oname = g.output[0].name.clone().unwrap_or_default();
        let out = match self.vals.remove(&oname) {
            Some(Val::Act(t)) | Some(Val::Codes(t)) => t,
            Some(Val::Pending(p)) => {
                let node = p.node.clone();
                let op_name = match &p.op {
                    PendOp::Conv { .. } => "Conv",
                    PendOp::Dense { .. } => "Gemm",
                    _ => "output",
                };
                if !matches!(p.act, PendAct::None) {
                    return Err(Error::input(format!(
                        "node '{node}' ({op_name}): an activation on an unquantized graph output is not supported"
                    )));
                }
                self.materialize(*p, None)
                    .map_err(|e| Error::input(format!("node '{node}' ({op_name}): {e}")))?
            }
            _ => {
                return Err(Error::input(format!("graph output '{oname}': not produced by a supported node")))
            }
        };
        if !self.bindings.iter().any(|(n, _)| *n == oname) {
            self.bindings.push((oname.clone(), out));
        }
        let flavor = match (self.qonnx, self.qdq) {
            (true, false) => Flavor::Qonnx,
            (false, true) => Flavor::Qdq,
            (true, true) => {
                return Err(Error::input("the model mixes QONNX Quant and ONNX QDQ nodes (not supported)"))
            }
            (false, false) => {
                return Err(Error::input("the model has no quantizer (Quant or QuantizeLinear)"))
            }
        };
        let b = std::mem::replace(&mut self.b, GraphBuilder::new(""));
        let graph = b.finish(out)?;
        let bindings = std::mem::take(&mut self.bindings);
        Ok(Imported { graph, flavor, output_name: oname, bindings })
    }

    fn get(&self, n: &NodeProto, i: usize) -> R<Val> {
        let name = n.input.get(i).map(String::as_str).unwrap_or("");
        if name.is_empty() {
            return Err(format!("input {i} is missing"));
        }
        self.vals
            .get(name)
            .cloned()
            .ok_or_else(|| format!("input {i} '{name}' is not produced by an earlier node"))
    }

    fn opt(&self, n: &NodeProto, i: usize) -> R<Option<Val>> {
        match n.input.get(i).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(_) => self.get(n, i).map(Some),
        }
    }

    fn konst(&self, n: &NodeProto, i: usize, what: &str) -> R<Const> {
        match self.get(n, i)? {
            Val::Const(c) => Ok(c),
            _ => Err(format!("{what} (input {i}) must be a constant")),
        }
    }

    fn act(&self, n: &NodeProto, i: usize) -> R<TensorId> {
        match self.get(n, i)? {
            Val::Act(t) => Ok(t),
            Val::Input => {
                Err(format!("input {i} is the float graph input: it must go through a quantizer first"))
            }
            Val::Pending(_) => Err(format!(
                "input {i} is an unquantized float result: a quantizer (Quant/QuantizeLinear) must come first"
            )),
            Val::Codes(_) => {
                Err(format!("input {i} holds integer codes: a DequantizeLinear must come first"))
            }
            Val::Const(_) | Val::QConst(_) => {
                Err(format!("input {i} is a constant where an activation is expected"))
            }
        }
    }

    fn set(&mut self, n: &NodeProto, v: Val) -> R<()> {
        if n.output.len() != 1 && !n.output.iter().skip(1).all(String::is_empty) {
            return Err(format!("{} outputs (only the first is supported)", n.output.len()));
        }
        let o = n.output.first().cloned().unwrap_or_default();
        if o.is_empty() {
            return Err("no output".into());
        }
        if let Val::Act(t) | Val::Codes(t) = v {
            self.bindings.push((o.clone(), t));
        }
        self.vals.insert(o, v);
        Ok(())
    }

    fn unique(&mut self, name: &str) -> String {
        let c = self.used_names.entry(name.to_string()).or_insert(0);
        *c += 1;
        if *c == 1 {
            name.to_string()
        } else {
            format!("{name}#{c}")
        }
    }

    fn add(&mut self, name: &str, op: Op, inputs: &[TensorId], q: Option<Quant>) -> R<TensorId> {
        let name = self.unique(name);
        self.b.add_node(&name, op, inputs, q).map_err(|e| e.to_string())
    }

    fn quant_of(&self, t: TensorId) -> R<Quant> {
        self.b.tensor(t).map(|i| i.quant.clone()).map_err(|e| e.to_string())
    }

    fn shape_of(&self, t: TensorId) -> R<Vec<usize>> {
        self.b.tensor(t).map(|i| i.shape.clone()).map_err(|e| e.to_string())
    }

    fn node(&mut self, n: &NodeProto, name: &str, op: &str) -> R<()> {
        let domain = n.domain.as_deref().unwrap_or("");
        let qonnx_domain =
            matches!(domain, "qonnx.custom_op.general" | "finn.custom_op.general" | "onnx.brevitas");
        match (op, domain) {
            ("Quant", _) if qonnx_domain => {
                self.qonnx = true;
                self.quant(n)
            }
            ("Trunc", _) if qonnx_domain => self.trunc(n),
            (_, _) if qonnx_domain => Err(format!("QONNX op {op} is not supported")),
            (_, "" | "ai.onnx") => self.standard(n, name, op),
            (_, d) => Err(format!("domain {d} is not supported")),
        }
    }

    fn standard(&mut self, n: &NodeProto, name: &str, op: &str) -> R<()> {
        match op {
            "QuantizeLinear" => {
                self.qdq = true;
                self.quantize_linear(n)
            }
            "DequantizeLinear" => {
                self.qdq = true;
                self.dequantize_linear(n)
            }
            "Constant" => {
                only_attrs(n, &["value"])?;
                let t = attr(n, "value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or("only the value attribute (a tensor) is supported")?;
                let c = decode_tensor(t)?;
                self.set(n, Val::Const(c))
            }
            "Identity" => {
                only_attrs(n, &[])?;
                let v = self.get(n, 0)?;
                self.set(n, v)
            }
            "Conv" => self.conv(n, name),
            "Gemm" => self.gemm(n, name),
            "MatMul" => self.matmul(n, name),
            "Add" => self.add_op(n, name),
            "Concat" => {
                only_attrs(n, &["axis"])?;
                let axis = attr_i(n, "axis", 1)?;
                let mut xs = Vec::new();
                for i in 0..n.input.len() {
                    xs.push(self.act(n, i)?);
                }
                let rank = self.shape_of(xs[0])?.len() as i64 + 1;
                let a = if axis < 0 { axis + rank } else { axis };
                if a < 1 || a >= rank {
                    return Err(format!("axis {axis}: only a non-batch axis is supported (1..{rank})"));
                }
                let p = Pending {
                    node: name.into(),
                    op: PendOp::Concat { xs, axis: a as usize - 1 },
                    act: PendAct::None,
                };
                self.set(n, Val::Pending(Box::new(p)))
            }
            "Relu" => {
                only_attrs(n, &[])?;
                match self.get(n, 0)? {
                    Val::Pending(mut p) => {
                        if !matches!(p.act, PendAct::None) {
                            return Err("a second activation on one result is not supported".into());
                        }
                        p.act = PendAct::Relu;
                        self.set(n, Val::Pending(p))
                    }
                    _ => {
                        let x = self.act(n, 0)?;
                        let t = self.add(name, Op::Relu, &[x], None)?;
                        self.set(n, Val::Act(t))
                    }
                }
            }
            "Clip" => self.clip(n, name),
            "MaxPool" => {
                only_attrs(
                    n,
                    &[
                        "kernel_shape",
                        "strides",
                        "pads",
                        "dilations",
                        "ceil_mode",
                        "auto_pad",
                        "storage_order",
                    ],
                )?;
                if attr_i(n, "ceil_mode", 0)? != 0 {
                    return Err("ceil_mode 1 is not supported".into());
                }
                if attr_i(n, "storage_order", 0)? != 0 {
                    return Err("storage_order 1 is not supported".into());
                }
                let x = self.act(n, 0)?;
                let w = window_attrs(n, [0, 0])?;
                let t = self.add(name, Op::MaxPool(w), &[x], None)?;
                self.set(n, Val::Act(t))
            }
            "AveragePool" => {
                only_attrs(
                    n,
                    &[
                        "kernel_shape",
                        "strides",
                        "pads",
                        "dilations",
                        "ceil_mode",
                        "auto_pad",
                        "count_include_pad",
                    ],
                )?;
                if attr_i(n, "ceil_mode", 0)? != 0 {
                    return Err("ceil_mode 1 is not supported".into());
                }
                let x = self.act(n, 0)?;
                let window = window_attrs(n, [0, 0])?;
                let count_include_pad = attr_i(n, "count_include_pad", 0)? != 0;
                let p = Pending {
                    node: name.into(),
                    op: PendOp::AvgPool { x, window, count_include_pad },
                    act: PendAct::None,
                };
                self.set(n, Val::Pending(Box::new(p)))
            }
            "GlobalAveragePool" => {
                only_attrs(n, &[])?;
                let x = self.act(n, 0)?;
                if self.shape_of(x)?.len() != 3 {
                    return Err("the input must be C x H x W per sample".into());
                }
                let p = Pending { node: name.into(), op: PendOp::Gap { x }, act: PendAct::None };
                self.set(n, Val::Pending(Box::new(p)))
            }
            "Flatten" => {
                only_attrs(n, &["axis"])?;
                let axis = attr_i(n, "axis", 1)?;
                if axis != 1 {
                    return Err(format!("axis {axis} is not supported (1: keep the batch)"));
                }
                let x = self.act(n, 0)?;
                if self.shape_of(x)?.len() == 1 {
                    return self.set(n, Val::Act(x));
                }
                let t = self.add(name, Op::Flatten, &[x], None)?;
                self.set(n, Val::Act(t))
            }
            "Reshape" => {
                only_attrs(n, &["allowzero"])?;
                if attr_i(n, "allowzero", 0)? != 0 {
                    return Err("allowzero 1 is not supported".into());
                }
                let x = self.act(n, 0)?;
                let shape_c = self.konst(n, 1, "shape")?;
                let spec = shape_c.ints().ok_or("shape must be an int64 tensor")?.to_vec();
                let inshape = self.shape_of(x)?;
                let shape = reshape_target(&inshape, &spec)?;
                if shape == inshape {
                    return self.set(n, Val::Act(x));
                }
                let t = self.add(name, Op::Reshape { shape }, &[x], None)?;
                self.set(n, Val::Act(t))
            }
            "BatchNormalization" => self.batchnorm(n),
            "QLinearConv" => {
                self.qdq = true;
                self.qlinear_conv(n, name)
            }
            "QLinearMatMul" => {
                self.qdq = true;
                self.qlinear_matmul(n, name)
            }
            _ => Err("op is not supported".into()),
        }
    }

    // ---- quantizers ------------------------------------------------------------------------

    /// QONNX `Quant(x, scale, zeropt, bitwidth)`.
    fn quant(&mut self, n: &NodeProto) -> R<()> {
        only_attrs(n, &["signed", "narrow", "rounding_mode"])?;
        let signed = attr_i(n, "signed", 1)? != 0;
        let narrow = attr_i(n, "narrow", 0)? != 0;
        let mode = attr_s(n, "rounding_mode", "ROUND")?;
        let scale = self.konst(n, 1, "scale")?;
        let zp = self.konst(n, 2, "zeropt")?;
        let bw = self.konst(n, 3, "bitwidth")?;
        let bits = match bw.as_ints().as_deref() {
            Some([b]) if (1..=32).contains(b) => *b as u32,
            _ => {
                return Err(format!(
                    "bitwidth {:?}: an integer 1..=32 is supported",
                    bw.f32s().or(bw.ints().map(|v| v.iter().map(|&x| x as f32).collect()))
                ))
            }
        };
        if bits == 1 && signed {
            return Err("1-bit signed (bipolar) quantization is not supported".into());
        }
        let s = scale.f32s().ok_or("scale must be float32")?;
        let z = zp.as_ints().ok_or("zeropt must hold integer values")?;
        let x = self.get(n, 0)?;
        let xdims: Vec<usize> = match &x {
            Val::Const(c) => c.dims.clone(),
            _ => vec![],
        };
        let axis =
            if matches!(x, Val::Const(_)) { broadcast_axis(&scale.dims, s.len(), &xdims)? } else { None };
        let zaxis =
            if matches!(x, Val::Const(_)) { broadcast_axis(&zp.dims, z.len(), &xdims)? } else { None };
        if z.len() > 1 && zaxis != axis {
            return Err("the zero point's axis differs from the scale's".into());
        }
        if s.len() > 1 && !matches!(x, Val::Const(_)) {
            return Err("a per-channel activation quantizer (activations are per tensor)".into());
        }
        let q = QParams { bits, signed, narrow, scale: s, axis, zero_point: z };
        match x {
            Val::Const(c) => {
                let w = c.f32s().ok_or("a Quant of an integer constant is not supported")?;
                let codes = quant_codes(&w, &c.dims, &q, &mode)?;
                let codes = std::sync::Arc::new(codes);
                self.set(n, Val::QConst(QConst { dims: c.dims, codes, q, float: Some(w) }))
            }
            other => {
                if round_mode(&mode)? != DivRounding::HalfEven {
                    return Err(format!("rounding_mode {mode} on an activation (ROUND is supported)"));
                }
                let t = self.quantize_val(n, other, &q)?;
                self.set(n, Val::Act(t))
            }
        }
    }

    /// Quantize an activation value with `q`: the graph input's quantizer, a pending op's
    /// output quantizer, or a no-op re-quantization of a tensor already so quantized.
    fn quantize_val(&mut self, n: &NodeProto, x: Val, q: &QParams) -> R<TensorId> {
        let quant = q.activation()?;
        match x {
            Val::Input => {
                if self.input_id.is_some() {
                    return Err("the graph input has a second quantizer".into());
                }
                let t = self
                    .b
                    .input(&self.input_name.clone(), self.input_shape.clone(), quant)
                    .map_err(|e| e.to_string())?;
                self.input_id = Some(t);
                Ok(t)
            }
            Val::Pending(p) => self.materialize(*p, Some(quant)),
            Val::Act(t) | Val::Codes(t) => {
                let have = self.quant_of(t)?;
                if have == quant {
                    Ok(t)
                } else {
                    Err(format!(
                        "re-quantizing an already quantized tensor to another quantization ({} -> {}) is not supported",
                        describe(&have),
                        describe(&quant)
                    ))
                }
            }
            _ => {
                let _ = n;
                Err("input 0 must be an activation".into())
            }
        }
    }

    /// QONNX `Trunc(x, scale, zeropt, in_bits, out_scale, out_bits)` after an average pool.
    fn trunc(&mut self, n: &NodeProto) -> R<()> {
        only_attrs(n, &["rounding_mode", "signed", "narrow"])?;
        self.qonnx = true;
        if n.input.len() != 6 {
            return Err(format!("{} inputs (Trunc v2 with 6 inputs is supported)", n.input.len()));
        }
        let rounding = round_mode(&attr_s(n, "rounding_mode", "FLOOR")?)?;
        let p = match self.get(n, 0)? {
            Val::Pending(p) => p,
            _ => return Err("input 0 must be an AveragePool/GlobalAveragePool output".into()),
        };
        let x = match p.op {
            PendOp::AvgPool { x, .. } | PendOp::Gap { x } => x,
            _ => return Err("input 0 must be an AveragePool/GlobalAveragePool output".into()),
        };
        let one = |i: usize, what: &str| -> R<f32> {
            match self.konst(n, i, what)?.f32s().as_deref() {
                Some([v]) => Ok(*v),
                _ => Err(format!("{what} must be one float32")),
            }
        };
        let scale = one(1, "scale")?;
        let zp = one(2, "zeropt")?;
        let in_bits = one(3, "input_bit_width")?;
        let out_scale = one(4, "output_scale")?;
        let out_bits = one(5, "output_bit_width")?;
        let xq = self.quant_of(x)?;
        let s_in = xq.scale().at(0);
        let kk = match &p.op {
            PendOp::AvgPool { window, .. } => (window.kernel[0] * window.kernel[1]) as f32,
            _ => {
                let sh = self.shape_of(x)?;
                (sh[1] * sh[2]) as f32
            }
        };
        if zp != 0.0 || xq.zero_point() != 0 {
            return Err("a non-zero zero point is not supported".into());
        }
        // The pool output divided by `scale` is the sum of codes when scale = s_in / k^2; the
        // truncation keeps the top out_bits: floor(sum / 2^t) * out_scale. This equals the
        // graph's average pool (sum / k^2 with the rounding, input quantization kept) exactly
        // when out_scale = s_in and out_bits = the input's bits.
        if !close(scale * kk, s_in)
            || !close(out_scale, s_in)
            || out_bits != xq.bits() as f32
            || in_bits < out_bits
        {
            return Err(format!(
                "a truncation to a scale or width other than the pool input's is not supported \
                 (scale {scale:e} x {kk} vs input scale {s_in:e}, output_scale {out_scale:e}, bits {in_bits} -> {out_bits}, input bits {})",
                xq.bits()
            ));
        }
        if attr_i(n, "signed", 1)? != xq.signed() as i64 || attr_i(n, "narrow", 0)? != xq.narrow() as i64 {
            return Err("signed/narrow differ from the pool input's".into());
        }
        let t = self.pool_node(*p, rounding, None)?;
        self.set(n, Val::Act(t))
    }

    /// ONNX `QuantizeLinear(x, y_scale, y_zero_point, axis)`.
    fn quantize_linear(&mut self, n: &NodeProto) -> R<()> {
        only_attrs(n, &["axis", "saturate", "output_dtype", "block_size"])?;
        if attr_i(n, "block_size", 0)? != 0 {
            return Err("blocked quantization is not supported".into());
        }
        let q = self.qdq_params(n, None)?;
        if q.scale.len() != 1 {
            return Err("a per-axis QuantizeLinear of an activation (activations are per tensor)".into());
        }
        let x = self.get(n, 0)?;
        if matches!(x, Val::Const(_)) {
            return Err("a QuantizeLinear of a constant is not supported (store integer weights with a DequantizeLinear)".into());
        }
        let t = self.quantize_val(n, x, &q)?;
        self.set(n, Val::Codes(t))
    }

    /// Read `(scale, zero_point)` of a QuantizeLinear/DequantizeLinear (inputs 1 and 2);
    /// `codes_dtype` is the quantized tensor's type for a DequantizeLinear of a constant.
    fn qdq_params(&self, n: &NodeProto, x: Option<&Const>) -> R<QParams> {
        let scale = self.konst(n, 1, "scale")?;
        let s = scale
            .f32s()
            .ok_or_else(|| format!("scale of type {} (FLOAT is supported)", data_type::name(scale.dtype)))?;
        let zp = match self.opt(n, 2)? {
            None => None,
            Some(Val::Const(c)) => Some(c),
            Some(_) => return Err("zero_point (input 2) must be a constant".into()),
        };
        let dt = match (&zp, x) {
            (Some(z), _) => z.dtype,
            (None, Some(c)) => c.dtype,
            (None, None) => {
                let od = attr_i(n, "output_dtype", 0)?;
                if od != 0 {
                    od as i32
                } else {
                    data_type::UINT8
                }
            }
        };
        if let Some(c) = x {
            if c.dtype != dt {
                return Err(format!(
                    "the codes are {} but the zero point is {}",
                    data_type::name(c.dtype),
                    data_type::name(dt)
                ));
            }
        }
        let (bits, signed) = match dt {
            data_type::INT8 => (8, true),
            data_type::UINT8 => (8, false),
            data_type::INT4 => (4, true),
            data_type::UINT4 => (4, false),
            data_type::INT16 => (16, true),
            data_type::UINT16 => (16, false),
            data_type::INT32 => (32, true),
            d => {
                return Err(format!(
                    "quantized type {} is not supported (INT8, UINT8, INT4, UINT4, INT16, UINT16, INT32)",
                    data_type::name(d)
                ))
            }
        };
        let z = match &zp {
            Some(c) => c.ints().ok_or("zero_point must be an integer tensor")?.to_vec(),
            None => vec![0],
        };
        let axis = if s.len() > 1 {
            let xd = x.map(|c| c.dims.clone()).unwrap_or_default();
            let rank = xd.len() as i64;
            let a = attr_i(n, "axis", 1)?;
            let a = if a < 0 { a + rank } else { a };
            if a < 0 || a >= rank || xd[a as usize] != s.len() || scale.dims.len() != 1 {
                return Err(format!(
                    "per-axis scale of {} values does not match axis {a} of {xd:?}",
                    s.len()
                ));
            }
            Some(a as usize)
        } else {
            None
        };
        if z.len() != 1 && z.len() != s.len() {
            return Err(format!("{} zero points for {} scales", z.len(), s.len()));
        }
        Ok(QParams { bits, signed, narrow: false, scale: s, axis, zero_point: z })
    }

    /// ONNX `DequantizeLinear(x, x_scale, x_zero_point, axis)`.
    fn dequantize_linear(&mut self, n: &NodeProto) -> R<()> {
        only_attrs(n, &["axis", "block_size"])?;
        if attr_i(n, "block_size", 0)? != 0 {
            return Err("blocked quantization is not supported".into());
        }
        match self.get(n, 0)? {
            Val::Const(c) => {
                let q = self.qdq_params(n, Some(&c))?;
                let codes = match &c.data {
                    Data::Int(v) => v.clone(), // shared, not copied
                    Data::F32(_) => return Err("the codes must be an integer tensor".into()),
                };
                self.set(n, Val::QConst(QConst { dims: c.dims, codes, q, float: None }))
            }
            Val::Codes(t) => {
                let q = self.qdq_params(n, None)?;
                let quant = q.activation()?;
                let have = self.quant_of(t)?;
                if have != quant {
                    return Err(format!(
                        "dequantizes with {} codes quantized with {}",
                        describe(&quant),
                        describe(&have)
                    ));
                }
                self.set(n, Val::Act(t))
            }
            _ => Err("input 0 must be integer codes (a QuantizeLinear output or an integer constant)".into()),
        }
    }

    // ---- array ops -------------------------------------------------------------------------

    /// Weights of a conv (`[O, C/g, KH, KW]`, per-channel on axis 0) or dense (`[K, N]`,
    /// per-channel on axis 1) from a quantized constant.
    fn weights(&self, w: &QConst, out_axis: usize, shape: Vec<usize>, codes: &[i64]) -> R<Weights> {
        let q = &w.q;
        let scale = match (q.scale.len(), q.axis) {
            (1, _) => Scale::Tensor(q.scale[0]),
            (_, Some(a)) if a == out_axis => Scale::Channel(q.scale.clone()),
            (_, a) => {
                return Err(format!(
                    "per-axis weight scale on axis {a:?}: only the output-channel axis is supported"
                ))
            }
        };
        let z0 = q.zero_point[0];
        if q.zero_point.iter().any(|&z| z != z0) {
            return Err("per-channel weight zero points that differ are not supported".into());
        }
        let quant = Quant::new(q.bits, q.signed, q.narrow, scale, z0)
            .map_err(|e| format!("weight quantization: {e}"))?;
        // Range by the extremes (one vectorizable pass), then an exact `as`.
        let (lo, hi) = codes.iter().fold((i64::MAX, i64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        if let Some(&v) = [lo, hi].iter().find(|&&v| !codes.is_empty() && i32::try_from(v).is_err()) {
            let first = codes.iter().find(|&&c| i32::try_from(c).is_err()).unwrap_or(&v);
            return Err(format!("weight code {first} does not fit int32"));
        }
        let c32: Vec<i32> = codes.iter().map(|&v| v as i32).collect();
        Weights::new(shape, c32, quant).map_err(|e| e.to_string())
    }

    /// The bias of an array node: a quantized constant on the accumulator grid (checked) or a
    /// float constant (rounded with [`Bias::from_float`]).
    fn bias(&self, v: Option<Val>, n_out: usize, s_in: f32, w_scale: &Scale) -> R<Bias> {
        match v {
            None => Bias::new(vec![0; n_out], None).map_err(|e| e.to_string()),
            Some(Val::Const(c)) => {
                let f = c.f32s().ok_or("a float bias must be float32")?;
                if f.len() != n_out {
                    return Err(format!("bias has {} values for {n_out} outputs", f.len()));
                }
                Bias::from_float(&f, s_in, w_scale).map_err(|e| e.to_string())
            }
            Some(Val::QConst(b)) => {
                if b.codes.len() != n_out {
                    return Err(format!("bias has {} values for {n_out} outputs", b.codes.len()));
                }
                if b.q.zero_point.iter().any(|&z| z != 0) {
                    return Err("a bias zero point other than 0 is not supported".into());
                }
                for o in 0..n_out {
                    let sb = if b.q.scale.len() == 1 { b.q.scale[0] } else { b.q.scale[o] };
                    let unit = s_in * w_scale.at(o);
                    if !close(sb, unit) {
                        return Err(format!(
                            "bias scale[{o}] {sb:e} is not the accumulator unit s_in * s_w = {unit:e} (relative tolerance 2^-20)"
                        ));
                    }
                }
                let mut codes = Vec::with_capacity(n_out);
                for &c in b.codes.iter() {
                    codes.push(i32::try_from(c).map_err(|_| format!("bias code {c} does not fit int32"))?);
                }
                Bias::new(codes, b.float.clone()).map_err(|e| e.to_string())
            }
            Some(_) => Err("the bias must be a constant".into()),
        }
    }

    fn conv(&mut self, n: &NodeProto, name: &str) -> R<()> {
        only_attrs(n, &["kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"])?;
        let x = self.act(n, 0)?;
        let w = match self.get(n, 1)? {
            Val::QConst(w) => w,
            _ => {
                return Err(
                    "the weights (input 1) must be quantized constants (Quant / DequantizeLinear)".into()
                )
            }
        };
        if w.dims.len() != 4 {
            return Err(format!("weights of shape {:?}: only 2-D convolution (OIHW) is supported", w.dims));
        }
        let win = window_attrs(n, [w.dims[2], w.dims[3]])?;
        let groups = attr_i(n, "group", 1)?;
        if !(1..=1 << 20).contains(&groups) {
            return Err(format!("group {groups} (1..=2^20)"));
        }
        let weight = self.weights(&w, 0, w.dims.clone(), &w.codes)?;
        let s_in = self.quant_of(x)?.scale().at(0);
        let bias = self.bias(self.opt(n, 2)?, w.dims[0], s_in, weight.quant().scale())?;
        let mut conv = Conv2d::new(weight, bias);
        conv.stride = win.stride;
        conv.pads = win.pads;
        conv.dilation = win.dilation;
        conv.groups = groups as usize;
        let p = Pending { node: name.into(), op: PendOp::Conv { x, conv }, act: PendAct::None };
        self.set(n, Val::Pending(Box::new(p)))
    }

    fn gemm(&mut self, n: &NodeProto, name: &str) -> R<()> {
        only_attrs(n, &["alpha", "beta", "transA", "transB"])?;
        if attr_f(n, "alpha", 1.0)? != 1.0 || attr_f(n, "beta", 1.0)? != 1.0 {
            return Err("alpha/beta other than 1 are not supported".into());
        }
        if attr_i(n, "transA", 0)? != 0 {
            return Err("transA 1 is not supported".into());
        }
        let trans_b = attr_i(n, "transB", 0)? != 0;
        let x = self.act(n, 0)?;
        let w = match self.get(n, 1)? {
            Val::QConst(w) => w,
            _ => return Err("B (input 1) must be quantized constants (Quant / DequantizeLinear)".into()),
        };
        let bias = self.opt(n, 2)?;
        self.dense(n, name, x, &w, trans_b, bias)
    }

    fn matmul(&mut self, n: &NodeProto, name: &str) -> R<()> {
        only_attrs(n, &[])?;
        let x = self.act(n, 0)?;
        let w = match self.get(n, 1)? {
            Val::QConst(w) => w,
            _ => return Err("B (input 1) must be quantized constants (Quant / DequantizeLinear)".into()),
        };
        self.dense(n, name, x, &w, false, None)
    }

    fn dense(
        &mut self,
        n: &NodeProto,
        name: &str,
        x: TensorId,
        w: &QConst,
        trans_b: bool,
        bias: Option<Val>,
    ) -> R<()> {
        if w.dims.len() != 2 {
            return Err(format!("B of shape {:?}: a matrix is supported", w.dims));
        }
        let xs = self.shape_of(x)?;
        if xs.len() != 1 {
            return Err(format!(
                "input of per-sample shape {xs:?}: flatten it first (a vector is supported)"
            ));
        }
        let (k, nn) = if trans_b { (w.dims[1], w.dims[0]) } else { (w.dims[0], w.dims[1]) };
        // Graph layout is [K, N]; a transposed B ([N, K]) is transposed here.
        let codes = if trans_b {
            let mut c = vec![0i64; k * nn];
            for o in 0..nn {
                for i in 0..k {
                    c[i * nn + o] = w.codes[o * k + i];
                }
            }
            c
        } else {
            w.codes.to_vec()
        };
        let out_axis = if trans_b { 0 } else { 1 };
        let mut wq = w.clone();
        // The per-channel axis is the output axis of B; in [K, N] it becomes axis 1.
        if wq.q.axis == Some(out_axis) {
            wq.q.axis = Some(1);
        } else if wq.q.scale.len() > 1 {
            return Err(format!(
                "per-axis weight scale on axis {:?}: only the output axis is supported",
                wq.q.axis
            ));
        }
        let weight = self.weights(&wq, 1, vec![k, nn], &codes)?;
        let s_in = self.quant_of(x)?.scale().at(0);
        let has_bias = bias.is_some();
        let bias = self.bias(bias, nn, s_in, weight.quant().scale())?;
        let dense = Dense { weight, bias, act: Activation::None, requant: self.opts.requant };
        let p = Pending { node: name.into(), op: PendOp::Dense { x, dense, has_bias }, act: PendAct::None };
        self.set(n, Val::Pending(Box::new(p)))
    }

    fn add_op(&mut self, n: &NodeProto, name: &str) -> R<()> {
        only_attrs(n, &[])?;
        let a = self.get(n, 0)?;
        let b = self.get(n, 1)?;
        // MatMul + Add(bias) = Gemm.
        if let (Val::Pending(p), bias @ (Val::Const(_) | Val::QConst(_)))
        | (bias @ (Val::Const(_) | Val::QConst(_)), Val::Pending(p)) = (a.clone(), b.clone())
        {
            if let PendOp::Dense { x, dense, has_bias: false } = &p.op {
                if !matches!(p.act, PendAct::None) {
                    return Err("a bias after an activation is not supported".into());
                }
                let s_in = self.quant_of(*x)?.scale().at(0);
                let nn = dense.weight.shape()[1];
                let bias = match bias {
                    Val::Const(mut c) => {
                        c.dims.retain(|&d| d != 1);
                        Val::Const(c)
                    }
                    v => v,
                };
                let bias = self.bias(Some(bias), nn, s_in, dense.weight.quant().scale())?;
                let mut d = dense.clone();
                d.bias = bias;
                let p2 = Pending {
                    node: p.node.clone(),
                    op: PendOp::Dense { x: *x, dense: d, has_bias: true },
                    act: PendAct::None,
                };
                return self.set(n, Val::Pending(Box::new(p2)));
            }
        }
        let a = self.act(n, 0)?;
        let b = self.act(n, 1)?;
        let p = Pending { node: name.into(), op: PendOp::Add { a, b }, act: PendAct::None };
        self.set(n, Val::Pending(Box::new(p)))
    }

    fn clip(&mut self, n: &NodeProto, name: &str) -> R<()> {
        only_attrs(n, &["min", "max"])?;
        let bound = |i: usize, attr_name: &str, default: f32| -> R<f32> {
            if let Some(v) = self.opt(n, i)? {
                match v {
                    Val::Const(c) => match c.f32s().as_deref() {
                        Some([v]) => Ok(*v),
                        _ => Err(format!("{attr_name} must be one float32")),
                    },
                    _ => Err(format!("{attr_name} must be a constant")),
                }
            } else {
                attr_f(n, attr_name, default)
            }
        };
        let lo = bound(1, "min", f32::NEG_INFINITY)?;
        let hi = bound(2, "max", f32::INFINITY)?;
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(format!("min {lo} / max {hi}: min <= max required"));
        }
        match self.get(n, 0)? {
            Val::Pending(mut p) => {
                if !matches!(p.act, PendAct::None) {
                    return Err("a second activation on one result is not supported".into());
                }
                p.act = PendAct::Clip(lo, hi);
                self.set(n, Val::Pending(p))
            }
            _ => {
                let x = self.act(n, 0)?;
                let q = self.quant_of(x)?;
                let (l, h) = clip_codes(&q, lo, hi);
                let t = self.add(name, Op::Clip { lo: l, hi: h }, &[x], None)?;
                self.set(n, Val::Act(t))
            }
        }
    }

    fn batchnorm(&mut self, n: &NodeProto) -> R<()> {
        only_attrs(n, &["epsilon", "momentum", "training_mode", "spatial"])?;
        if attr_i(n, "training_mode", 0)? != 0 {
            return Err("training_mode 1 is not supported".into());
        }
        let mut p = match self.get(n, 0)? {
            Val::Pending(p) => p,
            _ => {
                return Err(
                    "only a BatchNormalization directly after a Conv (before its quantizer) is supported"
                        .into(),
                )
            }
        };
        let (x, conv) = match &p.op {
            PendOp::Conv { x, conv } if matches!(p.act, PendAct::None) => (*x, conv.clone()),
            _ => {
                return Err(
                    "only a BatchNormalization directly after a Conv (before its quantizer) is supported"
                        .into(),
                )
            }
        };
        let f = |i: usize, w: &str| -> R<Vec<f32>> {
            self.konst(n, i, w)?.f32s().ok_or_else(|| format!("{w} must be float32"))
        };
        let bn = crate::graph::BatchNorm {
            gamma: f(1, "scale")?,
            beta: f(2, "B")?,
            mean: f(3, "input_mean")?,
            var: f(4, "input_var")?,
            eps: attr_f(n, "epsilon", 1e-5)?,
        };
        let s_in = self.quant_of(x)?.scale().at(0);
        let folded = crate::graph::fold_batchnorm(&conv, s_in, &bn).map_err(|e| e.to_string())?;
        p.op = PendOp::Conv { x, conv: folded };
        self.set(n, Val::Pending(p))
    }

    fn qlinear_conv(&mut self, n: &NodeProto, name: &str) -> R<()> {
        only_attrs(n, &["kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"])?;
        let x = match self.get(n, 0)? {
            Val::Codes(t) => t,
            _ => return Err("x (input 0) must be integer codes (a QuantizeLinear or QLinear output)".into()),
        };
        let (xq, w, yq) = self.qlinear_params(n, x)?;
        let _ = xq;
        if w.dims.len() != 4 {
            return Err(format!("weights of shape {:?}: only 2-D convolution is supported", w.dims));
        }
        let win = window_attrs(n, [w.dims[2], w.dims[3]])?;
        let groups = attr_i(n, "group", 1)?;
        if !(1..=1 << 20).contains(&groups) {
            return Err(format!("group {groups} (1..=2^20)"));
        }
        let weight = self.weights(&w, 0, w.dims.clone(), &w.codes)?;
        let bias = match self.opt(n, 8)? {
            None => Bias::new(vec![0; w.dims[0]], None).map_err(|e| e.to_string())?,
            Some(Val::Const(c)) if c.dtype == data_type::INT32 => {
                let v = c.ints().unwrap_or(&[]);
                if v.len() != w.dims[0] {
                    return Err(format!("B has {} values for {} outputs", v.len(), w.dims[0]));
                }
                Bias::new(v.iter().map(|&b| b as i32).collect(), None).map_err(|e| e.to_string())?
            }
            Some(_) => return Err("B (input 8) must be an int32 constant".into()),
        };
        let mut conv = Conv2d::new(weight, bias);
        conv.stride = win.stride;
        conv.pads = win.pads;
        conv.dilation = win.dilation;
        conv.groups = groups as usize;
        conv.requant = self.opts.requant;
        let t = self.add(name, Op::Conv2d(conv), &[x], Some(yq))?;
        self.set(n, Val::Codes(t))
    }

    fn qlinear_matmul(&mut self, n: &NodeProto, name: &str) -> R<()> {
        only_attrs(n, &[])?;
        let x = match self.get(n, 0)? {
            Val::Codes(t) => t,
            _ => return Err("a (input 0) must be integer codes (a QuantizeLinear or QLinear output)".into()),
        };
        let (_, w, yq) = self.qlinear_params(n, x)?;
        if w.dims.len() != 2 {
            return Err(format!("b of shape {:?}: a matrix is supported", w.dims));
        }
        if self.shape_of(x)?.len() != 1 {
            return Err("a must be a vector per sample".into());
        }
        let mut wq = w.clone();
        if wq.q.scale.len() > 1 {
            wq.q.axis = Some(1);
        }
        let weight = self.weights(&wq, 1, w.dims.clone(), &w.codes)?;
        let bias = Bias::new(vec![0; w.dims[1]], None).map_err(|e| e.to_string())?;
        let dense = Dense { weight, bias, act: Activation::None, requant: self.opts.requant };
        let t = self.add(name, Op::Dense(dense), &[x], Some(yq))?;
        self.set(n, Val::Codes(t))
    }

    /// `(x quant, weights, y quant)` of QLinearConv/QLinearMatMul inputs
    /// `x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp`.
    fn qlinear_params(&self, n: &NodeProto, x: TensorId) -> R<(Quant, QConst, Quant)> {
        let one_f = |i: usize, w: &str| -> R<Vec<f32>> {
            self.konst(n, i, w)?.f32s().ok_or_else(|| format!("{w} must be float32"))
        };
        let ints = |i: usize, w: &str| -> R<Const> { self.konst(n, i, w) };
        let xs = one_f(1, "x_scale")?;
        let xz = ints(2, "x_zero_point")?;
        let have = self.quant_of(x)?;
        let (bits, signed) = qdq_bits(xz.dtype)?;
        let xq = Quant::new(
            bits,
            signed,
            false,
            Scale::Tensor(*xs.first().ok_or("empty x_scale")?),
            xz.ints().and_then(|v| v.first().copied()).unwrap_or(0),
        )
        .map_err(|e| e.to_string())?;
        if xq != have {
            return Err(format!("x is quantized with {} but declared {}", describe(&have), describe(&xq)));
        }
        let wc = ints(3, "w")?;
        let ws = one_f(4, "w_scale")?;
        let wz = ints(5, "w_zero_point")?;
        if wz.dtype != wc.dtype {
            return Err("w and w_zero_point types differ".into());
        }
        let (wb, wsg) = qdq_bits(wc.dtype)?;
        let axis = if ws.len() > 1 { Some(0) } else { None };
        let w = QConst {
            dims: wc.dims.clone(),
            codes: std::sync::Arc::new(wc.ints().ok_or("w must be an integer tensor")?.to_vec()),
            q: QParams {
                bits: wb,
                signed: wsg,
                narrow: false,
                scale: ws,
                axis,
                zero_point: wz.ints().unwrap_or(&[0]).to_vec(),
            },
            float: None,
        };
        let ys = one_f(6, "y_scale")?;
        let yz = ints(7, "y_zero_point")?;
        let (yb, ysg) = qdq_bits(yz.dtype)?;
        let yq = Quant::new(
            yb,
            ysg,
            false,
            Scale::Tensor(*ys.first().ok_or("empty y_scale")?),
            yz.ints().and_then(|v| v.first().copied()).unwrap_or(0),
        )
        .map_err(|e| e.to_string())?;
        Ok((xq, w, yq))
    }

    // ---- materialization -------------------------------------------------------------------

    /// Add the graph node of a pending result with output quantization `q` (`None`: the exact
    /// accumulator, for an array node that is the graph output).
    fn materialize(&mut self, p: Pending, q: Option<Quant>) -> R<TensorId> {
        let act = match (&p.act, &q) {
            (PendAct::None, _) => Activation::None,
            (PendAct::Relu, _) => Activation::Relu,
            (PendAct::Clip(lo, hi), Some(q)) => {
                let (l, h) = clip_codes(q, *lo, *hi);
                Activation::Clamp { lo: l, hi: h }
            }
            (PendAct::Clip(..), None) => {
                return Err("a Clip on an unquantized output is not supported".into())
            }
        };
        let requant = if q.is_some() { self.opts.requant } else { RequantMode::Accumulator };
        let name = p.node.clone();
        match p.op {
            PendOp::Conv { x, mut conv } => {
                conv.act = act;
                conv.requant = requant;
                self.add(&name, Op::Conv2d(conv), &[x], q)
            }
            PendOp::Dense { x, mut dense, .. } => {
                dense.act = act;
                dense.requant = requant;
                self.add(&name, Op::Dense(dense), &[x], q)
            }
            PendOp::Add { a, b } => {
                let q = q.ok_or("an Add must be followed by a quantizer")?;
                self.add(&name, Op::Add { act, requant }, &[a, b], Some(q))
            }
            PendOp::Concat { xs, axis } => {
                let q = q.ok_or("a Concat must be followed by a quantizer")?;
                if !matches!(act, Activation::None) {
                    return Err("an activation after a Concat is not supported".into());
                }
                self.add(&name, Op::Concat { axis, requant }, &xs, Some(q))
            }
            PendOp::AvgPool { .. } | PendOp::Gap { .. } => {
                let q = q.ok_or("an average pool must be followed by a quantizer")?;
                if !matches!(act, Activation::None) {
                    return Err("an activation after an average pool is not supported".into());
                }
                self.pool_node(p, DivRounding::HalfEven, Some(q))
            }
        }
    }

    /// An average pool node. With `q` equal to the input's quantization (or `None`: keep it)
    /// it is the graph's average pool with `rounding`; a global average pool to another
    /// quantization (ONNX Runtime's QDQ pools) is a depthwise conv with unit weights at scale
    /// 1/(H*W) (`docs/onnx.md`, "Average pools").
    fn pool_node(&mut self, p: Pending, rounding: DivRounding, q: Option<Quant>) -> R<TensorId> {
        let name = p.node.clone();
        let (x, op) = match p.op {
            PendOp::AvgPool { x, window, count_include_pad } => {
                (x, Op::AveragePool(AvgPool { window, count_include_pad, rounding }))
            }
            PendOp::Gap { x } => (x, Op::GlobalAveragePool { rounding }),
            _ => return Err("not a pool".into()),
        };
        let xq = self.quant_of(x)?;
        match q {
            None => self.add(&name, op, &[x], None),
            Some(q) if q == xq => self.add(&name, op, &[x], None),
            Some(q) => {
                let sh = self.shape_of(x)?;
                if !matches!(op, Op::GlobalAveragePool { .. }) || sh.len() != 3 {
                    return Err(format!(
                        "an AveragePool whose output quantization ({}) differs from its input's ({}) is not supported",
                        describe(&q),
                        describe(&xq)
                    ));
                }
                let (c, h, w) = (sh[0], sh[1], sh[2]);
                let hw = (h * w) as f32;
                let wq = Quant::new(2, true, false, Scale::Tensor(1.0 / hw), 0).map_err(|e| e.to_string())?;
                let weight =
                    Weights::new(vec![c, 1, h, w], vec![1; c * h * w], wq).map_err(|e| e.to_string())?;
                let bias = Bias::new(vec![0; c], None).map_err(|e| e.to_string())?;
                let mut conv = Conv2d::new(weight, bias);
                conv.groups = c;
                conv.requant = self.opts.requant;
                self.add(&name, Op::Conv2d(conv), &[x], Some(q))
            }
        }
    }
}

fn qdq_bits(dt: i32) -> R<(u32, bool)> {
    Ok(match dt {
        data_type::INT8 => (8, true),
        data_type::UINT8 => (8, false),
        data_type::INT4 => (4, true),
        data_type::UINT4 => (4, false),
        d => {
            return Err(format!(
                "quantized type {} is not supported here (INT8, UINT8, INT4, UINT4)",
                data_type::name(d)
            ))
        }
    })
}

/// `|a - b| <= 2^-20 * max(|a|, |b|)`: two float32 scales computed by different float paths
/// (e.g. Brevitas' `s_in * s_w` vs ours) that must denote the same grid.
fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= a.abs().max(b.abs()) * (1.0 / 1048576.0)
}

fn describe(q: &Quant) -> String {
    format!(
        "{}{} bits{}, scale {:e}, zero point {}",
        if q.signed() { "signed " } else { "unsigned " },
        q.bits(),
        if q.narrow() { " narrow" } else { "" },
        q.scale().at(0),
        q.zero_point()
    )
}

/// A real-valued clip `[lo, hi]` as output codes: `quantize(lo)`, `quantize(hi)` with the
/// tensor's quantizer (round half to even, clamped to the code range).
fn clip_codes(q: &Quant, lo: f32, hi: f32) -> (i64, i64) {
    let l = if lo == f32::NEG_INFINITY { q.min_code() } else { q.quantize(lo) };
    let h = if hi == f32::INFINITY { q.max_code() } else { q.quantize(hi) };
    (l, h)
}

/// QONNX `Quant` of a float constant, exactly as qonnx's numpy code in float32:
/// `v = f32(w / s) + f32(z)`, clamped to the code range, then rounded by `mode`.
fn quant_codes(w: &[f32], dims: &[usize], q: &QParams, mode: &str) -> R<Vec<i64>> {
    let m = mode.to_ascii_uppercase();
    let lo = if q.signed { -(1i64 << (q.bits - 1)) + q.narrow as i64 } else { 0 };
    let hi = if q.signed { (1i64 << (q.bits - 1)) - 1 } else { (1i64 << q.bits) - 1 - q.narrow as i64 };
    // Stride of the per-axis index in row-major order.
    let (stride, len) = match q.axis {
        Some(a) => (dims[a + 1..].iter().product::<usize>(), dims[a]),
        None => (1, 1),
    };
    let mut out = Vec::with_capacity(w.len());
    for (i, &x) in w.iter().enumerate() {
        let c = if q.scale.len() > 1 || q.zero_point.len() > 1 { (i / stride) % len } else { 0 };
        let s = if q.scale.len() > 1 { q.scale[c] } else { q.scale[0] };
        let z = if q.zero_point.len() > 1 { q.zero_point[c] } else { q.zero_point[0] };
        let v = x / s + z as f32;
        if v.is_nan() {
            return Err(format!("weight {i} is NaN after scaling"));
        }
        let v = v.clamp(lo as f32, hi as f32);
        let r = match m.as_str() {
            "ROUND" | "HALF_EVEN" => v.round_ties_even(),
            "FLOOR" => v.floor(),
            "CEIL" => v.ceil(),
            // Toward zero.
            "DOWN" => v.trunc(),
            _ => {
                return Err(format!(
                    "rounding_mode {mode} is not supported (ROUND, HALF_EVEN, FLOOR, CEIL, DOWN)"
                ))
            }
        };
        // Graph codes include the zero point (real = (code - z) * s), so r is the code.
        out.push(r as i64);
    }
    Ok(out)
}

/// The per-sample target shape of an ONNX Reshape `spec` (which includes the batch): the
/// first entry must be 1, -1 or 0 (the batch), 0 copies the input dimension, one -1 is
/// inferred.
fn reshape_target(inshape: &[usize], spec: &[i64]) -> R<Vec<usize>> {
    if spec.is_empty() || !(-1..=1).contains(&spec[0]) {
        return Err(format!("shape {spec:?}: the first (batch) entry must be 1, 0 or -1"));
    }
    let total: usize = inshape.iter().product();
    let mut out = Vec::new();
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate().skip(1) {
        match d {
            -1 if infer.is_none() => {
                infer = Some(out.len());
                out.push(1);
            }
            0 => out.push(*inshape.get(i - 1).ok_or(format!("shape {spec:?}: 0 beyond the input rank"))?),
            d if d >= 1 => out.push(d as usize),
            _ => return Err(format!("shape {spec:?} is not supported")),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("shape {spec:?} does not fit {total} elements"));
        }
        out[i] = total / known;
    }
    if out.iter().product::<usize>() != total {
        return Err(format!("shape {spec:?} does not fit the input {inshape:?}"));
    }
    Ok(out)
}
