"""Train many seeds of a config of the built-in digits task in this process (shared by the benchmarks).

The real task code runs (`autopilot.train.tasks.cnn_digits.train` through the trainer contract); only the
process start-up of the workflow is skipped, so hundreds of seeds fit in minutes.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from autopilot import fsio, guard


def train_seed(hparams: dict, seed: int, root: Path, split_seed: int = 0) -> tuple[float, np.ndarray]:
    """Validation accuracy and per-example correctness of one seed."""
    from autopilot.train.contract import TrainerRun
    from autopilot.train.tasks import cnn_digits

    run_dir = Path(tempfile.mkdtemp(dir=root, prefix=f"seed{seed}-"))
    config = guard.config_document("00001", "bench", "cnn_digits", seed=seed, hparams=hparams,
                                   metric={"name": "val_accuracy", "goal": "maximize"}, max_seconds=3600,
                                   data={"split_seed": split_seed}, run_dir=str(run_dir.relative_to(root)))
    logging.disable(logging.INFO)
    cnn_digits.train(TrainerRun(config, root=root))
    summary = fsio.read_json(run_dir / "trainer_summary.json")
    return summary["metric"]["value"], np.asarray(summary["per_example"]["values"])


def seed_pool(hparams: dict, n: int, first_seed: int, root: Path) -> list[tuple[float, np.ndarray]]:
    import torch

    torch.set_num_threads(1)
    return [train_seed(hparams, first_seed + i, root) for i in range(n)]
