//! The sweep spec (`docs/dse.md`): parsing, validation and expansion into an
//! ordered list of points.
//!
//! Point order (and so point ids, `0..N`): first the grid, as an odometer
//! over its parameters sorted by dotted path (the first path varies slowest,
//! the last fastest; each parameter's values in the order listed), then the
//! `random.count` random samples in draw order. Each sample draws its
//! parameters in sorted path order from one `ChaCha8Rng` seeded with
//! `random.seed`. The ids depend only on the spec.

use super::hw::{get_path, param_kind, set_path, Hw, Kind};
use crate::error::{json_error, Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The evaluation semantics version; part of the spec hash, so results made
/// by a different engine are never mixed into a resumed or merged sweep.
pub const ENGINE_VERSION: &str = "bitmac-dse-engine/1";

/// Upper bound on the number of points of one sweep.
pub const MAX_POINTS: u64 = 10_000_000;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct SpecJson {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    base: Value,
    workload: WorkloadJson,
    #[serde(default)]
    grid: BTreeMap<String, Value>,
    random: Option<RandomJson>,
    #[serde(default)]
    invalid: InvalidPolicy,
    #[serde(default)]
    plots: PlotsJson,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RandomJson {
    count: u64,
    seed: u64,
    params: BTreeMap<String, Value>,
}

/// What to do with a point whose parameter combination is invalid.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InvalidPolicy {
    /// Record the point as `skipped` with the reason (the default).
    #[default]
    Skip,
    /// Reject the whole spec, naming the first invalid point.
    Reject,
}

/// Which parameters the plots use (all optional). Stored in `sweep.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PlotsJson {
    /// x axis of the quality plot (default `accumulator.bits`).
    pub x: String,
    /// One line per value of this parameter (default `psum.rounding`).
    pub series: String,
    /// x axis of the bias plot (default `psum.offset`).
    pub bias_x: String,
    /// Only points with these parameter values enter the quality plot
    /// (default: all); the rest is averaged per (series, x).
    pub quality_where: BTreeMap<String, Value>,
    /// Only points with these parameter values enter the bias plot.
    pub bias_where: BTreeMap<String, Value>,
    /// The cost objective of the Pareto front (`pareto.csv`, the Pareto
    /// plot): `area` (default, the area proxy) or `energy_pj`. Written to
    /// `sweep.json` only when not the default.
    #[serde(skip_serializing_if = "is_area")]
    pub pareto_cost: String,
}

fn is_area(s: &str) -> bool {
    s == "area"
}

impl Default for PlotsJson {
    fn default() -> Self {
        PlotsJson {
            x: "accumulator.bits".into(),
            series: "psum.rounding".into(),
            bias_x: "psum.offset".into(),
            quality_where: BTreeMap::new(),
            bias_where: BTreeMap::new(),
            pareto_cost: "area".into(),
        }
    }
}

/// The workload every point evaluates.
#[derive(Deserialize, Debug, Clone)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum WorkloadJson {
    /// A synthetic GEMM `m x k x n` with seeded uniform codes.
    Gemm { m: usize, k: usize, n: usize, seed: u64 },
    /// A synthetic conv2d (NCHW input `c x h x w`, `oc` filters `kh x kw`),
    /// lowered by im2col; seeded uniform codes.
    Conv {
        c: usize,
        h: usize,
        w: usize,
        oc: usize,
        kh: usize,
        kw: usize,
        stride: usize,
        pad: usize,
        seed: u64,
    },
    /// A shipped model on its data set (paths relative to the spec file).
    Model {
        model: String,
        data: String,
        /// The fake-quant reference file (`*.ref.json`); default: the model
        /// path with `.json` replaced by `.ref.json`.
        #[serde(default)]
        reference: Option<String>,
        /// Evaluate only the first `limit` samples.
        #[serde(default)]
        limit: Option<usize>,
        /// The labels of a float32 `.npy` data set (an integer `.npy`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        labels: Option<String>,
        /// ONNX models: the requant mode of every requantizing node
        /// (`float32` when absent; docs/onnx.md).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requant: Option<String>,
    },
}

/// A validated, expanded sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The spec's name.
    pub name: String,
    /// The spec file's directory (relative paths resolve against it).
    pub dir: PathBuf,
    /// The resolved base configuration.
    pub base: Value,
    /// The workload.
    pub workload: WorkloadJson,
    /// The swept parameter paths, sorted.
    pub params: Vec<String>,
    /// Every point's overrides (one value per swept path), in id order,
    /// made on demand ([`Points::get`]): never materialized, so a sweep of
    /// 10^7 points takes megabytes, not gigabytes.
    pub points: Points,
    /// What happens to invalid combinations.
    pub invalid: InvalidPolicy,
    /// Plot axes.
    pub plots: PlotsJson,
    /// SHA-256 (hex) of the canonical spec, base and workload input files.
    pub hash: String,
    /// The canonical spec (as stored in `sweep.json`).
    pub spec: Value,
}

impl Sweep {
    /// Load, validate and expand a spec file.
    pub fn load(path: &Path) -> Result<Sweep> {
        let text = crate::io::read_to_string(path)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Sweep::parse(&text, &path.display().to_string(), &dir)
    }

    /// Parse a spec from text; `what` names it in errors, `dir` resolves
    /// relative paths.
    pub fn parse(text: &str, what: &str, dir: &Path) -> Result<Sweep> {
        let raw: Value = serde_json::from_str(text).map_err(|e| json_error(what, &e))?;
        let j: SpecJson = serde_json::from_value(raw.clone()).map_err(|e| json_error(what, &e))?;
        let ctx = |e: Error| e.context(what);
        if j.name.is_empty() || j.name.len() > 100 {
            return Err(ctx(Error::field("name", format!("{:?}", j.name), "1..=100 characters")));
        }
        // Base: a path to a preset (relative to the spec's directory) or an
        // inline object.
        let (mut base, mut inputs) = match &j.base {
            Value::String(p) => {
                let bp = dir.join(p);
                let bytes = crate::io::read(&bp).map_err(|e| ctx(e.context("base")))?;
                let text = String::from_utf8(bytes.clone())
                    .map_err(|_| ctx(Error::input(format!("base: {}: not valid UTF-8", bp.display()))))?;
                let v: Value = serde_json::from_str(&text).map_err(|e| ctx(json_error(bp.display(), &e)))?;
                (v, vec![(format!("base:{p}"), sha256_hex(&bytes))])
            }
            Value::Object(_) => (j.base.clone(), vec![]),
            other => {
                return Err(ctx(Error::field(
                    "base",
                    other,
                    "a preset path (string) or an inline config object",
                )))
            }
        };
        super::hw::complete_base(&mut base);
        Hw::from_value(&base).map_err(|e| ctx(e.context("base")))?;
        validate_workload(&j.workload).map_err(ctx)?;
        if let WorkloadJson::Model { model, data, reference, labels, .. } = &j.workload {
            let refp = workload_reference(dir, model, reference.as_deref()).map_err(ctx)?;
            let mut files = vec![("model", model), ("data", data)];
            if let Some(r) = &refp {
                files.push(("reference", r));
            }
            if let Some(l) = labels {
                files.push(("labels", l));
            }
            for (k, p) in files {
                let bytes =
                    crate::io::read(&dir.join(p)).map_err(|e| ctx(e.context(format!("workload.{k}"))))?;
                inputs.push((format!("{k}:{p}"), sha256_hex(&bytes)));
            }
        }

        // Grid values.
        let mut grid: Vec<(String, Vec<Value>)> = Vec::new();
        for (path, v) in &j.grid {
            let field = format!("grid.{path}");
            let kind = param_kind(path, &field).map_err(ctx)?;
            let values = grid_values(&field, kind, v).map_err(ctx)?;
            grid.push((path.clone(), values));
        }
        // Random parameters.
        let mut random: Vec<(String, Dist)> = Vec::new();
        let (count, seed) = match &j.random {
            Some(r) => {
                if r.count > MAX_POINTS {
                    return Err(ctx(Error::field("random.count", r.count, format!("0..={MAX_POINTS}"))));
                }
                if r.params.is_empty() && r.count > 0 {
                    return Err(ctx(Error::input("random.params: empty (allowed: at least one parameter)")));
                }
                for (path, v) in &r.params {
                    let field = format!("random.params.{path}");
                    let kind = param_kind(path, &field).map_err(ctx)?;
                    random.push((path.clone(), parse_dist(&field, kind, v).map_err(ctx)?));
                }
                (r.count, r.seed)
            }
            None => (0, 0),
        };
        let grid_n: u64 = if grid.is_empty() {
            0
        } else {
            grid.iter()
                .try_fold(1u64, |acc, (_, v)| acc.checked_mul(v.len() as u64).filter(|&n| n <= MAX_POINTS))
                .ok_or_else(|| {
                    ctx(Error::input(format!(
                        "grid: more than {MAX_POINTS} points (allowed: at most {MAX_POINTS})"
                    )))
                })?
        };
        let total = grid_n + count;
        if total == 0 {
            return Err(ctx(Error::input("grid and random are both empty (allowed: at least one point)")));
        }
        if total > MAX_POINTS {
            return Err(ctx(Error::field("number of points", total, format!("1..={MAX_POINTS}"))));
        }

        let mut params: Vec<String> =
            grid.iter().map(|(p, _)| p.clone()).chain(random.iter().map(|(p, _)| p.clone())).collect();
        params.sort();
        params.dedup();
        let base_of = |p: &str| get_path(&base, p).cloned().unwrap_or(Value::Null);

        let base_vals: Vec<Value> = params.iter().map(|p| base_of(p)).collect();
        let points = Points::new(params.clone(), base_vals, grid, grid_n, random, count, seed);
        // Validate plots' parameter names.
        for (f, p) in
            [("plots.x", &j.plots.x), ("plots.series", &j.plots.series), ("plots.bias_x", &j.plots.bias_x)]
        {
            param_kind(p, f).map_err(ctx)?;
        }
        if !matches!(j.plots.pareto_cost.as_str(), "area" | "energy_pj") {
            return Err(ctx(Error::field(
                "plots.pareto_cost",
                format!("{:?}", j.plots.pareto_cost),
                "\"area\", \"energy_pj\"",
            )));
        }
        for (f, m) in
            [("plots.quality_where", &j.plots.quality_where), ("plots.bias_where", &j.plots.bias_where)]
        {
            for (p, v) in m {
                let field = format!("{f}.{p}");
                param_kind(p, &field).map_err(ctx)?.check(&field, v).map_err(ctx)?;
            }
        }

        let sweep_hash = {
            let mut h = Sha256::new();
            h.update(ENGINE_VERSION.as_bytes());
            h.update([0]);
            h.update(canonical(&raw).as_bytes());
            h.update([0]);
            h.update(canonical(&base).as_bytes());
            for (k, v) in &inputs {
                h.update([0]);
                h.update(k.as_bytes());
                h.update(b"=");
                h.update(v.as_bytes());
            }
            hex(&h.finalize())
        };
        let sweep = Sweep {
            name: j.name,
            dir: dir.to_path_buf(),
            base,
            workload: j.workload,
            params,
            points,
            invalid: j.invalid,
            plots: j.plots,
            hash: sweep_hash,
            spec: canonical_value(&raw),
        };
        if sweep.invalid == InvalidPolicy::Reject {
            for id in 0..sweep.points.len() {
                if let Err(e) = sweep.hw(id) {
                    return Err(ctx(Error::input(format!("point {id}: {e} (invalid is \"reject\")"))));
                }
            }
        }
        Ok(sweep)
    }

    /// The full configuration object of point `id`.
    pub fn config(&self, id: usize) -> Result<Value> {
        let mut v = self.base.clone();
        for (p, x) in &self.points.get(id) {
            set_path(&mut v, p, x.clone())?;
        }
        Ok(v)
    }

    /// The validated hardware of point `id`; an error is a combination the
    /// point cannot have (recorded as `skipped` under the `skip` policy).
    pub fn hw(&self, id: usize) -> Result<Hw> {
        Hw::from_value(&self.config(id)?)
    }

    /// Upper bound on the MACs of evaluating one point of a synthetic
    /// workload (`gemm`: `m*k*n`; `conv`: the conv's MACs); `None` for a
    /// model workload (bounded by its data set, see docs/limits.md).
    pub fn point_macs(&self) -> Option<u128> {
        match &self.workload {
            WorkloadJson::Gemm { m, k, n, .. } => Some(*m as u128 * *k as u128 * *n as u128),
            WorkloadJson::Conv { c, h, w, oc, kh, kw, stride, pad, .. } => {
                let (oh, ow) = ((h + 2 * pad - kh) / stride + 1, (w + 2 * pad - kw) / stride + 1);
                Some([oh, ow, *c, *kh, *kw, *oc].iter().fold(1u128, |a, &x| a * x as u128))
            }
            _ => None,
        }
    }

    /// The value of parameter `path` at point `id` (swept or from the base).
    pub fn value(&self, id: usize, path: &str) -> Value {
        self.points
            .get(id)
            .get(path)
            .cloned()
            .or_else(|| get_path(&self.base, path).cloned())
            .unwrap_or(Value::Null)
    }
}

/// The points of a sweep, made on demand from the spec: grid points by a
/// mixed-radix decomposition of the id (the odometer order, last path
/// fastest), random points by replaying the one `ChaCha8Rng` stream from a
/// checkpoint saved every [`Points::CHUNK`] draws, so every point equals
/// the point a full sequential expansion would make. Memory: one RNG state
/// (a few hundred bytes) per `CHUNK` random points.
#[derive(Clone, Debug)]
pub struct Points {
    params: Vec<String>,
    base: Vec<Value>,
    grid: Vec<(String, Vec<Value>)>,
    grid_n: u64,
    random: Vec<(String, Dist)>,
    count: u64,
    checkpoints: Vec<ChaCha8Rng>,
}

impl PartialEq for Points {
    fn eq(&self, o: &Points) -> bool {
        self.len() == o.len() && (0..self.len()).all(|i| self.get(i) == o.get(i))
    }
}

impl Points {
    /// Random points between two saved RNG states.
    pub const CHUNK: u64 = 256;

    fn new(
        params: Vec<String>,
        base: Vec<Value>,
        grid: Vec<(String, Vec<Value>)>,
        grid_n: u64,
        random: Vec<(String, Dist)>,
        count: u64,
        seed: u64,
    ) -> Points {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut checkpoints = Vec::with_capacity(count.div_ceil(Self::CHUNK) as usize);
        for i in 0..count {
            if i % Self::CHUNK == 0 {
                checkpoints.push(rng.clone());
            }
            for (_, d) in &random {
                d.draw(&mut rng);
            }
        }
        Points { params, base, grid, grid_n, random, count, checkpoints }
    }

    /// The number of points.
    pub fn len(&self) -> usize {
        (self.grid_n + self.count) as usize
    }

    /// True for a sweep without points (never: a spec needs one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Point `id`'s value of every swept path (`id < len()`; a larger id is
    /// an internal error of the caller and gives the base values).
    pub fn get(&self, id: usize) -> BTreeMap<String, Value> {
        let mut pt: BTreeMap<String, Value> =
            self.params.iter().cloned().zip(self.base.iter().cloned()).collect();
        let id = id as u64;
        if id < self.grid_n {
            let mut rest = id;
            for (path, vals) in self.grid.iter().rev() {
                let n = vals.len() as u64;
                pt.insert(path.clone(), vals[(rest % n) as usize].clone());
                rest /= n;
            }
        } else if id - self.grid_n < self.count {
            let r = id - self.grid_n;
            let mut rng = self.checkpoints[(r / Self::CHUNK) as usize].clone();
            for _ in 0..r % Self::CHUNK {
                for (_, d) in &self.random {
                    d.draw(&mut rng);
                }
            }
            for (path, d) in &self.random {
                pt.insert(path.clone(), d.draw(&mut rng));
            }
        }
        pt
    }
}

/// The reference file of a model workload, relative to the spec's
/// directory: `reference` when given; else for a `bitmac-model/1` model
/// [`default_reference`] (required), for a `bitmac-graph/1` model
/// `NAME.ref.json` beside `NAME.graph.json` and for an ONNX model
/// `NAME.ref.json` beside `NAME.onnx`, each only when that file exists
/// (without a reference the `agreement` metric is null).
pub fn workload_reference(
    dir: &std::path::Path,
    model: &str,
    reference: Option<&str>,
) -> Result<Option<String>> {
    if let Some(r) = reference {
        return Ok(Some(r.to_string()));
    }
    let exists = |p: &str| dir.join(p).is_file().then(|| p.to_string());
    if crate::import::run::is_onnx(std::path::Path::new(model)) {
        let stem = &model[..model.len() - ".onnx".len()];
        return Ok(exists(&format!("{stem}.ref.json")));
    }
    let text = crate::io::read_to_string(&dir.join(model)).map_err(|e| e.context("workload.model"))?;
    if crate::graph::format::GraphFile::is_graph_json(&text) {
        let p = crate::graph::report::GraphReference::path_for_model(std::path::Path::new(model));
        return Ok(exists(&p.display().to_string()));
    }
    Ok(Some(default_reference(model)))
}

/// The default reference path of a model file.
pub fn default_reference(model: &str) -> String {
    match model.strip_suffix(".json") {
        Some(stem) => format!("{stem}.ref.json"),
        None => format!("{model}.ref.json"),
    }
}

fn validate_workload(w: &WorkloadJson) -> Result<()> {
    let dim = |f: &str, v: usize, hi: usize| -> Result<()> {
        if v == 0 || v > hi {
            Err(Error::field(format!("workload.{f}"), v, format!("1..={hi}")))
        } else {
            Ok(())
        }
    };
    match w {
        WorkloadJson::Gemm { m, k, n, .. } => {
            dim("m", *m, 4096)?;
            dim("k", *k, 65536)?;
            dim("n", *n, 4096)?;
            if m * k * n > 1 << 30 {
                return Err(Error::field("workload m*k*n", m * k * n, format!("1..={}", 1u64 << 30)));
            }
        }
        WorkloadJson::Conv { c, h, w, oc, kh, kw, stride, pad, .. } => {
            dim("c", *c, 4096)?;
            dim("h", *h, 4096)?;
            dim("w", *w, 4096)?;
            dim("oc", *oc, 4096)?;
            dim("kh", *kh, 64)?;
            dim("kw", *kw, 64)?;
            dim("stride", *stride, 64)?;
            if *pad > 64 {
                return Err(Error::field("workload.pad", pad, "0..=64"));
            }
            if h + 2 * pad < *kh || w + 2 * pad < *kw {
                return Err(Error::input(format!(
                    "workload: kernel {kh}x{kw} larger than the padded input {}x{} (allowed: kh <= h+2*pad, kw <= w+2*pad)",
                    h + 2 * pad,
                    w + 2 * pad
                )));
            }
            let (oh, ow) = ((h + 2 * pad - kh) / stride + 1, (w + 2 * pad - kw) / stride + 1);
            let macs = oh * ow * c * kh * kw * oc;
            if macs > 1 << 30 {
                return Err(Error::field("workload MACs", macs, format!("1..={}", 1u64 << 30)));
            }
        }
        WorkloadJson::Model { limit, .. } => {
            if let Some(0) = limit {
                return Err(Error::field("workload.limit", 0, "at least 1"));
            }
        }
    }
    Ok(())
}

/// A grid entry: a non-empty list of values, or `{"from": a, "to": b,
/// "step": s}` (integers, `step >= 1`, `from <= to`).
fn grid_values(field: &str, kind: Kind, v: &Value) -> Result<Vec<Value>> {
    let values: Vec<Value> = match v {
        Value::Array(a) => a.clone(),
        Value::Object(o) => {
            let get = |k: &str| -> Result<i64> {
                o.get(k)
                    .and_then(Value::as_i64)
                    .ok_or_else(|| Error::input(format!("{field}.{k}: missing or not an integer")))
            };
            for k in o.keys() {
                if !["from", "to", "step"].contains(&k.as_str()) {
                    return Err(Error::input(format!(
                        "{field}: unknown field {k:?} (allowed: from, to, step)"
                    )));
                }
            }
            let (from, to) = (get("from")?, get("to")?);
            let step = if o.contains_key("step") { get("step")? } else { 1 };
            if step < 1 {
                return Err(Error::field(format!("{field}.step"), step, "an integer >= 1"));
            }
            if from > to {
                return Err(Error::field(format!("{field}.to"), to, format!("an integer >= from ({from})")));
            }
            if (to - from) / step >= MAX_POINTS as i64 {
                return Err(Error::input(format!("{field}: more than {MAX_POINTS} values")));
            }
            (0..).map(|i| from + i * step).take_while(|x| *x <= to).map(Value::from).collect()
        }
        other => return Err(Error::field(field, other, "a list of values or {\"from\", \"to\", \"step\"}")),
    };
    if values.is_empty() {
        return Err(Error::input(format!("{field}: empty list (allowed: at least one value)")));
    }
    for (i, x) in values.iter().enumerate() {
        kind.check(&format!("{field}[{i}]"), x)?;
    }
    Ok(values)
}

/// A random parameter's distribution.
#[derive(Debug, Clone)]
enum Dist {
    /// Uniform integer in `lo..=hi`.
    Int(i64, i64),
    /// Uniform float in `[lo, hi)` (`lo == hi` gives `lo`).
    Float(f64, f64),
    /// One of these values, uniformly.
    Choice(Vec<Value>),
}

impl Dist {
    fn draw(&self, rng: &mut ChaCha8Rng) -> Value {
        match self {
            Dist::Int(lo, hi) => Value::from(rng.gen_range(*lo..=*hi)),
            Dist::Float(lo, hi) => {
                if lo == hi {
                    Value::from(*lo)
                } else {
                    Value::from(rng.gen_range(*lo..*hi))
                }
            }
            Dist::Choice(v) => v[rng.gen_range(0..v.len())].clone(),
        }
    }
}

/// `{"int": [lo, hi]}`, `{"float": [lo, hi]}` or `{"choice": [values]}`.
fn parse_dist(field: &str, kind: Kind, v: &Value) -> Result<Dist> {
    let o = v.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
        Error::field(field, v, "{\"int\": [lo, hi]}, {\"float\": [lo, hi]} or {\"choice\": [values]}")
    })?;
    let (key, arg) = o.iter().next().expect("one entry");
    let pair = |f: &str| -> Result<(Value, Value)> {
        match arg.as_array() {
            Some(a) if a.len() == 2 => Ok((a[0].clone(), a[1].clone())),
            _ => Err(Error::field(format!("{field}.{f}"), arg, "[lo, hi]")),
        }
    };
    match key.as_str() {
        "int" => {
            if !matches!(kind, Kind::Int(..)) {
                return Err(Error::input(format!(
                    "{field}: \"int\" needs an integer parameter (allowed here: choice)"
                )));
            }
            let (lo, hi) = pair("int")?;
            kind.check(&format!("{field}.int[0]"), &lo)?;
            kind.check(&format!("{field}.int[1]"), &hi)?;
            let (lo, hi) = (lo.as_i64().unwrap_or(0), hi.as_i64().unwrap_or(0));
            if lo > hi {
                return Err(Error::field(format!("{field}.int[1]"), hi, format!(">= {lo}")));
            }
            Ok(Dist::Int(lo, hi))
        }
        "float" => {
            if !matches!(kind, Kind::Float(..)) {
                return Err(Error::input(format!(
                    "{field}: \"float\" needs a real-valued parameter (allowed here: int or choice)"
                )));
            }
            let (lo, hi) = pair("float")?;
            kind.check(&format!("{field}.float[0]"), &lo)?;
            kind.check(&format!("{field}.float[1]"), &hi)?;
            let (lo, hi) = (lo.as_f64().unwrap_or(0.0), hi.as_f64().unwrap_or(0.0));
            if lo > hi {
                return Err(Error::field(format!("{field}.float[1]"), hi, format!(">= {lo}")));
            }
            Ok(Dist::Float(lo, hi))
        }
        "choice" => {
            let a = arg
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| Error::field(format!("{field}.choice"), arg, "a non-empty list"))?;
            for (i, x) in a.iter().enumerate() {
                kind.check(&format!("{field}.choice[{i}]"), x)?;
            }
            Ok(Dist::Choice(a.clone()))
        }
        other => Err(Error::input(format!(
            "{field}: unknown distribution {other:?} (allowed: int, float, choice)"
        ))),
    }
}

/// JSON with object keys sorted recursively (serde_json's default map is
/// already sorted; this makes the hash independent of that feature).
pub fn canonical_value(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let sorted: BTreeMap<&String, Value> = o.iter().map(|(k, x)| (k, canonical_value(x))).collect();
            Value::Object(sorted.into_iter().map(|(k, x)| (k.clone(), x)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical_value).collect()),
        x => x.clone(),
    }
}

/// Compact canonical JSON text.
pub fn canonical(v: &Value) -> String {
    canonical_value(v).to_string()
}

/// SHA-256 of bytes, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod points_tests {
    use super::*;

    /// The sequential expansion the lazy [`Points`] must reproduce: the
    /// grid as an odometer (last path fastest), then the random draws from
    /// one stream.
    fn sequential(p: &Points) -> Vec<BTreeMap<String, Value>> {
        let base: BTreeMap<String, Value> = p.params.iter().cloned().zip(p.base.iter().cloned()).collect();
        let mut out = Vec::new();
        if p.grid_n > 0 {
            let mut idx = vec![0usize; p.grid.len()];
            for _ in 0..p.grid_n {
                let mut pt = base.clone();
                for (g, (path, vals)) in p.grid.iter().enumerate() {
                    pt.insert(path.clone(), vals[idx[g]].clone());
                }
                out.push(pt);
                for g in (0..p.grid.len()).rev() {
                    idx[g] += 1;
                    if idx[g] < p.grid[g].1.len() {
                        break;
                    }
                    idx[g] = 0;
                }
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..p.count {
            let mut pt = base.clone();
            for (path, d) in &p.random {
                pt.insert(path.clone(), d.draw(&mut rng));
            }
            out.push(pt);
        }
        out
    }

    #[test]
    fn lazy_points_equal_the_sequential_expansion() {
        let params: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let base = vec![Value::from(0), Value::from(1), Value::from(2), Value::from(3)];
        let grid = vec![
            ("a".to_string(), vec![Value::from(10), Value::from(11), Value::from(12)]),
            ("b".to_string(), vec![Value::from("x"), Value::from("y")]),
        ];
        let random = vec![
            ("c".to_string(), Dist::Choice(vec![Value::from(1), Value::from(2), Value::from(3)])),
            ("d".to_string(), Dist::Float(0.5, 2.5)),
            ("a".to_string(), Dist::Int(-3, 1000)),
        ];
        // Crosses several checkpoints, and ends mid-chunk.
        let count = 3 * Points::CHUNK + 17;
        let p = Points::new(params, base, grid, 6, random, count, 7);
        let want = sequential(&p);
        assert_eq!(p.len(), want.len());
        for (i, w) in want.iter().enumerate() {
            assert_eq!(&p.get(i), w, "point {i}");
        }
    }
}
