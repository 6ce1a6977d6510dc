"""How much faster is a generation of 4 runs than 4 runs one after another, on 2 cores with the local executor?

Both arms add 4 runs to copies of one study whose baseline is already trained: `generation_size=4` (one
generation: 4 proposals made together, then trained side by side as the cores allow) against
`generation_size=1` (the loop proposes, trains and judges one run at a time). Every run trains for exactly
`--budget` seconds, and its only possible change (SGD at Adam's learning rate) loses to the baseline, so no run
earns confirmation seeds: both arms start the same number of trainers for the same time, and the speed-up is
that of the loop alone. The timed part is the whole `snakemake` invocation.

Usage:
    python benchmarks/generation_speedup.py               # runs of 10 s, 3 repeats, 2 cores
    python benchmarks/generation_speedup.py --quick       # runs of 1 s, 1 repeat (smoke run for the tests)
The last line is one JSON object.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from autopilot import fsio
from autopilot.ops.scaffold import quick_project, workflow_env

VENV_BIN = Path(sys.executable).parent  # snakemake and autopilot of the interpreter that runs the benchmark

RUNS = 4


def study_project(root: Path, budget: float) -> Path:
    return quick_project(
        root,
        baseline={"lr": 0.003, "batch_size": 64, "epochs": 2, "weight_decay": 0.0001, "width": 16,
                  "dropout": 0.1, "optimizer": "adam", "time_budget_s": budget},
        search_space={"optimizer": {"type": "categorical", "choices": ["sgd"]}},  # every candidate: SGD
        tpe={"n_startup_trials": 0},
        budget={"max_seconds_per_run": budget + 120},
    )


def invoke(root: Path, cores: int, *config: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([str(VENV_BIN / "snakemake"), f"-c{cores}", "--profile", "profiles/local", "--config",
                           *config], cwd=root, env=workflow_env(VENV_BIN), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"snakemake failed in {root}:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def trainers(root: Path, after: str = "00001") -> tuple[int, float]:
    """Trainer processes of the added runs and their training seconds."""
    summaries = [fsio.read_json(p) for p in (root / "runs" / "digits_cnn").glob("[0-9]*/**/trainer_summary.json")
                 if p.relative_to(root / "runs" / "digits_cnn").parts[0] > after]
    return len(summaries), sum(s["train_seconds"] for s in summaries)


def arm(base: Path, tmp: Path, name: str, size: int, cores: int) -> tuple[float, int, float]:
    root = tmp / name
    shutil.copytree(base, root, symlinks=True)  # models/<study>/current is a relative symlink: keep it one
    seconds = invoke(root, cores, f"iterations={RUNS}", f"generation_size={size}")
    n, train = trainers(root)
    shutil.rmtree(root)
    return seconds, n, train


def baseline_study(tmp: Path, budget: float) -> Path:
    base = study_project(tmp / "base", budget)
    invoke(base, 2, "iterations=1")
    history = list(fsio.iter_jsonl(base / "runs" / "digits_cnn" / "history.jsonl"))
    if [e["verdict"] for e in history] != ["baseline"]:
        raise SystemExit(f"the baseline did not train: {history}")
    return base


@click.command()
@click.option("--budget", default=10.0, help="Training seconds of each run.")
@click.option("--repeats", default=3, help="Timings per arm (the median is reported).")
@click.option("--cores", default=2, help="Snakemake's --cores.")
@click.option("--quick", is_flag=True, help="Smoke run: runs of 1 s, 1 repeat.")
def main(budget: float, repeats: int, cores: int, quick: bool) -> None:
    if quick:
        budget, repeats = 1.0, 1
    timings: dict[str, list[float]] = {"sequential": [], "generation": []}
    counts: dict[str, tuple[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = baseline_study(Path(tmp), budget)
        for i in range(repeats):  # interleaved, so that machine noise hits both arms alike
            for name, size in (("sequential", 1), ("generation", RUNS)):
                seconds, n, train = arm(base, Path(tmp), f"{name}-{i}", size, cores)
                timings[name].append(seconds)
                counts[name] = (n, train)
    seq, gen = statistics.median(timings["sequential"]), statistics.median(timings["generation"])
    print(json.dumps({
        "runs": RUNS, "cores": cores, "budget_seconds": budget, "repeats": repeats,
        "sequential_seconds": round(seq, 2), "generation_seconds": round(gen, 2), "speedup": round(seq / gen, 3),
        "trainer_processes_sequential": counts["sequential"][0],
        "trainer_processes_generation": counts["generation"][0],
        "train_seconds_sequential": round(counts["sequential"][1], 2),
        "train_seconds_generation": round(counts["generation"][1], 2),
        "ideal_speedup": min(cores, RUNS),
    }))


if __name__ == "__main__":
    main()
