"""Every schema in schemas/ is itself valid JSON Schema (checked here, not at every start-up)."""

import pytest
from jsonschema import Draft202012Validator

from autopilot import schemas

NAMES = sorted(str(p.relative_to(schemas.schema_dir()))[: -len(".schema.yaml")]
               for p in schemas.schema_dir().rglob("*.schema.yaml"))


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid(name):
    Draft202012Validator.check_schema(schemas.load(name))


def test_unknown_schema_is_a_clear_error():
    with pytest.raises(schemas.SchemaError, match="unknown schema"):
        schemas.load("nope")

