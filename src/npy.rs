//! `.npy` files (NumPy format versions 1.0, 2.0 and 3.0) at the boundary of
//! `bitmac gemm`, `bitmac run --data` and the vector generator.
//!
//! Reading:
//! - dtypes `i1 i2 i4 i8 u1 u2 u4 u8 f4 f8`, either byte order, C or Fortran
//!   order. A Fortran-order array is transposed on load: every reader returns
//!   the values in C (row-major) order of the declared shape.
//! - [`read`] returns the values in their native width ([`NpyData`]), read in
//!   bulk (no per-element parsing); [`read_npy`] is the integer view with
//!   every value as `i64`; [`read_f32`] the float32 view.
//! - Bounded: the path must be a regular file of at most [`MAX_FILE_BYTES`];
//!   the header at most [`MAX_HEADER_BYTES`]; the file's length must be
//!   exactly header + `product(shape) * itemsize` *before* anything is
//!   allocated; the data buffer is reserved with `try_reserve_exact`. Every
//!   malformed, truncated, oversized or non-regular file is a one-line error
//!   naming the file.
//!
//! Writing is atomic and always little-endian, C order, version 1.0 with
//! the header padded to a multiple of 64 bytes (as NumPy does), streamed to
//! the temporary file in bulk.

use crate::error::{Error, Result};
use std::fmt;
use std::io::{Read, Write};
use std::path::Path;

/// Largest `.npy` file bitmac reads: the input limit of every file
/// (`io::MAX_INPUT_BYTES`, 1 GiB; `docs/limits.md`).
pub const MAX_FILE_BYTES: u64 = crate::io::MAX_INPUT_BYTES;
/// Largest header length accepted (NumPy's own headers are a few hundred
/// bytes; version 2/3 allow up to 4 GiB, which is never legitimate).
pub const MAX_HEADER_BYTES: usize = 1 << 16;
/// Most dimensions accepted (NumPy's own limit is 64).
pub const MAX_DIMS: usize = 64;

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

/// The values of an array in their native width, C order.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Dispatch `$body` over the typed vector inside an [`NpyData`].
macro_rules! each {
    ($d:expr, $v:ident => $body:expr) => {
        match $d {
            NpyData::I8($v) => $body,
            NpyData::I16($v) => $body,
            NpyData::I32($v) => $body,
            NpyData::I64($v) => $body,
            NpyData::U8($v) => $body,
            NpyData::U16($v) => $body,
            NpyData::U32($v) => $body,
            NpyData::U64($v) => $body,
            NpyData::F32($v) => $body,
            NpyData::F64($v) => $body,
        }
    };
}

/// Dispatch `$body` over the typed vector of an integer [`NpyData`]
/// (`Err(None)` from the enclosing function for a float array).
macro_rules! each_int {
    ($d:expr, $v:ident => $body:expr) => {
        match $d {
            NpyData::I8($v) => $body,
            NpyData::I16($v) => $body,
            NpyData::I32($v) => $body,
            NpyData::I64($v) => $body,
            NpyData::U8($v) => $body,
            NpyData::U16($v) => $body,
            NpyData::U32($v) => $body,
            NpyData::U64($v) => $body,
            NpyData::F32(_) | NpyData::F64(_) => return Err(None),
        }
    };
}

impl NpyData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        each!(self, v => v.len())
    }
    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// NumPy's dtype name (`int8`, `float32`, ...).
    pub fn dtype_name(&self) -> &'static str {
        self.kind().name()
    }
    /// The integer dtype, `None` for float arrays.
    pub fn int_dtype(&self) -> Option<Dtype> {
        Some(match self {
            NpyData::I8(_) => Dtype::I8,
            NpyData::I16(_) => Dtype::I16,
            NpyData::I32(_) => Dtype::I32,
            NpyData::I64(_) => Dtype::I64,
            NpyData::U8(_) => Dtype::U8,
            NpyData::U16(_) => Dtype::U16,
            NpyData::U32(_) => Dtype::U32,
            NpyData::U64(_) => Dtype::U64,
            NpyData::F32(_) | NpyData::F64(_) => return None,
        })
    }
    fn kind(&self) -> Kind {
        match self {
            NpyData::I8(_) => Kind::Int(Dtype::I8),
            NpyData::I16(_) => Kind::Int(Dtype::I16),
            NpyData::I32(_) => Kind::Int(Dtype::I32),
            NpyData::I64(_) => Kind::Int(Dtype::I64),
            NpyData::U8(_) => Kind::Int(Dtype::U8),
            NpyData::U16(_) => Kind::Int(Dtype::U16),
            NpyData::U32(_) => Kind::Int(Dtype::U32),
            NpyData::U64(_) => Kind::Int(Dtype::U64),
            NpyData::F32(_) => Kind::F32,
            NpyData::F64(_) => Kind::F64,
        }
    }

    /// The integer values as operand codes in the narrowest storage that
    /// holds `lo..=hi` intersected with the dtype's range
    /// ([`crate::array::Storage`]: `i16` when that fits it, else `i32`),
    /// each checked to lie in `lo..=hi`. Consumes the array: an `int16`
    /// (or, for wide formats, `int32`) array is moved, not copied; any other
    /// is narrowed in one pass, and its values are freed on return (no `i64`
    /// or `i32` intermediate). On failure: the index and value of the first
    /// element outside the range, or `None` for a float array.
    /// [`read_codes`] does the same straight from a file, chunk by chunk.
    pub fn into_codes_in(self, lo: i64, hi: i64) -> CodesResult {
        use crate::array::Storage;
        let Some(dt) = self.int_dtype() else { return Err(None) };
        let fits16 = codes_fit_i16(dt, lo, hi);
        each_int!(&self, v => check_codes(v, 0, lo, hi))?;
        Ok(match self {
            NpyData::I16(v) => Storage::I16(v),
            NpyData::I32(v) if !fits16 => Storage::I32(v),
            d => {
                let mut out = codes_storage(fits16, d.len()).map_err(|_| None)?;
                each_int!(&d, v => push_codes(v, &mut out));
                out
            }
        })
    }
}

/// Operand codes from an integer array, or the first element outside the
/// range (index, value) / `None` for a float array
/// ([`NpyData::into_codes_in`], [`read_codes`]).
pub type CodesResult = std::result::Result<crate::array::Storage, Option<(usize, i128)>>;

/// One element type of an integer array, as operand codes read it.
trait Code: Copy {
    /// The value, saturated into `i64` (only `u64` can saturate, and a
    /// saturated value is outside any operand range).
    fn v(self) -> i64;
    fn exact(self) -> i128;
}
macro_rules! code {
    ($($t:ty),*) => {$(
        impl Code for $t {
            #[inline(always)]
            fn v(self) -> i64 {
                // Exact for every type but u64 (a plain widening, which
                // vectorizes).
                self as i64
            }
            fn exact(self) -> i128 {
                self as i128
            }
        }
    )*};
}
code!(i8, i16, i32, i64, u8, u16, u32);
impl Code for u64 {
    #[inline(always)]
    fn v(self) -> i64 {
        self.min(i64::MAX as u64) as i64
    }
    fn exact(self) -> i128 {
        self as i128
    }
}

/// Whether every code of a `dt` array checked against `lo..=hi` fits `i16`.
fn codes_fit_i16(dt: Dtype, lo: i64, hi: i64) -> bool {
    let (dlo, dhi) = dt.range();
    lo.max(dlo) >= i16::MIN as i64 && hi.min(dhi) <= i16::MAX as i64
}

/// Empty code storage with room for `count` values.
fn codes_storage(fits16: bool, count: usize) -> std::result::Result<crate::array::Storage, String> {
    use crate::array::Storage;
    let fail = |w: usize| format!("cannot allocate {} bytes for the data", count.saturating_mul(w));
    Ok(if fits16 {
        let mut v = Vec::new();
        v.try_reserve_exact(count).map_err(|_| fail(2))?;
        Storage::I16(v)
    } else {
        let mut v = Vec::new();
        v.try_reserve_exact(count).map_err(|_| fail(4))?;
        Storage::I32(v)
    })
}

/// Check `v` (elements `base..` of the array) against `lo..=hi`: a
/// branch-free reduction first (vectorizes); the scan that finds the first
/// bad element runs only on failure.
fn check_codes<T: Code>(
    v: &[T],
    base: usize,
    lo: i64,
    hi: i64,
) -> std::result::Result<(), Option<(usize, i128)>> {
    let ok = v.iter().fold(true, |ok, &x| ok & (x.v() >= lo) & (x.v() <= hi));
    if ok && (lo <= hi || v.is_empty()) {
        return Ok(());
    }
    Err(v.iter().position(|&x| x.v() < lo || x.v() > hi).map(|i| (base + i, v[i].exact())))
}

/// Append checked values to `out` (exact: every value lies in the range
/// that chose `out`'s width, see [`codes_fit_i16`]).
fn push_codes<T: Code>(v: &[T], out: &mut crate::array::Storage) {
    match out {
        crate::array::Storage::I16(o) => o.extend(v.iter().map(|&x| x.v() as i16)),
        crate::array::Storage::I32(o) => o.extend(v.iter().map(|&x| x.v() as i32)),
    }
}

/// An array in its native width: shape and values in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct Npy {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

/// A float32 array: shape and values in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyF32 {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Int(Dtype),
    F32,
    F64,
}

impl Kind {
    fn size(self) -> usize {
        match self {
            Kind::Int(d) => d.size(),
            Kind::F32 => 4,
            Kind::F64 => 8,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Int(d) => d.name(),
            Kind::F32 => "float32",
            Kind::F64 => "float64",
        }
    }
}

/// A parsed `.npy` header.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Header {
    kind: Kind,
    big_endian: bool,
    fortran: bool,
    shape: Vec<usize>,
    /// Offset of the first data byte.
    offset: usize,
    /// Elements and data bytes (checked products).
    count: usize,
    bytes: u64,
}

fn bad(path: &Path, msg: impl fmt::Display) -> Error {
    Error::input(format!("{}: {msg}", path.display()))
}

/// Parse the header from the first bytes of a file (`prefix` may hold more
/// than the header). Errors are reasons without the file name.
fn parse_header(prefix: &[u8]) -> std::result::Result<Header, String> {
    if prefix.len() < 10 || &prefix[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (bad magic)".into());
    }
    let major = prefix[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([prefix[8], prefix[9]]) as usize, 10usize),
        2 | 3 => {
            if prefix.len() < 12 {
                return Err("truncated .npy header".into());
            }
            (u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported .npy version {v} (allowed: 1, 2, 3)")),
    };
    if hlen > MAX_HEADER_BYTES {
        return Err(format!("header length {hlen} is out of range (allowed: 0..={MAX_HEADER_BYTES})"));
    }
    let end = start + hlen;
    if end > prefix.len() {
        return Err("truncated .npy header".into());
    }
    let header = std::str::from_utf8(&prefix[start..end]).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    let fortran = dict_value(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
    let shape_s = dict_value(header, "shape").ok_or("header has no 'shape'")?;
    let fortran = match fortran.trim() {
        "False" => false,
        "True" => true,
        v => return Err(format!("fortran_order {v:?} is not a boolean (allowed: True, False)")),
    };
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let (big_endian, code) = match descr.chars().next() {
        Some('<') | Some('|') | Some('=') => (false, &descr[1..]),
        Some('>') => (true, &descr[1..]),
        _ => (false, descr),
    };
    let kind = match code {
        "i1" => Kind::Int(Dtype::I8),
        "i2" => Kind::Int(Dtype::I16),
        "i4" => Kind::Int(Dtype::I32),
        "i8" => Kind::Int(Dtype::I64),
        "u1" => Kind::Int(Dtype::U8),
        "u2" => Kind::Int(Dtype::U16),
        "u4" => Kind::Int(Dtype::U32),
        "u8" => Kind::Int(Dtype::U64),
        "f4" => Kind::F32,
        "f8" => Kind::F64,
        _ => {
            return Err(format!(
                "dtype {descr:?} is not supported (allowed: int8/16/32/64, uint8/16/32/64, float32, float64)"
            ))
        }
    };
    let inner = shape_s.trim();
    let inner = inner
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("shape {inner:?} is not a tuple"))?;
    let mut shape = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let part = part.strip_suffix('L').unwrap_or(part);
        shape.push(part.parse::<usize>().map_err(|_| format!("bad shape entry {part:?}"))?);
        if shape.len() > MAX_DIMS {
            return Err(format!("more than {MAX_DIMS} dimensions"));
        }
    }
    let too_large = || format!("shape {shape:?} is too large (allowed: at most {MAX_FILE_BYTES} data bytes)");
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(too_large)?;
    let bytes = (count as u64).checked_mul(kind.size() as u64).ok_or_else(too_large)?;
    if bytes > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(Header { kind, big_endian, fortran, shape, offset: end, count, bytes })
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

/// A plain little-endian element type.
trait Elem: Copy + Default {
    const SIZE: usize;
    fn from_le(b: &[u8]) -> Self;
    fn from_be(b: &[u8]) -> Self;
    fn put_le(self, out: &mut [u8]);
}

macro_rules! elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            #[inline(always)]
            fn from_le(b: &[u8]) -> $t {
                <$t>::from_le_bytes(b.try_into().expect("element size"))
            }
            #[inline(always)]
            fn from_be(b: &[u8]) -> $t {
                <$t>::from_be_bytes(b.try_into().expect("element size"))
            }
            #[inline(always)]
            fn put_le(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
elem!(i8, i16, i32, i64, u8, u16, u32, u64, f32, f64);

/// A buffer of `count` elements, reserved fallibly (the size comes from a
/// file: an allocation failure is an error, not an abort).
fn alloc<T: Elem>(count: usize) -> std::result::Result<Vec<T>, String> {
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(count)
        .map_err(|_| format!("cannot allocate {} bytes for the data", count.saturating_mul(T::SIZE)))?;
    Ok(v)
}

/// Decode `body` (exactly `count` elements) into typed values.
fn decode_into<T: Elem>(v: &mut Vec<T>, body: &[u8], big_endian: bool) {
    if big_endian {
        v.extend(body.chunks_exact(T::SIZE).map(T::from_be));
    } else {
        v.extend(body.chunks_exact(T::SIZE).map(T::from_le));
    }
}

/// Read `h.count` elements from `src` in bulk chunks (bounded scratch).
fn read_body<T: Elem, R: Read>(src: &mut R, h: &Header) -> std::result::Result<Vec<T>, String> {
    const CHUNK: usize = 1 << 20;
    let mut v = alloc::<T>(h.count)?;
    let mut scratch = vec![0u8; CHUNK - CHUNK % T::SIZE.max(1)];
    let mut left = h.count * T::SIZE;
    while left > 0 {
        let take = left.min(scratch.len());
        src.read_exact(&mut scratch[..take]).map_err(|e| format!("read error: {e}"))?;
        decode_into(&mut v, &scratch[..take], h.big_endian);
        left -= take;
    }
    Ok(v)
}

/// Reorder a Fortran-order (first index fastest) buffer into C order.
fn fortran_to_c<T: Copy>(v: Vec<T>, shape: &[usize]) -> Vec<T> {
    let nd = shape.len();
    if nd < 2 || v.is_empty() {
        return v;
    }
    // Fortran strides (elements).
    let mut fstride = vec![1usize; nd];
    for i in 1..nd {
        fstride[i] = fstride[i - 1] * shape[i - 1];
    }
    let mut out = Vec::with_capacity(v.len());
    let mut idx = vec![0usize; nd];
    // Walk C order; the innermost C index (last axis) has Fortran stride
    // fstride[nd-1], so the inner loop is a strided gather.
    let last = shape[nd - 1];
    let ls = fstride[nd - 1];
    let outer = v.len() / last;
    for _ in 0..outer {
        let base: usize = (0..nd - 1).map(|i| idx[i] * fstride[i]).sum();
        out.extend((0..last).map(|j| v[base + j * ls]));
        for i in (0..nd - 1).rev() {
            idx[i] += 1;
            if idx[i] < shape[i] {
                break;
            }
            idx[i] = 0;
        }
    }
    out
}

fn decode<R: Read>(src: &mut R, h: &Header) -> std::result::Result<NpyData, String> {
    fn go<T: Elem, R: Read>(src: &mut R, h: &Header) -> std::result::Result<Vec<T>, String> {
        let v = read_body::<T, R>(src, h)?;
        Ok(if h.fortran { fortran_to_c(v, &h.shape) } else { v })
    }
    Ok(match h.kind {
        Kind::Int(Dtype::I8) => NpyData::I8(go(src, h)?),
        Kind::Int(Dtype::I16) => NpyData::I16(go(src, h)?),
        Kind::Int(Dtype::I32) => NpyData::I32(go(src, h)?),
        Kind::Int(Dtype::I64) => NpyData::I64(go(src, h)?),
        Kind::Int(Dtype::U8) => NpyData::U8(go(src, h)?),
        Kind::Int(Dtype::U16) => NpyData::U16(go(src, h)?),
        Kind::Int(Dtype::U32) => NpyData::U32(go(src, h)?),
        Kind::Int(Dtype::U64) => NpyData::U64(go(src, h)?),
        Kind::F32 => NpyData::F32(go(src, h)?),
        Kind::F64 => NpyData::F64(go(src, h)?),
    })
}

/// Read a `.npy` file in its native width (any supported dtype, C or
/// Fortran order; values returned in C order). Bounded as the module docs
/// say.
pub fn read(path: &Path) -> Result<Npy> {
    let (mut body, h) = open_body(path)?;
    let data = decode(&mut body, &h).map_err(|m| bad(path, m))?;
    Ok(Npy { shape: h.shape, data })
}

/// Open a `.npy` file and parse its header: the reader at the first data
/// byte, and the header (length checked against the file).
fn open_body(path: &Path) -> Result<(std::io::BufReader<std::fs::File>, Header)> {
    // Regular files only (`stat` before opening, so a pipe never blocks).
    let (mut f, len) = crate::io::open_regular(path)?;
    if len > MAX_FILE_BYTES {
        return Err(bad(path, format!("{len} bytes is too large (allowed: at most {MAX_FILE_BYTES})")));
    }
    // The header: the fixed part, then the declared header length.
    let mut prefix = vec![0u8; 12.min(len as usize)];
    f.read_exact(&mut prefix).map_err(|e| Error::io(path, &e))?;
    let hlen = match prefix.get(6) {
        Some(1) if prefix.len() >= 10 => u16::from_le_bytes([prefix[8], prefix[9]]) as usize + 10,
        Some(2) | Some(3) if prefix.len() >= 12 => {
            u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize + 12
        }
        _ => prefix.len(),
    };
    if hlen > prefix.len() && hlen <= MAX_HEADER_BYTES + 12 && hlen as u64 <= len {
        let mut rest = vec![0u8; hlen - prefix.len()];
        f.read_exact(&mut rest).map_err(|e| Error::io(path, &e))?;
        prefix.extend_from_slice(&rest);
    }
    let h = parse_header(&prefix).map_err(|m| bad(path, m))?;
    check_len(&h, len).map_err(|m| bad(path, m))?;
    // `prefix` may hold bytes past the header only for a file shorter than
    // 12 bytes, which `check_len` has rejected unless the data is empty.
    Ok((std::io::BufReader::with_capacity(1 << 16, f), h))
}

/// An integer `.npy` file read as operand codes: its shape, NumPy dtype
/// name, and the codes (or why not) as [`NpyData::into_codes_in`] gives
/// them.
#[derive(Debug)]
pub struct NpyCodes {
    pub shape: Vec<usize>,
    pub dtype_name: &'static str,
    pub codes: CodesResult,
}

/// Read a `.npy` file straight into operand codes checked against
/// `lo..=hi` (the result of [`NpyData::into_codes_in`] on [`read`]'s array,
/// without holding the file's values whole: a C-order integer file is
/// decoded in 1 MB chunks into the codes' own storage, so the peak is the
/// codes plus one chunk). Reading stops at the first chunk with a value
/// out of range. Fortran-order files go through [`read`].
pub fn read_codes(path: &Path, lo: i64, hi: i64) -> Result<NpyCodes> {
    let (mut body, h) = open_body(path)?;
    let dt = match h.kind {
        Kind::Int(dt) if !h.fortran => dt,
        _ => {
            let npy = read(path)?;
            let dtype_name = npy.data.dtype_name();
            return Ok(NpyCodes { shape: npy.shape, dtype_name, codes: npy.data.into_codes_in(lo, hi) });
        }
    };
    fn go<T: Elem + Code, R: Read>(
        src: &mut R,
        h: &Header,
        dt: Dtype,
        lo: i64,
        hi: i64,
    ) -> std::result::Result<CodesResult, String> {
        const CHUNK: usize = 1 << 20;
        let mut out = codes_storage(codes_fit_i16(dt, lo, hi), h.count)?;
        let per = (CHUNK / T::SIZE).max(1);
        let mut scratch = vec![0u8; per * T::SIZE];
        let mut vals: Vec<T> = Vec::with_capacity(per);
        let mut done = 0usize;
        while done < h.count {
            let take = per.min(h.count - done);
            src.read_exact(&mut scratch[..take * T::SIZE]).map_err(|e| format!("read error: {e}"))?;
            vals.clear();
            decode_into(&mut vals, &scratch[..take * T::SIZE], h.big_endian);
            if let Err(e) = check_codes(&vals, done, lo, hi) {
                return Ok(Err(e));
            }
            push_codes(&vals, &mut out);
            done += take;
        }
        Ok(Ok(out))
    }
    let codes = match dt {
        Dtype::I8 => go::<i8, _>(&mut body, &h, dt, lo, hi),
        Dtype::I16 => go::<i16, _>(&mut body, &h, dt, lo, hi),
        Dtype::I32 => go::<i32, _>(&mut body, &h, dt, lo, hi),
        Dtype::I64 => go::<i64, _>(&mut body, &h, dt, lo, hi),
        Dtype::U8 => go::<u8, _>(&mut body, &h, dt, lo, hi),
        Dtype::U16 => go::<u16, _>(&mut body, &h, dt, lo, hi),
        Dtype::U32 => go::<u32, _>(&mut body, &h, dt, lo, hi),
        Dtype::U64 => go::<u64, _>(&mut body, &h, dt, lo, hi),
    }
    .map_err(|m| bad(path, m))?;
    Ok(NpyCodes { shape: h.shape, dtype_name: dt.name(), codes })
}

fn check_len(h: &Header, len: u64) -> std::result::Result<(), String> {
    let need = h.offset as u64 + h.bytes;
    if len < need {
        return Err(format!(
            "truncated data: {} bytes for {} {} elements (need {})",
            len.saturating_sub(h.offset as u64),
            h.count,
            h.kind.name(),
            h.bytes
        ));
    }
    if len > need {
        return Err(format!("{} trailing bytes after the data", len - need));
    }
    Ok(())
}

/// Parse `.npy` bytes in native width; the error is a reason without the
/// file name.
pub fn parse(bytes: &[u8]) -> std::result::Result<Npy, String> {
    let h = parse_header(bytes)?;
    check_len(&h, bytes.len() as u64)?;
    let data = decode(&mut &bytes[h.offset..], &h)?;
    Ok(Npy { shape: h.shape, data })
}

fn widen(npy: Npy) -> std::result::Result<NpyArray, String> {
    let dtype = npy.data.int_dtype().ok_or_else(|| {
        format!(
            "dtype {} is not supported here (allowed: int8/16/32/64, uint8/16/32/64)",
            npy.data.dtype_name()
        )
    })?;
    let data: Vec<i64> = match npy.data {
        NpyData::I8(v) => v.into_iter().map(i64::from).collect(),
        NpyData::I16(v) => v.into_iter().map(i64::from).collect(),
        NpyData::I32(v) => v.into_iter().map(i64::from).collect(),
        NpyData::I64(v) => v,
        NpyData::U8(v) => v.into_iter().map(i64::from).collect(),
        NpyData::U16(v) => v.into_iter().map(i64::from).collect(),
        NpyData::U32(v) => v.into_iter().map(i64::from).collect(),
        NpyData::U64(v) => {
            if let Some(&u) = v.iter().find(|&&u| u > i64::MAX as u64) {
                return Err(format!("uint64 value {u} exceeds int64"));
            }
            v.into_iter().map(|u| u as i64).collect()
        }
        NpyData::F32(_) | NpyData::F64(_) => unreachable!("float arrays were rejected above"),
    };
    Ok(NpyArray { shape: npy.shape, dtype, data })
}

/// Read an integer `.npy` file with every value as `i64` (C or Fortran
/// order; float files are an error).
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    widen(read(path)?).map_err(|m| bad(path, m))
}

/// Parse integer `.npy` bytes; the error is a reason without the file name.
pub fn parse_npy(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    widen(parse(bytes)?)
}

/// The float32 view of an array: float32 as stored; an integer array
/// converted exactly (every value must satisfy |v| <= 2^24, the range in
/// which f32 holds every integer). float64 is refused rather than rounded
/// silently: convert with `x.astype(numpy.float32)`.
fn to_f32(npy: Npy) -> std::result::Result<NpyF32, String> {
    const LIM: i128 = 1 << 24;
    fn ints<T: Copy + Into<i128>>(v: Vec<T>) -> std::result::Result<Vec<f32>, String> {
        if let Some((i, &x)) = v.iter().enumerate().find(|(_, &x)| {
            let x: i128 = x.into();
            !(-LIM..=LIM).contains(&x)
        }) {
            let x: i128 = x.into();
            return Err(format!(
                "element {i}: {x} is out of range (allowed: -16777216..=16777216, exact in float32)"
            ));
        }
        Ok(v.into_iter().map(|x| Into::<i128>::into(x) as f32).collect())
    }
    let data = match npy.data {
        NpyData::F32(v) => v,
        NpyData::F64(_) => {
            return Err("dtype float64 is not supported here (allowed: float32 or integer; convert with x.astype(numpy.float32))".into())
        }
        NpyData::I8(v) => ints(v)?,
        NpyData::I16(v) => ints(v)?,
        NpyData::I32(v) => ints(v)?,
        NpyData::I64(v) => ints(v)?,
        NpyData::U8(v) => ints(v)?,
        NpyData::U16(v) => ints(v)?,
        NpyData::U32(v) => ints(v)?,
        NpyData::U64(v) => ints(v)?,
    };
    Ok(NpyF32 { shape: npy.shape, data })
}

/// Read a `.npy` file as float32 (see [`to_f32`] for the accepted dtypes:
/// float32, or integers exactly representable in float32).
pub fn read_f32(path: &Path) -> Result<NpyF32> {
    to_f32(read(path)?).map_err(|m| bad(path, m))
}

/// Parse `.npy` bytes as float32; the error is a reason without the file
/// name.
pub fn parse_f32(bytes: &[u8]) -> std::result::Result<NpyF32, String> {
    to_f32(parse(bytes)?)
}

fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    let shape = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad with spaces so magic(6)+version(2)+len(2)+header+'\n' is a multiple of 64.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// Encode values into `sink` in bounded chunks.
fn encode<T: Elem, W: Write + ?Sized>(vals: &[T], sink: &mut W) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 16;
    let mut buf = vec![0u8; CHUNK * T::SIZE];
    for part in vals.chunks(CHUNK) {
        let out = &mut buf[..part.len() * T::SIZE];
        for (dst, &v) in out.chunks_exact_mut(T::SIZE).zip(part) {
            v.put_le(dst);
        }
        sink.write_all(out)?;
    }
    Ok(())
}

/// Values that can be written as `.npy` in their native width.
pub trait NpyElem: Copy {
    /// NumPy's `descr` for this type (little-endian).
    const DESCR: &'static str;
    #[doc(hidden)]
    fn write_all<W: Write + ?Sized>(vals: &[Self], sink: &mut W) -> std::io::Result<()>;
}

macro_rules! npy_elem {
    ($($t:ty => $d:expr),*) => {$(
        impl NpyElem for $t {
            const DESCR: &'static str = $d;
            fn write_all<W: Write + ?Sized>(vals: &[$t], sink: &mut W) -> std::io::Result<()> {
                encode(vals, sink)
            }
        }
    )*};
}
npy_elem!(i8 => "|i1", i16 => "<i2", i32 => "<i4", i64 => "<i8", u8 => "|u1", u16 => "<u2",
    u32 => "<u4", u64 => "<u8", f32 => "<f4", f64 => "<f8");

/// Write `vals` (C order, `product(shape)` values) as a native-width `.npy`,
/// atomically and streamed in bulk chunks.
pub fn write_typed<T: NpyElem>(path: &Path, shape: &[usize], vals: &[T]) -> Result<()> {
    let n: usize = shape.iter().product();
    if n != vals.len() {
        return Err(Error::internal(format!(
            "{}: shape {shape:?} holds {n} elements but {} were given",
            path.display(),
            vals.len()
        )));
    }
    crate::io::write_atomic_with(path, |w| {
        w.write_all(&header_bytes(T::DESCR, shape))?;
        T::write_all(vals, w)
    })
}

/// Write a float32 array atomically.
pub fn write_f32(path: &Path, arr: &NpyF32) -> Result<()> {
    write_typed(path, &arr.shape, &arr.data)
}

/// Serialize as `.npy` version 1.0, little-endian.
pub fn to_npy_bytes(arr: &NpyArray) -> Vec<u8> {
    let mut out = header_bytes(arr.dtype.descr(), &arr.shape);
    out.reserve(arr.data.len() * arr.dtype.size());
    write_i64_as(&arr.data, arr.dtype, &mut out).expect("writing to a Vec cannot fail");
    out
}

fn write_i64_as<W: Write + ?Sized>(data: &[i64], dtype: Dtype, w: &mut W) -> std::io::Result<()> {
    // Values are in range (NpyArray invariant), so `as` is exact.
    const CHUNK: usize = 1 << 16;
    macro_rules! go {
        ($t:ty) => {{
            let mut tmp: Vec<$t> = Vec::with_capacity(CHUNK.min(data.len()));
            for part in data.chunks(CHUNK) {
                tmp.clear();
                tmp.extend(part.iter().map(|&v| v as $t));
                encode(&tmp, w)?;
            }
            Ok(())
        }};
    }
    match dtype {
        Dtype::I8 => go!(i8),
        Dtype::I16 => go!(i16),
        Dtype::I32 => go!(i32),
        Dtype::I64 => encode(data, w),
        Dtype::U8 => go!(u8),
        Dtype::U16 => go!(u16),
        Dtype::U32 => go!(u32),
        Dtype::U64 => go!(u64),
    }
}

/// An integer `.npy` written row chunk by row chunk and published
/// atomically ([`crate::io::AtomicFile`]): the header (shape, dtype) first,
/// then the values in C order as they are produced, so an output never has
/// to exist whole in memory. Values are range-checked against the dtype
/// (the same message as [`NpyArray::new`]); dropped without
/// [`NpyStream::commit`] (an error), nothing is left behind.
pub struct NpyStream {
    file: crate::io::AtomicFile,
    dtype: Dtype,
    shape: Vec<usize>,
    written: usize,
    total: usize,
}

impl NpyStream {
    /// Create `path` for an array of `shape` and `dtype`.
    pub fn create(path: &Path, shape: &[usize], dtype: Dtype) -> Result<NpyStream> {
        let mut file = crate::io::AtomicFile::create(path)?;
        file.put(&header_bytes(dtype.descr(), shape))?;
        Ok(NpyStream { file, dtype, shape: shape.to_vec(), written: 0, total: shape.iter().product() })
    }

    /// Append the next values (C order).
    pub fn put(&mut self, vals: &[i64]) -> Result<()> {
        let (lo, hi) = self.dtype.range();
        if let Some(i) = vals.iter().position(|&v| v < lo || v > hi) {
            return Err(Error::field(
                format!("{}: value [{}]", self.file.path().display(), self.written + i),
                vals[i],
                format!("{lo}..={hi} ({})", self.dtype),
            ));
        }
        if self.written + vals.len() > self.total {
            return Err(Error::internal(format!(
                "{}: shape {:?} holds {} elements, more were given",
                self.file.path().display(),
                self.shape,
                self.total
            )));
        }
        self.written += vals.len();
        let path = self.file.path().to_path_buf();
        write_i64_as(vals, self.dtype, &mut self.file).map_err(|e| Error::io(&path, &e))
    }

    /// Check that every element was written, then publish the file.
    pub fn commit(self) -> Result<()> {
        if self.written != self.total {
            return Err(Error::internal(format!(
                "{}: shape {:?} holds {} elements but {} were written",
                self.file.path().display(),
                self.shape,
                self.total,
                self.written
            )));
        }
        self.file.commit()
    }
}

/// Write an array atomically. Values must fit the dtype.
pub fn write_npy(path: &Path, arr: &NpyArray) -> Result<()> {
    let n: usize = arr.shape.iter().product();
    let (lo, hi) = arr.dtype.range();
    if n != arr.data.len() || arr.data.iter().any(|&v| v < lo || v > hi) {
        // Same checks and messages as `NpyArray::new`.
        NpyArray::new(arr.shape.clone(), arr.dtype, arr.data.clone())
            .map_err(|e| e.context(path.display()))?;
    }
    crate::io::write_atomic_with(path, |w| {
        w.write_all(&header_bytes(arr.dtype.descr(), &arr.shape))?;
        write_i64_as(&arr.data, arr.dtype, w)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Dtype; 8] =
        [Dtype::I8, Dtype::I16, Dtype::I32, Dtype::I64, Dtype::U8, Dtype::U16, Dtype::U32, Dtype::U64];

    #[test]
    fn roundtrip_all_dtypes() {
        for dt in ALL {
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

    /// A header with arbitrary fields, followed by `body`.
    fn raw(descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
        let h = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}\n",
            if fortran { "True" } else { "False" }
        );
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn fortran_order_is_transposed_on_load() {
        // numpy.asfortranarray(numpy.arange(6, dtype='<i2').reshape(2, 3))
        // stores column by column: 0 3 1 4 2 5.
        let body: Vec<u8> = [0i16, 3, 1, 4, 2, 5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let arr = parse_npy(&raw("<i2", true, "(2, 3)", &body)).unwrap();
        assert_eq!(arr.shape, vec![2, 3]);
        assert_eq!(arr.data, vec![0, 1, 2, 3, 4, 5]);
        // 3-D: shape (2, 3, 2), value = C index; Fortran stores i + 2j + 6k.
        let (d0, d1, d2) = (2usize, 3usize, 2usize);
        let mut f = vec![0u8; d0 * d1 * d2];
        for i in 0..d0 {
            for j in 0..d1 {
                for k in 0..d2 {
                    f[i + d0 * (j + d1 * k)] = ((i * d1 + j) * d2 + k) as u8;
                }
            }
        }
        let arr = parse_npy(&raw("|u1", true, "(2, 3, 2)", &f)).unwrap();
        assert_eq!(arr.data, (0..12).collect::<Vec<i64>>());
        // 1-D Fortran is the same as C.
        let arr = parse_npy(&raw("|i1", true, "(3,)", &[1, 2, 0xff])).unwrap();
        assert_eq!(arr.data, vec![1, 2, -1]);
    }

    #[test]
    fn big_endian_and_f32() {
        let body: Vec<u8> = [1i32, -2].iter().flat_map(|v| v.to_be_bytes()).collect();
        assert_eq!(parse_npy(&raw(">i4", false, "(2,)", &body)).unwrap().data, vec![1, -2]);
        let fb: Vec<u8> = [1.5f32, -0.25, f32::MIN_POSITIVE].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = parse_f32(&raw("<f4", false, "(3,)", &fb)).unwrap();
        assert_eq!(a.data, vec![1.5, -0.25, f32::MIN_POSITIVE]);
        let fbe: Vec<u8> = [2.5f32, 7.0].iter().flat_map(|v| v.to_be_bytes()).collect();
        assert_eq!(parse_f32(&raw(">f4", false, "(1, 2)", &fbe)).unwrap().data, vec![2.5, 7.0]);
        // Integers convert exactly; out-of-range integers and float64 are refused.
        assert_eq!(parse_f32(&raw("|i1", false, "(2,)", &[0xfe, 3])).unwrap().data, vec![-2.0, 3.0]);
        let big: Vec<u8> = [(1i32 << 24) + 1].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(parse_f32(&raw("<i4", false, "(1,)", &big)).unwrap_err().contains("16777216"));
        assert!(parse_f32(&raw("<f8", false, "(1,)", &[0; 8])).unwrap_err().contains("float32"));
        // An integer reader refuses float data.
        assert!(parse_npy(&raw("<f4", false, "(3,)", &fb)).unwrap_err().contains("float32"));
    }

    #[test]
    fn huge_shapes_are_refused_before_allocating() {
        let e = parse(&raw("<i8", false, "(4294967296, 4294967296)", &[])).unwrap_err();
        assert!(e.contains("too large"), "{e}");
        let e = parse(&raw("<i8", false, "(1073741824, 16)", &[])).unwrap_err();
        assert!(e.contains("too large"), "{e}");
        let e = parse(&raw("<i8", false, "(1000, 1000)", &[0; 8])).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let e = parse(&raw("<i8", false, "[3]", &[0; 24])).unwrap_err();
        assert!(e.contains("tuple"), "{e}");
    }

    #[test]
    fn read_codes_equals_read_then_into_codes() {
        let dir = std::env::temp_dir().join(format!("bitmac-npy-codes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.npy");
        let same = |p: &Path, lo, hi| {
            let got = read_codes(p, lo, hi).unwrap();
            let want = read(p).unwrap();
            assert_eq!(got.shape, want.shape);
            assert_eq!(got.dtype_name, want.data.dtype_name());
            let norm = |c: CodesResult| {
                c.map(|s| match s {
                    crate::array::Storage::I16(v) => (16, v.iter().map(|&x| x as i32).collect::<Vec<_>>()),
                    crate::array::Storage::I32(v) => (32, v),
                })
            };
            let (g, w) = (norm(got.codes), norm(want.data.into_codes_in(lo, hi)));
            assert_eq!(g, w);
            g
        };
        // More than one 1 MB chunk of uint8, the bad value in the second.
        let mut v: Vec<u8> = (0..(1usize << 20) + 77).map(|i| (i % 200) as u8).collect();
        write_typed(&p, &[v.len()], &v).unwrap();
        assert_eq!(same(&p, 0, 255).unwrap().0, 16);
        v[(1 << 20) + 5] = 250;
        write_typed(&p, &[v.len()], &v).unwrap();
        assert_eq!(same(&p, 0, 199).unwrap_err(), Some(((1 << 20) + 5, 250)));
        // int64 and uint16 into i32 storage; int16 moved.
        write_typed(&p, &[2, 2], &[1i64, -40000, 3, 4]).unwrap();
        assert_eq!(same(&p, -65536, 65535).unwrap(), (32, vec![1, -40000, 3, 4]));
        write_typed(&p, &[3], &[0u16, 65535, 9]).unwrap();
        assert_eq!(same(&p, 0, 65535).unwrap(), (32, vec![0, 65535, 9]));
        write_typed(&p, &[3], &[-5i16, 300, 9]).unwrap();
        assert_eq!(same(&p, -512, 511).unwrap(), (16, vec![-5, 300, 9]));
        // Fortran order and big-endian (the general reader's path and the chunked one).
        std::fs::write(&p, raw(">i2", false, "(2, 2)", &[0, 1, 255, 254, 0, 3, 0, 4])).unwrap();
        assert_eq!(same(&p, -8, 8).unwrap(), (16, vec![1, -2, 3, 4]));
        std::fs::write(&p, raw("<i2", true, "(2, 2)", &[1, 0, 2, 0, 3, 0, 4, 0])).unwrap();
        assert_eq!(same(&p, -8, 8).unwrap(), (16, vec![1, 3, 2, 4]));
        // A float file: no codes.
        write_f32(&p, &NpyF32 { shape: vec![1], data: vec![0.5] }).unwrap();
        assert_eq!(same(&p, 0, 1), Err(None));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn typed_write_roundtrips() {
        let dir = std::env::temp_dir().join(format!("bitmac-npy-{}", std::process::id()));
        let p = dir.join("x.npy");
        write_typed(&p, &[2, 2], &[1i8, -2, 3, -128]).unwrap();
        let back = read(&p).unwrap();
        assert_eq!(back, Npy { shape: vec![2, 2], data: NpyData::I8(vec![1, -2, 3, -128]) });
        let codes = |d: &NpyData, lo, hi| {
            d.clone().into_codes_in(lo, hi).map(|s| match s {
                crate::array::Storage::I16(v) => (16, v.iter().map(|&x| x as i32).collect::<Vec<_>>()),
                crate::array::Storage::I32(v) => (32, v),
            })
        };
        assert_eq!(codes(&back.data, -128, 127).unwrap(), (16, vec![1, -2, 3, -128]));
        assert_eq!(codes(&back.data, -127, 127).unwrap_err(), Some((3, -128)));
        // uint16 codes above 32767 need i32 storage; within i16 they narrow.
        let u = NpyData::U16(vec![0, 40000, 7]);
        assert_eq!(codes(&u, 0, 65535).unwrap(), (32, vec![0, 40000, 7]));
        assert_eq!(codes(&u, 0, 32767).unwrap_err(), Some((1, 40000)));
        let u = NpyData::U16(vec![0, 255, 7]);
        assert_eq!(codes(&u, 0, 255).unwrap(), (16, vec![0, 255, 7]));
        assert_eq!(codes(&NpyData::I64(vec![-40000, 3]), -65536, 65535).unwrap(), (32, vec![-40000, 3]));
        assert_eq!(codes(&NpyData::U64(vec![u64::MAX]), 0, 255).unwrap_err(), Some((0, u64::MAX as i128)));
        assert_eq!(codes(&NpyData::F32(vec![1.0]), 0, 255).unwrap_err(), None);
        write_f32(&p, &NpyF32 { shape: vec![3], data: vec![0.5, -1.0, 3.25] }).unwrap();
        assert_eq!(read_f32(&p).unwrap().data, vec![0.5, -1.0, 3.25]);
        // Bytes agree with the i64 writer for the same dtype.
        write_typed(&p, &[3], &[1i32, -5, 7]).unwrap();
        let arr = NpyArray::new(vec![3], Dtype::I32, vec![1, -5, 7]).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), to_npy_bytes(&arr));
        // A directory is not a regular file.
        assert!(read(&dir).unwrap_err().to_string().contains("regular file"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
