"""The command backend: an agent CLI that reads the prompt on stdin and prints its answer, run as a script."""

import json
import sys
import time
from pathlib import Path

from llm_server import GOOD_ANSWER, llm_study

from autopilot import fsio
from autopilot.propose.decide import propose_run

AGENT = """
import json, sys
prompt = sys.stdin.read()
assert "You propose run 00004" in prompt
print("Thinking done. My answer:\\n```json\\n" + json.dumps({answer}) + "\\n```")
"""

HANGS = """
import subprocess, sys, time
sys.stdin.read()
child = subprocess.Popen(["sleep", "30"])
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(30)
"""

FAILS = """
import sys
sys.stdin.read()
sys.stderr.write("agent: not logged in\\n")
sys.exit(3)
"""


def script(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def command_study(tmp_path, argv, **llm):
    return llm_study(tmp_path, "http://unused", llm={"backend": "command", "command": argv, **llm})


def test_the_agent_answer_on_stdout_becomes_the_proposal(tmp_path):
    agent = script(tmp_path, "agent.py", AGENT.format(answer=repr(GOOD_ANSWER)))
    study = command_study(tmp_path, [sys.executable, agent])
    proposal = propose_run(study, "00004")
    assert proposal["policy"] == "llm:command" and proposal["overrides"] == GOOD_ANSWER["overrides"]
    meta = fsio.read_json(study.paths.run("00004").llm / "worker.meta.json")
    assert meta["backend"] == "command" and meta["command"] == [sys.executable, agent] and meta["status"] == "ok"
    assert json.loads((study.paths.run("00004").llm / "worker.response.txt").read_text().split("```json\n")[1]
                      .split("```")[0]) == GOOD_ANSWER


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" not in status.read_text()


def test_a_slow_agent_is_killed_with_its_whole_process_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    study = command_study(tmp_path, [sys.executable, script(tmp_path, "hangs.py", HANGS), str(pid_file)],
                          timeout_seconds=1.5)
    started = time.monotonic()
    proposal = propose_run(study, "00004")
    assert time.monotonic() - started < 10
    assert proposal["policy"] == "tpe" and proposal["fallback_from"]["violations"][0]["rule"] == "timeout"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_a_failing_agent_falls_back_with_its_stderr(tmp_path):
    study = command_study(tmp_path, [sys.executable, script(tmp_path, "fails.py", FAILS)])
    proposal = propose_run(study, "00004")
    assert proposal["fallback_from"]["violations"][0]["rule"] == "command_failed"
    assert "status 3" in proposal["fallback_from"]["reason"] and "not logged in" in proposal["fallback_from"]["reason"]


def test_a_missing_agent_falls_back(tmp_path):
    study = command_study(tmp_path, ["no-such-agent-cli", "-p"])
    proposal = propose_run(study, "00004")
    assert proposal["fallback_from"]["violations"][0]["rule"] == "config"
    assert "no-such-agent-cli" in proposal["fallback_from"]["reason"]


ENV_AGENT = """
import json, os, sys
sys.stdin.read()
open(sys.argv[1], "w").write(json.dumps(sorted(os.environ)))
print(json.dumps({answer}))
"""

FLOODS = """
import sys
sys.stdout.write("x" * (8 * 1024 * 1024))
sys.stdout.flush()
"""

DEAF = """
import json
print(json.dumps({answer}))
"""


def test_the_agent_runs_without_the_llm_key_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDY_LLM_KEY", "sk-test-not-for-the-agent")
    monkeypatch.setenv("OVERRIDE_LLM_KEY", "sk-test-not-for-the-agent-either")
    monkeypatch.setenv("AUTOPILOT_LLM_API_KEY_ENV", "OVERRIDE_LLM_KEY")
    monkeypatch.setenv("AGENT_OWN_SETTING", "kept")
    seen = tmp_path / "environ.json"
    agent = script(tmp_path, "env_agent.py", ENV_AGENT.format(answer=repr(GOOD_ANSWER)))
    study = command_study(tmp_path, [sys.executable, agent, str(seen)], api_key_env="STUDY_LLM_KEY")
    proposal = propose_run(study, "00004")
    assert proposal["policy"] == "llm:command"
    names = json.loads(seen.read_text())
    assert "AGENT_OWN_SETTING" in names and "PATH" in names
    assert "STUDY_LLM_KEY" not in names and "OVERRIDE_LLM_KEY" not in names


def test_an_agent_that_prints_without_end_is_cut_off(tmp_path):
    study = command_study(tmp_path, [sys.executable, script(tmp_path, "floods.py", FLOODS)])
    proposal = propose_run(study, "00004")
    assert proposal["policy"] == "tpe"
    assert proposal["fallback_from"]["violations"][0]["rule"] == "response_too_large"


def test_an_agent_that_does_not_read_a_long_prompt_still_answers(tmp_path):
    agent = script(tmp_path, "deaf.py", DEAF.format(answer=repr(GOOD_ANSWER)))
    (tmp_path / "long.md").write_text("You propose run $run_id. " + "Background. " * 30_000)  # > a pipe's buffer
    study = command_study(tmp_path, [sys.executable, agent], template="long.md", max_prompt_chars=400_000)
    proposal = propose_run(study, "00004")
    assert len((study.paths.run("00004").llm / "worker.prompt.md").read_text()) > 300_000
    assert proposal["policy"] == "llm:command" and proposal["overrides"] == GOOD_ANSWER["overrides"]
