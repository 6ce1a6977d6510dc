"""The digits data set and its fixed split. DO NOT CHANGE: the split is part of the sealed evaluation.

scikit-learn ships the 1,797 8x8 handwritten digits as `sklearn/datasets/data/digits.csv.gz`; reading that
file directly costs 20 ms where importing sklearn.datasets costs over a second of every run's start-up.
The split (60% train, 20% validation, 20% test) depends only on `split_seed`; the test part is never
returned to a trainer: selection happens on validation only. `held_out_split` is for the champion's one held-out
evaluation per promotion (autopilot.train.contract.TestRun), which only the registry asks for.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np

VAL_FRACTION = 0.2
TEST_FRACTION = 0.2


@functools.cache
def _raw() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("sklearn")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    if path.exists():
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float32)
        return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # the file moved in some release: take the slow, public way

    digits = load_digits()
    return digits.data.astype(np.float32), digits.target.astype(np.int64)


def _parts(split_seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Images (N, 1, 8, 8) scaled to [0, 1], labels (N,), and the indices of each part."""
    x, y = _raw()
    order = np.random.default_rng(split_seed).permutation(len(y))
    n_test = int(round(TEST_FRACTION * len(y)))
    n_val = int(round(VAL_FRACTION * len(y)))
    parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    return (x / 16.0).reshape(-1, 1, 8, 8), y, parts


def split(split_seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train and validation arrays: images (N, 1, 8, 8) scaled to [0, 1], labels (N,)."""
    images, y, parts = _parts(split_seed)
    return {name: (images[parts[name]], y[parts[name]]) for name in ("train", "val")}


def held_out_split(split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The held-out test images and labels: for the champion's evaluation at promotion only, never a trainer's."""
    images, y, parts = _parts(split_seed)
    return images[parts["test"]], y[parts["test"]]
