"""Code mode through the workflow itself: `snakemake` advances a code-mode study by a baseline and a code run whose
patch comes from the scripted OpenAI-compatible server, in a git project (one slow end-to-end test)."""

from __future__ import annotations

import subprocess

import pytest
from code_helpers import MINIBATCH, TRAIN, answer, code_project, edit_patch
from helpers import snakemake
from llm_server import ScriptedLLM, reply

from autopilot import fsio

pytestmark = pytest.mark.slow


def test_snakemake_runs_a_baseline_and_a_code_run(tmp_path, monkeypatch):
    root = code_project(tmp_path / "p")
    diff = edit_patch(root, TRAIN, *MINIBATCH)
    with ScriptedLLM([reply(answer(diff))]) as server:
        monkeypatch.setenv("AUTOPILOT_LLM_BASE_URL", server.url)
        snakemake(root, "--config", "iterations=2", timeout=600)
        assert len(server.requests) == 1
    runs = root / "runs" / "code_digits"
    first, second = (fsio.read_json(runs / r / "journal_entry.json") for r in ("00001", "00002"))
    assert first["verdict"] == "baseline" and first["code"]["patched"] is False
    assert second["policy"] == "code:llm:openai" and second["code"]["patched"] is True
    assert second["verdict"] == "improved"
    assert (runs / "00002" / "patch.diff").exists() and fsio.read_json(runs / "00002" / "sandbox.json")
    tip = subprocess.run(["git", "rev-parse", "autopilot/code_digits^{tree}"], cwd=root, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert tip == second["code"]["tree"]
    assert "code: patch of" in (runs / "labbook.md").read_text()
