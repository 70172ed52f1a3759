//! The quantized graph: both array engines held equal to the exact integer
//! reference (`graph::reference`, written from docs/graph.md) on random
//! graphs with every node kind, random shapes, groups, dilations,
//! asymmetric pads, zero points, per-channel scales and requant modes.

use bitmac::array::Engine;
use bitmac::graph::reference::reference;
use bitmac::graph::run::{lower, run_batch};
use bitmac::graph::*;
use bitmac::hw::HwConfig;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn hw(dataflow: &str, rows: usize, cols: usize, rounding: &str) -> HwConfig {
    let text = format!(
        r#"{{"array": {{"rows": {rows}, "cols": {cols}, "dataflow": "{dataflow}"}},
        "weights": {{"bits": 8, "signed": true}}, "activations": {{"bits": 10, "signed": true}},
        "accumulator": {{"bits": 48, "overflow": "WRAP"}},
        "psum": {{"drop_bits": 0, "rounding": "RND", "offset": 0}},
        "requant": {{"rounding": "{rounding}", "relu": false, "out_bits": 8, "out_signed": true}},
        "clock": {{"period_ps": 1000}}}}"#
    );
    HwConfig::from_json_str(&text, "test hw").unwrap()
}

fn act_quant(r: &mut ChaCha8Rng) -> Quant {
    let scale = r.gen_range(0.01f32..0.2);
    if r.gen_bool(0.5) {
        Quant::new(8, false, false, Scale::Tensor(scale), r.gen_range(0..=40)).unwrap()
    } else {
        Quant::new(8, true, r.gen_bool(0.3), Scale::Tensor(scale), r.gen_range(-10..=10)).unwrap()
    }
}

fn requant_mode(r: &mut ChaCha8Rng) -> RequantMode {
    [RequantMode::Hardware, RequantMode::Double, RequantMode::Single, RequantMode::Float32][r.gen_range(0..4)]
}

fn act(r: &mut ChaCha8Rng, q: &Quant) -> Activation {
    match r.gen_range(0..3) {
        0 => Activation::None,
        1 => Activation::Relu,
        _ => {
            let lo = r.gen_range(q.min_code()..=q.zero_point());
            Activation::Clamp { lo, hi: r.gen_range(q.zero_point()..=q.max_code()) }
        }
    }
}

fn weights(r: &mut ChaCha8Rng, shape: Vec<usize>, out_channels: usize) -> Weights {
    let bits = r.gen_range(3..=6);
    let zp = if r.gen_bool(0.3) { r.gen_range(-2..=2) } else { 0 };
    let scale = if r.gen_bool(0.5) {
        Scale::Channel((0..out_channels).map(|_| r.gen_range(0.005f32..0.1)).collect())
    } else {
        Scale::Tensor(r.gen_range(0.005f32..0.1))
    };
    let q = Quant::new(bits, true, r.gen_bool(0.5), scale, zp).unwrap();
    let n: usize = shape.iter().product();
    let codes = (0..n).map(|_| r.gen_range(q.min_code()..=q.max_code()) as i32).collect();
    Weights::new(shape, codes, q).unwrap()
}

fn bias(r: &mut ChaCha8Rng, n: usize) -> Bias {
    Bias::new((0..n).map(|_| r.gen_range(-300..=300)).collect(), None).unwrap()
}

/// A conv keeping `[c, h, w]` (stride 1, asymmetric pads summing to the
/// dilated kernel's extent), with random groups and dilation.
fn same_conv(r: &mut ChaCha8Rng, c: usize, o: usize) -> Conv2d {
    let divisors: Vec<usize> = (1..=c).filter(|g| c.is_multiple_of(*g) && o.is_multiple_of(*g)).collect();
    let g = divisors[r.gen_range(0..divisors.len())];
    let k = [1, 3][r.gen_range(0..2)];
    let d = r.gen_range(1..=2);
    let span = d * (k - 1);
    let (pt, pl) = (r.gen_range(0..=span), r.gen_range(0..=span));
    let mut conv = Conv2d::new(weights(r, vec![o, c / g, k, k], o), bias(r, o));
    conv.groups = g;
    conv.dilation = [d, d];
    conv.pads = [pt, pl, span - pt, span - pl];
    conv.requant = requant_mode(r);
    conv
}

/// A random graph using every node kind.
fn random_graph(seed: u64) -> (Graph, Vec<i64>, usize) {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let c = r.gen_range(1..=4);
    let (h, w) = (r.gen_range(4..=7), r.gen_range(4..=7));
    let xq = act_quant(&mut r);
    let mut b = GraphBuilder::new("random");
    let x = b.input("x", vec![c, h, w], xq.clone()).unwrap();

    // conv1: random stride, pads, dilation, groups (any output shape).
    let o1 = c * r.gen_range(1..=2);
    let mut conv1 = same_conv(&mut r, c, o1);
    conv1.stride = [r.gen_range(1..=2), r.gen_range(1..=2)];
    let q1 = act_quant(&mut r);
    conv1.act = act(&mut r, &q1);
    let t1 = b.add_node("conv1", Op::Conv2d(conv1), &[x], Some(q1.clone())).unwrap();
    // conv2: depthwise or grouped, same shape, for the residual add.
    let mut conv2 = same_conv(&mut r, o1, o1);
    if r.gen_bool(0.5) {
        conv2.groups = o1;
        let k = conv2.kernel()[0];
        conv2.weight = weights(&mut r, vec![o1, 1, k, k], o1);
    }
    let q2 = act_quant(&mut r);
    conv2.act = act(&mut r, &q2);
    let t2 = b.add_node("conv2", Op::Conv2d(conv2), &[t1], Some(q2)).unwrap();
    let q3 = act_quant(&mut r);
    let add = Op::Add { act: act(&mut r, &q3), requant: requant_mode(&mut r) };
    let t3 = b.add_node("add", add, &[t1, t2], Some(q3.clone())).unwrap();
    let q4 = if r.gen_bool(0.3) { q3.clone() } else { act_quant(&mut r) };
    let t4 = b
        .add_node("concat", Op::Concat { axis: 0, requant: requant_mode(&mut r) }, &[t3, t1], Some(q4))
        .unwrap();
    let shape = b.tensor(t4).unwrap().shape.clone();
    let k = r.gen_range(1..=2.min(shape[1]).min(shape[2]));
    let mut win = Window::square(k, r.gen_range(1..=2));
    if k == 2 {
        win.pads = [r.gen_range(0..=1), r.gen_range(0..=1), r.gen_range(0..=1), r.gen_range(0..=1)];
    }
    let t5 = if r.gen_bool(0.5) {
        b.add_node("maxpool", Op::MaxPool(win), &[t4], None).unwrap()
    } else {
        let rounding = [DivRounding::HalfEven, DivRounding::HalfAway, DivRounding::Floor][r.gen_range(0..3)];
        let p = AvgPool { window: win, count_include_pad: r.gen_bool(0.5), rounding };
        b.add_node("avgpool", Op::AveragePool(p), &[t4], None).unwrap()
    };
    let q5 = b.tensor(t5).unwrap().quant.clone();
    let t6 = if r.gen_bool(0.5) {
        b.add_node("relu", Op::Relu, &[t5], None).unwrap()
    } else {
        let lo = r.gen_range(q5.min_code()..=q5.zero_point());
        b.add_node("clip", Op::Clip { lo, hi: r.gen_range(lo..=q5.max_code()) }, &[t5], None).unwrap()
    };
    let rounding = [DivRounding::HalfEven, DivRounding::HalfAway, DivRounding::Floor][r.gen_range(0..3)];
    let s6 = b.tensor(t6).unwrap().shape.clone();
    // Global average pool on half the graphs, flatten + reshape on all.
    let t7 = if r.gen_bool(0.5) {
        b.add_node("gap", Op::GlobalAveragePool { rounding }, &[t6], None).unwrap()
    } else {
        b.add_node("reshape", Op::Reshape { shape: vec![s6[0], s6[1] * s6[2], 1] }, &[t6], None).unwrap()
    };
    let t8 = b.add_node("flatten", Op::Flatten, &[t7], None).unwrap();
    let kf = b.tensor(t8).unwrap().len();
    let n = r.gen_range(1..=5);
    let dense = Dense {
        weight: weights(&mut r, vec![kf, n], n),
        bias: bias(&mut r, n),
        act: Activation::None,
        requant: RequantMode::Accumulator,
    };
    let out = if r.gen_bool(0.5) {
        b.add_node("fc", Op::Dense(dense), &[t8], None).unwrap()
    } else {
        let q = act_quant(&mut r);
        let dense = Dense { act: act(&mut r, &q), requant: requant_mode(&mut r), ..dense };
        b.add_node("fc", Op::Dense(dense), &[t8], Some(q)).unwrap()
    };
    let g = b.finish(out).unwrap();
    let batch = r.gen_range(1..=3);
    let input = (0..batch * c * h * w).map(|_| r.gen_range(xq.min_code()..=xq.max_code())).collect();
    (g, input, batch)
}

fn check_graph(seed: u64) {
    let (g, input, batch) = random_graph(seed);
    let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let df = ["ws", "os", "is"][r.gen_range(0..3)];
    let rounding = ["single", "double"][r.gen_range(0..2)];
    let hw = hw(df, r.gen_range(1..=5), r.gen_range(1..=5), rounding);
    let low = lower(&g, &hw).unwrap();
    let in_len = g.tensor(g.input()).len();
    let refs: Vec<_> =
        (0..batch).map(|s| reference(&g, &hw, &input[s * in_len..(s + 1) * in_len]).unwrap()).collect();
    for engine in [Engine::Fast, Engine::Cycle] {
        let outs = run_batch(&g, &low, &hw, input.clone(), batch, engine).unwrap();
        for (i, (node, out)) in g.nodes().iter().zip(&outs).enumerate() {
            let len = g.tensor(node.output).len();
            for (s, rf) in refs.iter().enumerate() {
                assert_eq!(
                    &out.codes[s * len..(s + 1) * len],
                    &rf[i].codes[..],
                    "seed {seed} {engine} node {i} ({}) sample {s}",
                    node.name
                );
                if !rf[i].acc.is_empty() {
                    assert_eq!(
                        &out.exact[s * len..(s + 1) * len],
                        &rf[i].acc[..],
                        "seed {seed} node {} exact",
                        node.name
                    );
                    assert_eq!(
                        &out.acc[s * len..(s + 1) * len],
                        &rf[i].acc[..],
                        "seed {seed} node {} acc",
                        node.name
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn engines_equal_the_exact_reference_on_random_graphs(seed in any::<u64>()) {
        check_graph(seed);
    }
}

#[test]
fn builder_errors_name_node_and_tensor() {
    let q = Quant::new(8, false, false, Scale::Tensor(0.1), 0).unwrap();
    let mut b = GraphBuilder::new("e");
    let x = b.input("x", vec![3, 4, 4], q.clone()).unwrap();
    let w = Weights::new(vec![2, 2, 3, 3], vec![0; 36], Quant::symmetric(4, true, 0.1).unwrap()).unwrap();
    let conv = Conv2d::new(w, Bias::new(vec![0, 0], None).unwrap());
    let e = b.add_node("c0", Op::Conv2d(conv), &[x], Some(q.clone())).unwrap_err().to_string();
    assert!(
        e.contains("node 0 (c0, conv2d)") && e.contains("weight.shape[1]") && e.contains("input x"),
        "{e}"
    );
    let e = b.add_node("p", Op::MaxPool(Window::square(5, 1)), &[x], None).unwrap_err().to_string();
    assert!(e.contains("node 0 (p, maxpool)") && e.contains("larger than the padded input"), "{e}");
    let e = b.add_node("d", Op::Flatten, &[TensorId(7)], None).unwrap_err().to_string();
    assert!(e.contains("tensor id 7"), "{e}");
}

fn repo(p: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// The committed model (models/graph_train.py): integer predictions equal
/// the committed fake-quant reference on >= 99.5% of the test split, and
/// every node equals the exact reference on a few samples.
#[test]
fn committed_graph_model_matches_its_fake_quant_reference() {
    use bitmac::graph::format::GraphFile;
    use bitmac::graph::report::{run_graph_model, GraphReference};
    use bitmac::model::Dataset;
    let mpath = repo("models/digits_resdw.graph.json");
    let file = GraphFile::load(&mpath).unwrap();
    let kinds: Vec<&str> = file.graph.nodes().iter().map(|n| n.op.kind()).collect();
    for k in ["conv2d", "add", "maxpool", "global_avgpool", "dense"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let data_path = repo("models/data/digits_test.csv");
    let data = Dataset::load(&data_path).unwrap();
    let r = GraphReference::load(
        &repo("models/digits_resdw.ref.json"),
        Some(&std::fs::read(&mpath).unwrap()),
        Some(&std::fs::read(&data_path).unwrap()),
    )
    .unwrap();
    let hw = HwConfig::load(&repo("models/hw/default.json")).unwrap();
    let opts = bitmac::sim::RunOptions { engine: Engine::Fast, batch: 8, max_explain: 5 };
    let (rep, nodes) = run_graph_model(&file, &data, Some(&r), &hw, &opts, &|_| {}).unwrap();
    let agree = rep.agree.unwrap();
    assert!(agree * 1000 >= 995 * data.len(), "agreement {agree}/{}", data.len());
    assert_eq!(nodes.len(), file.graph.nodes().len());
    // Every node equals the exact reference (the default hw does not overflow on this model).
    let g = &file.graph;
    let low = lower(g, &hw).unwrap();
    for s in [0usize, 17, 296] {
        let x: Vec<f32> = data.image(s).iter().map(|&v| v * file.raw_scale).collect();
        let input = g.quantize_input(&x).unwrap();
        let outs = run_batch(g, &low, &hw, input.clone(), 1, Engine::Cycle).unwrap();
        let rf = reference(g, &hw, &input).unwrap();
        for (i, (o, rn)) in outs.iter().zip(&rf).enumerate() {
            assert_eq!(o.codes, rn.codes, "sample {s} node {i}");
        }
    }
}

#[test]
fn graph_file_errors_name_node_and_field() {
    use bitmac::graph::format::GraphFile;
    let good = std::fs::read_to_string(repo("models/digits_resdw.graph.json")).unwrap();
    let cases = [
        (r#""op":"relu","inputs":["add"]"#, r#""op":"gelu","inputs":["add"]"#, "node 3 (relu): op: \"gelu\""),
        (r#""op":"relu","inputs":["add"]"#, r#""op":"relu","inputs":["nope"]"#, "node 3 (relu): inputs"),
        (
            r#""op":"relu","inputs":["add"]"#,
            r#""op":"relu","inputs":["add"],"axis":1"#,
            "field axis is not used by op relu",
        ),
        (r#""groups":8"#, r#""groups":3"#, "node 1 (dw, conv2d): groups"),
        (r#""format":"bitmac-graph/1""#, r#""format":"bitmac-graph/9""#, "format"),
    ];
    for (from, to, want) in cases {
        assert!(good.contains(from), "{from}");
        let bad = good.replacen(from, to, 1);
        let e = GraphFile::from_json_str(&bad, "m.json").unwrap_err().to_string();
        assert!(e.contains(want) && e.starts_with("m.json"), "{want}: {e}");
    }
    let e = GraphFile::from_json_str(&good[..good.len() / 2], "m.json").unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn dump_writes_every_node_and_round_trips() {
    use bitmac::graph::dump::{dump, hex_lines};
    let (g, input, _) = random_graph(7);
    let hw = hw("ws", 3, 2, "single");
    let low = lower(&g, &hw).unwrap();
    let len = g.tensor(g.input()).len();
    let x = &input[..len];
    let dir = std::env::temp_dir().join(format!("bitmac_dump_test_{}", std::process::id()));
    let n = dump(&g, &low, &hw, x, 0, Engine::Fast, &dir).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let nodes = manifest["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), g.nodes().len());
    let outs = run_batch(&g, &low, &hw, x.to_vec(), 1, Engine::Fast).unwrap();
    for (e, o) in nodes.iter().zip(&outs) {
        let npy = bitmac::npy::read_npy(&dir.join(e["output"]["npy"].as_str().unwrap())).unwrap();
        assert_eq!(npy.data, o.codes, "{}", e["name"]);
        let hex = std::fs::read_to_string(dir.join(e["output"]["hex"].as_str().unwrap())).unwrap();
        let w = e["output"]["width"].as_u64().unwrap() as u32;
        assert_eq!(hex, hex_lines(&o.codes, w));
        assert_eq!(e["acc"].is_null(), o.acc.is_empty());
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), n);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(hex_lines(&[-1, 5], 9), "1ff\n005\n");
}

#[test]
fn batchnorm_fold_keeps_codes_and_scales_channels() {
    let wq = Quant::new(4, true, true, Scale::Tensor(0.5), 0).unwrap();
    let w = Weights::new(vec![2, 1, 1, 1], vec![3, -2], wq).unwrap();
    let conv = Conv2d::new(w, Bias::new(vec![4, -4], None).unwrap());
    let bn = BatchNorm {
        gamma: vec![2.0, -1.0],
        beta: vec![0.5, 0.0],
        mean: vec![1.0, 0.0],
        var: vec![3.0, 0.0],
        eps: 1.0,
    };
    let f = fold_batchnorm(&conv, 0.25, &bn).unwrap();
    // k = 2/sqrt(4) = 1 (codes kept, scale 0.5); k = -1/sqrt(1) = -1 (codes negated).
    assert_eq!(f.weight.codes(), &[3, 2]);
    assert_eq!(f.weight.quant().scale(), &Scale::Channel(vec![0.5, 0.5]));
    // Real bias: 4*0.25*0.5 = 0.5 -> (0.5 - 1)*1 + 0.5 = 0 -> 0; -0.5 -> 0.5 -> 0.5/0.125 = 4.
    assert_eq!(f.bias.codes(), &[0, 4]);
}

fn bitmac_cli(args: &[&str]) -> (i32, String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_bitmac"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

/// `bitmac run --json` prints `predictions` (one per sample) and `accuracy`
/// (their agreement with the labels) for every model kind.
#[test]
fn run_json_has_predictions_and_accuracy_for_every_model_kind() {
    let csv = std::fs::read_to_string(repo("models/data/digits_test.csv")).unwrap();
    let csv_labels: Vec<u64> = csv
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(',').next().unwrap().trim().parse().ok())
        .collect();
    let npy_labels: Vec<u64> = bitmac::npy::read_npy(&repo("models/onnx/digits_test_y.npy"))
        .unwrap()
        .data
        .iter()
        .map(|&v| v as u64)
        .collect();
    for (model, labels) in [
        ("models/cnn_w4a4.json", &csv_labels),
        ("models/digits_resdw.graph.json", &csv_labels),
        ("models/onnx/qdq_cnn.onnx", &npy_labels),
    ] {
        let (code, out, err) = bitmac_cli(&["run", "--model", model, "--json"]);
        assert_eq!(code, 0, "{model}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let p: Vec<u64> = v["predictions"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        assert_eq!(p.len(), labels.len(), "{model}: one prediction per sample");
        let correct = p.iter().zip(labels.iter()).filter(|(a, b)| a == b).count();
        let acc = v["accuracy"].as_f64().unwrap();
        assert!(
            (acc - correct as f64 / p.len() as f64).abs() < 1e-12,
            "{model}: accuracy {acc}, {correct}/{}",
            p.len()
        );
        assert!(acc > 0.8, "{model}: accuracy {acc}");
    }
}

/// Graph models honour --max-work / --max-mem (docs/limits.md): refused
/// before running with one line naming the limit, exit 2.
#[test]
fn graph_run_refuses_past_max_work_and_max_mem() {
    let m = "models/digits_resdw.graph.json";
    for (args, want) in [
        (vec!["run", "--model", m, "--max-work", "1000"], ["MAC-steps", "--max-work"]),
        (vec!["run", "--model", m, "--max-mem", "1000"], ["bytes", "--max-mem"]),
        (
            vec!["run", "--model", m, "--max-work", "1000", "--dump", "target/never", "--sample", "0"],
            ["1 samples", "--max-work"],
        ),
    ] {
        let (code, out, err) = bitmac_cli(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        for w in want {
            assert!(err.contains(w), "{args:?}: {err}");
        }
        assert!(err.contains("digits_resdw"), "names the model: {err}");
    }
    assert!(!repo("target/never").exists(), "nothing written when refused");
    // The default limits run the model.
    let (code, _, err) = bitmac_cli(&["run", "--model", m, "--json"]);
    assert_eq!(code, 0, "{err}");
}

/// `bitmac run --model M.onnx --dump DIR --sample I` writes the same dump
/// as for graph models; its output codes of the first requantized node equal
/// ONNX Runtime's committed codes (models/onnx/ort_qdq.py).
#[test]
fn onnx_dump_matches_onnx_runtime_codes() {
    let dir = std::env::temp_dir().join(format!("bitmac_onnx_dump_{}", std::process::id()));
    let (code, _, err) = bitmac_cli(&[
        "run",
        "--model",
        "models/onnx/qdq_cnn.onnx",
        "--data",
        "models/onnx/digits_test_x.npy",
        "--dump",
        dir.to_str().unwrap(),
        "--sample",
        "5",
    ]);
    assert_eq!(code, 0, "{err}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let first = &m["nodes"][0];
    let mine = bitmac::npy::read_npy(&dir.join(first["output"]["npy"].as_str().unwrap())).unwrap();
    let ort = bitmac::npy::read_npy(&repo(
        "models/onnx/qdq_cnn.codes.disable_all/01__Relu_output_0_QuantizeLinear_Output.npy",
    ))
    .unwrap();
    let len = mine.data.len();
    assert_eq!(mine.data, ort.data[5 * len..6 * len]);
    std::fs::remove_dir_all(&dir).unwrap();
}
