//! The file encodings of a vector case: `$readmemh` hex, JSON, cycle-stamped
//! streams, and verbatim text (CDC traces, VCD, statistics).
//!
//! Every encoder is a pure function of its input and returns the exact bytes
//! written; `check` calls the same encoders in memory, so a byte comparison
//! is a full comparison. Normative description: `docs/vectors.md`.

use crate::numerics::IntFormat;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// What a file holds, from the point of view of a testbench.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Stimulus fed to the design (activations, psum inputs, FIFO words).
    Input,
    /// Weights (stationary operands).
    Weight,
    /// Parameters the design is configured with (multipliers, shifts).
    Param,
    /// Accumulator values before requantization.
    Accumulator,
    /// Expected outputs of the design.
    Output,
    /// Expected per-element status flags (overflow, tie, clamp).
    Flag,
    /// Aggregate statistics.
    Stats,
    /// An edge-by-edge trace (CDC).
    Trace,
    /// A waveform (VCD).
    Waveform,
}

/// The element type of a tensor file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    /// An integer format (two's complement when signed).
    Int(IntFormat),
    /// IEEE-754 binary32; hex files hold the 32-bit pattern.
    F32,
}

impl Elem {
    /// `i8`, `u20`, `f32`.
    pub fn name(&self) -> String {
        match self {
            Elem::Int(f) => format!("{}{}", if f.is_signed() { 'i' } else { 'u' }, f.width()),
            Elem::F32 => "f32".to_string(),
        }
    }
    /// Width in bits.
    pub fn width(&self) -> u32 {
        match self {
            Elem::Int(f) => f.width(),
            Elem::F32 => 32,
        }
    }
    /// Signedness (f32 counts as signed).
    pub fn signed(&self) -> bool {
        match self {
            Elem::Int(f) => f.is_signed(),
            Elem::F32 => true,
        }
    }
    /// Hex digits per line: `ceil(width / 4)`.
    pub fn digits(&self) -> usize {
        self.width().div_ceil(4) as usize
    }
}

/// Tensor contents, row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// Integer values; each lies in the tensor's format.
    Int(Vec<i128>),
    /// Floats.
    F32(Vec<f32>),
}

impl TensorData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::Int(v) => v.len(),
            TensorData::F32(v) => v.len(),
        }
    }
    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A named tensor: written as `NAME.hex` and `NAME.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub role: Role,
    pub shape: Vec<usize>,
    pub elem: Elem,
    pub data: TensorData,
}

impl Tensor {
    /// An integer tensor. Invariant (debug-checked): every value fits `fmt`
    /// and the shape's product is the length.
    pub fn int(name: &str, role: Role, shape: &[usize], fmt: IntFormat, data: Vec<i128>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len(), "{name}");
        debug_assert!(data.iter().all(|&v| fmt.contains(v)), "{name}: value outside {fmt}");
        Tensor {
            name: name.to_string(),
            role,
            shape: shape.to_vec(),
            elem: Elem::Int(fmt),
            data: TensorData::Int(data),
        }
    }
    /// A float tensor.
    pub fn f32(name: &str, role: Role, shape: &[usize], data: Vec<f32>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len(), "{name}");
        Tensor {
            name: name.to_string(),
            role,
            shape: shape.to_vec(),
            elem: Elem::F32,
            data: TensorData::F32(data),
        }
    }
}

/// A cycle-stamped output stream: written as `NAME.stream`, one
/// `CYCLE VALUE` line per output (cycle decimal, value hex as in `.hex`).
#[derive(Clone, Debug, PartialEq)]
pub struct Stream {
    pub name: String,
    pub role: Role,
    pub fmt: IntFormat,
    /// `(cycle, value)`, in emission order (cycles non-decreasing).
    pub entries: Vec<(u64, i128)>,
}

/// A verbatim text file (CDC trace, VCD).
#[derive(Clone, Debug, PartialEq)]
pub struct Text {
    /// File name including its extension.
    pub file: String,
    pub role: Role,
    /// Manifest `encoding` value, e.g. `cdc-trace`, `vcd`.
    pub encoding: String,
    /// Tensor/stream name this text belongs to.
    pub tensor: String,
    pub bytes: Vec<u8>,
}

/// A file whose bytes another bitmac module encoded (the `.npy` and hex
/// files of `graph::dump`, for `model_node`), with its manifest metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Raw {
    /// File name including its extension.
    pub file: String,
    pub role: Role,
    /// `npy` or `readmemh`.
    pub encoding: String,
    pub tensor: String,
    pub shape: Vec<usize>,
    /// `i<w>` (two's complement of `width` bits).
    pub dtype: String,
    pub width: u32,
    /// Hex digits per element (hex files only).
    pub digits: Option<usize>,
    pub packing: String,
    pub bytes: Vec<u8>,
}

/// The packing string of `.npy` files.
pub const PACKING_NPY: &str = "NumPy .npy format 1.0, little-endian int64, C order";

/// One output artifact of a case generator.
#[derive(Clone, Debug, PartialEq)]
pub enum Artifact {
    Tensor(Tensor),
    Stream(Stream),
    Text(Text),
    Raw(Raw),
}

/// One manifest file entry (see `docs/vectors.md`, "manifest.json").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// File name inside the case directory.
    pub path: String,
    pub role: Role,
    /// The tensor (or stream/trace) the file encodes.
    pub tensor: String,
    /// `readmemh`, `json`, `stream`, `stats-json`, `cdc-trace`, `vcd`.
    pub encoding: String,
    /// Tensor shape (row-major); absent for text files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Vec<usize>>,
    /// Element type: `i<w>`, `u<w>` or `f32`; absent for text files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Element width in bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Two's complement (true) or unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<bool>,
    /// Hex digits per element (`ceil(width/4)`), for hex and stream files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digits: Option<usize>,
    /// How elements are laid out in the file.
    pub packing: String,
    /// Number of `\n`-terminated lines in the file.
    pub lines: usize,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// The packing string of hex and JSON tensor files.
pub const PACKING_ROW_MAJOR: &str = "row-major, one element per line";
/// The packing string of streams.
pub const PACKING_STREAM: &str = "one output per line: cycle (decimal) value (hex)";

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in d {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn count_lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// One element as fixed-width lowercase hex: the two's-complement bit
/// pattern at the element width (`v mod 2^w`), `ceil(w/4)` digits.
fn hex_int(fmt: IntFormat, v: i128, out: &mut String) {
    let d = fmt.width().div_ceil(4) as usize;
    let _ = write!(out, "{:0d$x}", fmt.to_bits(v), d = d);
}

/// `$readmemh` bytes of a tensor: one element per line, no header, no
/// comments, `\n` line ends.
pub fn encode_hex(t: &Tensor) -> Vec<u8> {
    let mut s = String::new();
    match (&t.data, t.elem) {
        (TensorData::Int(v), Elem::Int(fmt)) => {
            for &x in v {
                hex_int(fmt, x, &mut s);
                s.push('\n');
            }
        }
        (TensorData::F32(v), _) => {
            for &x in v {
                let _ = writeln!(s, "{:08x}", x.to_bits());
            }
        }
        (TensorData::Int(_), Elem::F32) => unreachable!("integer data with f32 element type"),
    }
    s.into_bytes()
}

/// Lines before the first element in a JSON tensor file (so element `i` is
/// on line `JSON_HEADER_LINES + 1 + i`, 1-based).
pub const JSON_HEADER_LINES: usize = 6;

/// JSON bytes of a tensor: a fixed six-line header then `data`, flat
/// row-major, one element per line (so JSON line `7 + i` and hex line
/// `1 + i` hold the same element).
pub fn encode_json(t: &Tensor) -> Vec<u8> {
    let mut s = String::new();
    s.push_str("{\n");
    let _ = writeln!(s, "  \"tensor\": {},", serde_json::to_string(&t.name).unwrap_or_default());
    let _ = writeln!(s, "  \"role\": {},", serde_json::to_string(&t.role).unwrap_or_default());
    let _ = writeln!(s, "  \"dtype\": \"{}\",", t.elem.name());
    let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
    let _ = writeln!(s, "  \"shape\": [{}],", shape.join(", "));
    s.push_str("  \"data\": [\n");
    let n = t.data.len();
    for i in 0..n {
        s.push_str("    ");
        match &t.data {
            TensorData::Int(v) => {
                let _ = write!(s, "{}", v[i]);
            }
            TensorData::F32(v) => s.push_str(&json_f32(v[i])),
        }
        if i + 1 < n {
            s.push(',');
        }
        s.push('\n');
    }
    s.push_str("  ]\n}\n");
    s.into_bytes()
}

/// A finite f32 as its shortest round-trip decimal (serde_json/ryu);
/// non-finite values, which JSON cannot hold, as the strings `"nan"`,
/// `"inf"`, `"-inf"` (the hex file always has the exact bits).
pub fn json_f32(v: f32) -> String {
    if v.is_finite() {
        serde_json::to_string(&v).unwrap_or_default()
    } else if v.is_nan() {
        "\"nan\"".to_string()
    } else if v > 0.0 {
        "\"inf\"".to_string()
    } else {
        "\"-inf\"".to_string()
    }
}

/// Stream bytes: `CYCLE VALUE\n` per entry.
pub fn encode_stream(st: &Stream) -> Vec<u8> {
    let mut s = String::new();
    for &(c, v) in &st.entries {
        let _ = write!(s, "{c} ");
        hex_int(st.fmt, v, &mut s);
        s.push('\n');
    }
    s.into_bytes()
}

/// Encode every artifact into `(entry, bytes)` pairs, in artifact order
/// (a tensor gives its `.hex` then its `.json`).
pub fn encode_all(artifacts: &[Artifact]) -> Vec<(FileEntry, Vec<u8>)> {
    let mut out = Vec::new();
    for a in artifacts {
        match a {
            Artifact::Tensor(t) => {
                for (ext, encoding, bytes) in
                    [("hex", "readmemh", encode_hex(t)), ("json", "json", encode_json(t))]
                {
                    let entry = FileEntry {
                        path: format!("{}.{ext}", t.name),
                        role: t.role,
                        tensor: t.name.clone(),
                        encoding: encoding.to_string(),
                        shape: Some(t.shape.clone()),
                        dtype: Some(t.elem.name()),
                        width: Some(t.elem.width()),
                        signed: Some(t.elem.signed()),
                        digits: if ext == "hex" { Some(t.elem.digits()) } else { None },
                        packing: PACKING_ROW_MAJOR.to_string(),
                        lines: count_lines(&bytes),
                        sha256: sha256_hex(&bytes),
                    };
                    out.push((entry, bytes));
                }
            }
            Artifact::Stream(st) => {
                let bytes = encode_stream(st);
                let elem = Elem::Int(st.fmt);
                let entry = FileEntry {
                    path: format!("{}.stream", st.name),
                    role: st.role,
                    tensor: st.name.clone(),
                    encoding: "stream".to_string(),
                    shape: Some(vec![st.entries.len()]),
                    dtype: Some(elem.name()),
                    width: Some(elem.width()),
                    signed: Some(elem.signed()),
                    digits: Some(elem.digits()),
                    packing: PACKING_STREAM.to_string(),
                    lines: count_lines(&bytes),
                    sha256: sha256_hex(&bytes),
                };
                out.push((entry, bytes));
            }
            Artifact::Text(tx) => {
                let entry = FileEntry {
                    path: tx.file.clone(),
                    role: tx.role,
                    tensor: tx.tensor.clone(),
                    encoding: tx.encoding.clone(),
                    shape: None,
                    dtype: None,
                    width: None,
                    signed: None,
                    digits: None,
                    packing: "text".to_string(),
                    lines: count_lines(&tx.bytes),
                    sha256: sha256_hex(&tx.bytes),
                };
                out.push((entry, tx.bytes.clone()));
            }
            Artifact::Raw(r) => {
                let entry = FileEntry {
                    path: r.file.clone(),
                    role: r.role,
                    tensor: r.tensor.clone(),
                    encoding: r.encoding.clone(),
                    shape: Some(r.shape.clone()),
                    dtype: Some(r.dtype.clone()),
                    width: Some(r.width),
                    signed: Some(true),
                    digits: r.digits,
                    packing: r.packing.clone(),
                    lines: count_lines(&r.bytes),
                    sha256: sha256_hex(&r.bytes),
                };
                out.push((entry, r.bytes.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_twos_complement_at_width() {
        let f = IntFormat::signed(20).unwrap();
        let t = Tensor::int("x", Role::Input, &[3], f, vec![-1, 5, -(1 << 19)]);
        assert_eq!(String::from_utf8(encode_hex(&t)).unwrap(), "fffff\n00005\n80000\n");
        let u = IntFormat::unsigned(1).unwrap();
        let t = Tensor::int("f", Role::Flag, &[2], u, vec![1, 0]);
        assert_eq!(String::from_utf8(encode_hex(&t)).unwrap(), "1\n0\n");
    }

    #[test]
    fn json_element_lines_align_with_hex() {
        let f = IntFormat::signed(8).unwrap();
        let t = Tensor::int("x", Role::Input, &[2, 2], f, vec![1, -2, 3, -4]);
        let j = String::from_utf8(encode_json(&t)).unwrap();
        let lines: Vec<&str> = j.lines().collect();
        assert_eq!(lines[JSON_HEADER_LINES].trim(), "1,");
        assert_eq!(lines[JSON_HEADER_LINES + 3].trim(), "-4");
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["shape"], serde_json::json!([2, 2]));
        assert_eq!(v["data"][1], serde_json::json!(-2));
    }

    #[test]
    fn f32_hex_and_json() {
        let t = Tensor::f32("y", Role::Output, &[3], vec![1.5, -0.0, 0.1]);
        assert_eq!(String::from_utf8(encode_hex(&t)).unwrap(), "3fc00000\n80000000\n3dcccccd\n");
        let j = String::from_utf8(encode_json(&t)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["data"][2].as_f64().unwrap() as f32, 0.1f32);
        assert!(j.contains("-0.0"));
    }
}
