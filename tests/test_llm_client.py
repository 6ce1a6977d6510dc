"""The openai backend over real HTTP to a scripted server: answers, retries, timeouts, negotiation, secrets."""

import json
import socket
import time

import pytest
from llm_server import (
    GOOD_ANSWER,
    ScriptedLLM,
    Step,
    bad_gzip,
    broken_chunks,
    completion,
    dripping,
    error,
    llama_cpp_like,
    llm_study,
    oversized,
    raw,
    redirect,
    reply,
)

from autopilot import fsio
from autopilot.propose.decide import propose_run
from autopilot.propose.llm import MAX_ANSWER_BYTES, LLMFailure, settings_for
from autopilot.propose.llm.audit import Audit
from autopilot.propose.llm.client import chat, post

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
    with ScriptedLLM([Step(200, "<html>proxy login</html>")]) as server:
        study = llm_study(tmp_path, server.url, runs=0)
        with pytest.raises(LLMFailure) as caught:
            chat(settings_for(study), "hello", SCHEMA, Audit())
    assert caught.value.kind == "bad_response"


# --- whatever the server or the network does, the loop falls back; the key is written nowhere --------------
KEY = "sk-test-hardening-9d2c-never-on-disk"


def keyed_study(tmp_path, monkeypatch, url, **llm):
    monkeypatch.setenv("TEST_LLM_KEY", KEY)
    return llm_study(tmp_path, url, llm={"api_key_env": "TEST_LLM_KEY", "retries": 0, **llm})


def assert_key_nowhere(tmp_path, caplog):
    assert KEY not in caplog.text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("step, rule", [
    (broken_chunks(), "chunked_encoding_error"),
    (bad_gzip(), "content_decoding_error"),
    (redirect(307, "/v1/chat/completions"), "http_307"),  # a loop, if it were followed
    (redirect(302, "http://[::1/v1/chat/completions"), "value_error"),  # requests parses it all the same
    (oversized(MAX_ANSWER_BYTES), "response_too_large"),
    (raw("HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: 40", b'{"choices": '),
     "chunked_encoding_error"),  # cut short: requests reports the IncompleteRead so
    (raw("HTTP/1.1 200 OK\nContent-Type: application/json", b'{"choices": [{"message": {"content": "\\u'),
     "bad_response"),
    (raw("HTTP/1.1 200 OK\nContent-Type: application/json; charset=no-such-codec",
         b'{"choices": [{"message": {"content": "\xff\xfe"}}]}'), "bad_response"),
    (raw("HTTP/1.1 200 OK\nContent-Type: application/json", b"[" * 200_000), "bad_response"),
    (raw("HTTP/1.1 200 OK\nX-Bad: " + "y" * 70_000), "connection"),  # a header line too long for http.client
    (raw("NOT HTTP AT ALL"), "connection"),
])
def test_every_failed_request_falls_back_by_type_and_url_only(tmp_path, monkeypatch, caplog, step, rule):
    caplog.set_level("DEBUG")
    with ScriptedLLM([step]) as server:
        study = keyed_study(tmp_path, monkeypatch, server.url)
        proposal = propose_run(study, "00004")
    assert proposal["policy"] == "tpe" and proposal["fallback_from"]["policy"] == "llm:openai"
    assert proposal["fallback_from"]["violations"][0]["rule"] == rule
    assert server.url in proposal["fallback_from"]["reason"] or rule == "bad_response"
    meta = fsio.read_json(run_files(study) / "worker.meta.json")
    assert meta["status"] == "failed" and meta["failure"] == rule
    assert_key_nowhere(tmp_path, caplog)


@pytest.mark.parametrize("base_url, rule", [
    ("localhost:8000/v1", "invalid_schema"),
    ("localhost/v1", "missing_schema"),
    ("http://[::1/v1", "invalid_url"),
    ("http:///v1", "invalid_url"),
    ("ftp://127.0.0.1/v1", "invalid_schema"),
])
def test_a_base_url_requests_cannot_use_falls_back_by_type_and_url(tmp_path, monkeypatch, caplog, base_url, rule):
    caplog.set_level("DEBUG")
    study = keyed_study(tmp_path, monkeypatch, base_url)
    proposal = propose_run(study, "00004")
    reason = proposal["fallback_from"]["reason"]
    assert proposal["policy"] == "tpe" and proposal["fallback_from"]["violations"][0]["rule"] == rule
    assert reason.startswith(f"{base_url}/chat/completions: the request failed with ")
    assert_key_nowhere(tmp_path, caplog)


@pytest.mark.parametrize("key, kind", [("sk-test\r\nX-Injected: yes", "invalid_header"),
                                       ("sk-test-\u20ac-key", "unicode_encode_error")])
def test_errors_that_quote_the_header_are_recorded_by_type_only(tmp_path, key, kind):
    """Keys like these are refused before a request is made (test_apikeys); were one sent, requests or http.client
    would quote it in the error's message, which is therefore never kept."""
    with ScriptedLLM([reply(GOOD_ANSWER)]) as server:
        settings = settings_for(llm_study(tmp_path, server.url, runs=0))
        meta = {"attempts": 0, "errors": []}
        with pytest.raises(LLMFailure) as caught:
            post(settings, {"model": "m"}, key, meta, time.monotonic() + 5)
    assert caught.value.kind == kind and "\r" not in str(caught.value) and "\u20ac" not in str(caught.value)
    assert str(caught.value).endswith("(its message is not kept: it may quote the request's headers)")


def test_a_dripping_answer_is_cut_off_at_the_exchange_deadline(tmp_path):
    """Each byte comes well within the socket's timeout; only a deadline on the whole exchange ends it."""
    with ScriptedLLM([dripping(0.05)]) as server:  # about 20 s for the whole answer
        study = llm_study(tmp_path, server.url, llm={"timeout_seconds": 1.0, "retries": 2})
        started = time.monotonic()
        proposal = propose_run(study, "00004")
        elapsed = time.monotonic() - started
    assert proposal["policy"] == "tpe" and proposal["fallback_from"]["violations"][0]["rule"] == "timeout"
    assert len(server.requests) == 1 and elapsed < 3.0


def test_retries_and_their_waits_stay_within_the_exchange_deadline(tmp_path):
    with ScriptedLLM([error(503, "warming up")]) as server:
        study = llm_study(tmp_path, server.url, llm={"timeout_seconds": 1.0, "retries": 10, "backoff_seconds": 0.2})
        started = time.monotonic()
        proposal = propose_run(study, "00004")
        elapsed = time.monotonic() - started
    assert proposal["fallback_from"]["violations"][0]["rule"] == "http_503"
    assert "no time left to retry within llm.timeout_seconds=1" in proposal["fallback_from"]["reason"]
    assert 2 <= len(server.requests) <= 4 and elapsed < 2.5  # 0.2 + 0.4 s of waits fit, 0.8 more would not


def test_what_the_server_echoes_of_the_key_is_redacted_everywhere(tmp_path, monkeypatch, caplog):
    def echo(body):
        auth = server.requests[-1]["headers"].get("Authorization")
        answer = {**GOOD_ANSWER, "rationale": GOOD_ANSWER["rationale"] + f" Authorization was {auth}."}
        step = reply(answer)
        step.body = step.body.replace('"model": "scripted"', json.dumps({"model": auth})[1:-1])
        return step

    caplog.set_level("DEBUG")
    with ScriptedLLM(echo) as server:
        study = keyed_study(tmp_path, monkeypatch, server.url)
        proposal = propose_run(study, "00004")
    assert proposal["policy"] == "llm:openai" and "Authorization was Bearer [redacted]" in proposal["rationale"]
    assert fsio.read_json(run_files(study) / "worker.meta.json")["served_model"] == "Bearer [redacted]"
    assert_key_nowhere(tmp_path, caplog)


@pytest.mark.parametrize("usage", ['{"prompt_tokens": NaN}', '{"prompt_tokens": 1' + "0" * 5000 + "}"])
def test_numbers_json_cannot_hold_in_the_completion_fall_back(tmp_path, usage):
    body = completion(json.dumps(GOOD_ANSWER)).replace('"usage": {', f'"usage": {usage}, "was": {{')
    with ScriptedLLM([Step(200, body, {"Content-Type": "application/json"})]) as server:
        study = llm_study(tmp_path, server.url)
        proposal = propose_run(study, "00004")
    assert proposal["policy"] == "tpe" and proposal["fallback_from"]["violations"][0]["rule"] == "bad_response"


def test_a_lone_surrogate_in_the_completion_is_written_as_a_replacement_character(tmp_path):
    answer = json.dumps({**GOOD_ANSWER, "rationale": GOOD_ANSWER["rationale"] + " (unpaired: \ud800)"})
    body = completion(answer).replace("\\\\ud800", "\\ud800")  # the completion's string holds a lone surrogate
    with ScriptedLLM([Step(200, body, {"Content-Type": "application/json"})]) as server:
        study = llm_study(tmp_path, server.url)
        proposal = propose_run(study, "00004")
    assert proposal["policy"] == "llm:openai" and proposal["rationale"].endswith("(unpaired: ?)")
    assert "(unpaired: ?)" in (run_files(study) / "worker.response.txt").read_text(encoding="utf-8")


def test_a_lone_surrogate_escape_inside_the_answer_falls_back(tmp_path):
    answer = json.dumps({**GOOD_ANSWER, "rationale": GOOD_ANSWER["rationale"] + " (unpaired: \ud800)"})
    assert "\\ud800" in answer  # the JSON the LLM wrote spells the escape out
    with ScriptedLLM([reply(answer)]) as server:
        study = llm_study(tmp_path, server.url)
        proposal = propose_run(study, "00004")
    assert proposal["policy"] == "tpe" and proposal["fallback_from"]["violations"][0]["rule"] == "invalid_json"
    assert "lone surrogate" in proposal["fallback_from"]["reason"]
