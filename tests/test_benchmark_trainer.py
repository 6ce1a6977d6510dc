"""The trainer-throughput benchmark's smoke run: both loops train and the last line is the JSON summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "trainer_throughput.py"


@pytest.mark.slow
def test_trainer_throughput_quick():
    proc = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["bare_tokens_per_second"] > 0 and out["task_tokens_per_second"] > 0
    assert out["batch"] == 2 and out["seq"] == 64 and out["params"] > 0
    assert 0.2 < out["ratio"] < 5  # the figure itself is measured by the full run (see the module docstring)
