//! References from the runtimes of imported ONNX models (qonnx's executor, ONNX Runtime) and
//! bitmac's agreement with them (`docs/onnx.md` §6, §8).
//!
//! A reference is a `bitmac-onnx-ref/1` JSON file written by the model's script
//! (`models/onnx/*.py`): the runtime's float32 logits per sample and, optionally, the integer
//! codes of every quantized activation, keyed by ONNX tensor name. Paths inside it are
//! relative to the JSON file's directory.
//!
//! Agreement: predictions (argmax, lowest index on ties, numpy's rule) compared sample by
//! sample; codes compared element by element for every tensor the reference lists; every
//! differing prediction is explained by the first tensor, in graph order, whose codes differ
//! on that sample (tensor, element, both codes), or, when every listed tensor agrees, by the
//! logits themselves.

use super::onnx::Imported;
use crate::error::{Error, Result};
use crate::graph::TensorId;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The format tag of a reference file.
pub const FORMAT: &str = "bitmac-onnx-ref/1";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    format: String,
    model: String,
    runtime: String,
    input: String,
    labels: String,
    logits: String,
    accuracy: f64,
    codes_dir: Option<String>,
    codes: Vec<CodeSpec>,
    /// Free-form (versions, seeds, hashes): informational only.
    #[allow(dead_code)]
    provenance: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeSpec {
    tensor: String,
    #[serde(default)]
    node: Option<String>,
    file: String,
    #[allow(dead_code)]
    dtype: String,
    shape: Vec<usize>,
}

/// One reference tensor's codes, bound to the graph tensor of the same ONNX name.
#[derive(Clone, Debug)]
pub struct RefCodes {
    /// The ONNX tensor name.
    pub tensor: String,
    pub id: TensorId,
    /// `samples * len` codes, sample-major, per-sample NCHW order.
    pub codes: Vec<i64>,
    /// Elements per sample.
    pub len: usize,
}

/// A loaded reference.
#[derive(Clone, Debug)]
pub struct OnnxReference {
    pub path: PathBuf,
    /// The runtime's description (e.g. `onnxruntime 1.32.0 ..., ORT_DISABLE_ALL`).
    pub runtime: String,
    /// The model file named by the reference (relative to its directory).
    pub model: PathBuf,
    /// The data and labels the reference was computed on.
    pub input: PathBuf,
    pub labels: PathBuf,
    pub samples: usize,
    pub classes: usize,
    /// `samples * classes` float32 logits.
    pub logits: Vec<f32>,
    /// The runtime's accuracy as its script recorded it.
    pub accuracy: f64,
    /// Codes of the listed tensors, in file order.
    pub codes: Vec<RefCodes>,
}

/// argmax with the lowest index winning ties (numpy's `argmax`); NaN never wins.
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let mut best = 0;
    for i in 1..v.len() {
        if v[i] > v[best] {
            best = i;
        }
    }
    best
}

impl OnnxReference {
    /// Load a reference for `imported`; every listed tensor must name a graph tensor of the
    /// same element count. Errors name the file and the field.
    pub fn load(path: &Path, imported: &Imported) -> Result<OnnxReference> {
        let spec: Spec = crate::io::read_json(path)?;
        let ctx = |e: Error| e.context(path.display());
        if spec.format != FORMAT {
            return Err(ctx(Error::field("format", format!("{:?}", spec.format), FORMAT)));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let lg = crate::npy::read_f32(&dir.join(&spec.logits))?;
        if lg.shape.len() != 2 || lg.shape[0] == 0 || lg.shape[1] == 0 {
            return Err(ctx(Error::field("logits shape", format!("{:?}", lg.shape), "[samples, classes]")));
        }
        let (samples, classes) = (lg.shape[0], lg.shape[1]);
        let out_len = imported.graph.tensor(imported.graph.output()).len();
        if classes != out_len {
            return Err(ctx(Error::field(
                "logits classes",
                classes,
                format!("{out_len} (the model's output)"),
            )));
        }
        let mut codes = Vec::new();
        let cdir = dir.join(spec.codes_dir.as_deref().unwrap_or("."));
        for (i, c) in spec.codes.iter().enumerate() {
            let field = format!("codes[{i}] ({})", c.tensor);
            let id = imported.bindings.iter().find(|(n, _)| *n == c.tensor).map(|(_, t)| *t);
            let id = id.ok_or_else(|| {
                ctx(Error::input(format!("{field}: the model has no quantized tensor of that name")))
            })?;
            let len = imported.graph.tensor(id).len();
            let arr = crate::npy::read_npy(&cdir.join(&c.file))?;
            let n: usize = arr.shape.iter().skip(1).product();
            if arr.shape.first() != Some(&samples) || n != len || arr.shape != c.shape {
                return Err(ctx(Error::field(
                    format!("{field} shape"),
                    format!("{:?}", arr.shape),
                    format!("[{samples}, ...] with {len} elements per sample, as listed {:?}", c.shape),
                )));
            }
            let _ = &c.node;
            codes.push(RefCodes { tensor: c.tensor.clone(), id, codes: arr.data, len });
        }
        Ok(OnnxReference {
            path: path.to_path_buf(),
            runtime: spec.runtime,
            model: dir.join(spec.model),
            input: dir.join(spec.input),
            labels: dir.join(spec.labels),
            samples,
            classes,
            logits: lg.data,
            accuracy: spec.accuracy,
            codes,
        })
    }

    /// The reference's prediction per sample.
    pub fn predictions(&self) -> Vec<usize> {
        self.logits.chunks(self.classes).map(argmax).collect()
    }
}

/// Agreement of one tensor's codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorAgreement {
    pub tensor: String,
    /// The graph node producing it (the graph input has none).
    pub node: Option<String>,
    pub elements: usize,
    pub differing: usize,
    /// Largest `|bitmac - reference|`.
    pub max_abs_diff: i64,
    /// Samples with at least one differing element.
    pub samples_differing: usize,
}

/// Why one prediction differs.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    pub sample: usize,
    pub bitmac: usize,
    pub reference: usize,
    /// The first tensor (graph order) whose codes differ on this sample: (tensor, node,
    /// element, bitmac code, reference code); `None` when every listed tensor agrees.
    pub first: Option<(String, Option<String>, usize, i64, i64)>,
    /// One line: node, element, cause.
    pub explanation: String,
}

/// The agreement report.
#[derive(Clone, Debug, PartialEq)]
pub struct Agreement {
    pub runtime: String,
    pub samples: usize,
    pub predictions_equal: usize,
    pub tensors: Vec<TensorAgreement>,
    pub differences: Vec<Difference>,
}

/// Compare bitmac's run with `r`. `predictions[s]` is bitmac's prediction for sample `s`;
/// `codes(t)` returns bitmac's codes of graph tensor `t` for every sample (`samples * len`,
/// sample-major), `None` if not kept; `logits[s]` bitmac's output codes of sample `s`.
pub fn agreement<'a, 'b>(
    imported: &Imported,
    r: &OnnxReference,
    predictions: &[usize],
    logits: &dyn Fn(usize) -> &'a [i64],
    codes: &dyn Fn(TensorId) -> Option<&'b [i64]>,
) -> Result<Agreement> {
    if predictions.len() != r.samples {
        return Err(Error::input(format!(
            "{}: {} reference samples, {} run",
            r.path.display(),
            r.samples,
            predictions.len()
        )));
    }
    let g = &imported.graph;
    let producer = |t: TensorId| g.producer(t).map(|i| g.nodes()[i].name.clone());
    // Graph order of the listed tensors: the input first, then by producing node.
    let mut order: Vec<usize> = (0..r.codes.len()).collect();
    order.sort_by_key(|&i| g.producer(r.codes[i].id).map_or(0, |p| p + 1));
    let mut tensors = Vec::new();
    let mut per_tensor: Vec<Option<&[i64]>> = Vec::new();
    for rc in &r.codes {
        let mine = codes(rc.id);
        if let Some(m) = mine {
            if m.len() != rc.codes.len() {
                return Err(Error::internal(format!(
                    "codes of {}: {} vs {} elements",
                    rc.tensor,
                    m.len(),
                    rc.codes.len()
                )));
            }
        }
        let (mut differing, mut max_abs, mut samples_differing) = (0, 0i64, 0);
        if let Some(m) = mine {
            for (a, b) in m.chunks(rc.len).zip(rc.codes.chunks(rc.len)) {
                let d = a.iter().zip(b).filter(|(x, y)| x != y).count();
                differing += d;
                samples_differing += (d > 0) as usize;
                max_abs = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(max_abs, i64::max);
            }
        }
        tensors.push(TensorAgreement {
            tensor: rc.tensor.clone(),
            node: producer(rc.id),
            elements: if mine.is_some() { rc.codes.len() } else { 0 },
            differing,
            max_abs_diff: max_abs,
            samples_differing,
        });
        per_tensor.push(mine);
    }
    let refp = r.predictions();
    let mut differences = Vec::new();
    let mut equal = 0;
    for s in 0..r.samples {
        if predictions[s] == refp[s] {
            equal += 1;
            continue;
        }
        let mut first = None;
        for &i in &order {
            let rc = &r.codes[i];
            let Some(m) = per_tensor[i] else { continue };
            let (a, b) = (&m[s * rc.len..(s + 1) * rc.len], &rc.codes[s * rc.len..(s + 1) * rc.len]);
            if let Some(e) = a.iter().zip(b).position(|(x, y)| x != y) {
                first = Some((rc.tensor.clone(), producer(rc.id), e, a[e], b[e]));
                break;
            }
        }
        let l = logits(s);
        let rl = &r.logits[s * r.classes..(s + 1) * r.classes];
        let explanation = match &first {
            Some((t, node, e, a, b)) => format!(
                "node {} (tensor {t}) element {e}: bitmac code {a}, reference {b} ({}); the difference propagates to the logits",
                node.as_deref().unwrap_or("input"),
                if (a - b).abs() == 1 {
                    "one code apart: a value within float32 error of a half-way point, rounded differently by the reference's float path and bitmac's requantization (docs/onnx.md §7, §8)"
                } else {
                    "more than one code apart"
                }
            ),
            None => format!(
                "every listed tensor agrees; the logits decide: bitmac classes {} vs {} = {} vs {}, reference {} vs {} = {:e} vs {:e} (float32 rounding of the reference's last layer, docs/onnx.md §7)",
                predictions[s], refp[s], l[predictions[s]], l[refp[s]],
                predictions[s], refp[s], rl[predictions[s]], rl[refp[s]]
            ),
        };
        differences.push(Difference {
            sample: s,
            bitmac: predictions[s],
            reference: refp[s],
            first,
            explanation,
        });
    }
    Ok(Agreement {
        runtime: r.runtime.clone(),
        samples: r.samples,
        predictions_equal: equal,
        tensors,
        differences,
    })
}
