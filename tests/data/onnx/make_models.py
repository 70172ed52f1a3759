#!/usr/bin/env python3
"""Small ONNX models for tests/onnx_import.rs, built with onnx.helper, with ONNX Runtime's
outputs committed as their references. Run from the repository root:

    python3 tests/data/onnx/make_models.py

Writes, next to this script:
  qlinear.onnx      QuantizeLinear (uint8, zero point 117) -> QLinearConv (int8 per-channel
                    weights, int32 bias, pads 1, stride 1) -> DequantizeLinear -> Flatten ->
                    QuantizeLinear (the same quantization) -> QLinearMatMul (int8 per-tensor
                    weights) -> DequantizeLinear
  bn_concat.onnx    QDQ: QuantizeLinear -> DequantizeLinear -> {Conv 3x3 (int8 per-channel,
                    int32 bias) -> BatchNormalization -> Relu -> Q/DQ,  Conv 1x1 (int8 per
                    tensor) -> Q/DQ} -> Concat(axis 1) -> Q (another scale) / DQ
  <model>.x.npy     float32 inputs [16, C, H, W] (seeded)
  <model>.ref.json  bitmac-onnx-ref/1 (src/import/reference.rs): ONNX Runtime's float32 outputs
                    (<model>.logits.npy, [16, output elements]; ORT_DISABLE_ALL, one sample at
                    a time, one thread), "labels" = ORT's own argmax (<model>.labels.npy; there
                    is no task), and for every listed quantized tensor its ONNX name and ORT's
                    uint8 codes [16, ...] (<model>.<i>.npy); versions and the seed

The Rust tests import each model, run the inputs through bitmac's graph runner (float32
requant mode) and compare every listed tensor's codes with ORT's, bit for bit. No Python at
test time. Seed 20261201.
"""

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20261201
N = 16


def const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def f32(x):
    return np.asarray(x, dtype=np.float32)


def qlinear_model(rng):
    c_in, c_out, hw = 2, 4, 5
    xs, xz = f32(0.05), np.uint8(117)
    ws = f32(rng.uniform(0.004, 0.02, size=c_out))
    wz = np.zeros(c_out, np.int8)
    w = rng.integers(-127, 128, size=(c_out, c_in, 3, 3)).astype(np.int8)
    b = rng.integers(-3000, 3000, size=c_out).astype(np.int32)
    ys, yz = f32(0.1), np.uint8(100)
    k, n_out = c_out * hw * hw, 10
    m = rng.integers(-127, 128, size=(k, n_out)).astype(np.int8)
    ms, mz = f32(0.003), np.int8(0)
    zs, zz = f32(0.25), np.uint8(128)
    inits = [
        const("xs", xs), const("xz", xz), const("w", w), const("ws", ws), const("wz", wz), const("b", b),
        const("ys", ys), const("yz", yz), const("m", m), const("ms", ms), const("mz", mz),
        const("zs", zs), const("zz", zz),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="qx"),
        helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["yq"],
                         name="qconv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"], name="dqy"),
        helper.make_node("Flatten", ["y"], ["yf"], name="flat", axis=1),
        helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["yfq"], name="qyf"),
        helper.make_node("QLinearMatMul", ["yfq", "ys", "yz", "m", "ms", "mz", "zs", "zz"], ["zq"], name="qmm"),
        helper.make_node("DequantizeLinear", ["zq", "zs", "zz"], ["out"], name="dqz"),
    ]
    x = f32(rng.uniform(-6.0, 6.5, size=(N, c_in, hw, hw)))
    return nodes, inits, ("x", [c_in, hw, hw]), ("out", [n_out]), ["xq", "yq", "zq"], x


def bn_concat_model(rng):
    c_in, hw, ca, cb = 3, 6, 4, 2
    xs, xz = f32(0.04), np.uint8(128)
    wa = rng.integers(-127, 128, size=(ca, c_in, 3, 3)).astype(np.int8)
    was = f32(rng.uniform(0.002, 0.01, size=ca))
    ba = rng.integers(-20000, 20000, size=ca).astype(np.int32)
    bas = f32(xs * was)  # the grid quantize_static uses: s_in * s_w in float32
    gamma = f32(rng.uniform(0.5, 1.5, size=ca) * np.where(np.arange(ca) == 2, -1, 1))
    beta = f32(rng.uniform(-0.3, 0.3, size=ca))
    mean = f32(rng.uniform(-0.2, 0.2, size=ca))
    var = f32(rng.uniform(0.5, 2.0, size=ca))
    sa, za = f32(0.03), np.uint8(0)
    wb = rng.integers(-127, 128, size=(cb, c_in, 1, 1)).astype(np.int8)
    wbs = f32(0.008)
    sb, zb = f32(0.05), np.uint8(120)
    so, zo = f32(0.045), np.uint8(90)
    inits = [
        const("xs", xs), const("xz", xz),
        const("wa", wa), const("was", was), const("waz", np.zeros(ca, np.int8)),
        const("ba", ba), const("bas", bas), const("baz", np.zeros(ca, np.int32)),
        const("gamma", gamma), const("beta", beta), const("mean", mean), const("var", var),
        const("sa", sa), const("za", za),
        const("wb", wb), const("wbs", wbs), const("wbz", np.int8(0)),
        const("sb", sb), const("zb", zb), const("so", so), const("zo", zo),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="qx"),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dqx"),
        helper.make_node("DequantizeLinear", ["wa", "was", "waz"], ["wad"], name="dqwa", axis=0),
        helper.make_node("DequantizeLinear", ["ba", "bas", "baz"], ["bad"], name="dqba", axis=0),
        helper.make_node("Conv", ["xd", "wad", "bad"], ["ca"], name="conva", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["ca", "gamma", "beta", "mean", "var"], ["bn"], name="bn",
                         epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["ra"], name="relua"),
        helper.make_node("QuantizeLinear", ["ra", "sa", "za"], ["aq"], name="qa"),
        helper.make_node("DequantizeLinear", ["aq", "sa", "za"], ["ad"], name="dqa"),
        helper.make_node("DequantizeLinear", ["wb", "wbs", "wbz"], ["wbd"], name="dqwb"),
        helper.make_node("Conv", ["xd", "wbd"], ["cbo"], name="convb", kernel_shape=[1, 1]),
        helper.make_node("QuantizeLinear", ["cbo", "sb", "zb"], ["bq"], name="qb"),
        helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["bd"], name="dqb"),
        helper.make_node("Concat", ["ad", "bd"], ["cat"], name="cat", axis=1),
        helper.make_node("QuantizeLinear", ["cat", "so", "zo"], ["oq"], name="qo"),
        helper.make_node("DequantizeLinear", ["oq", "so", "zo"], ["out"], name="dqo"),
    ]
    x = f32(rng.uniform(-5.0, 5.0, size=(N, c_in, hw, hw)))
    return nodes, inits, ("x", [c_in, hw, hw]), ("out", [ca + cb, hw, hw]), ["xq", "aq", "bq", "oq"], x


def build(name, nodes, inits, inp, out, listed, x):
    def vi(n, shape, t=TensorProto.FLOAT):
        return helper.make_tensor_value_info(n, t, ["N", *shape])

    graph = helper.make_graph(nodes, name, [vi(*inp)], [vi(*out)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="make_models.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = os.path.join(HERE, f"{name}.onnx")
    onnx.save(model, path)
    # A copy whose extra outputs are the listed quantized tensors, for ORT to return their codes.
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for t in listed:
        probe.graph.output.append(helper.make_tensor_value_info(t, TensorProto.UINT8, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    codes = {t: [] for t in listed}
    logits = []
    for s in range(x.shape[0]):
        res = sess.run([out[0], *listed], {inp[0]: x[s : s + 1]})
        logits.append(res[0].reshape(-1))
        for t, r in zip(listed, res[1:]):
            codes[t].append(r[0])
    logits = np.stack(logits).astype(np.float32)
    np.save(os.path.join(HERE, f"{name}.x.npy"), x)
    np.save(os.path.join(HERE, f"{name}.logits.npy"), logits)
    # No task here: the "labels" are ORT's own predictions (argmax, lowest index on ties).
    np.save(os.path.join(HERE, f"{name}.labels.npy"), np.argmax(logits, axis=1).astype(np.int64))
    files = []
    for i, t in enumerate(listed):
        arr = np.stack(codes[t]).astype(np.uint8)
        f = f"{name}.{i}.npy"
        np.save(os.path.join(HERE, f), arr)
        files.append({"tensor": t, "file": f, "dtype": "uint8", "shape": list(arr.shape)})
    meta = {
        "format": "bitmac-onnx-ref/1",
        "model": f"{name}.onnx",
        "input": f"{name}.x.npy",
        "labels": f"{name}.labels.npy",
        "logits": f"{name}.logits.npy",
        "accuracy": 1.0,
        "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider, ORT_DISABLE_ALL, one sample at a time, one thread",
        "codes_dir": None,
        "codes": files,
        "provenance": {
            "script": "tests/data/onnx/make_models.py",
            "seed": SEED,
            "labels": "ORT's own predictions (there is no task)",
            "versions": {"onnx": onnx.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__},
        },
    }
    with open(os.path.join(HERE, f"{name}.ref.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")


def main():
    rng = np.random.default_rng(SEED)
    build("qlinear", *qlinear_model(rng))
    build("bn_concat", *bn_concat_model(rng))


if __name__ == "__main__":
    main()
