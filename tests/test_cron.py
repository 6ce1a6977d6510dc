"""bin/autopilot-cron: one instance at a time, stale Snakemake locks cleared, dated logs, nothing to do said."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import REPO, VENV_BIN, env, make_project
from ops_study import history, make_slow_project, training, wait_for

from autopilot.ops import cron
from autopilot.paths import Project


def with_cron_script(root: Path) -> Path:
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy2(REPO / "bin" / "autopilot-cron", root / "bin" / "autopilot-cron")
    return root


def run_cron(root: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """As cron runs it: from another folder (cron starts in $HOME), through the bin/ script."""
    return subprocess.run([str(root / "bin" / "autopilot-cron"), "--cores", "2"], cwd="/", env=env(),
                          capture_output=True, text=True, timeout=timeout)


def cron_log(root: Path) -> Path:
    return root / "runs" / "digits_cnn" / "logs" / f"cron-{dt.datetime.now():%Y-%m-%d}.log"


def test_a_second_caller_exits_0_saying_another_is_running(tmp_path):
    root = with_cron_script(make_project(tmp_path / "p"))
    with cron.single_instance(Project(root), "autopilot daemon") as other:
        assert other is None
        proc = run_cron(root)
    assert proc.returncode == 0, proc.stderr
    assert f"another instance is running: autopilot daemon (pid {os.getpid()}" in proc.stdout
    assert not (root / "runs" / "digits_cnn").exists()  # nothing ran
    with cron.single_instance(Project(root), "again") as other:
        assert other is None  # released


def test_nothing_to_do_is_said_and_exits_0(tmp_path):
    root = with_cron_script(make_project(tmp_path / "p"))
    (root / "control").mkdir()
    (root / "control" / "pause").touch()
    proc = run_cron(root)
    assert proc.returncode == 0 and "nothing to do: paused" in proc.stdout


def test_a_pid_file_left_by_a_killed_holder_does_not_block(tmp_path):
    project = Project(make_project(tmp_path / "p"))
    project.status_dir.mkdir()
    project.instance_pid.write_text('{"pid": 999999, "what": "autopilot cron", "since": "yesterday"}')
    with cron.single_instance(project, "autopilot cron") as other:
        assert other is None and f"pid {os.getpid()}" in cron.holder(project)


@pytest.mark.slow
def test_a_stale_snakemake_lock_is_cleared_but_a_live_one_is_left_alone(tmp_path):
    root = with_cron_script(make_slow_project(tmp_path / "p", steps=2000, step_seconds=0.02,
                                                       iterations=1))
    snake = subprocess.Popen([str(VENV_BIN / "snakemake"), "-c2", "--profile", "profiles/local"], cwd=root,
                             env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(training(root, "00001"), what="run 00001 to train")
    assert cron.snakemake_locks(root)

    # a live Snakemake owns the lock: cron says so and leaves it alone
    proc = run_cron(root)
    assert proc.returncode == 0 and f"Snakemake (pid {snake.pid}) is running in this project" in proc.stdout

    # killed without a chance to clean up (and its trainer with it): the lock stays, with no live owner
    os.killpg(snake.pid, signal.SIGKILL)
    snake.wait()
    pids = subprocess.run(["pgrep", "-f", "slow_trainer.py runs/digits_cnn"], capture_output=True, text=True)
    for pid in pids.stdout.split():
        os.kill(int(pid), signal.SIGKILL)
    assert cron.snakemake_locks(root) and cron.snakemake_owners(root) == []
    blocked = subprocess.run([str(VENV_BIN / "snakemake"), "-c1", "-n"], cwd=root, env=env(), capture_output=True,
                             text=True)
    assert "cannot be locked" in blocked.stdout + blocked.stderr  # the lock is real

    config = (root / "config" / "config.yaml").read_text().replace("steps: 2000", "steps: 5")
    (root / "config" / "config.yaml").write_text(config)
    (root / "runs" / "digits_cnn" / "00001" / "config.json").unlink()  # guard it again, with 5 steps
    proc = run_cron(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cleared a stale Snakemake lock" in proc.stdout and "log: " in proc.stdout
    assert [e["run_id"] for e in history(root)] == ["00001"]
    log = cron_log(root).read_text()
    assert "autopilot cron (pid" in log and "cleared a stale Snakemake lock" in log
    assert "snakemake exited with status 0" in log
    assert not cron.snakemake_locks(root)
