"""The validate-throughput benchmark runs in its --quick mode and ends with one JSON object of rates and ratios."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import env_without

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "validate_throughput.py"


def test_validate_throughput_quick(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=300,
                          env=env_without(tmp_path / "demo-env"))  # as right after ./bin/demo
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["records"] == 2000 and out["quick"] is True
    for level in ("quick", "standard", "deep"):
        assert out[f"{level}_rps"] > 0 and out[f"{level}_ratio"] > 0
    assert out["bare_rps"] > out["deep_rps"]  # the bare parse is the floor every level builds on
    assert set(out["targets"]) == {"standard_ratio_max", "deep_ratio_max"}
