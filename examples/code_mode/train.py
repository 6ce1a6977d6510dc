"""The trainer of the code-mode example: softmax regression on the digits in NumPy. A patch may change this file.

    python examples/code_mode/train.py CONFIG_JSON RUN_DIR

It trains on data/code_digits/train.npz (python examples/code_mode/prepare_data.py writes it) and saves the model
as plain arrays in RUN_DIR/weights.npz, in the form the sealed evaluator reads (examples/code_mode/evaluate.py: input
`mean` and `std`, then layers W0, b0, W1, b1, ... with ReLU between). It never sees the validation labels: the
evaluator scores the saved weights in a process of its own. Room to improve it by code: standardize the inputs, add
a hidden layer, augment the images, schedule the learning rate.
"""

from pathlib import Path

import numpy as np

from autopilot.train.contract import TrainerRun

DATA = Path("data/code_digits/train.npz")

with TrainerRun.from_argv() as run:
    hp, rng = run.hparams, np.random.default_rng(run.seed)
    if not DATA.exists():
        raise SystemExit(f"{DATA} is missing: run `python examples/code_mode/prepare_data.py` first")
    with np.load(DATA, allow_pickle=False) as f:
        x, y = f["x"], f["y"]
    mean, std = np.zeros(x.shape[1]), np.ones(x.shape[1])
    w = rng.normal(0, 0.01, (x.shape[1], 10))
    b = np.zeros(10)
    run.begin_training(total_steps=hp["epochs"])
    for epoch in range(1, hp["epochs"] + 1):
        logits = x @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = -np.log(p[np.arange(len(y)), y] + 1e-12).mean() + hp["l2"] * (w**2).sum()
        p[np.arange(len(y)), y] -= 1
        w -= hp["lr"] * (x.T @ p / len(y) + 2 * hp["l2"] * w)
        b -= hp["lr"] * p.mean(0)
        run.step(epoch, loss=float(loss))
        if run.should_end:
            break
    run.end_training()
    np.savez(run.run_dir / "weights.npz", mean=mean, std=std, W0=w, b0=b)
    run.finish(metric_value=None)  # the sealed evaluator measures it
