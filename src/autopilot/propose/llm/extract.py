"""The JSON object in an LLM's answer, checked against the schema it was asked for. Data only: never run.

Accepted: the whole answer as one JSON object, a fenced block holding one (```json ... ```), or the first
object inside prose. Anything else (no object, an array, broken JSON, a lone surrogate escape such as
\ud800 that no file can hold) is `invalid_json`; an object that does not match the schema is `invalid_answer`,
with every problem listed. Numbers are read as JSON allows, NaN and Infinity included, and an integer of more
than MAX_INT_DIGITS digits (beyond any float) as Infinity: the guard rejects them with a reason, by key.

Usage:
    answer(text, schema)     # the object, or LLMFailure
"""

from __future__ import annotations

import json
import math
import re

from jsonschema import Draft202012Validator

from autopilot.propose.llm import LLMFailure

FENCED = re.compile(r"```[a-zA-Z]*\s*\n(.*?)```", re.DOTALL)
MAX_STARTS = 200  # `{` positions tried in prose; an answer is bounded by max_tokens anyway
# 1.8e308, the largest float, has 309 digits; Python refuses to read an integer of more than 4300 (ValueError)
MAX_INT_DIGITS = 400


def parse_int(digits: str) -> int | float:
    """An integer of the answer; one too long for any float as +-Infinity, which the guard rejects by key."""
    if len(digits) > MAX_INT_DIGITS:
        return -math.inf if digits.startswith("-") else math.inf
    return int(digits)


DECODER = json.JSONDecoder(parse_int=parse_int)


def json_object(text: str) -> dict:
    """The first JSON object in text: the whole of it, a fenced block, or one embedded in prose."""
    for candidate in (text.strip(), *(m.group(1).strip() for m in FENCED.finditer(text))):
        try:
            found = DECODER.decode(candidate)
        except (ValueError, RecursionError):  # broken JSON, or nested deeper than the parser goes
            continue
        if isinstance(found, dict):
            return found
    for n, match in enumerate(re.finditer(r"\{", text)):
        if n >= MAX_STARTS:
            break
        try:
            found, _ = DECODER.raw_decode(text, match.start())
        except (ValueError, RecursionError):
            continue
        if isinstance(found, dict):
            return found
    raise LLMFailure(f"the answer holds no JSON object (it starts {text.strip()[:120]!r})", "invalid_json")


def answer(text: str, schema: dict) -> dict:
    obj = json_object(text)
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise LLMFailure("the answer holds a string with a lone surrogate escape (such as \\ud800), which is not "
                         "text", "invalid_json") from None
    errors = sorted(Draft202012Validator(schema).iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        listed = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message[:200]}"
                           for e in errors[:8])
        raise LLMFailure(f"the answer does not match the schema it was given: {listed}", "invalid_answer")
    return obj
