"""`autopilot daemon`: stop conditions with an injected clock, and a real daemon under SIGTERM and SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import VENV_BIN, env, make_project
from ops_study import entry, history, make_slow_project, training, wait_for, write_history

from autopilot import fsio, holds, ledger
from autopilot.ops import control, daemon
from autopilot.ops.cron import Invocation
from autopilot.paths import Project
from autopilot.study import Study


class ScriptedDaemon(daemon.Daemon):
    """A daemon whose workflow invocation appends the next scripted verdict to the ledger instead."""

    def __init__(self, root: Path, verdicts: list[str], clock: float = 1000.0):
        super().__init__(Project(root), Invocation(), clock=lambda: clock)
        self.verdicts = list(verdicts)
        self.invoked = 0

    def invoke(self, study: Study) -> int:
        self.invoked += 1
        entries = ledger.read_history(study.paths)
        verdict = self.verdicts.pop(0)
        value = None if verdict == "failed" else 0.8
        entries.append(entry(f"{len(entries) + 1:05d}", verdict, value))
        write_history(study.project.root, entries, curves=False)
        return 0

    def run_passes(self, limit: int = 50) -> daemon.Pass:
        for _ in range(limit):
            step = self.loop()
            if step.exit or step.wait:
                return step
        raise AssertionError("the daemon neither stopped nor waited")


def project(tmp_path: Path, **settings) -> Path:
    return make_project(tmp_path / "p", daemon={"poll_seconds": 7, **settings}, budget={"max_runs": 100})


def test_the_run_budget_stops_the_daemon(tmp_path):
    root = make_project(tmp_path / "p", budget={"max_runs": 3})
    d = ScriptedDaemon(root, ["baseline", "improved", "improved", "improved"])
    step = d.run_passes()
    assert step.exit == "run budget spent: 3 of budget.max_runs=3 runs done" and d.invoked == 3


def test_the_training_time_budget_stops_the_daemon(tmp_path):
    root = make_project(tmp_path / "p", budget={"max_total_seconds": 30})  # each scripted run trains 12.5 s
    d = ScriptedDaemon(root, ["baseline", "improved", "improved", "improved"])
    assert d.run_passes().exit.startswith("time budget spent: 38s") and d.invoked == 3


def test_the_wall_clock_budget_follows_the_injected_clock(tmp_path):
    root = project(tmp_path, max_wall_seconds=3600)
    d = ScriptedDaemon(root, ["baseline", "improved"], clock=1000.0)
    assert d.loop(now=1000.0 + 3599).exit is None and d.invoked == 1
    step = d.loop(now=1000.0 + 3600)
    assert step.exit == "wall-clock budget spent: the daemon ran 3600s of daemon.max_wall_seconds=3600s"
    assert d.invoked == 1


def test_a_plateau_stops_the_daemon(tmp_path):
    root = project(tmp_path, plateau_runs=3)
    d = ScriptedDaemon(root, ["baseline", "inconclusive", "improved", "regressed", "inconclusive", "inconclusive",
                              "improved"])
    step = d.run_passes()
    assert step.exit == "plateau: none of the last 3 runs improved (run 00003 is still the best; daemon.plateau_runs=3)"
    assert d.invoked == 6


def test_a_failure_spike_pauses_the_study_with_a_reason_until_resume(tmp_path):
    root = project(tmp_path, failure_window=4, max_failures=2)
    d = ScriptedDaemon(root, ["baseline", "failed", "improved", "failed", "failed", "failed", "failed", "failed"])
    step = d.run_passes()
    assert step == daemon.Pass(wait=7) and d.invoked == 5  # 3 of the last 4 failed: more than 2
    reason = holds.study_pause_reason(Project(root).study("digits_cnn"))
    assert reason.startswith("3 of the last 4 runs failed (runs 00002, 00004, 00005; daemon.max_failures=2")
    assert "CUDA error: boom" in reason
    labbook = (root / "runs" / "digits_cnn" / "labbook.md").read_text()
    assert "## Paused by the failure-rate check" in labbook and reason in labbook
    assert fsio.read_json(root / "status" / "daemon.json")["state"] == "waiting"
    assert d.loop() == daemon.Pass(wait=7) and d.invoked == 5  # still paused: no run starts
    control.resume(Project(root), Project(root).study("digits_cnn"))
    assert d.run_passes().wait == 7 and d.invoked == 8  # the old failures do not count again: 3 new ones do


def test_pause_makes_the_daemon_wait_and_stop_makes_it_exit(tmp_path):
    root = project(tmp_path)
    d = ScriptedDaemon(root, ["baseline"])
    (root / "control").mkdir()
    (root / "control" / "pause").touch()
    assert d.loop() == daemon.Pass(wait=7) and d.invoked == 0
    (root / "control" / "stop-after-run").touch()
    assert d.loop().exit.startswith("stop after the current run requested") and d.invoked == 0


def test_signal_flags_end_the_daemon_at_the_next_pass(tmp_path):
    root = project(tmp_path)
    d = ScriptedDaemon(root, ["baseline"] * 3)
    d.on_sigint(signal.SIGINT, None)
    assert (d.finish_requested, d.stop_requested) == (True, False)
    assert d.loop().exit == "SIGINT: stopped after the run" and d.invoked == 0
    d.on_sigint(signal.SIGINT, None)  # a second Ctrl-C: now
    assert d.stop_requested and d.loop().exit == "SIGTERM: stopped now"


def test_a_workflow_that_keeps_failing_stops_the_daemon(tmp_path):
    root = project(tmp_path)
    d = ScriptedDaemon(root, [])
    d.invoke = lambda study: 1
    assert d.loop() == daemon.Pass(wait=7) and d.loop() == daemon.Pass(wait=7)
    assert d.loop().exit.startswith("the workflow failed 3 times in a row")


# --- a real daemon ------------------------------------------------------------------------------------------
def start_daemon(root: Path) -> subprocess.Popen:
    return subprocess.Popen([str(VENV_BIN / "autopilot"), "daemon", "--cores", "2"], cwd=root, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def trainer_processes(root: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", "slow_trainer.py"], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if Path(f"/proc/{p}/cwd").exists() and Path(f"/proc/{p}/cwd").resolve() == root]


@pytest.mark.slow
def test_sigterm_stops_now_sigint_finishes_the_run_and_the_run_budget_ends_it(tmp_path):
    root = make_slow_project(tmp_path / "p", steps=150, step_seconds=0.02, budget={"max_runs": 2})

    # SIGTERM while run 00001 trains: the daemon, Snakemake and the trainer are gone within seconds
    proc = start_daemon(root)
    wait_for(training(root, "00001"), what="run 00001 to train")
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    out, _ = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 15 and proc.returncode == 0, out
    assert "autopilot daemon stopped: SIGTERM: stopped now" in out
    assert trainer_processes(root) == [] and history(root) == []
    assert list((root / ".snakemake" / "locks").glob("*.lock")) == []
    assert fsio.read_json(root / "status" / "daemon.json")["state"] == "exited"

    # SIGINT while the interrupted run trains again: it finishes (judged, journaled), and no new run starts
    assert fsio.read_json(root / "status" / "status.json")["phase"] == "interrupted"
    since = time.time()
    proc = start_daemon(root)
    wait_for(training(root, "00001", since=since), what="run 00001 to train again")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert "autopilot daemon stopped: SIGINT: stopped after the run" in out
    assert [e["run_id"] for e in history(root)] == ["00001"] and not (root / "runs" / "digits_cnn" / "00002").exists()

    # left alone, it runs until the run budget is spent
    proc = start_daemon(root)
    out, _ = proc.communicate(timeout=120)
    assert "stopped: run budget spent: 2 of budget.max_runs=2" in out
    assert [e["run_id"] for e in history(root)] == ["00001", "00002"]
    logs = list((root / "runs" / "digits_cnn" / "logs").glob("daemon-*.log"))
    assert len(logs) == 1 and "snakemake exited with status 0" in logs[0].read_text()
    assert json.loads(subprocess.run([str(VENV_BIN / "autopilot"), "status", "--json"], cwd=root, env=env(),
                                     capture_output=True, text=True).stdout)["daemon"]["alive"] is False


@pytest.mark.slow
def test_a_second_daemon_refuses_to_start(tmp_path):
    root = make_slow_project(tmp_path / "p", steps=400, step_seconds=0.02)
    (root / "control").mkdir()
    (root / "control" / "pause").touch()  # the first daemon waits, holding the instance lock
    first = start_daemon(root)
    wait_for(lambda: (root / "status" / "daemon.json").exists(), what="the first daemon")
    second = subprocess.run([str(VENV_BIN / "autopilot"), "daemon"], cwd=root, env=env(), capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 1 and "another instance is running: autopilot daemon (pid" in second.stderr
    first.send_signal(signal.SIGINT)
    assert "SIGINT" in first.communicate(timeout=30)[0]
    assert os.path.exists(root / "status" / "instance.lock") and not (root / "status" / "instance.pid").exists()
