"""Train many seeds of configs of the built-in digits task in this process (shared by the benchmarks), and
keep them: a pool is trained once and cached under benchmarks/results/seedpools/ (gitignored).

The real task code runs (`autopilot.train.tasks.cnn_digits.train` through the trainer contract); only the
process start-up of the workflow is skipped, so hundreds of seeds fit in minutes. The cache key holds the
config, the split and the source of the task and its data, so a change to any of them trains anew; a pool asked
for with more seeds than its cache holds trains only the missing ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from autopilot import fsio, guard

CACHE = Path(__file__).resolve().parent / "results" / "seedpools"
log = logging.getLogger(__name__)


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


def source_hash() -> str:
    """The task's and its data's source: a cached seed is stale once either changes."""
    from autopilot.train.tasks import cnn_digits, digits_data

    return hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in (cnn_digits, digits_data))).hexdigest()


def cached_pool(hparams: dict, n: int, first_seed: int, cache: Path = CACHE) -> tuple[np.ndarray, np.ndarray]:
    """(values, per-example correctness as 0/1 rows) of seeds first_seed .. first_seed + n - 1 of `hparams`."""
    key = hashlib.sha256(json.dumps([hparams, first_seed, source_hash()], sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"digits-{key}.npz"
    values, rows = np.zeros(0), np.zeros((0, 0), dtype=np.uint8)
    if path.exists():
        with np.load(path) as f:
            values, rows = f["values"], f["correct"]
    if len(values) < n:
        log.warning("training %d seed(s) of %s (cached in %s)", n - len(values), hparams, path)
        with tempfile.TemporaryDirectory() as tmp:
            more = seed_pool(hparams, n - len(values), first_seed + len(values), Path(tmp))
        new_rows = np.array([pe for _, pe in more], dtype=np.uint8)
        values = np.concatenate([values, [v for v, _ in more]])
        rows = new_rows if not len(rows) else np.concatenate([rows, new_rows])
        cache.mkdir(parents=True, exist_ok=True)
        tmp_path = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp_path, values=values, correct=rows, hparams=json.dumps(hparams))
        tmp_path.replace(path)
    return values[:n], rows[:n]
