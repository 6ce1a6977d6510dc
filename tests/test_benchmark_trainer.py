"""The trainer-throughput benchmark's smoke run: both loops train and the last line is the JSON summary."""

from __future__ import annotations

import importlib.util
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
    assert out["mfu_task"] is None and out["peak_tflops"] is None  # no peak to compare with on a CPU
    assert out["flops_per_token"] > 6 * out["matmul_params"] and out["flop_formula"].startswith("6 N + 12 L T")
    assert 0 < out["input_share"] < 1 and out["runtime"]["precision"] == "fp32" and not out["runtime"]["compiled"]
    assert out["tokenization"]["cached_seconds"] < out["tokenization"]["tokenize_seconds"]


def test_the_peak_table_finds_each_device_by_its_name():
    spec = importlib.util.spec_from_file_location("trainer_throughput", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    names = {"NVIDIA H100 80GB HBM3": 989.4, "NVIDIA H100 PCIe": 756.0, "NVIDIA H200": 989.4,
             "NVIDIA GH200 480GB": 989.4, "NVIDIA A100-SXM4-80GB": 312.0, "NVIDIA L4": 121.0, "NVIDIA L40S": 362.1,
             "NVIDIA A10": 125.0, "NVIDIA A10G": None, "Tesla T4": None}
    assert {name: bench.device_peak(name) for name in names} == names
    assert bench.mfu(10_000, 6e9, 989.4) == pytest.approx(10_000 * 6e9 / 989.4e12, abs=1e-4)
