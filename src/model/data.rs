//! Data sets for `bitmac run`: raw input samples and their labels.
//!
//! Two sources (docs/model-format.md, "Data sets"):
//! - **CSV**: a header `label,NAME,...` (the first column is named `label`;
//!   the F feature columns may be named anything), then one line per sample
//!   with the label (a decimal integer >= 0) and F decimal numbers, `\n` after
//!   every line. The shipped digits files (`models/data/digits_*.csv`, format
//!   in `models/data/README.md`) are CSV with F = 64 pixels 0..=16.
//! - **`.npy`**: inputs `N x shape` (at least 2 dimensions; the trailing ones
//!   give F = their product), dtype float32 or any integer dtype, and labels
//!   from a second `.npy` of N integers (shape `[N]` or `[N, 1]`).
//!
//! Every raw value is held as the f32 `bitmac run` feeds the model's first
//! operation `f32(raw) * input.scale`: a CSV number is converted to the
//! nearest f32 (ties to even, Rust's correctly rounded `str::parse`); an
//! integer `.npy` value `v` becomes `v as f32` (nearest, ties to even); a
//! float32 `.npy` value is taken bit for bit. Whether the values and labels
//! fit a model is checked by [`Dataset::check_for`].

use crate::error::{Error, Result};
use std::path::Path;

/// Pixels per image (8x8) of the digits data set.
pub const DIGITS_FEATURES: usize = 64;
/// Largest pixel value of the digits data set.
pub const DIGITS_PIXEL_MAX: u8 = 16;
/// Number of classes of the digits data set (digits 0..=9).
pub const DIGITS_CLASSES: usize = 10;

/// Largest label a data set may hold (labels are `u32`).
const MAX_LABEL: u64 = u32::MAX as u64;

/// A validated data set: labels and raw samples, `features` values each.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    labels: Vec<u32>,
    raw: Vec<f32>,
    features: usize,
}

impl Dataset {
    /// Read and validate a CSV data set. Errors name the file, the line
    /// and the column.
    pub fn load(path: &Path) -> Result<Dataset> {
        let text = crate::io::read_to_string(path)?;
        Dataset::parse(&text, &path.display().to_string())
    }

    /// Parse CSV text; `what` prefixes every error.
    pub fn parse(text: &str, what: &str) -> Result<Dataset> {
        Dataset::parse_inner(text).map_err(|e| e.context(what))
    }

    fn parse_inner(text: &str) -> Result<Dataset> {
        if text.is_empty() {
            return Err(Error::input("empty file (expected the header line)"));
        }
        if !text.ends_with('\n') {
            let line = text.split('\n').count();
            return Err(Error::input(format!(
                "line {line}: truncated (the file does not end with a newline)"
            )));
        }
        let mut lines = text[..text.len() - 1].split('\n');
        let first = lines.next().unwrap_or("");
        let names: Vec<&str> = first.split(',').collect();
        if names[0] != "label" || names.len() < 2 {
            let shown: String = first.chars().take(40).collect();
            return Err(Error::input(format!(
                "line 1: header {shown:?}... is not \"label,NAME,...\" (a label column, then at least one feature)"
            )));
        }
        let features = names.len() - 1;
        let mut labels = Vec::new();
        let mut raw = Vec::new();
        for (i, line) in lines.enumerate() {
            let ln = i + 2;
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != features + 1 {
                return Err(Error::input(format!(
                    "line {ln}: has {} fields (allowed: {} = label + {features} features, as the header)",
                    fields.len(),
                    features + 1
                )));
            }
            let f = fields[0];
            let ok = !f.is_empty() && f.len() <= 10 && f.bytes().all(|b| b.is_ascii_digit());
            let v: u64 = if ok { f.parse().unwrap_or(u64::MAX) } else { u64::MAX };
            if v > MAX_LABEL {
                return Err(Error::field(
                    format!("line {ln}: label"),
                    format!("{f:?}"),
                    format!("an integer 0..={MAX_LABEL}"),
                ));
            }
            labels.push(v as u32);
            for (j, f) in fields[1..].iter().enumerate() {
                // Rust's f32 parse is correctly rounded (nearest, ties to even).
                let x: Option<f32> = f.parse().ok().filter(|x: &f32| x.is_finite());
                let Some(x) = x else {
                    return Err(Error::field(
                        format!("line {ln}: {}", names[j + 1]),
                        format!("{f:?}"),
                        "a finite decimal number",
                    ));
                };
                raw.push(x);
            }
        }
        if labels.is_empty() {
            return Err(Error::input("no samples after the header"));
        }
        Ok(Dataset { labels, raw, features })
    }

    /// Read a `.npy` data set: `inputs` (`N x shape`, float32 or integer)
    /// and `labels` (N integers, shape `[N]` or `[N, 1]`). Errors name the
    /// file.
    pub fn load_npy(inputs: &Path, labels: &Path) -> Result<Dataset> {
        let bad = |p: &Path, m: String| Error::input(format!("{}: {m}", p.display()));
        let bytes = crate::io::read(inputs)?;
        let (shape, raw) = npy_values(&bytes).map_err(|m| bad(inputs, m))?;
        if shape.len() < 2 || shape[0] == 0 {
            return Err(bad(
                inputs,
                format!("shape {shape:?}: expected N x (the model's input shape), N >= 1"),
            ));
        }
        let n = shape[0];
        let features = shape[1..].iter().product::<usize>();
        if features == 0 {
            return Err(bad(inputs, format!("shape {shape:?}: a sample has no values")));
        }
        let lab = crate::npy::read_npy(labels)?;
        if !(lab.shape == [n] || lab.shape == [n, 1]) {
            return Err(bad(
                labels,
                format!("shape {:?}: expected [{n}] or [{n}, 1] (one label per input sample)", lab.shape),
            ));
        }
        let mut ls = Vec::with_capacity(n);
        for (i, &v) in lab.data.iter().enumerate() {
            if v < 0 || v as u64 > MAX_LABEL {
                return Err(bad(labels, format!("label [{i}] = {v} (allowed: 0..={MAX_LABEL})")));
            }
            ls.push(v as u32);
        }
        Ok(Dataset { labels: ls, raw, features })
    }

    /// Check that this data set fits `model`: every sample has the model's
    /// input size, every raw value is in `input.raw_min..=input.raw_max`,
    /// every label is below the model's class count (its number of logits).
    /// `what` (the file) prefixes every error.
    pub fn check_for(&self, model: &super::Model, what: &str) -> Result<()> {
        let inp = model.input();
        let ctx = |e: Error| e.context(what);
        if self.features != inp.len() {
            return Err(ctx(Error::input(format!(
                "{} values per sample, but model {} takes {} (input shape {:?})",
                self.features,
                model.name(),
                inp.len(),
                inp.shape()
            ))));
        }
        let classes = model.num_classes();
        if let Some((s, &l)) = self.labels.iter().enumerate().find(|(_, &l)| l as usize >= classes) {
            return Err(ctx(Error::field(
                format!("sample {s} label"),
                l,
                format!("0..={} (model {} has {classes} classes)", classes - 1, model.name()),
            )));
        }
        let (lo, hi) = (inp.raw_min() as f32, inp.raw_max() as f32);
        if let Some((i, &v)) = self.raw.iter().enumerate().find(|(_, &v)| !(lo..=hi).contains(&v)) {
            return Err(ctx(Error::field(
                format!("sample {} value [{}]", i / self.features, i % self.features),
                v,
                format!("{}..={} (the model's input.raw_min..=raw_max)", inp.raw_min(), inp.raw_max()),
            )));
        }
        Ok(())
    }

    /// Number of samples (>= 1).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Never true for a loaded data set.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per sample.
    pub fn features(&self) -> usize {
        self.features
    }

    /// The label of sample `i`.
    pub fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }

    /// All labels, in file order.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// The raw values of sample `i` (for the digits: 64 pixels, row-major).
    pub fn image(&self, i: usize) -> &[f32] {
        &self.raw[i * self.features..(i + 1) * self.features]
    }
}

/// The values of a float32 or integer `.npy` file as f32, with its shape.
///
/// Integer dtypes are read by [`crate::npy::parse_npy`] and converted with
/// `as f32` (nearest, ties to even). For float32 (`<f4`/`>f4`) the header's
/// dtype is relabelled as the int32 of the same size and byte order, the
/// integer reader does the rest (header, order, endianness, size checks), and
/// each int32 is reinterpreted bit for bit as the f32 it stores. NaN and
/// infinities are refused.
fn npy_values(bytes: &[u8]) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    // Search only the header (its length is in the preamble; a malformed
    // preamble searches nothing and the integer reader reports it).
    let hdr_end = match bytes.get(6) {
        Some(1) if bytes.len() >= 10 => 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize,
        Some(2 | 3) if bytes.len() >= 12 => {
            12 + u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
        }
        _ => 0,
    }
    .min(bytes.len());
    for pat in [&b"'<f4'"[..], b"'>f4'", b"\"<f4\"", b"\">f4\""] {
        if let Some(p) = bytes[..hdr_end].windows(pat.len()).position(|w| w == pat) {
            let mut relabelled = bytes.to_vec();
            relabelled[p + 2] = b'i';
            let arr = crate::npy::parse_npy(&relabelled)?;
            let mut out = Vec::with_capacity(arr.data.len());
            for (i, &v) in arr.data.iter().enumerate() {
                let x = f32::from_bits(v as i32 as u32);
                if !x.is_finite() {
                    return Err(format!("element {i} is {x} (allowed: finite float32)"));
                }
                out.push(x);
            }
            return Ok((arr.shape, out));
        }
    }
    let arr = crate::npy::parse_npy(bytes)?;
    Ok((arr.shape, arr.data.iter().map(|&v| v as f32).collect()))
}
