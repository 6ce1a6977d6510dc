"""The train step decides the seeds from the same incumbent as the judge: the run folders, not only the ledger,
and it only reads them."""

from __future__ import annotations

import subprocess

from helpers import VENV_BIN, env, snakemake
from ops_study import make_slow_project

from autopilot import fsio, guard, ledger
from autopilot.paths import Project
from autopilot.study import Study
from autopilot.train import runner

NOISE_SEEDS = 3


def cli(root, *args: str) -> None:
    proc = subprocess.run([str(VENV_BIN / "autopilot"), *args], cwd=root, env=env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_lost_ledger_line_does_not_make_a_run_a_second_baseline(tmp_path):
    root = make_slow_project(tmp_path / "p", steps=2, step_seconds=0.01,
                             judge={"noise_seeds": NOISE_SEEDS, "select_seeds": 1, "confirm_seeds": 2,
                                    "record_seeds": 1, "incumbent_seeds": 2, "noise_keys": []})
    snakemake(root, "--config", "iterations=1")
    study = Study.load(Project(root), root / "config" / "config.yaml")
    assert len(ledger.seed_summaries(study.paths.run("00001"))) == 1 + NOISE_SEEDS  # the baseline's noise floor
    for step in ("propose", "guard"):
        cli(root, step, "--run", "00002")
    study.paths.history.unlink()  # as if the ledger had lost run 00001's line

    cli(root, "train", "--run", "00002")
    seeds = len(ledger.seed_summaries(study.paths.run("00002")))
    assert seeds <= 2  # one seed, or one confirmation: a candidate against run 00001, never a new noise floor
    assert not study.paths.history.exists()  # a read: `train` writes no journal
    snakemake(root, "--config", "iterations=0")  # the next invocation repairs the journal from the run folders
    assert [e["run_id"] for e in fsio.iter_jsonl(study.paths.history)] == ["00001"]



def test_a_seed_summary_from_before_the_seed_started_is_not_taken_for_its_result(tmp_path):
    """runs/<study>/<run>/seeds/seed-1/trainer_summary.json already there (left over, copied in): the seed
    trains all the same, and its own summary is the one that counts."""
    root = make_slow_project(tmp_path / "p", steps=2, step_seconds=0.01)
    study = Study.load(Project(root), root / "config" / "config.yaml")
    run = study.paths.run("00001")
    proposal = {"run_id": "00001", "policy": "baseline", "overrides": {}, "rationale": "the baseline run",
                "hypothesis": "a reference point", "fallback_from": None}
    fsio.atomic_write_json(run.config, guard.build_config(study, proposal))
    planted = {"status": "completed", "metric": {"name": "val_accuracy", "value": 0.999, "goal": "maximize"}}
    fsio.atomic_write_json(run.seed(1).summary, planted)

    config = runner.seed_config(fsio.read_json(run.config), study, run.id, run.seed(1), 1, "baseline")
    summary = runner.train_seed(study, run, run.seed(1), config)
    assert summary["status"] == "completed" and summary["metric"]["value"] != 0.999
    assert summary["nonce"] == fsio.read_json(run.seed(1).config)["nonce"] != fsio.read_json(run.config)["nonce"]
    assert runner.train_seed(study, run, run.seed(1), config) == summary  # done: not trained again
