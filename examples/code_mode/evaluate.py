"""The sealed evaluator of the code-mode example. DO NOT CHANGE: this is the fixed metric, and no patch may touch it.

    python examples/code_mode/evaluate.py RUN_DIR OUTPUT_JSON

autopilot runs it in a fresh process from the pristine tree (the run's base commit, exported anew) after the
trainer has ended. It reads the weights the trainer saved, RUN_DIR/weights.npz, as plain arrays (no pickle: the file
came from patched code), and scores them on the validation split that only it can read. The model they describe is
an MLP: inputs standardized by `mean` and `std`, then layers W0, b0, W1, b1, ... with ReLU between them, softmax
last. Any depth and width a trainer chooses; nothing else.

OUTPUT_JSON: {"metric": accuracy, "per_example": [1.0 or 0.0 per validation example], "metrics": {...}}
"""

import json
import sys
from pathlib import Path

import numpy as np

VAL = Path("data/code_digits/holdout/val.npz")
MAX_LAYERS = 8
MAX_PARAMS = 5_000_000


def load_model(path: Path) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k].astype(np.float64) for k in f.files}
    layers = []
    while f"W{len(layers)}" in arrays:
        k = len(layers)
        layers.append((arrays[f"W{k}"], arrays[f"b{k}"]))
    if not layers or len(layers) > MAX_LAYERS or sum(w.size + b.size for w, b in layers) > MAX_PARAMS:
        raise SystemExit(f"{path}: expected 1 to {MAX_LAYERS} layers W0, b0, ... within {MAX_PARAMS} parameters")
    if not all(np.isfinite(a).all() for a in arrays.values()):
        raise SystemExit(f"{path}: the weights hold NaN or infinity")
    return arrays["mean"], arrays["std"], layers


def predict(x: np.ndarray, mean, std, layers) -> np.ndarray:
    h = (x - mean) / std
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    return h.argmax(axis=1)


def main(run_dir: str, output: str) -> None:
    mean, std, layers = load_model(Path(run_dir) / "weights.npz")
    with np.load(VAL, allow_pickle=False) as f:
        x, y = f["x"], f["y"]
    correct = (predict(x, mean, std, layers) == y).astype(float)
    result = {"metric": float(correct.mean()), "per_example": correct.tolist(),
              "metrics": {"val_examples": float(len(y)), "layers": float(len(layers))}}
    Path(output).write_text(json.dumps(result))
    print(f"val_accuracy {result['metric']:.4f} over {len(y)} examples")


if __name__ == "__main__":
    main(*sys.argv[1:])
