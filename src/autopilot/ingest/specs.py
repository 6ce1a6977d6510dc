"""Dataset specs: a JSON Schema in schemas/datasets/<name>.schema.yaml, plus how to read its texts.

Deny by default: a spec is known only if its schema file exists. The schema decides what a valid record is
(level quick). The content checks of levels standard and deep need to know which strings are the texts, which
part is the prompt and which the expected answer; each built-in spec says so in a small view below. A spec
added as a schema file alone gets the generic view: every string is a text, and there is no answer.

Usage:
    spec = load_spec("chat_sft_v1")      # IngestError if unknown
    spec.is_valid(record)                # fast, compiled from the schema
    spec.schema_error(record)            # ("messages/1/role", "'bot' is not one of [...]")
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from jsonschema import Draft202012Validator

from autopilot import schemas
from autopilot.errors import IngestError, SchemaError
from autopilot.ingest.compiled import Unsupported, compile_schema

log = logging.getLogger(__name__)

SPEC_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # a spec name is never a path
MESSAGE_CHARS = 300


# ---------------------------------------------------------------- views: where the texts of a record are

@dataclass(frozen=True)
class FlatView:
    """A record with one prompt field and one answer field, both strings (completion_v1, syllo_v1)."""

    prompt: str
    answer: str
    leak_severity: str = "warning"
    answer_sep: str | None = None  # answers listing several items are checked item by item for leakage
    has_answer = True

    def texts(self, record: dict) -> list[str]:
        """Texts in order: the prompt parts, then the answer last."""
        return [record[self.prompt], record[self.answer]]

    def field(self, record: dict, index: int) -> str:
        return (self.prompt, self.answer)[index]

    def order(self, record: dict) -> list[tuple[str, str]]:
        return []

    def answer_parts(self, answer: str) -> list[str]:
        return answer.split(self.answer_sep) if self.answer_sep else [answer]


@dataclass(frozen=True)
class ChatView:
    """chat_sft_v1: the contents of the turns; the answer is the last (assistant) turn."""

    leak_severity: str = "warning"
    has_answer = True

    def texts(self, record: dict) -> list[str]:
        return [m["content"] for m in record["messages"]]

    def field(self, record: dict, index: int) -> str:
        return f"messages/{index}/content"

    def order(self, record: dict) -> list[tuple[str, str]]:
        """A system turn only first; then user and assistant alternate, from user to assistant."""
        messages = record["messages"]
        problems = []
        expected = "user"
        for i, m in enumerate(messages):
            role = m["role"]
            if role == "system":
                if i:
                    problems.append((f"messages/{i}/role", "a system turn may only be the first turn"))
                continue
            if role != expected:
                problems.append((f"messages/{i}/role", f"expected a {expected} turn here (user and assistant "
                                                       f"turns alternate, starting with user), got {role}"))
            expected = "assistant" if role == "user" else "user"
        if messages[-1]["role"] != "assistant":
            problems.append((f"messages/{len(messages) - 1}/role", "the last turn must be the assistant's"))
        return problems

    def answer_parts(self, answer: str) -> list[str]:
        return [answer]


@dataclass(frozen=True)
class GenericView:
    """A spec with no view of its own: every string in the record is a text; no answer."""

    leak_severity: str = "warning"
    has_answer = False

    def texts(self, record: Any) -> list[str]:
        return [text for _, text in _strings(record, "")]

    def field(self, record: Any, index: int) -> str:
        return list(_strings(record, ""))[index][0]

    def order(self, record: Any) -> list[tuple[str, str]]:
        return []

    def answer_parts(self, answer: str) -> list[str]:
        return [answer]


def _strings(value: Any, path: str):
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}/{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}/{i}" if path else str(i))


VIEWS = {
    "chat_sft_v1": ChatView(),
    "completion_v1": FlatView("prompt", "completion"),
    "syllo_v1": FlatView("puzzle", "answer", leak_severity="error", answer_sep=","),
}


# ---------------------------------------------------------------- specs

@dataclass(frozen=True)
class Spec:
    name: str
    validator: Draft202012Validator
    is_valid: Callable[[Any], bool]
    view: FlatView | ChatView | GenericView

    def schema_error(self, record: Any) -> tuple[str, str]:
        """The most relevant schema violation of an invalid record, as (field, message)."""
        try:  # the deepest error is the most specific: `messages/2/role: 'bot' is not one of [...]`
            error = max(islice(self.validator.iter_errors(record), 100), key=lambda e: len(e.absolute_path))
        except RecursionError:
            return "", "the record is nested too deeply to check against the schema"
        except ValueError:  # no error at all: the compiled predicate and jsonschema disagree
            log.error("spec %s: compiled schema rejected a record jsonschema accepts: %.200r", self.name, record)
            return "", "the record does not match the schema"
        field = "/".join(str(p) for p in error.absolute_path)
        if error.validator == "contains":  # the stock message repeats the whole array
            wanted = error.validator_value.get("description") or json.dumps(error.validator_value)
            return field, f"needs {shorten(wanted, 120)}"
        return field, shorten(error.message)


def shorten(text: str, limit: int = MESSAGE_CHARS) -> str:
    """A message quotes the data it complains about; keep a hostile 50 MB value out of the reports."""
    return text if len(text) <= limit else text[: limit - 15] + f"... ({len(text)} chars)"


def known_specs() -> list[str]:
    folder = schemas.schema_dir() / "datasets"
    return sorted(p.name.removesuffix(".schema.yaml") for p in folder.glob("*.schema.yaml"))


@functools.cache
def load_spec(name: str) -> Spec:
    """The spec of that name; IngestError (naming the known specs) if there is no such schema."""
    if not isinstance(name, str) or not SPEC_NAME.match(name) or name not in known_specs():
        raise IngestError(f"unknown dataset spec {name!r}; known specs: {', '.join(known_specs())} "
                          f"(schemas/datasets/<spec>.schema.yaml)")
    try:
        validator = schemas.validator(f"datasets/{name}")
    except SchemaError as e:
        raise IngestError(str(e)) from None
    try:
        is_valid = compile_schema(validator.schema)
    except Unsupported as e:
        log.warning("spec %s: %s; every line is validated by jsonschema (slower)", name, e)
        is_valid = validator.is_valid
    return Spec(name, validator, is_valid, VIEWS.get(name, GenericView()))
