//! `bitmac._native`: the PyO3 layer of the Python package. Thin on purpose:
//! every function converts its arguments, calls the bitmac library (the same
//! functions the CLI calls) and converts the result back. Arrays cross as
//! little-endian bytes (int64 or float32); `python/bitmac/__init__.py` turns
//! them into NumPy arrays. A user error (`bitmac::Error` of the input kind)
//! raises `ValueError` with the CLI's one-line message; anything else raises
//! `RuntimeError`. PyO3 turns a Rust panic into a Python exception, so no
//! panic crosses into the interpreter.

use bitmac::array::{Engine, Matrix};
use bitmac::cdc::{Data, StepFifo};
use bitmac::gemm::{GemmRequest, Stage};
use bitmac::hw::HwConfig;
use bitmac::import::model::LoadedModel;
use bitmac::lsq::{LsqConfig, LsqKind, LsqVariant};
use bitmac::numerics::{IntFormat, Narrower, OverflowMode, Position, RoundMode, Rounder};
use bitmac::requant::{quantize_multiplier, RequantRounding, Requantizer};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

fn err(e: bitmac::Error) -> PyErr {
    if e.is_input() {
        PyValueError::new_err(e.to_string())
    } else {
        PyRuntimeError::new_err(e.to_string())
    }
}

type PyRes<T> = PyResult<T>;

fn i64s(b: &[u8], what: &str) -> PyRes<Vec<i64>> {
    if b.len() % 8 != 0 {
        return Err(PyValueError::new_err(format!(
            "{what}: {} bytes is not a whole number of int64",
            b.len()
        )));
    }
    Ok(b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect())
}

fn f32s(b: &[u8], what: &str) -> PyRes<Vec<f32>> {
    if b.len() % 4 != 0 {
        return Err(PyValueError::new_err(format!(
            "{what}: {} bytes is not a whole number of float32",
            b.len()
        )));
    }
    Ok(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
}

fn bytes_i64<'py>(py: Python<'py>, v: &[i64]) -> Bound<'py, PyBytes> {
    let buf: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    PyBytes::new(py, &buf)
}

fn bytes_f32<'py>(py: Python<'py>, v: &[f32]) -> Bound<'py, PyBytes> {
    let buf: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    PyBytes::new(py, &buf)
}

fn to_i64(v: i128, what: &str, i: usize) -> PyRes<i64> {
    i64::try_from(v).map_err(|_| PyValueError::new_err(format!("{what}[{i}]: {v} does not fit int64")))
}

/// A validated hardware config (`docs/hw-config.md`).
#[pyclass(name = "HwConfig", module = "bitmac._native")]
#[derive(Clone)]
struct PyHw {
    cfg: HwConfig,
    /// Names the source in error messages (a path, `dict`, a preset).
    what: String,
}

#[pymethods]
impl PyHw {
    /// Load and validate a JSON file (errors as `bitmac gemm --hw PATH`).
    #[staticmethod]
    fn load(path: &str) -> PyRes<PyHw> {
        let cfg = HwConfig::load(std::path::Path::new(path)).map_err(err)?;
        Ok(PyHw { cfg, what: path.to_string() })
    }

    /// Parse and validate JSON text; `what` names the source in errors.
    #[staticmethod]
    fn from_json(text: &str, what: &str) -> PyRes<PyHw> {
        let cfg = HwConfig::from_json_str(text, what).map_err(err)?;
        Ok(PyHw { cfg, what: what.to_string() })
    }

    /// Apply `PATH=VALUE` overrides exactly as `bitmac run --set` does
    /// (`value` is JSON text, or a bare string), then re-validate. On error
    /// the config is unchanged.
    fn set(&mut self, path: &str, value: &str) -> PyRes<()> {
        let text = self.to_json()?;
        let sets = [format!("{path}={value}")];
        let text = bitmac::cli::apply_overrides(&text, &self.what, &sets).map_err(err)?;
        self.cfg = HwConfig::from_json_str(&text, &self.what).map_err(err)?;
        Ok(())
    }

    /// The config as JSON text (the validated spec).
    fn to_json(&self) -> PyRes<String> {
        serde_json::to_string_pretty(self.cfg.spec()).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    #[getter]
    fn rows(&self) -> usize {
        self.cfg.rows()
    }
    #[getter]
    fn cols(&self) -> usize {
        self.cfg.cols()
    }
    #[getter]
    fn dataflow(&self) -> &'static str {
        self.cfg.dataflow().name()
    }
    #[getter]
    fn acc_bits(&self) -> u32 {
        self.cfg.acc_bits()
    }
    #[getter]
    fn what(&self) -> String {
        self.what.clone()
    }
}

fn matrix(data: &[u8], rows: usize, cols: usize, fmt: IntFormat, what: &str) -> PyRes<Matrix> {
    let v = i64s(data, what)?;
    Matrix::from_i64(rows, cols, &v, fmt, what).map_err(err)
}

/// One GEMM (`bitmac gemm`): returns (values as int64 bytes, m, n, the CLI's
/// .npy dtype name, stats JSON, trace text or None, cdc summary or None).
#[pyfunction]
#[pyo3(signature = (hw, a, a_shape, w, w_shape, bias, stage, engine, multiplier, scales, trace, max_work=bitmac::limits::GEMM_MAX_WORK))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn gemm<'py>(
    py: Python<'py>,
    hw: &PyHw,
    a: &[u8],
    a_shape: (usize, usize),
    w: &[u8],
    w_shape: (usize, usize),
    bias: Option<&[u8]>,
    stage: &str,
    engine: &str,
    multiplier: Option<f64>,
    scales: Option<(f32, f32, f32)>,
    trace: bool,
    max_work: u64,
) -> PyRes<(Bound<'py, PyBytes>, usize, usize, &'static str, String, Option<String>, Option<String>)> {
    let cfg = &hw.cfg;
    let engine: Engine = engine.parse().map_err(err)?;
    let stage: Stage = stage.parse().map_err(err)?;
    let sc = match scales {
        Some((sw, sa, so)) => [Some(sw), Some(sa), Some(so)],
        None => [None; 3],
    };
    let mult = bitmac::gemm::multiplier(multiplier, sc).map_err(err)?;
    let a = matrix(a, a_shape.0, a_shape.1, cfg.activations(), "A")?;
    let w = matrix(w, w_shape.0, w_shape.1, cfg.weights(), "W")?;
    let bias = match bias {
        None => None,
        Some(b) => Some(bitmac::gemm::bias_i32(&i64s(b, "bias")?, "bias").map_err(err)?),
    };
    let req =
        GemmRequest { a: &a, w: &w, bias: bias.as_deref(), stage, engine, multiplier: mult, trace, max_work };
    let bitmac::gemm::GemmOutput { values, summary: res } =
        py.detach(|| bitmac::gemm::gemm(cfg, &req)).map_err(err)?;
    let dtype = match res.dtype {
        bitmac::npy::Dtype::I8 => "int8",
        bitmac::npy::Dtype::I16 => "int16",
        bitmac::npy::Dtype::I32 => "int32",
        _ => "int64",
    };
    let stats = bitmac::gemm::stats_json(&res.stats, res.cdc.as_ref()).map_err(err)?;
    Ok((bytes_i64(py, &values), res.m, res.n, dtype, stats, res.trace, res.cdc_summary))
}

/// Drop `k` LSBs of each value (`docs/numerics.md`): returns (value,
/// residue, position 0/1/2 = below/at/above, error), each int64 bytes.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn round<'py>(
    py: Python<'py>,
    x: &[u8],
    k: u32,
    mode: &str,
    offset: i64,
) -> PyRes<(Bound<'py, PyBytes>, Bound<'py, PyBytes>, Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let mode: RoundMode = mode.parse().map_err(err)?;
    if k > 63 {
        return Err(err(bitmac::Error::field("k", k, "0..=63")));
    }
    let r = Rounder::new(k, mode, offset).map_err(err)?;
    let x = i64s(x, "x")?;
    let (mut v, mut res, mut pos, mut e) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, &xi) in x.iter().enumerate() {
        let (y, info) = r.round_info(xi as i128);
        v.push(to_i64(y, "rounded", i)?);
        res.push(info.residue as i64);
        pos.push(match info.position {
            Position::Below => 0,
            Position::At => 1,
            Position::Above => 2,
        });
        e.push(to_i64(info.error, "error", i)?);
    }
    Ok((bytes_i64(py, &v), bytes_i64(py, &res), bytes_i64(py, &pos), bytes_i64(py, &e)))
}

/// Store each value into a `bits`-bit format with an overflow mode:
/// returns (value, overflowed 0/1), int64 bytes.
#[pyfunction]
fn narrow<'py>(
    py: Python<'py>,
    x: &[u8],
    bits: u32,
    signed: bool,
    mode: &str,
) -> PyRes<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let mode: OverflowMode = mode.parse().map_err(err)?;
    let fmt = IntFormat::new(signed, bits).map_err(err)?;
    let n = Narrower::new(fmt, mode);
    let x = i64s(x, "x")?;
    let (mut v, mut o) = (Vec::with_capacity(x.len()), Vec::with_capacity(x.len()));
    for (i, &xi) in x.iter().enumerate() {
        let (y, ovf) = n.narrow(xi as i128);
        v.push(to_i64(y, "narrowed", i)?);
        o.push(ovf as i64);
    }
    Ok((bytes_i64(py, &v), bytes_i64(py, &o)))
}

/// TFLite requantization of each value (`docs/requant.md`): returns
/// (code, clamped 0/1), int64 bytes.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn requant<'py>(
    py: Python<'py>,
    x: &[u8],
    multiplier: f64,
    rounding: &str,
    out_bits: u32,
    out_signed: bool,
    relu: bool,
) -> PyRes<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let rounding: RequantRounding = rounding.parse().map_err(err)?;
    let m = quantize_multiplier(multiplier).map_err(err)?;
    let out = IntFormat::new(out_signed, out_bits).map_err(err)?;
    let rq = Requantizer::new(m, rounding, out, relu).map_err(err)?;
    let x = i64s(x, "x")?;
    let (mut v, mut c) = (Vec::with_capacity(x.len()), Vec::with_capacity(x.len()));
    for &xi in &x {
        let (y, cl) = rq.apply(xi as i128);
        v.push(y);
        c.push(cl as i64);
    }
    Ok((bytes_i64(py, &v), bytes_i64(py, &c)))
}

/// TFLite `QuantizeMultiplier`: (m0, shift).
#[pyfunction]
fn quantize_multiplier_q31(multiplier: f64) -> PyRes<(i64, i32)> {
    let m = quantize_multiplier(multiplier).map_err(err)?;
    Ok((m.m0 as i64, m.shift))
}

/// `M = f64(f32(s_a * s_w)) / f64(s_out)`.
#[pyfunction]
fn layer_multiplier(s_w: f32, s_a: f32, s_out: f32) -> PyRes<f64> {
    bitmac::requant::layer_multiplier(s_w, s_a, s_out).map_err(err)
}

fn lsq_cfg(kind: &str, variant: &str, nbit: i64, step: f64) -> PyRes<LsqConfig> {
    let kind = LsqKind::parse("kind", kind).map_err(err)?;
    let variant = LsqVariant::parse("variant", variant).map_err(err)?;
    LsqConfig::from_boundary(kind, variant, nbit, step).map_err(err)
}

/// LSQ forward: (y float32 bytes, code int64 bytes).
#[pyfunction]
fn lsq_forward<'py>(
    py: Python<'py>,
    x: &[u8],
    kind: &str,
    variant: &str,
    nbit: i64,
    step: f64,
) -> PyRes<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let cfg = lsq_cfg(kind, variant, nbit, step)?;
    let x = f32s(x, "x")?;
    let f = cfg.forward(&x).map_err(err)?;
    let codes: Vec<i64> = f.code.iter().map(|&c| c as i64).collect();
    Ok((bytes_f32(py, &f.y), bytes_i64(py, &codes)))
}

/// LSQ backward: (grad_x float32 bytes, grad_s).
#[pyfunction]
fn lsq_backward<'py>(
    py: Python<'py>,
    x: &[u8],
    grad_y: &[u8],
    kind: &str,
    variant: &str,
    nbit: i64,
    step: f64,
) -> PyRes<(Bound<'py, PyBytes>, f32)> {
    let cfg = lsq_cfg(kind, variant, nbit, step)?;
    let x = f32s(x, "x")?;
    let g = f32s(grad_y, "grad_y")?;
    if g.len() != x.len() {
        return Err(err(bitmac::lsq::length_mismatch(x.len(), g.len())));
    }
    let b = cfg.backward(&x, &g).map_err(err)?;
    if !b.grad_s.is_finite() {
        // The same check and message as `bitmac lsq`.
        return Err(PyValueError::new_err(format!(
            "grad_s: the f32 sum overflowed to {} (allowed: finite; scale grad_y down)",
            b.grad_s
        )));
    }
    Ok((bytes_f32(py, &b.grad_x), b.grad_s))
}

/// The stepping async FIFO (`docs/cdc.md` §3–§4; `bitmac::cdc::StepFifo`).
#[pyclass(name = "AsyncFifo", module = "bitmac._native")]
struct PyFifo {
    f: StepFifo,
}

fn word(d: Data) -> Option<u64> {
    match d {
        Data::Word(v) => Some(v),
        // `X` (a pop of never-written memory) cannot happen in the correct
        // design: a pop needs a push first.
        Data::None | Data::X => None,
    }
}

#[pymethods]
impl PyFifo {
    #[new]
    #[pyo3(signature = (depth=16, sync=2, data_width=8))]
    fn new(depth: u64, sync: u32, data_width: u32) -> PyRes<PyFifo> {
        Ok(PyFifo { f: StepFifo::new(depth, sync, data_width).map_err(err)? })
    }
    /// One write-clock edge; returns whether it pushed.
    fn write_edge(&mut self, wen: bool, data: u64) -> PyRes<bool> {
        Ok(self.f.write_edge(wen, data).map_err(err)?.moved)
    }
    /// One read-clock edge; returns the popped word or None.
    fn read_edge(&mut self, ren: bool) -> Option<u64> {
        word(self.f.read_edge(ren).data)
    }
    /// Coincident edges; returns (pushed, popped word or None).
    fn both_edges(&mut self, wen: bool, data: u64, ren: bool) -> PyRes<(bool, Option<u64>)> {
        let (w, r) = self.f.both_edges(wen, data, ren).map_err(err)?;
        Ok((w.moved, word(r.data)))
    }
    fn reset(&mut self) {
        self.f.reset()
    }
    #[getter]
    fn wfull(&self) -> bool {
        self.f.wfull()
    }
    #[getter]
    fn rempty(&self) -> bool {
        self.f.rempty()
    }
    #[getter]
    fn wptr(&self) -> u32 {
        self.f.wptr()
    }
    #[getter]
    fn rptr(&self) -> u32 {
        self.f.rptr()
    }
    #[getter]
    fn wbin(&self) -> u32 {
        self.f.wbin()
    }
    #[getter]
    fn rbin(&self) -> u32 {
        self.f.rbin()
    }
    #[getter]
    fn wq_rptr(&self) -> u32 {
        self.f.wq_rptr()
    }
    #[getter]
    fn rq_wptr(&self) -> u32 {
        self.f.rq_wptr()
    }
    #[getter]
    fn rdata(&self) -> Option<u64> {
        self.f.rdata()
    }
    #[getter]
    fn occupancy(&self) -> u64 {
        self.f.occupancy()
    }
    #[getter]
    fn write_edges(&self) -> u64 {
        self.f.write_edges()
    }
    #[getter]
    fn read_edges(&self) -> u64 {
        self.f.read_edges()
    }
    #[getter]
    fn depth(&self) -> u64 {
        self.f.depth()
    }
    #[getter]
    fn sync(&self) -> u32 {
        self.f.sync()
    }
    #[getter]
    fn data_width(&self) -> u32 {
        self.f.data_width()
    }
}

/// A loaded model (`bitmac-model/1`, `bitmac-graph/1` or ONNX): `bitmac::import::model`, run
/// through the library's graph runner exactly as `bitmac run` runs it.
#[pyclass(name = "Model", module = "bitmac._native")]
struct PyModel {
    m: LoadedModel,
}

/// One node's statistics: (name, kind, array stats JSON or None, (outputs, saturated,
/// int32 overflows, ties) of the post-processing unit).
type NodeStats = (String, &'static str, Option<String>, (u64, u64, u64, u64));
/// One node of a dump: (name, kind, inputs as (shape, int64 bytes), accumulators as int64
/// bytes or None, output shape, output int64 bytes).
type NodeDump<'py> = (
    String,
    &'static str,
    Vec<(Vec<usize>, Bound<'py, PyBytes>)>,
    Option<Bound<'py, PyBytes>>,
    Vec<usize>,
    Bound<'py, PyBytes>,
);

impl PyModel {
    fn hw(&self, hw: Option<&PyHw>) -> PyRes<HwConfig> {
        match hw {
            Some(h) => Ok(h.cfg.clone()),
            None => {
                let what = match self.m.format {
                    "onnx" => "models/hw/onnx.json",
                    _ => "models/hw/default.json",
                };
                HwConfig::from_json_str(self.m.default_hw(), what).map_err(err)
            }
        }
    }
}

#[pymethods]
impl PyModel {
    /// Load a model file; `requant` (ONNX only) as `bitmac run --requant`.
    #[staticmethod]
    #[pyo3(signature = (path, requant=None))]
    fn load(path: &str, requant: Option<&str>) -> PyRes<PyModel> {
        let rq = requant.map(bitmac::graph::RequantMode::parse).transpose().map_err(err)?;
        Ok(PyModel { m: LoadedModel::load(std::path::Path::new(path), rq).map_err(err)? })
    }

    #[getter]
    fn format(&self) -> &'static str {
        self.m.format
    }

    #[getter]
    fn name(&self) -> String {
        self.m.name.clone()
    }

    #[getter]
    fn input_shape(&self) -> Vec<usize> {
        self.m.graph().tensor(self.m.graph().input()).shape.clone()
    }

    #[getter]
    fn input_len(&self) -> usize {
        self.m.input_len()
    }

    /// Run float32 samples (bytes, `samples * input_len`): (logits int64 bytes, samples,
    /// classes, predictions, total stats JSON, per-node statistics).
    #[pyo3(signature = (x, hw=None, engine="fast", batch=1))]
    #[allow(clippy::type_complexity)]
    fn run<'py>(
        &self,
        py: Python<'py>,
        x: &[u8],
        hw: Option<&PyHw>,
        engine: &str,
        batch: usize,
    ) -> PyRes<(Bound<'py, PyBytes>, usize, usize, Vec<usize>, String, Vec<NodeStats>)> {
        let engine: Engine = engine.parse().map_err(err)?;
        let cfg = self.hw(hw)?;
        let x = f32s(x, "x")?;
        let r = py.detach(|| self.m.run(&x, &cfg, engine, batch)).map_err(err)?;
        let nodes = self
            .m
            .graph()
            .nodes()
            .iter()
            .zip(&r.run.nodes)
            .map(|(n, o)| {
                (
                    n.name.clone(),
                    n.op.kind(),
                    o.stats.as_ref().map(|s| s.to_json()),
                    (o.ppu.outputs, o.ppu.saturated, o.ppu.overflows, o.ppu.ties),
                )
            })
            .collect();
        Ok((bytes_i64(py, &r.logits), r.samples, r.classes, r.predictions, r.total.to_json(), nodes))
    }

    /// One float32 sample's values at every node (`bitmac run --dump`).
    #[pyo3(signature = (x, hw=None, engine="fast"))]
    fn dump<'py>(
        &self,
        py: Python<'py>,
        x: &[u8],
        hw: Option<&PyHw>,
        engine: &str,
    ) -> PyRes<Vec<NodeDump<'py>>> {
        let engine: Engine = engine.parse().map_err(err)?;
        let cfg = self.hw(hw)?;
        let x = f32s(x, "x")?;
        let nodes = py.detach(|| self.m.dump(&x, &cfg, engine)).map_err(err)?;
        Ok(nodes
            .into_iter()
            .map(|n| {
                let ins = n.inputs.iter().map(|(s, v)| (s.clone(), bytes_i64(py, v))).collect();
                // As the dump's .npy files: accumulators saturated to int64 for display.
                let acc = (!n.acc.is_empty()).then(|| {
                    let a: Vec<i64> =
                        n.acc.iter().map(|&v| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64).collect();
                    bytes_i64(py, &a)
                });
                (n.name, n.kind, ins, acc, n.output_shape, bytes_i64(py, &n.output))
            })
            .collect())
    }
}

/// The shipped hardware presets (`models/hw/*.json`), embedded so an
/// installed package needs no repository checkout. `python/tests` checks the
/// list against the directory.
const PRESETS: &[(&str, &str)] = &[
    ("cdc", include_str!("../../models/hw/cdc.json")),
    ("default", include_str!("../../models/hw/default.json")),
    ("double-relu", include_str!("../../models/hw/double-relu.json")),
    ("is", include_str!("../../models/hw/is.json")),
    ("narrow-acc", include_str!("../../models/hw/narrow-acc.json")),
    ("onnx", include_str!("../../models/hw/onnx.json")),
    ("os", include_str!("../../models/hw/os.json")),
    ("psum-round", include_str!("../../models/hw/psum-round.json")),
    ("psum-round-offset", include_str!("../../models/hw/psum-round-offset.json")),
    ("wrap16", include_str!("../../models/hw/wrap16.json")),
    ("ws-32x32", include_str!("../../models/hw/ws-32x32.json")),
];

/// Names of the embedded presets.
#[pyfunction]
fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _)| *n).collect()
}

/// A preset as a config (`what` = `models/hw/NAME.json`, as the CLI names it).
#[pyfunction]
fn preset(name: &str) -> PyRes<PyHw> {
    let (_, text) = PRESETS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
        let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        PyValueError::new_err(format!(
            "hw: {name:?} is neither a file nor a preset (allowed presets: {})",
            names.join(", ")
        ))
    })?;
    PyHw::from_json(text, &format!("models/hw/{name}.json"))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyHw>()?;
    m.add_class::<PyFifo>()?;
    m.add_class::<PyModel>()?;
    m.add_function(wrap_pyfunction!(gemm, m)?)?;
    m.add_function(wrap_pyfunction!(preset_names, m)?)?;
    m.add_function(wrap_pyfunction!(preset, m)?)?;
    m.add_function(wrap_pyfunction!(round, m)?)?;
    m.add_function(wrap_pyfunction!(narrow, m)?)?;
    m.add_function(wrap_pyfunction!(requant, m)?)?;
    m.add_function(wrap_pyfunction!(quantize_multiplier_q31, m)?)?;
    m.add_function(wrap_pyfunction!(layer_multiplier, m)?)?;
    m.add_function(wrap_pyfunction!(lsq_forward, m)?)?;
    m.add_function(wrap_pyfunction!(lsq_backward, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
