"""The LLM's API key: a key pasted where its variable's name belongs is refused without being quoted; a key is
stripped of surrounding whitespace and refused when it holds what an HTTP header cannot; processes that need no
key (trainers, agent CLIs) never get it."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest
from helpers import make_project, snakemake
from llm_server import GOOD_ANSWER, ScriptedLLM, llm_study, reply

from autopilot import apikeys, fsio
from autopilot.errors import ConfigError
from autopilot.guard import guard_run
from autopilot.paths import Project
from autopilot.propose.decide import propose_run
from autopilot.study import Study, check_config
from autopilot.train import runner

PASTED = ["sk-proj-Zq81xLmN0pQrStUvWxYz12345", "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345",
          "gsk_abcdef0123456789ABCDEFGHIJKL", "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
          "0123456789abcdef0123456789abcdef0123456789abcdef", "MyKeyIs4Xy7Qp2Lm9Wz3Rt6V"]
NAMES = ["OPENAI_API_KEY", "E2E_LLM_KEY", "together_api_key", "LLM_KEY_2", "_X",
         "MY_VERY_LONG_ORGANISATION_LLM_API_KEY"]


@pytest.mark.parametrize("value", PASTED + ["my key", "OPENAI-API-KEY", "1ABC"])
def test_a_key_or_no_name_in_api_key_env_is_refused_without_being_quoted(value):
    config = {"study": "s", "llm": {"api_key_env": value}}
    with pytest.raises(ConfigError) as e:
        check_config(config, "config/config.yaml")
    message = str(e.value)
    assert "config/config.yaml: llm.api_key_env" in message and "OPENAI_API_KEY" in message
    assert value not in message


@pytest.mark.parametrize("value", NAMES)
def test_variable_names_pass(value):
    apikeys.check_variable_name(value, "llm.api_key_env")


def test_a_key_named_by_the_environment_override_falls_back_without_being_quoted(tmp_path, monkeypatch, caplog):
    pasted = PASTED[0]
    monkeypatch.setenv("AUTOPILOT_LLM_API_KEY_ENV", pasted)
    with ScriptedLLM([reply(GOOD_ANSWER)]) as server:
        study = llm_study(tmp_path, server.url)
        proposal = propose_run(study, "00004")
    assert not server.requests
    assert proposal["policy"] == "tpe" and proposal["fallback_from"]["violations"][0]["rule"] == "config"
    assert "$AUTOPILOT_LLM_API_KEY_ENV looks like an API key itself" in proposal["fallback_from"]["reason"]
    assert_nowhere(pasted, tmp_path, caplog.text)


@pytest.mark.slow
def test_snakemake_refuses_a_pasted_key_before_its_schema_check_quotes_it(tmp_path):
    pasted = PASTED[0]
    root = make_project(tmp_path / "p", llm={"api_key_env": pasted})
    proc = snakemake(root, "-n", check=False)
    assert proc.returncode != 0
    assert "llm.api_key_env looks like an API key itself" in proc.stdout + proc.stderr
    assert pasted not in proc.stdout + proc.stderr
    (root / "config" / "config.yaml").unlink()  # where the person pasted it; no other file may hold it
    assert_nowhere(pasted, root)


@pytest.mark.parametrize("raw", ["  sk-test-0k-key  ", "sk-test-0k-key\r\n", "\tsk-test-0k-key\n"])
def test_whitespace_around_the_key_is_stripped(tmp_path, monkeypatch, raw):
    monkeypatch.setenv("TEST_LLM_KEY", raw)
    with ScriptedLLM([reply(GOOD_ANSWER)]) as server:
        study = llm_study(tmp_path, server.url, llm={"api_key_env": "TEST_LLM_KEY"})
        proposal = propose_run(study, "00004")
    assert proposal["policy"] == "llm:openai"
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-test-0k-key"


@pytest.mark.parametrize("key", ["sk-test-5ecret\r\nX-Injected: yes", "sk-test-5ecret\nmore", "sk-test 5ecret-key",
                                 "sk-test-5ecret-\u20ac-key", "sk-test-5ecret\x7fkey"])
def test_a_key_that_cannot_go_into_a_header_falls_back_with_a_clear_message(tmp_path, monkeypatch, caplog, key):
    monkeypatch.setenv("TEST_LLM_KEY", key)
    caplog.set_level("DEBUG")
    with ScriptedLLM([reply(GOOD_ANSWER)]) as server:
        study = llm_study(tmp_path, server.url, llm={"api_key_env": "TEST_LLM_KEY"})
        proposal = propose_run(study, "00004")
    assert not server.requests  # refused before anything was sent
    reason = proposal["fallback_from"]["reason"]
    assert proposal["policy"] == "tpe" and proposal["fallback_from"]["violations"][0]["rule"] == "config"
    assert "$TEST_LLM_KEY holds a character that cannot be sent in an HTTP header" in reason
    assert_nowhere(key.strip(), tmp_path, caplog.text)


def test_an_empty_key_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", " \r\n")
    with ScriptedLLM([reply(GOOD_ANSWER)]) as server:
        study = llm_study(tmp_path, server.url, llm={"api_key_env": "TEST_LLM_KEY"})
        proposal = propose_run(study, "00004")
    assert not server.requests and "$TEST_LLM_KEY is empty" in proposal["fallback_from"]["reason"]


def test_redact_replaces_the_key_as_set_and_stripped():
    env = {"K": " sk-abc-123456 \n"}
    assert apikeys.redact("got sk-abc-123456 and  sk-abc-123456 \n!", ["K"], env) == "got [redacted] and [redacted]!"
    assert apikeys.redact("nothing here", ["K", "UNSET"], env) == "nothing here"


ENV_TRAINER = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from autopilot.train.contract import TrainerRun

    Path(sys.argv[2], "environ.json").write_text(json.dumps(sorted(os.environ)))
    with TrainerRun.from_argv(sys.argv[1:3]) as run:
        run.finish(metric_value=0.5, per_example=[1.0, 0.0])
""")


def test_a_trainer_runs_without_the_llm_key_variables(tmp_path, monkeypatch):
    (tmp_path / "trainer.py").write_text(ENV_TRAINER)
    monkeypatch.setenv("STUDY_LLM_KEY", "sk-study-key-for-the-llm-only")
    monkeypatch.setenv("OTHER_LLM_KEY", "sk-other-key-for-the-llm-only")
    monkeypatch.setenv("AUTOPILOT_LLM_API_KEY_ENV", "OTHER_LLM_KEY")
    monkeypatch.setenv("UNRELATED_SETTING", "kept")
    config = {"study": "s", "task": "command", "metric": {"name": "acc", "goal": "maximize"},
              "trainer": {"command": [sys.executable, "trainer.py", "{config}", "{run_dir}"]},
              "baseline": {"lr": 0.1}, "search_space": {"lr": {"type": "float", "low": 0.01, "high": 1.0}},
              "llm": {"api_key_env": "STUDY_LLM_KEY"}, "judge": {"noise_seeds": 1}}
    study = Study(Project(tmp_path), check_config(config, "test"))
    propose_run(study, "00001")
    guard_run(study, "00001")
    runner.train_run(study, "00001")
    seen = json.loads((study.paths.run("00001").dir / "environ.json").read_text())
    assert "UNRELATED_SETTING" in seen and "PATH" in seen
    assert "STUDY_LLM_KEY" not in seen and "OTHER_LLM_KEY" not in seen
    assert fsio.read_json(study.paths.run("00001").summary)["status"] == "completed"


def assert_nowhere(secret: str, root, *texts: str) -> None:
    for text in texts:
        assert secret not in text
    for path in root.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_the_warm_processes_of_a_workflow_start_without_the_key(tmp_path, monkeypatch):
    from autopilot.warm import warmup

    started = []
    monkeypatch.setenv("STUDY_LLM_KEY", "sk-study-key-for-the-llm-only")
    monkeypatch.setattr(warmup.client, "start_server", lambda env: started.append(("server", env)))
    monkeypatch.setattr(warmup.trainers, "start_pool", lambda task, root, env: started.append(("pool", env)))
    monkeypatch.setattr(warmup.protocol, "listening", lambda path: False)
    monkeypatch.delenv("AUTOPILOT_NO_WARMSTART", raising=False)
    study = llm_study(tmp_path, "http://127.0.0.1:9/v1", runs=0, llm={"api_key_env": "STUDY_LLM_KEY"})
    warmup.start(study)
    assert [kind for kind, _ in started] == ["server", "pool"]
    for _, env in started:
        assert "STUDY_LLM_KEY" not in env and env["PATH"] == os.environ["PATH"]
