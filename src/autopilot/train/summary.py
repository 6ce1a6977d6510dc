"""trainer_summary.json, built in one place: by the trainer's own side of the contract, and by the supervisor for a
trainer that could not write its own (killed, timed out, exited without one).

Usage:
    summary = build(config, root, "completed", metric_value=0.97, per_example=[1.0, 0.0, ...], steps=120, ...)
    write(run, summary)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from autopilot import fsio, schemas
from autopilot.paths import RunPaths
from autopilot.train import manifest


def build(config: dict, root: Path, status: str, *, metric_value: float | None = None,
          per_example: list[float] | None = None, per_example_name: str = "score",
          per_example_goal: str | None = None, metrics: dict | None = None, steps: int = 0,
          train_seconds: float = 0.0, wall_seconds: float = 0.0, device: str = "unknown",
          data_hash: str | None = None, error: str | None = None, **fields: Any) -> dict:
    """A summary of `config`'s seed, validated against schemas/trainer_summary.schema.yaml; non-finite numbers
    become null (JSON has no NaN). `fields` are the task's own extra keys the schema allows."""
    goal = config["metric"]["goal"]
    summary = {
        "status": status,
        "metric": {"name": config["metric"]["name"], "value": finite_or_none(metric_value), "goal": goal},
        "per_example": None if per_example is None else {
            "name": per_example_name, "goal": per_example_goal or goal, "values": [float(v) for v in per_example]},
        "metrics": {k: finite_or_none(v) for k, v in (metrics or {}).items()},
        "seed": config["seed"],
        "nonce": config.get("nonce"),  # binds the summary to the config.json it answers (see ledger.bound_summary)
        "steps": int(steps),
        "train_seconds": round(train_seconds, 3),
        "wall_seconds": round(wall_seconds, 3),
        "device": device,
        "checkpoint": None,
        "error": error,
        "manifest": manifest.build(config["seed"], device, data_hash, root),
        **fields,
    }
    schemas.validate(summary, "trainer_summary", what="trainer summary")
    return summary


def write(run: RunPaths, summary: dict) -> None:
    fsio.atomic_write_json(run.summary, summary)


def finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
