"""The openai backend over real HTTP to a scripted server: answers, retries, timeouts, negotiation, secrets."""

import json
import socket
import time

import pytest
from llm_server import GOOD_ANSWER, ScriptedLLM, error, llama_cpp_like, llm_study, reply

from autopilot import fsio
from autopilot.propose.decide import propose_run
from autopilot.propose.llm import LLMFailure, settings_for
from autopilot.propose.llm.audit import Audit
from autopilot.propose.llm.client import chat

SCHEMA = {"type": "object"}


def run_files(study, run_id="00004"):
    return study.paths.run(run_id).llm


def test_valid_answer_becomes_the_proposal_with_its_exchange_on_disk(tmp_path):
    with ScriptedLLM([reply(GOOD_ANSWER)]) as server:
        study = llm_study(tmp_path, server.url, llm={"model": "qwen-test", "temperature": 0.3, "max_tokens": 512})
        proposal = propose_run(study, "00004")
    assert proposal["policy"] == "llm:openai" and proposal["fallback_from"] is None
    assert proposal["overrides"] == {"lr": 0.005, "optimizer": "sgd"}
    body = server.requests[0]["body"]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("qwen-test", 0.3, 512)
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    schema = fmt["json_schema"]["schema"]
    assert set(schema["required"]) == {"overrides", "rationale", "hypothesis", "housekeeping"}
    assert schema["properties"]["overrides"]["properties"]["lr"] == {"type": "number", "minimum": 0.0005,
                                                                     "maximum": 0.02}
    assert schema["properties"]["rationale"]["maxLength"] == 600  # bounded strings, capped for grammars
    assert schema["properties"]["housekeeping"]["properties"]["resolved_todos"]["items"]["maxLength"] == 20
    folder = run_files(study)
    assert (folder / "worker.prompt.md").read_text() == body["messages"][-1]["content"]
    assert json.loads((folder / "worker.response.txt").read_text()) == GOOD_ANSWER
    meta = fsio.read_json(folder / "worker.meta.json")
    assert meta["backend"] == "openai" and meta["model"] == "qwen-test" and meta["status"] == "ok"
    assert (meta["prompt_tokens"], meta["completion_tokens"], meta["attempts"]) == (321, 45, 1)
    assert 0 <= meta["latency_seconds"] < 2


def test_json_in_prose_and_in_a_fenced_block_are_accepted(tmp_path):
    prose = "Sure! Here is my proposal: " + json.dumps(GOOD_ANSWER) + " Let me know."
    fenced = "I suggest this.\n```json\n" + json.dumps(GOOD_ANSWER, indent=2) + "\n```\nDone."
    with ScriptedLLM([reply(prose), reply(fenced)]) as server:
        study = llm_study(tmp_path, server.url)
        first = propose_run(study, "00004")
        second = propose_run(study, "00005")
    assert first["policy"] == second["policy"] == "llm:openai"
    assert first["overrides"] == second["overrides"] == GOOD_ANSWER["overrides"]


def test_500_then_success_is_retried(tmp_path):
    with ScriptedLLM([error(500, "overloaded"), reply(GOOD_ANSWER)]) as server:
        study = llm_study(tmp_path, server.url)
        proposal = propose_run(study, "00004")
    assert proposal["policy"] == "llm:openai" and len(server.requests) == 2
    meta = fsio.read_json(run_files(study) / "worker.meta.json")
    assert meta["attempts"] == 2 and "HTTP 500" in meta["errors"][0]


def test_429_waits_for_retry_after(tmp_path):
    with ScriptedLLM([error(429, "slow down", {"Retry-After": "1"}), reply(GOOD_ANSWER)]) as server:
        study = llm_study(tmp_path, server.url, llm={"backoff_seconds": 0.0})
        proposal = propose_run(study, "00004")
    assert proposal["policy"] == "llm:openai"
    waited = server.requests[1]["at"] - server.requests[0]["at"]
    assert 0.95 <= waited < 1.8


def test_retry_after_longer_than_the_timeout_falls_back_at_once(tmp_path):
    with ScriptedLLM([error(429, "come back tomorrow", {"Retry-After": "86400"})]) as server:
        study = llm_study(tmp_path, server.url)
        started = time.monotonic()
        proposal = propose_run(study, "00004")
    assert time.monotonic() - started < 5 and len(server.requests) == 1
    assert proposal["policy"] == "tpe" and "retry after 86400" in proposal["fallback_from"]["reason"]
    assert proposal["fallback_from"]["violations"][0]["rule"] == "http_429"


def test_response_slower_than_the_timeout_falls_back(tmp_path):
    with ScriptedLLM([reply(GOOD_ANSWER, delay=1.5)]) as server:
        study = llm_study(tmp_path, server.url, llm={"timeout_seconds": 0.4})
        started = time.monotonic()
        proposal = propose_run(study, "00004")
        elapsed = time.monotonic() - started
    assert proposal["policy"] == "tpe" and proposal["fallback_from"]["policy"] == "llm:openai"
    assert proposal["fallback_from"]["violations"][0]["rule"] == "timeout"
    assert len(server.requests) == 1 and elapsed < 1.4  # not retried, not waited out
    meta = fsio.read_json(run_files(study) / "worker.meta.json")
    assert meta["status"] == "failed" and meta["failure"] == "timeout"


def test_401_is_not_retried_and_the_key_is_written_nowhere(tmp_path, monkeypatch, caplog):
    key = "sk-test-5ecret-do-not-leak-7f3a"
    monkeypatch.setenv("TEST_LLM_KEY", key)

    def echo_auth(body):  # a server that echoes the header back, as some do in error bodies
        return error(401, f"invalid key {server.requests[-1]['headers'].get('Authorization')}")

    with ScriptedLLM(echo_auth) as server:
        study = llm_study(tmp_path, server.url, llm={"api_key_env": "TEST_LLM_KEY"})
        caplog.set_level("DEBUG")
        proposal = propose_run(study, "00004")
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {key}"
    assert len(server.requests) == 1
    assert proposal["policy"] == "tpe" and proposal["fallback_from"]["violations"][0]["rule"] == "http_401"
    assert "[redacted]" in proposal["fallback_from"]["reason"]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "worker.meta.json" for p in written)
    for path in written:
        assert key.encode() not in path.read_bytes(), path
    assert key not in caplog.text


def test_a_missing_key_variable_falls_back_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_LLM_KEY", raising=False)
    with ScriptedLLM([reply(GOOD_ANSWER)]) as server:
        study = llm_study(tmp_path, server.url, llm={"api_key_env": "TEST_LLM_KEY"})
        proposal = propose_run(study, "00004")
    assert not server.requests
    assert "$TEST_LLM_KEY" in proposal["fallback_from"]["reason"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_retried_then_falls_back(tmp_path):
    study = llm_study(tmp_path, f"http://127.0.0.1:{free_port()}/v1", llm={"retries": 2, "backoff_seconds": 0.05})
    proposal = propose_run(study, "00004")
    assert proposal["policy"] == "tpe"
    assert proposal["fallback_from"]["violations"][0]["rule"] == "connection"
    assert "gave up after 3 attempt(s)" in proposal["fallback_from"]["reason"]
    meta = fsio.read_json(run_files(study) / "worker.meta.json")
    assert meta["attempts"] == 3 and len(meta["errors"]) == 3


@pytest.mark.parametrize("status", [422, 500])
def test_negotiation_falls_to_json_object_and_is_remembered(tmp_path, status):
    with ScriptedLLM(llama_cpp_like(lambda body: reply(GOOD_ANSWER), status)) as server:
        study = llm_study(tmp_path, server.url)
        first = propose_run(study, "00004")
        forms = [(r["body"].get("response_format") or {}).get("type") for r in server.requests]
        assert forms == ["json_schema", "json_object"]  # not retried as a 500: it names the format
        assert "properties" in server.requests[1]["body"]["response_format"]["schema"]
        cache = fsio.read_json(study.paths.dir / "llm_endpoints.json")
        assert cache[server.url]["response_format"] == "json_object"
        second = propose_run(study, "00005")
    assert first["policy"] == second["policy"] == "llm:openai"
    assert [(r["body"].get("response_format") or {}).get("type") for r in server.requests[2:]] == ["json_object"]


def test_negotiation_ends_without_a_format(tmp_path):
    def no_formats(body):
        if "response_format" in body:
            return error(400, "unsupported parameter: response_format")
        return reply("Here you go:\n" + json.dumps(GOOD_ANSWER))

    with ScriptedLLM(no_formats) as server:
        study = llm_study(tmp_path, server.url)
        assert propose_run(study, "00004")["policy"] == "llm:openai"
    assert len(server.requests) == 3 and "response_format" not in server.requests[-1]["body"]
    assert fsio.read_json(study.paths.dir / "llm_endpoints.json")[server.url]["response_format"] == "none"


def test_environment_overrides_base_url_model_and_key_variable(tmp_path, monkeypatch):
    with ScriptedLLM([reply(GOOD_ANSWER)]) as server:
        study = llm_study(tmp_path, "http://127.0.0.1:9/v1")  # nothing listens there
        monkeypatch.setenv("AUTOPILOT_LLM_BASE_URL", server.url)
        monkeypatch.setenv("AUTOPILOT_LLM_MODEL", "from-env")
        monkeypatch.setenv("AUTOPILOT_LLM_API_KEY_ENV", "OTHER_KEY")
        monkeypatch.setenv("OTHER_KEY", "k-123")
        settings = settings_for(study)
        reply_ = chat(settings, "hello", SCHEMA, Audit())
    assert json.loads(reply_.text) == GOOD_ANSWER
    assert server.requests[0]["body"]["model"] == "from-env"
    assert server.requests[0]["headers"]["Authorization"] == "Bearer k-123"


def test_an_answer_that_is_not_a_chat_completion_fails(tmp_path):
    from llm_server import Step

    with ScriptedLLM([Step(200, "<html>proxy login</html>")]) as server:
        study = llm_study(tmp_path, server.url, runs=0)
        with pytest.raises(LLMFailure) as caught:
            chat(settings_for(study), "hello", SCHEMA, Audit())
    assert caught.value.kind == "bad_response"
