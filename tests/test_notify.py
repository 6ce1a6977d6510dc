"""notify: one JSON event on the command's stdin; a command that fails, is missing or hangs never stops the loop."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from helpers import REPO, make_project

from autopilot import fsio, notify, schemas
from autopilot.paths import Project
from autopilot.study import Study, check_config


def study_with(tmp_path, **notify_settings) -> Study:
    root = make_project(tmp_path / "p", notify=notify_settings)
    return Study.load(Project(root), root / "config" / "config.yaml")


def test_the_command_reads_one_json_event_on_stdin_and_every_event_is_recorded(tmp_path):
    study = study_with(tmp_path, command=["sh", "-c", "cat >> told.jsonl"], on=["promoted"])
    notify.emit(study, "promoted", "run 00007 is the champion", run_id="00007", test_value=0.95)
    notify.emit(study, "paused", "paused by a person")  # recorded, but not in `on`: the command is not run
    told = [json.loads(line) for line in (study.project.root / "told.jsonl").read_text().splitlines()]
    assert len(told) == 1
    event = told[0]
    schemas.validate(event, "event")
    assert event["event"] == "promoted" and event["study"] == "digits_cnn"
    assert event["details"] == {"run_id": "00007", "test_value": 0.95} and event["message"].startswith("run 00007")
    recorded = list(fsio.iter_jsonl(study.paths.events))
    assert [e["event"] for e in recorded] == ["promoted", "paused"]


@pytest.mark.parametrize("command, why", [
    (["sh", "-c", "echo 'webhook said 500' >&2; exit 3"], "exited with status 3"),
    (["/no/such/notifier"], "could not start '/no/such/notifier'"),
    (["sh", "-c", "sleep 30"], "timed out after 0.5s"),
])
def test_a_failing_command_is_logged_and_never_raises(tmp_path, command, why, caplog):
    study = study_with(tmp_path, command=command, timeout_seconds=0.5)
    started = time.monotonic()
    notify.emit(study, "disk_low", "the disk is full")
    assert time.monotonic() - started < 10  # a hung command is killed at its limit
    log = (study.paths.logs / "notify.log").read_text()
    assert why in log and why in caplog.text
    if "status 3" in why:
        assert "webhook said 500" in log  # the command's own output is kept beside the reason
    assert [e["event"] for e in fsio.iter_jsonl(study.paths.events)] == ["disk_low"]


def test_an_unquoted_on_key_in_yaml_is_read_as_on():
    raw = yaml.safe_load("notify:\n  command: [sh, -c, 'cat']\n  on: [promoted]\n")
    assert True in raw["notify"]  # YAML 1.1 reads `on` as the boolean true
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config = check_config({**base, **raw}, "test")
    assert config["notify"]["on"] == ["promoted"]
