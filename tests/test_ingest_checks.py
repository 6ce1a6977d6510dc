"""The line checks of levels quick, standard and deep: every finding names its line, field and problem."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest

from autopilot.ingest.checks import KEEP, Level, Settings, check_stream, normalize
from autopilot.ingest.specs import load_spec


def chat(user: str = "What is the capital of France?", answer: str = "Paris is the capital.", system=None) -> dict:
    turns = [{"role": "system", "content": system}] if system else []
    return {"messages": [*turns, {"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def lines(*records) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


def scan(data: bytes, spec: str = "chat_sft_v1", level: str = "standard", **settings):
    s = Settings.from_config({"level": level, **settings})
    return check_stream(io.BytesIO(data), load_spec(spec), s)


def kinds(result) -> list[tuple[int, str, str]]:
    return [(f.line, f.field, f.kind) for f in [*result.errors, *result.warnings]]


def test_a_clean_file_passes_every_level():
    data = lines(chat(), chat("Name a prime.", "Seven.", system="Be brief."))
    for level in ("quick", "standard", "deep"):
        result = scan(data, level=level)
        assert result.accepted and result.records == result.lines == 2, result.errors
        assert not result.warnings


# ---------------------------------------------------------------- quick


@pytest.mark.parametrize("raw, kind", [
    (b"{not json", "json"),
    (b'{"messages": NaN}', "json"),
    (b"[1, 2]", "not_object"),
    (b'"a string"', "not_object"),
    (b"null", "not_object"),
    (b"", "blank_line"),
    (b"   \t", "blank_line"),
    (b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', "encoding"),
    (b'{"messages": "a\x00b"}', "nul_byte"),
    (b"[" * 100_000 + b"]" * 100_000, "too_deep"),
    (b'{"n": ' + b"9" * 5000 + b"}", "json"),  # more digits than Python parses into an int
])
def test_quick_rejects_each_broken_line_with_its_number(raw, kind):
    result = scan(lines(chat(), raw, chat("Other question?")), level="quick")
    assert not result.accepted
    assert [(f.line, f.kind) for f in result.errors] == [(2, kind)]
    assert result.records == 2 and result.lines == 3
    assert len(result.errors[0].message) < 400


def test_schema_findings_name_the_deepest_field():
    bad_role = {"messages": [{"role": "bot", "content": "x"}, {"role": "assistant", "content": "y"}]}
    no_answer = {"messages": [{"role": "user", "content": "x"}]}
    extra = {**chat(), "labels": [1]}
    result = scan(lines(bad_role, no_answer, extra, {"messages": [{"role": "user", "content": 3}]}), level="quick")
    found = {f.line: (f.field, f.message) for f in result.errors}
    assert found[1][0] == "messages/0/role" and "'bot' is not one of" in found[1][1]
    assert found[2][0] == "messages" and "too short" in found[2][1]
    assert "labels" in found[3][1]
    assert found[4][0] == "messages/0/content"


def test_a_bom_is_an_error_and_crlf_a_warning():
    bom = scan(b"\xef\xbb\xbf" + lines(chat()), level="quick")
    assert [(f.line, f.kind) for f in bom.errors] == [(1, "bom")]
    crlf = scan(lines(chat()).replace(b"\n", b"\r\n") * 3, level="quick")
    assert crlf.accepted and crlf.records == 3
    assert [(f.line, f.kind) for f in crlf.warnings] == [(1, "crlf")] and crlf.totals["crlf"] == 3


def test_an_empty_file_is_rejected():
    result = scan(b"", level="quick")
    assert not result.accepted and [(f.line, f.kind) for f in result.errors] == [(0, "empty_file")]


def test_a_last_line_without_newline_is_fine():
    assert scan(lines(chat(), chat("Again?")).rstrip(b"\n")).accepted


def test_an_over_long_line_is_skipped_in_pieces_and_reading_goes_on():
    huge = json.dumps(chat("x" * 50_000)).encode()
    result = scan(lines(chat(), huge, chat("After?")), level="quick", max_line_bytes=4096)
    assert [(f.line, f.kind) for f in result.errors] == [(2, "line_too_long")]
    assert f"{len(huge) + 1} bytes" in result.errors[0].message
    assert result.records == 2 and result.lines == 3


def test_quick_does_not_look_at_content():
    empty = chat(answer="   ")
    assert scan(lines(empty), level="quick").accepted
    assert not scan(lines(empty), level="standard").accepted


def test_only_the_first_findings_are_kept_but_all_are_counted():
    result = scan(lines(*([b"[]"] * (KEEP + 70))), level="quick")
    assert len(result.errors) == KEEP and result.n_errors == KEEP + 70
    assert result.totals == {"not_object": KEEP + 70}
    schema = scan(lines(*([{"messages": []}] * (KEEP + 5))), level="quick")
    assert len(schema.errors) == KEEP and schema.totals["schema"] == KEEP + 5


# ---------------------------------------------------------------- standard


def test_standard_finds_empty_and_whitespace_fields_by_path():
    result = scan(lines(chat(user=""), chat(answer=" \n\t"), chat(system="  ")))
    assert kinds(result) == [(1, "messages/0/content", "empty_field"), (2, "messages/1/content", "empty_field"),
                             (3, "messages/0/content", "empty_field")]


@pytest.mark.parametrize("roles, field", [
    (["user", "system", "assistant"], "messages/1/role"),
    (["user", "user", "assistant"], "messages/1/role"),
    (["assistant", "user", "assistant"], "messages/0/role"),
    (["user", "assistant", "user"], "messages/2/role"),
])
def test_standard_checks_role_order(roles, field):
    record = {"messages": [{"role": r, "content": f"turn {i}"} for i, r in enumerate(roles)]}
    result = scan(lines(record))
    assert (1, field, "role_order") in kinds(result)


def test_standard_limits_characters_per_record():
    result = scan(lines(chat("q" * 60, "a" * 50), chat("short", "fine")), max_chars=100)
    assert [(f.line, f.kind) for f in result.errors] == [(1, "too_long")]
    assert "110 characters" in result.errors[0].message


def test_standard_limits_tokens_with_the_configured_tokenizer(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    words = ["what", "is", "two", "plus", "four", "[UNK]"]
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    data = lines(chat("what is two plus two", "four"), chat("what", "four"))
    result = scan(data, tokenizer=str(tmp_path), max_tokens=4)
    assert [(f.line, f.kind) for f in result.errors] == [(1, "too_many_tokens")]
    assert "6 tokens" in result.errors[0].message
    no_tokenizer = scan(data, max_tokens=4)
    assert no_tokenizer.accepted and any("tokenizer" in s for s in no_tokenizer.skipped)


# ---------------------------------------------------------------- deep


def test_deep_warns_of_exact_and_near_duplicates_naming_the_first():
    data = lines(chat(), chat("Other?"), chat(), chat("what is the CAPITAL of france", "Paris is the capital!"))
    result = scan(data, level="deep")
    assert result.accepted
    assert [(f.line, f.kind) for f in result.warnings] == [(3, "duplicate"), (4, "near_duplicate")]
    assert "line 1" in result.warnings[0].message and "line 1" in result.warnings[1].message
    assert not scan(data, level="standard").warnings


def test_deep_rejects_prompts_of_the_evaluation_set(tmp_path):
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_bytes(lines({"prompt": "Unrelated?", "completion": "x"},
                                {"prompt": "What is the capital of France?", "completion": "Paris"}))
    result = scan(lines(chat(), chat("New question?")), level="deep", eval_file=str(eval_file))
    assert [(f.line, f.kind) for f in result.errors] == [(1, "eval_overlap")]
    assert "line 2 of the eval file" in result.errors[0].message
    assert any("eval" in s for s in scan(lines(chat()), level="deep").skipped)


def test_answer_leakage_is_a_warning_for_chat_and_an_error_for_syllo():
    leak = chat("Repeat after me: the sky is blue.", "The sky is blue")
    chat_result = scan(lines(leak), level="deep")
    assert chat_result.accepted and [(f.line, f.kind) for f in chat_result.warnings] == [(1, "answer_leak")]
    puzzle = {"puzzle": "Syllables: ba, na, na, pi, lot. 1. a yellow fruit (banana) 2. flies planes",
              "answer": "banana, pilot", "level": 2}
    clean = {**puzzle, "puzzle": "Syllables: ba, na, na, pi, lot. 1. a yellow fruit 2. flies planes"}
    result = scan(lines(puzzle, clean), spec="syllo_v1", level="deep")
    assert [(f.line, f.field, f.kind) for f in result.errors] == [(1, "answer", "answer_leak")]


def test_normalize_ignores_case_punctuation_and_spacing():
    assert normalize("  Hello,\tWORLD!! ") == normalize("hello world") == "hello world"


def test_level_can_be_given_per_call():
    settings = dataclasses.replace(Settings.from_config(None), level=Level.QUICK)
    data = lines(chat(answer=""))
    assert check_stream(io.BytesIO(data), load_spec("chat_sft_v1"), settings).accepted
    assert not check_stream(io.BytesIO(data), load_spec("chat_sft_v1"), settings, Level.STANDARD).accepted
