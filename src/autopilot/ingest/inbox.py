"""Reading the inbox: each settled file becomes one entry in queue/<priority>/ or queue/failed/, never two.

For each name in inbox/, oldest first:
    left alone  dotfiles, *.tmp, *.part, README.md, folders, files (or their sidecar) modified within the last
                `settle_seconds`, a sidecar whose data file has not arrived
    rejected    not a .jsonl; a symlink (never followed: its target is not touched); a bad sidecar; no spec or an
                unknown one; a file that fails the checks of the study's level -> queue/failed/ with a reason
    accepted    -> queue/<priority>/ with a report

The bytes are read once, and checked, hashed and copied into queue/.staging/ in the same pass. The copy is
fsynced and hashed again from disk, and the source must not have changed meanwhile. The copy is then linked in
under a name no entry has (its report or reason first), and only then are the inbox file and its sidecar
removed. An intent file written before the link lets the next run complete or undo the move of a process
killed half way, so nothing is lost and nothing is queued twice. One writer at a time (queue/.ingest.lock).

Usage:
    settings = Settings.from_config(study.config["ingest"], project.root)
    outcomes = ingest_inbox(project, settings)
    print(summarize(outcomes))
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import stat
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from autopilot import fsio, schemas
from autopilot.errors import AutopilotError, IngestError
from autopilot.ingest import queue
from autopilot.ingest.checks import Scan, Settings, check_stream
from autopilot.ingest.queue import DATA_SUFFIX, META_SUFFIX, REASON_SUFFIX, REPORT_SUFFIX
from autopilot.ingest.specs import Spec, load_spec
from autopilot.paths import Project

log = logging.getLogger(__name__)

PARTIAL = (".tmp", ".part")  # still being written by scp, rsync, curl or a generator
INTENT = ".ingest.intent.json"
MAX_SIDECAR_BYTES = 64 * 1024
NOT_JSONL = ("not_jsonl", f"not a {DATA_SUFFIX} file; ingest takes JSON-lines files named <name>{DATA_SUFFIX} "
                          f"(rename it if it is one)")


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
    sidecar: Path | None = None
    sidecar_sha256: str | None = None
    meta: dict | None = None
    meta_text: str | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)  # (kind, message): rejects the file


# ---------------------------------------------------------------- the inbox

def ingest_inbox(project: Project, settings: Settings, now: float | None = None) -> list[Outcome]:
    """Take every settled file of inbox/ once; what is still being written is left for the next run."""
    project.inbox.mkdir(parents=True, exist_ok=True)
    with queue.writer_lock(project):
        recover(project)
        outcomes = [ingest_path(project, path, settings, now) for path in candidates(project.inbox)]
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


def ingest_path(project: Project, path: Path, settings: Settings, now: float | None = None) -> Outcome | None:
    """Take one inbox file if it is ready; None when it is gone or is a sidecar that travels with its file."""
    name = path.name
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if name.endswith(META_SUFFIX):
        data = path.with_name(name.removesuffix(META_SUFFIX) + DATA_SUFFIX)
        return None if os.path.lexists(data) else Outcome(name, "waiting", detail="sidecar without its data file")
    if name.endswith(PARTIAL):
        return Outcome(name, "waiting", detail="still being written (.tmp, .part)")
    if stat.S_ISLNK(st.st_mode):
        return _reject_symlink(project, path, settings, now)
    if not stat.S_ISREG(st.st_mode):
        return Outcome(name, "waiting", detail="not a regular file; left alone")
    sidecar = sidecar_of(path)
    if not settled(st, settings, now) or (sidecar.is_file() and not settled(sidecar.lstat(), settings, now)):
        return Outcome(name, "waiting", detail=f"modified within the last {settings.settle_seconds:g} s")
    if name.endswith(DATA_SUFFIX):
        plan = make_plan(path, sidecar if os.path.lexists(sidecar) else None, settings)
    else:
        plan = Plan(problems=[NOT_JSONL])
    try:
        return take(project, path, st, plan, settings, now)
    except FileNotFoundError as e:  # removed by someone else meanwhile: nothing of ours to lose
        log.warning("%s disappeared while it was ingested (%s)", name, e)
        return None
    except PermissionError as e:
        log.error("%s cannot be read (%s); left in the inbox", name, e)
        return Outcome(name, "waiting", detail="cannot be read (permission denied); left alone")


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


# ---------------------------------------------------------------- one file

def make_plan(path: Path, sidecar: Path | None, settings: Settings, spec: str | None = None,
              priority: str | None = None) -> Plan:
    """Spec and priority (argument, else sidecar, else the study's defaults), and what rejects the file outright."""
    plan = Plan(sidecar=sidecar)
    if sidecar is not None:
        problem = read_sidecar(plan, sidecar)
        if problem:
            plan.problems.append(("sidecar", f"{sidecar.name}: {problem}"))
    meta = plan.meta or {}
    plan.priority = priority or meta.get("priority") or settings.default_priority
    name = spec or meta.get("spec") or settings.default_spec
    if name is None and not plan.problems:
        plan.problems.append(("no_spec", f"no dataset spec: drop {sidecar_of(path).name} with `spec: <name>` "
                                         f"beside it, or set ingest.default_spec in the study config"))
    elif name is not None:
        try:
            plan.spec = load_spec(name)
        except IngestError as e:
            plan.problems.append(("unknown_spec", str(e)))
    return plan


def read_sidecar(plan: Plan, sidecar: Path) -> str | None:
    """Fill the plan's meta from `<name>.meta.yaml`; the problem with it, if any."""
    if sidecar.is_symlink() or not sidecar.is_file():
        return "a sidecar must be a regular file (links are not followed)"
    data = sidecar.read_bytes()
    plan.sidecar_sha256 = hashlib.sha256(data).hexdigest()
    if len(data) > MAX_SIDECAR_BYTES:
        return f"{len(data)} bytes; a sidecar holds a few keys (at most {MAX_SIDECAR_BYTES} bytes)"
    try:
        text = data.decode("utf-8")
        meta = yaml.safe_load(text)
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        return f"not valid UTF-8 YAML ({str(e).splitlines()[0]})"
    meta = {} if meta is None else meta
    found = schemas.problems(meta, "dataset_meta") if isinstance(meta, dict) else ["(top level): not a mapping"]
    if found:
        return "does not match schemas/dataset_meta.schema.yaml: " + "; ".join(found[:5])
    plan.meta, plan.meta_text = meta, text
    return None


def take(project: Project, path: Path, st: os.stat_result, plan: Plan, settings: Settings,
         now: float | None = None) -> Outcome:
    """Check and copy one inbox file, publish it as accepted or rejected, then remove it from the inbox."""
    copied = copy_and_check(project, path, st, plan, settings)
    if isinstance(copied, str):
        return Outcome(path.name, "waiting", detail=copied)
    staged, digest, nbytes, scan = copied
    folder = project.queue_dir(plan.priority) if scan.accepted else project.failed
    extras = {}
    if not scan.accepted and plan.sidecar is not None and not plan.sidecar.is_symlink():
        extras[META_SUFFIX] = _stage_copy(project, plan.sidecar)
    ingest_id, ms = uuid.uuid4().hex, queue.now_ms(now)
    write_intent(project, id=ingest_id, ms=ms, source=path.name, sha256=digest, link=None,
                 sidecar=plan.sidecar.name if plan.sidecar else None, sidecar_sha256=plan.sidecar_sha256)

    def document(name: str) -> dict:
        return build_document(project, name, path.name, plan, scan, settings, digest, nbytes, ingest_id, now)

    suffix = REPORT_SUFFIX if scan.accepted else REASON_SUFFIX
    entry = queue.publish(project, folder, path.name, staged, document, suffix, extras, ms)
    _remove_source(project, path, plan)
    status = "accepted" if scan.accepted else "rejected"
    log.info("%s %s -> %s: %s", status, path.name, entry.relative_to(project.queue), scan.summary())
    return Outcome(path.name, status, entry, scan.summary())


def _remove_source(project: Project, path: Path, plan: Plan) -> None:
    os.unlink(path)
    if plan.sidecar is not None and _same_file(plan.sidecar, plan.sidecar_sha256, None):
        os.unlink(plan.sidecar)
    fsio.fsync_path(project.inbox)
    (project.queue / INTENT).unlink(missing_ok=True)


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


def copy_and_check(project: Project, path: Path, st: os.stat_result, plan: Plan, settings: Settings):
    """(staged copy, sha256, bytes, scan), or why the file must wait (a string) if it changed while read."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with open(fd, "rb", buffering=0) as source:
        if _identity(os.fstat(fd)) != _identity(st):
            return "changed before it could be read"
        staged = queue.temp_file(queue.staging(project))
        with staged.open("wb") as sink:
            tee = _Tee(source, sink)
            stream = io.BufferedReader(tee, buffer_size=queue.CHUNK)
            scan = _check(stream, plan, settings)
            while stream.read(queue.CHUNK):  # every byte is copied, whatever the checks read
                pass
            sink.flush()
            os.fsync(sink.fileno())
    digest = tee.sha256.hexdigest()
    if _identity(os.lstat(path)) != _identity(st) or tee.count != st.st_size:
        staged.unlink()
        return "changed while it was read"
    if queue.sha256_file(staged) != digest:
        staged.unlink()
        log.error("%s: the copy in %s does not hash like the original; left in the inbox", path, staged.parent)
        return "its copy did not verify (disk problem?); left in the inbox"
    return staged, digest, tee.count, scan


def _identity(st: os.stat_result) -> tuple:
    return st.st_ino, st.st_size, st.st_mtime_ns


def _check(stream: io.BufferedReader | None, plan: Plan, settings: Settings) -> Scan:
    if plan.spec is not None and not plan.problems:
        return check_stream(stream, plan.spec, settings)
    scan = Scan(plan.spec.name if plan.spec else None, settings.level)
    for kind, message in plan.problems:
        scan.add(0, "", kind, message)
    return scan


def _stage_copy(project: Project, path: Path) -> Path:
    staged = queue.temp_file(queue.staging(project), path.read_bytes())
    if queue.sha256_file(staged) != queue.sha256_file(path):
        staged.unlink()
        raise IngestError(f"{path}: its copy did not verify (disk problem?); nothing was moved")
    return staged


def _reject_symlink(project: Project, path: Path, settings: Settings, now: float | None) -> Outcome:
    """Move the link itself (never what it points to) to queue/failed/ with the reason."""
    target = os.readlink(path)
    staged = queue.staging(project) / f".{uuid.uuid4().hex}.link.tmp"
    os.symlink(target, staged)
    plan = Plan(problems=[("symlink", f"a symbolic link (to {printable(target)}); links are never followed, and "
                                      f"what they point to is not touched: put the file itself into inbox/")])
    scan = _check(None, plan, settings)
    ingest_id, ms = uuid.uuid4().hex, queue.now_ms(now)
    write_intent(project, id=ingest_id, ms=ms, source=path.name, sha256=None, link=target, sidecar=None,
                 sidecar_sha256=None)

    def document(name: str) -> dict:
        return build_document(project, name, path.name, plan, scan, settings, None, 0, ingest_id, now)

    entry = queue.publish(project, project.failed, path.name, staged, document, REASON_SUFFIX, ms=ms)
    _remove_source(project, path, plan)
    log.info("rejected %s -> %s: symbolic link", path.name, entry.relative_to(project.queue))
    return Outcome(path.name, "rejected", entry, scan.summary())


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
                "meta_yaml": plan.meta_text}
    else:
        doc |= {"reason": scan.summary(), "findings": found["findings"], "warnings": found["warnings"],
                "meta": plan.meta, "meta_yaml": None}
    doc |= {"ingested_at": _iso(now), "history": history(project, source)}
    schemas.validate(doc, "ingest_report" if scan.accepted else "ingest_reason")
    return doc


def printable(name: str) -> str:
    """A file name as valid UTF-8 text (names that are not show their bad bytes escaped)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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


# ---------------------------------------------------------------- recovery after a crash

def write_intent(project: Project, **intent) -> None:
    """What is about to be published and removed. ASCII JSON: names that are not UTF-8 survive the round trip."""
    fsio.atomic_write_bytes(project.queue / INTENT, json.dumps(intent).encode("ascii"))


def recover(project: Project) -> None:
    """Finish or undo the move of a killed ingest (from its intent file), then drop stale staged copies."""
    intent_path = project.queue / INTENT
    if intent_path.exists():
        intent = fsio.read_json(intent_path)
        if _published(project, intent):
            log.warning("completing the interrupted ingest of %s", intent["source"])
            source = project.inbox / intent["source"]
            if _same_file(source, intent["sha256"], intent["link"]):
                os.unlink(source)
            if intent["sidecar"] and _same_file(project.inbox / intent["sidecar"], intent["sidecar_sha256"], None):
                os.unlink(project.inbox / intent["sidecar"])
        fsio.fsync_path(project.inbox)
        intent_path.unlink()
    for stale in queue.staging(project).iterdir():
        stale.unlink()


def _published(project: Project, intent: dict) -> bool:
    """Whether the interrupted ingest's entry is in the queue; if only its report or reason is, remove that."""
    prefix = f"{intent['ms']:013d}-"
    for folder in queue.all_folders(project):
        for doc in folder.glob(prefix + "*") if folder.is_dir() else []:
            if not doc.name.endswith((REPORT_SUFFIX, REASON_SUFFIX)):
                continue
            try:
                content = fsio.read_json(doc)
            except AutopilotError:
                continue
            if content.get("ingest_id") != intent["id"]:
                continue
            entry = folder / content["entry"]
            if os.path.lexists(entry):
                return True
            log.warning("removing %s: the ingest that wrote it was killed before its entry was linked", doc)
            doc.unlink()
            queue.companion(entry, META_SUFFIX).unlink(missing_ok=True)
    return False


def _same_file(path: Path, sha256: str | None, link: str | None) -> bool:
    """Whether `path` still holds what was ingested (so that removing it loses nothing)."""
    if link is not None:
        return path.is_symlink() and os.readlink(path) == link
    return path.is_file() and not path.is_symlink() and sha256 is not None and queue.sha256_file(path) == sha256


# ---------------------------------------------------------------- queue add

def add_file(project: Project, path: Path, settings: Settings, spec: str | None = None,
             priority: str | None = None, now: float | None = None) -> tuple[Outcome, Scan]:
    """Check a file from anywhere and, if it passes, queue a copy (the file itself is left where it is)."""
    path = Path(path).resolve()  # a link given on the command line is followed: the person chose it
    if not path.is_file():
        raise IngestError(f"{path}: not a file")
    if not path.name.endswith(DATA_SUFFIX):
        raise IngestError(f"{path}: {NOT_JSONL[1]}")
    if path.parent == project.inbox.resolve():
        raise IngestError(f"{path} is in inbox/ already: the next ingest takes it (`autopilot ingest`)")
    sidecar = sidecar_of(path)
    plan = make_plan(path, sidecar if sidecar.is_file() else None, settings, spec, priority)
    with queue.writer_lock(project):
        copied = copy_and_check(project, path, path.stat(), plan, settings)
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
    """Check a file without queueing it (`autopilot validate`)."""
    with Path(path).open("rb", buffering=queue.CHUNK) as f:
        return check_stream(f, spec, settings)
