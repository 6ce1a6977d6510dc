"""The GPUs of this machine, and one of them for each training run.

Snakemake counts GPUs (`resources: gpu=1` on the training rule, capped by `--resources gpu=N`) but does not say
which one a job gets. On a cluster the scheduler does (SLURM sets CUDA_VISIBLE_DEVICES for each job); on one
machine with several GPUs, the training command claims a free one and shows the trainer only that one. Without
GPUs, or with one, nothing is claimed and the cores (or the gpu count) alone limit how many runs train at once.

A GPU is claimed while some process holds a flock on <tmp>/autopilot-gpu-<id>.lock. The kernel drops a
flock when the last descriptor of it is closed, so a claim ends with its processes however they end: exit,
exception, SIGKILL, the OOM killer; no stale lock is ever left to clean. The run's processes hold it shared:
`autopilot train` claims (an exclusive flock succeeds only on a free GPU, and is turned into a shared one
under a machine-wide mutex so that no other claimer looks in between), and its trainer joins the claim
(`join_claim`, named by AUTOPILOT_GPU_CLAIM; a trainer started by Popen also inherits the descriptor,
`held_fds`), so the GPU stays claimed while a trainer outlives a killed `autopilot train`, however it was
started. A run that finds every GPU claimed looks again every POLL_SECONDS and takes the first that frees;
the lock files are shared by every user of the machine.

Usage:
    n = count()                  # visible GPUs (CUDA_VISIBLE_DEVICES, else nvidia-smi), 0 without
    with claim() as device:      # "1" (CUDA_VISIBLE_DEVICES is now "1"), or None with fewer than 2 GPUs
        subprocess.Popen(argv, pass_fds=held_fds())
    join_claim()                 # in the trainer: hold the run's claim as long as this process lives
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2  # between looks for a free GPU while all are claimed
CLAIM_ENV = "AUTOPILOT_GPU_CLAIM"  # the lock file of the run's claim, for its trainer to join
_held: dict[str, int] = {}  # device -> lock file descriptor, of the claims of this process
_joined: dict[str, int] = {}  # lock file -> descriptor, of the claims this trainer joined


def visible() -> list[str]:
    """Ids of the GPUs this process may use: CUDA_VISIBLE_DEVICES when set, else every GPU nvidia-smi lists."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def count() -> int:
    return len(visible())


def lock_path(device: str, lock_dir: Path | None) -> Path:
    return Path(lock_dir or tempfile.gettempdir()) / f"autopilot-gpu-{device}.lock"


@contextmanager
def _claim_mutex(lock_dir: Path | None) -> Iterator[None]:
    """One claimer at a time looks at the GPUs of this machine (briefly: a few non-blocking flocks)."""
    fd = _open_lock(lock_path("claims", lock_dir))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _open_lock(path: Path) -> int:
    """A descriptor of the lock file, created if need be. Read-only: flock needs no write access, so users
    share the file whoever made it (and O_CREAT on another user's file in sticky /tmp may be refused)."""
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:  # another process made it just now
        return os.open(path, os.O_RDONLY)
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o644)  # whatever the umask: the others must be able to open it
    return fd


def try_claim(device: str, lock_dir: Path | None = None) -> int | None:
    """A descriptor holding `device`'s lock (shared, for the run's trainer to join) when the device was free;
    None when some run holds it."""
    with _claim_mutex(lock_dir):
        fd = _open_lock(lock_path(device, lock_dir))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # succeeds only when no process holds the lock
        except BlockingIOError:
            os.close(fd)
            return None
        fcntl.flock(fd, fcntl.LOCK_SH)  # not atomic, but no other claimer looks until the mutex is free
        return fd


def join_claim() -> str | None:
    """In a trainer: hold the claim `autopilot train` made for this run (AUTOPILOT_GPU_CLAIM) until this
    process ends, so that the GPU is not given to another run while this one still trains on it."""
    path = os.environ.get(CLAIM_ENV)
    if not path or path in _joined:
        return None
    fd = _open_lock(Path(path))
    fcntl.flock(fd, fcntl.LOCK_SH)  # never waits: only claimers lock exclusively, and only a free device
    _joined[path] = fd  # kept open for the life of the process
    return path


def held_fds() -> tuple[int, ...]:
    """Descriptors of this process's claims: a child given them (pass_fds) keeps the claim while it lives."""
    return tuple(_held.values())


@contextmanager
def claim(lock_dir: Path | None = None) -> Iterator[str | None]:
    """Hold a free GPU of several (waiting for one if all are held) and make it the only one visible."""
    devices = visible()
    if len(devices) < 2:
        yield None
        return
    waited, fd = time.monotonic(), None
    while fd is None:
        for device in devices:
            fd = try_claim(device, lock_dir)
            if fd is not None:
                break
        else:
            time.sleep(POLL_SECONDS)
    saved = {name: os.environ.get(name) for name in ("CUDA_VISIBLE_DEVICES", CLAIM_ENV)}
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    os.environ[CLAIM_ENV] = str(lock_path(device, lock_dir))
    _held[device] = fd
    log.info("GPU %s of %s claimed (after %.1f s)", device, ",".join(devices), time.monotonic() - waited)
    try:
        yield device
    finally:
        for name, value in saved.items():
            _restore(name, value)
        del _held[device]
        os.close(fd)  # the claim ends with the last holder: this process, and the trainer that joined it


def _restore(name: str, saved: str | None) -> None:
    if saved is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = saved
