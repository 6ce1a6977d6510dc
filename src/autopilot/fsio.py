"""Safe file writes: every file the project writes goes through here.

A reader never sees a half-written file: data goes to a temp file in the same folder, is fsynced, and is
renamed over the target (atomic on POSIX), then the folder is fsynced so the rename survives a power cut.
Appends to JSON-lines ledgers are one `write` of one whole line followed by fsync; readers skip a torn
last line (a process killed between bytes cannot happen for a single small write, a power cut can).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    """Append one record as one line with a single write, then fsync."""
    _append_bytes(path, (json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8"))


def iter_jsonl(path: Path) -> Iterator[dict]:
    """Yield each record of a JSON-lines file; a torn last line (no newline, bad JSON) is skipped."""
    path = Path(path)
    if not path.exists():
        return
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                yield json.loads(raw)
            except json.JSONDecodeError:
                if raw.endswith(b"\n"):
                    raise
                log.warning("%s: skipping torn last line %d", path, number)


def append_text(path: Path, text: str) -> None:
    """Append text (a labbook section) with one write and fsync."""
    _append_bytes(path, text.encode("utf-8"))


def _append_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
