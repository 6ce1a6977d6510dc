"""The reproducibility manifest written into every trainer summary: seed, versions, commit, data, device."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import platform
import socket
import subprocess
import sys
from pathlib import Path

PACKAGES = ("autopilot", "torch", "numpy", "scikit-learn", "transformers", "peft", "optuna", "snakemake")


@functools.cache
def git_commit(root: Path) -> str | None:
    """HEAD of the checkout at `root`, with `-dirty` when tracked files differ; None outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def hash_arrays(*arrays) -> str:
    """sha256 over the raw bytes of numpy arrays (or bytes), in order."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(a if isinstance(a, bytes) else a.tobytes())
    return h.hexdigest()


def build(seed: int, device: str, data_hash: str | None, root: Path) -> dict:
    return {
        "seed": seed,
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "git_commit": git_commit(root.resolve()),
        "data_hash": data_hash,
        "device": device,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
    }
