//! Reference files (`models/<name>.ref.json`, format `bitmac-ref/1`, written
//! by `models/export.py`): the PyTorch fake-quant and the Python integer
//! reference results on the test split, so bitmac can compare without
//! Python. Layout in `docs/model-format.md`.

use super::forward::argmax;
use super::Model;
use crate::error::{json_error, Error, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The `format` value of a reference file this build reads.
pub const REF_FORMAT: &str = "bitmac-ref/1";

/// PyTorch fake-quant results (float32 math, eval mode).
#[derive(Clone, Debug, PartialEq)]
pub struct FakeQuantRef {
    /// Fraction of correct predictions.
    pub accuracy: f64,
    /// Predicted class per sample (argmax of `logits`, lowest index on ties).
    pub predictions: Vec<usize>,
    /// Float32 logits per sample.
    pub logits: Vec<Vec<f32>>,
    /// The output codes of each hidden layer (= fake-quant output / step).
    pub hidden_codes: Vec<HiddenCodes>,
}

/// One hidden layer's fake-quant output codes for every sample (NCHW order).
#[derive(Clone, Debug, PartialEq)]
pub struct HiddenCodes {
    /// The layer's name.
    pub layer: String,
    /// Per sample, the output codes in the layer's output layout.
    pub codes: Vec<Vec<i32>>,
}

/// The Python integer reference (exact integers, f64 round-half-even
/// requant): what [`super::reference_forward`] must reproduce exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct IntegerRef {
    /// The requant rule's name (`f64-round-half-even`).
    pub requant: String,
    /// Fraction of correct predictions.
    pub accuracy: f64,
    /// Predicted class per sample.
    pub predictions: Vec<usize>,
    /// Integer logits (last-layer accumulators) per sample.
    pub logits: Vec<Vec<i64>>,
}

/// A validated reference file.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    /// The model's name.
    pub model: String,
    /// The model file, resolved against the reference file's directory.
    pub model_path: PathBuf,
    /// SHA-256 (hex) of the model file the reference was computed from.
    pub model_sha256: String,
    /// The data file, resolved against the reference file's directory.
    pub data_path: PathBuf,
    /// SHA-256 (hex) of the data file.
    pub data_sha256: String,
    /// Ground-truth labels, one per sample.
    pub labels: Vec<u32>,
    /// Accuracy of the float (unquantized) model before QAT.
    pub float_accuracy: f64,
    /// PyTorch fake-quant results.
    pub fake_quant: FakeQuantRef,
    /// Python integer-reference results.
    pub integer: IntegerRef,
    /// Number of samples where fake-quant and integer predictions agree.
    pub matching_predictions: usize,
    /// The first layer's input codes per sample.
    pub input_codes: Vec<Vec<i32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefJson {
    format: String,
    model: String,
    model_file: String,
    model_sha256: String,
    data_file: String,
    data_sha256: String,
    samples: usize,
    labels: Vec<u32>,
    float_accuracy: f64,
    fake_quant: FqJson,
    integer: IntJson,
    agreement: AgreeJson,
    input_codes: Vec<Vec<i32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FqJson {
    accuracy: f64,
    predictions: Vec<usize>,
    logits: Vec<Vec<f64>>,
    hidden_codes: Vec<HiddenJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HiddenJson {
    layer: String,
    codes: Vec<Vec<i32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntJson {
    requant: String,
    #[allow(dead_code)]
    note: String,
    accuracy: f64,
    predictions: Vec<usize>,
    logits: Vec<Vec<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgreeJson {
    matching_predictions: usize,
    fraction: f64,
}

/// Hex SHA-256 of a byte string.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn check_len(field: &str, len: usize, n: usize) -> Result<()> {
    if len != n {
        return Err(Error::input(format!("{field}: has {len} entries, expected {n} (samples)")));
    }
    Ok(())
}

/// Rows all of one width >= 1; returns the width.
fn check_rows<T>(field: &str, rows: &[Vec<T>]) -> Result<usize> {
    let w = rows.first().map_or(0, Vec::len);
    if w == 0 {
        return Err(Error::input(format!("{field}: rows are empty")));
    }
    if let Some(i) = rows.iter().position(|r| r.len() != w) {
        return Err(Error::input(format!("{field}[{i}]: has {} values, row 0 has {w}", rows[i].len())));
    }
    Ok(w)
}

/// `accuracy` must equal count/n exactly as Python computes it.
fn check_accuracy(field: &str, acc: f64, pred: &[usize], labels: &[u32]) -> Result<()> {
    let correct = pred.iter().zip(labels).filter(|(&p, &l)| p == l as usize).count();
    let want = correct as f64 / labels.len() as f64;
    if acc != want {
        return Err(Error::input(format!(
            "{field}: {acc} does not match the predictions ({correct}/{} = {want})",
            labels.len()
        )));
    }
    Ok(())
}

fn check_argmax<T: PartialOrd + Copy>(field: &str, logits: &[Vec<T>], pred: &[usize]) -> Result<()> {
    for (i, (row, &p)) in logits.iter().zip(pred).enumerate() {
        if argmax(row) != Some(p) {
            return Err(Error::input(format!(
                "{field}.predictions[{i}]: {p} is not the argmax of {field}.logits[{i}] (lowest index wins ties)"
            )));
        }
    }
    Ok(())
}

impl Reference {
    /// Read and validate a reference file: every per-sample list has
    /// `samples` entries, labels are 0..=9, predictions are the argmax of
    /// the logits, accuracies and the agreement count match the
    /// predictions, float logits are exact float32 values.
    pub fn load(path: &Path) -> Result<Reference> {
        let text = crate::io::read_to_string(path)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Reference::from_json_str(&text, &path.display().to_string(), &dir)
    }

    /// Parse and validate reference JSON text; `what` prefixes every error
    /// and `dir` is the directory the file's relative paths are resolved
    /// against.
    pub fn from_json_str(text: &str, what: &str, dir: &Path) -> Result<Reference> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| json_error(what, &e))?;
        let spec: RefJson = serde_path_to_error::deserialize(&value)
            .map_err(|e| Error::input(format!("{}: {}", e.path(), e.inner())).context(what))?;
        Reference::validate(spec, dir).map_err(|e| e.context(what))
    }

    fn validate(s: RefJson, dir: &Path) -> Result<Reference> {
        if s.format != REF_FORMAT {
            return Err(Error::field("format", format!("{:?}", s.format), format!("{REF_FORMAT:?}")));
        }
        let n = s.samples;
        if n == 0 {
            return Err(Error::field("samples", 0, ">= 1"));
        }
        check_len("labels", s.labels.len(), n)?;
        check_len("fake_quant.predictions", s.fake_quant.predictions.len(), n)?;
        check_len("fake_quant.logits", s.fake_quant.logits.len(), n)?;
        check_len("integer.predictions", s.integer.predictions.len(), n)?;
        check_len("integer.logits", s.integer.logits.len(), n)?;
        check_len("input_codes", s.input_codes.len(), n)?;
        let classes = check_rows("fake_quant.logits", &s.fake_quant.logits)?;
        // Labels index the logits (the class count is the logit width).
        if let Some((i, l)) = s.labels.iter().enumerate().find(|(_, &l)| l as usize >= classes) {
            return Err(Error::field(
                format!("labels[{i}]"),
                l,
                format!("0..={} (the logit count - 1)", classes - 1),
            ));
        }
        if check_rows("integer.logits", &s.integer.logits)? != classes {
            return Err(Error::input("integer.logits: row width differs from fake_quant.logits"));
        }
        check_rows("input_codes", &s.input_codes)?;
        let mut fq_logits = Vec::with_capacity(n);
        for (i, row) in s.fake_quant.logits.iter().enumerate() {
            let mut r = Vec::with_capacity(row.len());
            for (j, &v) in row.iter().enumerate() {
                let f = v as f32;
                if !f.is_finite() || f as f64 != v {
                    return Err(Error::field(
                        format!("fake_quant.logits[{i}][{j}]"),
                        v,
                        "an exact finite float32",
                    ));
                }
                r.push(f);
            }
            fq_logits.push(r);
        }
        check_argmax("fake_quant", &fq_logits, &s.fake_quant.predictions)?;
        check_argmax("integer", &s.integer.logits, &s.integer.predictions)?;
        check_accuracy("fake_quant.accuracy", s.fake_quant.accuracy, &s.fake_quant.predictions, &s.labels)?;
        check_accuracy("integer.accuracy", s.integer.accuracy, &s.integer.predictions, &s.labels)?;
        if !(0.0..=1.0).contains(&s.float_accuracy) {
            return Err(Error::field("float_accuracy", s.float_accuracy, "0..=1"));
        }
        let agree =
            s.fake_quant.predictions.iter().zip(&s.integer.predictions).filter(|(a, b)| a == b).count();
        if s.agreement.matching_predictions != agree || s.agreement.fraction != agree as f64 / n as f64 {
            return Err(Error::input(format!(
                "agreement: {{matching_predictions: {}, fraction: {}}} does not match the predictions ({agree}/{n})",
                s.agreement.matching_predictions, s.agreement.fraction
            )));
        }
        for (k, h) in s.fake_quant.hidden_codes.iter().enumerate() {
            check_len(&format!("fake_quant.hidden_codes[{k}] ({})", h.layer), h.codes.len(), n)?;
            check_rows(&format!("fake_quant.hidden_codes[{k}] ({})", h.layer), &h.codes)?;
        }
        Ok(Reference {
            model: s.model,
            model_path: dir.join(&s.model_file),
            model_sha256: s.model_sha256,
            data_path: dir.join(&s.data_file),
            data_sha256: s.data_sha256,
            labels: s.labels,
            float_accuracy: s.float_accuracy,
            fake_quant: FakeQuantRef {
                accuracy: s.fake_quant.accuracy,
                predictions: s.fake_quant.predictions,
                logits: fq_logits,
                hidden_codes: s
                    .fake_quant
                    .hidden_codes
                    .into_iter()
                    .map(|h| HiddenCodes { layer: h.layer, codes: h.codes })
                    .collect(),
            },
            integer: IntegerRef {
                requant: s.integer.requant,
                accuracy: s.integer.accuracy,
                predictions: s.integer.predictions,
                logits: s.integer.logits,
            },
            matching_predictions: agree,
            input_codes: s.input_codes,
        })
    }

    /// Number of samples.
    pub fn samples(&self) -> usize {
        self.labels.len()
    }

    /// The reference file for a model file: `x.json` -> `x.ref.json`.
    pub fn path_for_model(model_path: &Path) -> PathBuf {
        let stem = model_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        model_path.with_file_name(format!("{stem}.ref.json"))
    }

    /// Check that this reference belongs to `model`: same name, as many
    /// logits as classes, input-code rows of the model's input size, and
    /// hidden-code entries naming the hidden layers in order with their
    /// output sizes.
    pub fn check_model(&self, model: &Model) -> Result<()> {
        if self.model != model.name() {
            return Err(Error::input(format!(
                "model: {:?} is not the model's name {:?}",
                self.model,
                model.name()
            )));
        }
        if self.integer.logits[0].len() != model.num_classes() {
            return Err(Error::input(format!(
                "logits: {} per sample but the model has {} outputs",
                self.integer.logits[0].len(),
                model.num_classes()
            )));
        }
        if self.input_codes[0].len() != model.input().len() {
            return Err(Error::input(format!(
                "input_codes: {} per sample but the model input has {}",
                self.input_codes[0].len(),
                model.input().len()
            )));
        }
        let hidden = &model.layers()[..model.layers().len() - 1];
        if self.fake_quant.hidden_codes.len() != hidden.len() {
            return Err(Error::input(format!(
                "fake_quant.hidden_codes: {} layers but the model has {} hidden layers",
                self.fake_quant.hidden_codes.len(),
                hidden.len()
            )));
        }
        for (k, (h, l)) in self.fake_quant.hidden_codes.iter().zip(hidden).enumerate() {
            if h.layer != l.name() || h.codes[0].len() != l.output_len() {
                return Err(Error::input(format!(
                    "fake_quant.hidden_codes[{k}]: layer {:?} with {} codes does not match layer {k} ({}) with {} outputs",
                    h.layer,
                    h.codes[0].len(),
                    l.name(),
                    l.output_len()
                )));
            }
        }
        Ok(())
    }

    /// Check the SHA-256 of the model and data files named by the reference
    /// against the recorded ones (a stale reference is an input error).
    pub fn verify_files(&self) -> Result<()> {
        let model = crate::io::read(&self.model_path)?;
        let data = crate::io::read(&self.data_path)?;
        self.verify_bytes(&model, &data)
    }

    /// Check the SHA-256 of the model and data actually used (`model_sha`
    /// of the bytes of `model_name`, `data_sha` of `data_name`) against the
    /// recorded ones. `what` names the reference file in the error.
    pub fn verify_sha256(
        &self,
        what: &str,
        model_name: &str,
        model_sha: &str,
        data_name: &str,
        data_sha: &str,
    ) -> Result<()> {
        if model_sha != self.model_sha256 {
            return Err(Error::input(format!(
                "{what}: model_sha256: model {model_name} has SHA-256 {model_sha}, but the reference was made from {} ({}); pass the matching --reference, or --reference none",
                self.model_path.display(),
                self.model_sha256
            )));
        }
        if data_sha != self.data_sha256 {
            return Err(Error::input(format!(
                "{what}: data_sha256: data {data_name} has SHA-256 {data_sha}, but the reference was made from {} ({}); pass the matching --reference, or --reference none to run without the fake-quant comparison",
                self.data_path.display(),
                self.data_sha256
            )));
        }
        Ok(())
    }

    /// Like [`Reference::verify_files`] for contents already in memory
    /// (e.g. the embedded default model and data).
    pub fn verify_bytes(&self, model: &[u8], data: &[u8]) -> Result<()> {
        for (path, bytes, want, field) in [
            (&self.model_path, model, &self.model_sha256, "model_sha256"),
            (&self.data_path, data, &self.data_sha256, "data_sha256"),
        ] {
            let got = sha256_hex(bytes);
            if &got != want {
                return Err(Error::input(format!(
                    "{field}: {} has SHA-256 {got}, the reference was made from {want} (re-run models/train.py)",
                    path.display()
                )));
            }
        }
        Ok(())
    }
}
