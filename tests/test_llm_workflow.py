"""End to end: three iterations of the CNN study with the LLM policy and the mentor, on the scripted server."""

from __future__ import annotations

import copy
import re

import pytest
from conftest import make_project, snakemake
from llm_server import GOOD_ANSWER, ScriptedLLM, prompt_of, reply

from autopilot import fsio, schemas

pytestmark = pytest.mark.slow

REVISE = {"decision": "revise", "critique": "Good gap to probe, but two epochs undertrain sgd; give it three.",
          "new_todos": ["check whether sgd needs a warm-up"], "overrides": {"epochs": 3}}


def script(body: dict):
    """Run 2: a good worker answer that the mentor revises; run 3: a value out of range (the guard rejects it)."""
    text = prompt_of(body)
    if text.startswith("You are the mentor"):
        return reply(REVISE)
    run = re.search(r"You propose run (\d{5})", text).group(1)
    if run == "00002":
        return reply(GOOD_ANSWER)
    wild = copy.deepcopy(GOOD_ANSWER)
    wild["overrides"] = {"lr": 3.0}
    return reply("Bold idea:\n```json\n" + fsio.dumps_json(wild) + "```")


KEY = "sk-e2e-9b1f-never-on-disk"


def test_three_iterations_with_the_llm_and_the_mentor(tmp_path, monkeypatch):
    with ScriptedLLM(script) as server:
        monkeypatch.setenv("AUTOPILOT_LLM_BASE_URL", server.url)  # reaches `autopilot propose` through Snakemake
        monkeypatch.setenv("E2E_LLM_KEY", KEY)
        root = make_project(tmp_path / "p", policy="llm", iterations=3, mentor={"every_n_runs": 2},
                            llm={"base_url": "http://127.0.0.1:9/v1", "retries": 1, "timeout_seconds": 10,
                                 "api_key_env": "E2E_LLM_KEY"})
        snakemake(root, "--verbose")
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    for path in tmp_path.rglob("*"):  # run folders, logs, Snakemake's own records: the key is in none of them
        assert not path.is_file() or KEY.encode() not in path.read_bytes(), path
    study = root / "runs" / "digits_cnn"
    second, third = (fsio.read_json(study / r / "proposal.json") for r in ("00002", "00003"))
    assert second["policy"] == "llm:openai" and second["fallback_from"] is None
    assert second["mentor"]["review"]["decision"] == "revise" and second["mentor"]["amended_from"] == {
        "lr": 0.005, "optimizer": "sgd"}
    hparams = fsio.read_json(study / "00002" / "config.json")["hparams"]
    assert (hparams["lr"], hparams["optimizer"], hparams["epochs"]) == (0.005, "sgd", 3)  # worker + mentor
    assert third["policy"] == "tpe" and third["fallback_from"]["policy"] == "llm:openai"
    assert third["mentor"] is None  # run 3 is not due, and a rejected proposal is never reviewed
    for run, roles in (("00002", ("worker", "mentor")), ("00003", ("worker",))):
        for role in roles:
            for suffix in ("prompt.md", "response.txt", "meta.json"):
                assert (study / run / "llm" / f"{role}.{suffix}").exists()
    for name in ("00001", "00002", "00003"):
        schemas.validate(fsio.read_json(study / name / "proposal.json"), "proposal")
    assert fsio.read_json(study / "fallbacks.json")["counts"] == {"range": 1}
    labbook = (study / "labbook.md").read_text()
    assert "- fallbacks so far, by reason: range 1" in labbook and "`llm:openai`" in labbook
    assert "two epochs undertrain sgd" in (study / "mentor_notes.md").read_text()
    todos = (study / "shared_todo.md").read_text()
    assert "T001 try width 16 together with sgd" in todos and "T002 check whether sgd needs a warm-up" in todos
    assert "sgd is untested so far" in (study / "workpad.md").read_text()
    third_prompt = (study / "00003" / "llm" / "worker.prompt.md").read_text()
    assert "two epochs undertrain sgd" in third_prompt and "| 00002 |" in third_prompt.replace(" (best)", "")
