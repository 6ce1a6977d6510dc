"""Validation against the JSON Schemas in `schemas/`, the single source of truth for every document.

Usage:
    from autopilot import schemas
    schemas.validate(obj, "proposal")          # raises SchemaError listing every problem
    problems = schemas.problems(obj, "verdict") # [] when valid
    schemas.is_valid(line, "history_entry")     # yes or no, fast: for many documents at once
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from autopilot import bundled
from autopilot.errors import SchemaError

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster start-up


def schema_dir() -> Path:
    """$AUTOPILOT_SCHEMAS, else `schemas/` of the installed wheel or of the checkout this package runs from."""
    override = os.environ.get("AUTOPILOT_SCHEMAS")
    if override:
        return Path(override)
    return bundled.project_files() / "schemas"


def load(name: str) -> dict:
    """Load `schemas/<name>.schema.yaml` (name may contain a folder, e.g. `datasets/chat_sft_v1`)."""
    return _load(schema_dir(), name)


def validator(name: str) -> Draft202012Validator:
    return _validator(schema_dir(), name)


def preload() -> None:
    """Read every schema of the default folder now (the warm command server does, for its children)."""
    folder = schema_dir()
    for path in folder.rglob("*.schema.yaml"):
        _validator(folder, path.relative_to(folder).as_posix().removesuffix(".schema.yaml"))
    _fast(folder, "history_entry")  # compiled once here, not in every child: every command reads the ledger


@functools.cache
def _load(folder: Path, name: str) -> dict:
    path = folder / f"{name}.schema.yaml"
    if not path.exists():
        raise SchemaError(f"unknown schema {name!r}: {path} does not exist")
    with path.open(encoding="utf-8") as f:
        return yaml.load(f, Loader=SafeLoader)


@functools.cache
def _validator(folder: Path, name: str) -> Draft202012Validator:
    # The schemas themselves are checked against the meta-schema by the test suite, not on every start-up.
    return Draft202012Validator(_load(folder, name))


@functools.cache
def _fast(folder: Path, name: str):
    import fastjsonschema

    return fastjsonschema.compile(_load(folder, name))


def fast_validator(name: str) -> Callable[[Any], bool]:
    """A yes/no check against the schema, about 20 times faster than `problems` (the schema compiled to Python by
    fastjsonschema): for reading thousands of ledger lines. jsonschema stays the authority: on False, ask
    `problems`, which also says what is wrong."""
    import fastjsonschema

    compiled = _fast(schema_dir(), name)

    def check(obj: Any) -> bool:
        try:
            compiled(obj)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return check


def is_valid(obj: Any, name: str) -> bool:
    return fast_validator(name)(obj)


def _where(error) -> str:
    path = "/".join(str(p) for p in error.absolute_path)
    return path or "(top level)"


def problems(obj: Any, name: str) -> list[str]:
    """Every schema violation of `obj`, as `field: message` strings, in document order."""
    errors = sorted(validator(name).iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_where(e)}: {e.message}" for e in errors]


def validate(obj: Any, name: str, what: str | None = None) -> None:
    found = problems(obj, name)
    if found:
        listed = "; ".join(found[:10]) + (f"; and {len(found) - 10} more" if len(found) > 10 else "")
        raise SchemaError(f"{what or name} does not match schemas/{name}.schema.yaml: {listed}")
