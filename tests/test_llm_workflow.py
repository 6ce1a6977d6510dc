"""End to end on the scripted server: three iterations of the CNN study with the LLM policy and the mentor; a night
of broken exchanges, by cron and by the daemon, that never stops the loop and writes the key nowhere."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import pytest
import yaml
from helpers import VENV_BIN, make_project, snakemake
from helpers import env as workflow_env
from llm_server import (
    GOOD_ANSWER,
    ScriptedLLM,
    broken_chunks,
    dripping,
    prompt_of,
    redirect,
    reply,
)

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


# --- a night of broken LLM exchanges: every one falls back, no key reaches a file -----------------------
ENV_TRAINER = """
import json, os, sys
from autopilot.train.contract import TrainerRun

print("environment:", json.dumps(dict(os.environ)))  # into train.log: the key must not be there
with TrainerRun.from_argv(sys.argv[1:3]) as run:
    score = 0.8 + 0.01 * (run.seed % 5) - abs(run.hparams["lr"] - 0.005)
    run.finish(metric_value=score, per_example=[float(i < 16 * score) for i in range(16)])
"""

KEYS = {"cron": "  sk-e2e-first-4f1d-night  \r\n",                 # stripped of its whitespace and used
        "daemon": "sk-e2e-second-77ae-night\r\nX-Injected: yes",    # a line break inside: refused
        "url": "sk-e2e-third-c3b0-night"}                           # a base_url requests cannot use
NAN_ANSWER = json.dumps(GOOD_ANSWER).replace('"lr": 0.005', '"lr": NaN')


def night_script(server_box: list):
    def script(body: dict):
        run = re.search(r"You propose run (\d{5})", prompt_of(body)).group(1)
        auth = server_box[0].requests[-1]["headers"].get("Authorization")
        echoed = {**GOOD_ANSWER, "rationale": GOOD_ANSWER["rationale"] + f" (the header was {auth})"}
        return {"00002": broken_chunks(), "00003": redirect(307, "/v1/chat/completions"), "00004": dripping(0.05),
                "00005": reply(NAN_ANSWER), "00006": reply(echoed)}[run]
    return script


def autopilot(root, command: str, key: str, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(VENV_BIN / "autopilot"), command, "--cores", "2"], cwd=root, capture_output=True,
                          text=True, timeout=300, env={**workflow_env(), "E2E_LLM_KEY": key, **env})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_a_night_of_failing_llm_exchanges_falls_back_every_time_and_writes_the_key_nowhere(tmp_path):
    box: list = []
    with ScriptedLLM(night_script(box)) as server:
        box.append(server)
        root = make_project(tmp_path / "p", policy="llm", task="command", iterations=6,
                            trainer={"command": [sys.executable, "trainer.py", "{config}", "{run_dir}"]},
                            llm={"base_url": server.url, "retries": 0, "timeout_seconds": 1.5,
                                 "api_key_env": "E2E_LLM_KEY"}, budget={"max_runs": 6})
        (root / "trainer.py").write_text(ENV_TRAINER)
        autopilot(root, "cron", KEYS["cron"])
        set_budget(root, 7)
        autopilot(root, "daemon", KEYS["daemon"])
        set_budget(root, 8)
        autopilot(root, "cron", KEYS["url"], AUTOPILOT_LLM_BASE_URL="http://[::1/v1")
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {KEYS['cron'].strip()}"}
    study = root / "runs" / "digits_cnn"
    fallbacks = {run: fsio.read_json(study / run / "proposal.json")["fallback_from"] for run in
                 [f"{n:05d}" for n in range(2, 9)]}
    rules = {run: f and f["violations"][0]["rule"] for run, f in fallbacks.items()}
    assert rules == {"00002": "chunked_encoding_error", "00003": "http_307", "00004": "timeout", "00005": "range",
                     "00006": None, "00007": "config", "00008": "invalid_url"}
    assert "cannot be sent in an HTTP header" in fallbacks["00007"]["reason"]
    proposal = fsio.read_json(study / "00006" / "proposal.json")
    assert proposal["policy"] == "llm:openai" and "(the header was Bearer [redacted])" in proposal["rationale"]
    logs = sorted(p.name for p in (study / "logs").iterdir())
    assert any(n.startswith("cron-") for n in logs) and any(n.startswith("daemon-") for n in logs)
    assert "environment:" in (study / "00008" / "train.log").read_text()
    for path in tmp_path.rglob("*"):  # run folders, logs, daemon and cron logs, Snakemake's own records
        if path.is_file():
            data = path.read_bytes()
            for key in KEYS.values():
                assert key.strip().split("\r")[0].encode() not in data, path


def set_budget(root, max_runs: int) -> None:
    path = root / "config" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    config["budget"]["max_runs"] = max_runs
    config["iterations"] = 1
    path.write_text(yaml.safe_dump(config, sort_keys=False))
