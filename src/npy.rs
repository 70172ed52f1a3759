//! Integer `.npy` files (NumPy format versions 1.0, 2.0 and 3.0), at the
//! boundary of `bitmac gemm` and the vector generator.
//!
//! Supported: C-order arrays of `i1 i2 i4 i8 u1 u2 u4 u8`, either byte order.
//! Values are held as `i64`; a `u8` (uint64) value above `i64::MAX` is
//! rejected. Every malformed, truncated or oversized file is a one-line error
//! naming the file. Writing is atomic and always little-endian version 1.0
//! with the header padded to a multiple of 64 bytes (as NumPy does).

use crate::error::{Error, Result};
use std::fmt;
use std::path::Path;

/// Element type of an integer `.npy` array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::I8 | Dtype::U8 => 1,
            Dtype::I16 | Dtype::U16 => 2,
            Dtype::I32 | Dtype::U32 => 4,
            Dtype::I64 | Dtype::U64 => 8,
        }
    }

    /// True for signed types.
    pub fn is_signed(self) -> bool {
        matches!(self, Dtype::I8 | Dtype::I16 | Dtype::I32 | Dtype::I64)
    }

    /// Smallest and largest value held (as i64; `U64` is capped at
    /// `i64::MAX`, the largest value bitmac carries).
    pub fn range(self) -> (i64, i64) {
        match self {
            Dtype::I8 => (i8::MIN as i64, i8::MAX as i64),
            Dtype::I16 => (i16::MIN as i64, i16::MAX as i64),
            Dtype::I32 => (i32::MIN as i64, i32::MAX as i64),
            Dtype::I64 => (i64::MIN, i64::MAX),
            Dtype::U8 => (0, u8::MAX as i64),
            Dtype::U16 => (0, u16::MAX as i64),
            Dtype::U32 => (0, u32::MAX as i64),
            Dtype::U64 => (0, i64::MAX),
        }
    }

    /// NumPy's name, e.g. `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::I64 => "int64",
            Dtype::U8 => "uint8",
            Dtype::U16 => "uint16",
            Dtype::U32 => "uint32",
            Dtype::U64 => "uint64",
        }
    }

    /// The smallest signed dtype (int8..int64) holding every value of `data`.
    pub fn smallest_signed_for(data: &[i64]) -> Dtype {
        let (lo, hi) = data.iter().fold((0i64, 0i64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        [Dtype::I8, Dtype::I16, Dtype::I32]
            .into_iter()
            .find(|d| d.range().0 <= lo && hi <= d.range().1)
            .unwrap_or(Dtype::I64)
    }

    fn descr(self) -> &'static str {
        match self {
            Dtype::I8 => "|i1",
            Dtype::I16 => "<i2",
            Dtype::I32 => "<i4",
            Dtype::I64 => "<i8",
            Dtype::U8 => "|u1",
            Dtype::U16 => "<u2",
            Dtype::U32 => "<u4",
            Dtype::U64 => "<u8",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An integer array: shape (C order), dtype, and the values as `i64`.
///
/// Invariant: `data.len() == shape.iter().product()` and every value is in
/// `dtype.range()` (checked by [`NpyArray::new`] and the reader).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub data: Vec<i64>,
}

impl NpyArray {
    /// A validated array.
    pub fn new(shape: Vec<usize>, dtype: Dtype, data: Vec<i64>) -> Result<NpyArray> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::input(format!(
                "npy array: shape {:?} holds {n} elements but {} were given",
                shape,
                data.len()
            )));
        }
        let (lo, hi) = dtype.range();
        if let Some((i, v)) = data.iter().enumerate().find(|(_, &v)| v < lo || v > hi) {
            return Err(Error::field(format!("npy array element {i}"), v, format!("{lo}..={hi} ({dtype})")));
        }
        Ok(NpyArray { shape, dtype, data })
    }
}

fn bad(path: &Path, msg: impl fmt::Display) -> Error {
    Error::input(format!("{}: {msg}", path.display()))
}

/// Read an integer `.npy` file.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = crate::io::read(path)?;
    parse_npy(&bytes).map_err(|m| bad(path, m))
}

/// Parse `.npy` bytes; the error is a reason without the file name.
pub fn parse_npy(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated .npy header".into());
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported .npy version {v} (allowed: 1, 2, 3)")),
    };
    let end = start.checked_add(hlen).filter(|&e| e <= bytes.len()).ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    let fortran = dict_value(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
    let shape_s = dict_value(header, "shape").ok_or("header has no 'shape'")?;
    if fortran.trim() != "False" {
        return Err("fortran_order arrays are not supported (save with numpy.ascontiguousarray)".into());
    }
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let (big_endian, code) = match descr.chars().next() {
        Some('<') | Some('|') | Some('=') => (false, &descr[1..]),
        Some('>') => (true, &descr[1..]),
        _ => (false, descr),
    };
    let dtype = match code {
        "i1" => Dtype::I8,
        "i2" => Dtype::I16,
        "i4" => Dtype::I32,
        "i8" => Dtype::I64,
        "u1" => Dtype::U8,
        "u2" => Dtype::U16,
        "u4" => Dtype::U32,
        "u8" => Dtype::U64,
        _ => {
            return Err(format!("dtype {descr:?} is not supported (allowed: int8/16/32/64, uint8/16/32/64)"))
        }
    };
    let inner = shape_s.trim().trim_start_matches('(').trim_end_matches(')');
    let mut shape = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        shape.push(part.parse::<usize>().map_err(|_| format!("bad shape entry {part:?}"))?);
    }
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("shape too large")?;
    let size = dtype.size();
    let need = count.checked_mul(size).ok_or("shape too large")?;
    let body = &bytes[end..];
    if body.len() < need {
        return Err(format!(
            "truncated data: {} bytes for {count} {dtype} elements (need {need})",
            body.len()
        ));
    }
    if body.len() > need {
        return Err(format!("{} trailing bytes after the data", body.len() - need));
    }
    let mut data = Vec::with_capacity(count);
    for chunk in body.chunks_exact(size) {
        let mut b = [0u8; 8];
        if big_endian {
            for (i, &x) in chunk.iter().rev().enumerate() {
                b[i] = x;
            }
        } else {
            b[..size].copy_from_slice(chunk);
        }
        let u = u64::from_le_bytes(b);
        let v = if dtype.is_signed() {
            // Sign-extend from `size` bytes.
            let shift = 64 - 8 * size as u32;
            ((u << shift) as i64) >> shift
        } else {
            i64::try_from(u).map_err(|_| format!("uint64 value {u} exceeds int64"))?
        };
        data.push(v);
    }
    Ok(NpyArray { shape, dtype, data })
}

/// The text after `'key':` up to the next top-level comma or the closing
/// brace (shape tuples contain commas, so parentheses are tracked).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat1 = format!("'{key}':");
    let pat2 = format!("\"{key}\":");
    let pos =
        header.find(&pat1).map(|p| p + pat1.len()).or_else(|| header.find(&pat2).map(|p| p + pat2.len()))?;
    let rest = &header[pos..];
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    None
}

/// Serialize as `.npy` version 1.0, little-endian.
pub fn to_npy_bytes(arr: &NpyArray) -> Vec<u8> {
    let shape = match arr.shape.len() {
        1 => format!("({},)", arr.shape[0]),
        _ => format!("({})", arr.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header =
        format!("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", arr.dtype.descr(), shape);
    // Pad with spaces so magic(6)+version(2)+len(2)+header+'\n' is a multiple of 64.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + arr.data.len() * arr.dtype.size());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    let size = arr.dtype.size();
    for &v in &arr.data {
        out.extend_from_slice(&v.to_le_bytes()[..size]);
    }
    out
}

/// Write an array atomically. Values must fit the dtype.
pub fn write_npy(path: &Path, arr: &NpyArray) -> Result<()> {
    let checked = NpyArray::new(arr.shape.clone(), arr.dtype, arr.data.clone())
        .map_err(|e| e.context(path.display()))?;
    crate::io::write_atomic(path, &to_npy_bytes(&checked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_all_dtypes() {
        for dt in
            [Dtype::I8, Dtype::I16, Dtype::I32, Dtype::I64, Dtype::U8, Dtype::U16, Dtype::U32, Dtype::U64]
        {
            let (lo, hi) = dt.range();
            let arr = NpyArray::new(vec![2, 3], dt, vec![lo, hi, 0, 1, lo / 2, hi / 2]).unwrap();
            let bytes = to_npy_bytes(&arr);
            assert_eq!(bytes.len() % 64, (6 * dt.size()) % 64);
            assert_eq!(parse_npy(&bytes).unwrap(), arr);
        }
    }

    #[test]
    fn truncated_and_trailing_are_errors() {
        let arr = NpyArray::new(vec![4], Dtype::I32, vec![1, 2, 3, 4]).unwrap();
        let bytes = to_npy_bytes(&arr);
        assert!(parse_npy(&bytes[..bytes.len() - 1]).unwrap_err().contains("truncated"));
        let mut more = bytes.clone();
        more.push(0);
        assert!(parse_npy(&more).unwrap_err().contains("trailing"));
        assert!(parse_npy(&bytes[..20]).is_err());
        assert!(parse_npy(b"hello world").unwrap_err().contains("magic"));
    }
}
