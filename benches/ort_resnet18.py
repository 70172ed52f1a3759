#!/usr/bin/env python3
"""`bitmac run` images/s on the ResNet-18-shaped QDQ int8 model beside ONNX Runtime's own int8
inference of the same model, in the same run, at 1 and 2 threads (docs/performance.md).

    python3 benches/ort_resnet18.py [--bin target/release/bitmac] [--images N] [--reps R]
                                    [--dir target/onnx] [--batch B] [--before OTHER_BITMAC]

The model comes from models/onnx/resnet18_qdq.py (generated into DIR if missing; not timed).
Inputs: N seeded float32 images [3, 224, 224] in [0, 1) (numpy default_rng(20261204)), the same
array for both. ONNX Runtime: an InferenceSession at its default optimization level
(ORT_ENABLE_ALL: the QDQ groups run as fused integer kernels, QLinearConv etc.),
intra_op_num_threads = T, inter_op 1, one image per run() call (the model's batch is 1), after
one warm-up image; best of R passes over the N images. bitmac: `bitmac run --model M --data
IMAGES.npy --labels LABELS.npy --reference none --json` as a whole process (model load,
import, every layer on the datapath with every adder tracked, the report), RAYON_NUM_THREADS=T,
best of R runs (`--batch B`: `bitmac run --batch B`; `--before BIN`: a second bitmac binary run
the same way, interleaved, for before/after figures; the two must print the same predictions).
Prints wall and CPU seconds, images/s, the load average and the ratio bitmac / ORT per thread
count. Needs numpy, onnxruntime (and torch + onnx to generate the model).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/bitmac"))
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--dir", default=os.path.join(ROOT, "target/onnx"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--before", default=None)
    args = ap.parse_args()
    model = os.path.join(args.dir, "resnet18_qdq.onnx")
    if not os.path.exists(model):
        subprocess.run([sys.executable, os.path.join(ROOT, "models/onnx/resnet18_qdq.py"), args.dir],
                       check=True)
    rng = np.random.default_rng(20261204)
    x = rng.random((args.images, 3, 224, 224), dtype=np.float32)
    xs = os.path.join(args.dir, "bench_images.npy")
    ys = os.path.join(args.dir, "bench_labels.npy")
    np.save(xs, x)
    np.save(ys, np.zeros(args.images, dtype=np.int64))
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}; "
          f"onnxruntime {ort.__version__}; {args.images} images, best of {args.reps}")
    print("| threads | process | wall (s) | CPU (s) | images/s (wall) | images/s per CPU-s |")
    print("|---|---|---|---|---|---|")
    rows = []
    for threads in (1, 2):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        sess.run(None, {name: x[:1]})
        best = None
        for _ in range(args.reps):
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(args.images):
                sess.run(None, {name: x[i:i + 1]})
            t = (time.perf_counter() - t0, time.process_time() - c0)
            best = t if best is None or t[0] < best[0] else best
        ort_wall, ort_cpu = best
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        bins = [("bitmac run --engine fast (whole process)", args.bin)]
        if args.before:
            bins.append(("bitmac run, before (whole process)", args.before))
        best = {b: None for _, b in bins}
        preds = {}
        for _ in range(args.reps):
            for _, b in bins:
                t0, c0 = time.perf_counter(), child_cpu()
                out = subprocess.run([b, "run", "--model", model, "--data", xs, "--labels", ys,
                                      "--reference", "none", "--json", "--batch", str(args.batch)],
                                     env=env, capture_output=True)
                t = (time.perf_counter() - t0, child_cpu() - c0)
                if out.returncode != 0:
                    sys.exit(f"bitmac run failed: {out.stderr.decode()}")
                preds[b] = json.loads(out.stdout)["predictions"]
                assert len(preds[b]) == args.images, preds[b]
                best[b] = t if best[b] is None or t[0] < best[b][0] else best[b]
        if len(set(map(tuple, preds.values()))) != 1:
            sys.exit(f"the binaries' predictions differ: {preds}")
        n = args.images
        print(f"| {threads} | ONNX Runtime (int8 QDQ, ORT_ENABLE_ALL) | {ort_wall:.2f} | {ort_cpu:.2f} "
              f"| {n / ort_wall:.2f} | {n / max(ort_cpu, 1e-9):.2f} |")
        for label, b in bins:
            b_wall, b_cpu = best[b]
            print(f"| {threads} | {label} | {b_wall:.2f} | {b_cpu:.2f} "
                  f"| {n / b_wall:.3f} | {n / max(b_cpu, 1e-9):.3f} |")
        b_wall, b_cpu = best[args.bin]
        rows.append((threads, ort_wall / b_wall, ort_cpu / max(b_cpu, 1e-9)))
    for threads, rw, rc in rows:
        print(f"ratio bitmac / ONNX Runtime images/s, {threads} thread(s): {rw:.3f}x (wall), "
              f"{rc:.3f}x (per CPU-second); target >= 0.25")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
