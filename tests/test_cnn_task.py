"""The built-in CNN task under the supervisor: completes, resumes after SIGKILL, fails fast on NaN."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autopilot import fsio, guard
from autopilot.paths import RunPaths
from autopilot.train import checkpoints, supervisor


@pytest.fixture(autouse=True)
def cold_start(monkeypatch):
    """Trainers start as fresh processes here: forking a warm trainer from pytest, whose other tests may have
    run torch (and its OpenMP pool) in-process, is not what `autopilot train` does. The warm path is covered
    by the end-to-end tests, where `autopilot train` forks as in production."""
    monkeypatch.setenv("AUTOPILOT_NO_WARMSTART", "1")


HP = {"lr": 0.003, "batch_size": 64, "epochs": 3, "weight_decay": 0.0001, "width": 8, "dropout": 0.1,
      "optimizer": "adam"}


def write_config(root: Path, hparams: dict, run_id: str = "00001", max_seconds: float = 120) -> RunPaths:
    run = RunPaths(root / "runs" / "s" / run_id)
    run.dir.mkdir(parents=True)
    config = guard.config_document(run_id, "s", "cnn_digits", seed=7, hparams=hparams,
                                   metric={"name": "val_accuracy", "goal": "maximize"}, max_seconds=max_seconds,
                                   data={"split_seed": 0})
    fsio.atomic_write_json(run.config, config)
    return run


def argv(run: RunPaths, root: Path) -> list[str]:
    return [sys.executable, "-m", "autopilot.train.tasks.cnn_digits", str(run.config.relative_to(root)),
            str(run.dir.relative_to(root))]


def test_completes_with_per_example_scores_and_manifest(tmp_path):
    run = write_config(tmp_path, HP)
    summary = supervisor.run_trainer(argv(run, tmp_path), run, fsio.read_json(run.config), tmp_path)
    assert summary["status"] == "completed"
    assert 0.5 < summary["metric"]["value"] <= 1.0
    values = summary["per_example"]["values"]
    assert len(values) == 359 and set(values) <= {0.0, 1.0}
    assert summary["metric"]["value"] == pytest.approx(sum(values) / len(values))
    assert checkpoints.load(checkpoints.latest(run.checkpoint))["epoch"] == 3
    metrics = list(fsio.iter_jsonl(run.metrics))
    assert metrics[-1]["val_accuracy"] == pytest.approx(summary["metric"]["value"])
    status = fsio.read_json(tmp_path / "status" / "status.json")
    assert status["phase"] == "finished" and status["run"] == "00001"


def test_resume_after_sigkill_gives_the_same_result(tmp_path):
    hp = {**HP, "epochs": 6}
    ref = write_config(tmp_path / "a", hp)
    expected = supervisor.run_trainer(argv(ref, tmp_path / "a"), ref, fsio.read_json(ref.config), tmp_path / "a")

    root = tmp_path / "b"
    run = write_config(root, hp)
    proc = subprocess.Popen(argv(run, root), cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(checkpoints.complete(run.checkpoint)) < 1:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not run.summary.exists()
    done_before = checkpoints.meta(checkpoints.latest(run.checkpoint))["step"]
    resumed = supervisor.run_trainer(argv(run, root), run, fsio.read_json(run.config), root)
    assert resumed["status"] == "completed"
    assert resumed["resumed_from_step"] == done_before
    assert resumed["per_example"]["values"] == expected["per_example"]["values"]
    assert resumed["metric"]["value"] == expected["metric"]["value"]


def test_nan_loss_stops_at_once_with_status_failed(tmp_path):
    run = write_config(tmp_path, {**HP, "lr": 1e6, "optimizer": "sgd", "epochs": 20})
    summary = supervisor.run_trainer(argv(run, tmp_path), run, fsio.read_json(run.config), tmp_path)
    assert summary["status"] == "failed"
    assert "diverged" in summary["error"]
    assert summary["steps"] < 30  # stopped at once, not after 20 epochs


def test_a_hung_trainer_is_killed_with_its_process_group(tmp_path):
    marker = f"autopilot-test-{os.getpid()}-{time.monotonic_ns()}"
    run = write_config(tmp_path, HP, max_seconds=0.5)
    # a trainer whose child ignores SIGTERM: only killing the whole group ends both
    script = f"trap '' TERM; (trap '' TERM; exec -a {marker} sleep 300) & exec -a {marker}-leader sleep 300"
    t0 = time.monotonic()
    summary = supervisor.run_trainer(["bash", "-c", script], run, fsio.read_json(run.config), tmp_path)
    assert summary["status"] == "timeout"
    assert "process group was killed" in summary["error"]
    assert time.monotonic() - t0 < 30
    time.sleep(0.2)
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    assert left == []


def test_a_trainer_that_breaks_the_contract_is_failed(tmp_path):
    run = write_config(tmp_path, HP)
    summary = supervisor.run_trainer([sys.executable, "-c", "print('hello')"], run, fsio.read_json(run.config),
                                     tmp_path)
    assert summary["status"] == "failed" and "without writing trainer_summary.json" in summary["error"]
    summary = supervisor.run_trainer([sys.executable, "-c", "raise SystemExit(3)"], run, fsio.read_json(run.config),
                                     tmp_path)
    assert summary["status"] == "failed" and "status 3" in summary["error"]
    summary = supervisor.run_trainer(["/nonexistent/trainer"], run, fsio.read_json(run.config), tmp_path)
    assert summary["status"] == "failed" and "could not start" in summary["error"]


def test_warm_start_forks_a_killable_trainer_with_the_same_result(tmp_path):
    """`autopilot train` in a fresh process (as in the workflow) forks its built-in trainers warm."""
    root = tmp_path
    run = write_config(root, HP)
    cold = supervisor.run_trainer(argv(run, root), run, fsio.read_json(run.config), root)
    code = ("import sys, json; from pathlib import Path; from autopilot import fsio; "
            "from autopilot.train import supervisor; "
            "from autopilot.paths import RunPaths; root = Path.cwd(); run = RunPaths(root / 'runs/s/00002'); "
            "argv = [sys.executable, '-m', 'autopilot.train.tasks.cnn_digits', "
            "'runs/s/00002/config.json', 'runs/s/00002']; "
            "assert supervisor.builtin_task(argv) == 'cnn_digits'; "
            "s = supervisor.run_trainer(argv, run, fsio.read_json(run.config), root); print(json.dumps(s))")
    warm_run = write_config(root, HP, run_id="00002")
    cfg = fsio.read_json(warm_run.config)
    cfg["seed"] = 7
    fsio.atomic_write_json(warm_run.config, cfg)
    env = {k: v for k, v in os.environ.items() if k != "AUTOPILOT_NO_WARMSTART"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    warm = fsio.read_json(warm_run.summary)
    assert warm["status"] == "completed"
    assert warm["per_example"]["values"] == cold["per_example"]["values"]
