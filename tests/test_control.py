"""pause, resume, stop, stop --now, skip: the files, what they say, and that trainer and loop honour them."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import VENV_BIN, env, snakemake
from ops_study import SLOW_TRAINER, history, make_slow_project, read_status, training, wait_for

from autopilot import fsio, guard, holds
from autopilot.cli import main
from autopilot.ops import control
from autopilot.paths import Project, RunPaths
from autopilot.study import Study
from autopilot.train import supervisor


def write_status(root: Path, phase: str = "train", age: float = 1.0, step: int = 5) -> None:
    fsio.atomic_write_json(root / "status" / "status.json", {
        "phase": phase, "study": "s", "run": "00003", "seed_index": 0, "step": step, "total_steps": 10,
        "loss": 0.5, "eta_seconds": 3.0, "heartbeat": time.time() - age})


def cli(root: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--root", str(root), *args])
    assert result.exit_code == 0, result.output
    return result.output


# --- the files and the messages -------------------------------------------------------------------------
def test_pause_and_resume_write_and_remove_the_file_and_say_what_happens(tmp_path):
    project = Project(tmp_path)
    assert "no run is training now" in cli(tmp_path, "pause")
    assert project.control_file("pause").exists()
    assert "already paused" in cli(tmp_path, "pause")
    write_status(tmp_path, phase="paused")
    out = cli(tmp_path, "resume")
    assert "run 00003 (seed 0, step 5 of 10) goes on" in out and not project.control_file("pause").exists()
    assert "nothing to resume" in cli(tmp_path, "resume")


def test_stop_lets_the_run_finish_and_stop_now_ends_it_at_the_next_step(tmp_path):
    project = Project(tmp_path)
    write_status(tmp_path)
    out = cli(tmp_path, "stop")
    assert "run 00003 (seed 0, step 5 of 10) trains to its end" in out and "daemon exits" in out
    assert project.control_file("stop-after-run").exists() and not project.control_file("stop").exists()
    out = cli(tmp_path, "stop", "--now")
    assert "ends at its next step as `stopped`" in out and project.control_file("stop").exists()
    assert "lifted control/stop, control/stop-after-run" in cli(tmp_path, "resume")
    assert not project.control_file("stop").exists() and not project.control_file("stop-after-run").exists()


def test_skip_names_the_run_it_ends_or_warns_that_none_is_training(tmp_path):
    write_status(tmp_path, age=control.STALE_AFTER_SECONDS + 5)  # a stale heartbeat: nobody is training
    assert "no run is training now, so the next run that trains" in cli(tmp_path, "skip")
    assert "already pending" in cli(tmp_path, "skip")
    Project(tmp_path).control_file("skip").unlink()
    write_status(tmp_path)
    assert "run 00003 (seed 0, step 5 of 10) ends at its next step as `skipped`" in cli(tmp_path, "skip")


def test_the_loop_is_held_by_pause_stop_after_run_and_the_studys_own_pause(tmp_path):
    root = make_slow_project(tmp_path / "p")
    study = Study.load(Project(root), root / "config" / "config.yaml")
    assert holds.halt_reason(study, []) is None
    for name, expected in (("pause", "paused"), ("stop-after-run", "stop after the current run requested")):
        study.project.control_file(name).parent.mkdir(exist_ok=True)
        study.project.control_file(name).touch()
        assert expected in holds.halt_reason(study, [])
        study.project.control_file(name).unlink()
    control.pause_study(study, "6 of the last 10 runs failed", by="the failure-rate check", last_run="00010")
    assert "study paused: 6 of the last 10 runs failed" in holds.halt_reason(study, [])
    assert "## Paused by the failure-rate check" in study.paths.labbook.read_text()
    assert "the study's own pause" in control.resume(study.project, study.paths)
    assert holds.halt_reason(study, []) is None
    record = fsio.read_json(study.paths.paused)
    assert record["resumed_at"] and record["last_run"] == "00010"  # kept: these failures are not counted again


# --- a real trainer honours them ----------------------------------------------------------------------------
def start_trainer(root: Path, steps: int = 400, step_seconds: float = 0.02) -> tuple[threading.Thread, dict]:
    """The slow trainer under the supervisor, in a thread; returns the thread and a dict that gets the summary."""
    (root / "slow_trainer.py").write_text(SLOW_TRAINER)
    run = RunPaths(root / "runs" / "s" / "00003")
    run.dir.mkdir(parents=True, exist_ok=True)
    config = guard.config_document("00003", "s", "command", seed=1,
                                   hparams={"steps": steps, "step_seconds": step_seconds, "quality": 0.7},
                                   metric={"name": "acc", "goal": "maximize"}, max_seconds=60)
    fsio.atomic_write_json(run.config, config)
    out: dict = {}
    argv = [sys.executable, "slow_trainer.py", "runs/s/00003/config.json", "runs/s/00003"]
    thread = threading.Thread(target=lambda: out.update(supervisor.run_trainer(argv, run, config, root)))
    thread.start()
    wait_for(lambda: run.metrics.exists() and metric_lines(root) >= 2, what="the trainer to start")
    return thread, out


def metric_lines(root: Path) -> int:
    return len((root / "runs" / "s" / "00003" / "metrics.jsonl").read_text().splitlines())


def test_a_real_trainer_holds_while_paused_and_goes_on_after_resume(tmp_path):
    project = Project(tmp_path)
    thread, out = start_trainer(tmp_path, steps=200)
    control.pause(project)
    wait_for(lambda: (read_status(tmp_path) or {}).get("phase") == "paused", what="phase paused")
    held_at = metric_lines(tmp_path)
    time.sleep(1.0)
    assert metric_lines(tmp_path) in (held_at, held_at + 1)  # at most the step that was under way
    assert read_status(tmp_path)["heartbeat"] > time.time() - 2  # still beating while paused
    control.stop(project)  # stop after the run: must not end this run
    control.resume(project)  # ...and resume lifts it again, with the pause
    thread.join(timeout=60)
    assert out["status"] == "completed" and out["steps"] == 200


@pytest.mark.parametrize("action, status", [("stop-now", "stopped"), ("skip", "skipped")])
def test_a_real_trainer_ends_at_the_next_step_on_stop_now_and_skip(tmp_path, action, status):
    project = Project(tmp_path)
    thread, out = start_trainer(tmp_path)
    t0 = time.monotonic()
    control.stop(project, now=True) if action == "stop-now" else control.skip(project)
    thread.join(timeout=60)
    assert out["status"] == status and out["steps"] < 400
    assert time.monotonic() - t0 < 5
    assert project.control_file("skip").exists() is False  # a skip is used up by the run it ended


def test_a_real_trainer_trains_to_its_end_after_stop_without_now(tmp_path):
    project = Project(tmp_path)
    thread, out = start_trainer(tmp_path, steps=100)
    control.stop(project)
    thread.join(timeout=60)
    assert out["status"] == "completed" and out["steps"] == 100


# --- the loop honours them ------------------------------------------------------------------------------
def run_files(root: Path, run: str) -> set[str]:
    folder = root / "runs" / "digits_cnn" / run
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def start_snakemake(root: Path, iterations: int) -> subprocess.Popen:
    return subprocess.Popen([str(VENV_BIN / "snakemake"), "-c2", "--profile", "profiles/local", "--config",
                             f"iterations={iterations}"], cwd=root, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_the_loop_starts_no_run_while_paused_and_goes_on_after_resume(tmp_path):
    root = make_slow_project(tmp_path / "p", steps=4)
    cli(root, "pause")
    proc = snakemake(root, "--config", "iterations=1")
    assert "paused" in proc.stderr and history(root) == [] and run_files(root, "00001") == set()
    cli(root, "resume")
    snakemake(root, "--config", "iterations=1")
    assert [e["verdict"] for e in history(root)] == ["baseline"]


@pytest.mark.slow
def test_stop_lets_the_current_run_finish_and_starts_no_new_one(tmp_path):
    root = make_slow_project(tmp_path / "p", steps=30)
    proc = start_snakemake(root, iterations=2)
    wait_for(training(root, "00001"), what="run 00001 to train")
    assert "trains to its end" in cli(root, "stop")
    proc.communicate(timeout=120)
    first = history(root)[0]
    assert first["run_id"] == "00001" and first["verdict"] == "baseline" and len(first["seed_values"]) == 2
    assert "config.json" not in run_files(root, "00002")  # the guard let no second run through


@pytest.mark.slow
def test_skip_ends_the_current_run_and_the_loop_goes_on(tmp_path):
    root = make_slow_project(tmp_path / "p", steps=30)
    proc = start_snakemake(root, iterations=2)
    wait_for(training(root, "00001"), what="run 00001 to train")
    cli(root, "skip")
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output[-3000:]
    assert [(e["run_id"], e["verdict"]) for e in history(root)] == [("00001", "skipped"), ("00002", "baseline")]


@pytest.mark.slow
def test_stop_now_ends_the_current_run_and_starts_no_new_one(tmp_path):
    root = make_slow_project(tmp_path / "p", steps=200)
    proc = start_snakemake(root, iterations=2)
    wait_for(training(root, "00001"), what="run 00001 to train")
    cli(root, "stop", "--now")
    proc.communicate(timeout=120)
    assert [(e["run_id"], e["verdict"]) for e in history(root)] == [("00001", "stopped")]
    assert history(root)[0]["status"] == "stopped"
    assert "config.json" not in run_files(root, "00002")
