"""The supervisor: hung trainers killed with their group, system kills retried, the user's failures not retried."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from helpers import make_project, snakemake
from ops_study import history, make_slow_project

from autopilot import fsio, guard, schemas
from autopilot.errors import TrainerError
from autopilot.journal import record
from autopilot.paths import Project, RunPaths
from autopilot.study import Study
from autopilot.train import supervisor

TRAINER = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    from pathlib import Path
    from autopilot.train.contract import TrainerRun

    mode = sys.argv[3]
    starts_file = Path(sys.argv[2]) / "starts"
    starts = int(starts_file.read_text()) + 1 if starts_file.exists() else 1
    starts_file.write_text(str(starts))
    if mode == "kill-always" or (mode == "kill-once" and starts == 1):
        os.kill(os.getpid(), signal.SIGKILL)         # what the OOM killer does
    if mode == "traceback":
        raise RuntimeError("a bug in the user's code")
    if mode == "straggler":                          # leaves a child behind and exits as if all went well
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        Path(sys.argv[2], "child.pid").write_text(str(child.pid))
    if mode == "hang":                               # ignores SIGTERM, and so does its child
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                  "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
        Path(sys.argv[2], "child.pid").write_text(str(child.pid))
        time.sleep(300)
    with TrainerRun.from_argv(sys.argv[1:3]) as run:
        if mode == "oom-once" and starts == 1:
            run.finish(None, status="oom", error="CUDA out of memory")
            sys.exit(1)
        if mode == "fail":
            run.finish(None, status="failed", error="the loss went the wrong way")
            sys.exit(1)
        run.begin_training(total_steps=int(os.environ.get("STEPS", "3")))
        for step in range(1, run.total_steps + 1):
            time.sleep(float(os.environ.get("STEP_SECONDS", "0")))
            run.step(step, loss=1.0 / step)
            if run.should_end:
                break
        run.end_training()
        run.finish(metric_value=0.5, per_example=[1.0, 0.0])
    if mode in ("no-nonce", "wrong-nonce"):          # a summary written without the contract's helper
        import json
        summary = json.loads((Path(sys.argv[2]) / "trainer_summary.json").read_text())
        if mode == "no-nonce":
            del summary["nonce"]
        else:
            summary["nonce"] = "0123456789abcdef"
        (Path(sys.argv[2]) / "trainer_summary.json").write_text(json.dumps(summary))
""")


@pytest.fixture(autouse=True)
def no_retry_wait(monkeypatch):
    monkeypatch.setattr(supervisor, "RETRY_WAIT_SECONDS", 0.0)


def setup_run(root: Path, max_seconds: float = 60) -> tuple[RunPaths, dict]:
    (root / "trainer.py").write_text(TRAINER)
    run = RunPaths(root / "runs" / "s" / "00001")
    run.dir.mkdir(parents=True)
    config = {**guard.config_document("00001", "s", "command", seed=7, hparams={},
                                      metric={"name": "acc", "goal": "maximize"}, max_seconds=max_seconds),
              "nonce": "5eed0001"}
    fsio.atomic_write_json(run.config, config)
    return run, config


def argv(mode: str) -> list[str]:
    return [sys.executable, "trainer.py", "runs/s/00001/config.json", "runs/s/00001", mode]


def starts(run: RunPaths) -> int:
    return int((run.dir / "starts").read_text())


def test_a_trainer_killed_by_the_system_is_retried_and_the_attempts_recorded(tmp_path):
    run, config = setup_run(tmp_path)
    summary = supervisor.run_trainer(argv("kill-once"), run, config, tmp_path, max_retries=2)
    assert summary["status"] == "completed" and summary["attempts"] == 2 and starts(run) == 2
    assert fsio.read_json(run.summary) == summary
    schemas.validate(summary, "trainer_summary")
    assert "attempt 1 was killed by signal SIGKILL: retrying" in run.train_log.read_text()


def test_retries_stop_after_max_retries(tmp_path):
    run, config = setup_run(tmp_path)
    summary = supervisor.run_trainer(argv("kill-always"), run, config, tmp_path, max_retries=2)
    assert summary["status"] == "failed" and summary["attempts"] == 3 and starts(run) == 3
    assert "status -9" in summary["error"]


def test_a_trainer_that_reports_out_of_memory_is_retried(tmp_path):
    run, config = setup_run(tmp_path)
    summary = supervisor.run_trainer(argv("oom-once"), run, config, tmp_path, max_retries=1)
    assert summary["status"] == "completed" and summary["attempts"] == 2


@pytest.mark.parametrize("mode", ["traceback", "fail"])
def test_failures_of_the_users_code_are_not_retried(tmp_path, mode):
    run, config = setup_run(tmp_path)
    summary = supervisor.run_trainer(argv(mode), run, config, tmp_path, max_retries=3)
    assert summary["status"] == "failed" and summary["attempts"] == 1 and starts(run) == 1
    expected = "a bug in the user's code" if mode == "traceback" else "the loss went the wrong way"
    assert expected in summary["error"]


def test_a_hung_trainer_ignoring_sigterm_is_killed_with_its_group_marked_timeout_and_not_retried(tmp_path,
                                                                                                monkeypatch):
    monkeypatch.setattr(supervisor, "grace_seconds", lambda max_seconds: 1.0)
    monkeypatch.setattr(supervisor, "TERM_WAIT_SECONDS", 1.0)
    run, config = setup_run(tmp_path, max_seconds=0.5)
    t0 = time.monotonic()
    summary = supervisor.run_trainer(argv("hang"), run, config, tmp_path, max_retries=2)
    took = time.monotonic() - t0
    limit = 0.5 + supervisor.grace_seconds(0.5)
    assert summary["status"] == "timeout" and summary["attempts"] == 1 and starts(run) == 1
    assert "process group was killed" in summary["error"]
    assert limit + supervisor.TERM_WAIT_SECONDS <= took < limit + 5  # SIGTERM ignored: SIGKILL after the wait
    child = int((run.dir / "child.pid").read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def test_time_paused_does_not_count_against_the_time_limit(tmp_path, monkeypatch):
    """A trainer held by control/pause for longer than its whole limit is not killed as `timeout`."""
    monkeypatch.setattr(supervisor, "grace_seconds", lambda max_seconds: 1.5)
    monkeypatch.setenv("STEPS", "3")
    monkeypatch.setenv("STEP_SECONDS", "0.05")
    run, config = setup_run(tmp_path, max_seconds=1.5)
    pause = tmp_path / "control" / "pause"
    pause.parent.mkdir()
    pause.touch()
    resume = threading.Timer(6.0, pause.unlink)  # twice the limit of 1.5 + 1.5 s
    resume.start()
    try:
        summary = supervisor.run_trainer(argv("slow"), run, config, tmp_path)
    finally:
        resume.cancel()
    assert summary["status"] == "completed", summary["error"]
    assert summary["wall_seconds"] < 5.0  # the trainer does not count the pause either
    assert fsio.read_json(tmp_path / "status" / "status.json")["phase"] == "finished"


def test_a_trainer_that_ignores_a_pause_is_still_killed_once_the_pause_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(supervisor, "grace_seconds", lambda max_seconds: 0.5)
    monkeypatch.setattr(supervisor, "TERM_WAIT_SECONDS", 0.5)
    run, config = setup_run(tmp_path, max_seconds=0.5)
    pause = tmp_path / "control" / "pause"
    pause.parent.mkdir()
    pause.touch()
    threading.Timer(1.5, pause.unlink).start()
    t0 = time.monotonic()
    summary = supervisor.run_trainer(argv("hang"), run, config, tmp_path)  # hangs without looking at control/
    assert summary["status"] == "timeout" and "paused" in summary["error"]
    assert 1.5 + 1.0 <= time.monotonic() - t0 < 1.5 + 1.0 + 5


def test_sigterm_to_the_supervisor_kills_the_trainer_and_writes_no_summary(tmp_path):
    """`autopilot train` told to stop (the daemon's SIGTERM) takes its trainer down; the run resumes later."""
    run, config = setup_run(tmp_path)
    code = ("import sys; from pathlib import Path; from autopilot import fsio; "
            "from autopilot.train import supervisor; "
            "from autopilot.paths import RunPaths; run = RunPaths(Path('runs/s/00001')); "
            f"supervisor.run_trainer({argv('slow')!r}, run, fsio.read_json(run.config), Path.cwd())")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "STEPS": "1000", "STEP_SECONDS": "0.05"})
    status = tmp_path / "status" / "status.json"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (status.exists() and fsio.read_json(status)["step"] >= 2):
        time.sleep(0.05)
    trainer_pid = int(subprocess.run(["pgrep", "-f", "trainer.py runs/s/00001/config.json"], capture_output=True,
                                     text=True).stdout.split()[0])
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "Interrupted: stopped by SIGTERM" in err
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(trainer_pid, 0)
    assert not run.summary.exists()
    assert fsio.read_json(status)["phase"] == "interrupted"  # status no longer claims that it trains


def test_the_journal_records_the_attempts(tmp_path):
    root = make_project(tmp_path / "p")
    study = Study.load(Project(root), root / "config" / "config.yaml")
    trained, config = setup_run(root)  # trained under runs/s/, then filed as a run of the study
    summary = supervisor.run_trainer(argv("kill-once"), trained, config, root, max_retries=1)
    run = study.paths.run("00001")
    run.dir.mkdir(parents=True)
    fsio.atomic_write_json(run.config, config)
    fsio.atomic_write_json(run.summary, summary)
    verdict = {"verdict": "baseline", "value": 0.5, "seed_values": [0.5], "compared_to": None, "delta": None,
               "interval": None, "reason": "first", "judged_at": "2026-01-01T00:00:00+00:00"}
    entry = record.build_entry(study, run, verdict)
    assert entry["attempts"] == 2
    schemas.validate(entry, "history_entry")
    assert "- attempts: 2 (the system killed the trainer" in record.labbook_section(study, entry, "first")


@pytest.mark.slow
def test_in_the_loop_a_hung_run_is_marked_timeout_and_the_loop_goes_on(tmp_path):
    root = make_slow_project(tmp_path / "p", iterations=2, budget={"max_seconds_per_run": 0.5},
                             baseline={"steps": 3, "step_seconds": 0.01, "quality": 0.7, "hang_run": "00001"})
    snakemake(root)
    first, second = history(root)
    assert (first["run_id"], first["status"], first["verdict"]) == ("00001", "timeout", "failed")
    assert "process group was killed" in first["error"]
    assert (second["run_id"], second["status"], second["verdict"]) == ("00002", "completed", "baseline")


# --- no duplicate trainers -------------------------------------------------------------------------------------
def gone(pid: int, within: float = 10.0) -> bool:
    """The process ended (a zombie waiting for a parent that does not reap counts as ended)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def supervise_in_subprocess(root: Path, mode: str = "slow", **env) -> subprocess.Popen:
    """`autopilot train` of run 00001 in a process of its own, that a test can kill."""
    code = ("import sys; from pathlib import Path; from autopilot import fsio; "
            "from autopilot.train import supervisor; from autopilot.paths import RunPaths; "
            "run = RunPaths(Path('runs/s/00001')); "
            f"supervisor.run_trainer({argv(mode)!r}, run, fsio.read_json(run.config), Path.cwd())")
    return subprocess.Popen([sys.executable, "-c", code], cwd=root, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "STEPS": "1000", "STEP_SECONDS": "0.05", **env})


def wait_for_trainer(root: Path, run: RunPaths) -> int:
    """The pid of the trainer once it trains (from the run's lock file, which names it)."""
    status = root / "status" / "status.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (status.exists() and fsio.read_json(status)["step"] >= 2):
        time.sleep(0.05)
    return fsio.read_json(run.trainer_lock)["trainer"]["pid"]


def test_a_trainer_dies_with_its_supervisor_even_when_that_is_killed(tmp_path):
    run, _ = setup_run(tmp_path)
    proc = supervise_in_subprocess(tmp_path)
    trainer = wait_for_trainer(tmp_path, run)
    proc.kill()  # SIGKILL: no handler runs, nothing is cleaned up
    proc.wait()
    assert gone(trainer), "the trainer trains on with nobody waiting for it"


def test_a_second_supervisor_in_the_same_run_folder_is_refused(tmp_path):
    run, config = setup_run(tmp_path)
    first = supervise_in_subprocess(tmp_path, STEPS="40")
    wait_for_trainer(tmp_path, run)
    with pytest.raises(TrainerError, match=rf"is being trained by autopilot train \(pid {first.pid} on "):
        supervisor.run_trainer(argv("slow"), run, config, tmp_path)
    assert first.wait(timeout=60) == 0, first.stderr.read()
    assert starts(run) == 1  # the refused supervisor started no trainer
    assert fsio.read_json(run.summary)["status"] == "completed"
    supervisor.run_trainer(argv("fail"), run, config, tmp_path)  # once the first is done, the lock is free


def test_the_stragglers_of_a_trainer_that_ended_are_killed(tmp_path):
    run, config = setup_run(tmp_path)
    summary = supervisor.run_trainer(argv("straggler"), run, config, tmp_path)
    assert summary["status"] == "completed"
    assert gone(int((run.dir / "child.pid").read_text()), within=2.0)


# --- a summary is bound to its attempt -------------------------------------------------------------------------
def test_the_summary_echoes_the_nonce_of_its_config(tmp_path, monkeypatch):
    monkeypatch.setattr(supervisor, "grace_seconds", lambda max_seconds: 0.5)
    monkeypatch.setattr(supervisor, "TERM_WAIT_SECONDS", 0.5)
    run, config = setup_run(tmp_path)
    assert supervisor.run_trainer(argv("slow"), run, config, tmp_path)["nonce"] == "5eed0001"
    killed = supervisor.run_trainer(argv("hang"), run, {**config, "max_seconds": 0.1}, tmp_path)
    assert killed["status"] == "timeout" and killed["nonce"] == "5eed0001"  # the supervisor's own summary too


def test_a_summary_without_a_nonce_is_vouched_for_and_one_for_another_config_is_refused(tmp_path):
    run, config = setup_run(tmp_path)
    plain = supervisor.run_trainer(argv("no-nonce"), run, config, tmp_path)
    assert plain["status"] == "completed" and plain["nonce"] == "5eed0001"  # no other writer could have written it
    foreign = supervisor.run_trainer(argv("wrong-nonce"), run, config, tmp_path)
    assert foreign["status"] == "failed" and "answers another config.json" in foreign["error"]
    assert fsio.read_json(run.summary)["nonce"] == "5eed0001"
