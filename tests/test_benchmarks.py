"""Every benchmark starts as the README shows it right after `./bin/demo` (no test extra, no lm extra), and runs
in its --quick mode to one JSON object on its last line (the figures are in the notes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, env_without

BENCH = REPO / "benchmarks"
NEEDS_LM = {"trainer_throughput.py"}  # measures the causal_lm task: says how to install the lm extra instead


def run_quick(name: str, tmp_path: Path) -> dict:
    """The benchmark's --quick run, in an environment that lacks what ./bin/demo does not install."""
    proc = subprocess.run([sys.executable, str(BENCH / name), "--quick"], capture_output=True, text=True,
                          timeout=600, cwd=REPO, env=env_without(tmp_path / "demo-env"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(p.name for p in BENCH.glob("[!_]*.py")))
def test_every_benchmark_starts_right_after_bin_demo(name, tmp_path):
    proc = subprocess.run([sys.executable, f"benchmarks/{name}", "--help"], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env=env_without(tmp_path / "demo-env"))
    if name in NEEDS_LM:
        assert proc.returncode == 1 and "needs the `lm` extra" in proc.stderr and "Traceback" not in proc.stderr
        assert f"{sys.executable} -m pip install 'transformers>=" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.startswith("Usage:") and "--quick" in proc.stdout


@pytest.mark.slow
def test_judge_study_quick_meets_the_study_level_targets(tmp_path):
    """Whole studies through the real runner, judge and journal (synthetic pools, fixed seeds), fewer and shorter
    than the full run's (10 A/A and 10 +2 sd studies of 40 runs; about 20 s on 2 cores), so each target is
    asserted at a tolerance its sample allows: one that a judge meeting the target passes at least 95% of the
    time, and that the judge this replaced (a false promotion in 77% of 100-run studies, records +0.7 to +1.0 sd high)
    fails."""
    out = run_quick("judge_study.py", tmp_path)
    synthetic = out["judge"]["synthetic"]
    aa, gain2 = synthetic["g1_aa"], synthetic["g1_gain2"]
    # false promotions: a Poisson count over 10 x 40 = 400 runs; at the target's 0.2 per 100 runs its mean is
    # 0.8 and P(count <= 2) = 0.953
    assert aa["studies"] * aa["runs_per_study"] == 400
    assert aa["false_promotions"] <= 2, aa
    # +2 sd gain promoted in >= 80% of studies: Binomial(10, 0.8) gives >= 6 with probability 0.967
    assert gain2["studies"] == 10 and gain2["detection"] >= 0.6, gain2
    # incumbent bias: a mean over ~10-seed records of the promoted incumbents (sd 1 each): target + 2 se
    promoted = gain2["promoted_incumbents"] + aa["promoted_incumbents"]
    assert promoted >= 3, synthetic
    assert abs(synthetic["g1_incumbent_bias_sd"]) <= 0.25 + 2 / (10 * promoted) ** 0.5, synthetic
    # processes per A/A candidate: a mean over 390 candidates (sd about 1.4 each, se 0.07): the target as is
    assert aa["processes_per_candidate"] <= 2.5, aa
    search = out["search"]["mixed"]["default"]
    assert search["study_regret"] >= 0 and search["plain_tpe_regret"] >= 0


@pytest.mark.slow
def test_deep_history_quick(tmp_path):
    out = run_quick("deep_history.py", tmp_path)
    assert out["jobs_deep"] == out["jobs_shallow"] == 8
    assert out["ratio"] > 0


@pytest.mark.slow
def test_loop_overhead_quick(tmp_path):
    out = run_quick("loop_overhead.py", tmp_path)
    assert out["runs"] == 2 and out["trainer_processes"] >= 2
    assert 0 < out["busy_fraction"] < 1 and out["overhead_per_iteration_seconds"] > 0
