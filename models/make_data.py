#!/usr/bin/env python3
"""Write the fixed train/test split of the 8x8 digits to models/data/.

Provenance: sklearn.datasets.load_digits() (a copy of the UCI "Optical
Recognition of Handwritten Digits" test set, optdigits.tes, 1797 images,
pixels are integers 0..16). Licence: CC BY 4.0 (UCI Machine Learning
Repository). See models/data/README.md.

Split: sklearn.model_selection.train_test_split(test_size=360,
stratify=labels, random_state=20190525, shuffle=True) on the sample indices
0..1796 -> 1437 train / 360 test. The committed CSVs are the source of truth;
this script only documents (and can regenerate) them. A different sklearn
version could in principle shuffle differently: the script prints SHA-256s to
compare against the README.

Format (both files): a header line `label,p0,...,p63`, then one line per
image: the label 0..9 then the 64 pixels 0..16 in row-major order (p0 is the
top-left pixel, p8 the first pixel of the second row), decimal integers,
comma separated, `\n` line ends, no spaces. The original load_digits index
of every row is kept in `split_indices.txt` (`train:` / `test:` lines, in
file order) for provenance.
"""
import hashlib
import os
import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 20190525  # the seed's weekly-report date


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "data")
    d = load_digits()
    X = d.data.astype(np.int64)
    y = d.target.astype(np.int64)
    assert X.shape == (1797, 64) and X.min() == 0 and X.max() == 16
    assert np.array_equal(X, d.data)  # pixels really are integers
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=360, stratify=y, random_state=SEED, shuffle=True)
    os.makedirs(out, exist_ok=True)
    header = "label," + ",".join(f"p{i}" for i in range(64)) + "\n"
    for name, ii in (("digits_train.csv", tr), ("digits_test.csv", te)):
        lines = [header] + [f"{y[i]}," + ",".join(str(v) for v in X[i]) + "\n" for i in ii]
        data = "".join(lines).encode()
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(ii)} rows sha256 {hashlib.sha256(data).hexdigest()}")
    with open(os.path.join(out, "split_indices.txt"), "w") as f:
        f.write("train: " + " ".join(str(i) for i in tr) + "\n")
        f.write("test: " + " ".join(str(i) for i in te) + "\n")
    print("test class counts:", np.bincount(y[te]).tolist())


if __name__ == "__main__":
    main()
