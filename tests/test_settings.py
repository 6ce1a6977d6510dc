"""The typed settings and the enums hold exactly what the schemas say, so code and files cannot drift apart."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from autopilot import schemas
from autopilot.enums import RunStatus, Verdict
from autopilot.paths import Project
from autopilot.settings import BLOCKS, StudySettings
from autopilot.study import Study, check_config

REPO = Path(__file__).resolve().parents[1]
CONFIG_SCHEMA = schemas.load("config")


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_each_settings_block_has_exactly_the_keys_of_its_schema_block(block):
    fields = {f.name for f in dataclasses.fields(BLOCKS[block])}
    assert fields == set(CONFIG_SCHEMA["properties"][block]["properties"])


def test_the_study_settings_have_every_top_level_key():
    assert {f.name for f in dataclasses.fields(StudySettings)} == set(CONFIG_SCHEMA["properties"])


def test_the_default_study_parses_into_frozen_settings_with_the_schemas_defaults():
    study = Study.load(Project(REPO), REPO / "config" / "config.yaml")
    s = study.settings
    assert s.judge.noise_seeds == yaml.safe_load((REPO / "config" / "config.yaml").read_text())["judge"]["noise_seeds"]
    assert s.llm.timeout_seconds == CONFIG_SCHEMA["properties"]["llm"]["properties"]["timeout_seconds"]["default"]
    assert s.judge.noise_keys == ("lr", "batch_size") and s.metric.maximize and s.model is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.judge.alpha = 0.5
    with pytest.raises(TypeError):
        s.baseline["lr"] = 1.0  # a read-only view of the study's baseline


@pytest.mark.parametrize(("enum", "schema", "field"), [(RunStatus, "trainer_summary", "status"),
                                                       (Verdict, "verdict", "verdict"),
                                                       (RunStatus, "history_entry", "status"),
                                                       (Verdict, "history_entry", "verdict")])
def test_enums_match_the_schemas(enum, schema, field):
    assert {e.value for e in enum} == set(schemas.load(schema)["properties"][field]["enum"])


@pytest.mark.parametrize(("cls", "path"), [("MentorLLM", ("mentor", "llm")), ("Evaluator", ("code_mode", "evaluator")),
                                           ("Constraints", ("judge", "constraints"))])
def test_nested_blocks_have_exactly_the_keys_of_their_schema_block(cls, path):
    from autopilot import settings

    block = CONFIG_SCHEMA["properties"][path[0]]["properties"][path[1]]
    assert {f.name for f in dataclasses.fields(getattr(settings, cls))} == set(block["properties"])


def test_the_mentor_llm_and_code_mode_parse_with_their_defaults():
    config = yaml.safe_load((REPO / "examples" / "code_mode" / "study.yaml").read_text())
    config["mentor"] = {"llm": {"model": "big", "command": ["claude", "-p"]}}
    s = Study(Project(REPO), check_config(config, "test")).settings
    assert s.mentor.llm.model == "big" and s.mentor.llm.command == ("claude", "-p") and s.mentor.llm.base_url is None
    assert s.code_mode.enabled and s.code_mode.files == ("examples/code_mode/train.py",)
    assert s.code_mode.evaluator.timeout_seconds == 300 and s.code_mode.approval == "none"
    assert s.llm.max_attempts == CONFIG_SCHEMA["properties"]["llm"]["properties"]["max_attempts"]["default"]
