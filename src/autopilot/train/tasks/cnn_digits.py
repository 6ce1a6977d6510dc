"""Built-in task: a small CNN on scikit-learn's bundled 8x8 digits (the embedded default study).

Usage (the supervisor runs it; so can you):
    python -m autopilot.train.tasks.cnn_digits runs/<study>/<run>/config.json runs/<study>/<run>

Trains for `epochs` (or for `time_budget_s` seconds when that is set), checkpoints every epoch, resumes
from the last checkpoint after a crash with the same result, and reports validation accuracy with the
per-example correctness the judge pairs. For the registry it exports a champion's weights (`export`), loads them
(`load_champion`, for `autopilot serve`), and scores them once on the held-out test split:
    python -m autopilot.train.tasks.cnn_digits --test models/<study>/<run>/test/request.json models/<study>/<run>/test
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from autopilot import fsio
from autopilot.train import checkpoints, manifest
from autopilot.train.contract import TestRun, TrainerRun
from autopilot.train.tasks import digits_data

log = logging.getLogger("autopilot.train.tasks.cnn_digits")

WEIGHTS_FILE = "model.pt"  # a champion's state dict (no optimizer), beside its config.json
CLASSES = 10


@dataclass
class TrainConfig:
    lr: float = field(default=3e-3, metadata={"help": "peak learning rate"})
    batch_size: int = field(default=64, metadata={"help": "examples per optimizer step"})
    epochs: int = field(default=6, metadata={"help": "passes over the training split"})
    weight_decay: float = field(default=1e-4, metadata={"help": "L2 penalty (decoupled for adamw)"})
    width: int = field(default=16, metadata={"help": "channels of the first conv layer (the second has 2x)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout before the classifier"})
    optimizer: str = field(default="adam", metadata={"help": "adam | adamw | sgd (momentum 0.9)"})
    time_budget_s: float = field(default=0.0, metadata={"help": "if > 0, train this many seconds instead of `epochs`"})
    keep_checkpoints: int = field(default=2, metadata={"help": "checkpoints kept (plus the best)"})

    def __post_init__(self):
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"`optimizer` must be adam, adamw or sgd, but got {self.optimizer!r}")
        if self.batch_size < 1 or self.epochs < 1 or self.width < 1:
            raise ValueError(f"batch_size, epochs and width must be >= 1, got {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`0 <= dropout < 1` must hold, but got {self.dropout=}")


class SmallCNN(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * width * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # 8x8 -> 4x4
        return self.head(self.drop(x.flatten(1)))


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Per-example correctness (1.0 / 0.0) on the fixed validation split, in its fixed order."""
    model.eval()
    correct = (model(x).argmax(dim=1) == y).float().numpy()
    model.train()
    return correct


def rng_state() -> dict:
    return {"torch": torch.get_rng_state()}


def train(run: TrainerRun) -> None:
    cfg = TrainConfig(**run.hparams)
    data = digits_data.split(run.config["data"].get("split_seed", 0))
    (x_tr, y_tr), (x_val, y_val) = data["train"], data["val"]
    run.data_hash = manifest.hash_arrays(x_tr, y_tr, x_val, y_val)
    x_tr, y_tr, x_val, y_val = map(torch.from_numpy, (x_tr, y_tr, x_val, y_val))

    torch.manual_seed(run.seed)
    model = SmallCNN(cfg.width, cfg.dropout)
    opt = make_optimizer(cfg, model.parameters())
    ckpt_dir = run.files.checkpoint
    start_epoch, step, trained_seconds, resumed_from = 0, 0, 0.0, None
    last = checkpoints.latest(ckpt_dir)
    if last is not None:
        state = checkpoints.load(last)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        start_epoch, step, trained_seconds = state["epoch"], state["step"], state["trained_seconds"]
        resumed_from = step
        log.info("resumed from %s (epoch %d, step %d)", last, start_epoch, step)

    steps_per_epoch = -(-len(y_tr) // cfg.batch_size)
    budget_mode = cfg.time_budget_s > 0
    total_epochs = 10**9 if budget_mode else cfg.epochs
    run.begin_training(total_steps=None if budget_mode else cfg.epochs * steps_per_epoch)
    run.steps = step
    t0 = time.monotonic() - trained_seconds
    epoch = start_epoch
    while epoch < total_epochs and not run.should_end:
        # the shuffle depends only on (seed, epoch): a resumed run sees the same batches
        order = torch.randperm(len(y_tr), generator=torch.Generator().manual_seed(run.seed * 1000 + epoch))
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            run.step(step, loss=loss.item(), epoch=epoch)
            if run.should_end or (budget_mode and time.monotonic() - t0 >= cfg.time_budget_s):
                break
        epoch += 1
        correct = evaluate(model, x_val, y_val)
        run.log_metrics(step, epoch=epoch, val_accuracy=float(correct.mean()))
        checkpoints.save(
            ckpt_dir, step,
            {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(),
             "epoch": epoch, "step": step, "trained_seconds": time.monotonic() - t0},
            metric=float(correct.mean()),
        )
        checkpoints.prune(ckpt_dir, keep_last=cfg.keep_checkpoints, goal="maximize")
        if budget_mode and time.monotonic() - t0 >= cfg.time_budget_s:
            break
    run.end_training()
    run.train_seconds = time.monotonic() - t0

    correct = evaluate(model, x_val, y_val)
    final = checkpoints.latest(ckpt_dir)
    run.finish(
        metric_value=float(correct.mean()),
        per_example=correct.tolist(),
        per_example_name="correct",
        metrics={"train_loss": run.last_loss, "epochs": float(epoch)},
        samples_per_second=round(step * cfg.batch_size / max(run.train_seconds, 1e-9), 1),
        parameters=sum(p.numel() for p in model.parameters()),
        checkpoint=str(final.relative_to(run.root)) if final else None,
        resumed_from_step=resumed_from,
    )


# ---------------------------------------------------------------- the champion

def export(checkpoint: Path, hparams: dict, dest: Path) -> None:
    """A champion's weights from a final checkpoint: the model's state dict alone, and what builds the model."""
    cfg = TrainConfig(**hparams)
    dest.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoints.load(checkpoint)["model"], dest / WEIGHTS_FILE)
    fsio.atomic_write_json(dest / "config.json", {
        "architecture": "SmallCNN", "width": cfg.width, "dropout": cfg.dropout, "classes": CLASSES,
        "input": "8x8 greyscale digit images with pixel values 0-16 (scikit-learn's digits); the model sees them / 16"})


def load_champion(folder: Path) -> SmallCNN:
    """The exported model, ready for inference."""
    config = fsio.read_json(folder / "config.json")
    model = SmallCNN(config["width"], config["dropout"])
    model.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return model.eval()


def test(request: TestRun) -> None:
    """Accuracy of the champion on the held-out test split (never seen by a trainer, a policy or the judge)."""
    model = load_champion(request.weights)
    x, y = digits_data.held_out_split(request.data.get("split_seed", 0))
    correct = evaluate(model, torch.from_numpy(x), torch.from_numpy(y))
    request.report(metric_value=float(correct.mean()), per_example=correct.tolist())


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    if sys.argv[1:2] == ["--test"]:
        with TestRun.from_argv() as request:
            test(request)
        return
    with TrainerRun.from_argv() as run:
        run.device = "cpu"
        train(run)


if __name__ == "__main__":
    main()
