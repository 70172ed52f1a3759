//! ONNX import (docs/onnx.md): the committed QONNX and QDQ models import onto the graph with
//! the structure their scripts built, small models built here import to the nodes, codes and
//! biases the doc prescribes, and every unsupported pattern is a one-line error naming the
//! node, its op type and what is unsupported.

use bitmac::graph::{Activation, DivRounding, Graph, Op, RequantMode, Scale};
use bitmac::import::onnx::{import_bytes, load, Flavor, ImportOptions};
use bitmac::import::proto::*;
use prost::Message;
use std::path::Path;

fn model(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/onnx").join(name)
}

fn kinds(g: &Graph) -> Vec<&'static str> {
    g.nodes().iter().map(|n| n.op.kind()).collect()
}

// ---- building small models -----------------------------------------------------------------

fn f32s(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: Some(data_type::FLOAT),
        float_data: v.to_vec(),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn ints(name: &str, dt: i32, dims: &[i64], v: &[i32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: Some(dt),
        int32_data: v.to_vec(),
        name: Some(name.into()),
        ..Default::default()
    }
}

fn a_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(attr_type::INT), i: Some(v), ..Default::default() }
}

fn a_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attr_type::INTS),
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn a_str(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(attr_type::STRING),
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    }
}

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: Some(name.into()),
        op_type: Some(op.into()),
        domain: None,
        attribute: attrs,
    }
}

fn qnode(name: &str, inputs: &[&str], out: &str, signed: i64, narrow: i64) -> NodeProto {
    let mut n = node(
        name,
        "Quant",
        inputs,
        &[out],
        vec![a_int("signed", signed), a_int("narrow", narrow), a_str("rounding_mode", "ROUND")],
    );
    n.domain = Some("qonnx.custom_op.general".into());
    n
}

fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(data_type::FLOAT),
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(|&d| Dimension { dim_value: Some(d), dim_param: None }).collect(),
                }),
            }),
        }),
    }
}

fn encode(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, input: ValueInfoProto, output: &str) -> Vec<u8> {
    let m = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        producer_name: Some("bitmac test".into()),
        producer_version: None,
        graph: Some(GraphProto {
            node: nodes,
            name: Some("t".into()),
            initializer: inits,
            input: vec![input],
            output: vec![value(output, &[1])],
            value_info: vec![],
        }),
    };
    m.encode_to_vec()
}

/// A small QONNX model: input [1,1,4,4] -> Quant u8 -> Conv 3x3 (2 out channels, 4-bit narrow
/// per-channel weights, Int32-style bias) -> Relu -> Quant u4 -> GlobalAveragePool ->
/// Trunc(FLOOR) -> Flatten -> Gemm (transB) -> logits.
fn qonnx_parts() -> (Vec<NodeProto>, Vec<TensorProto>) {
    let s_in = 0.25f32;
    let sw = [0.5f32, 0.125];
    let w: Vec<f32> = (0..18).map(|i| (i as f32 - 9.0) * 0.1).collect();
    let inits = vec![
        f32s("s_in", &[], &[s_in]),
        f32s("z0", &[], &[0.0]),
        f32s("b8", &[], &[8.0]),
        f32s("b4", &[], &[4.0]),
        f32s("b32", &[], &[32.0]),
        f32s("w", &[2, 1, 3, 3], &w),
        f32s("sw", &[2, 1, 1, 1], &sw),
        f32s("b", &[2], &[1.0, -0.3]),
        f32s("sb", &[2], &[s_in * sw[0], s_in * sw[1]]),
        f32s("s_a", &[], &[0.5]),
        f32s("s_t", &[], &[0.5 / 16.0]),
        f32s("fw", &[3, 2], &[0.5, -0.5, 1.0, 0.25, -1.0, 0.0]),
        f32s("sfw", &[], &[0.125]),
    ];
    let mut trunc = node(
        "trunc",
        "Trunc",
        &["gap", "s_t", "z0", "b8", "s_a", "b4"],
        &["t"],
        vec![a_str("rounding_mode", "FLOOR"), a_int("signed", 0), a_int("narrow", 0)],
    );
    trunc.domain = Some("qonnx.custom_op.general".into());
    let nodes = vec![
        qnode("qin", &["x", "s_in", "z0", "b8"], "xq", 0, 0),
        qnode("qw", &["w", "sw", "z0", "b4"], "wq", 1, 1),
        qnode("qb", &["b", "sb", "z0", "b32"], "bq", 1, 0),
        node(
            "conv",
            "Conv",
            &["xq", "wq", "bq"],
            &["c"],
            vec![a_ints("kernel_shape", &[3, 3]), a_ints("pads", &[1, 1, 1, 1])],
        ),
        node("relu", "Relu", &["c"], &["r"], vec![]),
        qnode("qa", &["r", "s_a", "z0", "b4"], "a", 0, 0),
        node("gap_node", "GlobalAveragePool", &["a"], &["gap"], vec![]),
        trunc,
        node("flat", "Flatten", &["t"], &["f"], vec![a_int("axis", 1)]),
        qnode("qfw", &["fw", "sfw", "z0", "b8"], "fwq", 1, 1),
        node("fc", "Gemm", &["f", "fwq"], &["logits"], vec![a_int("transB", 1)]),
    ];
    (nodes, inits)
}

fn qonnx_model() -> Vec<u8> {
    let (n, i) = qonnx_parts();
    encode(n, i, value("x", &[1, 1, 4, 4]), "logits")
}

/// A small QDQ model: x [N,1,4,4] -> Q/DQ (u8, zp 3) -> Conv (int8 per-channel, int32 bias)
/// -> Q/DQ (i8, zp -5) output.
fn qdq_parts() -> (Vec<NodeProto>, Vec<TensorProto>) {
    let inits = vec![
        f32s("xs", &[], &[0.02]),
        ints("xz", data_type::UINT8, &[], &[3]),
        ints("w", data_type::INT8, &[2, 1, 3, 3], &(0..18).map(|i| i * 7 - 60).collect::<Vec<_>>()),
        f32s("ws", &[2], &[0.01, 0.003]),
        ints("wz", data_type::INT8, &[2], &[0, 0]),
        ints("b", data_type::INT32, &[2], &[100, -2000]),
        f32s("bs", &[2], &[0.02 * 0.01, 0.02 * 0.003]),
        ints("bz", data_type::INT32, &[2], &[0, 0]),
        f32s("ys", &[], &[0.05]),
        ints("yz", data_type::INT8, &[], &[-5]),
    ];
    let nodes = vec![
        node("q_x", "QuantizeLinear", &["x", "xs", "xz"], &["xq"], vec![]),
        node("dq_x", "DequantizeLinear", &["xq", "xs", "xz"], &["xd"], vec![]),
        node("dq_w", "DequantizeLinear", &["w", "ws", "wz"], &["wd"], vec![a_int("axis", 0)]),
        node("dq_b", "DequantizeLinear", &["b", "bs", "bz"], &["bd"], vec![a_int("axis", 0)]),
        node(
            "conv",
            "Conv",
            &["xd", "wd", "bd"],
            &["c"],
            vec![a_ints("pads", &[0, 1, 2, 1]), a_ints("strides", &[1, 2])],
        ),
        node("q_y", "QuantizeLinear", &["c", "ys", "yz"], &["yq"], vec![]),
        node("dq_y", "DequantizeLinear", &["yq", "ys", "yz"], &["y"], vec![]),
    ];
    (nodes, inits)
}

fn qdq_model() -> Vec<u8> {
    let (n, i) = qdq_parts();
    encode(n, i, value("x", &[1, 1, 4, 4]), "y")
}

fn err(bytes: &[u8]) -> String {
    match import_bytes(bytes, ImportOptions::default()) {
        Ok(_) => panic!("expected an import error"),
        Err(e) => {
            let m = e.to_string();
            assert!(!m.contains('\n'), "not one line: {m}");
            assert_eq!(e.exit_code(), 2, "{m}");
            m
        }
    }
}

fn expect(bytes: &[u8], parts: &[&str]) {
    let m = err(bytes);
    for p in parts {
        assert!(m.contains(p), "error {m:?} does not contain {p:?}");
    }
}

// ---- the shipped models --------------------------------------------------------------------

#[test]
fn brevitas_cnn_imports_with_its_structure() {
    let m = load(&model("brevitas_cnn.onnx"), ImportOptions::default()).unwrap();
    assert_eq!(m.flavor, Flavor::Qonnx);
    let g = &m.graph;
    assert_eq!(kinds(g), ["conv2d", "conv2d", "add", "maxpool", "conv2d", "avgpool", "flatten", "dense"]);
    let inq = &g.tensor(g.input()).quant;
    assert_eq!((inq.bits(), inq.signed(), inq.zero_point()), (8, false, 0));
    for n in g.nodes() {
        let q = &g.tensor(n.output).quant;
        match &n.op {
            Op::Conv2d(c) => {
                let wq = c.weight.quant();
                assert_eq!((wq.bits(), wq.signed(), wq.narrow()), (4, true, true), "{}", n.name);
                assert_eq!(wq.scale().channels(), Some(c.out_channels()), "{}", n.name);
                assert_eq!(c.act, Activation::Relu, "{}", n.name);
                assert_eq!(c.requant, RequantMode::Float32);
                assert_eq!((q.bits(), q.signed()), (4, false));
                // Int32Bias: codes are the bias on the accumulator grid; the float bias is kept.
                let f = c.bias.float().unwrap();
                let s_in =
                    g.input_quant(g.nodes().iter().position(|m| m.name == n.name).unwrap()).scale().at(0);
                for (o, (&b, &code)) in f.iter().zip(c.bias.codes()).enumerate() {
                    let unit = s_in * wq.scale().at(o);
                    assert!((code as f32 * unit - b).abs() <= unit, "{} bias[{o}]", n.name);
                }
            }
            Op::Add { act, .. } => assert_eq!(*act, Activation::Relu),
            Op::AveragePool(p) => {
                assert_eq!(p.rounding, DivRounding::Floor);
                assert_eq!(p.window.kernel, [4, 4]);
            }
            Op::Dense(d) => {
                assert_eq!(d.requant, RequantMode::Accumulator);
                assert_eq!(d.weight.shape(), [32, 10]);
                assert_eq!(d.weight.quant().bits(), 8);
                assert!(q.is_accumulator());
            }
            _ => {}
        }
    }
}

#[test]
fn qdq_cnn_imports_with_its_structure() {
    let m = load(&model("qdq_cnn.onnx"), ImportOptions::default()).unwrap();
    assert_eq!(m.flavor, Flavor::Qdq);
    let g = &m.graph;
    // The GlobalAveragePool has its own output scale: a depthwise conv (docs/onnx.md §5).
    assert_eq!(kinds(g), ["conv2d", "conv2d", "add", "maxpool", "conv2d", "conv2d", "flatten", "dense"]);
    let inq = &g.tensor(g.input()).quant;
    assert_eq!((inq.bits(), inq.signed(), inq.zero_point()), (8, true, -128));
    let gap = &g.nodes()[5];
    match &gap.op {
        Op::Conv2d(c) => {
            assert_eq!(c.groups, 32);
            assert_eq!(c.kernel(), [4, 4]);
            assert!(c.weight.codes().iter().all(|&w| w == 1));
            assert_eq!(c.weight.quant().scale(), &Scale::Tensor(1.0 / 16.0));
        }
        op => panic!("{op:?}"),
    }
    let out = &g.tensor(g.output()).quant;
    assert_eq!((out.bits(), out.signed(), out.zero_point()), (8, true, 17));
    let Op::Dense(d) = &g.nodes()[7].op else { panic!() };
    assert_eq!(d.weight.shape(), [32, 10]);
    assert_eq!(d.weight.quant().scale().channels(), Some(10));
}

// ---- small models: exact translation -----------------------------------------------------

#[test]
fn qonnx_small_model_translates_exactly() {
    let m = import_bytes(&qonnx_model(), ImportOptions::default()).unwrap();
    let g = &m.graph;
    assert_eq!(kinds(g), ["conv2d", "global_avgpool", "flatten", "dense"]);
    let Op::Conv2d(c) = &g.nodes()[0].op else { panic!() };
    // codes = rne(clamp(w / s[c])) in [-7, 7] (4-bit narrow), per output channel.
    let expect: Vec<i32> = (0..18)
        .map(|i| {
            let s = if i < 9 { 0.5f32 } else { 0.125 };
            let v = ((i as f32 - 9.0) * 0.1) / s;
            v.clamp(-7.0, 7.0).round_ties_even() as i32
        })
        .collect();
    assert_eq!(c.weight.codes(), &expect[..]);
    assert_eq!(c.pads, [1, 1, 1, 1]);
    // Bias codes: rne(1.0 / (0.25*0.5)) = 8, rne(-0.3 / (0.25*0.125)) = rne(-9.6) = -10.
    assert_eq!(c.bias.codes(), [8, -10]);
    let Op::GlobalAveragePool { rounding } = g.nodes()[1].op else { panic!() };
    assert_eq!(rounding, DivRounding::Floor);
    let Op::Dense(d) = &g.nodes()[3].op else { panic!() };
    // transB: B [3, 2] ([N, K]) becomes [K, N] = [2, 3]; codes 0.5/0.125 = 4 etc.
    assert_eq!(d.weight.shape(), [2, 3]);
    assert_eq!(d.weight.codes(), [4, 8, -8, -4, 2, 0]);
    assert_eq!(d.requant, RequantMode::Accumulator);
}

#[test]
fn qdq_small_model_translates_exactly() {
    let opts = ImportOptions { requant: RequantMode::Double };
    let m = import_bytes(&qdq_model(), opts).unwrap();
    let g = &m.graph;
    assert_eq!(kinds(g), ["conv2d"]);
    let Op::Conv2d(c) = &g.nodes()[0].op else { panic!() };
    assert_eq!(c.weight.codes(), (0..18).map(|i| i * 7 - 60).collect::<Vec<_>>().as_slice());
    assert_eq!(c.bias.codes(), [100, -2000]);
    assert_eq!((c.pads, c.stride), ([0, 1, 2, 1], [1, 2]));
    assert_eq!(c.requant, RequantMode::Double);
    let q = &g.tensor(g.output()).quant;
    assert_eq!((q.bits(), q.signed(), q.zero_point(), q.scale().at(0)), (8, true, -5, 0.05));
    assert_eq!(g.tensor(g.input()).quant.zero_point(), 3);
}

// ---- error classes (docs/onnx.md §9) ---------------------------------------------------------

#[test]
fn malformed_and_truncated_files_are_clear_errors() {
    let good = qdq_model();
    for cut in [1, good.len() / 3, good.len() / 2, good.len() - 1] {
        let m = err(&good[..cut]);
        assert!(m.contains("not a valid ONNX protobuf") || m.contains("node") || m.contains("graph"), "{m}");
    }
    expect(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", &["not a valid ONNX protobuf"]);
    expect(b"", &["no graph"]);
    // A length prefix far beyond the buffer.
    expect(&[0x3a, 0xff, 0xff, 0xff, 0x7f, 0x00], &["not a valid ONNX protobuf"]);
    let dir = std::env::temp_dir().join(format!("bitmac-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("trunc.onnx");
    std::fs::write(&p, &good[..good.len() / 2]).unwrap();
    let e = load(&p, ImportOptions::default()).unwrap_err().to_string();
    assert!(e.starts_with(&p.display().to_string()), "{e}");
    let e = load(&dir.join("missing.onnx"), ImportOptions::default()).unwrap_err().to_string();
    assert!(e.contains("missing.onnx"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unsupported_op_is_named() {
    let (mut n, i) = qdq_parts();
    n.insert(6, node("soft", "Softmax", &["yq"], &["sm"], vec![]));
    n[7].input[0] = "sm".into();
    expect(&encode(n, i, value("x", &[1, 1, 4, 4]), "y"), &["node 'soft' (Softmax)", "op is not supported"]);
    let (mut n, i) = qonnx_parts();
    n[4].domain = Some("com.example".into());
    expect(&encode(n, i, value("x", &[1, 1, 4, 4]), "logits"), &["node 'relu' (Relu)", "domain com.example"]);
    let (mut n, i) = qonnx_parts();
    n[4].op_type = Some("MultiThreshold".into());
    n[4].domain = Some("qonnx.custom_op.general".into());
    expect(
        &encode(n, i, value("x", &[1, 1, 4, 4]), "logits"),
        &["(MultiThreshold)", "QONNX op MultiThreshold is not supported"],
    );
}

#[test]
fn unsupported_attributes_are_named() {
    let cases: Vec<(usize, AttributeProto, &str)> = vec![
        (4, a_str("auto_pad", "SAME_UPPER"), "auto_pad SAME_UPPER"),
        (4, a_int("foo", 1), "attribute foo is not supported"),
        (4, a_ints("strides", &[1, 1, 1]), "only 2-D"),
    ];
    for (at, a, msg) in cases {
        let (mut n, i) = qdq_parts();
        n[at].attribute.retain(|x| x.name != a.name);
        n[at].attribute.push(a);
        expect(&encode(n, i, value("x", &[1, 1, 4, 4]), "y"), &["node 'conv' (Conv)", msg]);
    }
    // MaxPool ceil_mode and Gemm alpha.
    let (mut n, i) = qonnx_parts();
    n[6] = node(
        "gap_node",
        "MaxPool",
        &["a"],
        &["gap"],
        vec![a_ints("kernel_shape", &[2, 2]), a_int("ceil_mode", 1)],
    );
    expect(&encode(n, i, value("x", &[1, 1, 4, 4]), "logits"), &["node 'gap_node' (MaxPool)", "ceil_mode 1"]);
    let (mut n, i) = qonnx_parts();
    n[10].attribute.push(AttributeProto {
        name: Some("alpha".into()),
        r#type: Some(attr_type::FLOAT),
        f: Some(2.0),
        ..Default::default()
    });
    expect(&encode(n, i, value("x", &[1, 1, 4, 4]), "logits"), &["node 'fc' (Gemm)", "alpha/beta"]);
}

#[test]
fn unsupported_quantization_patterns_are_named() {
    // Per-channel activation quantizer.
    let (mut n, mut i) = qonnx_parts();
    i.push(f32s("s_a2", &[1, 2, 1, 1], &[0.5, 0.25]));
    n[5].input[1] = "s_a2".into();
    expect(
        &encode(n, i, value("x", &[1, 1, 4, 4]), "logits"),
        &["node 'qa' (Quant)", "per-channel activation"],
    );
    // Bipolar (1-bit signed).
    let (mut n, mut i) = qonnx_parts();
    i.push(f32s("b1", &[], &[1.0]));
    n[1].input[3] = "b1".into();
    expect(&encode(n, i, value("x", &[1, 1, 4, 4]), "logits"), &["node 'qw' (Quant)", "bipolar"]);
    // Non-integer bit width.
    let (mut n, mut i) = qonnx_parts();
    i.push(f32s("b45", &[], &[4.5]));
    n[1].input[3] = "b45".into();
    expect(&encode(n, i, value("x", &[1, 1, 4, 4]), "logits"), &["node 'qw' (Quant)", "bitwidth"]);
    // Trunc to a scale other than the input's.
    let (n, mut i) = qonnx_parts();
    let k = i.iter().position(|t| t.name.as_deref() == Some("s_a")).unwrap();
    i.push(f32s("s_a", &[], &[0.5]));
    i[k] = f32s("s_t_wrong", &[], &[1.0]);
    let mut n = n;
    n[7].input[4] = "s_t_wrong".into();
    expect(&encode(n, i, value("x", &[1, 1, 4, 4]), "logits"), &["node 'trunc' (Trunc)", "truncation"]);
    // Bias off the accumulator grid.
    let (n, mut i) = qdq_parts();
    let k = i.iter().position(|t| t.name.as_deref() == Some("bs")).unwrap();
    i[k] = f32s("bs", &[2], &[0.001, 0.002]);
    expect(&encode(n, i, value("x", &[1, 1, 4, 4]), "y"), &["node 'conv' (Conv)", "accumulator unit"]);
    // Re-quantizing a quantized activation to another quantization.
    let (mut n, mut i) = qdq_parts();
    i.push(f32s("ys2", &[], &[0.1]));
    n.push(node("q_again", "QuantizeLinear", &["y", "ys2", "yz"], &["y2"], vec![]));
    expect(
        &encode(n, i, value("x", &[1, 1, 4, 4]), "y2"),
        &["node 'q_again' (QuantizeLinear)", "re-quantizing"],
    );
    // Weight zero points differing per channel.
    let (n, mut i) = qdq_parts();
    let k = i.iter().position(|t| t.name.as_deref() == Some("wz")).unwrap();
    i[k] = ints("wz", data_type::INT8, &[2], &[0, 1]);
    expect(&encode(n, i, value("x", &[1, 1, 4, 4]), "y"), &["node 'conv' (Conv)", "zero points that differ"]);
    // A float op on an unquantized result.
    let (mut n, i) = qonnx_parts();
    n[5].input[0] = "c".into();
    n[4] = node("pool", "MaxPool", &["c"], &["r"], vec![a_ints("kernel_shape", &[2, 2])]);
    expect(
        &encode(n, i, value("x", &[1, 1, 4, 4]), "logits"),
        &["node 'pool' (MaxPool)", "unquantized float result"],
    );
    // QONNX and QDQ mixed.
    let (mut n, mut i) = qonnx_parts();
    i.push(f32s("qs", &[], &[0.5]));
    i.push(ints("qz", data_type::UINT8, &[], &[0]));
    n.push(node("mixq", "QuantizeLinear", &["logits", "qs", "qz"], &["lq"], vec![]));
    let m = err(&encode(n, i, value("x", &[1, 1, 4, 4]), "lq"));
    assert!(m.contains("mixes QONNX") || m.contains("(QuantizeLinear)"), "{m}");
}

#[test]
fn unsupported_tensors_and_graph_shapes_are_named() {
    // External data.
    let (n, mut i) = qdq_parts();
    let k = i.iter().position(|t| t.name.as_deref() == Some("w")).unwrap();
    i[k].data_location = Some(1);
    expect(&encode(n, i, value("x", &[1, 1, 4, 4]), "y"), &["initializer 'w'", "external data"]);
    // Wrong element count.
    let (n, mut i) = qdq_parts();
    let k = i.iter().position(|t| t.name.as_deref() == Some("w")).unwrap();
    i[k].int32_data.pop();
    expect(&encode(n, i, value("x", &[1, 1, 4, 4]), "y"), &["initializer 'w'", "holds 17 values"]);
    // FLOAT16.
    let (n, mut i) = qdq_parts();
    let k = i.iter().position(|t| t.name.as_deref() == Some("ys")).unwrap();
    i[k].data_type = Some(10);
    i[k].float_data.clear();
    i[k].raw_data = Some(vec![0, 0x3c]);
    expect(&encode(n, i, value("x", &[1, 1, 4, 4]), "y"), &["initializer 'ys'", "FLOAT16"]);
    // Symbolic spatial dimension.
    let (n, i) = qdq_parts();
    let mut v = value("x", &[1, 1, 4, 4]);
    v.r#type.as_mut().unwrap().tensor_type.as_mut().unwrap().shape.as_mut().unwrap().dim[2] =
        Dimension { dim_value: None, dim_param: Some("H".into()) };
    expect(&encode(n, i, v, "y"), &["graph input 'x'", "dimension 2"]);
    // An input produced by no node.
    let (mut n, i) = qdq_parts();
    n[4].input[0] = "nowhere".into();
    expect(
        &encode(n, i, value("x", &[1, 1, 4, 4]), "y"),
        &["node 'conv' (Conv)", "'nowhere' is not produced"],
    );
}

// ---- agreement with the reference runtimes -------------------------------------------------

mod agree {
    use super::*;
    use bitmac::array::Engine;
    use bitmac::graph::run::{lower, run_batch};
    use bitmac::hw::HwConfig;
    use bitmac::import::reference::{agreement, argmax, Agreement, OnnxReference};

    /// Run every sample of the reference's input through the graph; return the agreement.
    pub fn run(model_file: &str, ref_file: &str, requant: RequantMode) -> Agreement {
        let imp = load(&model(model_file), ImportOptions { requant }).unwrap();
        let r = OnnxReference::load(&model(ref_file), &imp).unwrap();
        let hw = HwConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/hw/onnx.json")).unwrap();
        let g = &imp.graph;
        let x = bitmac::npy::read_f32(&r.input).unwrap();
        let per = g.tensor(g.input()).len();
        let input = g
            .quantize_input(&x.data[..r.samples * per])
            .unwrap_or_else(|_| x.data.chunks(per).flat_map(|s| g.quantize_input(s).unwrap()).collect());
        let low = lower(g, &hw).unwrap();
        let outs = run_batch(g, &low, &hw, input.clone(), r.samples, Engine::Fast).unwrap();
        let mut codes: Vec<Option<Vec<i64>>> = vec![None; g.tensors().len()];
        codes[g.input().0] = Some(input);
        for (n, o) in g.nodes().iter().zip(&outs) {
            codes[n.output.0] = Some(o.codes.clone());
        }
        let out = codes[g.output().0].clone().unwrap();
        let k = g.tensor(g.output()).len();
        let preds: Vec<usize> = out.chunks(k).map(argmax).collect();
        let a =
            agreement(&imp, &r, &preds, &|s| &out[s * k..(s + 1) * k], &|t| codes[t.0].as_deref()).unwrap();
        a
    }
}

fn print(name: &str, a: &bitmac::import::reference::Agreement) {
    eprintln!("{name} vs {}: {}/{} predictions equal", a.runtime, a.predictions_equal, a.samples);
    for t in &a.tensors {
        eprintln!(
            "  {} ({:?}): {}/{} codes differ (max |d| {})",
            t.tensor, t.node, t.differing, t.elements, t.max_abs_diff
        );
    }
    for d in &a.differences {
        eprintln!("  sample {}: {} vs {}: {}", d.sample, d.bitmac, d.reference, d.explanation);
    }
}

/// Codes that differ are one code apart and rare (docs/onnx.md §8 explains each).
fn codes_close(a: &bitmac::import::reference::Agreement) {
    for t in &a.tensors {
        assert!(t.elements > 0, "{}: not compared", t.tensor);
        assert!(t.max_abs_diff <= 1, "{}: max |d| {}", t.tensor, t.max_abs_diff);
        assert!(t.differing * 10_000 <= t.elements, "{}: {} of {} differ", t.tensor, t.differing, t.elements);
    }
}

#[test]
fn qdq_float32_agrees_with_onnx_runtime() {
    let a = agree::run("qdq_cnn.onnx", "qdq_cnn.ref.json", RequantMode::Float32);
    print("qdq_cnn", &a);
    assert_eq!(a.samples, 360);
    assert_eq!(a.predictions_equal, a.samples, "{:?}", a.differences);
    codes_close(&a);
    let d = agree::run("qdq_cnn.onnx", "qdq_cnn.ref-default.json", RequantMode::Float32);
    assert_eq!(d.predictions_equal, d.samples);
}

#[test]
fn qonnx_agrees_with_qonnx_executor() {
    let a = agree::run("brevitas_cnn.onnx", "brevitas_cnn.ref.json", RequantMode::Float32);
    print("brevitas_cnn", &a);
    assert_eq!(a.samples, 360);
    assert!(a.predictions_equal * 1000 >= a.samples * 995, "{:?}", a.differences);
    assert!(a.differences.iter().all(|d| !d.explanation.is_empty()));
    codes_close(&a);
}

#[test]
fn agreement_finds_the_first_differing_tensor() {
    use bitmac::import::reference::{agreement, OnnxReference};
    let imp = load(&model("qdq_cnn.onnx"), ImportOptions::default()).unwrap();
    let r = OnnxReference::load(&model("qdq_cnn.ref.json"), &imp).unwrap();
    let g = &imp.graph;
    // bitmac's codes := the reference's own; then one prediction flipped, then one code changed.
    let mut codes: Vec<Option<Vec<i64>>> = vec![None; g.tensors().len()];
    for rc in &r.codes {
        codes[rc.id.0] = Some(rc.codes.clone());
    }
    let k = r.classes;
    let out = codes[g.output().0].clone().unwrap();
    let mut preds = r.predictions();
    let logits = |s: usize| &out[s * k..(s + 1) * k];
    let a = agreement(&imp, &r, &preds, &logits, &|t| codes[t.0].as_deref()).unwrap();
    assert_eq!(a.predictions_equal, 360);
    assert!(a.tensors.iter().all(|t| t.differing == 0 && t.elements > 0));
    preds[5] = (preds[5] + 1) % k;
    let a = agreement(&imp, &r, &preds, &logits, &|t| codes[t.0].as_deref()).unwrap();
    assert_eq!(a.predictions_equal, 359);
    assert_eq!(a.differences.len(), 1);
    assert_eq!(a.differences[0].sample, 5);
    assert!(a.differences[0].first.is_none());
    assert!(a.differences[0].explanation.contains("every listed tensor agrees"));
    // Change element 7 of sample 5 in the 4th listed tensor and element 3 in the 6th: the
    // first in graph order is named.
    let t4 = r.codes[3].id;
    let t6 = r.codes[5].id;
    let len4 = r.codes[3].len;
    let len6 = r.codes[5].len;
    codes[t6.0].as_mut().unwrap()[5 * len6 + 3] += 2;
    codes[t4.0].as_mut().unwrap()[5 * len4 + 7] += 1;
    let a = agreement(&imp, &r, &preds, &logits, &|t| codes[t.0].as_deref()).unwrap();
    let (tensor, _, e, _, _) = a.differences[0].first.clone().unwrap();
    assert_eq!((tensor.as_str(), e), (r.codes[3].tensor.as_str(), 7));
    assert_eq!(a.tensors[3].differing, 1);
    assert_eq!(a.tensors[5].max_abs_diff, 2);
    assert!(a.differences[0].explanation.contains("one code apart"));
}

// ---- the CLI -------------------------------------------------------------------------------

fn bitmac(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_bitmac"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[test]
fn cli_run_onnx_json_has_predictions_and_accuracy() {
    let o = bitmac(&["run", "--model", "models/onnx/qdq_cnn.onnx", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 360);
    // Accuracy from the committed labels, recomputed here from the printed predictions.
    let y = bitmac::npy::read_npy(&model("digits_test_y.npy")).unwrap();
    let correct = preds.iter().zip(&y.data).filter(|(p, l)| p.as_i64() == Some(**l)).count();
    assert_eq!(v["correct"].as_u64(), Some(correct as u64));
    assert_eq!(v["accuracy"].as_f64(), Some(correct as f64 / 360.0));
    assert_eq!(v["reference"]["predictions_equal"].as_u64(), Some(360));
    // Without the reference and with explicit data: predictions only.
    let o = bitmac(&[
        "run",
        "--model",
        "models/onnx/brevitas_cnn.onnx",
        "--data",
        "models/onnx/digits_test_x.npy",
        "--reference",
        "none",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["predictions"].as_array().unwrap().len(), 360);
    assert!(v.get("accuracy").is_none() && v.get("reference").is_none());
}

#[test]
fn cli_run_onnx_bad_inputs_exit_2_with_one_line() {
    let dir = std::env::temp_dir().join(format!("bitmac-onnx-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.onnx");
    std::fs::write(&bad, b"\x0a\xff\xff\xff\xff\x0f garbage").unwrap();
    let x = dir.join("x.npy");
    bitmac::npy::write_f32(&x, &bitmac::npy::NpyF32 { shape: vec![2, 1, 8, 7], data: vec![0.0; 112] })
        .unwrap();
    for args in [
        vec!["run", "--model", bad.to_str().unwrap(), "--data", x.to_str().unwrap()],
        vec![
            "run",
            "--model",
            "models/onnx/qdq_cnn.onnx",
            "--data",
            x.to_str().unwrap(),
            "--reference",
            "none",
        ],
        vec!["run", "--model", "models/onnx/qdq_cnn.onnx", "--requant", "nearest"],
        vec!["run", "--model", "models/onnx/qdq_cnn.onnx", "--max-work", "1000"],
    ] {
        let o = bitmac(&args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The ResNet-18-shaped QDQ model (models/onnx/resnet18_qdq.py) loads and runs one image end to
/// end. Needs Python with torch and onnxruntime, so it is ignored by default:
/// `cargo test --release --test onnx_import -- --ignored resnet18`.
#[test]
#[ignore]
fn resnet18_qdq_runs_one_image() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/onnx");
    let st = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/onnx/resnet18_qdq.py"))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    let o = bitmac(&[
        "run",
        "--model",
        dir.join("resnet18_qdq.onnx").to_str().unwrap(),
        "--data",
        dir.join("resnet18_input.npy").to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["predictions"].as_array().unwrap().len(), 1);
    assert!(v["predictions"][0].as_u64().unwrap() < 1000);
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.iter().filter(|n| n["op"] == "conv2d").count(), 21); // 20 convs + the pool
    assert_eq!(nodes.iter().filter(|n| n["op"] == "add").count(), 8);
}

// ---- small models built by tests/data/onnx/make_models.py, against ONNX Runtime ---------------

fn data_model(name: &str) -> String {
    format!("../../tests/data/onnx/{name}")
}

#[test]
fn qlinear_conv_and_matmul_equal_onnx_runtime_bit_for_bit() {
    let imp = load(&model(&data_model("qlinear.onnx")), ImportOptions::default()).unwrap();
    assert_eq!(imp.flavor, Flavor::Qdq);
    assert_eq!(kinds(&imp.graph), ["conv2d", "flatten", "dense"]);
    let g = &imp.graph;
    // The QLinearConv keeps its per-channel weight scales and the input's zero point 117.
    assert_eq!(g.tensor(g.input()).quant.zero_point(), 117);
    match &g.nodes()[0].op {
        Op::Conv2d(c) => assert!(matches!(c.weight.quant().scale(), Scale::Channel(v) if v.len() == 4)),
        o => panic!("{o:?}"),
    }
    let a = agree::run(&data_model("qlinear.onnx"), &data_model("qlinear.ref.json"), RequantMode::Float32);
    print("qlinear", &a);
    assert_eq!((a.samples, a.predictions_equal), (16, 16));
    assert_eq!(a.tensors.len(), 3);
    for t in &a.tensors {
        assert!(t.elements > 0);
        assert_eq!(t.differing, 0, "{}: {} of {} codes differ from ORT", t.tensor, t.differing, t.elements);
    }
}

#[test]
fn batchnorm_fold_and_concat_equal_onnx_runtime() {
    let imp = load(&model(&data_model("bn_concat.onnx")), ImportOptions::default()).unwrap();
    assert_eq!(kinds(&imp.graph), ["conv2d", "conv2d", "concat"]);
    // The fold made channel 2's gamma < 0 a sign flip of its codes (docs/graph.md §8): the
    // folded weight codes of channel 2 are the negated file codes (zero point 0).
    let bytes = std::fs::read(model(&data_model("bn_concat.onnx"))).unwrap();
    let file = ModelProto::decode(&bytes[..]).unwrap();
    let wa =
        file.graph.as_ref().unwrap().initializer.iter().find(|t| t.name.as_deref() == Some("wa")).unwrap();
    let raw: Vec<i32> = wa.raw_data.as_ref().unwrap().iter().map(|&b| b as i8 as i32).collect();
    match &imp.graph.nodes()[0].op {
        Op::Conv2d(c) => {
            let per = raw.len() / 4;
            for o in 0..4 {
                let sign = if o == 2 { -1 } else { 1 };
                let got = &c.weight.codes()[o * per..(o + 1) * per];
                assert!(got.iter().zip(&raw[o * per..]).all(|(g, r)| *g == sign * r), "channel {o}");
            }
            assert!(matches!(c.act, Activation::Relu));
        }
        o => panic!("{o:?}"),
    }
    let a =
        agree::run(&data_model("bn_concat.onnx"), &data_model("bn_concat.ref.json"), RequantMode::Float32);
    print("bn_concat", &a);
    assert_eq!((a.samples, a.predictions_equal), (16, 16));
    let d: Vec<(&str, usize)> = a.tensors.iter().map(|t| (t.tensor.as_str(), t.differing)).collect();
    // One code of the BatchNorm-folded conv differs, by one (docs/onnx.md §8.1, computed
    // independently in numpy): the exact value there is 142.501225 output steps (ORT: 143), and
    // the fold's bias, rounded to the accumulator grid, moves it by -0.00138 steps (bitmac:
    // 142). The Concat (inputs rescaled to its output quantizer) and the 1x1 conv agree bit for
    // bit.
    assert_eq!(d, [("xq", 0), ("aq", 1), ("bq", 0), ("oq", 0)]);
    assert!(a.tensors.iter().all(|t| t.max_abs_diff <= 1));
}
