"""Does a deep history cost the next iteration anything? Dry-run time with 5,000 finished runs vs 10.

Both studies are synthetic (files that pass every schema, written by autopilot.journal.synthetic) in
throw-away copies of the project; the same `snakemake -n --config iterations=1` is timed on each, several
times, and the medians compared. The job count of the dry run shows the DAG holds only the new run.

Usage:
    python benchmarks/deep_history.py            # 10 vs 5,000 finished runs, 5 timings each
    python benchmarks/deep_history.py --quick    # 10 vs 500, 2 timings (smoke run for the tests)
The last line is one JSON object.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from autopilot.ops.scaffold import deep_project, workflow_env

VENV_BIN = Path(sys.executable).parent  # snakemake and autopilot of the interpreter that runs the benchmark


def dry_run(root: Path) -> tuple[float, int]:
    """Seconds of one dry run that adds one run, and the number of jobs it planned."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(VENV_BIN / "snakemake"), "-n", "-c1", "--profile", "profiles/local",
                           "--config", "iterations=1"], cwd=root, env=workflow_env(VENV_BIN), capture_output=True,
                          text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"dry run failed in {root}:\n{proc.stderr[-3000:]}")
    total = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.MULTILINE)
    return elapsed, int(total.group(1)) if total else -1


@click.command()
@click.option("--deep", default=5000, help="Finished runs of the deep study.")
@click.option("--shallow", default=10, help="Finished runs of the shallow study.")
@click.option("--repeats", default=5, help="Timings per study (the median is reported).")
@click.option("--quick", is_flag=True, help="Smoke run: 500 vs 10 runs, 2 timings.")
def main(deep: int, shallow: int, repeats: int, quick: bool) -> None:
    if quick:
        deep, repeats = 500, 2
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        projects = {n: deep_project(Path(tmp) / f"p{n}", n) for n in (shallow, deep)}
        setup = time.perf_counter() - t0
        timings = {n: [] for n in projects}
        jobs = {}
        for _ in range(repeats):  # interleaved, so that machine noise hits both alike
            for n, root in projects.items():
                seconds, jobs[n] = dry_run(root)
                timings[n].append(seconds)
    med = {n: statistics.median(t) for n, t in timings.items()}
    print(json.dumps({
        "shallow_runs": shallow, "deep_runs": deep, "repeats": repeats,
        "shallow_seconds": round(med[shallow], 3), "deep_seconds": round(med[deep], 3),
        "ratio": round(med[deep] / med[shallow], 3), "target_ratio_max": 1.5,
        "jobs_shallow": jobs[shallow], "jobs_deep": jobs[deep], "setup_seconds": round(setup, 1),
    }))


if __name__ == "__main__":
    main()
