"""What the LLM must answer, as JSON Schemas derived from schemas/proposal.schema.yaml (never a copy).

The worker answers the proposal's `overrides`, `rationale`, `hypothesis` and `housekeeping`; the mentor
answers the proposal's `mentor.review`. Every string is bounded, so a model that loops produces an invalid
answer, not an endless one. The schema sent to the LLM is narrower than the file: `overrides` is limited to the
study's search space (names, types, ranges, choices: a server that turns schemas into grammars then keeps the
values in range), and no string may exceed SENT_MAX_CHARS (llama.cpp turns maxLength into a repetition that its
grammar parser refuses, and then crashes on, past about a thousand; a small model that loops stops sooner). The
answer is checked against the file's wider form, so that a key or value outside the space reaches the guard and
is rejected there, by name.

The coder (code mode) answers a unified diff (`diff`) with its rationale and hypothesis; an agent CLI, which edits
the files itself, answers the rationale and hypothesis alone. Its diff is not capped in the schema sent (a diff is
longer than any note); a model that loops ends at max_tokens with an answer that does not parse.

Usage:
    send, check = worker_schemas(study)
    send, check = mentor_schemas(study)
    send, check = coder_schemas(with_diff=True)
"""

from __future__ import annotations

import copy

from autopilot import schemas
from autopilot.study import Study

WORKER_FIELDS = ("overrides", "rationale", "hypothesis", "housekeeping")
SENT_MAX_CHARS = 600  # the longest string the schema sent to the LLM allows (the file allows more)


def worker_schemas(study: Study) -> tuple[dict, dict]:
    props = schemas.load("proposal")["properties"]
    check = {"type": "object", "additionalProperties": False, "required": list(WORKER_FIELDS),
             "properties": {name: copy.deepcopy(props[name]) for name in WORKER_FIELDS}}
    return narrowed(check, study), check


def mentor_schemas(study: Study) -> tuple[dict, dict]:
    proposal = schemas.load("proposal")["properties"]
    check = copy.deepcopy(proposal["mentor"]["properties"]["review"])
    check["type"] = "object"  # null is how a failed review is recorded, never an answer
    description = check["properties"]["overrides"].get("description")
    check["properties"]["overrides"] = {**copy.deepcopy(proposal["overrides"]), "description": description}
    return narrowed(check, study), check


def narrowed(schema: dict, study: Study) -> dict:
    """`schema` with its `overrides` limited to the study's search space and its strings to SENT_MAX_CHARS."""
    out = capped(copy.deepcopy(schema))
    wide = out["properties"]["overrides"]
    out["properties"]["overrides"] = {
        "type": "object", "description": wide.get("description", ""), "additionalProperties": False,
        "maxProperties": wide["maxProperties"],
        "properties": {key: value_schema(space) for key, space in study.search_space.items()},
    }
    return out


def capped(schema):
    """The schema with every maxLength at most SENT_MAX_CHARS, in place."""
    if isinstance(schema, dict):
        if "maxLength" in schema:
            schema["maxLength"] = min(schema["maxLength"], SENT_MAX_CHARS)
        for value in schema.values():
            capped(value)
    elif isinstance(schema, list):
        for value in schema:
            capped(value)
    return schema


def value_schema(space: dict) -> dict:
    if space["type"] == "categorical":
        return {"enum": list(space["choices"])}
    kind = "integer" if space["type"] == "int" else "number"
    return {"type": kind, "minimum": space["low"], "maximum": space["high"]}


def coder_schemas(with_diff: bool) -> tuple[dict, dict]:
    """The coder's answer: a diff (unless an agent edits the files itself), a rationale and a hypothesis."""
    props = schemas.load("proposal")["properties"]
    fields = {name: copy.deepcopy(props[name]) for name in ("rationale", "hypothesis")}
    if with_diff:
        fields = {"diff": {"type": "string", "description": "The change as a unified diff (---/+++ headers, @@ hunks) "
                                                            "against the files shown, paths relative to the project.",
                           "maxLength": props["code"]["properties"]["diff"]["maxLength"]}, **fields}
    check = {"type": "object", "additionalProperties": False, "required": list(fields), "properties": fields}
    send = capped(copy.deepcopy(check))
    if with_diff:
        del send["properties"]["diff"]["maxLength"]
    return send, check
