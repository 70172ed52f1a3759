//! SCALE-Sim topology CSV files, in conv form and GEMM (M, N, K) form.
//!
//! Parsing follows SCALE-Sim v3's `topology_utils.py` where it is well
//! defined, and turns its crashes into one-line errors naming the file and
//! line:
//! - the first line is a header and is skipped whatever it says; blank lines
//!   are skipped; `\r\n` line ends and a UTF-8 BOM are accepted;
//! - fields are split on `,` and trimmed. SCALE-Sim drops the text after the
//!   last comma (its rows end with a comma); bitmac drops one trailing empty
//!   field, so rows with and without the final comma both work;
//! - conv rows: `name, ifmap_h, ifmap_w, filter_h, filter_w, channels,
//!   num_filters, stride[, N:M]` (one stride for both directions);
//! - GEMM rows: `name, M, N, K[, N:M]`;
//! - the optional `N:M` sparsity ratio is parsed and ignored (it has no
//!   effect unless sparsity is enabled, which bitmac rejects);
//! - **the depthwise quirk:** in conv form, a layer whose name contains `DP`
//!   (case-sensitive, anywhere) becomes `channels` layers named
//!   `<name>Channel_<i>`, each with one channel. GEMM form has no such rule;
//! - every dimension must be at least 1 and a filter no larger than its ifmap
//!   (SCALE-Sim asserts the latter and divides by zero on the former).

use crate::error::{Error, Result};
use std::path::Path;

use super::config::parse_py_uint;

/// Which topology form a file is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum InputType {
    /// GEMM if the header's second column is `M` (case-insensitive), else conv.
    #[default]
    Auto,
    /// `Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,`
    Conv,
    /// `Layer Name, M, N, K,` (SCALE-Sim's `-i gemm`).
    Gemm,
}

/// A convolution layer as SCALE-Sim describes it (no padding: SCALE-Sim's
/// ifmap sizes are the padded sizes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub ifmap_h: u64,
    pub ifmap_w: u64,
    pub filter_h: u64,
    pub filter_w: u64,
    pub channels: u64,
    pub num_filters: u64,
    /// One stride, used for rows and columns alike.
    pub stride: u64,
}

impl ConvShape {
    /// Output rows and columns as SCALE-Sim computes them:
    /// `ceil((ifmap - filter + stride) / stride)` = `ceil((ifmap - filter) / stride) + 1`.
    ///
    /// Quirk: when `stride` does not divide `ifmap - filter` this is one more
    /// than a real convolution's `(ifmap - filter) / stride + 1`: the last
    /// window hangs over the ifmap edge (SCALE-Sim masks its out-of-range
    /// reads, but times and counts the window in full).
    pub fn ofmap_dims(&self) -> (u64, u64) {
        let e = |i: u64, f: u64| (i - f).div_ceil(self.stride) + 1;
        (e(self.ifmap_h, self.filter_h), e(self.ifmap_w, self.filter_w))
    }

    /// Distinct in-range ifmap elements the convolution reads: the rows and
    /// columns that some window covers (clipped to the ifmap, see
    /// [`ConvShape::ofmap_dims`]), times the channels. With stride > filter
    /// some pixels are skipped.
    pub fn ifmap_elems_read(&self) -> u64 {
        let (eh, ew) = self.ofmap_dims();
        let covered = |e: u64, f: u64, size: u64| -> u64 {
            let s = self.stride;
            if s >= f {
                // Disjoint windows at 0, s, 2s, ...: the first `full` lie inside
                // the ifmap; at most one more (e - full <= 1) is clipped at the edge.
                let full = (size - f) / s + 1;
                let edge = if e > full { size.saturating_sub(full * s) } else { 0 };
                full * f + edge
            } else {
                ((e - 1) * s + f).min(size)
            }
        };
        covered(eh, self.filter_h, self.ifmap_h) * covered(ew, self.filter_w, self.ifmap_w) * self.channels
    }
}

/// The shape of one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerShape {
    Conv(ConvShape),
    /// A GEMM row: an M x K matrix times a K x N matrix.
    Gemm {
        m: u64,
        n: u64,
        k: u64,
    },
}

/// One layer of a topology (after depthwise expansion).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// The name as SCALE-Sim reports it (`<name>Channel_<i>` for DP layers).
    pub name: String,
    pub shape: LayerShape,
    /// 1-based line of the topology file the layer came from.
    pub line: usize,
}

/// GEMM dimensions of a layer: an M x K operand (ifmap windows) times a K x N
/// operand (filters) gives M x N outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmDims {
    /// Output pixels per filter (`ofmap_h * ofmap_w`), or the GEMM's M.
    pub m: u64,
    /// Window size (`filter_h * filter_w * channels`), or the GEMM's K.
    pub k: u64,
    /// Number of filters, or the GEMM's N.
    pub n: u64,
}

impl Layer {
    /// The layer as a GEMM (SCALE-Sim's operand matrices: ifmap M x K, filter
    /// K x N, ofmap M x N).
    pub fn gemm_dims(&self) -> GemmDims {
        match &self.shape {
            LayerShape::Conv(c) => {
                let (eh, ew) = c.ofmap_dims();
                GemmDims { m: eh * ew, k: c.filter_h * c.filter_w * c.channels, n: c.num_filters }
            }
            LayerShape::Gemm { m, n, k } => GemmDims { m: *m, k: *k, n: *n },
        }
    }

    /// Distinct ifmap elements read (M * K for a GEMM row, which SCALE-Sim
    /// runs as an M x K ifmap with a 1 x K filter).
    pub fn ifmap_elems_read(&self) -> u64 {
        match &self.shape {
            LayerShape::Conv(c) => c.ifmap_elems_read(),
            LayerShape::Gemm { m, k, .. } => m * k,
        }
    }

    /// Multiply-accumulates: M * N * K.
    pub fn macs(&self) -> u64 {
        let d = self.gemm_dims();
        d.m * d.n * d.k
    }
}

/// A parsed topology: its layers in file order, DP layers expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    pub layers: Vec<Layer>,
    /// The form the file was read in.
    pub input_type: InputType,
}

/// Largest accepted dimension: keeps M*N*K*100 and every cycle count far
/// inside u64 and every ratio SCALE-Sim divides exactly representable.
pub const MAX_DIM: u64 = 1 << 20;
/// Largest M (output pixels) and K (window size) of one layer.
pub const MAX_GEMM_DIM: u64 = 1 << 40;
/// Largest M * N * K of one layer (so M * N * K * 100 stays exact in f64).
pub const MAX_MACS: u64 = 1 << 46;
/// Largest number of layers after depthwise expansion.
pub const MAX_LAYERS: usize = 1 << 20;

const CONV_COLS: [&str; 8] = [
    "Layer name",
    "IFMAP Height",
    "IFMAP Width",
    "Filter Height",
    "Filter Width",
    "Channels",
    "Num Filter",
    "Strides",
];
const GEMM_COLS: [&str; 4] = ["Layer Name", "M", "N", "K"];

impl Topology {
    /// Read a topology CSV file.
    pub fn read(path: &Path, input_type: InputType) -> Result<Topology> {
        let text = crate::io::read_to_string(path)?;
        Topology::parse(&text, &path.display().to_string(), input_type)
    }

    /// Parse topology text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str, input_type: InputType) -> Result<Topology> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text.lines().enumerate();
        let Some((_, header)) = lines.next() else {
            return Err(Error::input(format!("{origin}: empty topology file (expected a header line)")));
        };
        let input_type = match input_type {
            InputType::Auto => {
                let second = header.split(',').nth(1).map(str::trim).unwrap_or("");
                if second.eq_ignore_ascii_case("m") {
                    InputType::Gemm
                } else {
                    InputType::Conv
                }
            }
            t => t,
        };
        let mut layers = Vec::new();
        for (idx, raw) in lines {
            let lineno = idx + 1;
            let row = raw.trim();
            if row.is_empty() {
                continue;
            }
            let at = |msg: String| Error::input(format!("{origin}:{lineno}: {msg}"));
            let mut fields: Vec<&str> = row.split(',').map(str::trim).collect();
            if fields.len() > 1 && fields.last() == Some(&"") {
                fields.pop();
            }
            let cols: &[&str] = if input_type == InputType::Gemm { &GEMM_COLS } else { &CONV_COLS };
            let n_dims = cols.len() - 1;
            if fields.len() < cols.len() || fields.len() > cols.len() + 1 {
                return Err(at(format!(
                    "expected {} or {} comma-separated fields ({}, [N:M]), found {}",
                    cols.len(),
                    cols.len() + 1,
                    cols.join(", "),
                    fields.len()
                )));
            }
            let mut dims = [0u64; 7];
            for (i, dim) in dims.iter_mut().enumerate().take(n_dims) {
                let text = fields[i + 1];
                *dim = match parse_py_uint(text) {
                    Some(v) if (1..=MAX_DIM).contains(&v) => v,
                    _ => {
                        return Err(at(format!(
                            "{}: {text:?} is out of range (allowed: an integer in 1..={MAX_DIM})",
                            cols[i + 1]
                        )))
                    }
                };
            }
            if let Some(ratio) = fields.get(cols.len()) {
                let ok = ratio
                    .split_once(':')
                    .and_then(|(n, m)| Some((parse_py_uint(n)?, parse_py_uint(m)?)))
                    .is_some_and(|(n, m)| n >= 1 && n <= m);
                if !ok {
                    return Err(at(format!(
                        "sparsity ratio: {ratio:?} is out of range (allowed: N:M with 1 <= N <= M; \
                         SCALE-Sim takes one stride for both directions)"
                    )));
                }
            }
            let name = fields[0].to_string();
            let check_size = |d: GemmDims| -> Result<()> {
                let macs = d.m as u128 * d.n as u128 * d.k as u128;
                if d.m > MAX_GEMM_DIM || d.k > MAX_GEMM_DIM || macs > MAX_MACS as u128 {
                    return Err(at(format!(
                        "layer too large: M={} K={} N={} ({macs} MACs; allowed: M, K <= 2^40 and M*N*K <= 2^46)",
                        d.m, d.k, d.n
                    )));
                }
                Ok(())
            };
            if input_type == InputType::Gemm {
                let [m, n, k, ..] = dims;
                check_size(GemmDims { m, k, n })?;
                layers.push(Layer { name, shape: LayerShape::Gemm { m, n, k }, line: lineno });
            } else {
                let [ifmap_h, ifmap_w, filter_h, filter_w, channels, num_filters, stride] = dims;
                if filter_h > ifmap_h {
                    return Err(at(format!(
                        "Filter Height {filter_h} is larger than IFMAP Height {ifmap_h}"
                    )));
                }
                if filter_w > ifmap_w {
                    return Err(at(format!("Filter Width {filter_w} is larger than IFMAP Width {ifmap_w}")));
                }
                let shape = ConvShape { ifmap_h, ifmap_w, filter_h, filter_w, channels, num_filters, stride };
                let (eh, ew) = shape.ofmap_dims();
                let dp = name.contains("DP");
                let k_ch = if dp { 1 } else { channels };
                check_size(GemmDims { m: eh * ew, k: filter_h * filter_w * k_ch, n: num_filters })?;
                if dp {
                    // SCALE-Sim's depthwise quirk: one single-channel layer per channel.
                    if layers.len() as u64 + channels > MAX_LAYERS as u64 {
                        return Err(at(format!(
                            "too many layers after depthwise expansion (max {MAX_LAYERS})"
                        )));
                    }
                    for ch in 0..channels {
                        let shape = LayerShape::Conv(ConvShape { channels: 1, ..shape.clone() });
                        layers.push(Layer { name: format!("{name}Channel_{ch}"), shape, line: lineno });
                    }
                } else {
                    layers.push(Layer { name, shape: LayerShape::Conv(shape), line: lineno });
                }
            }
            if layers.len() > MAX_LAYERS {
                return Err(at(format!("too many layers (max {MAX_LAYERS})")));
            }
        }
        if layers.is_empty() {
            return Err(Error::input(format!("{origin}: no layers (only a header line)")));
        }
        Ok(Topology { layers, input_type })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONV: &str = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n";

    #[test]
    fn conv_rows_with_and_without_trailing_comma() {
        let t = format!("{CONV}a, 7, 7, 3, 3, 192, 384, 1,\r\n\nb,10,10,3,3,4,7,4\n");
        let topo = Topology::parse(&t, "t.csv", InputType::Auto).unwrap();
        assert_eq!(topo.input_type, InputType::Conv);
        assert_eq!(topo.layers.len(), 2);
        assert_eq!(topo.layers[0].gemm_dims(), GemmDims { m: 25, k: 1728, n: 384 });
        // SCALE-Sim: ceil((10-3+4)/4) = 3 per side (a real convolution has 2).
        assert_eq!(topo.layers[1].gemm_dims(), GemmDims { m: 9, k: 36, n: 7 });
        assert_eq!(topo.layers[1].line, 4);
    }

    #[test]
    fn gemm_form_is_detected_and_maps_m_n_k() {
        let t = "Layer Name, M, N, K,\nTest 1, 256, 128, 64,\n";
        let topo = Topology::parse(t, "g.csv", InputType::Auto).unwrap();
        assert_eq!(topo.input_type, InputType::Gemm);
        assert_eq!(topo.layers[0].name, "Test 1");
        assert_eq!(topo.layers[0].gemm_dims(), GemmDims { m: 256, k: 64, n: 128 });
        assert_eq!(topo.layers[0].ifmap_elems_read(), 256 * 64);
    }

    #[test]
    fn dp_layers_expand_per_channel() {
        let t = format!("{CONV}Conv2DP, 18, 18, 3, 3, 3, 1, 1,\nxdpx, 5, 5, 1, 1, 2, 2, 1,\n");
        let topo = Topology::parse(&t, "t.csv", InputType::Conv).unwrap();
        let names: Vec<_> = topo.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["Conv2DPChannel_0", "Conv2DPChannel_1", "Conv2DPChannel_2", "xdpx"]);
        assert_eq!(topo.layers[0].gemm_dims().k, 9);
    }

    #[test]
    fn ifmap_elems_read_counts_covered_pixels() {
        let c = ConvShape {
            ifmap_h: 10,
            ifmap_w: 10,
            filter_h: 3,
            filter_w: 3,
            channels: 4,
            num_filters: 1,
            stride: 4,
        };
        // windows at rows 0..3, 4..7 and 8..10 (clipped) -> 8 rows (rows 3 and 7 unread).
        assert_eq!(c.ofmap_dims(), (3, 3));
        assert_eq!(c.ifmap_elems_read(), 8 * 8 * 4);
        // A window entirely past the edge: 23 rows, filter 2, stride 5 -> starts 0, 5, ..., 25.
        let c2 = ConvShape {
            ifmap_h: 23,
            ifmap_w: 11,
            filter_h: 2,
            filter_w: 2,
            channels: 1,
            num_filters: 1,
            stride: 5,
        };
        assert_eq!(c2.ofmap_dims(), (6, 3));
        assert_eq!(c2.ifmap_elems_read(), (2 * 5) * (2 + 2 + 1));
        let c = ConvShape { stride: 1, ..c };
        assert_eq!(c.ifmap_elems_read(), 10 * 10 * 4);
    }

    fn err(t: &str) -> String {
        let e = Topology::parse(t, "t.csv", InputType::Auto).unwrap_err();
        assert!(e.is_input());
        e.to_string()
    }

    #[test]
    fn bad_rows_name_file_line_and_column() {
        assert!(err(&format!("{CONV}a, 7, 7, 3, 3, 0, 8, 1,\n")).starts_with("t.csv:2: Channels: \"0\""));
        assert!(err(&format!("{CONV}a, 7, 7, 3, 3, 1, 8,\n")).starts_with("t.csv:2: expected 8 or 9"));
        assert!(err(&format!("{CONV}a, 7, 7, 3, 3, 1, 8, 1, 2,\n")).contains("sparsity ratio"));
        assert!(err(&format!("{CONV}a, 2, 7, 3, 3, 1, 8, 1,\n")).contains("Filter Height 3 is larger"));
        assert!(err(&format!("{CONV}a, x, 7, 3, 3, 1, 8, 1,\n")).contains("IFMAP Height"));
        assert!(err(&format!("{CONV}\n\n")).contains("no layers"));
        assert!(err("").contains("empty"));
        assert!(err("Layer, M, N, K,\nx, 1, 0, 1,\n").starts_with("t.csv:2: N:"));
        assert!(
            err("Layer, M, N, K,\nx, 1048576, 1048576, 1048576,\n").starts_with("t.csv:2: layer too large")
        );
        assert!(
            err(&format!("{CONV}a, 1048576, 1048576, 1, 1, 1048576, 1, 1,\n")).contains("layer too large")
        );
        // A sparsity ratio is accepted and ignored.
        Topology::parse(&format!("{CONV}a, 7, 7, 3, 3, 1, 8, 1, 2:4,\n"), "t", InputType::Auto).unwrap();
    }
}
