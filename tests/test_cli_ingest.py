"""The commands: validate (exit 0 accepted, 1 rejected, 2 usage), ingest, queue add/list/status/retry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from helpers import REPO

from autopilot.cli import main
from autopilot.ingest import queue
from autopilot.paths import Project

GOOD = b'{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}\n'
EMPTY_ANSWER = b'{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": " "}]}\n'


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project whose study defaults to chat_sft_v1 and takes files at once (settle_seconds 0)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["ingest"] = {"default_spec": "chat_sft_v1", "settle_seconds": 0}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "inbox").mkdir()
    return tmp_path


def run(root: Path, *args: str):
    return CliRunner().invoke(main, ["--root", str(root), *args], catch_exceptions=False)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- validate


def test_validate_exits_0_for_an_accepted_file(root):
    result = run(root, "validate", str(write(root / "ok.jsonl", GOOD * 2)))
    assert result.exit_code == 0 and result.output.startswith("accepted: 2 of 2 lines")


def test_validate_exits_1_and_lists_findings_with_line_numbers(root):
    result = run(root, "validate", str(write(root / "bad.jsonl", GOOD + EMPTY_ANSWER + b"[]\n")))
    assert result.exit_code == 1
    assert "line 2: messages/1/content: empty or whitespace-only text [empty_field]" in result.output
    assert "line 3: valid JSON but a list" in result.output


def test_validate_level_decides_what_is_checked(root):
    path = write(root / "f.jsonl", EMPTY_ANSWER)
    assert run(root, "validate", str(path), "--level", "quick").exit_code == 0
    assert run(root, "validate", str(path), "--level", "standard").exit_code == 1


def test_validate_json_prints_one_object(root):
    result = run(root, "validate", str(write(root / "b.jsonl", GOOD + b"{x\n")), "--json")
    assert result.exit_code == 1
    found = json.loads(result.output)
    assert found["accepted"] is False and found["counts"]["lines"] == 2
    assert found["findings"][0] == {"line": 2, "field": "", "kind": "json", "severity": "error",
                                    "message": found["findings"][0]["message"]}


def test_validate_spec_from_option_then_sidecar(root):
    path = write(root / "c.jsonl", b'{"prompt": "p", "completion": "c"}\n')
    assert run(root, "validate", str(path)).exit_code == 1  # the study's default is chat_sft_v1
    assert run(root, "validate", str(path), "--spec", "completion_v1").exit_code == 0
    write(root / "c.meta.yaml", b"spec: completion_v1\n")
    assert run(root, "validate", str(path)).exit_code == 0


@pytest.mark.parametrize("args", [["--spec", "nope_v1"], ["--level", "extreme"], ["--bogus"]])
def test_validate_usage_errors_exit_2(root, args):
    result = run(root, "validate", str(write(root / "u.jsonl", GOOD)), *args)
    assert result.exit_code == 2


def test_validate_a_missing_file_or_no_spec_exits_2(root, tmp_path):
    assert run(root, "validate", str(root / "missing.jsonl")).exit_code == 2
    outside = tmp_path / "elsewhere"  # no config here: the schema's defaults, which name no spec
    outside.mkdir()
    result = run(outside, "validate", str(write(outside / "x.jsonl", GOOD)))
    assert result.exit_code == 2 and "default_spec" in result.output
    assert run(outside, "validate", str(outside / "x.jsonl"), "--spec", "chat_sft_v1").exit_code == 0


# ---------------------------------------------------------------- ingest and queue


def test_ingest_prints_a_one_line_summary(root):
    write(root / "inbox" / "a.jsonl", GOOD)
    write(root / "inbox" / "b.jsonl", b"nope\n")
    result = run(root, "ingest")
    assert result.exit_code == 0
    assert result.output == "ingest: 1 accepted (normal 1), 1 rejected (reasons in queue/failed/)\n"
    assert run(root, "ingest").output == "ingest: nothing in inbox/\n"


def test_queue_add_copies_an_accepted_file_and_leaves_it_in_place(root, tmp_path):
    source = write(tmp_path / "mine.jsonl", GOOD)
    result = run(root, "queue", "add", str(source), "--priority", "low")
    assert result.exit_code == 0 and "queue/low/" in result.output
    [entry] = queue.entries(Project(root).queue_dir("low"))
    assert entry.read_bytes() == GOOD and source.read_bytes() == GOOD


def test_queue_add_refuses_a_rejected_file_and_queues_nothing(root, tmp_path):
    source = write(tmp_path / "bad.jsonl", EMPTY_ANSWER)
    result = run(root, "queue", "add", str(source))
    assert result.exit_code == 1 and "empty_field" in result.output
    assert not (root / "queue" / "normal").exists() and source.read_bytes() == EMPTY_ANSWER


def test_queue_add_refuses_a_file_of_the_inbox_and_a_file_that_is_not_jsonl(root, tmp_path):
    result = run(root, "queue", "add", str(write(root / "inbox" / "x.jsonl", GOOD)))
    assert result.exit_code == 1 and "next ingest takes it" in result.output
    result = run(root, "queue", "add", str(write(tmp_path / "x.csv", GOOD)))
    assert result.exit_code == 1 and "not a .jsonl file" in result.output


def test_queue_list_and_status(root):
    write(root / "inbox" / "a.meta.yaml", b"priority: high\n")
    write(root / "inbox" / "a.jsonl", GOOD)
    write(root / "inbox" / "b.jsonl", GOOD * 3)
    write(root / "inbox" / "c.jsonl", b"[]\n")
    run(root, "ingest")
    write(root / "inbox" / "d.jsonl.part", b"")
    listed = run(root, "queue", "list").output.splitlines()
    assert [line.split()[0] for line in listed] == ["high", "normal", "failed"]
    assert "1 records" in listed[0] and "3 records" in listed[1] and "not_object" in listed[2]
    rows = [json.loads(line) for line in run(root, "queue", "list", "--json").output.splitlines()]
    assert rows[1]["spec"] == "chat_sft_v1" and rows[1]["records"] == 3
    status = json.loads(run(root, "queue", "status", "--json").output)
    assert status == {"inbox": 1, "high": 1, "normal": 1, "low": 0, "processing": 0, "done": 0, "failed": 1,
                      "quarantine": 0}
    assert "failed: 1" in run(root, "queue", "status").output


def test_queue_retry_moves_a_failed_file_back_and_reports_errors_in_one_line(root):
    write(root / "inbox" / "r.jsonl", b"[]\n")
    run(root, "ingest")
    [failed] = queue.failed_entries(Project(root))
    result = run(root, "queue", "retry", failed.name)
    assert result.exit_code == 0 and (root / "inbox" / "r.jsonl").read_bytes() == b"[]\n"
    again = run(root, "queue", "retry", failed.name)
    assert again.exit_code == 1 and again.output.startswith("Error: no failed entry")
    assert "Traceback" not in again.output
    assert os.listdir(root / "queue" / "failed" / "retried")


def test_every_command_has_help():
    for args in (["validate"], ["ingest"], ["queue"], ["queue", "add"], ["queue", "list"], ["queue", "status"],
                 ["queue", "retry"]):
        result = CliRunner().invoke(main, [*args, "--help"])
        assert result.exit_code == 0 and len(result.output.splitlines()) > 4
