"""Every benchmark runs in its --quick mode and ends with one JSON object (the figures are in the notes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.slow


def run_quick(name: str) -> dict:
    proc = subprocess.run([sys.executable, str(BENCH / name), "--quick"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_judge_aa_quick():
    out = run_quick("judge_aa.py")
    assert 0 <= out["false_improved_rate"] <= 1 and 0 <= out["detection_rate"] <= 1
    assert out["mean_b"] > out["mean_a"]  # the "known better" config is better


def test_deep_history_quick():
    out = run_quick("deep_history.py")
    assert out["jobs_deep"] == out["jobs_shallow"] == 7
    assert out["ratio"] > 0
