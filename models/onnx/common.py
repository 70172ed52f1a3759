"""Shared helpers for the ONNX model scripts in models/onnx/ (data loading, .npy writing).

The data are the committed 8x8 digits split (models/data/README.md: UCI "Optical Recognition of
Handwritten Digits", CC BY 4.0, redistributed by scikit-learn). A model input is the raw pixel
(0..16) divided by 16 in float32 (exact: a power of two), NCHW [N, 1, 8, 8].
"""
import hashlib
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")


def load_split(name: str):
    """(x float32 [N,1,8,8] = pixel/16, labels int64 [N]) of models/data/digits_<name>.csv."""
    path = os.path.join(DATA, f"digits_{name}.csv")
    with open(path) as f:
        header = f.readline().strip()
        assert header == "label," + ",".join(f"p{i}" for i in range(64)), header
        rows = [list(map(int, line.split(","))) for line in f if line.strip()]
    arr = np.array(rows, dtype=np.int64)
    x = (arr[:, 1:].astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    return x, arr[:, 0]


def save_npy(path: str, arr: np.ndarray):
    """np.save with a C-order little-endian array (what bitmac's .npy reader expects)."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    np.save(path, arr, allow_pickle=False)


def sha256_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def train(net, xtr: np.ndarray, ytr: np.ndarray, *, epochs: int, batch: int, lr: float,
          seed: int, log_every: int = 0):
    """Trains `net` in place: Adam at `lr`, cosine annealing over `epochs`, cross-entropy,
    minibatches of `batch` in a fresh permutation per epoch drawn from a generator seeded with
    `seed` (the caller seeds torch itself before building `net`). Prints the last loss every
    `log_every` epochs when it is > 0. The one training loop of the example models: their
    committed ONNX bytes depend on it draw for draw."""
    import torch
    from torch import nn
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if log_every and epoch % log_every == log_every - 1:
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}", flush=True)
    net.eval()
