"""The repair loop of config proposals and the mentor's own LLM (code mode's point 10), against scripted servers:
a proposal the guard rejects goes back to the worker with the guard's reasons, up to llm.max_attempts answers."""

from __future__ import annotations

import copy

from llm_server import GOOD_ANSWER, ScriptedLLM, error, llm_study, prompt_of, reply

from autopilot import fsio
from autopilot.propose.decide import propose_run

OUT_OF_RANGE = {**copy.deepcopy(GOOD_ANSWER), "overrides": {"lr": 0.5}}


def test_a_rejected_proposal_goes_back_to_the_worker_with_the_guards_reasons(tmp_path):
    with ScriptedLLM([reply(OUT_OF_RANGE), reply(GOOD_ANSWER)]) as server:
        study = llm_study(tmp_path, server.url)
        proposal = propose_run(study, "00004")
        first, second = (prompt_of(r["body"]) for r in server.requests)
    assert proposal["policy"] == "llm:openai" and proposal["fallback_from"] is None
    assert proposal["overrides"] == GOOD_ANSWER["overrides"]
    assert proposal["repairs"] == [{"attempt": 1, "overrides": {"lr": 0.5}, "violations": proposal["repairs"][0][
        "violations"]}] and proposal["repairs"][0]["violations"][0]["rule"] == "range"
    assert "previous answer for this run was rejected" not in first
    assert "previous answer for this run was rejected" in second and "0.0005 <= lr <= 0.02` must hold" in second
    assert "(the nearest allowed value is 0.02)" in second and 'you proposed the overrides {"lr": 0.5}' in second
    assert second.index("## Your answer") < second.index("was rejected")  # last: where a small model heeds it
    llm = study.paths.run("00004").llm
    assert fsio.read_json(llm / "worker.meta.json")["status"] == "ok"
    assert (llm / "worker-2.prompt.md").read_text() == second


def test_the_fallback_proposes_when_every_answer_was_rejected(tmp_path):
    with ScriptedLLM([reply(OUT_OF_RANGE)]) as server:
        study = llm_study(tmp_path, server.url, llm={"max_attempts": 3})
        proposal = propose_run(study, "00004")
        assert len(server.requests) == 3
    assert proposal["policy"] == "tpe" and proposal["fallback_from"]["policy"] == "llm:openai"
    assert [r["attempt"] for r in proposal["repairs"]] == [1, 2]
    with ScriptedLLM([reply(OUT_OF_RANGE)]) as server:
        study = llm_study(tmp_path / "once", server.url, llm={"max_attempts": 1})
        proposal = propose_run(study, "00004")
        assert len(server.requests) == 1 and "repairs" not in proposal


def test_an_llm_that_is_down_is_not_asked_again(tmp_path):
    with ScriptedLLM([error(500, "overloaded")]) as server:
        study = llm_study(tmp_path, server.url, llm={"retries": 0})
        proposal = propose_run(study, "00004")
        assert len(server.requests) == 1
    assert proposal["fallback_from"]["violations"][0]["rule"] == "http_500" and "repairs" not in proposal


def test_an_unreadable_answer_and_a_duplicate_are_repaired_too(tmp_path):
    with ScriptedLLM([reply("lr should be higher, I think"), reply(GOOD_ANSWER)]) as server:
        study = llm_study(tmp_path / "a", server.url)
        proposal = propose_run(study, "00004")
        assert "the answer holds no JSON object" in prompt_of(server.requests[1]["body"])
    assert proposal["policy"] == "llm:openai" and proposal["repairs"][0]["violations"][0]["rule"] == "invalid_json"
    baseline_again = {**copy.deepcopy(GOOD_ANSWER), "overrides": {}}  # run 00001 trained the baseline
    with ScriptedLLM([reply(baseline_again), reply(GOOD_ANSWER)]) as server:
        study = llm_study(tmp_path / "b", server.url)
        proposal = propose_run(study, "00004")
        assert "the same point as run 00001" in prompt_of(server.requests[1]["body"])
    assert proposal["overrides"] == GOOD_ANSWER["overrides"]
    assert proposal["repairs"][0]["violations"][0]["rule"] == "duplicate"


REVIEW = {"decision": "approve", "critique": "Reasonable: sgd has not been tried on this small network yet.",
          "new_todos": [], "overrides": {}}


def test_the_mentor_asks_its_own_llm(tmp_path):
    with ScriptedLLM([reply(GOOD_ANSWER)]) as worker, ScriptedLLM([reply(REVIEW)]) as mentor:
        study = llm_study(tmp_path, worker.url, mentor={"every_n_runs": 1, "llm": {
            "base_url": mentor.url, "model": "big-reviewer", "temperature": 0.0}})
        proposal = propose_run(study, "00004")
        assert [prompt_of(r["body"]).split("\n")[0][:20] for r in worker.requests] == ["You are the worker o"]
        assert len(mentor.requests) == 1 and mentor.requests[0]["body"]["model"] == "big-reviewer"
        assert mentor.requests[0]["body"]["temperature"] == 0.0
        assert worker.requests[0]["body"]["model"] == "local"
    assert proposal["mentor"]["review"] == REVIEW
    meta = fsio.read_json(study.paths.run("00004").llm / "mentor.meta.json")
    assert meta["base_url"] == mentor.url and meta["model"] == "big-reviewer"
