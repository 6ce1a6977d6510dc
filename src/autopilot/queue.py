"""The dataset queue: validated files wait in queue/<priority>/, oldest first, until a trainer claims one.

    queue/{high,normal,low}/<ms>-<seq>-<original>.jsonl   an accepted file, byte-identical to what was dropped
    queue/{high,normal,low}/<ms>-<seq>-<original>.report.json   its ingest report (spec, level, counts, sha256)
    queue/processing/   claimed by a trainer (entry and report move together)
    queue/done/         trained on
    queue/failed/<name> + <name minus .jsonl>.reason.json   rejected, with the findings that rejected it

Entry names start with the ingest time in milliseconds (13 digits) and a sequence number, so `sorted()` is
first-in-first-out within a priority, like huey's FileStorage (`'%04x-%012x'`). A claim is one `os.rename`
into processing/: two trainers never get the same file, and a crash leaves the file in one place only.

Usage:
    entry = queue.claim_next(project)   # queue/processing/<name>.jsonl, or None
    ...train on it...
    queue.finish(project, entry)        # -> queue/done/
    queue.requeue(project, entry)       # or back to its priority folder, under its name
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from autopilot import fsio
from autopilot.errors import AutopilotError, QueueError
from autopilot.paths import PRIORITIES, Project

log = logging.getLogger(__name__)

DATA_SUFFIX = ".jsonl"
REPORT_SUFFIX = ".report.json"
REASON_SUFFIX = ".reason.json"
META_SUFFIX = ".meta.yaml"
MAX_NAME_BYTES = 255  # a file name longer than this cannot be created on ext4, xfs, btrfs or tmpfs


def now_ms(now: float | None = None) -> int:
    return int((time.time() if now is None else now) * 1000)


def entry_name(ms: int, seq: int, original: str) -> str:
    """`<13-digit ms>-<4-digit seq>-<original>`, with the original shortened if the name would be too long."""
    prefix = f"{ms:013d}-{seq:04d}-"
    room = MAX_NAME_BYTES - len(prefix.encode()) - len(REASON_SUFFIX.encode()) - 8  # room for companions
    suffix = DATA_SUFFIX if original.endswith(DATA_SUFFIX) else ""
    stem = original.removesuffix(suffix) if suffix else original
    while len((stem + suffix).encode("utf-8", "surrogateescape")) > room:
        stem = stem[:-1]
    return prefix + stem + suffix


def original_name(name: str) -> str:
    """The name a file had in the inbox: the entry name less its `<ms>-<seq>-` prefix."""
    parts = name.split("-", 2)
    if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
        return parts[2]
    return name


def companion(entry: Path, suffix: str) -> Path:
    """The report, reason or sidecar of an entry: `x.jsonl` -> `x.report.json`; `x.csv` -> `x.csv.reason.json`."""
    return entry.with_name(entry.name.removesuffix(DATA_SUFFIX) + suffix)


def entries(folder: Path) -> list[Path]:
    """The `.jsonl` entries of a priority, processing or done folder, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.endswith(DATA_SUFFIX) and not p.name.startswith("."))


def failed_entries(project: Project) -> list[Path]:
    """Files in queue/failed/ that have a reason beside them, oldest first."""
    folder = project.failed
    if not folder.is_dir():
        return []
    names = {p.name for p in folder.iterdir()}
    return sorted(
        folder / n for n in names
        if not n.startswith(".") and companion(folder / n, REASON_SUFFIX).name in names
    )


def all_folders(project: Project) -> list[Path]:
    return [*(project.queue_dir(p) for p in PRIORITIES), project.processing, project.done, project.failed]


def name_taken(project: Project, name: str) -> bool:
    """Whether any queue folder already holds an entry of this name (names are unique across the queue)."""
    return any((folder / name).exists() or (folder / name).is_symlink() for folder in all_folders(project))


# ---------------------------------------------------------------- claim API (the trainer's side)

def claim_next(project: Project) -> Path | None:
    """Move the oldest entry of high, else normal, else low into processing/; return its new path or None."""
    project.processing.mkdir(parents=True, exist_ok=True)
    for priority in PRIORITIES:
        for entry in entries(project.queue_dir(priority)):
            target = project.processing / entry.name
            if target.exists():
                log.error("%s is already in processing/; leaving it where it is", entry.name)
                continue
            try:
                os.rename(entry, target)  # the claim: atomic, so two callers never get one file
            except FileNotFoundError:
                continue  # another caller claimed it first
            _move_report(entry, target)
            fsio.fsync_dir(project.processing)
            log.info("claimed %s (%s)", target.name, priority)
            return target
    return None


def finish(project: Project, path: Path) -> Path:
    """Move a claimed entry from processing/ to done/; return its new path."""
    return _release(project, Path(path), project.done)


def requeue(project: Project, path: Path) -> Path:
    """Put a claimed entry back into its priority folder under its own name (it keeps its place in line)."""
    path = Path(path)
    report = _report_of(path)
    priority = report.get("priority") if report else None
    if priority not in PRIORITIES:
        log.warning("%s has no report naming its priority; requeueing it as normal", path.name)
        priority = "normal"
    return _release(project, path, project.queue_dir(priority))


def _release(project: Project, path: Path, folder: Path) -> Path:
    if path.parent.resolve() != project.processing.resolve():
        raise QueueError(f"{path} is not in {project.processing}: only a claimed entry can be released")
    if not path.exists():
        raise QueueError(f"{path}: no such entry in processing/")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        raise QueueError(f"{target} already exists; an entry is never overwritten (move one of them by hand)")
    os.rename(path, target)
    _move_report(path, target)
    fsio.fsync_dir(folder)
    log.info("%s -> %s", path.name, folder.name)
    return target


def _move_report(old_entry: Path, new_entry: Path) -> None:
    report = companion(old_entry, REPORT_SUFFIX)
    try:
        os.rename(report, companion(new_entry, REPORT_SUFFIX))
    except FileNotFoundError:
        log.warning("%s has no report beside it", old_entry)


def _report_of(entry: Path) -> dict | None:
    report = companion(entry, REPORT_SUFFIX)
    if not report.exists():
        return None
    try:
        return fsio.read_json(report)
    except AutopilotError as e:  # a damaged report must not strand the entry
        log.warning("%s: %s", report, e)
        return None
