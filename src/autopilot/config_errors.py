"""Study-config errors a person can act on: the key, the file and line, what is allowed, a close match; once.

jsonschema's own message for a misspelled key is one line followed by the whole schema and the whole config
(what `snakemake.utils.validate` prints). Here each problem is one line:

    Invalid study config (config/config.yaml, --config): 2 problems
      --config  `iteratons`: not a setting; did you mean `iterations`?
      config/config.yaml:52  `judge.alpah`: not a setting; did you mean `alpha`?
    Every setting: config/README.md. In full: `autopilot config check --full --config iteratons=3` (or
    AUTOPILOT_CONFIG_ERRORS=full)

`full=True` (or AUTOPILOT_CONFIG_ERRORS=full in the environment) adds, under each problem, the schema of that
key and jsonschema's own words.

Usage:
    problems = find_problems(config)                 # [] when the config matches schemas/config.schema.yaml
    check(config, source)                            # raises ConfigProblems (a ConfigError) listing them
    raise problem(source, ("search_space", "lr"), "`low < high` must hold")
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autopilot import config_schema, schemas
from autopilot.errors import ConfigError

FULL_ENV = "AUTOPILOT_CONFIG_ERRORS"  # =full: every config error comes with the schema of each bad key
SHOWN = 6  # problems listed in the short form; the rest are counted
README = "config/README.md"


@dataclass(frozen=True)
class ConfigSource:
    """Where a config came from: YAML/JSON files merged in order, then Snakemake's `--config` overrides."""

    files: tuple[Path, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)
    label: str = "config"  # what to call a config that came from no file

    def __str__(self) -> str:
        return ", ".join([*(_shown(f) for f in self.files), *(["--config"] if self.overrides else [])]) or self.label

    def where(self, path: tuple) -> str:
        """`--config` when the key was given there, else `file:line` of the last file that sets it, else the file."""
        if self._overridden(path):
            return "--config"
        for file in reversed(self.files):
            line = locate(file, path)
            if line is not None:
                return f"{_shown(file)}:{line}"
        return _shown(self.files[-1]) if self.files else self.label


    def check_command(self) -> str:
        """The `autopilot config check --full ...` that shows this config's problems in full."""
        words = ["autopilot config check --full"]
        words += [shlex.quote(_shown(f)) for f in self.files if _shown(f) != "config/config.yaml"]
        for key, value in self.overrides.items():
            words += ["--config", shlex.quote(f"{key}={_flat(value)}")]
        return " ".join(words)

    def _overridden(self, path: tuple) -> bool:
        """The key, or a value that replaces the mapping above it, was given with --config."""
        obj = self.overrides
        for part in path:
            if not isinstance(obj, Mapping):
                return True
            if part not in obj:
                return False
            obj = obj[part]
        return bool(path)


def _shown(file: Path) -> str:
    """A file as people type it: relative to the current folder when it is inside it."""
    try:
        return str(Path(file).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(file)


def _flat(value: Any) -> str:
    """A --config value written back: as snakemake reads it (True/False, numbers, YAML flow for the rest)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return "" if value is None else str(value)
    return json.dumps(value)


def as_source(source: str | Path | ConfigSource) -> ConfigSource:
    """A ConfigSource for what callers pass: a source, a file path, or a label such as `c`."""
    if isinstance(source, ConfigSource):
        return source
    if Path(source).is_file():
        return ConfigSource(files=(Path(source),))
    return ConfigSource(label=str(source))  # e.g. a config built in memory


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: the key path, what is wrong and allowed, and the schema of that key."""

    path: tuple
    message: str
    schema: Mapping = field(default_factory=dict)
    detail: str = ""  # jsonschema's own message, for the full form
    schema_of: tuple | None = None  # the setting `schema` belongs to, when not `path` (an unknown key: its parent)

    @property
    def key(self) -> str:
        return ".".join(map(str, self.path)) or "(the whole config)"


class ConfigProblems(ConfigError):
    """The study config breaks its schema or a rule across settings; `problems` lists each one."""

    def __init__(self, source: str | Path | ConfigSource, problems: list[Problem], full: bool | None = None):
        self.source = as_source(source)
        self.problems = problems
        super().__init__(render(self.source, problems, full=full))


def check(config: Any, source: str | Path | ConfigSource, full: bool | None = None) -> None:
    """Raise ConfigProblems when `config` does not match schemas/config.schema.yaml."""
    found = find_problems(config)
    if found:
        raise ConfigProblems(source, found, full=full)


def problem(source: str | Path | ConfigSource, path: Iterable, message: str) -> ConfigProblems:
    """The error of one rule across settings (e.g. `low < high`), located and rendered like a schema problem."""
    path = tuple(path)
    node = config_schema.node_at(path)
    return ConfigProblems(source, [Problem(path, message, node or {})])


def did_you_mean(name: Any, options: Iterable[Any]) -> str:
    """`; did you mean `x`?` for the closest option (difflib, else one that `name` starts with), or nothing."""
    name, options = str(name), [str(o) for o in options]
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if not close:  # `lr_typo` -> `lr`: too short a match for difflib's ratio
        close = sorted((o for o in options if len(o) >= 2 and (name.startswith(o) or o.startswith(name))),
                       key=len, reverse=True)
    return f"; did you mean `{close[0]}`?" if close else ""


# --- finding problems ---------------------------------------------------------------------------------------
def find_problems(config: Any) -> list[Problem]:
    """Every problem of `config` against the config schema, one per bad key, in document order."""
    validator = schemas.validator("config")
    found: list[Problem] = []
    for error in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        for p in _explain(error):
            if all((p.path, p.message) != (q.path, q.message) for q in found):
                found.append(p)
    return found


def _explain(error) -> Iterator[Problem]:
    path = tuple(error.absolute_path)
    kind = error.validator
    if kind == "additionalProperties" and error.validator_value is False:
        yield from _unknown_keys(error, path)
    elif kind == "required":
        yield from _missing_keys(error, path)
    elif kind in ("oneOf", "anyOf"):
        yield from _one_of(error, path)
    else:
        allowed = _why(error) or config_schema.allowed(error.schema)
        hint = did_you_mean(error.instance, error.validator_value) if kind == "enum" else ""
        if kind == "type" and isinstance(error.instance, str) and _numeric(error.instance):
            hint = " (a number in quotes is text; snakemake's --config reads values inside a mapping as text)"
        yield Problem(path, f"{_show(error.instance)} is not allowed: {allowed}{hint}", error.schema, error.message)


def _unknown_keys(error, path: tuple) -> Iterator[Problem]:
    known = list(error.schema.get("properties", {}))
    for key in [k for k in error.instance if k not in known]:
        hint = did_you_mean(key, known) or _elsewhere(key, path)
        if hint:
            listing = ""
        elif len(known) <= 12:
            listing = f" (settings here: {', '.join(known)})"
        else:
            listing = f" ({README} describes the {len(known)} settings at this level)"
        yield Problem((*path, key), f"not a setting{hint}{listing}", error.schema, error.message, schema_of=path)


def _elsewhere(key: str, path: tuple) -> str:
    """A setting of that name (or close to it) at another level: `alpha` at the top -> `judge.alpha`."""
    leaves = {".".join(p): p[-1] for p, _ in config_schema.settings() if p[:-1] != path}
    close = difflib.get_close_matches(key, list(leaves.values()), n=1, cutoff=0.8)
    if not close:
        return ""
    return f"; did you mean `{next(dotted for dotted, leaf in leaves.items() if leaf == close[0])}`?"


def _missing_keys(error, path: tuple) -> Iterator[Problem]:
    for key in [k for k in error.validator_value if isinstance(error.instance, dict) and k not in error.instance]:
        node = error.schema.get("properties", {}).get(key) or config_schema.node_at((*path, key)) or {}
        why = _why(error)
        what = f": {node['description'].strip()}" if node.get("description") else ""
        yield Problem((*path, key), f"missing; {why or 'required'}{what if not why else ''}", node, error.message)


def _one_of(error, path: tuple) -> Iterator[Problem]:
    """A value that matches none of several forms (a search_space range): explain the form its `type` names."""
    branches = error.validator_value
    forms = {t: i for i, b in enumerate(branches) for t in b.get("properties", {}).get("type", {}).get("enum", [])}
    chosen = forms.get(error.instance.get("type")) if isinstance(error.instance, dict) else None
    if chosen is not None:
        for sub in error.context:
            if sub.relative_schema_path and sub.relative_schema_path[0] == chosen:
                yield from _explain(sub)
        return
    given = error.instance.get("type") if isinstance(error.instance, dict) else None
    hint = did_you_mean(given, forms) if given is not None else ""
    what = f"`type` {_show(given)} is not one of" if given is not None else "allowed:"
    yield Problem(path, f"{what} {config_schema.allowed(error.schema)}{hint}", error.schema, error.message)


def _why(error) -> str:
    """The description of the cross-setting rule (an `allOf` entry) an error comes from, if any."""
    schema_path = list(error.absolute_schema_path)
    if "allOf" not in schema_path:
        return ""
    i = schema_path.index("allOf")
    node = config_schema.root()
    for part in schema_path[: i + 2]:
        node = node[part]
    return node.get("description", "").strip().rstrip(".")


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


# --- rendering ----------------------------------------------------------------------------------------------
def render(source: ConfigSource, problems: list[Problem], full: bool | None = None) -> str:
    """The message of ConfigProblems: a head line, one line per problem, where to read more."""
    if full is None:
        full = os.environ.get(FULL_ENV, "").lower() == "full"
    count = f"{len(problems)} problems" if len(problems) != 1 else "1 problem"
    lines = [f"Invalid study config ({source}): {count}"]
    shown = problems if full else problems[:SHOWN]
    for group in _same_message(shown) if not full else [[p] for p in shown]:
        keys = ", ".join(f"`{p.key}`" for p in group)
        lines.append(f"  {source.where(group[0].path)}  {keys}: {group[0].message}")
        if full:
            lines.extend(_full_detail(group[0]))
    if len(shown) < len(problems):
        lines.append(f"  ... and {len(problems) - len(shown)} more")
    if not full:
        full_form = f"`{source.check_command()}` (or {FULL_ENV}=full)" if source.files else f"{FULL_ENV}=full"
        lines.append(f"Every setting: {README}. In full: {full_form}")
    return "\n".join(lines)


def _same_message(problems: list[Problem]) -> list[list[Problem]]:
    """Problems with the same message (keys one rule requires) on one line, in first-seen order."""
    groups: dict[str, list[Problem]] = {}
    for p in problems:
        groups.setdefault(p.message, []).append(p)
    return list(groups.values())


def _full_detail(p: Problem) -> list[str]:
    out = []
    if p.detail:
        out.append(f"      jsonschema: {p.detail if len(p.detail) <= 300 else p.detail[:297] + '...'}")
    if p.schema:
        of = p.path if p.schema_of is None else p.schema_of
        out.append(f"      schema of `{'.'.join(map(str, of)) or '(the whole config)'}` (schemas/config.schema.yaml):")
        dumped = yaml.safe_dump(dict(p.schema), sort_keys=False, width=110, allow_unicode=True)
        out.extend(f"        {line}" for line in dumped.rstrip().splitlines())
    return out


# --- where a key is written ---------------------------------------------------------------------------------
def locate(file: Path, path: tuple) -> int | None:
    """1-based line of the deepest key of `path` written in a YAML (or JSON) file; None when not there."""
    try:
        st = Path(file).stat()
    except OSError:
        return None
    node = _composed(str(file), st.st_mtime_ns, st.st_size)
    if node is None:
        return None
    line = None
    for part in path:
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return line if path else 1


@functools.lru_cache(maxsize=16)
def _composed(file: str, mtime_ns: int, size: int) -> yaml.Node | None:
    try:
        with open(file, encoding="utf-8") as f:
            return yaml.compose(f, Loader=schemas.SafeLoader)
    except (OSError, yaml.YAMLError):
        return None
