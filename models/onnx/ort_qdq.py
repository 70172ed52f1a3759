#!/usr/bin/env python3
"""Train a small float CNN on the committed digits split, quantize it with ONNX Runtime's
`quantize_static` to a QDQ int8 model, and record ONNX Runtime's outputs as references.

    python3 models/onnx/ort_qdq.py         # ~1 minute on 2 cores; rewrites the files below

Writes (all in models/onnx/):
  qdq_cnn.onnx                 the QDQ model: int8 activations with zero points (asymmetric,
                               MinMax calibration on the first 256 training images), int8
                               symmetric per-output-channel weights, int32 biases
  qdq_cnn.ref.disable_all.npy  float32 [360,10]: ORT logits, graph optimizations disabled
                               (ORT_DISABLE_ALL: every QDQ pair runs as DequantizeLinear -> float
                               op -> QuantizeLinear, MLAS QuantizeLinear)
  qdq_cnn.ref.default.npy      float32 [360,10]: ORT logits at its default level (ORT_ENABLE_ALL:
                               the QDQ groups are fused into QLinearConv / QLinearAdd / ... integer
                               kernels)
  qdq_cnn.codes.disable_all/<i>_<tensor>.npy
                               int8 [360, ...]: every QuantizeLinear output (the integer codes of
                               every quantized activation) under ORT_DISABLE_ALL, in graph order
  qdq_cnn.ref.json             bitmac-onnx-ref/1 for ORT_DISABLE_ALL (logits + codes), with
                               provenance: versions, accuracies, SHA-256 of the files above
  qdq_cnn.ref-default.json     bitmac-onnx-ref/1 for the default level (logits only)
It reads models/onnx/digits_test_x.npy / digits_test_y.npy (written by brevitas_cnn.py from the
committed digits CSVs; regenerated here if missing).

Float network (NCHW, 1x8x8): conv1 3x3 1->16 pad 1 + ReLU (a); conv2 3x3 16->16 pad 1 + ReLU;
add a; ReLU; MaxPool 2x2; conv3 3x3 16->32 pad 1 + ReLU; GlobalAveragePool; Flatten; Gemm 32->10.
Reproducibility: torch.manual_seed(SEED), one thread, deterministic algorithms, CPU; ORT sessions
with one intra-op thread. Data: models/data/README.md (UCI digits, CC BY 4.0).
"""
import json
import os
import shutil
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn

warnings.filterwarnings("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402

SEED = 20261202
EPOCHS = 30
BATCH = 64
LR = 3e-3
CALIB = 256


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.c3 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        y = torch.relu(torch.relu(self.c2(a)) + a)
        y = nn.functional.max_pool2d(y, 2)
        y = torch.relu(self.c3(y))
        y = nn.functional.adaptive_avg_pool2d(y, 1).flatten(1)
        return self.fc(y)


def session(path, level):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def main():
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    xtr, ytr = common.load_split("train")
    xte, yte = common.load_split("test")
    net = Net()
    common.train(net, xtr, ytr, epochs=EPOCHS, batch=BATCH, lr=LR, seed=SEED)
    with torch.no_grad():
        float_logits = net(torch.from_numpy(xte)).numpy()

    tmp = os.path.join(HERE, "_tmp_qdq")
    os.makedirs(tmp, exist_ok=True)
    fp = os.path.join(tmp, "float.onnx")
    torch.onnx.export(net, torch.from_numpy(xte[:1]), fp, input_names=["x"],
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": xtr[i:i + 1]} for i in range(CALIB)])

        def get_next(self):
            return next(self.it, None)

    out = os.path.join(HERE, "qdq_cnn.onnx")
    quantize_static(fp, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)

    refs = {}
    for tag, level in [("disable_all", ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
                       ("default", ort.GraphOptimizationLevel.ORT_ENABLE_ALL)]:
        s = session(out, level)
        refs[tag] = np.concatenate([s.run(None, {"x": xte[i:i + 1]})[0]
                                    for i in range(len(xte))]).astype(np.float32)
        common.save_npy(os.path.join(HERE, f"qdq_cnn.ref.{tag}.npy"), refs[tag])

    # Every QuantizeLinear output as an extra graph output, run with optimizations disabled.
    m = onnx.load(out)
    qouts = [n.output[0] for n in m.graph.node if n.op_type == "QuantizeLinear"]
    known = {i.name for i in m.graph.initializer}
    qouts = [q for q in qouts if q not in known]
    for q in qouts:
        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(q))
    probe = os.path.join(tmp, "probe.onnx")
    onnx.save(m, probe)
    s = session(probe, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    names = [o.name for o in s.get_outputs()]
    runs = [s.run(None, {"x": xte[i:i + 1]}) for i in range(len(xte))]
    cdir = os.path.join(HERE, "qdq_cnn.codes.disable_all")
    shutil.rmtree(cdir, ignore_errors=True)
    os.makedirs(cdir)
    code_files = []
    for k, q in enumerate(qouts):
        j = names.index(q)
        arr = np.concatenate([r[j] for r in runs])
        safe = "".join(c if c.isalnum() or c in "_.-" else "_" for c in q)
        fname = f"{k:02d}_{safe}.npy"
        common.save_npy(os.path.join(cdir, fname), arr)
        code_files.append({"tensor": q, "file": fname, "dtype": str(arr.dtype),
                           "shape": list(arr.shape)})
    shutil.rmtree(tmp)

    acc = {t: float((np.argmax(r, 1) == yte).mean()) for t, r in refs.items()}
    provenance = {
        "script": "models/onnx/ort_qdq.py",
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": ort.__version__, "numpy": np.__version__},
        "seed": SEED, "epochs": EPOCHS, "calibration_images": CALIB,
        "accuracy_float_torch": float((np.argmax(float_logits, 1) == yte).mean()),
        "logits_equal_disable_all_vs_default": bool(np.array_equal(refs["disable_all"],
                                                                   refs["default"])),
        "prediction_agreement_disable_all_vs_default": float(
            (np.argmax(refs["disable_all"], 1) == np.argmax(refs["default"], 1)).mean()),
        "sha256": {n: common.sha256_file(os.path.join(HERE, n))
                   for n in ["qdq_cnn.onnx", "qdq_cnn.ref.disable_all.npy",
                             "qdq_cnn.ref.default.npy"]},
    }
    # bitmac-onnx-ref/1 (read by bitmac::import::reference; docs/onnx.md §6): one file per
    # ORT optimization level.
    for tag, fname, level in [("disable_all", "qdq_cnn.ref.json", "ORT_DISABLE_ALL"),
                              ("default", "qdq_cnn.ref-default.json", "ORT_ENABLE_ALL (default)")]:
        meta = {
            "format": "bitmac-onnx-ref/1",
            "model": "qdq_cnn.onnx",
            "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider, {level}, one sample"
                       " at a time, one thread",
            "input": "digits_test_x.npy",
            "labels": "digits_test_y.npy",
            "logits": f"qdq_cnn.ref.{tag}.npy",
            "accuracy": acc[tag],
            "codes_dir": "qdq_cnn.codes.disable_all" if tag == "disable_all" else None,
            "codes": code_files if tag == "disable_all" else [],
            "provenance": provenance,
        }
        with open(os.path.join(HERE, fname), "w") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.write("\n")
    print(json.dumps({"accuracy": acc, **provenance}, indent=2, sort_keys=True))

if __name__ == "__main__":
    main()
