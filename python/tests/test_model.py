"""bitmac.Model against the CLI: `bitmac run --json` (predictions, total statistics, per-node
post-processing counts) and `bitmac run --dump` (every node's inputs, accumulators and outputs),
on the shipped models of all three formats. The binary is $BITMAC_BIN (see test_bitmac.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

import bitmac
from test_bitmac import ROOT, cli

CSV = ROOT / "models" / "data" / "digits_test.csv"
ONNX_X = ROOT / "models" / "onnx" / "digits_test_x.npy"


def digits(n=None):
    rows = np.loadtxt(CSV, delimiter=",", skiprows=1, dtype=np.float32)
    if n is not None:
        rows = rows[:n]
    return rows[:, 1:], rows[:, 0].astype(np.int64)


def write_csv(path, x, y):
    header = "label," + ",".join(f"p{i}" for i in range(x.shape[1]))
    lines = [header] + [",".join([str(int(l))] + [str(int(v)) for v in r]) for r, l in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")


def run_json(*args):
    return json.loads(cli("run", "--json", *args).stdout)


@pytest.mark.parametrize("model,hw", [("cnn_w4a4.json", None), ("digits_resdw.graph.json", None),
                                      ("digits_resdw.graph.json", "psum-round-offset")])
def test_json_models_run_like_the_cli(model, hw):
    path = ROOT / "models" / model
    args = ["--model", path] + ([] if hw is None else ["--hw", ROOT / "models" / "hw" / f"{hw}.json"])
    ref = run_json(*args)
    m = bitmac.Model.load(path)
    assert m.format == ("bitmac-graph/1" if model.endswith(".graph.json") else "bitmac-model/1")
    x, y = digits()
    r = m.run(x, hw=hw)
    assert r["logits"].shape == (360, 10) and r["logits"].dtype == np.int64
    assert r["stats"] == ref["total"]
    assert int((r["predictions"] == y).sum()) == ref["correct"]
    if "predictions" in ref:
        assert r["predictions"].tolist() == ref["predictions"]
    if "nodes" in ref:
        assert [n["ppu"] for n in r["nodes"]] == [n["ppu"] for n in ref["nodes"]]
        assert [n["name"] for n in r["nodes"]] == [n["name"] for n in ref["nodes"]]
    # Codes do not depend on the batch size (cycle counts do: --batch 7 is the CLI's too).
    r7 = m.run(x, hw=hw, batch=7)
    assert np.array_equal(r7["logits"], r["logits"])
    assert r7["stats"] == run_json(*args, "--batch", 7)["total"]


def test_cycle_engine_equals_the_cli(tmp_path):
    x, y = digits(6)
    write_csv(tmp_path / "d.csv", x, y)
    path = ROOT / "models" / "digits_resdw.graph.json"
    ref = run_json("--model", path, "--data", tmp_path / "d.csv", "--engine", "cycle", "--reference", "none")
    r = bitmac.Model.load(path).run(x, engine="cycle")
    assert r["predictions"].tolist() == ref["predictions"]
    assert r["stats"] == ref["total"]


@pytest.mark.parametrize("name", ["qdq_cnn", "brevitas_cnn"])
def test_onnx_models_predict_like_the_cli(name):
    path = ROOT / "models" / "onnx" / f"{name}.onnx"
    ref = run_json("--model", path, "--data", ONNX_X)
    m = bitmac.Model.load(path)
    assert m.format == "onnx"
    x = np.load(ONNX_X)
    assert m.input_shape == x.shape[1:]
    r = m.run(x)
    assert r["predictions"].tolist() == ref["predictions"]
    # The reference runtime's predictions, committed with the model, agree as the CLI reports.
    assert ref["reference"]["predictions_equal"] == 360


def test_onnx_requant_modes():
    path = ROOT / "models" / "onnx" / "qdq_cnn.onnx"
    x = np.load(ONNX_X)[:20]
    for mode in ["hardware", "double", "single"]:
        ref = run_json("--model", path, "--data", ONNX_X, "--requant", mode)
        r = bitmac.Model.load(path, requant=mode).run(x)
        assert r["predictions"].tolist() == ref["predictions"][:20], mode


@pytest.mark.parametrize("model", ["cnn_w4a4.json", "digits_resdw.graph.json"])
def test_dump_equals_the_cli_dump(tmp_path, model):
    path = ROOT / "models" / model
    cli("run", "--model", path, "--dump", tmp_path, "--sample", 3)
    man = json.loads((tmp_path / "manifest.json").read_text())
    x, _ = digits()
    d = bitmac.Model.load(path).dump(x[3])
    assert [n["name"] for n in d] == [e["name"] for e in man["nodes"]]
    for n, e in zip(d, man["nodes"]):
        assert n["kind"] == e["kind"]
        assert len(n["inputs"]) == len(e["inputs"])
        for a, f in zip(n["inputs"], e["inputs"]):
            assert np.array_equal(a, np.load(tmp_path / f["npy"])), (n["name"], f["npy"])
        assert np.array_equal(n["output"], np.load(tmp_path / e["output"]["npy"])), n["name"]
        if e["acc"] is None:
            assert n["acc"] is None
        else:
            assert np.array_equal(n["acc"], np.load(tmp_path / e["acc"]["npy"])), n["name"]


def test_onnx_dump_chains_and_matches_run():
    m = bitmac.Model.load(ROOT / "models" / "onnx" / "qdq_cnn.onnx")
    x = np.load(ONNX_X)[:4]
    r = m.run(x)
    d = m.dump(x[2])
    # Each node's first input is some earlier node's output or the quantized graph input.
    outs = [n["output"] for n in d]
    for i, n in enumerate(d[1:], 1):
        assert any(np.array_equal(n["inputs"][0], o) for o in outs[:i]) or i == 0
    assert np.array_equal(d[-1]["output"].reshape(-1), r["logits"][2])
    assert any(n["acc"] is not None for n in d)


def test_model_errors_are_one_line_value_errors(tmp_path):
    with pytest.raises(ValueError) as e:
        bitmac.Model.load(tmp_path / "missing.onnx")
    assert "missing.onnx" in str(e.value) and "\n" not in str(e.value)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x0a\xff\xff")
    with pytest.raises(ValueError):
        bitmac.Model.load(bad)
    m = bitmac.Model.load(ROOT / "models" / "cnn_w4a4.json")
    with pytest.raises(ValueError, match="expected"):
        m.run(np.zeros((2, 63), np.float32))
    with pytest.raises(ValueError, match="input\\[0\\]"):
        m.run(np.full((1, 64), 99.0, np.float32))
    with pytest.raises(ValueError, match="engine"):
        m.run(np.zeros((1, 64), np.float32), engine="slow")
    with pytest.raises(ValueError, match="requant"):
        bitmac.Model.load(ROOT / "models" / "cnn_w4a4.json", requant="double")
