"""A study made up on disk for the tests of the champion registry: runs with checkpoints, summaries, verdicts and
ledger lines written directly (no trainer, no Snakemake), and a test command that scores a champion's weights.

The study is a `command` study; each seed's final checkpoint holds `weights.bin`, random bytes that differ by run
and seed. score.py, its trainer.test_command, reports a held-out score computed from those bytes, so that every
champion's test score is distinct and can be searched for in files and prompts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from helpers import make_project
from ops_study import entry

from autopilot import fsio
from autopilot.ops.scaffold import QUICK_STUDY
from autopilot.paths import Project, RunPaths
from autopilot.study import Study

STUDY = "digits_cnn"
SCORE_PY = '''\
"""Held-out test of a registry test study: a score from the champion's weights.bin, through the TestRun contract."""
from autopilot.train.contract import TestRun

with TestRun.from_argv() as test:
    data = (test.weights / "weights.bin").read_bytes()
    if test.hparams.get("fail_test"):
        raise RuntimeError("the test evaluation broke on purpose")
    test.report(metric_value=0.5 + (sum(data) % 4999) / 10000 + 0.0000123, per_example=[1.0] * 40)
'''


def expected_test_score(data: bytes) -> float:
    """The score score.py reports for a champion whose weights.bin holds `data`."""
    return 0.5 + (sum(data) % 4999) / 10000 + 0.0000123


def make_registry_project(root: Path, with_test: bool = True, **overrides) -> Path:
    """A project of a `command` study; with_test: its trainer.test_command is score.py (else it has no test)."""
    trainer = {"command": ["python", "trainer.py", "{config}", "{run_dir}"]}
    if with_test:
        trainer["test_command"] = ["python", "score.py", "--test", "{config}", "{run_dir}"]
    config = {
        "task": "command",
        "trainer": trainer,
        "baseline": {"quality": 0.7},
        "search_space": {"quality": {"type": "float", "low": 0.5, "high": 0.9}},
        "judge": {**QUICK_STUDY["judge"], "noise_keys": []},
        **overrides,
    }
    make_project(root, **config)
    (root / "score.py").write_text(SCORE_PY)
    return root


def load_study(root: Path) -> Study:
    study = Study.load(Project(root), root / "config" / "config.yaml")
    study.freeze()
    return study


def weights_bytes(run_id: str, k: int) -> bytes:
    return random.Random(f"{run_id}:{k}").randbytes(2048)


def add_run(root: Path, run_id: str, verdict: str, value: float | None, seeds: int = 1, journal: bool = True,
            hparams: dict | None = None) -> RunPaths:
    """A finished run: per seed a summary and a final checkpoint (weights.bin), a verdict and a ledger line."""
    run = RunPaths(root / "runs" / STUDY / run_id)
    run.dir.mkdir(parents=True, exist_ok=True)
    values = []
    for k in range(seeds):
        seed = run.seed(k)
        nonce = f"{run_id}-{k}"  # a summary counts only when it answers its seed's config.json (ledger.bound_summary)
        fsio.atomic_write_json(seed.config, {"run_id": run_id, "nonce": nonce,
                                             "hparams": {"quality": 0.7, **(hparams or {})}})
        step = seed.checkpoint / "step-00000003"
        step.mkdir(parents=True, exist_ok=True)
        (seed.checkpoint / "step-00000001").mkdir(exist_ok=True)  # an earlier checkpoint: retention's to remove
        (seed.checkpoint / "step-00000001" / "meta.json").write_text('{"step": 1, "metric": null, "time": 0}')
        (step / "weights.bin").write_bytes(weights_bytes(run_id, k))
        (step / "meta.json").write_text('{"step": 3, "metric": null, "time": 0}')
        seed_value = None if value is None else value + 0.001 * k
        values.append(seed_value)
        status = "completed" if value is not None else "failed"
        fsio.atomic_write_json(seed.summary, {
            "status": status, "metric": {"name": "val_accuracy", "value": seed_value, "goal": "maximize"},
            "checkpoint": str(step.relative_to(root)), "train_seconds": 1.0, "wall_seconds": 1.5, "nonce": nonce})
        (seed.dir / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    mean = None if value is None else sum(values) / len(values)
    fsio.atomic_write_json(run.verdict, {"run_id": run_id, "verdict": verdict, "reason": f"made up: {verdict}"})
    if journal:
        line = entry(run_id, verdict, mean, seed_values=[] if value is None else values)
        with (root / "runs" / STUDY / "history.jsonl").open("a") as f:
            f.write(json.dumps(line) + "\n")
        fsio.atomic_write_json(run.entry, line)
    return run


def tree_digest(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
