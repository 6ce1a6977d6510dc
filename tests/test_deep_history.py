"""A study with 5,000 finished runs advances by one run; its DAG holds only the new run."""

from __future__ import annotations

import re

import pytest
from helpers import snakemake

from autopilot import fsio
from autopilot.ops.scaffold import deep_project

pytestmark = pytest.mark.slow


def test_five_thousand_finished_runs_cost_the_next_run_nothing(tmp_path):
    root = deep_project(tmp_path / "deep", 5000)
    dry = snakemake(root, "-n", "--config", "iterations=1")
    jobs = int(re.search(r"^total\s+(\d+)", dry.stdout + dry.stderr, re.MULTILINE).group(1))
    assert jobs == 8  # ingest + propose, guard, train, judge, journal, champion of one run + all: no finished run
    snakemake(root, "--config", "iterations=1")
    new = root / "runs" / "digits_cnn" / "05001"
    verdict = fsio.read_json(new / "verdict.json")
    assert verdict["compared_to"] is not None and verdict["verdict"] != "baseline"
    history = list(fsio.iter_jsonl(root / "runs" / "digits_cnn" / "history.jsonl"))
    assert len(history) == 5001 and history[-1]["run_id"] == "05001"
