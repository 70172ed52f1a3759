//! The `bitmac-graph/1` JSON file format (`docs/graph.md` §11): the serde
//! boundary of the graph. Every field is validated by [`GraphBuilder`];
//! errors name the file, the node (index and name) and the field.

use super::*;
use crate::error::json_error;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The `format` value of a graph file.
pub const GRAPH_FORMAT: &str = "bitmac-graph/1";

/// A loaded graph file: the graph and how raw data becomes its float input.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphFile {
    pub graph: Graph,
    pub description: String,
    /// `x = f32(raw) * raw_scale` before the input quantizer (1 if absent).
    pub raw_scale: f32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJson {
    format: String,
    name: String,
    #[serde(default)]
    description: String,
    input: InputJson,
    nodes: Vec<NodeJson>,
    output: String,
    #[serde(default)]
    #[allow(dead_code)]
    training: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputJson {
    name: String,
    shape: Vec<usize>,
    #[serde(default)]
    raw_scale: Option<f32>,
    quant: QuantJson,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScaleJson {
    One(f32),
    Many(Vec<f32>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuantJson {
    bits: u32,
    signed: bool,
    #[serde(default)]
    narrow: bool,
    scale: ScaleJson,
    #[serde(default)]
    zero_point: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightJson {
    shape: Vec<usize>,
    codes: Vec<i32>,
    quant: QuantJson,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ActJson {
    Name(String),
    Clamp { clamp: [i64; 2] },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchNormJson {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
    eps: f32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NodeJson {
    name: String,
    op: String,
    inputs: Vec<String>,
    weight: Option<WeightJson>,
    bias: Option<Vec<i64>>,
    bias_float: Option<Vec<f32>>,
    batchnorm: Option<BatchNormJson>,
    kernel: Option<[usize; 2]>,
    stride: Option<[usize; 2]>,
    pads: Option<[usize; 4]>,
    dilation: Option<[usize; 2]>,
    groups: Option<usize>,
    act: Option<ActJson>,
    requant: Option<String>,
    quant: Option<QuantJson>,
    count_include_pad: Option<bool>,
    rounding: Option<String>,
    axis: Option<usize>,
    lo: Option<i64>,
    hi: Option<i64>,
    shape: Option<Vec<usize>>,
}

impl QuantJson {
    fn build(&self) -> Result<Quant> {
        let scale = match &self.scale {
            ScaleJson::One(s) => Scale::Tensor(*s),
            ScaleJson::Many(v) if v.len() == 1 => Scale::Tensor(v[0]),
            ScaleJson::Many(v) => Scale::Channel(v.clone()),
        };
        Quant::new(self.bits, self.signed, self.narrow, scale, self.zero_point)
    }
}

fn act(a: &Option<ActJson>) -> Result<Activation> {
    Ok(match a {
        None => Activation::None,
        Some(ActJson::Name(s)) if s == "none" => Activation::None,
        Some(ActJson::Name(s)) if s == "relu" => Activation::Relu,
        Some(ActJson::Name(s)) => {
            return Err(Error::field("act", format!("{s:?}"), "none, relu, {\"clamp\": [lo, hi]}"))
        }
        Some(ActJson::Clamp { clamp }) => Activation::Clamp { lo: clamp[0], hi: clamp[1] },
    })
}

impl GraphFile {
    /// Read and validate a graph file.
    pub fn load(path: &Path) -> Result<GraphFile> {
        let text = crate::io::read_to_string(path)?;
        GraphFile::from_json_str(&text, &path.display().to_string())
    }

    /// True when `text` declares `"format": "bitmac-graph/1"` (cheap sniff
    /// used by the CLI to pick the loader).
    pub fn is_graph_json(text: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("format").and_then(|f| f.as_str()).map(|f| f == GRAPH_FORMAT))
            .unwrap_or(false)
    }

    /// Parse and validate; `what` prefixes every error.
    pub fn from_json_str(text: &str, what: &str) -> Result<GraphFile> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| json_error(what, &e))?;
        let spec: FileJson = serde_path_to_error::deserialize(&value).map_err(|e| {
            let path = e.path().to_string();
            let loc = locate(&value, &path);
            Error::input(format!("{loc}: {}", e.inner())).context(what)
        })?;
        spec.build().map_err(|e| e.context(what))
    }
}

fn locate(value: &serde_json::Value, path: &str) -> String {
    if let Some(rest) = path.strip_prefix("nodes[") {
        if let Some(end) = rest.find(']') {
            if let Ok(i) = rest[..end].parse::<usize>() {
                let name = value
                    .get("nodes")
                    .and_then(|l| l.get(i))
                    .and_then(|l| l.get("name"))
                    .and_then(|n| n.as_str())
                    .unwrap_or("?");
                let field = rest[end + 1..].trim_start_matches('.');
                return format!(
                    "node {i} ({name}){}",
                    if field.is_empty() { String::new() } else { format!(": {field}") }
                );
            }
        }
    }
    if path.is_empty() || path == "." {
        "(top level)".into()
    } else {
        path.into()
    }
}

impl FileJson {
    fn build(self) -> Result<GraphFile> {
        if self.format != GRAPH_FORMAT {
            return Err(Error::field("format", format!("{:?}", self.format), GRAPH_FORMAT));
        }
        let raw_scale = self.input.raw_scale.unwrap_or(1.0);
        if !(raw_scale.is_finite() && raw_scale > 0.0) {
            return Err(Error::field("input.raw_scale", raw_scale, "finite float32 > 0"));
        }
        let mut b = GraphBuilder::new(&self.name);
        let iq = self.input.quant.build().map_err(|e| e.context("input.quant"))?;
        let x = b.input(&self.input.name, self.input.shape.clone(), iq)?;
        let mut ids: BTreeMap<String, TensorId> = BTreeMap::new();
        ids.insert(self.input.name.clone(), x);
        for (i, n) in self.nodes.iter().enumerate() {
            let ctx = |e: Error| e.context(format!("node {i} ({})", n.name));
            let inputs = n
                .inputs
                .iter()
                .map(|s| {
                    ids.get(s).copied().ok_or_else(|| {
                        Error::field("inputs", format!("{s:?}"), "the input or an earlier node's name")
                    })
                })
                .collect::<Result<Vec<_>>>()
                .map_err(ctx)?;
            let (op, q) = node_op(n, &b, &inputs).map_err(ctx)?;
            let t = b.add_node(&n.name, op, &inputs, q)?;
            ids.insert(n.name.clone(), t);
        }
        let out = *ids
            .get(&self.output)
            .ok_or_else(|| Error::field("output", format!("{:?}", self.output), "a node name"))?;
        Ok(GraphFile { graph: b.finish(out)?, description: self.description, raw_scale })
    }
}

/// The fields each op may carry (besides name, op, inputs).
fn allowed(op: &str) -> &'static [&'static str] {
    match op {
        "conv2d" => &[
            "weight",
            "bias",
            "bias_float",
            "batchnorm",
            "stride",
            "pads",
            "dilation",
            "groups",
            "act",
            "requant",
            "quant",
        ],
        "dense" => &["weight", "bias", "bias_float", "act", "requant", "quant"],
        "add" => &["act", "requant", "quant"],
        "concat" => &["axis", "requant", "quant"],
        "maxpool" => &["kernel", "stride", "pads", "dilation"],
        "avgpool" => &["kernel", "stride", "pads", "dilation", "count_include_pad", "rounding"],
        "global_avgpool" => &["rounding"],
        "clip" => &["lo", "hi"],
        "reshape" => &["shape"],
        _ => &[],
    }
}

fn present(n: &NodeJson) -> Vec<&'static str> {
    let mut v = Vec::new();
    macro_rules! p {
        ($($f:ident),*) => { $( if n.$f.is_some() { v.push(stringify!($f)); } )* };
    }
    p!(
        weight,
        bias,
        bias_float,
        batchnorm,
        kernel,
        stride,
        pads,
        dilation,
        groups,
        act,
        requant,
        quant,
        count_include_pad,
        rounding,
        axis,
        lo,
        hi,
        shape
    );
    v
}

fn node_op(n: &NodeJson, b: &GraphBuilder, inputs: &[TensorId]) -> Result<(Op, Option<Quant>)> {
    let known = [
        "conv2d",
        "dense",
        "add",
        "concat",
        "maxpool",
        "avgpool",
        "global_avgpool",
        "relu",
        "clip",
        "flatten",
        "reshape",
    ];
    if !known.contains(&n.op.as_str()) {
        return Err(Error::field("op", format!("{:?}", n.op), known.join(", ")));
    }
    if let Some(f) = present(n).into_iter().find(|f| !allowed(&n.op).contains(f)) {
        return Err(Error::input(format!("field {f} is not used by op {}", n.op)));
    }
    let quant = n.quant.as_ref().map(|q| q.build().map_err(|e| e.context("quant"))).transpose()?;
    let requant = n.requant.as_deref().map(RequantMode::parse).transpose()?.unwrap_or(RequantMode::Hardware);
    let weights = |w: &WeightJson| -> Result<Weights> {
        let q = w.quant.build().map_err(|e| e.context("weight.quant"))?;
        Weights::new(w.shape.clone(), w.codes.clone(), q)
    };
    let bias = |len: usize| -> Result<Bias> {
        let codes = match &n.bias {
            None => vec![0; len],
            Some(v) => v
                .iter()
                .enumerate()
                .map(|(i, &c)| i32::try_from(c).map_err(|_| Error::field(format!("bias[{i}]"), c, "int32")))
                .collect::<Result<Vec<_>>>()?,
        };
        Bias::new(codes, n.bias_float.clone())
    };
    let window = |kernel: [usize; 2]| Window {
        kernel,
        stride: n.stride.unwrap_or([1, 1]),
        pads: n.pads.unwrap_or([0; 4]),
        dilation: n.dilation.unwrap_or([1, 1]),
    };
    let rounding =
        n.rounding.as_deref().map(DivRounding::parse).transpose()?.unwrap_or(DivRounding::HalfEven);
    let op = match n.op.as_str() {
        "conv2d" => {
            let w = weights(n.weight.as_ref().ok_or_else(|| Error::input("missing field weight"))?)?;
            let o = w.shape().first().copied().unwrap_or(0);
            let mut c = Conv2d::new(w, bias(o)?);
            c.stride = n.stride.unwrap_or([1, 1]);
            c.pads = n.pads.unwrap_or([0; 4]);
            c.dilation = n.dilation.unwrap_or([1, 1]);
            c.groups = n.groups.unwrap_or(1);
            c.act = act(&n.act)?;
            c.requant = requant;
            if let Some(bn) = &n.batchnorm {
                let s_in = b.tensor(inputs[0])?.quant.scale().at(0);
                let bn = BatchNorm {
                    gamma: bn.gamma.clone(),
                    beta: bn.beta.clone(),
                    mean: bn.mean.clone(),
                    var: bn.var.clone(),
                    eps: bn.eps,
                };
                c = fold_batchnorm(&c, s_in, &bn)?;
            }
            Op::Conv2d(c)
        }
        "dense" => {
            let w = weights(n.weight.as_ref().ok_or_else(|| Error::input("missing field weight"))?)?;
            let nn = w.shape().get(1).copied().unwrap_or(0);
            Op::Dense(Dense { bias: bias(nn)?, weight: w, act: act(&n.act)?, requant })
        }
        "add" => Op::Add { act: act(&n.act)?, requant },
        "concat" => Op::Concat { axis: n.axis.unwrap_or(0), requant },
        "maxpool" => Op::MaxPool(window(n.kernel.ok_or_else(|| Error::input("missing field kernel"))?)),
        "avgpool" => Op::AveragePool(AvgPool {
            window: window(n.kernel.ok_or_else(|| Error::input("missing field kernel"))?),
            count_include_pad: n.count_include_pad.unwrap_or(false),
            rounding,
        }),
        "global_avgpool" => Op::GlobalAveragePool { rounding },
        "relu" => Op::Relu,
        "clip" => Op::Clip {
            lo: n.lo.ok_or_else(|| Error::input("missing field lo"))?,
            hi: n.hi.ok_or_else(|| Error::input("missing field hi"))?,
        },
        "flatten" => Op::Flatten,
        _ => Op::Reshape { shape: n.shape.clone().ok_or_else(|| Error::input("missing field shape"))? },
    };
    Ok((op, quant))
}
