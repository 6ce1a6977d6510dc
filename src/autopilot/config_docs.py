"""config/README.md, written from schemas/config.schema.yaml alone (`autopilot config docs`), so it cannot drift.

The Snakemake workflow catalog shows a workflow's config/README.md as its settings page. This one has: how a
study config is given and checked, the rules that span settings, then one table per level of the config
(setting, what it allows, its default, its description), all taken from the schema.

Usage:
    text = render()          # the whole file
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from autopilot import config_schema

HEADER = """\
# Study configuration

<!-- Generated from schemas/config.schema.yaml by `autopilot config docs`; edit the schema, then run it.
     tests/test_config_docs.py fails when this file and the schema disagree. -->

{description}

## Giving a study config

- `config/config.yaml` is the embedded default study: `snakemake -c2 --profile profiles/local` runs it.
- `snakemake --configfile my_study.yaml ...` runs your own study file instead (it replaces the default rather
  than merging into it); `config/studies/` holds examples.
- `--config KEY=VALUE` changes one setting for one invocation, e.g. `--config iterations=5`.
- The workflow checks the config before anything runs, and so does every `autopilot` command that reads it. A
  problem names the key, the file and line (or `--config`), what is allowed and, for a misspelled key or value,
  the closest match. `autopilot config check [FILE ...] [--config KEY=VALUE ...]` runs the same check; add
  `--full` (or set `AUTOPILOT_CONFIG_ERRORS=full` for any command and for snakemake) to see the schema of each
  bad key as well.
- The config is closed: a key that is not listed below is an error. A setting without a default is unset
  unless given; the default of a setting applies whenever the key is left out.

## Rules across settings

{rules}
- A `search_space` range needs `low < high`, and `low > 0` when `log` is true.
- Every key of `search_space` needs a value in `baseline` (the first run trains the baseline).
- Task `command` needs `trainer.command`.
- Mode `continual` needs task `causal_lm`, `data.source: queue`, `generation_size: 1` and `registry.lora: merge`;
  `curriculum.enabled` needs mode `continual`.
"""


def render() -> str:
    """The whole of config/README.md."""
    root = config_schema.root()
    rules = "\n".join(f"- {_text(rule['description'])}" for rule in root.get("allOf", []) if "description" in rule)
    parts = [HEADER.format(description=_cell(_text(root.get("description", ""))), rules=_cell(rules))]
    parts.append(_section("Settings", (), root))
    for path, node in config_schema.settings():
        if "properties" in node:
            parts.append(_section(f"`{'.'.join(path)}`", path, node))
        elif _has_forms(node):
            parts.append(_entries(path, node))
    return "\n".join(parts).rstrip() + "\n"


def _section(title: str, path: tuple, node: Mapping) -> str:
    lines = [f"## {title}", ""]
    if path:
        lines += [_cell(_text(node.get("description", ""))), ""]
    lines += ["| setting | allowed | default | description |", "|---|---|---|---|"]
    required = set(node.get("required", []))
    for key, sub in node.get("properties", {}).items():
        full = (*path, key)
        lines.append(f"| `{'.'.join(full)}` | {_cell(_allowed(full, sub))} | {_cell(_default(sub, key in required))} "
                     f"| {_cell(_text(sub.get('description', '')))} |")
    return "\n".join(lines) + "\n"


def _entries(path: tuple, node: Mapping) -> str:
    """A mapping of user-named entries (search_space): the forms an entry may take."""
    name = ".".join(path)
    entry = node["additionalProperties"]
    lines = [f"## `{name}`", "", _cell(_text(node.get("description", ""))), "",
             f"Each entry `{name}.<key>` takes one of these forms:", "",
             "| form | keys | optional keys |", "|---|---|---|"]
    for branch in entry.get("oneOf", [entry]):
        properties = branch.get("properties", {})
        tag = "/".join(map(str, properties.get("type", {}).get("enum", []))) or "-"
        needed = [k for k in branch.get("required", []) if k != "type"]
        optional = [k for k in properties if k not in branch.get("required", [])]
        lines.append(f"| `type: {tag}` | {_cell(_keys(needed, properties))} | {_cell(_keys(optional, properties))} |")
    return "\n".join(lines) + "\n"


def _keys(keys: list[str], properties: Mapping) -> str:
    out = []
    for key in keys:
        sub = properties.get(key, {})
        note = f": {_text(sub['description'])}" if sub.get("description") else ""
        out.append(f"`{key}` ({config_schema.allowed(sub)}{note})")
    return "; ".join(out) or "-"


def _has_forms(node: Mapping) -> bool:
    """A mapping of user-named entries that each take one of several forms (search_space)."""
    entry = node.get("additionalProperties")
    return isinstance(entry, Mapping) and "oneOf" in entry


def _allowed(path: tuple, node: Mapping) -> str:
    if "properties" in node or _has_forms(node):
        anchor = ".".join(path).replace(".", "")
        return f"a mapping, see [`{'.'.join(path)}`](#{anchor})"
    return config_schema.allowed(node)


def _default(node: Mapping, required: bool) -> str:
    if required:
        return "required"
    if "default" not in node:
        if any("default" in sub for sub in node.get("properties", {}).values()):
            return "its settings' defaults"
        return "unset"
    return f"`{_literal(node['default'])}`"


def _literal(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return value if isinstance(value, str) else json.dumps(value)


def _text(text: str) -> str:
    """A description on one line (folded YAML keeps its line breaks at the end only)."""
    return " ".join(str(text).split())


def _cell(text: str) -> str:
    """Text for a table cell: pipes escaped; `<study>` outside code spans escaped (HTML would swallow it)."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else re.sub(r"<(?=[A-Za-z/!?])", r"\\<", p) for i, p in enumerate(parts))
