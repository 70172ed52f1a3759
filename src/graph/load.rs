//! Any model bitmac runs — `bitmac-model/1`, `bitmac-graph/1` or ONNX
//! (QONNX, QDQ) — as a [`Graph`] with the rule that turns a float sample into
//! its input codes, and a data set of float samples with labels. The one
//! loader `bitmac gen` (`model_node`) and `bitmac dse` (model workloads) use
//! (`docs/graph.md` §13); every model then runs through [`super::run`].
//!
//! Input codes per format (each the rule `bitmac run` applies):
//! - `bitmac-model/1`: [`crate::model::Model::input_codes`] on the raw
//!   sample (the model's own input quantizer);
//! - `bitmac-graph/1`: `f32(raw) * raw_scale`, then the graph input's
//!   quantizer ([`Graph::quantize_input`]);
//! - ONNX: the graph input's quantizer on the float32 sample.

use super::*;
use crate::model::{Dataset, Model};
use std::path::Path;

/// Which file format a model came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    /// `bitmac-model/1` JSON (or the embedded default model).
    Model,
    /// `bitmac-graph/1` JSON.
    Graph,
    /// An `.onnx` file (QONNX or QDQ).
    Onnx,
}

impl ModelFormat {
    /// `bitmac-model/1`, `bitmac-graph/1`, `onnx`.
    pub fn name(self) -> &'static str {
        match self {
            ModelFormat::Model => "bitmac-model/1",
            ModelFormat::Graph => "bitmac-graph/1",
            ModelFormat::Onnx => "onnx",
        }
    }
}

enum InputRule {
    Model(Box<Model>),
    Scaled(f32),
    Onnx(Box<crate::import::onnx::Imported>),
}

/// A loaded model of any format.
pub struct AnyModel {
    /// The validated graph every command runs.
    pub graph: Graph,
    /// The file format.
    pub format: ModelFormat,
    /// SHA-256 (lowercase hex) of the model file's bytes.
    pub sha256: String,
    rule: InputRule,
}

impl AnyModel {
    /// Load `path`: `.onnx` through the importer with `requant` (the mode of
    /// every requantizing node; `docs/onnx.md`), a JSON file whose `format`
    /// is `bitmac-graph/1` as a graph, any other JSON as `bitmac-model/1`
    /// (then `requant` is not used: the model's layers use `hardware`). The
    /// name `default` is the embedded default model.
    pub fn load(path: &Path, requant: RequantMode) -> Result<AnyModel> {
        if path.as_os_str() == "default" {
            let m = crate::model::default_model()?;
            return Ok(AnyModel {
                graph: from_model(&m)?,
                format: ModelFormat::Model,
                sha256: crate::model::default_model_sha256(),
                rule: InputRule::Model(Box::new(m)),
            });
        }
        if crate::import::run::is_onnx(path) {
            let imp = crate::import::onnx::load(path, crate::import::onnx::ImportOptions { requant })?;
            let sha256 = crate::model::sha256_hex(&crate::io::read(path)?);
            return Ok(AnyModel {
                graph: imp.graph.clone(),
                format: ModelFormat::Onnx,
                sha256,
                rule: InputRule::Onnx(Box::new(imp)),
            });
        }
        let bytes = crate::io::read(path)?;
        let sha256 = crate::model::sha256_hex(&bytes);
        let what = path.display().to_string();
        let text = String::from_utf8(bytes).map_err(|_| Error::input(format!("{what}: not UTF-8 text")))?;
        if format::GraphFile::is_graph_json(&text) {
            let f = format::GraphFile::from_json_str(&text, &what)?;
            return Ok(AnyModel {
                graph: f.graph,
                format: ModelFormat::Graph,
                sha256,
                rule: InputRule::Scaled(f.raw_scale),
            });
        }
        let m = Model::from_json_str(&text, &what)?;
        Ok(AnyModel {
            graph: from_model(&m)?,
            format: ModelFormat::Model,
            sha256,
            rule: InputRule::Model(Box::new(m)),
        })
    }

    /// The input codes of one float sample (see the module doc).
    pub fn input_codes(&self, x: &[f32]) -> Result<Vec<i64>> {
        match &self.rule {
            InputRule::Model(m) => Ok(m.input_codes(x)?.into_iter().map(i64::from).collect()),
            InputRule::Scaled(s) => {
                let v: Vec<f32> = x.iter().map(|&r| r * s).collect();
                self.graph.quantize_input(&v)
            }
            InputRule::Onnx(_) => self.graph.quantize_input(x),
        }
    }

    /// The `bitmac-model/1` model, for that format.
    pub fn model(&self) -> Option<&Model> {
        match &self.rule {
            InputRule::Model(m) => Some(m),
            _ => None,
        }
    }

    /// The reference runtime's (or fake-quant) prediction per sample from a
    /// reference file of this model's format: `bitmac-model/1` and
    /// `bitmac-graph/1` `.ref.json` (fake-quant predictions), ONNX
    /// `.ref.json` (`docs/onnx.md`: argmax of the runtime's logits). Also
    /// returns the reference's labels when it has them (`bitmac-model/1`).
    pub fn reference_predictions(&self, path: &Path) -> Result<(Vec<usize>, Option<Vec<u32>>)> {
        match &self.rule {
            InputRule::Model(m) => {
                let r = crate::model::Reference::load(path)?;
                r.check_model(m).map_err(|e| e.context(path.display()))?;
                Ok((r.fake_quant.predictions.clone(), Some(r.labels.clone())))
            }
            InputRule::Scaled(_) => {
                let r = report::GraphReference::load(path, None, None)?;
                Ok((r.predictions, None))
            }
            InputRule::Onnx(imp) => {
                let r = crate::import::reference::OnnxReference::load(path, imp)?;
                Ok((r.predictions(), None))
            }
        }
    }
}

/// Float samples, each the model input's element count, with optional labels.
pub struct Samples {
    len: usize,
    data: Vec<f32>,
    /// One label per sample (when known).
    pub labels: Option<Vec<u32>>,
}

impl Samples {
    /// Load a data set: a CSV (`label,pixels...`, `docs/model-format.md`),
    /// a float32 `.npy` of shape `[N, ...]` with `labels` an integer `.npy`
    /// of N labels (optional), or, when `path` is `None`, the embedded test
    /// split of the digits data (`models/data/digits_test.csv`).
    pub fn load(path: Option<&Path>, labels: Option<&Path>) -> Result<Samples> {
        let is_npy = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
        match path {
            Some(p) if is_npy(p) => {
                let x = crate::npy::read_f32(p)?;
                let n = x.shape.first().copied().unwrap_or(0);
                if n == 0 {
                    return Err(Error::field(
                        format!("{}: shape", p.display()),
                        format!("{:?}", x.shape),
                        "[N >= 1, ...]",
                    ));
                }
                let len = x.data.len() / n;
                let labels = match labels {
                    None => None,
                    Some(l) => {
                        let a = crate::npy::read_npy(l)?;
                        if a.shape != [n] {
                            return Err(Error::field(
                                format!("{}: shape", l.display()),
                                format!("{:?}", a.shape),
                                format!("[{n}] (one label per sample of {})", p.display()),
                            ));
                        }
                        let mut v = Vec::with_capacity(n);
                        for (i, &y) in a.data.iter().enumerate() {
                            v.push(u32::try_from(y).map_err(|_| {
                                Error::field(format!("{}: label[{i}]", l.display()), y, "0..=2^32-1")
                            })?);
                        }
                        Some(v)
                    }
                };
                Ok(Samples { len, data: x.data, labels })
            }
            Some(p) => {
                if let Some(l) = labels {
                    return Err(Error::input(format!(
                        "{}: labels are only used with a .npy data set",
                        l.display()
                    )));
                }
                Ok(Samples::from_dataset(&Dataset::load(p)?))
            }
            None => Ok(Samples::from_dataset(&crate::model::default_test_data()?)),
        }
    }

    fn from_dataset(d: &Dataset) -> Samples {
        let n = d.len();
        let len = if n == 0 { 0 } else { d.image(0).len() };
        let mut data = Vec::with_capacity(n * len);
        for i in 0..n {
            data.extend_from_slice(d.image(i));
        }
        Samples { len, data, labels: Some(d.labels().to_vec()) }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.len).unwrap_or(0)
    }

    /// True when there is no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `i` (float values, per-sample element order); `field` names
    /// the index in the error.
    pub fn sample(&self, i: usize, field: &str) -> Result<&[f32]> {
        if i >= self.len() {
            return Err(Error::field(
                field,
                i,
                format!("0..={} (the data set's samples)", self.len().saturating_sub(1)),
            ));
        }
        Ok(&self.data[i * self.len..(i + 1) * self.len])
    }
}
