"""Checkpoints: written atomically, found again after a crash, pruned by a retention policy.

Layout: <run>/checkpoint/step-00000120/ holds `state.pt` (and whatever else a task saves there) plus
`meta.json` ({step, metric, time}); `meta.json` is written last and its presence marks a complete
checkpoint. A checkpoint is assembled in a hidden temp folder and renamed into place, so one killed
mid-write never replaces or shadows a good one; and a complete checkpoint is never replaced at all (a
second save of the same step keeps the first: a resumed run's state at a step is the same state).

Usage:
    save(ckpt_dir, step, {"model": m.state_dict(), "rng": rng_state(), ...}, metric=0.93)
    path = latest(ckpt_dir)          # None when there is none
    state = load(path); set_rng_state(state["rng"])
    prune(ckpt_dir, keep_last=2, goal="maximize")
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autopilot import fsio
from autopilot.errors import TrainerError

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
META_FILE = "meta.json"


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def save(
    ckpt_dir: Path,
    step: int,
    state: dict[str, Any] | None = None,
    metric: float | None = None,
    write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write a complete checkpoint for `step` and return its folder.

    `state` is saved with torch.save; `write_extra(folder)` may add files (e.g. save_pretrained).
    """
    import torch

    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = ckpt_dir / step_dir_name(step)
    if (final / META_FILE).exists():
        log.info("%s is complete already; it is kept as it is", final)
        return final
    tmp = Path(tempfile.mkdtemp(dir=ckpt_dir, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        if state is not None:
            with (tmp / STATE_FILE).open("wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
        if write_extra is not None:
            write_extra(tmp)
        for p in tmp.rglob("*"):
            if p.is_file():
                fsio.fsync_path(p)
        fsio.atomic_write_json(tmp / META_FILE, {"step": step, "metric": metric, "time": time.time()})
        if final.exists():  # a folder without meta.json: an incomplete leftover, never a good checkpoint
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsio.fsync_path(ckpt_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def complete(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints (with meta.json), oldest first; half-written temp folders are ignored."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if p.name.startswith("step-") and (p / META_FILE).exists()]
    return sorted(found, key=lambda p: p.name)


def latest(ckpt_dir: Path) -> Path | None:
    found = complete(ckpt_dir)
    return found[-1] if found else None


def meta(path: Path) -> dict:
    return fsio.read_json(Path(path) / META_FILE)


def load(path: Path, map_location: str = "cpu") -> dict[str, Any]:
    """The state saved at `path`. Only tensors, plain data and the RNG states' NumPy arrays are unpickled
    (weights_only=True): a checkpoint is data, so a state.pt that was tampered with cannot run code."""
    import torch

    state = Path(path) / STATE_FILE
    try:
        with torch.serialization.safe_globals(_rng_state_types()):
            return torch.load(state, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise TrainerError(f"{state}: not loaded: it holds more than tensors, plain data and random states "
                           f"({first[:300]}); delete that checkpoint folder to train from the one before") from None


def _rng_state_types() -> list:
    """What unpickling NumPy's legacy generator state (an ndarray of uint32) needs beyond torch's own types,
    under the names NumPy 1 and NumPy 2 pickle it with."""
    import numpy as np

    reconstruct = np.empty(0).__reduce__()[0]  # the function NumPy pickles arrays with
    return [np.ndarray, np.dtype, type(np.dtype(np.uint32)), reconstruct,
            (reconstruct, "numpy.core.multiarray._reconstruct"), (reconstruct, "numpy._core.multiarray._reconstruct")]


def best(ckpt_dir: Path, goal: str) -> Path | None:
    scored = [(meta(p)["metric"], p) for p in complete(ckpt_dir)]
    scored = [(m, p) for m, p in scored if m is not None]
    if not scored:
        return None
    pick = max if goal == "maximize" else min
    return pick(scored, key=lambda mp: mp[0])[1]


def prune(ckpt_dir: Path, keep_last: int, goal: str = "maximize") -> list[Path]:
    """Delete complete checkpoints except the last `keep_last` and the best; also sweep stale temp folders."""
    ckpt_dir = Path(ckpt_dir)
    found = complete(ckpt_dir)
    keep = set(found[-max(keep_last, 1):])
    best_path = best(ckpt_dir, goal)
    if best_path is not None:
        keep.add(best_path)
    removed = []
    for p in found:
        if p not in keep:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    for stale in ckpt_dir.glob(".step-*.tmp") if ckpt_dir.is_dir() else ():
        shutil.rmtree(stale, ignore_errors=True)
    return removed


def rng_state() -> dict[str, Any]:
    """Every random state a training step draws from: Python's, NumPy's, torch's CPU and CUDA generators."""
    import numpy as np
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() returned (the CUDA part only where CUDA is there now)."""
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
