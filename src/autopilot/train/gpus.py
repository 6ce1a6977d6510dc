"""The GPUs of this machine, and one of them for each training run.

Snakemake counts GPUs (`resources: gpu=1` on the training rule, capped by `--resources gpu=N`) but does not say
which one a job gets. On a cluster the scheduler does (SLURM sets CUDA_VISIBLE_DEVICES for each job); on one
machine with several GPUs, the training command claims a free one with a lock file and shows the trainer only
that one. Without GPUs nothing is claimed and the cores alone limit how many runs train at once.

Usage:
    n = count()                  # visible GPUs (CUDA_VISIBLE_DEVICES, else nvidia-smi), 0 without
    with claim() as device:      # "1" (CUDA_VISIBLE_DEVICES is now "1"), or None with fewer than 2 GPUs
        ...
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0


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
def claim(lock_dir: Path | None = None) -> Iterator[str | None]:
    """Hold a free GPU of several (waiting for one if all are held) and make it the only one visible."""
    devices = visible()
    if len(devices) < 2:
        yield None
        return
    while True:
        for device in devices:
            lock = FileLock(str(lock_path(device, lock_dir)))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            saved = os.environ.get("CUDA_VISIBLE_DEVICES")
            os.environ["CUDA_VISIBLE_DEVICES"] = device
            log.info("GPU %s of %s claimed", device, ",".join(devices))
            try:
                yield device
            finally:
                _restore(saved)
                lock.release()
            return
        time.sleep(POLL_SECONDS)


def _restore(saved: str | None) -> None:
    if saved is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = saved
