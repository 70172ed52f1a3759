//! `model_node`: one node of any model (`bitmac-model/1`, `bitmac-graph/1`,
//! ONNX) on one sample of a data set, through the one graph runner, on the
//! hardware config given with `--hw` (`docs/vectors.md`, "model_node").
//!
//! The files are exactly those `bitmac run --dump DIR --sample I` writes for
//! that node (`graph::dump::dump_nodes` builds both): for every input `j`
//! `NNN_NODE.inJ.npy`/`.hex`, for an array node `NNN_NODE.acc.npy`/`.hex`
//! (`acc * 2^d + B'`, before requantization) and `NNN_NODE.out.npy`/`.hex`;
//! plus `stats.json`: the node's dump-manifest entry, its datapath and PPU
//! statistics, and the SHA-256 of the model file (so a changed model fails
//! `check`). The whole graph runs with both engines; they must agree.

use super::super::files::{Artifact, Raw, Role, PACKING_NPY, PACKING_ROW_MAJOR};
use super::KindOutput;
use crate::array::Engine;
use crate::error::{Error, Result};
use crate::graph::dump::{dump_nodes, DumpRole, Dumped};
use crate::graph::load::{AnyModel, Samples};
use crate::graph::RequantMode;
use crate::hw::HwConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Case JSON of kind `model_node`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelNodeCase {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Recorded for uniformity; nothing is drawn.
    #[serde(default)]
    pub seed: u64,
    /// The model file (`.json` or `.onnx`), relative to the suite root, or
    /// `default` (the embedded default model).
    pub model: String,
    /// The data set (CSV or float32 `.npy`), relative to the suite root;
    /// absent: the embedded digits test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The node's name in the graph.
    pub node: String,
    /// 0-based sample index into the data set.
    pub sample: usize,
    /// ONNX models: the requant mode of every requantizing node
    /// (`float32` when absent; `hardware`, `double`, `single`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requant: Option<String>,
}

fn resolve(base: &Path, p: &str) -> std::path::PathBuf {
    if p == "default" {
        p.into()
    } else {
        base.join(p)
    }
}

pub(crate) fn generate(c: &ModelNodeCase, hw: &HwConfig, base: &Path) -> Result<KindOutput> {
    let requant = match c.requant.as_deref() {
        None => RequantMode::Float32,
        Some(s) => {
            let m = RequantMode::parse(s).map_err(|e| e.context("requant"))?;
            if m == RequantMode::Accumulator {
                return Err(Error::field("requant", "\"accumulator\"", "float32, hardware, double, single"));
            }
            m
        }
    };
    let model = AnyModel::load(&resolve(base, &c.model), requant).map_err(|e| e.context("model"))?;
    let data = Samples::load(c.data.as_deref().map(|d| base.join(d)).as_deref(), None)
        .map_err(|e| e.context("data"))?;
    let g = &model.graph;
    let index = g.nodes().iter().position(|n| n.name == c.node).ok_or_else(|| {
        let names: Vec<&str> = g.nodes().iter().map(|n| n.name.as_str()).collect();
        Error::field("node", format!("{:?}", c.node), names.join(", "))
    })?;
    // Bounded work (docs/limits.md): the cycle engine runs the whole graph
    // on one sample.
    let work = crate::import::run::graph_work(g, hw, Engine::Cycle, 1, 1);
    crate::limits::check(
        "model (cycle-engine work of one sample)",
        work,
        crate::limits::GEN_MAX_PE_STEPS,
        "PE-steps",
        Some("vector cases are kept small: use a smaller model or a larger array"),
    )?;
    let x = data.sample(c.sample, "sample")?;
    let input = model.input_codes(x).map_err(|e| e.context(format!("sample {}", c.sample)))?;
    let low = crate::graph::run::lower(g, hw)?;
    let cyc = dump_nodes(g, &low, hw, &input, Engine::Cycle, Some(index))?;
    let fast = dump_nodes(g, &low, hw, &input, Engine::Fast, Some(index))?;
    let stats_of = |d: &Dumped| -> serde_json::Value {
        d.outs[index]
            .stats
            .as_ref()
            .and_then(|s| serde_json::from_str(&s.to_json()).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    let same = cyc.files.len() == fast.files.len()
        && cyc.files.iter().zip(&fast.files).all(|(a, b)| a.bytes == b.bytes)
        && stats_of(&cyc) == stats_of(&fast)
        && cyc.outs[index].ppu == fast.outs[index].ppu;
    if !same {
        return Err(Error::internal(format!("the cycle and fast engines disagree on node {:?}", c.node)));
    }
    let mut out = KindOutput::default();
    for f in &cyc.files {
        let role = match f.role {
            DumpRole::Input => Role::Input,
            DumpRole::Accumulator => Role::Accumulator,
            DumpRole::Output => Role::Output,
        };
        let (encoding, dtype, width, digits, packing) = if f.npy {
            ("npy", "i64".to_string(), 64, None, PACKING_NPY)
        } else {
            (
                "readmemh",
                format!("i{}", f.width),
                f.width,
                Some(f.width.div_ceil(4) as usize),
                PACKING_ROW_MAJOR,
            )
        };
        out.artifacts.push(Artifact::Raw(Raw {
            file: f.name.clone(),
            role,
            encoding: encoding.into(),
            tensor: f.tensor.clone(),
            shape: f.shape.clone(),
            dtype,
            width,
            digits,
            packing: packing.into(),
            bytes: f.bytes.clone(),
        }));
    }
    let o = &cyc.outs[index];
    let st = &mut out.stats;
    st.insert("model_format".into(), model.format.name().into());
    st.insert("model_sha256".into(), model.sha256.clone().into());
    st.insert("node".into(), cyc.nodes.first().cloned().unwrap_or_default());
    st.insert("sample".into(), c.sample.into());
    st.insert("engines".into(), "cycle and fast agree".into());
    st.insert("datapath".into(), stats_of(&cyc));
    st.insert(
        "ppu".into(),
        serde_json::json!({"outputs": o.ppu.outputs, "saturated": o.ppu.saturated, "overflows": o.ppu.overflows, "ties": o.ppu.ties}),
    );
    Ok(out)
}
