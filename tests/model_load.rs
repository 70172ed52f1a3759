//! The shipped models, data and references (issue 4, parts 1-2):
//! - every shipped model, its reference and the test split load and belong together;
//! - the Rust input-code computation reproduces PyTorch's (committed `input_codes`);
//! - the Rust integer reference reproduces the Python integer reference exactly
//!   (logits and predictions), and agrees with the PyTorch fake-quant predictions
//!   on >= 99.5% of the test samples;
//! - the im2col lowering gives the directly computed accumulators;
//! - malformed model / data / reference files give one-line errors with exit
//!   code 2 naming the file, the layer (index and name) and the field.
//!
//! The references were produced by `models/train.py` + `models/export.py`
//! (PyTorch, independent of this crate).

use bitmac::model::{
    argmax, layer_accumulators, reference_forward, reference_trace, Dataset, Model, Reference,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const MODELS: [&str; 3] = ["cnn_w4a4", "mlp_w4a4", "cnn_w2a2"];

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn load_all(name: &str) -> (Model, Reference, Dataset) {
    let mp = models_dir().join(format!("{name}.json"));
    let model = Model::load(&mp).unwrap_or_else(|e| panic!("{e}"));
    let reference = Reference::load(&Reference::path_for_model(&mp)).unwrap_or_else(|e| panic!("{e}"));
    let data = Dataset::load(&reference.data_path).unwrap_or_else(|e| panic!("{e}"));
    (model, reference, data)
}

#[test]
fn shipped_models_load_and_match_their_references() {
    for name in MODELS {
        let (model, reference, data) = load_all(name);
        assert_eq!(model.name(), name);
        reference.check_model(&model).unwrap_or_else(|e| panic!("{name}: {e}"));
        reference.verify_files().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(data.len(), 360);
        assert_eq!(reference.samples(), 360);
        assert_eq!(data.labels(), &reference.labels[..], "{name}: labels differ from the data file");
        assert_eq!(model.num_classes(), 10);
        // The integer reference's requant is the f64 round-half-even one this crate implements.
        assert_eq!(reference.integer.requant, "f64-round-half-even");
    }
}

#[test]
fn train_split_loads() {
    let d = Dataset::load(&models_dir().join("data/digits_train.csv")).unwrap();
    assert_eq!(d.len(), 1437);
    let mut counts = [0usize; 10];
    for &l in d.labels() {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [142, 145, 142, 146, 145, 146, 145, 143, 139, 144]);
}

#[test]
fn input_codes_match_pytorch() {
    for name in MODELS {
        let (model, reference, data) = load_all(name);
        for i in 0..data.len() {
            let codes = model.input_codes(data.image(i)).unwrap();
            assert_eq!(codes, reference.input_codes[i], "{name}: sample {i}");
        }
    }
}

#[test]
fn integer_reference_matches_python_exactly_and_agrees_with_fake_quant() {
    for name in MODELS {
        let (model, reference, data) = load_all(name);
        let n = data.len();
        let (mut agree, mut correct) = (0usize, 0usize);
        for i in 0..n {
            let codes = model.input_codes(data.image(i)).unwrap();
            let logits = reference_forward(&model, &codes).unwrap();
            assert_eq!(logits, reference.integer.logits[i], "{name}: integer logits of sample {i}");
            let pred = argmax(&logits).unwrap();
            assert_eq!(pred, reference.integer.predictions[i], "{name}: sample {i}");
            agree += usize::from(pred == reference.fake_quant.predictions[i]);
            correct += usize::from(pred == data.label(i) as usize);
        }
        let frac = agree as f64 / n as f64;
        println!(
            "{name}: integer vs fake-quant predictions agree on {agree}/{n} = {:.2}%; accuracy integer {:.2}%, fake-quant {:.2}%",
            100.0 * frac,
            100.0 * correct as f64 / n as f64,
            100.0 * reference.fake_quant.accuracy
        );
        assert!(frac >= 0.995, "{name}: agreement {agree}/{n} below 99.5%");
        assert!(
            reference.fake_quant.accuracy >= 0.95,
            "{name}: fake-quant accuracy {}",
            reference.fake_quant.accuracy
        );
    }
}

#[test]
fn hidden_codes_close_to_fake_quant() {
    // Fake-quant output / step is the fake-quant code; the integer path may
    // differ by one code where f32 accumulation and f64 requant round a
    // near-tie differently. Report the count; require |diff| <= 1.
    for name in MODELS {
        let (model, reference, data) = load_all(name);
        for (k, h) in reference.fake_quant.hidden_codes.iter().enumerate() {
            let (mut differ, mut max) = (0usize, 0i32);
            for i in 0..data.len() {
                let codes = model.input_codes(data.image(i)).unwrap();
                let trace = reference_trace(&model, &codes).unwrap();
                let ours = trace[k].codes.as_ref().unwrap();
                for (a, b) in ours.iter().zip(&h.codes[i]) {
                    differ += usize::from(a != b);
                    max = max.max((a - b).abs());
                }
            }
            println!(
                "{name}: layer {k} ({}): {differ} codes differ from fake-quant, max |diff| {max}",
                h.layer
            );
            assert!(max <= 1, "{name}: layer {k}: max |diff| {max}");
        }
    }
}

#[test]
fn im2col_gemm_equals_direct_accumulators() {
    for name in MODELS {
        let (model, _, data) = load_all(name);
        for i in (0..data.len()).step_by(37) {
            let codes = model.input_codes(data.image(i)).unwrap();
            let trace = reference_trace(&model, &codes).unwrap();
            let mut input = codes.clone();
            for (l, layer) in model.layers().iter().enumerate() {
                let (m, k, n) = layer.gemm_dims();
                let a = layer.im2col(&input);
                assert_eq!(a.len(), m * k);
                let w = layer.weight().codes();
                let mut acc = vec![0i64; m * n];
                for o in 0..n {
                    for p in 0..m {
                        let dot: i64 = (0..k).map(|j| a[p * k + j] as i64 * w[o * k + j] as i64).sum();
                        acc[o * m + p] = dot + layer.bias()[o] as i64;
                    }
                }
                assert_eq!(acc, layer_accumulators(layer, &input), "{name} layer {l} sample {i}");
                assert_eq!(acc, trace[l].acc);
                if let Some(c) = &trace[l].codes {
                    input.clone_from(c);
                }
            }
        }
    }
}

#[test]
fn requant_multiplier_and_ranges() {
    let (model, _, _) = load_all("cnn_w4a4");
    let l0 = &model.layers()[0];
    let l1 = &model.layers()[1];
    let m = model.reference_multiplier(0).unwrap();
    let want =
        (l0.weight().quant().step() as f64 * l0.input_quant().step() as f64) / l1.input_quant().step() as f64;
    assert_eq!(m.to_bits(), want.to_bits());
    assert_eq!(model.output_range(0), Some((0, 15)));
    assert_eq!(model.reference_multiplier(2), None);
    assert_eq!(model.output_quant(2), None);
    assert_eq!(l0.input_quant().bits(), 8);
    assert_eq!(l0.weight().quant().bits(), 8);
    assert_eq!(l1.weight().quant().bits(), 4);
    assert_eq!(model.layers()[2].weight().quant().bits(), 8);
    assert_eq!(l1.gemm_dims(), (16, 72, 16));
}

// ---------------------------------------------------------------------------
// Malformed files

fn base() -> Value {
    let text = std::fs::read_to_string(models_dir().join("cnn_w4a4.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Parse `v` as a model; it must fail with a one-line input error (exit 2)
/// that contains every `needles` item.
fn expect_err(v: &Value, needles: &[&str]) -> String {
    let text = serde_json::to_string(v).unwrap();
    expect_err_text(&text, needles)
}

fn expect_err_text(text: &str, needles: &[&str]) -> String {
    let err = Model::from_json_str(text, "bad.json").expect_err("model should be rejected");
    let msg = err.to_string();
    println!("rejected: {msg}");
    assert_eq!(err.exit_code(), 2, "{msg}");
    assert!(!msg.contains('\n'), "multi-line error: {msg}");
    assert!(msg.starts_with("bad.json: "), "error does not name the file: {msg}");
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} lacks {n:?}");
    }
    msg
}

fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut v = base();
    f(&mut v);
    v
}

#[test]
fn base_model_is_valid() {
    Model::from_json_str(&serde_json::to_string(&base()).unwrap(), "base.json").unwrap();
}

#[test]
fn rejects_bad_shapes() {
    let v = with(|v| v["layers"][1]["weight"]["shape"] = json!([16, 8, 3, 2]));
    expect_err(&v, &["layer 1 (conv2)", "weight.codes", "1152", "768"]);
    let v = with(|v| v["layers"][1]["weight"]["codes"].as_array_mut().unwrap().pop().map(|_| ()).unwrap());
    expect_err(&v, &["layer 1 (conv2)", "weight.codes", "has 1151 codes"]);
    let v = with(|v| v["layers"][1]["weight"]["shape"] = json!([16, 4, 3, 6]));
    expect_err(&v, &["layer 1 (conv2)", "weight.shape", "[16,8,3,3]"]);
    let v = with(|v| v["layers"][2]["weight"]["shape"] = json!([10, 128, 2]));
    expect_err(&v, &["layer 2 (fc)", "weight.shape"]);
    let v = with(|v| v["layers"][1]["output_shape"] = json!([16, 8, 8]));
    expect_err(&v, &["layer 1 (conv2)", "output_shape", "[16,4,4]"]);
    let v = with(|v| v["layers"][0]["input_shape"] = json!([1, 8, 0]));
    expect_err(&v, &["layer 0 (conv1)", "input_shape"]);
    let v = with(|v| v["layers"][1]["bias"].as_array_mut().unwrap().push(json!(0)));
    expect_err(&v, &["layer 1 (conv2)", "bias", "17 values"]);
    let v = with(|v| v["layers"][0]["kernel"] = json!([9, 9]));
    expect_err(&v, &["layer 0 (conv1)", "weight.shape"]);
    let v = with(|v| v["layers"][0]["stride"] = json!([0, 1]));
    expect_err(&v, &["layer 0 (conv1)", "stride"]);
}

#[test]
fn rejects_broken_chaining() {
    let v = with(|v| v["layers"][1]["input_shape"] = json!([8, 4, 4]));
    expect_err(&v, &["layer 1 (conv2)", "input_shape", "[8,4,4]", "previous layer's output_shape [8,8,8]"]);
    let v = with(|v| v["input"]["shape"] = json!([1, 8, 7]));
    expect_err(&v, &["layer 0 (conv1)", "input_shape", "model input shape"]);
    let v = with(|v| v["layers"][2]["flatten"] = json!(false));
    expect_err(&v, &["layer 2 (fc)", "flatten"]);
    let v = with(|v| {
        let l = v["layers"].as_array_mut().unwrap();
        l.swap(0, 1);
    });
    expect_err(&v, &["layer 0 (conv2)", "input_shape"]);
}

#[test]
fn rejects_bad_bits() {
    for bits in [json!(1), json!(17), json!(0), json!(-1)] {
        let v = with(|v| v["layers"][1]["weight"]["bits"] = bits.clone());
        expect_err(&v, &["layer 1 (conv2)", "weight.bits", "2..=16"]);
        let v = with(|v| v["layers"][2]["input_quant"]["bits"] = bits.clone());
        expect_err(&v, &["layer 2 (fc)", "input_quant.bits", "2..=16"]);
    }
    let v = with(|v| v["layers"][1]["weight"]["bits"] = json!(4.5));
    expect_err(&v, &["layer 1 (conv2)", "weight.bits"]);
    // Codes that were valid at 4 bits no longer fit in 3.
    let v = with(|v| v["layers"][1]["weight"]["bits"] = json!(3));
    expect_err(&v, &["layer 1 (conv2)", "weight.codes[", "-4..=3"]);
}

#[test]
fn rejects_codes_out_of_range() {
    let v = with(|v| v["layers"][1]["weight"]["codes"][5] = json!(8));
    expect_err(&v, &["layer 1 (conv2)", "weight.codes[5]", "8", "-8..=7"]);
    let v = with(|v| v["layers"][1]["weight"]["codes"][0] = json!(-9));
    expect_err(&v, &["layer 1 (conv2)", "weight.codes[0]", "-9"]);
    let v = with(|v| v["layers"][0]["weight"]["codes"][3] = json!(128));
    expect_err(&v, &["layer 0 (conv1)", "weight.codes[3]", "-128..=127"]);
    let v = with(|v| {
        v["layers"][1]["weight"]["signed"] = json!(false);
    });
    expect_err(&v, &["layer 1 (conv2)", "weight.codes[", "0..=15", "unsigned"]);
    let v = with(|v| v["layers"][1]["weight"]["codes"][2] = json!("3"));
    expect_err(&v, &["layer 1 (conv2)", "weight.codes[2]"]);
    let v = with(|v| v["layers"][1]["bias"][3] = json!(2147483648i64));
    expect_err(&v, &["layer 1 (conv2)", "bias[3]", "2147483648", "int32"]);
    let v = with(|v| v["layers"][1]["bias"][3] = json!(-2147483649i64));
    expect_err(&v, &["layer 1 (conv2)", "bias[3]"]);
}

#[test]
fn rejects_bad_steps() {
    for key in ["weight", "input_quant"] {
        let field = format!("{key}.step");
        for bad in [
            json!(0),
            json!(0.0),
            json!(-1),
            json!(-0.5),
            json!(null),
            json!("NaN"),
            json!("inf"),
            json!(1e-50),
            json!(1e39),
        ] {
            let v = with(|v| {
                v["layers"][1][key]["step"] = bad.clone();
                // Remove the hex form so the decimal value itself is judged.
                v["layers"][1][key].as_object_mut().unwrap().remove("step_bits");
            });
            expect_err(&v, &["layer 1 (conv2)", &field]);
        }
    }
    // A finite positive step whose hex form disagrees.
    let v = with(|v| v["layers"][1]["weight"]["step_bits"] = json!("0x3f800000"));
    expect_err(&v, &["layer 1 (conv2)", "weight.step_bits", "0x3f800000"]);
    let v = with(|v| v["layers"][1]["weight"]["step_bits"] = json!("nonsense"));
    expect_err(&v, &["layer 1 (conv2)", "weight.step_bits"]);
    let v = with(|v| v["input"]["scale"] = json!(0));
    expect_err(&v, &["input.scale"]);
    // JSON has no NaN or Infinity literals: they are syntax errors naming the position.
    let text = serde_json::to_string(&base()).unwrap().replacen("\"step\":", "\"step\":NaN,\"x\":", 1);
    expect_err_text(&text, &["malformed JSON", "line 1"]);
}

#[test]
fn rejects_unknown_fields() {
    let v = with(|v| v["layers"][1]["dilation"] = json!([1, 1]));
    expect_err(&v, &["layer 1 (conv2)", "dilation", "unknown field"]);
    let v = with(|v| v["layers"][0]["weight"]["zero_point"] = json!(0));
    expect_err(&v, &["layer 0 (conv1)", "weight.zero_point", "unknown field"]);
    let v = with(|v| v["layers"][2]["input_quant"]["offset"] = json!(0));
    expect_err(&v, &["layer 2 (fc)", "input_quant.offset", "unknown field"]);
    let v = with(|v| v["extra"] = json!(1));
    expect_err(&v, &["extra", "unknown field"]);
    let v = with(|v| v["input"]["mean"] = json!(1));
    expect_err(&v, &["input.mean", "unknown field"]);
    // A conv2d-only field on a dense layer and vice versa.
    let v = with(|v| v["layers"][2]["kernel"] = json!([1, 1]));
    expect_err(&v, &["layer 2 (fc)", "kernel", "not allowed for a dense layer"]);
    let v = with(|v| v["layers"][0]["out_features"] = json!(8));
    expect_err(&v, &["layer 0 (conv1)", "out_features", "not allowed for a conv2d layer"]);
}

#[test]
fn rejects_missing_and_misc() {
    let v = with(|v| {
        v["layers"][1].as_object_mut().unwrap().remove("stride");
    });
    expect_err(&v, &["layer 1 (conv2)", "stride", "missing"]);
    let v = with(|v| {
        v["layers"][1].as_object_mut().unwrap().remove("relu");
    });
    expect_err(&v, &["layer 1 (conv2)", "missing field `relu`"]);
    let v = with(|v| v["layers"][1]["type"] = json!("maxpool"));
    expect_err(&v, &["layer 1 (conv2)", "type", "maxpool"]);
    let v = with(|v| v["layers"][2]["relu"] = json!(true));
    expect_err(&v, &["layer 2 (fc)", "relu", "last layer"]);
    let v = with(|v| v["layers"][1]["name"] = json!("conv1"));
    expect_err(&v, &["layer 1 (conv1)", "name", "duplicate of layer 0"]);
    let v = with(|v| v["format"] = json!("bitmac-model/2"));
    expect_err(&v, &["format", "bitmac-model/2", "bitmac-model/1"]);
    let v = with(|v| v["layers"] = json!([]));
    expect_err(&v, &["layers", "at least one layer"]);
}

#[test]
fn rejects_truncated_json() {
    let text = std::fs::read_to_string(models_dir().join("cnn_w4a4.json")).unwrap();
    for cut in [1, text.len() / 3, text.len() / 2, text.len() - 3] {
        expect_err_text(&text[..cut], &["truncated JSON"]);
    }
    expect_err_text("", &["truncated JSON"]);
}

#[test]
fn missing_model_file_is_an_io_error() {
    let err = Model::load(Path::new("/nonexistent/bitmac/model.json")).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("/nonexistent/bitmac/model.json"));
}

#[test]
fn mlp_and_w2a2_structure() {
    let (mlp, _, _) = load_all("mlp_w4a4");
    assert!(mlp.layers().iter().all(|l| l.kind() == "dense"));
    assert_eq!(mlp.input().shape(), &[64]);
    let (w2, _, _) = load_all("cnn_w2a2");
    assert_eq!(w2.layers()[1].weight().quant().bits(), 2);
    assert_eq!(w2.layers()[1].input_quant().bits(), 2);
    assert_eq!(w2.output_range(1), Some((0, 3)));
}

// ---------------------------------------------------------------------------
// Data set and reference files

fn data_err(text: &str, needles: &[&str]) {
    let err = Dataset::parse(text, "d.csv").expect_err("data should be rejected");
    let msg = err.to_string();
    assert_eq!(err.exit_code(), 2);
    assert!(!msg.contains('\n') && msg.starts_with("d.csv: "), "{msg}");
    for n in needles {
        assert!(msg.contains(n), "error {msg:?} lacks {n:?}");
    }
}

#[test]
fn dataset_validation() {
    let header = format!("label,{}\n", (0..64).map(|i| format!("p{i}")).collect::<Vec<_>>().join(","));
    let row = |label: &str, px: &str| format!("{label},{}\n", vec![px; 64].join(","));
    let ok = format!("{header}{}{}", row("3", "16"), row("9", "0"));
    let d = Dataset::parse(&ok, "d.csv").unwrap();
    assert_eq!((d.len(), d.label(0), d.label(1), d.image(0)[63], d.image(1)[0]), (2, 3, 9, 16.0, 0.0));
    // Ranges are the model's (raw_min..=raw_max, class count), checked by check_for.
    let model = bitmac::model::default_model().unwrap();
    d.check_for(&model, "d.csv").unwrap();
    for (text, needles) in [
        (format!("{header}{}", row("3", "17")), ["d.csv", "sample 0 value [0]", "17", "0..=16"]),
        (format!("{header}{}", row("10", "1")), ["d.csv", "sample 0 label", "10", "0..=9"]),
    ] {
        let msg = Dataset::parse(&text, "d.csv").unwrap().check_for(&model, "d.csv").unwrap_err().to_string();
        assert!(needles.iter().all(|n| msg.contains(n)), "{msg}");
    }
    let d3 = Dataset::parse("label,a,b\n1,2.5,3\n", "d.csv").unwrap();
    assert_eq!((d3.features(), d3.image(0)), (2, &[2.5f32, 3.0][..]));
    data_err(&format!("{header}{}", row("-1", "1")), &["line 2", "label", "-1"]);
    data_err(&format!("{header}{}", row("1", " 1")), &["line 2", "p0"]);
    data_err(&format!("{header}{}{}", row("1", "1"), row("2", "x")), &["line 3", "p0"]);
    data_err(&format!("{header}1,2,3\n"), &["line 2", "has 3 fields", "65"]);
    data_err(&format!("{header}{}", row("1", "nan")), &["line 2", "p0", "finite"]);
    let full = format!("{header}{}", row("3", "16"));
    data_err(&full[..full.len() - 1], &["line 2", "truncated"]);
    data_err(&full[..full.len() - 20], &["truncated"]);
    data_err(&header, &["no samples"]);
    data_err("", &["empty"]);
    data_err("lbl,a,b\n1,2,3\n", &["line 1", "header"]);
    data_err("label\n1\n", &["line 1", "header"]);
}

#[test]
fn reference_validation() {
    let path = models_dir().join("cnn_w4a4.ref.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let good: Value = serde_json::from_str(&text).unwrap();
    let dir = std::env::temp_dir().join(format!("bitmac-model-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let check = |v: &Value, needles: &[&str]| {
        let p = dir.join("x.ref.json");
        std::fs::write(&p, serde_json::to_string(v).unwrap()).unwrap();
        let err = Reference::load(&p).expect_err("reference should be rejected");
        let msg = err.to_string();
        assert_eq!(err.exit_code(), 2);
        assert!(!msg.contains('\n') && msg.contains("x.ref.json"), "{msg}");
        for n in needles {
            assert!(msg.contains(n), "error {msg:?} lacks {n:?}");
        }
    };
    let mut v = good.clone();
    let p0 = v["fake_quant"]["predictions"][0].as_u64().unwrap();
    v["fake_quant"]["predictions"][0] = json!((p0 + 1) % 10);
    check(&v, &["fake_quant.predictions[0]", "argmax"]);
    let mut v = good.clone();
    v["integer"]["accuracy"] = json!(0.5);
    check(&v, &["integer.accuracy"]);
    let mut v = good.clone();
    v["labels"][7] = json!(12);
    check(&v, &["labels"]);
    let mut v = good.clone();
    v["input_codes"].as_array_mut().unwrap().pop();
    check(&v, &["input_codes", "359", "360"]);
    let mut v = good.clone();
    v["fake_quant"]["logits"][0][0] = json!(0.1);
    check(&v, &["fake_quant.logits[0][0]", "float32"]);
    let mut v = good.clone();
    v["fake_quant"]["extra"] = json!(1);
    check(&v, &["fake_quant.extra", "unknown field"]);
    let p = dir.join("t.ref.json");
    std::fs::write(&p, &text[..text.len() / 2]).unwrap();
    let msg = Reference::load(&p).unwrap_err().to_string();
    assert!(msg.contains("truncated JSON"), "{msg}");
    // A stale reference: the model file's hash differs.
    // (Absolute model/data paths: joined to the reference's directory they stay as they are.)
    let mut v = good.clone();
    v["model_sha256"] = json!("00");
    v["model_file"] = json!(models_dir().join("cnn_w4a4.json").to_str().unwrap());
    v["data_file"] = json!(models_dir().join("data/digits_test.csv").to_str().unwrap());
    let p = dir.join("stale.ref.json");
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
    let r = Reference::load(&p).unwrap();
    let msg = r.verify_files().unwrap_err().to_string();
    assert!(msg.contains("model_sha256") && msg.contains("cnn_w4a4.json"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn embedded_defaults_match_the_files() {
    let model = bitmac::model::default_model().unwrap();
    let reference = bitmac::model::default_reference().unwrap();
    let data = bitmac::model::default_test_data().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert_eq!(model, Model::load(&root.join(bitmac::model::DEFAULT_MODEL_PATH)).unwrap());
    assert_eq!(data, Dataset::load(&root.join(bitmac::model::DEFAULT_DATA_PATH)).unwrap());
    reference.check_model(&model).unwrap();
    // Float logits are about integer logits * acc_scale (same sign of the winner).
    let last = model.layers().len() - 1;
    let s = model.acc_scale(last);
    for i in 0..reference.samples() {
        let p = reference.integer.predictions[i];
        let approx = reference.integer.logits[i][p] as f64 * s;
        let fq = reference.fake_quant.logits[i][p] as f64;
        assert!((approx - fq).abs() <= 1e-3 * (1.0 + fq.abs()), "sample {i}: {approx} vs {fq}");
    }
}

/// Unusual geometries against PyTorch (float64 conv2d/linear on integer
/// codes, exact): tests/data/model_conv_golden.json, generated by
/// tests/data/model_conv_golden.py.
#[test]
fn layer_geometries_match_pytorch_golden() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/model_conv_golden.json");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for case in cases {
        let model =
            Model::from_json_str(&case["model"].to_string(), "golden").unwrap_or_else(|e| panic!("{e}"));
        let layer = &model.layers()[0];
        let (m, k, n) = layer.gemm_dims();
        for (x, want) in case["inputs"].as_array().unwrap().iter().zip(case["acc"].as_array().unwrap()) {
            let input: Vec<i32> = serde_json::from_value(x.clone()).unwrap();
            let want: Vec<i64> = serde_json::from_value(want.clone()).unwrap();
            assert_eq!(layer_accumulators(layer, &input), want, "{}", model.name());
            assert_eq!(reference_forward(&model, &input).unwrap(), want, "{}", model.name());
            let a = layer.im2col(&input);
            let w = layer.weight().codes();
            let mut acc = vec![0i64; m * n];
            for o in 0..n {
                for p in 0..m {
                    acc[o * m + p] = layer.bias()[o] as i64
                        + (0..k).map(|j| a[p * k + j] as i64 * w[o * k + j] as i64).sum::<i64>();
                }
            }
            assert_eq!(acc, want, "{} (im2col)", model.name());
        }
    }
}

fn conv_model_json(
    (c, h, w, o): (usize, usize, usize, usize),
    (kh, kw, sh, sw, ph, pw): (usize, usize, usize, usize, usize, usize),
    codes: &[i64],
    bias: &[i64],
) -> Value {
    let oh = (h + 2 * ph).saturating_sub(kh) / sh + 1;
    let ow = (w + 2 * pw).saturating_sub(kw) / sw + 1;
    json!({
        "format": "bitmac-model/1", "name": "p",
        "input": {"shape": [c, h, w], "raw_min": 0, "raw_max": 255, "scale": 1.0},
        "layers": [{
            "name": "conv", "type": "conv2d", "input_shape": [c, h, w], "out_channels": o,
            "kernel": [kh, kw], "stride": [sh, sw], "padding": [ph, pw], "output_shape": [o, oh, ow],
            "input_quant": {"bits": 4, "signed": false, "step": 0.5},
            "weight": {"bits": 4, "signed": true, "step": 0.25, "shape": [o, c, kh, kw], "codes": codes},
            "bias": bias, "relu": false
        }]
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Random conv geometries: the loader accepts exactly those whose kernel
    /// fits the padded input, and the direct accumulators equal a
    /// scatter-order computation (every input pixel adds into the outputs it
    /// reaches) and the im2col lowering.
    #[test]
    fn conv_geometry_property(
        c in 1usize..4, h in 1usize..7, w in 1usize..7, o in 1usize..4,
        kh in 1usize..5, kw in 1usize..5, sh in 1usize..4, sw in 1usize..4, ph in 0usize..3, pw in 0usize..3,
        seed in 0u64..1000,
    ) {
        let n = o * c * kh * kw;
        let codes: Vec<i64> = (0..n).map(|i| ((i as u64 * 7919 + seed * 104729) % 16) as i64 - 8).collect();
        let bias: Vec<i64> = (0..o).map(|i| (i as i64 * 37 + seed as i64) % 201 - 100).collect();
        let v = conv_model_json((c, h, w, o), (kh, kw, sh, sw, ph, pw), &codes, &bias);
        let fits = h + 2 * ph >= kh && w + 2 * pw >= kw;
        let res = Model::from_json_str(&v.to_string(), "p.json");
        proptest::prop_assert_eq!(res.is_ok(), fits, "{:?}", res.as_ref().err().map(|e| e.to_string()));
        if let Ok(model) = res {
            let layer = &model.layers()[0];
            let input: Vec<i32> = (0..c * h * w).map(|i| ((i as u64 * 31 + seed) % 16) as i32).collect();
            let direct = layer_accumulators(layer, &input);
            let [_, oh, ow] = match layer { bitmac::model::Layer::Conv2d(cv) => cv.output_shape(), _ => unreachable!() };
            // Scatter order.
            let mut scat = vec![0i64; o * oh * ow];
            for oc in 0..o { for p in 0..oh * ow { scat[oc * oh * ow + p] = bias[oc]; } }
            for ic in 0..c { for iy in 0..h { for ix in 0..w {
                let a = input[(ic * h + iy) * w + ix] as i64;
                for oc in 0..o { for ky in 0..kh { for kx in 0..kw {
                    let (ty, tx) = (iy + ph, ix + pw);
                    if ty < ky || tx < kx { continue; }
                    let (ry, rx) = (ty - ky, tx - kx);
                    if ry % sh != 0 || rx % sw != 0 { continue; }
                    let (oy, ox) = (ry / sh, rx / sw);
                    if oy >= oh || ox >= ow { continue; }
                    scat[(oc * oh + oy) * ow + ox] += codes[((oc * c + ic) * kh + ky) * kw + kx] * a;
                }}}
            }}}
            proptest::prop_assert_eq!(&direct, &scat);
            let (m, k, nn) = layer.gemm_dims();
            let a = layer.im2col(&input);
            let wc = layer.weight().codes();
            for oc in 0..nn { for p in 0..m {
                let dot: i64 = (0..k).map(|j| a[p * k + j] as i64 * wc[oc * k + j] as i64).sum();
                proptest::prop_assert_eq!(dot + bias[oc], direct[oc * m + p]);
            }}
        }
    }

    /// Any weight code outside the 4-bit signed range is rejected, naming its index.
    #[test]
    fn out_of_range_code_is_named(idx in 0usize..72, bad in proptest::prop_oneof![-1000i64..-8, 8i64..1000]) {
        let codes: Vec<i64> = (0..72).map(|i| (i % 16) as i64 - 8).collect();
        let mut v = conv_model_json((2, 4, 4, 4), (3, 3, 1, 1, 1, 1), &codes, &[0, 0, 0, 0]);
        v["layers"][0]["weight"]["codes"][idx] = json!(bad);
        let msg = Model::from_json_str(&v.to_string(), "p.json").unwrap_err().to_string();
        let needle = format!("layer 0 (conv): weight.codes[{idx}]: {bad} is out of range");
        proptest::prop_assert!(msg.contains(&needle), "{}", msg);
    }
}

#[test]
fn quantizer_rounds_half_to_even_and_clamps() {
    use bitmac::model::Quant;
    let q = Quant::new(4, false, 0.5).unwrap();
    // v / 0.5 = 2.5 -> 2, 3.5 -> 4, 0.5 -> 0, 1.5 -> 2 (torch.round ties to even).
    assert_eq!([q.quantize(1.25), q.quantize(1.75), q.quantize(0.25), q.quantize(0.75)], [2, 4, 0, 2]);
    assert_eq!([q.quantize(-3.0), q.quantize(100.0), q.quantize(7.6)], [0, 15, 15]);
    let s = Quant::new(2, true, 1.0).unwrap();
    assert_eq!((s.min_code(), s.max_code()), (-2, 1));
    assert_eq!([s.quantize(-2.5), s.quantize(-1.5), s.quantize(0.5), s.quantize(9.0)], [-2, -2, 0, 1]);
    assert!(Quant::new(1, true, 1.0).is_err());
    assert!(Quant::new(4, true, f32::NAN).is_err());
    assert!(Quant::new(4, true, 0.0).is_err());
    // Raw input outside raw_min..=raw_max or of the wrong length is an input error.
    let (model, _, _) = load_all("cnn_w4a4");
    let err = model.input_codes(&[17f32; 64]).unwrap_err();
    assert!(err.to_string().contains("input[0]: 17 is out of range (allowed: 0..=16)"), "{err}");
    assert_eq!(model.input_codes(&[0f32; 63]).unwrap_err().exit_code(), 2);
}
