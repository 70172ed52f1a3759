#!/usr/bin/env python3
"""The one code of bn_concat.onnx where bitmac differs from ONNX Runtime (docs/onnx.md §8.1),
recomputed independently in numpy: the exact value of the BatchNorm-ed conv from the integer
accumulator (float64), ORT's float value, and the error bitmac's BatchNorm fold makes by
rounding the folded bias to the accumulator grid (docs/graph.md §8). Run from the repository
root: python3 tests/data/onnx/explain_bn_difference.py"""

import itertools
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
m = onnx.load(os.path.join(HERE, "bn_concat.onnx"))
m.graph.output.append(helper.make_tensor_value_info("ra", TensorProto.FLOAT, None))
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
x = np.load(os.path.join(HERE, "bn_concat.x.npy"))
ra = np.concatenate([sess.run(["ra"], {"x": x[i : i + 1]})[0] for i in range(len(x))])
I = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
s_in, s_out = float(I["xs"]), float(I["sa"])
xq = np.load(os.path.join(HERE, "bn_concat.0.npy")).astype(np.int64) - int(I["xz"])
w, b = I["wa"].astype(np.int64), I["ba"].astype(np.int64)
xp = np.pad(xq, ((0, 0), (0, 0), (1, 1), (1, 1)))
acc = np.zeros((len(x), 4, 6, 6), np.int64)
for ky, kx in itertools.product(range(3), range(3)):
    acc += np.einsum("nchw,oc->nohw", xp[:, :, ky : ky + 6, kx : kx + 6], w[:, :, ky, kx])
acc += b[None, :, None, None]
sw = I["was"].astype(np.float64)
real = acc * (np.float64(np.float32(s_in)) * sw)[None, :, None, None]
k = I["gamma"].astype(np.float64) / np.sqrt(I["var"].astype(np.float64) + 1e-3)
bn = (real - I["mean"][None, :, None, None]) * k[None, :, None, None] + I["beta"][None, :, None, None]
exact = np.maximum(bn, 0) / s_out
ref = np.load(os.path.join(HERE, "bn_concat.1.npy")).astype(np.int64)
print("codes of the exact value differing from ORT:", int((np.clip(np.rint(exact), 0, 255) != ref).sum()))
n, o, yy, xx = 1, 3, 0, 3
print(f"sample {n} channel {o} ({yy}, {xx}): exact {exact[n, o, yy, xx]:.6f}, ORT float {ra[n, o, yy, xx] / np.float32(s_out):.6f}, ORT code {ref[n, o, yy, xx]}")
swp = np.float32(sw[o] * abs(k[o]))
breal = float(b[o]) * float(np.float32(s_in)) * sw[o]
bp = np.float32((breal - float(I["mean"][o])) * k[o] + float(I["beta"][o]))
bacc = float(bp) / (s_in * float(swp))
err = (round(bacc) - bacc) * s_in * float(swp) / s_out
print(f"fold: k {k[o]:.5f}, s_w' {swp:.10f}, b' {bp:.7f}, b' in acc steps {bacc:.4f} -> {round(bacc)}, "
      f"error {err:.5f} output steps -> {exact[n, o, yy, xx] + err:.5f}")
