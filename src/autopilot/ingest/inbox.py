"""Reading the inbox: each settled file becomes one entry in queue/<priority>/ or queue/failed/, never two.

For each name in inbox/, oldest first:
    left alone  dotfiles, *.tmp, *.part, README.md, folders, FIFOs, sockets, files (or their sidecar) modified
                within the last `settle_seconds`, a file another process still has open for writing, a sidecar
                whose data file has not arrived
    rejected    not a .jsonl; a symlink (never followed: its target is not touched); larger than
                `max_file_bytes` (moved, never read); a bad sidecar (a link, a FIFO, too big, not UTF-8, not
                YAML, aliases, too deep, not the schema); no spec or an unknown one; a file that fails the checks
                of the study's level; a file whose ingest failed unexpectedly -> queue/failed/ with a reason
    accepted    -> queue/<priority>/ with a report

A file is first claimed: renamed into inbox/.ingesting/ (see claim_area.py), so that nothing a producer does under
its name afterwards can change it or be removed in its place. Its bytes are then read once, and checked, hashed
and copied into queue/.staging/ in the same pass; the copy is fsynced and hashed again from disk, and the file
must not have changed meanwhile (inode, size, modification time). The copy is linked in under a name no entry
has (its report or reason first), and only then is the claimed file removed. A file that must wait goes back to
the inbox. An intent file written before the link lets the next run complete or undo the move of a process
killed half way, so nothing is lost and nothing is queued twice. One writer at a time (queue/.ingest.lock).

One file never stops the ingest: a full disk leaves it in the inbox, and any other unexpected error in it
moves it, unread, to queue/failed/ with the error as its reason; the other files are ingested as usual.

Usage:
    settings = Settings.from_config(study.config["ingest"], project.root)
    outcomes = ingest_inbox(project, settings)
    print(summarize(outcomes))
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import io
import logging
import os
import shutil
import stat
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from autopilot import schemas
from autopilot.errors import IngestError
from autopilot.ingest import claim_area, files, queue, sidecar
from autopilot.ingest.checks import Scan, Settings, check_stream
from autopilot.ingest.claim_area import Claimed, identity
from autopilot.ingest.files import printable
from autopilot.ingest.queue import DATA_SUFFIX, META_SUFFIX, REASON_SUFFIX, REPORT_SUFFIX
from autopilot.ingest.recovery import INTENT, recover, recover_quietly, write_intent
from autopilot.ingest.sidecar import Sidecar
from autopilot.ingest.specs import Spec, load_spec
from autopilot.paths import Project

log = logging.getLogger(__name__)

PARTIAL = (".tmp", ".part")  # still being written by scp, rsync, curl or a generator
STAGING_RESERVE = 64 * 1024 * 1024  # left free on queue's disk by a copy: checkpoints and logs are written too
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
NOT_JSONL = ("not_jsonl", f"not a {DATA_SUFFIX} file; ingest takes JSON-lines files named <name>{DATA_SUFFIX} "
                          f"(rename it if it is one)")
STILL_WRITTEN = ("still open for writing by another process; producers: write to <name>.tmp (or a dotfile), "
                 "then rename it")


@dataclass(frozen=True)
class Outcome:
    source: str
    status: str  # accepted | rejected | waiting
    entry: Path | None = None
    detail: str = ""


@dataclass
class Plan:
    """What is known about a file before its lines are read: spec, priority, sidecar, file-level problems."""

    spec: Spec | None = None
    priority: str | None = None
    sidecar: Sidecar | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)  # (kind, message): rejects the file

    @property
    def meta(self) -> dict | None:
        return self.sidecar.meta if self.sidecar else None


# ---------------------------------------------------------------- the inbox

def ingest_inbox(project: Project, settings: Settings, now: float | None = None) -> list[Outcome]:
    """Take every settled file of inbox/ once; what is still being written is left for the next run."""
    project.inbox.mkdir(parents=True, exist_ok=True)
    with queue.writer_lock(project):
        recover(project)
        outcomes = [ingest_safely(project, path, settings, now) for path in candidates(project.inbox)]
        claim_area.tidy(project)
    return [o for o in outcomes if o is not None]


def candidates(inbox: Path) -> list[Path]:
    """Names in the inbox, oldest first (by modification time, then name)."""
    found = []
    for entry in os.scandir(inbox):
        if entry.name.startswith(".") or entry.name in queue.INBOX_IGNORED:
            continue
        try:
            found.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.name))
        except FileNotFoundError:
            continue
    return [inbox / name for _, name in sorted(found)]


def ingest_safely(project: Project, path: Path, settings: Settings, now: float | None = None) -> Outcome | None:
    """`ingest_path`, except that an error in this file fails this file only, never the whole ingest."""
    try:
        return ingest_path(project, path, settings, now)
    except Exception as error:  # one file's surprise must not stop every later file and the night's training
        log.error("ingest of %s failed: %s", printable(path.name), error, exc_info=True)
        try:
            recover(project)  # whatever was half done is undone: the file is back in the inbox, nothing published
            if isinstance(error, OSError) and error.errno in DISK_FULL:
                return Outcome(printable(path.name), "waiting", detail="no space left on the queue's disk while it "
                                                                       "was copied; left in the inbox")
            if isinstance(error, PermissionError):
                return Outcome(printable(path.name), "waiting", detail="cannot be read (permission denied); left "
                                                                       "in the inbox")
            problem = ("internal_error", f"ingest failed on this file with {type(error).__name__}: "
                                         f"{str(error)[:300]}; it was not checked, and is kept here byte for byte "
                                         f"(the ingest log has the details): `autopilot queue retry` it once the "
                                         f"cause is fixed")
            return reject_unread(project, path, settings, now, problem)
        except Exception:
            log.exception("%s: could not be moved to queue/failed/ either; it stays in the inbox", path.name)
            recover_quietly(project)
            return Outcome(printable(path.name), "waiting", detail=f"ingest failed ({type(error).__name__}: "
                                                                   f"{str(error)[:200]}); left in the inbox")


def ingest_path(project: Project, path: Path, settings: Settings, now: float | None = None) -> Outcome | None:
    """Take one inbox file if it is ready; None when it is gone or is a sidecar that travels with its file."""
    name, st = path.name, _lstat(path)
    if st is None:
        return None
    if name.endswith(META_SUFFIX):
        data = path.with_name(name.removesuffix(META_SUFFIX) + DATA_SUFFIX)
        return None if os.path.lexists(data) else Outcome(name, "waiting", detail="sidecar without its data file")
    if name.endswith(PARTIAL):
        return Outcome(name, "waiting", detail="still being written (.tmp, .part)")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        return Outcome(name, "waiting", detail=f"{files.kind(st.st_mode)}, not a regular file; left alone")
    side_path = sidecar_of(path) if name.endswith(DATA_SUFFIX) else None
    side_st = _lstat(side_path) if side_path else None
    if not settled(st, settings, now) or (side_st and not settled(side_st, settings, now)):
        return Outcome(name, "waiting", detail=f"modified within the last {settings.settle_seconds:g} s")
    data = claim_area.take(project, name, st)
    if data is None:
        return None if _lstat(path) is None else Outcome(name, "waiting", detail="changed before it could be read")
    side, side_problem = None, None
    if side_st is not None and stat.S_ISDIR(side_st.st_mode):
        side_problem = sidecar.unreadable(side_path.name, "a directory (left in inbox/)")
    elif side_st is not None:
        side = claim_area.take(project, side_path.name, side_st)
    return ingest_claimed(project, data, side, side_problem, settings, now)


def ingest_claimed(project: Project, data: Claimed, side: Claimed | None, side_problem: Sidecar | None,
                   settings: Settings, now: float | None) -> Outcome:
    """Check and queue a claimed file (and its claimed sidecar), or give them back to wait."""
    claimed = [data, side] if side else [data]
    if stat.S_ISLNK(data.st.st_mode):
        return move_to_failed(project, claimed, Plan(problems=[_symlink_problem(data.path)]), settings, now)
    try:
        fd = files.open_regular(data.path)
    except files.NotRegular:
        return _wait(project, claimed, "changed before it could be read")
    with open(fd, "rb", buffering=0) as source:
        if identity(os.fstat(fd)) != identity(data.st):
            return _wait(project, claimed, "changed before it could be read")
        if files.held_for_writing(fd):
            return _wait(project, claimed, STILL_WRITTEN)
        if not data.name.endswith(DATA_SUFFIX):
            plan = Plan(problems=[NOT_JSONL])
        else:
            plan = make_plan(_read_claimed_sidecar(side) if side else side_problem, settings)
        if data.st.st_size > settings.max_file_bytes:
            plan.problems.append(("too_large", f"{data.st.st_size} bytes, more than ingest.max_file_bytes="
                                               f"{settings.max_file_bytes}; it was moved here unread (split it, "
                                               f"or raise the setting and `autopilot queue retry` it)"))
            return move_to_failed(project, claimed, plan, settings, now)
        return copy_to_queue(project, source, claimed, plan, settings, now)


def _read_claimed_sidecar(side: Claimed) -> Sidecar:
    found = sidecar.read(side.path)
    return found if side.unchanged() else Sidecar(side.name, problem="changed while it was read")


def _wait(project: Project, claimed: list[Claimed], why: str) -> Outcome:
    claim_area.give_back(project, claimed)
    return Outcome(claimed[0].name, "waiting", detail=why)


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(DATA_SUFFIX) + META_SUFFIX)


def settled(st: os.stat_result, settings: Settings, now: float | None) -> bool:
    """Not modified within the last `settle_seconds` (a clock skew into the future counts as recent too)."""
    now = time.time() if now is None else now
    return abs(now - st.st_mtime) >= settings.settle_seconds


def summarize(outcomes: list[Outcome]) -> str:
    """One line: `ingest: 2 accepted (high 1, normal 1), 1 rejected, 1 waiting`."""
    if not outcomes:
        return "ingest: nothing in inbox/"
    counts = Counter(o.status for o in outcomes)
    parts = []
    if counts["accepted"]:
        by_priority = Counter(o.entry.parent.name for o in outcomes if o.status == "accepted")
        parts.append(f"{counts['accepted']} accepted ({', '.join(f'{p} {n}' for p, n in sorted(by_priority.items()))})")
    if counts["rejected"]:
        parts.append(f"{counts['rejected']} rejected (reasons in queue/failed/)")
    if counts["waiting"]:
        parts.append(f"{counts['waiting']} waiting")
    return "ingest: " + ", ".join(parts)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------- one file

def make_plan(found: Sidecar | None, settings: Settings, spec: str | None = None,
              priority: str | None = None) -> Plan:
    """Spec and priority (argument, else sidecar, else the study's defaults), and what rejects the file outright."""
    plan = Plan(sidecar=found)
    if found is not None and found.problem:
        plan.problems.append(("sidecar", f"{found.name}: {found.problem}"))
    meta = plan.meta or {}
    plan.priority = priority or meta.get("priority") or settings.default_priority
    name = spec or meta.get("spec") or settings.default_spec
    if name is None and not plan.problems:
        plan.problems.append(("no_spec", "no dataset spec: drop <name>.meta.yaml with `spec: <spec>` beside it, "
                                         "or set ingest.default_spec in the study config"))
    elif name is not None:
        try:
            plan.spec = load_spec(name)
        except IngestError as e:
            plan.problems.append(("unknown_spec", str(e)))
    return plan


def copy_to_queue(project: Project, source: io.RawIOBase, claimed: list[Claimed], plan: Plan, settings: Settings,
                  now: float | None = None) -> Outcome:
    """Check and copy a claimed file, publish it as accepted or rejected, then remove what was claimed."""
    data = claimed[0]
    free = free_bytes(queue.staging(project))
    if free < data.st.st_size + STAGING_RESERVE:
        return _wait(project, claimed, f"not enough free space for a copy in queue/ ({data.st.st_size} bytes and "
                                       f"{STAGING_RESERVE // 2**20} MiB to spare needed, {free} free); left in the "
                                       f"inbox")
    copied = copy_and_check(project, source, data.st, data.path, plan, settings)
    if isinstance(copied, str):
        return _wait(project, claimed, copied)
    staged, digest, nbytes, scan = copied
    folder = project.queue_dir(plan.priority) if scan.accepted else project.failed
    extras = {META_SUFFIX: stage_by_link(project, claimed[1])} if len(claimed) > 1 and not scan.accepted else {}
    return publish(project, claimed, folder, staged, extras, plan, scan, settings, digest, nbytes, now)


def move_to_failed(project: Project, claimed: list[Claimed], plan: Plan, settings: Settings,
                   now: float | None = None) -> Outcome:
    """Reject a claimed file without reading it: the file itself (a link stays a link) is linked into failed/."""
    staged = stage_by_link(project, claimed[0])
    extras = {META_SUFFIX: stage_by_link(project, claimed[1])} if len(claimed) > 1 else {}
    scan = _check(None, plan, settings)
    size = claimed[0].st.st_size if stat.S_ISREG(claimed[0].st.st_mode) else 0
    return publish(project, claimed, project.failed, staged, extras, plan, scan, settings, None, size, now)


def reject_unread(project: Project, path: Path, settings: Settings, now: float | None,
                  problem: tuple[str, str]) -> Outcome | None:
    """Claim an inbox file (and its sidecar) again and move it, unread, to failed/ with `problem` as the reason."""
    st = _lstat(path)
    if st is None:
        return None
    data = claim_area.take(project, path.name, st)
    if data is None:
        return None
    claimed = [data]
    side_path = sidecar_of(path)
    side_st = _lstat(side_path) if path.name.endswith(DATA_SUFFIX) else None
    if side_st is not None and not stat.S_ISDIR(side_st.st_mode):
        side = claim_area.take(project, side_path.name, side_st)
        claimed += [side] if side else []
    return move_to_failed(project, claimed, Plan(problems=[problem]), settings, now)


def publish(project: Project, claimed: list[Claimed], folder: Path, staged: Path, extras: dict[str, Path],
            plan: Plan, scan: Scan, settings: Settings, digest: str | None, nbytes: int,
            now: float | None) -> Outcome:
    """Link the staged file into `folder` with its report or reason (after an intent), then release the claim."""
    source = claimed[0].name
    ingest_id, ms = uuid.uuid4().hex, queue.now_ms(now)
    write_intent(project, id=ingest_id, ms=ms, source=source,
                 claimed=[{"name": c.name, "identity": list(identity(c.st))} for c in claimed])

    def document(name: str) -> dict:
        return build_document(project, name, source, plan, scan, settings, digest, nbytes, ingest_id, now)

    suffix = REPORT_SUFFIX if scan.accepted else REASON_SUFFIX
    entry = queue.publish(project, folder, source, staged, document, suffix, extras, ms)
    claim_area.release(project, claimed)
    (project.queue / INTENT).unlink(missing_ok=True)
    status = "accepted" if scan.accepted else "rejected"
    log.info("%s %s -> %s: %s", status, printable(source), entry.relative_to(project.queue), scan.summary())
    return Outcome(source, status, entry, scan.summary())


class _Tee(io.RawIOBase):
    """Reads a file and copies and hashes every byte it hands out: checking, hashing and copying in one pass."""

    def __init__(self, source: io.RawIOBase, sink: io.BufferedWriter):
        self.source, self.sink = source, sink
        self.sha256 = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.source.readinto(buffer)
        if n:
            view = memoryview(buffer)[:n]
            self.sha256.update(view)
            self.sink.write(view)
            self.count += n
        return n


def copy_and_check(project: Project, source: io.RawIOBase, st: os.stat_result, path: Path, plan: Plan,
                   settings: Settings):
    """(staged copy, sha256, bytes, scan) of an open file, or why it must wait (a string) if it changed while
    read: the descriptor and the name `path` must still show the file that was looked at (`st`)."""
    staged = queue.temp_file(queue.staging(project))
    try:
        with staged.open("wb") as sink:
            tee = _Tee(source, sink)
            stream = io.BufferedReader(tee, buffer_size=queue.CHUNK)
            scan = _check(stream, plan, settings)
            while stream.read(queue.CHUNK):  # every byte is copied, whatever the checks read
                pass
            sink.flush()
            os.fsync(sink.fileno())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    digest = tee.sha256.hexdigest()
    now_fd, now_name = identity(os.fstat(source.fileno())), _lstat(path)
    if now_fd != identity(st) or now_name is None or identity(now_name) != identity(st) or tee.count != st.st_size:
        staged.unlink()
        return "changed while it was read"
    if queue.sha256_file(staged) != digest:
        staged.unlink()
        log.error("%s: the copy in %s does not hash like the original; left in the inbox", path, staged.parent)
        return "its copy did not verify (disk problem?); left in the inbox"
    return staged, digest, tee.count, scan


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def _check(stream: io.BufferedReader | None, plan: Plan, settings: Settings) -> Scan:
    if plan.spec is not None and not plan.problems:
        return check_stream(stream, plan.spec, settings)
    scan = Scan(plan.spec.name if plan.spec else None, settings.level)
    for kind, message in plan.problems:
        scan.add(0, "", kind, message)
    return scan


def stage_by_link(project: Project, claimed: Claimed) -> Path:
    """A name in queue/.staging/ for the claimed file itself (a hard link: no copy, whatever its size or kind);
    across file systems a verified copy, of a regular file or of a link."""
    target = queue.staging(project) / f".{uuid.uuid4().hex}.tmp"
    try:
        os.link(claimed.path, target, follow_symlinks=False)
        return target
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    if stat.S_ISLNK(claimed.st.st_mode):
        os.symlink(os.readlink(claimed.path), target)
        return target
    if not stat.S_ISREG(claimed.st.st_mode):
        raise IngestError(f"{claimed.name} is {files.kind(claimed.st.st_mode)}: it cannot be moved to queue/, "
                          f"which is on another file system; remove it from the inbox")
    return _stage_copy(project, claimed.path)


def _stage_copy(project: Project, path: Path) -> Path:
    staged = queue.temp_file(queue.staging(project))
    with path.open("rb") as f, staged.open("wb") as out:
        shutil.copyfileobj(f, out, queue.CHUNK)
        out.flush()
        os.fsync(out.fileno())
    if queue.sha256_file(staged) != queue.sha256_file(path):
        staged.unlink()
        raise IngestError(f"{path}: its copy did not verify (disk problem?); nothing was moved")
    return staged


def _symlink_problem(path: Path) -> tuple[str, str]:
    target = printable(os.readlink(path))
    return ("symlink", f"a symbolic link (to {target}); links are never followed, and what they point to is not "
                       f"touched: put the file itself into inbox/")


# ---------------------------------------------------------------- reports and reasons

def build_document(project: Project, name: str, source: str, plan: Plan, scan: Scan, settings: Settings,
                   digest: str | None, nbytes: int, ingest_id: str, now: float | None) -> dict:
    """The report of an accepted entry or the reason of a rejected one (schemas/ingest_{report,reason})."""
    found = scan.as_dict()
    doc = {
        "entry": name, "source": printable(source), "ingest_id": ingest_id, "accepted": scan.accepted,
        "spec": plan.spec.name if plan.spec else None, "priority": plan.priority,
        "level": settings.level.name.lower(), "sha256": digest, "bytes": nbytes,
        "counts": found["counts"], "totals": found["totals"],
    }
    if scan.accepted:
        doc |= {"warnings": found["warnings"], "skipped": found["skipped"], "meta": plan.meta,
                "meta_yaml": plan.sidecar.text if plan.sidecar else None}
    else:
        doc |= {"reason": scan.summary(), "findings": found["findings"], "warnings": found["warnings"],
                "meta": plan.meta, "meta_yaml": None}
    doc |= {"ingested_at": _iso(now), "history": history(project, source)}
    schemas.validate(doc, "ingest_report" if scan.accepted else "ingest_reason")
    return doc


def history(project: Project, source: str) -> list[str]:
    """Reasons of earlier rejections of a file of this name that were retried."""
    folder = project.retried
    if not folder.is_dir():
        return []
    return sorted(
        str(p.relative_to(project.root)) for p in folder.iterdir()
        if queue.original_name(p.name.removesuffix(REASON_SUFFIX)) == source.removesuffix(DATA_SUFFIX)
    )


def _iso(now: float | None) -> str:
    moment = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- queue add, validate

def add_file(project: Project, path: Path, settings: Settings, spec: str | None = None,
             priority: str | None = None, now: float | None = None) -> tuple[Outcome, Scan]:
    """Check a file from anywhere and, if it passes, queue a copy (the file itself is left where it is)."""
    path = Path(path).resolve()  # a link given on the command line is followed: the person chose it
    if not path.name.endswith(DATA_SUFFIX):
        raise IngestError(f"{path}: {NOT_JSONL[1]}")
    if path.parent == project.inbox.resolve():
        raise IngestError(f"{path} is in inbox/ already: the next ingest takes it (`autopilot ingest`)")
    side = sidecar_of(path)
    plan = make_plan(sidecar.read(side) if os.path.lexists(side) else None, settings, spec, priority)
    with queue.writer_lock(project), open(files.open_regular(path), "rb", buffering=0) as source:
        st = os.fstat(source.fileno())
        if st.st_size > settings.max_file_bytes:
            raise IngestError(f"{path}: {st.st_size} bytes, more than ingest.max_file_bytes="
                              f"{settings.max_file_bytes}; split it or raise the setting")
        copied = copy_and_check(project, source, st, path, plan, settings)
        if isinstance(copied, str):
            raise IngestError(f"{path}: {copied}; try again when it is complete")
        staged, digest, nbytes, scan = copied
        if not scan.accepted:
            staged.unlink()
            return Outcome(path.name, "rejected", None, scan.summary()), scan
        ingest_id = uuid.uuid4().hex

        def document(name: str) -> dict:
            doc = build_document(project, name, path.name, plan, scan, settings, digest, nbytes, ingest_id, now)
            return doc | {"source": printable(str(path))}

        entry = queue.publish(project, project.queue_dir(plan.priority), path.name, staged, document,
                              REPORT_SUFFIX, ms=queue.now_ms(now))
    return Outcome(path.name, "accepted", entry, scan.summary()), scan


def check_file(path: Path, spec: Spec, settings: Settings) -> Scan:
    """Check a file without queueing it (`autopilot validate`); a FIFO or a device is refused, never read."""
    with open(files.open_regular(Path(path)), "rb", buffering=queue.CHUNK) as f:
        return check_stream(f, spec, settings)
