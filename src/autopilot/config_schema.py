"""The study config's schema, read for people: each setting's path, node and what values it allows.

Both config/README.md (`config_docs`) and the config error messages (`config_errors`) describe a setting the same
way, from schemas/config.schema.yaml alone, so neither can say something the schema does not.

Usage:
    for path, node in settings(): ...             # ("judge", "alpha"), {"type": "number", ...}
    allowed(node_at(("judge", "alpha")))          # "a number > 0 and < 0.5"
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from autopilot import schemas

TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}
BOUNDS = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))


def root() -> dict:
    return schemas.load("config")


def node_at(path: tuple) -> Mapping | None:
    """The schema node of a setting (`("judge", "alpha")`); a search_space entry gets its shared node."""
    node: Mapping = root()
    for part in path:
        properties = node.get("properties", {})
        if part in properties:
            node = properties[part]
        elif isinstance(node.get("additionalProperties"), Mapping):
            node = node["additionalProperties"]
        else:
            return None
    return node


def settings(node: Mapping | None = None, prefix: tuple = ()) -> Iterator[tuple[tuple, Mapping]]:
    """Every named setting, depth first in schema order: (path, node)."""
    node = root() if node is None else node
    for key, sub in node.get("properties", {}).items():
        yield (*prefix, key), sub
        if "properties" in sub:
            yield from settings(sub, (*prefix, key))


def literal(value: Any) -> str:
    """A value as it is written in YAML/JSON: `null`, `true`, `0.05`, `"text"` only where needed."""
    return json.dumps(value) if not isinstance(value, str) else value


def allowed(node: Mapping) -> str:
    """What a schema node accepts, in words: `one of: tpe, random`, `a whole number >= 1`, `null or text`."""
    if "enum" in node:
        return "one of: " + ", ".join(literal(v) for v in node["enum"])
    if "const" in node:
        return f"exactly {literal(node['const'])}"
    if "oneOf" in node or "anyOf" in node:
        return " or ".join(_form(branch) for branch in node.get("oneOf", node.get("anyOf")))
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    words = [TYPE_WORDS.get(t, t) for t in types if t != "null"]
    text = " or ".join(words) or "any value"
    limits = [f"{sign} {literal(node[key])}" for key, sign in BOUNDS if key in node]
    if limits:
        text += " " + " and ".join(limits)
    if "pattern" in node:
        text += f" matching `{node['pattern']}`"
    if "maxLength" in node:
        text += f" of at most {node['maxLength']} characters"
    if isinstance(node.get("items"), Mapping) and node["items"].get("type"):
        text += f" (items: {allowed(node['items'])})"
    if "minItems" in node:
        text += f", at least {node['minItems']} item{'s' if node['minItems'] != 1 else ''}"
    entry = node.get("additionalProperties")
    if isinstance(entry, Mapping) and "properties" not in node and entry.get("type"):
        text += f" (each value: {allowed(entry)})"
    if isinstance(node.get("properties"), Mapping) and node["properties"]:
        text += f" of the settings {', '.join(node['properties'])}"
    if "minProperties" in node:
        text += f" with at least {node['minProperties']} entr{'ies' if node['minProperties'] != 1 else 'y'}"
    return f"null or {text}" if "null" in types else text


def _form(branch: Mapping) -> str:
    """One form of a oneOf: a mapping whose `type` names it, e.g. `float (low, high; optional: log)`."""
    properties = branch.get("properties", {})
    tag = properties.get("type", {}).get("enum")
    if not tag:
        return allowed(branch)
    required = [k for k in branch.get("required", []) if k != "type"]
    optional = [k for k in properties if k not in branch.get("required", [])]
    keys = ", ".join(required) + (f"; optional: {', '.join(optional)}" if optional else "")
    return f"{'/'.join(map(str, tag))} ({keys})"
