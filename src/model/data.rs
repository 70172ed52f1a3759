//! The digits data set files (`models/data/digits_*.csv`, format in
//! `models/data/README.md`): a header `label,p0,...,p63`, then one line per
//! image with the label 0..=9 and 64 pixels 0..=16, `\n` after every line.

use crate::error::{Error, Result};
use std::path::Path;

/// Pixels per image (8x8).
pub const DIGITS_FEATURES: usize = 64;
/// Largest pixel value.
pub const DIGITS_PIXEL_MAX: u8 = 16;
/// Number of classes (digits 0..=9).
pub const DIGITS_CLASSES: usize = 10;

/// A validated data set: labels and raw pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    labels: Vec<u8>,
    pixels: Vec<u8>,
}

impl Dataset {
    /// Read and validate a digits CSV file. Errors name the file, the line
    /// and the column.
    pub fn load(path: &Path) -> Result<Dataset> {
        let text = crate::io::read_to_string(path)?;
        Dataset::parse(&text, &path.display().to_string())
    }

    /// Parse digits CSV text; `what` prefixes every error.
    pub fn parse(text: &str, what: &str) -> Result<Dataset> {
        Dataset::parse_inner(text).map_err(|e| e.context(what))
    }

    fn parse_inner(text: &str) -> Result<Dataset> {
        let header =
            format!("label,{}", (0..DIGITS_FEATURES).map(|i| format!("p{i}")).collect::<Vec<_>>().join(","));
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
        if first != header {
            let shown: String = first.chars().take(40).collect();
            return Err(Error::input(format!("line 1: header {shown:?}... is not \"label,p0,...,p63\"")));
        }
        let mut labels = Vec::new();
        let mut pixels = Vec::new();
        for (i, line) in lines.enumerate() {
            let ln = i + 2;
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != DIGITS_FEATURES + 1 {
                return Err(Error::input(format!(
                    "line {ln}: has {} fields (allowed: {} = label + {DIGITS_FEATURES} pixels)",
                    fields.len(),
                    DIGITS_FEATURES + 1
                )));
            }
            for (j, f) in fields.iter().enumerate() {
                let (name, max) = if j == 0 {
                    ("label".to_string(), DIGITS_CLASSES as u8 - 1)
                } else {
                    (format!("p{}", j - 1), DIGITS_PIXEL_MAX)
                };
                let ok = !f.is_empty() && f.len() <= 3 && f.bytes().all(|b| b.is_ascii_digit());
                let v: u32 = if ok { f.parse().unwrap_or(u32::MAX) } else { u32::MAX };
                if v > max as u32 {
                    return Err(Error::field(
                        format!("line {ln}: {name}"),
                        format!("{f:?}"),
                        format!("0..={max}"),
                    ));
                }
                if j == 0 {
                    labels.push(v as u8);
                } else {
                    pixels.push(v as u8);
                }
            }
        }
        if labels.is_empty() {
            return Err(Error::input("no samples after the header"));
        }
        Ok(Dataset { labels, pixels })
    }

    /// Number of samples (>= 1).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Never true for a loaded data set.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The label (0..=9) of sample `i`.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// All labels, in file order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The 64 raw pixels (0..=16, row-major) of sample `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * DIGITS_FEATURES..(i + 1) * DIGITS_FEATURES]
    }
}
