"""A dataset spec's JSON Schema compiled into one fast yes/no predicate, for the per-line hot loop of ingest.

jsonschema walks the schema anew for every record (about 50 µs for a short chat record); the closures built
here check the same keywords in a few µs. The schema file stays the single source of truth: only the keywords
below are compiled, and a schema using any other keyword raises `Unsupported`, in which case the caller
validates every line with jsonschema itself. A record the predicate rejects is handed to jsonschema for its
message, and tests check on generated records that both always agree.

The predicate expects values as `json.loads` makes them (dict, list, str, int, float, bool, None, never
subclasses), which lets it compare types with `is` instead of `isinstance`.

Usage:
    is_valid = compile_schema(schemas.load("datasets/chat_sft_v1"))
    is_valid({"messages": [...]})  # True or False
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[Any], bool]

ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated"}
TYPES = {"object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,), "null": (type(None),),
         "number": (int, float), "integer": (int, float)}
COMPILED = {
    "type", "enum", "const", "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "required", "properties", "additionalProperties", "minProperties", "maxProperties",
    "items", "minItems", "maxItems", "contains", "allOf", "anyOf", "oneOf", "not",
}


class Unsupported(Exception):
    """The schema uses a keyword this compiler does not implement; validate with jsonschema instead."""


def compile_schema(schema: Any) -> Predicate:
    """One predicate equivalent to Draft 2020-12 validation of `schema` (a subset of keywords; see above)."""
    if schema is True or schema == {}:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, dict):
        raise Unsupported(f"a schema must be an object or a boolean, got {schema!r}")
    unknown = {k for k in schema if not k.startswith("x-")} - COMPILED - ANNOTATIONS
    if unknown:
        raise Unsupported(f"keyword(s) {sorted(unknown)}")
    parts = {t: c for t, c in (
        (dict, _object(schema)), (list, _array(schema)), (str, _string(schema)),
        (int, _number(schema)), (float, _number(schema)),
    ) if c}
    rest = [c for c in (_enum(schema), _combinators(schema)) if c]
    return _all([_typed(schema, parts), *rest])


def _typed(schema: dict, parts: dict[type, Predicate]) -> Predicate | None:
    """The `type` keyword and the keywords that apply to one type only, fused for the common shapes."""
    names = schema.get("type")
    single = TYPES[names] if isinstance(names, str) and names not in ("number", "integer") else None
    if single and set(parts) <= set(single):  # e.g. {type: object, properties: ...}: one closure
        t, part = single[0], parts.get(single[0])
        return (lambda v: type(v) is t) if part is None else (lambda v: type(v) is t and part(v))
    type_check = _type(schema)
    if len(parts) == 1 and type_check is None:  # e.g. {properties: ...} alone: only dicts are constrained
        [(t, part)] = parts.items()
        return lambda v: type(v) is not t or part(v)
    dispatch = (lambda v: (c := parts.get(type(v))) is None or c(v)) if parts else None
    return _all([c for c in (type_check, dispatch) if c])


def _always(v: Any) -> bool:
    return True


def _never(v: Any) -> bool:
    return False


def _all(checks: list[Predicate | None]) -> Predicate:
    checks = [c for c in checks if c is not None]
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda v: a(v) and b(v)
    return lambda v: all(c(v) for c in checks)


def _type(schema: dict) -> Predicate | None:
    if "type" not in schema:
        return None
    names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    allowed = frozenset(t for n in names for t in TYPES[n])
    if "integer" in names and "number" not in names:  # 2.0 is an integer in JSON Schema; True never is
        return lambda v: (t := type(v)) in allowed and (t is not float or v.is_integer())
    return lambda v: type(v) in allowed


def _enum(schema: dict) -> Predicate | None:
    if "enum" not in schema and "const" not in schema:
        return None
    options = schema["enum"] if "enum" in schema else [schema["const"]]
    if all(type(o) is str for o in options):
        strings = frozenset(options)
        return lambda v: type(v) is str and v in strings
    return lambda v: any(json_equal(v, o) for o in options)


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema defines it: 1 == 1.0, but true != 1; arrays and objects compared deeply."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if type(a) in (int, float) and type(b) in (int, float):
        return a == b
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return a == b


def _combinators(schema: dict) -> Predicate | None:
    checks = []
    if "allOf" in schema:
        checks.append(_all([compile_schema(s) for s in schema["allOf"]]))
    if "anyOf" in schema:
        any_of = [compile_schema(s) for s in schema["anyOf"]]
        checks.append(lambda v: any(c(v) for c in any_of))
    if "oneOf" in schema:
        one_of = [compile_schema(s) for s in schema["oneOf"]]
        checks.append(lambda v: sum(1 for c in one_of if c(v)) == 1)
    if "not" in schema:
        negated = compile_schema(schema["not"])
        checks.append(lambda v: not negated(v))
    return _all(checks) if checks else None


def _object(schema: dict) -> Predicate | None:
    keys = ("required", "properties", "additionalProperties", "minProperties", "maxProperties")
    if not any(k in schema for k in keys):
        return None
    required = tuple(schema.get("required", ()))
    props = schema.get("properties", {})
    # leaf properties (a bare type, a list of strings) are checked inline: a call per property is most of the cost
    typed = tuple((k, _leaf_type(s)) for k, s in props.items() if _leaf_type(s))
    enums = tuple((k, _leaf_enum(s)) for k, s in props.items() if not _leaf_type(s) and _leaf_enum(s))
    others = tuple((k, compile_schema(s)) for k, s in props.items() if not _leaf_type(s) and not _leaf_enum(s))
    known = frozenset(props)
    extra = schema.get("additionalProperties", True)
    closed = extra is False
    extra_check = None if extra is True or extra is False else compile_schema(extra)
    low, high = schema.get("minProperties", 0), schema.get("maxProperties")
    missing = object()

    def check(v: dict) -> bool:
        for k in required:
            if k not in v:
                return False
        if closed and not v.keys() <= known:
            return False
        for k, t in typed:
            x = v.get(k, missing)
            if x is not missing and type(x) is not t:
                return False
        for k, allowed in enums:
            x = v.get(k, missing)
            if x is not missing and (type(x) is not str or x not in allowed):
                return False
        for k, c in others:
            x = v.get(k, missing)
            if x is not missing and not c(x):
                return False
        if extra_check is not None and not all(extra_check(v[k]) for k in v.keys() - known):
            return False
        return low <= len(v) and (high is None or len(v) <= high)

    return check


def _leaf_type(schema: Any) -> type | None:
    """`{type: string}` (or object, array, boolean, null) and nothing else that constrains: its Python type."""
    if not isinstance(schema, dict) or set(schema) - ANNOTATIONS != {"type"}:
        return None
    name = schema["type"]
    return TYPES[name][0] if isinstance(name, str) and name not in ("number", "integer") else None


def _leaf_enum(schema: Any) -> frozenset | None:
    """`{enum: [strings]}` or `{const: string}` (with `type: string` or not): the allowed strings."""
    if not isinstance(schema, dict) or schema.get("type", "string") != "string":
        return None
    rest = set(schema) - ANNOTATIONS - {"type"}
    options = schema.get("enum") if rest == {"enum"} else [schema["const"]] if rest == {"const"} else None
    return frozenset(options) if options and all(type(o) is str for o in options) else None


def _array(schema: dict) -> Predicate | None:
    if not any(k in schema for k in ("items", "minItems", "maxItems", "contains")):
        return None
    item = compile_schema(schema["items"]) if "items" in schema else None
    contains = _contains(schema["contains"]) if "contains" in schema else None
    low, high = schema.get("minItems", 0), schema.get("maxItems")

    def check(v: list) -> bool:
        if len(v) < low or (high is not None and len(v) > high):
            return False
        if item is not None:
            for x in v:
                if not item(x):
                    return False
        return contains is None or contains(v)

    return check


def _contains(schema: Any) -> Predicate:
    """Whether some item matches. `{properties: {role: {const: user}}}` is matched inline, without a call per item."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    inline = bool(props) and len(props) == 1 and set(schema) - ANNOTATIONS == {"properties"}
    enums = _leaf_enum(next(iter(props.values()))) if inline else None
    if enums is None:
        match = compile_schema(schema)
        return lambda v: any(match(x) for x in v)
    [key] = props
    missing = object()

    def check(v: list) -> bool:
        for x in v:  # a non-object, or an object without the key, matches too (JSON Schema semantics)
            if type(x) is not dict:
                return True
            y = x.get(key, missing)
            if y is missing or (type(y) is str and y in enums):
                return True
        return False

    return check


def _string(schema: dict) -> Predicate | None:
    if not any(k in schema for k in ("minLength", "maxLength", "pattern")):
        return None
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    search = re.compile(schema["pattern"]).search if "pattern" in schema else None
    return lambda v: low <= len(v) and (high is None or len(v) <= high) and (search is None or bool(search(v)))


def _number(schema: dict) -> Predicate | None:
    bounds = [(k, schema[k]) for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if k in schema]
    if not bounds:
        return None
    tests = {
        "minimum": lambda v, b: v >= b, "maximum": lambda v, b: v <= b,
        "exclusiveMinimum": lambda v, b: v > b, "exclusiveMaximum": lambda v, b: v < b,
    }
    pairs = [(tests[k], b) for k, b in bounds]
    return lambda v: all(test(v, b) for test, b in pairs)
