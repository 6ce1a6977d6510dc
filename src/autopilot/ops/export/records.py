"""What one finished run exports: its parameters, its metric series, its verdict and where its files are.

Built from the ledger (history.jsonl: one line per finished run) and the run's own folder; the same record feeds
every export, so MLflow and Optuna show the same numbers as `autopilot results`.

Usage:
    for record in finished_runs(study):
        record.hparams, record.series, record.entry["verdict"], record.links
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

from autopilot import fsio, ledger
from autopilot.paths import RunPaths
from autopilot.study import Study

NOT_SERIES = ("step", "time")  # keys of a metrics.jsonl line that are not metrics


@dataclass(frozen=True)
class RunRecord:
    study: str
    root: Path  # the project's
    entry: dict  # the run's line of history.jsonl
    run: RunPaths
    hparams: dict  # every hyperparameter the run trained with (config.json), not only the searched ones
    summary: dict | None  # seed 0's trainer_summary.json

    @property
    def run_id(self) -> str:
        return self.entry["run_id"]

    @property
    def finished(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.entry["finished_at"])

    @property
    def started(self) -> dt.datetime:
        return self.finished - dt.timedelta(seconds=float(self.entry["wall_seconds"] or 0.0))

    def series(self) -> list[tuple[int, float, str, float]]:
        """(step, seconds since start, name, value) of every finite number in seed 0's metrics.jsonl."""
        points = []
        for line in fsio.iter_jsonl(self.run.metrics):
            step, seconds = int(line.get("step") or 0), float(line.get("time") or 0.0)
            for name, value in line.items():
                if name in NOT_SERIES or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if math.isfinite(value):
                    points.append((step, seconds, name, float(value)))
        return points

    def links(self) -> dict[str, str]:
        """file:// URIs of the run folder, its files and its checkpoint, for the files that exist."""
        run = self.run
        found = {"run_dir": run.dir}
        found |= {p.name: p for p in (run.proposal, run.config, run.train_log, run.metrics, run.summary, run.verdict)
                  if p.exists()}
        checkpoint = (self.summary or {}).get("checkpoint")
        if checkpoint:
            found["checkpoint"] = self.root / checkpoint
        return {name: Path(path).resolve().as_uri() for name, path in found.items()}


def finished_runs(study: Study) -> list[RunRecord]:
    """Every run of the ledger, in order, with what its folder holds."""
    records = []
    for entry in ledger.read_history(study.paths):
        run = study.paths.run(entry["run_id"])
        config = ledger.read_path(run.config) or {}
        records.append(RunRecord(study.name, study.project.root, entry, run, config.get("hparams", entry["params"]),
                                 ledger.read_path(run.summary)))
    return records
