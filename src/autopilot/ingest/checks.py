"""Checking a JSON-lines dataset file against a spec, line by line, at level quick, standard or deep.

    quick     the bytes (no BOM, UTF-8, no NUL, no blank or over-long line), one JSON object per line, and the
              spec's schema on every line
    standard  plus: no empty or whitespace-only text, role order, characters (and tokens) per record
    deep      plus: exact and near-exact duplicates, prompts that are in the study's evaluation set, and the
              expected answer appearing in the prompt

Each finding carries its line number, field and message. Errors reject the file; warnings (CRLF line ends,
duplicates, answer leakage where the spec allows it) are reported. An accepted file is one that any reader can
take line by line with `json.loads`. The file is streamed, and a line longer than `max_line_bytes` is skipped
in pieces of that size, never held whole.

Usage:
    with path.open("rb") as f:
        scan = check_stream(f, load_spec("chat_sft_v1"), Settings.from_config({...}))
    scan.accepted, scan.errors[:3], scan.totals
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import BinaryIO

from autopilot import schemas
from autopilot.errors import IngestError
from autopilot.ingest.specs import GenericView, Spec, known_specs, load_spec, shorten
from autopilot.study import fill_defaults

log = logging.getLogger(__name__)

KEEP = 50  # findings of each severity kept with line numbers; the totals count them all
BOM = b"\xef\xbb\xbf"
NUL = b"\x00"
SKIP_PIECE = 1 << 20


class Level(IntEnum):
    QUICK = 1
    STANDARD = 2
    DEEP = 3

    @classmethod
    def parse(cls, name: str) -> Level:
        return cls[name.upper()]


@dataclass(frozen=True)
class Settings:
    """The study's `ingest` settings (schemas/config.schema.yaml holds their meaning and defaults)."""

    level: Level
    default_spec: str | None
    default_priority: str
    settle_seconds: float
    max_file_bytes: int
    max_chars: int
    max_line_bytes: int
    tokenizer: Path | None
    max_tokens: int | None
    eval_file: Path | None

    @classmethod
    def from_config(cls, ingest: dict | None, root: Path = Path(".")) -> Settings:
        """From a study config's `ingest` block (None: every default); relative paths are under `root`."""
        block = fill_defaults(dict(ingest or {}), schemas.load("config")["properties"]["ingest"])
        return cls(
            level=Level.parse(block["level"]),
            default_spec=block["default_spec"],
            default_priority=block["default_priority"],
            settle_seconds=block["settle_seconds"],
            max_file_bytes=block["max_file_bytes"],
            max_chars=block["max_chars"],
            max_line_bytes=block["max_line_bytes"],
            tokenizer=root / block["tokenizer"] if block["tokenizer"] else None,
            max_tokens=block["max_tokens"],
            eval_file=root / block["eval_file"] if block["eval_file"] else None,
        )


@dataclass(frozen=True)
class Finding:
    line: int  # 1-based; 0 is the file as a whole
    field: str
    kind: str
    severity: str  # error | warning
    message: str

    def as_dict(self) -> dict:
        return {"line": self.line, "field": self.field, "kind": self.kind, "severity": self.severity,
                "message": self.message}

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return f"{where}{': ' + self.field if self.field else ''}: {self.message} [{self.kind}]"


@dataclass
class Scan:
    """What checking one file found."""

    spec: str | None
    level: Level
    lines: int = 0
    records: int = 0
    errors: list[Finding] = field(default_factory=list)  # the first KEEP
    warnings: list[Finding] = field(default_factory=list)  # the first KEEP
    totals: Counter = field(default_factory=Counter)
    n_errors: int = 0
    n_warnings: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.n_errors == 0

    def add(self, line: int, field: str, kind: str, message: str, severity: str = "error", count: int = 1) -> None:
        self.totals[kind] += count
        if severity == "error":
            self.n_errors += count
            kept = self.errors
        else:
            self.n_warnings += count
            kept = self.warnings
        if len(kept) < KEEP:
            kept.append(Finding(line, field, kind, severity, message))

    def headline(self) -> str:
        """The verdict and the commonest problems."""
        if self.accepted:
            return (f"accepted: {self.records} of {self.lines} lines passed {self.level.name.lower()} checks of "
                    f"{self.spec}" + (f", {self.n_warnings} warning(s)" if self.n_warnings else ""))
        kinds = ", ".join(f"{k} {n}" for k, n in self.totals.most_common(4))
        return f"rejected: {self.n_errors} error(s) ({kinds})"

    def summary(self) -> str:
        """One line for people: the headline and, for a rejected file, its first error."""
        return self.headline() if self.accepted else f"{self.headline()}; first: {self.errors[0]}"

    def as_dict(self) -> dict:
        return {
            "accepted": self.accepted,
            "spec": self.spec,
            "level": self.level.name.lower(),
            "counts": {"lines": self.lines, "records": self.records, "errors": self.n_errors,
                       "warnings": self.n_warnings},
            "totals": dict(sorted(self.totals.items())),
            "findings": [f.as_dict() for f in self.errors],
            "warnings": [f.as_dict() for f in self.warnings],
            "skipped": list(self.skipped),
        }


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # NaN and Infinity are not JSON


# ---------------------------------------------------------------- the line loop

def check_stream(stream: BinaryIO, spec: Spec, settings: Settings, level: Level | None = None) -> Scan:
    """Check every line of a binary stream (read to its end) and return what was found."""
    level = settings.level if level is None else level
    scan = Scan(spec.name, level)
    content = Content(spec, settings, scan) if level >= Level.STANDARD else None
    deep = Deep(spec, settings, scan) if level >= Level.DEEP else None
    is_valid, decode = spec.is_valid, DECODER.decode
    readline, limit = stream.readline, settings.max_line_bytes
    number = crlf = 0
    while raw := readline(limit + 1):
        number += 1
        if len(raw) > limit or NUL in raw or raw[:3] == BOM or raw.isspace():
            raw = _odd_line(scan, number, raw, limit, readline)
            if raw is None:
                continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            scan.add(number, "", "encoding", f"invalid UTF-8 at byte {e.start + 1} of the line; "
                                             f"save the file as UTF-8")
            continue
        if text[-2:] == "\r\n":
            crlf += 1
            if crlf == 1:
                first_crlf = number
        try:
            record = decode(text)
        except RecursionError:
            scan.add(number, "", "too_deep", "JSON nested too deeply to parse")
            continue
        except ValueError as e:
            scan.add(number, "", "json", f"not valid JSON: {shorten(str(e))}")
            continue
        if type(record) is not dict:
            scan.add(number, "", "not_object", f"valid JSON but a {type(record).__name__}, not an object ({{...}})")
            continue
        if not is_valid(record):
            _schema(scan, spec, number, record)
            continue
        if content is not None and not content.check(number, record):
            continue
        if deep is not None and not deep.check(number, raw, record):
            continue
        scan.records += 1
    scan.lines = number
    if crlf:
        scan.add(first_crlf, "", "crlf", f"CRLF (Windows) line ends on {crlf} line(s); accepted: JSON readers "
                                         f"ignore the \\r", severity="warning", count=crlf)
    if number == 0:
        scan.add(0, "", "empty_file", "the file is empty: there are no records")
    if deep is not None:
        scan.skipped.extend(deep.skipped)
    if content is not None:
        scan.skipped.extend(content.skipped)
    return scan


def _schema(scan: Scan, spec: Spec, number: int, record: dict) -> None:
    if len(scan.errors) < KEEP:
        where, message = spec.schema_error(record)
    else:  # past the kept findings only the count matters: skip the slow jsonschema pass
        where, message = "", "does not match the schema"
    scan.add(number, where, "schema", f"does not match {spec.name}: {message}")


def _odd_line(scan: Scan, number: int, raw: bytes, limit: int, readline) -> bytes | None:
    """Record what is wrong with an over-long, NUL-holding, BOM-led or blank line; the line to go on with."""
    if len(raw) > limit:
        skipped = len(raw)
        while raw and not raw.endswith(b"\n"):  # skip the rest of the line in pieces
            raw = readline(SKIP_PIECE)
            skipped += len(raw)
        scan.add(number, "", "line_too_long", f"line is {skipped} bytes, longer than max_line_bytes={limit}; "
                                              f"split the record or raise ingest.max_line_bytes")
        return None
    if number == 1 and raw[:3] == BOM:
        scan.add(1, "", "bom", "the file starts with a UTF-8 byte order mark (BOM), which JSON readers reject; "
                               "save it as UTF-8 without BOM")
        raw = raw[3:]
    if NUL in raw:
        scan.add(number, "", "nul_byte", f"NUL byte at byte {raw.index(NUL) + 1} of the line; "
                                         f"the file is binary, corrupt or UTF-16")
        return None
    if raw.isspace() or not raw:
        scan.add(number, "", "blank_line", "blank line; every line must be one JSON object (remove blank lines)")
        return None
    return raw


# ---------------------------------------------------------------- standard: content of valid records

class Content:
    """Empty texts, role order, characters and tokens per record."""

    def __init__(self, spec: Spec, settings: Settings, scan: Scan):
        self.view, self.scan = spec.view, scan
        self.max_chars = settings.max_chars
        self.skipped: list[str] = []
        self.tokenizer = load_tokenizer(settings.tokenizer) if settings.tokenizer and settings.max_tokens else None
        self.max_tokens = settings.max_tokens
        if settings.max_tokens and not settings.tokenizer:
            self.skipped.append("token limit: ingest.max_tokens is set but ingest.tokenizer is not")

    def check(self, number: int, record: dict) -> bool:
        """Whether the record passed; each problem is added to the scan."""
        texts = self.view.texts(record)
        ok = True
        for i, text in enumerate(texts):
            if not text or text.isspace():
                self.scan.add(number, self.view.field(record, i), "empty_field", "empty or whitespace-only text")
                ok = False
        for where, message in self.view.order(record):
            self.scan.add(number, where, "role_order", message)
            ok = False
        chars = sum(map(len, texts))
        if chars > self.max_chars:
            self.scan.add(number, "", "too_long", f"{chars} characters of text, more than max_chars={self.max_chars}")
            ok = False
        if self.tokenizer is not None:
            tokens = len(self.tokenizer.encode("\n".join(texts), add_special_tokens=False).ids)
            if tokens > self.max_tokens:
                self.scan.add(number, "", "too_many_tokens", f"{tokens} tokens, more than max_tokens={self.max_tokens}")
                ok = False
        return ok


@functools.lru_cache(maxsize=2)
def load_tokenizer(path: Path):
    """A `tokenizers` tokenizer from a tokenizer.json file or a folder holding one (loaded once per run)."""
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise IngestError(f"ingest.tokenizer: {file} does not exist (give a tokenizer.json or its folder)")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise IngestError("ingest.tokenizer is set but the `tokenizers` package is missing: "
                          "pip install 'autopilot[lm]'") from None
    return Tokenizer.from_file(str(file))


# ---------------------------------------------------------------- deep: duplicates, eval overlap, leakage

ASCII_IGNORED = bytes(c for c in range(128) if not chr(c).isalnum())  # punctuation, white space, controls


@functools.cache
def _unicode_ignored() -> dict[int, None]:
    """Every punctuation, separator and control character (built once, when a non-ASCII text first needs it)."""
    return {c: None for c in range(128, sys.maxunicode + 1) if unicodedata.category(chr(c))[0] in "PZC"}


def squash(text: str) -> bytes:
    """The text less case, punctuation and white space: equal for near-exact duplicates. Fast for ASCII text
    (a byte table), exact for any other."""
    folded = text.casefold()
    if not folded.isascii():
        folded = folded.translate(_unicode_ignored())
    return folded.encode("utf-8", "surrogatepass").translate(None, ASCII_IGNORED)


def normalize(text: str) -> str:
    """The text less case and punctuation, words separated by single spaces (for whole-word matches)."""
    return " ".join("".join(c if c.isalnum() else " " for c in text.casefold()).split())


class Deep:
    """Duplicates (exact: same line; near: same squashed texts), overlap with the eval set, answer leakage."""

    def __init__(self, spec: Spec, settings: Settings, scan: Scan):
        self.view, self.scan = spec.view, scan
        self.exact: dict[int, int] = {}
        self.near: dict[int, int] = {}
        self.skipped: list[str] = []
        self.eval_prompts = eval_prompts(settings.eval_file) if settings.eval_file else None
        if self.eval_prompts is None:
            self.skipped.append("train/eval overlap: no ingest.eval_file configured")
        if not self.view.has_answer:
            self.skipped.append(f"answer leakage: spec {spec.name} names no answer field")

    def check(self, number: int, raw: bytes, record: dict) -> bool:
        texts = self.view.texts(record)
        keys = [squash(t) for t in texts]
        first = self.exact.setdefault(hash(raw.rstrip(b"\r\n")), number)
        first_near = self.near.setdefault(hash(b"\x00".join(keys)), number)
        if first != number:
            self.scan.add(number, "", "duplicate", f"same record as line {first}", severity="warning")
        elif first_near != number:
            self.scan.add(number, "", "near_duplicate", f"same text as line {first_near} up to case, punctuation "
                                                        f"and white space", severity="warning")
        if not self.view.has_answer:
            return self._overlap(number, b"\x00".join(keys))
        prompt = b"\x00".join(keys[:-1])
        overlap_ok = self._overlap(number, prompt)
        return self._leak(number, record, texts, prompt) and overlap_ok

    def _overlap(self, number: int, prompt: bytes) -> bool:
        if self.eval_prompts is None or prompt not in self.eval_prompts:
            return True
        self.scan.add(number, "", "eval_overlap", f"the prompt is also in the evaluation set (line "
                                                  f"{self.eval_prompts[prompt]} of the eval file)")
        return False

    def _leak(self, number: int, record: dict, texts: list[str], prompt: bytes) -> bool:
        """The answer (or one of its items) in the prompt as whole words; a cheap substring test rules most out."""
        for part in self.view.answer_parts(texts[-1]):
            needle = squash(part)
            if not needle or needle not in prompt:
                continue
            words = f" {normalize(part)} "
            if not any(words in f" {normalize(t)} " for t in texts[:-1]):
                continue
            severity = self.view.leak_severity
            self.scan.add(number, self.view.field(record, len(texts) - 1), "answer_leak",
                          f"the answer {shorten(part.strip(), 80)!r} appears in the prompt", severity=severity)
            return severity != "error"
        return True


def eval_prompts(path: Path) -> dict[bytes, int]:
    """Squashed prompts of the evaluation set -> line number, read once per version of the file."""
    if not path.is_file():
        raise IngestError(f"ingest.eval_file: {path} does not exist (fix the path or set it to null)")
    st = path.stat()
    return load_eval_prompts(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=2)
def load_eval_prompts(path: Path, mtime_ns: int, size: int) -> dict[bytes, int]:
    """Squashed prompts of the evaluation set -> line number; each record is read with the spec it matches."""
    specs = [load_spec(name) for name in known_specs()]
    prompts: dict[str, int] = {}
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            view = next((s.view for s in specs if s.is_valid(record)), GenericView())
            keys = [squash(t) for t in view.texts(record)]
            prompts.setdefault(b"\x00".join(keys[:-1] if view.has_answer else keys), number)
    log.info("eval set %s: %d prompts", path, len(prompts))
    return prompts
