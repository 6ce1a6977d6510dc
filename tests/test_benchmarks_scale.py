"""benchmarks/generation_speedup.py runs in its --quick mode and ends with one JSON object."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import env_without

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.slow


def test_generation_speedup_quick(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "generation_speedup.py"), "--quick"], capture_output=True,
                          text=True, timeout=600, env=env_without(tmp_path / "demo-env"))  # as after ./bin/demo
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # the same work in both arms: one trainer per run (no confirmation seeds), so only the loop differs
    assert out["trainer_processes_sequential"] == out["trainer_processes_generation"] == out["runs"] == 4
    assert out["sequential_seconds"] > 0 and out["generation_seconds"] > 0
    assert out["speedup"] == pytest.approx(out["sequential_seconds"] / out["generation_seconds"], rel=0.01)
