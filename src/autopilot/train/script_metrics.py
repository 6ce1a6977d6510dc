"""Metrics read from what an unmodified training script already writes: its output, a JSON file, TensorBoard events.

Each reader turns what it finds into records (`{name: number}`, in the order they were written) while the script
runs, and says where it looked when a metric is missing. Files that were there before the script started (an
earlier attempt's) are ignored unless the script rewrites them, so a stale file never stands for this run.

    stdout       every output line: a regular expression per metric (`patterns`), or a JSON object line
    json_file    one JSON object, a list of them, or JSON lines; re-read whenever it changes
    tensorboard  scalar events of the event files under a folder, read with the `tensorboard` package's own
                 reader (incrementally: each poll reads only what was appended)

Usage:
    reader = make_reader(metrics_from, run_dir, root)   # before the script starts
    reader.feed(line)                         # each line of the script's output
    records = reader.poll()                   # new records since the last poll
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path

from autopilot.errors import ConfigError, TrainerError
from autopilot.paths import RunPaths
from autopilot.settings import MetricsFrom

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 64 * 1024 * 1024  # a metrics file larger than this is not a metrics file
EVENT_FILE_GLOB = "events.out.tfevents.*"


def file_signature(path: Path) -> tuple | None:
    """What tells a rewritten file from the one that was there before: inode, size, modification time."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def numbers(obj: dict) -> dict[str, float]:
    """The numeric fields of a JSON record (true/false are not numbers)."""
    return {k: float(v) for k, v in obj.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def to_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def compile_patterns(patterns: Mapping[str, str], source: str = "trainer.metrics_from.patterns") -> dict:
    """Each pattern compiled; ConfigError names one that is not a regular expression or captures no number."""
    compiled = {}
    for name, pattern in patterns.items():
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"{source}.{name}: {pattern!r} is not a regular expression ({e})") from None
        if rx.groups == 0:
            raise ConfigError(f"{source}.{name}: {pattern!r} has no group: put the number in (...) or (?P<value>...)")
        compiled[name] = rx
    return compiled


class StdoutReader:
    """Records from the script's output lines (each line split at carriage returns, as progress bars write)."""

    reads_output = True  # polled as often as output comes (the others: files, read every FILE_POLL_SECONDS)

    def __init__(self, patterns: Mapping[str, str] | None):
        self.patterns = compile_patterns(patterns) if patterns else None
        self.pending: list[dict] = []
        self.lines = 0
        self.json_lines = 0

    def feed(self, line: str) -> None:
        self.lines += 1
        for part in line.split("\r"):
            record = self.parse(part)
            if record:
                self.pending.append(record)

    def parse(self, text: str) -> dict[str, float]:
        if self.patterns is None:
            text = text.strip()
            if not (text.startswith("{") and text.endswith("}")):
                return {}
            try:
                obj = json.loads(text)
            except ValueError:
                return {}
            self.json_lines += 1
            return numbers(obj) if isinstance(obj, dict) else {}
        record = {}
        for name, rx in self.patterns.items():
            m = rx.search(text)
            if m:
                value = to_number(m.group("value") if "value" in rx.groupindex else m.group(1) or "")
                if value is not None:
                    record[name] = value
        return record

    def poll(self, final: bool = False) -> list[dict]:
        records, self.pending = self.pending, []
        return records

    def where(self, name: str) -> str:
        if self.patterns is None:
            return (f"a JSON object line with a number under {name!r} in the script's output ({self.lines} lines, "
                    f"{self.json_lines} of them JSON objects; see train.log)")
        if name in self.patterns:
            pattern = self.patterns[name].pattern
            return f"the regex {pattern!r} in the script's output ({self.lines} lines; see train.log)"
        return f"the script's output, but trainer.metrics_from.patterns has no pattern named {name!r}"


class JsonFileReader:
    """Records from a JSON file the script writes (or rewrites) as it goes."""

    reads_output = False

    def __init__(self, path: Path, root: Path):
        self.path, self.root = path, root
        self.before = file_signature(path)
        self.seen_signature = self.before
        self.consumed = 0
        self.last: dict | None = None
        self.error: str | None = None

    def feed(self, line: str) -> None:
        pass

    def poll(self, final: bool = False) -> list[dict]:
        signature = file_signature(self.path)
        if signature is None or signature == self.seen_signature:
            return []
        records = self.read(final)
        if records is None:
            return []  # half-written: read it again at the next poll
        self.seen_signature = signature
        if len(records) >= self.consumed and records[: self.consumed][-1:] == ([self.last] if self.last else []):
            new = records[self.consumed:]  # appended to
        else:
            new = records[-1:]  # rewritten in place: its latest record
        self.consumed, self.last = len(records), (records[-1] if records else None)
        return [numbers(r) for r in new]

    def read(self, final: bool) -> list[dict] | None:
        """Its records, or None while it cannot be parsed (at the end: the error is kept for the message)."""
        if self.path.stat().st_size > MAX_FILE_BYTES:
            self.error = f"it is larger than {MAX_FILE_BYTES // 2**20} MiB"
            return None
        text = self.path.read_text(encoding="utf-8", errors="replace")
        try:
            obj = json.loads(text)
            records = obj if isinstance(obj, list) else [obj]
        except ValueError:
            lines = [line for line in text.splitlines() if line.strip()]
            if lines and not final and not text.endswith("\n"):
                lines = lines[:-1]  # the last line may still be being written
            try:
                records = [json.loads(line) for line in lines]
            except ValueError as e:
                self.error = f"it is neither JSON nor JSON lines ({e})"
                return None
        self.error = None
        return [r for r in records if isinstance(r, dict)]

    def where(self, name: str) -> str:
        shown = self.path.relative_to(self.root) if self.path.is_relative_to(self.root) else self.path
        if file_signature(self.path) is None:
            return f"{name!r} in {shown}, which the script did not write"
        if file_signature(self.path) == self.before:
            return f"{name!r} in {shown}, which the script did not write this time (it is older than the run)"
        if self.error:
            return f"{name!r} in {shown}, which could not be read: {self.error}"
        keys = sorted(self.last or {})
        return f"a number under {name!r} in {shown} (its last record has {', '.join(map(repr, keys)) or 'no keys'})"


class TensorBoardReader:
    """Records from the scalar events of every event file under a folder, in the order they were written."""

    reads_output = False

    def __init__(self, folder: Path, run_dir: Path, root: Path, step_key: str):
        self.folder, self.run_dir, self.root, self.step_key = folder, run_dir, root, step_key
        self.before = {p: file_signature(p) for p in self.event_files()}
        self.loaders: dict[Path, object] = {}
        self.tags: set[str] = set()

    def event_files(self) -> list[Path]:
        seeds = RunPaths(self.run_dir).seeds_dir  # the extra seeds' files are not this seed's
        return sorted(p for p in self.folder.rglob(EVENT_FILE_GLOB) if p.is_file() and not p.is_relative_to(seeds))

    def feed(self, line: str) -> None:
        pass

    def poll(self, final: bool = False) -> list[dict]:
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

        records = []
        for path in self.event_files():
            if path not in self.loaders:
                if self.before.get(path) is not None and self.before[path] == file_signature(path):
                    continue  # an earlier attempt's file
                self.loaders[path] = EventFileLoader(str(path))
            records += self.scalars(self.loaders[path])
        return records

    def scalars(self, loader) -> list[dict]:
        from tensorboard import data_compat
        from tensorboard.util import tensor_util

        records = []
        for event in loader.Load():
            event = data_compat.migrate_event(event)
            record = {}
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "scalars" or not value.HasField("tensor"):
                    continue
                number = float(tensor_util.make_ndarray(value.tensor).item())
                record[value.tag] = shortest_float32(number) if value.tensor.dtype == 1 else number  # 1: DT_FLOAT
                self.tags.add(value.tag)
            if record:
                records.append({**record, self.step_key: float(event.step)})
        return records

    def where(self, name: str) -> str:
        shown = self.folder.relative_to(self.root) if self.folder.is_relative_to(self.root) else self.folder
        files = [p for p in self.loaders]
        if not files:
            return f"a scalar tag {name!r} in TensorBoard event files under {shown}, but the script wrote none there"
        return (f"a scalar tag {name!r} in the {len(files)} TensorBoard event file(s) under {shown} "
                f"(tags found: {', '.join(sorted(self.tags)) or 'none'})")


def shortest_float32(value: float) -> float:
    """A float32 scalar as the number its writer meant (0.9, not 0.8999999761581421)."""
    import numpy as np

    return float(str(np.float32(value))) if math.isfinite(value) else value


def make_reader(settings: MetricsFrom, run_dir: Path, root: Path):
    """The reader of `trainer.metrics_from` for one seed's run folder; create it before the script starts."""
    if settings.source == "stdout":
        return StdoutReader(settings.patterns)
    if settings.source == "json_file":
        return JsonFileReader(run_dir / settings.path, root)
    if settings.source == "tensorboard":
        return TensorBoardReader(run_dir / (settings.path or "."), run_dir, root, settings.step)
    raise TrainerError(f"trainer.metrics_from.source {settings.source!r} has no reader")
