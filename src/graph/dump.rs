//! `bitmac run --dump DIR --sample I`: every node's input codes,
//! accumulators (array nodes, before requantization: `acc * 2^d + B'`,
//! the value the PPU requantizes) and output codes for one sample, as
//! `.npy` (int64, per-sample shape) and `$readmemh` hex (one value per
//! line, two's complement, `ceil(width/4)` hex digits), with
//! `manifest.json` (`docs/graph.md` §12). Nothing is written on error;
//! each file is written atomically.

use super::run::{run_batch, Lowered};
use super::*;
use crate::array::Engine;
use crate::hw::HwConfig;
use crate::npy::{to_npy_bytes, Dtype, NpyArray};
use std::path::Path;

/// `$readmemh` text of `vals`, each as a `width`-bit two's-complement word.
pub fn hex_lines(vals: &[i64], width: u32) -> String {
    let digits = width.div_ceil(4) as usize;
    let mask: u64 = if width >= 64 { u64::MAX } else { (1u64 << width) - 1 };
    let mut s = String::with_capacity(vals.len() * (digits + 1));
    for &v in vals {
        s.push_str(&format!("{:0digits$x}\n", (v as u64) & mask));
    }
    s
}

/// Bits needed to hold every code of `q` in two's complement (the hex
/// width): `bits` for signed tensors, `bits + 1` for unsigned ones.
fn width_of(q: &Quant) -> u32 {
    if q.is_accumulator() {
        64
    } else {
        q.bits() + (!q.signed()) as u32
    }
}

/// What a file of a dump holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpRole {
    /// A node input's codes.
    Input,
    /// An array node's accumulators (`acc * 2^d + B'`).
    Accumulator,
    /// A node's output codes.
    Output,
}

/// One file of a dump, in memory.
#[derive(Clone, Debug)]
pub struct DumpFile {
    /// File name (`NNN_NODE.in0.npy`, `.acc.hex`, `.out.npy`, ...).
    pub name: String,
    /// The dumped tensor's base name (`NNN_NODE.in0`).
    pub tensor: String,
    pub role: DumpRole,
    /// Per-sample shape.
    pub shape: Vec<usize>,
    /// Two's-complement width of the hex words (the `.npy` is int64).
    pub width: u32,
    /// `.npy` (true) or `$readmemh` hex (false).
    pub npy: bool,
    pub bytes: Vec<u8>,
}

/// A dump in memory: the files, the manifest's node entries and what
/// every node produced.
#[derive(Clone, Debug)]
pub struct Dumped {
    pub files: Vec<DumpFile>,
    /// One manifest entry per dumped node.
    pub nodes: Vec<serde_json::Value>,
    /// Every node's run (all nodes, not only the dumped ones).
    pub outs: Vec<super::run::NodeOut>,
}

/// Run sample `input` through `g` and build the dump of node `only` (or of
/// every node) in memory: the one function `bitmac run --dump` and the
/// `model_node` vector kind share.
pub fn dump_nodes(
    g: &Graph,
    lowered: &[Lowered],
    hw: &HwConfig,
    input: &[i64],
    engine: Engine,
    only: Option<usize>,
) -> Result<Dumped> {
    let outs = run_batch(g, lowered, hw, input.to_vec(), 1, engine)?;
    let mut files: Vec<DumpFile> = Vec::new();
    let mut entries = Vec::new();
    let mut add = |name: String,
                   role: DumpRole,
                   shape: &[usize],
                   vals: &[i64],
                   width: u32|
     -> Result<serde_json::Value> {
        let arr = NpyArray::new(shape.to_vec(), Dtype::I64, vals.to_vec())?;
        for (npy, bytes) in [(true, to_npy_bytes(&arr)), (false, hex_lines(vals, width).into_bytes())] {
            let ext = if npy { "npy" } else { "hex" };
            files.push(DumpFile {
                name: format!("{name}.{ext}"),
                tensor: name.clone(),
                role,
                shape: shape.to_vec(),
                width,
                npy,
                bytes,
            });
        }
        Ok(
            serde_json::json!({"npy": format!("{name}.npy"), "hex": format!("{name}.hex"), "shape": shape, "width": width}),
        )
    };
    let mut values: Vec<Option<Vec<i64>>> = vec![None; g.tensors().len()];
    values[g.input().0] = Some(input.to_vec());
    for (i, (node, out)) in g.nodes().iter().zip(&outs).enumerate() {
        if only.is_some_and(|o| o != i) {
            values[node.output.0] = Some(out.codes.clone());
            continue;
        }
        let base = format!("{i:03}_{}", sanitize(&node.name));
        let mut ins = Vec::new();
        for (j, t) in node.inputs.iter().enumerate() {
            let ti = g.tensor(*t);
            let v = values[t.0].clone().unwrap_or_default();
            let mut e = add(format!("{base}.in{j}"), DumpRole::Input, &ti.shape, &v, width_of(&ti.quant))?;
            e["tensor"] = ti.name.clone().into();
            ins.push(e);
        }
        let yt = g.tensor(node.output);
        let acc = if out.acc.is_empty() {
            serde_json::Value::Null
        } else {
            let a: Vec<i64> =
                out.acc.iter().map(|&v| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64).collect();
            add(format!("{base}.acc"), DumpRole::Accumulator, &yt.shape, &a, 64)?
        };
        let o = add(format!("{base}.out"), DumpRole::Output, &yt.shape, &out.codes, width_of(&yt.quant))?;
        entries.push(serde_json::json!({
            "index": i, "name": node.name, "kind": node.op.kind(),
            "inputs": ins, "acc": acc, "output": o,
            "output_quant": {"bits": yt.quant.bits(), "signed": yt.quant.signed(), "zero_point": yt.quant.zero_point()},
        }));
        values[node.output.0] = Some(out.codes.clone());
    }
    Ok(Dumped { files, nodes: entries, outs })
}

/// Run sample `input` through `g` and write the dump into `dir` (created
/// if missing). Returns the number of files written.
pub fn dump(
    g: &Graph,
    lowered: &[Lowered],
    hw: &HwConfig,
    input: &[i64],
    sample: usize,
    engine: Engine,
    dir: &Path,
) -> Result<usize> {
    // Everything is computed before the first file is written.
    let d = dump_nodes(g, lowered, hw, input, engine, None)?;
    let manifest = serde_json::json!({
        "format": "bitmac-dump/1",
        "graph": g.name(),
        "sample": sample,
        "engine": engine.name(),
        "hw_config": serde_json::to_value(hw.spec()).unwrap_or_default(),
        "hex": "one value per line, two's complement of `width` bits, ceil(width/4) lowercase hex digits ($readmemh)",
        "acc": "array nodes: acc * 2^d + bias after the zero-point fold, before requantization",
        "nodes": d.nodes,
    });
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, &e))?;
    let n = d.files.len() + 1;
    for f in d.files {
        crate::io::write_atomic(&dir.join(&f.name), &f.bytes)?;
    }
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::internal(e.to_string()))? + "\n";
    crate::io::write_atomic(&dir.join("manifest.json"), text.as_bytes())?;
    Ok(n)
}

/// The file-name form of a node name (`[A-Za-z0-9_-]`, others as `_`).
pub fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}
