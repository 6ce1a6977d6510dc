"""One trainer per run folder: the lock refuses a second live supervisor and takes over from orphans."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
from test_supervisor import argv, gone, setup_run, starts

from autopilot import fsio, processes
from autopilot.errors import TrainerError
from autopilot.paths import RunPaths
from autopilot.train import runlock, supervisor

# A process that holds a run's lock the way an orphaned trainer does: flock taken, the lock file naming a
# supervisor and a trainer (itself, or another pid), and a child of its own in its process group (a data loader
# worker, say). argv: LOCK SUPERVISOR_PID HOST TRAINER_PID|self
ORPHAN = textwrap.dedent("""
    import fcntl, json, os, subprocess, sys, time
    from autopilot import processes
    path, supervisor, host, trainer = sys.argv[1:]
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    trainer = os.getpid() if trainer == "self" else int(trainer)
    info = {"supervisor": {"pid": int(supervisor), "start": processes.start_time(int(supervisor))},
            "trainer": {"pid": trainer, "start": processes.start_time(trainer)}, "host": host,
            "since": "2026-01-01T00:00:00+00:00"}
    os.write(fd, json.dumps(info).encode())
    print(worker.pid, flush=True)
    time.sleep(300)
""")


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def hold_like_an_orphan(run: RunPaths, supervisor_pid: int, host: str | None = None,
                        trainer: str = "self") -> tuple[subprocess.Popen, int]:
    """Start the orphan; return it and its worker's pid once it holds the lock."""
    orphan = subprocess.Popen([sys.executable, "-c", ORPHAN, str(run.trainer_lock), str(supervisor_pid),
                               host or socket.gethostname(), trainer], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    return orphan, int(orphan.stdout.readline())


@pytest.fixture
def quick_takeover(monkeypatch):
    monkeypatch.setattr(runlock, "TAKEOVER_SECONDS", 1.0)


def test_an_orphaned_trainer_of_a_dead_supervisor_is_killed_with_its_group_and_the_run_trains(tmp_path,
                                                                                               quick_takeover):
    run, config = setup_run(tmp_path)
    orphan, worker = hold_like_an_orphan(run, supervisor_pid=dead_pid())
    summary = supervisor.run_trainer(argv("slow"), run, config, tmp_path)
    assert summary["status"] == "completed" and starts(run) == 1
    assert orphan.wait(timeout=10) < 0 and gone(worker, within=2.0)


def test_what_still_holds_the_lock_of_a_dead_supervisor_is_killed(tmp_path, quick_takeover):
    """The recorded trainer is gone, but a process of another session still holds the lock open."""
    run, config = setup_run(tmp_path)
    orphan, worker = hold_like_an_orphan(run, supervisor_pid=dead_pid(), trainer=str(dead_pid()))
    summary = supervisor.run_trainer(argv("slow"), run, config, tmp_path)
    assert summary["status"] == "completed"
    assert orphan.wait(timeout=10) < 0
    os.kill(worker, 9)  # not a holder of the lock nor in the recorded group: left alone, ended here


@pytest.mark.parametrize("holder", ["live supervisor", "another host"])
def test_a_lock_whose_holder_cannot_be_shown_dead_is_never_taken(tmp_path, holder):
    run, config = setup_run(tmp_path)
    alive = subprocess.Popen(["sleep", "60"])
    orphan, worker = hold_like_an_orphan(run, supervisor_pid=alive.pid if holder == "live supervisor"
                                         else dead_pid(), host=None if holder == "live supervisor" else "elsewhere")
    try:
        with pytest.raises(TrainerError, match="is being trained by autopilot train .* a second trainer would write"):
            supervisor.run_trainer(argv("slow"), run, config, tmp_path)
        assert orphan.poll() is None and not run.summary.exists() and not (run.dir / "starts").exists()
    finally:
        for proc in (alive, orphan):
            proc.kill()
        os.kill(worker, 9)


def test_the_lock_file_says_who_holds_it_and_the_trainer_holds_it_too(tmp_path):
    run, _ = setup_run(tmp_path)
    with runlock.hold(run) as lock:
        info = fsio.read_json(run.trainer_lock)
        assert info["supervisor"] == {"pid": os.getpid(), "start": processes.start_time(os.getpid())}
        child = subprocess.Popen(["sleep", "60"], pass_fds=(lock.fd,))
        lock.trainer_started(child.pid)
        assert fsio.read_json(run.trainer_lock)["trainer"]["pid"] == child.pid
    assert processes.holders(run.trainer_lock) == [child.pid]  # the supervisor let go; its trainer has not
    child.kill()
    child.wait()
    with runlock.hold(run):  # free again
        assert fsio.read_json(run.trainer_lock)["trainer"] is None
