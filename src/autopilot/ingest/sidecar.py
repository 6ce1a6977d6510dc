"""The sidecar `<name>.meta.yaml`: a few keys (spec, priority, note) beside a dataset file, read as data only.

It is read once through files.open_regular, at most MAX_BYTES, and parsed by a YAML loader that refuses aliases
(a few hundred bytes of `&a [*a, *a, ...]` expand to gigabytes as soon as anything walks them: a schema error
message, a JSON dump) and nesting deeper than MAX_DEPTH (PyYAML's composer recurses once per level, so deep
nesting ends in RecursionError). What it holds must then match schemas/dataset_meta.schema.yaml. Whatever is
wrong becomes the sidecar's `problem`, which rejects its data file with that reason; nothing here raises for
bad content.

Usage:
    found = sidecar.read(Path("inbox/chat.meta.yaml"))
    found.problem or found.meta["spec"]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.composer import ComposerError

from autopilot import schemas
from autopilot.ingest import files

MAX_BYTES = 64 * 1024  # a sidecar holds a few keys
MAX_DEPTH = 8  # the schema has one level; a little room for a clear schema message instead of a YAML one


class _Loader(yaml.SafeLoader):
    """SafeLoader without aliases and with a nesting limit."""

    depth = 0

    def compose_node(self, parent, index):
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            raise ComposerError(None, None, "aliases (*name) are not allowed in a sidecar", mark)
        if self.depth >= MAX_DEPTH:
            raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


@dataclass(frozen=True)
class Sidecar:
    name: str
    meta: dict | None = None  # its values, when it is valid
    text: str | None = None  # its text, kept in the report of an accepted file
    problem: str | None = None  # why it rejects its data file


def read(path: Path) -> Sidecar:
    """Open, read (bounded) and parse a sidecar; anything odd is its problem, never an exception."""
    try:
        fd = files.open_regular(path)
    except files.NotRegular as e:
        return Sidecar(path.name, problem=f"{e}; a sidecar must be a regular file")
    try:
        data = files.read_at_most(fd, MAX_BYTES)
    finally:
        os.close(fd)
    return parse(path.name, data)


def parse(name: str, data: bytes) -> Sidecar:
    if len(data) > MAX_BYTES:
        return Sidecar(name, problem=f"more than {MAX_BYTES} bytes; a sidecar holds a few keys (spec, priority, "
                                     f"note)")
    try:
        text = data.decode("utf-8")
        meta = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as e:
        return Sidecar(name, problem=f"not valid UTF-8 YAML (invalid UTF-8 at byte {e.start + 1})")
    except (yaml.YAMLError, ValueError) as e:  # ValueError: an integer of thousands of digits, a bad date
        return Sidecar(name, problem=f"not valid UTF-8 YAML ({str(e).splitlines()[0]})")
    meta = {} if meta is None else meta
    found = schemas.problems(meta, "dataset_meta") if isinstance(meta, dict) else ["(top level): not a mapping"]
    if found:
        return Sidecar(name, problem="does not match schemas/dataset_meta.schema.yaml: " + "; ".join(found[:5]))
    return Sidecar(name, meta=meta, text=text)


def unreadable(name: str, what: str) -> Sidecar:
    """A sidecar that was not opened (a directory, a FIFO, a link): its problem says what it is."""
    return Sidecar(name, problem=f"{name} is {what}, not a regular file; a sidecar must be a regular file")
