"""Safe file writes: every file the project writes goes through here.

A reader never sees a half-written file: data goes to a temp file in the same folder, is fsynced, and is
renamed over the target (atomic on POSIX), then the folder is fsynced so the rename survives a power cut.

Appends to JSON-lines ledgers (history.jsonl, metrics.jsonl) are one whole line followed by fsync. A process
killed between bytes cannot happen for a single small write, but a power cut or a full disk can leave a
torn last line: readers skip it (and say so), and the next append cuts it off before writing, so a record
is never glued onto a fragment. An append that fails part-way (ENOSPC) is rolled back to where it began.
Writers of one file take turns (flock on the file itself), so a torn line is never a write in progress.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger(__name__)


def fsync_path(path: Path) -> None:
    """Persist the contents of a file, or a rename or new entry in a folder."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a report or a ledger is for others to read
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """The one JSON style of the project: indented, keys in insertion order, newline at the end."""
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))


def read_json(path: Path) -> Any:
    """Read a JSON file; the error names the file and the position."""
    from autopilot.errors import AutopilotError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AutopilotError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AutopilotError(f"{path}: not valid JSON ({e})") from None


def append_jsonl(path: Path, obj: Any) -> None:
    """Append one record as one line, after cutting off a torn last line; fsync before returning."""
    data = (json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
    _append_bytes(path, data, _cut_torn_line)


class JsonLine(NamedTuple):
    """One line of a JSON-lines file: its number (from 1), the record, or what is wrong with it."""

    number: int
    record: Any
    problem: str | None
    torn: bool = False  # the last line, without its newline: a write cut short


def scan_jsonl(path: Path) -> Iterator[JsonLine]:
    """Every line of a JSON-lines file, parsed or with its problem; a missing file has none."""
    path = Path(path)
    if not path.exists():
        return
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                yield JsonLine(number, json.loads(raw), None)
            except ValueError as e:  # bad JSON, or bytes that are not UTF-8 (a line cut inside a character)
                torn = not raw.endswith(b"\n")
                what = "torn last line (no newline: a write cut short)" if torn else f"not valid JSON ({e})"
                yield JsonLine(number, None, what, torn)


def iter_jsonl(path: Path) -> Iterator[dict]:
    """Yield each record of a JSON-lines file; a torn last line is skipped with a warning, a bad line
    anywhere else is an error that names it."""
    for line in scan_jsonl(path):
        if line.problem is None:
            yield line.record
        elif line.torn:
            log.warning("%s: skipping line %d: %s", path, line.number, line.problem)
        else:
            raise ValueError(f"{path}: line {line.number}: {line.problem}")


def append_text(path: Path, text: str) -> None:
    """Append text (a labbook section) and fsync; a torn last line is ended first, so the text starts on a
    line of its own."""
    _append_bytes(path, text.encode("utf-8"), _end_torn_line)


def _append_bytes(path: Path, data: bytes, repair) -> None:
    """Append `data` whole or not at all: `repair(fd, path, size)` first deals with a torn last line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by close; readers do not lock
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            size = repair(fd, path, size)
        try:
            view = memoryview(data)
            while view:  # a short write (full disk) either completes or raises here
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, size)  # no fragment of this record stays behind
            raise
    finally:
        os.close(fd)


def _cut_torn_line(fd: int, path: Path, size: int) -> int:
    """The file's last line has no newline. A complete record only lost its newline: end it. Anything else
    is the fragment of a write cut short: cut it off (the writer of a ledger re-records from the run
    folders). Returns the new size."""
    start = _last_line_start(fd, size)
    fragment = os.pread(fd, size - start, start)
    try:
        json.loads(fragment)
    except ValueError:
        log.warning("%s: cut off a torn last line of %d bytes (a write cut short): %r", path, len(fragment),
                    fragment[:120])
        os.ftruncate(fd, start)
        return start
    return _end_torn_line(fd, path, size)


def _end_torn_line(fd: int, path: Path, size: int) -> int:
    os.write(fd, b"\n")
    return size + 1


def _last_line_start(fd: int, size: int, block: int = 65536) -> int:
    """Offset just after the last newline before `size` (0 when there is none)."""
    end = size
    while end > 0:
        begin = max(0, end - block)
        found = os.pread(fd, end - begin, begin).rfind(b"\n")
        if found >= 0:
            return begin + found + 1
        end = begin
    return 0
