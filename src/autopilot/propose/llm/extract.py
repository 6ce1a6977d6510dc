"""The JSON object in an LLM's answer, checked against the schema it was asked for. Data only: never run.

Accepted: the whole answer as one JSON object, a fenced block holding one (```json ... ```), or the first
object inside prose. Anything else (no object, an array, broken JSON) is `invalid_json`; an object that
does not match the schema is `invalid_answer`, with every problem listed.

Usage:
    answer(text, schema)     # the object, or LLMFailure
"""

from __future__ import annotations

import json
import re

from jsonschema import Draft202012Validator

from autopilot.propose.llm import LLMFailure

FENCED = re.compile(r"```[a-zA-Z]*\s*\n(.*?)```", re.DOTALL)
MAX_STARTS = 200  # `{` positions tried in prose; an answer is bounded by max_tokens anyway


def json_object(text: str) -> dict:
    """The first JSON object in text: the whole of it, a fenced block, or one embedded in prose."""
    for candidate in (text.strip(), *(m.group(1).strip() for m in FENCED.finditer(text))):
        try:
            found = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(found, dict):
            return found
    decoder = json.JSONDecoder()
    for n, match in enumerate(re.finditer(r"\{", text)):
        if n >= MAX_STARTS:
            break
        try:
            found, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(found, dict):
            return found
    raise LLMFailure(f"the answer holds no JSON object (it starts {text.strip()[:120]!r})", "invalid_json")


def answer(text: str, schema: dict) -> dict:
    obj = json_object(text)
    errors = sorted(Draft202012Validator(schema).iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        listed = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message[:200]}"
                           for e in errors[:8])
        raise LLMFailure(f"the answer does not match the schema it was given: {listed}", "invalid_answer")
    return obj
