"""The dataset queue: validated files wait in queue/<priority>/, oldest first, until a trainer claims one.

    queue/{high,normal,low}/<ms>-<seq>-<original>.jsonl   an accepted file, byte-identical to what was dropped
    queue/{high,normal,low}/<ms>-<seq>-<original>.report.json   its ingest report (spec, level, counts, sha256)
    queue/processing/   claimed by a trainer (entry and report move together)
    queue/done/         trained on (continual mode: `<name>.outcome.json` beside it, the run and what it did)
    queue/quarantine/   continual mode: its run regressed the champion; `<name>.evidence.json` says where and how much
    queue/quarantine/retried/   evidence of entries that `retry` put back into their queue
    queue/failed/<name> + <name minus .jsonl>.reason.json   rejected, with the findings that rejected it
    queue/failed/retried/   reasons of failed entries that `retry` sent back to the inbox

Entry names start with the ingest time in milliseconds (13 digits) and a sequence number that keeps rising
within a millisecond, so `sorted()` is first-in-first-out within a priority, like huey's FileStorage
(`'%04x-%012x'`). A claim is one `os.rename` into processing/: two trainers never get the same file, and a
crash leaves the file in one place only. Writers (ingest, add, retry) take one lock and never replace a file:
an entry appears by `os.link`, which fails on a taken name.

Usage:
    entry = queue.claim_next(project)   # queue/processing/<name>.jsonl, or None
    ...train on it...
    queue.finish(project, entry)        # -> queue/done/
    queue.requeue(project, entry)       # or back to its priority folder, under its name
    queue.quarantine(project, entry)    # continual mode: its run regressed the champion
    queue.describe(project), queue.counts(project), queue.retry(project, name)
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from autopilot import fsio
from autopilot.errors import AutopilotError, QueueError
from autopilot.paths import PRIORITIES, Project

log = logging.getLogger(__name__)

DATA_SUFFIX = ".jsonl"
REPORT_SUFFIX = ".report.json"
REASON_SUFFIX = ".reason.json"
OUTCOME_SUFFIX = ".outcome.json"  # continual mode, in done/: the run that trained on it and what came of it
EVIDENCE_SUFFIX = ".evidence.json"  # continual mode, in quarantine/: the per-set deltas that regressed
META_SUFFIX = ".meta.yaml"
MAX_NAME_BYTES = 255  # a file name longer than this cannot be created on ext4, xfs, btrfs or tmpfs
CHUNK = 1 << 20
INBOX_IGNORED = {"README.md"}  # the note that keeps inbox/ in git is not a dataset


def now_ms(now: float | None = None) -> int:
    return int((time.time() if now is None else now) * 1000)


def entry_name(ms: int, seq: int, original: str) -> str:
    """`<13-digit ms>-<4-digit seq>-<original>`: the original shortened if the name would be too long, and
    bytes that are not UTF-8 replaced (U+FFFD), so that every entry name can be written into a report."""
    original = original.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    prefix = f"{ms:013d}-{seq:04d}-"
    room = MAX_NAME_BYTES - len(prefix.encode()) - len(REASON_SUFFIX.encode()) - 8  # room for companions
    suffix = DATA_SUFFIX if original.endswith(DATA_SUFFIX) else ""
    stem = original.removesuffix(suffix) if suffix else original
    while len((stem + suffix).encode("utf-8")) > room:
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
    return [*(project.queue_dir(p) for p in PRIORITIES), project.processing, project.done, project.failed,
            project.quarantine]


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
            fsio.fsync_path(project.processing)
            log.info("claimed %s (%s)", target.name, priority)
            return target
    return None


def finish(project: Project, path: Path) -> Path:
    """Move a claimed entry from processing/ to done/; return its new path."""
    return _release(project, Path(path), project.done)


def quarantine(project: Project, path: Path) -> Path:
    """Continual mode: move a claimed entry whose run regressed the champion to quarantine/ (`retry` takes it back)."""
    return _release(project, Path(path), project.quarantine)


def requeue(project: Project, path: Path) -> Path:
    """Put a claimed entry back into its priority folder under its own name (it keeps its place in line)."""
    path = Path(path)
    return _release(project, path, project.queue_dir(_priority_of(path)))


def _priority_of(path: Path) -> str:
    report = _report_of(path)
    priority = report.get("priority") if report else None
    if priority not in PRIORITIES:
        log.warning("%s has no report naming its priority; requeueing it as normal", path.name)
        priority = "normal"
    return priority


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
    fsio.fsync_path(folder)
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
    return _read(report) if report.exists() else None  # a damaged report must not strand the entry


# ---------------------------------------------------------------- looking at the queue, retrying

def describe(project: Project) -> list[dict]:
    """One row per entry waiting (high, normal, low), in processing, and failed, in that order."""
    rows = []
    for folder in [*(project.queue_dir(p) for p in PRIORITIES), project.processing]:
        for entry in entries(folder):
            report = _report_of(entry) or {}
            rows.append({"folder": folder.name, "entry": entry.name, "spec": report.get("spec"),
                         "records": report.get("counts", {}).get("records"), "bytes": _size(entry),
                         "warnings": report.get("counts", {}).get("warnings")})
    for entry in entries(project.quarantine):
        evidence = _read(companion(entry, EVIDENCE_SUFFIX)) or {}
        report = _report_of(entry) or {}
        rows.append({"folder": "quarantine", "entry": entry.name, "spec": report.get("spec"),
                     "records": report.get("counts", {}).get("records"), "bytes": _size(entry),
                     "reason": evidence.get("reason")})
    for entry in failed_entries(project):
        reason = _read(companion(entry, REASON_SUFFIX)) or {}
        rows.append({"folder": "failed", "entry": entry.name, "spec": reason.get("spec"),
                     "records": reason.get("counts", {}).get("records"), "bytes": _size(entry),
                     "reason": reason.get("reason")})
    return rows


def counts(project: Project) -> dict[str, int]:
    """Files in the inbox (not yet ingested) and entries per queue folder."""
    inbox = project.inbox
    waiting = [p for p in inbox.iterdir() if not p.name.startswith(".") and p.name not in INBOX_IGNORED] \
        if inbox.is_dir() else []
    found = {"inbox": len(waiting)}
    for folder in [*(project.queue_dir(p) for p in PRIORITIES), project.processing, project.done]:
        found[folder.name] = len(entries(folder))
    found["failed"] = len(failed_entries(project))
    found["quarantine"] = len(entries(project.quarantine))
    return found


def retry(project: Project, name: str) -> Path:
    """Move a failed entry back into the inbox under its original name; its reason goes to failed/retried/. A
    quarantined entry (continual mode) goes back into its queue instead, already checked (`unquarantine`)."""
    if (project.quarantine / Path(name).name).is_file():
        return unquarantine(project, name)
    entry = project.failed / Path(name).name
    reason = companion(entry, REASON_SUFFIX)
    if not os.path.lexists(entry) or not reason.exists():
        raise QueueError(f"no failed entry {name!r}; `autopilot queue list` shows the failed entries")
    target = project.inbox / original_name(entry.name)
    sidecar = companion(entry, META_SUFFIX)
    sidecar_target = project.inbox / companion(Path(target.name), META_SUFFIX).name
    history = project.retried
    history.mkdir(parents=True, exist_ok=True)
    with writer_lock(project):
        if os.path.lexists(target):
            raise QueueError(f"{target} exists; move it away (or wait until it is ingested) and retry")
        if sidecar.exists():  # the sidecar first, so that ingest never sees the file without it
            move_file(sidecar, history / sidecar.name if sidecar_target.exists() else sidecar_target)
        move_file(entry, target)
        move_file(reason, history / reason.name)
    log.info("%s -> %s (its reason kept in %s)", entry.name, target, history)
    return target


def unquarantine(project: Project, name: str) -> Path:
    """Put a quarantined entry back into its priority folder under its name (its place in line kept); its evidence
    goes to quarantine/retried/."""
    entry = project.quarantine / Path(name).name
    if not entry.is_file():
        raise QueueError(f"no quarantined entry {name!r}; `autopilot queue list` shows them")
    folder = project.queue_dir(_priority_of(entry))
    evidence = companion(entry, EVIDENCE_SUFFIX)
    with writer_lock(project):
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / entry.name).exists():
            raise QueueError(f"{folder / entry.name} exists; an entry is never overwritten (move one of them away)")
        if evidence.exists():  # kept as history: a second quarantine of the same entry gets a numbered name
            project.quarantine_retried.mkdir(parents=True, exist_ok=True)
            target, n = project.quarantine_retried / evidence.name, 1
            while target.exists():
                n += 1
                target = project.quarantine_retried / evidence.name.replace(EVIDENCE_SUFFIX, f".{n}{EVIDENCE_SUFFIX}")
            move_file(evidence, target)
        os.rename(entry, folder / entry.name)
        _move_report(entry, folder / entry.name)
        fsio.fsync_path(folder)
    log.info("%s -> %s (its evidence kept in %s)", entry.name, folder, project.quarantine_retried)
    return folder / entry.name


def _size(path: Path) -> int:
    return path.lstat().st_size


def _read(path: Path) -> dict | None:
    try:
        return fsio.read_json(path)
    except AutopilotError as e:
        log.warning("%s", e)
        return None


# ---------------------------------------------------------------- writing entries (ingest's side)

def writer_lock(project: Project) -> FileLock:
    """The one lock of inbox and queue writers (ingest, queue add, queue retry); claims need none."""
    project.queue.mkdir(parents=True, exist_ok=True)
    return FileLock(str(project.ingest_lock))


def staging(project: Project) -> Path:
    """Where copies are made before they are linked into a queue folder (same file system, so links work)."""
    folder = project.queue / ".staging"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def temp_file(folder: Path, data: bytes = b"") -> Path:
    """A new fsynced temp file in `folder` holding `data`."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(tmp)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def link_new(src: Path, dst: Path) -> bool:
    """Give `src` the name `dst` unless that name exists (then False): the no-overwrite half of a rename."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError:
        return False
    return True


def publish(project: Project, folder: Path, original: str, data: Path, document: Callable[[str], dict],
            doc_suffix: str, extras: dict[str, Path] | None = None, ms: int | None = None) -> Path:
    """Link the staged `data` into `folder` under a fresh first-in-first-out name; return the entry's path.

    The document (report or reason, made by `document(entry_name)`) and any `extras` (suffix -> staged file)
    are linked first, so that whoever sees the entry sees its report. No link replaces an existing file: on a
    clash the next sequence number is tried. The staged files are removed once linked.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ms, seq = next_stamp(folder, now_ms() if ms is None else ms)
    for _ in range(10_000):
        ms, seq = (ms + 1, 0) if seq > 9999 else (ms, seq)
        name = entry_name(ms, seq, original)
        seq += 1
        if name_taken(project, name):
            continue
        linked = []
        for suffix, staged in [(doc_suffix, None), *(extras or {}).items()]:
            staged = staged or temp_file(staging(project), fsio.dumps_json(document(name)).encode("utf-8"))
            target = companion(folder / name, suffix)
            ok = link_new(staged, target)
            if suffix == doc_suffix:
                staged.unlink()
            if not ok:
                break
            linked.append(target)
        else:
            if link_new(data, folder / name):
                for staged in [data, *(extras or {}).values()]:
                    staged.unlink()
                fsio.fsync_path(folder)
                return folder / name
        for target in linked:  # lost a race for this name: give it back and try the next one
            target.unlink()
    raise QueueError(f"{folder}: no free entry name for {original} (10000 tries)")


def next_stamp(folder: Path, ms: int) -> tuple[int, int]:
    """(ms, seq) of the next entry: after the newest one in `folder` even within one millisecond (or if the
    clock went back), so that names sort in arrival order whatever the original names are."""
    newest = max((n for n in os.listdir(folder) if len(n) > 18 and n[:13].isdigit() and n[14:18].isdigit()),
                 default=None)
    if newest is not None and int(newest[:13]) >= ms:
        return int(newest[:13]), int(newest[14:18]) + 1
    return ms, 0


def move_file(src: Path, dst: Path) -> None:
    """Move a file (or a symlink, as a link) without ever replacing `dst`; across file systems by verified copy."""
    try:
        if not link_new(src, dst):
            raise QueueError(f"{dst} already exists; it is never overwritten (move one of them away first)")
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        _copy_across(src, dst)
    fsio.fsync_path(dst.parent)
    os.unlink(src)
    fsio.fsync_path(src.parent)


def _copy_across(src: Path, dst: Path) -> None:
    if src.is_symlink():
        tmp = dst.with_name(f".{dst.name}.link.tmp")
        os.symlink(os.readlink(src), tmp)
    else:
        tmp = temp_file(dst.parent)
        with src.open("rb") as f, tmp.open("wb") as out:
            while chunk := f.read(CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if sha256_file(tmp) != sha256_file(src):
            tmp.unlink()
            raise QueueError(f"copying {src} to {dst.parent} changed its bytes; nothing was moved")
    try:
        if not link_new(tmp, dst):
            raise QueueError(f"{dst} already exists; it is never overwritten (move one of them away first)")
    finally:
        tmp.unlink()
