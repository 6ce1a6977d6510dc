"""The free-space guard: a run may start only with room for its checkpoints on the runs' file system.

A full disk shows up as failed runs (a checkpoint that cannot be written), then as a failure spike; holding the
study first says what is wrong. The threshold is retention.min_free_gib, or by default twice the size of the
last run's checkpoints before retention reduced them (runs/<study>/retention.jsonl), and at least 1 GiB.

This module only measures and says why; the hold itself (paused.json, the labbook, notify) is
autopilot.ops.control.hold_if_disk_low, which the checks before a run call.

Usage:
    reason = free_space_hold(study)          # None, or the sentence `autopilot status` shows
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autopilot import fsio
from autopilot.study import Study

GIB = 2**30
MIN_DEFAULT_BYTES = GIB


def last_run_checkpoint_bytes(study: Study) -> tuple[str, int] | None:
    """(run id, bytes) of the latest run whose checkpoints retention measured before reducing them."""
    first: dict[str, int] = {}
    for line in fsio.iter_jsonl(study.paths.retention_log):
        if line["what"] == "run":
            first.setdefault(line["run_id"], line["checkpoint_bytes"])
    if not first:
        return None
    run_id = max(first)
    return run_id, first[run_id]


def threshold(study: Study) -> tuple[int, str]:
    """Bytes that must be free before a run starts, and where the number comes from."""
    setting = study.settings.retention.min_free_gib
    if setting is not None:
        return int(setting * GIB), f"retention.min_free_gib={setting:g}"
    last = last_run_checkpoint_bytes(study)
    if last is not None and 2 * last[1] > MIN_DEFAULT_BYTES:
        return 2 * last[1], f"twice the {size(last[1])} of run {last[0]}'s checkpoints"
    return MIN_DEFAULT_BYTES, "the 1 GiB minimum (retention.min_free_gib: null)"


def runs_folder(study: Study) -> Path:
    """The folder whose file system the runs write to (the nearest one that exists)."""
    for folder in (study.paths.dir, study.project.runs, study.project.root):
        if folder.is_dir():
            return folder
    return study.project.root


def free_space_hold(study: Study, usage: Callable[[Path], Any] = shutil.disk_usage) -> str | None:
    """Why no run may start for lack of disk space, or None when there is room."""
    folder = runs_folder(study)
    free = usage(folder).free
    need, why = threshold(study)
    if free >= need:
        return None
    return (f"disk low: {size(free)} free on the file system of {folder}, below the {size(need)} a run needs ({why}); "
            "free some space (or lower retention.keep_last_runs or retention.min_free_gib) and the study goes on "
            "by itself")


def size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"
