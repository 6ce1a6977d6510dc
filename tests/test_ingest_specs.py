"""Dataset specs: deny by default, valid schemas, and a compiled predicate that always agrees with jsonschema."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from autopilot import schemas
from autopilot.errors import IngestError
from autopilot.ingest.compiled import Unsupported, compile_schema
from autopilot.ingest.specs import known_specs, load_spec

SPECS = ["chat_sft_v1", "completion_v1", "syllo_v1"]

EXAMPLES = {
    "chat_sft_v1": (
        [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
         {"id": "r1", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                                   {"role": "assistant", "content": "a"}]}],
        [{}, {"messages": []}, {"messages": [{"role": "user", "content": "only a question"}]},
         {"messages": [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]},
         {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a", "name": "x"}]},
         {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": ["a"]}]},
         {"prompt": "p", "completion": "c"}],
    ),
    "completion_v1": (
        [{"prompt": "2+2=", "completion": "4"}, {"id": "x", "prompt": "", "completion": ""}],
        [{"prompt": "p"}, {"prompt": "p", "completion": 4}, {"prompt": "p", "completion": "c", "extra": 1}],
    ),
    "syllo_v1": (
        [{"puzzle": "Syllables: ba, na, na. 1. a yellow fruit", "answer": "banana", "level": 1},
         {"id": "syllo-L3-000042", "puzzle": "p", "answer": "a", "level": 10, "syllables": ["ba"], "source": "g 1"}],
        [{"puzzle": "p", "answer": "a"}, {"puzzle": "p", "answer": "a", "level": 0},
         {"puzzle": "p", "answer": "a", "level": 11}, {"puzzle": "p", "answer": "a", "level": 2.5},
         {"puzzle": "p", "answer": "a", "level": True}, {"puzzle": "p", "answer": "a", "level": 1, "syllables": [""]}],
    ),
}


def test_the_builtin_specs_are_known_and_their_schemas_are_valid():
    assert set(SPECS) <= set(known_specs())
    for name in known_specs():
        schema = schemas.load(f"datasets/{name}")
        Draft202012Validator.check_schema(schema)
        assert schema["additionalProperties"] is False, f"{name} must be closed (deny by default)"
        compile_schema(schema)  # every built-in spec gets the fast path


@pytest.mark.parametrize("name", ["chat_sft_v2", "../config", "datasets/chat_sft_v1", "", "Chat"])
def test_an_unknown_spec_is_refused_naming_the_known_ones(name):
    with pytest.raises(IngestError, match="known specs: .*chat_sft_v1"):
        load_spec(name)


@pytest.mark.parametrize("name", SPECS)
def test_examples_are_judged_alike_by_both_validators(name):
    spec = load_spec(name)
    valid, invalid = EXAMPLES[name]
    for record in valid:
        assert spec.is_valid(record) and spec.validator.is_valid(record), record
    for record in invalid:
        assert not spec.is_valid(record) and not spec.validator.is_valid(record), record


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 12), st.sampled_from([0.0, 1.0, 2.5, 11.0]),
                      st.sampled_from(["", " ", "user", "assistant", "system", "bot", "text", "ba"]))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.sampled_from(["a", "role", "content"]), inner, max_size=2),
                          max_leaves=6)


text = st.text(max_size=4)
VALID = {
    "chat_sft_v1": st.builds(
        lambda roles, texts: {"messages": [{"role": r, "content": t} for r, t in zip(roles, texts)]},
        st.lists(st.sampled_from(["system", "user", "assistant"]), max_size=3).map(lambda r: [*r, "user", "assistant"]),
        st.lists(text, min_size=5, max_size=5)),
    "completion_v1": st.fixed_dictionaries({"prompt": text, "completion": text}, optional={"id": text}),
    "syllo_v1": st.fixed_dictionaries(
        {"puzzle": text, "answer": text, "level": st.integers(1, 10)},
        optional={"id": text, "syllables": st.lists(text.filter(bool), max_size=3), "source": text}),
}


def slots(value, found=None) -> list:
    """Every (container, key) pair of a record, depth first."""
    found = [] if found is None else found
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in list(items):
        found.append((value, key))
        slots(inner, found)
    return found


def mutate(record: dict, op: int, where: int, new) -> dict:
    """op 0 keeps the record; 1 replaces a value, 2 removes it, 3 adds an unknown key beside it."""
    container, key = slots(record)[where % len(slots(record))]
    if op == 1:
        container[key] = new
    elif op == 2:
        container.pop(key)
    elif op == 3 and isinstance(container, dict):
        container["zz"] = new
    return record


@pytest.mark.parametrize("name", SPECS)
def test_the_compiled_predicate_agrees_with_jsonschema_on_generated_records(name):
    spec = load_spec(name)
    verdicts = []

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(value=st.builds(mutate, VALID[name], st.integers(0, 3), st.integers(0, 20), json_value) | json_value)
    def agree(value):
        verdicts.append(spec.validator.is_valid(value))
        assert spec.is_valid(value) == verdicts[-1]

    agree()
    assert 0.1 < sum(verdicts) / len(verdicts) < 0.9, "the generated records should be both valid and invalid"


@pytest.mark.parametrize("schema, value", [
    ({"type": "integer"}, 2.0), ({"type": "integer"}, 2.5), ({"type": "integer"}, True),
    ({"type": "number"}, False), ({"type": ["string", "null"]}, None), ({"enum": [1, "a"]}, 1.0),
    ({"enum": [1]}, True), ({"const": [1, {"a": False}]}, [1, {"a": False}]), ({"const": [1]}, [True]),
    ({"minimum": 3}, "text"), ({"exclusiveMaximum": 3}, 3), ({"maximum": 3}, 3.0),
    ({"anyOf": [{"type": "string"}, {"minimum": 5}]}, 4), ({"oneOf": [{"type": "integer"}, {"minimum": 0}]}, 3),
    ({"not": {"type": "object"}}, {}), ({"minLength": 2, "pattern": "^a"}, "ab"), ({"maxLength": 1}, "ab"),
    ({"properties": {"a": {"type": "string"}}}, {"a": 1}), ({"additionalProperties": {"type": "string"}}, {"b": 2}),
    ({"minProperties": 1}, {}), ({"contains": {"type": "string"}}, [1, "x"]), ({"contains": {"minimum": 5}}, []),
    ({"items": {"type": "string"}, "maxItems": 1}, ["a", "b"]), ({"required": ["a"]}, []),
    ({"properties": {"r": {"const": "u"}}, "type": "object"}, {"r": "u"}), (True, None), (False, None),
    *[({"contains": {"properties": {"r": {"const": "u"}}}}, v) for v in ([1], [{"x": 1}], [{"r": "v"}], [{"r": 1}])],
])
def test_compiled_keywords_match_jsonschema(schema, value):
    assert compile_schema(schema)(value) == Draft202012Validator(schema).is_valid(value)


@pytest.mark.parametrize("schema", [{"$ref": "#/x"}, {"properties": {"a": {"uniqueItems": True}}}, {"if": {}}])
def test_a_keyword_the_compiler_does_not_know_is_refused_not_ignored(schema):
    with pytest.raises(Unsupported):
        compile_schema(schema)
