"""A scripted stand-in for the trainer: the real runner trains seeds whose values a test chose.

`autopilot.train.runner.train_seeds(study, run_id, trainer=ScriptedTrainer(...))` runs the judge's protocol
as in a real study (the seeds it asks for, in its order, each with its config.json); only the trainer process is
replaced by one that writes a valid trainer_summary.json with the next scripted value.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable

from autopilot import fsio
from autopilot.paths import RunPaths

MANIFEST = {"seed": 0, "python": "3", "packages": {}, "git_commit": None, "data_hash": None, "device": "cpu",
            "platform": "test", "hostname": "test"}


def summary(config: dict, value: float | None, status: str = "completed", per_example=None, example_goal=None,
            **fields) -> dict:
    return {"status": status, "metric": {**config["metric"], "value": value},
            "per_example": None if per_example is None else
            {"name": "correct", "goal": example_goal or config["metric"]["goal"],
             "values": [float(v) for v in per_example]},
            "metrics": {}, "seed": config["seed"], "nonce": config.get("nonce"), "steps": 1, "train_seconds": 1.0,
            "wall_seconds": 1.0, "device": "cpu", "checkpoint": None,
            "error": None if status == "completed" else "scripted failure",
            "manifest": MANIFEST, **fields}


class ScriptedTrainer:
    """Seeds of run R take the values of `values[R]` in order (cycled); seeds of the incumbent's config that a
    run trains for its record (stage `incumbent`) take `topups` (cycled). A value may be a dict: a whole summary
    (status, value, per_example, other fields)."""

    def __init__(self, values: dict[str, Iterable], topups: Iterable = (0.0,)):
        self.values = {run: itertools.cycle(list(v)) for run, v in values.items()}
        self.topups = itertools.cycle(list(topups))
        self.calls: list[tuple[str, int, str]] = []  # (run id, seed index, stage)

    def __call__(self, study, run: RunPaths, seed_run: RunPaths, config: dict) -> dict:
        stage = config.get("seed_stage", "first")
        self.calls.append((config["run_id"], config["seed_index"], stage))
        item = next(self.topups if stage == "incumbent" else self.values[config["run_id"]])
        doc = summary(config, **item) if isinstance(item, dict) else summary(config, item)
        if config["seed_index"] > 0:
            fsio.atomic_write_json(seed_run.config, config)
        seed_run.dir.mkdir(parents=True, exist_ok=True)
        seed_run.summary.write_text(json.dumps(doc))  # as a user trainer may: NaN included
        return doc
