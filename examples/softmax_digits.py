"""A user's own trainer: softmax regression on the digits in plain NumPy, following the trainer contract.

Run by a study with
    task: command
    trainer: {command: ["python", "examples/softmax_digits.py", "{config}", "{run_dir}"],
              test_command: ["python", "examples/softmax_digits.py", "--test", "{config}", "{run_dir}"]}
    baseline: {lr: 0.5, epochs: 30, l2: 0.0001}
The contract helper reads config.json, checks each loss (NaN stops the run as `failed`), appends
metrics.jsonl, keeps status.json fresh, honours control files and the time budget, and writes
trainer_summary.json with the per-example scores the judge pairs. The weights go to checkpoint/; with --test
the registry asks once for a champion's score on the held-out test split.
"""

import sys

import numpy as np

from autopilot.train.contract import TestRun, TrainerRun
from autopilot.train.tasks.digits_data import held_out_split, split

if sys.argv[1] == "--test":  # the champion's held-out score: its weights, the digits no run ever saw
    with TestRun.from_argv() as test:
        x, y = held_out_split(test.data.get("split_seed", 0))
        correct = ((x.reshape(len(x), -1) @ np.load(test.weights / "w.npy")).argmax(1) == y).astype(float)
        test.report(metric_value=correct.mean(), per_example=correct)
    sys.exit()

with TrainerRun.from_argv() as run:
    hp, rng = run.hparams, np.random.default_rng(run.seed)
    data = split(run.config["data"].get("split_seed", 0))
    (x, y), (xv, yv) = [(d[0].reshape(len(d[0]), -1), d[1]) for d in (data["train"], data["val"])]
    w = rng.normal(0, 0.01, (x.shape[1], 10))
    run.begin_training(total_steps=hp["epochs"])
    for epoch in range(1, hp["epochs"] + 1):
        logits = x @ w
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = -np.log(p[np.arange(len(y)), y] + 1e-12).mean() + hp["l2"] * (w**2).sum()
        p[np.arange(len(y)), y] -= 1
        w -= hp["lr"] * (x.T @ p / len(y) + 2 * hp["l2"] * w)
        run.step(epoch, loss=float(loss))
        if run.should_end:
            break
    run.end_training()
    (run.run_dir / "checkpoint").mkdir(exist_ok=True)
    np.save(run.run_dir / "checkpoint" / "w.npy", w)
    correct = ((xv @ w).argmax(1) == yv).astype(float)
    run.finish(metric_value=correct.mean(), per_example=correct, per_example_name="correct",
               checkpoint=str((run.run_dir / "checkpoint").relative_to(run.root)))
