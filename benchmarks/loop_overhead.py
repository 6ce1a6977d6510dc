"""How much of a study's wall time is not training? A 10-run study through Snakemake, runs of a fixed budget.

Each run of the default digits task trains for exactly `--budget` seconds (the task's `time_budget_s`);
everything else (process start-up, imports, data loading, proposing, guarding, judging, journaling,
Snakemake's scheduling) is overhead. The judge's extra seeds are kept to one each so that the count of
trainer processes stays close to the count of runs; the overhead per trainer process is reported too.

Usage:
    python benchmarks/loop_overhead.py               # 10 runs x 30 s
    python benchmarks/loop_overhead.py --quick       # 2 runs x 1 s (smoke run for the tests)
The last line is one JSON object.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from autopilot import fsio
from autopilot.ops.scaffold import quick_project, workflow_env

VENV_BIN = Path(sys.executable).parent  # snakemake and autopilot of the interpreter that runs the benchmark


@click.command()
@click.option("--runs", default=10, help="Runs of the study.")
@click.option("--budget", default=30.0, help="Training seconds of each run.")
@click.option("--quick", is_flag=True, help="Smoke run: 2 runs of 1 s.")
def main(runs: int, budget: float, quick: bool) -> None:
    if quick:
        runs, budget = 2, 1.0
    with tempfile.TemporaryDirectory() as tmp:
        root = quick_project(
            Path(tmp) / "p",
            baseline={"lr": 0.003, "batch_size": 64, "epochs": 6, "weight_decay": 0.0001, "width": 16,
                      "dropout": 0.1, "optimizer": "adam", "time_budget_s": budget},
            budget={"max_seconds_per_run": budget + 60},
        )
        t0 = time.perf_counter()
        proc = subprocess.run([str(VENV_BIN / "snakemake"), "-c2", "--profile", "profiles/local", "--config",
                               f"iterations={runs}"], cwd=root, env=workflow_env(VENV_BIN), capture_output=True,
                              text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        summaries = [fsio.read_json(p) for p in (root / "runs").rglob("trainer_summary.json")]
    train = sum(s["train_seconds"] for s in summaries)
    overhead = wall - train
    print(json.dumps({
        "runs": runs, "budget_seconds": budget, "trainer_processes": len(summaries),
        "wall_seconds": round(wall, 2), "train_seconds": round(train, 2),
        "busy_fraction": round(train / wall, 3),
        "overhead_per_iteration_seconds": round(overhead / runs, 3),
        "overhead_per_trainer_process_seconds": round(overhead / len(summaries), 3),
        "target_overhead_per_iteration_max": 1.5,
    }))


if __name__ == "__main__":
    main()
