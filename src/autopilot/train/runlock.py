"""One trainer per run folder: <run>/.trainer.lock, held by `autopilot train` and by the trainer it starts.

The supervisor takes an exclusive flock on the file for as long as it supervises the seed, and hands the
descriptor on to each trainer it starts (inherited through fork and exec, or sent over the warm pool's socket),
so the lock is held while the supervisor, its trainer, or a child that inherited it is alive. The file says who
holds it: the supervisor's pid and start time, the trainer's once started, the host. A second `autopilot train`
for the same folder then
  * refuses while that supervisor is alive (or runs on another host, where it cannot be checked);
  * otherwise (the supervisor died and left an orphaned trainer, say with its warm pool gone too) kills the
    recorded trainer's process group, then whatever still holds the file, and takes the lock.

Usage:
    with runlock.hold(run) as lock:
        proc = start(argv, ..., lock.fd)
        lock.trainer_started(proc.pid)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from autopilot import processes
from autopilot.errors import TrainerError
from autopilot.paths import RunPaths

log = logging.getLogger(__name__)

TAKEOVER_SECONDS = 5.0  # for a killed orphan to let go of the lock, per attempt


@dataclass
class RunLock:
    """The held lock of one run folder: `fd` goes to the trainer, which holds the lock with it."""

    path: Path
    fd: int

    def trainer_started(self, pid: int) -> None:
        self._record(trainer={"pid": pid, "start": processes.start_time(pid)})

    def _record(self, trainer: dict | None = None) -> None:
        """Who holds the lock, for a second supervisor (and for people: `cat <run>/.trainer.lock`)."""
        me = os.getpid()
        info = {"supervisor": {"pid": me, "start": processes.start_time(me)}, "trainer": trainer,
                "host": socket.gethostname(), "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        data = (json.dumps(info) + "\n").encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)


@contextlib.contextmanager
def hold(run: RunPaths) -> Iterator[RunLock]:
    """Hold the run folder's trainer lock, taking it over from an orphaned trainer; TrainerError if a live
    supervisor holds it."""
    run.dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run.trainer_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if not _try_lock(fd):
            _take_over(run, fd)
        lock = RunLock(run.trainer_lock, fd)
        lock._record()
        yield lock
    finally:
        os.close(fd)  # the lock ends here, unless a trainer still holds the descriptor


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _wait_lock(fd: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _take_over(run: RunPaths, fd: int) -> None:
    """The lock is held: refuse if its supervisor lives, else end the orphans that hold it and take it."""
    info = _holder(fd)
    supervisor = info.get("supervisor") or {}
    who = (f"autopilot train (pid {supervisor.get('pid')} on {info.get('host')}, since {info.get('since')})"
           if supervisor else "a process that does not say who it is")
    if info.get("host") != socket.gethostname() or processes.is_running(supervisor.get("pid"),
                                                                        supervisor.get("start")):
        raise TrainerError(
            f"{run.dir} is being trained by {who}: a second trainer would write into the same folder. "
            "Wait for it to end, or end it (`autopilot stop --now`, or kill that pid)")
    trainer = info.get("trainer")
    if trainer and processes.start_time(trainer["pid"]) in (None, trainer["start"]):
        # the leader is this very trainer, or gone while its group may live on (a live member keeps the id)
        log.warning("%s: the supervisor %s died; killing its orphaned trainer (process group %d)",
                    run.dir, who, trainer["pid"])
        processes.kill_group(trainer["pid"])
    if _wait_lock(fd, TAKEOVER_SECONDS):
        return
    left = processes.holders(run.trainer_lock)
    log.warning("%s: killing what still holds the trainer lock of a dead supervisor: pids %s", run.dir, left)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if not _wait_lock(fd, TAKEOVER_SECONDS):
        raise TrainerError(f"{run.trainer_lock} is still held (pids {processes.holders(run.trainer_lock)}) "
                           f"after its supervisor {who} died and its trainer was killed; end those processes")


def _holder(fd: int) -> dict:
    """What the lock file says about its holder; {} when it says nothing usable (it is being written)."""
    for _ in range(20):
        try:
            info = json.loads(os.pread(fd, 4096, 0))
            if isinstance(info, dict):
                return info
        except ValueError:
            pass
        time.sleep(0.05)  # a supervisor between taking the lock and writing who it is
    return {}
