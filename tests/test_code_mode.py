"""Code mode through the loop's own steps, against the scripted OpenAI-compatible server and a scripted agent CLI:
patches applied, guarded, checked, sandboxed, trained, scored by the sealed evaluator, judged and kept in git.

A project with the example trainer (examples/code_mode) and its finished baseline (run 00001) is made once per
module and copied for each test; run 00002 is the first code run (code_mode.every_n_runs: 2).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from code_helpers import (
    EVALUATE,
    MINIBATCH,
    TRAIN,
    answer,
    code_project,
    code_study_config,
    copy_project,
    edit_patch,
    load_study,
    run_loop,
)
from llm_server import ScriptedLLM, prompt_of, reply

from autopilot import fsio
from autopilot.cli import main
from autopilot.code import sandbox
from autopilot.code.repo import open_repo
from autopilot.errors import ConfigError, GuardRejected
from autopilot.study import check_config

CAPS = sandbox.capabilities()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    root = code_project(tmp_path_factory.mktemp("code") / "p")
    study = load_study(root)
    study.freeze()
    assert run_loop(study, "00001")["verdict"] == "baseline"
    return root


@pytest.fixture
def root(baseline, tmp_path) -> Path:
    return copy_project(baseline, tmp_path / "p")


def study_at(root: Path, url: str, **code_mode):
    config = load_study(root).config
    study = load_study(root, llm={**config["llm"], "base_url": url, "timeout_seconds": 30, "retries": 0},
                       code_mode={**config["code_mode"], **code_mode})
    study.freeze()
    return study


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def read(root: Path, run: str, name: str):
    return fsio.read_json(root / "runs" / "code_digits" / run / name)


def test_a_good_patch_is_applied_trained_judged_and_becomes_the_code_line(root):
    diff = edit_patch(root, TRAIN, *MINIBATCH)
    with ScriptedLLM([reply(answer(diff))]) as server:
        study = study_at(root, server.url)
        entry = run_loop(study, "00002")
    run = root / "runs" / "code_digits" / "00002"
    proposal = read(root, "00002", "proposal.json")
    code = proposal["code"]
    assert proposal["policy"] == "code:llm:openai" and code["patched"] and code["files"] == [TRAIN]
    assert (run / "patch.diff").read_text() == code["diff"] and "order = rng.permutation" in code["diff"]
    assert [a["outcome"] for a in code["attempts"]] == ["accepted"]
    assert [c["name"] for c in code["attempts"][0]["checks"]] == ["compile", "smoke"]
    config = read(root, "00002", "config.json")
    assert config["code"] == {"commit": code["commit"], "tree": code["tree"], "base_commit": code["base_commit"],
                              "patched": True}
    summary = read(root, "00002", "trainer_summary.json")
    evaluation = summary["evaluation"]
    assert summary["metric"]["value"] == read(root, "00002", "evaluation.json")["metric"]
    assert evaluation["trainer_reported"] is None and evaluation["files"] == [EVALUATE]
    assert evaluation["code_hash"] == read(root, "00001", "trainer_summary.json")["evaluation"]["code_hash"]
    assert len(summary["per_example"]["values"]) == 359
    # mini-batches beat one full-batch step per epoch by far: improved, on confirmation seeds, by Welch's test
    assert entry["verdict"] == "improved", entry
    assert "welch" in read(root, "00002", "verdict.json")["interval"]["method"]
    assert not run.joinpath("code", "tree").exists()  # the checkout went; the commit keeps the code
    sandboxes = read(root, "00002", "sandbox.json")  # each process of the run in the sandbox (never the warm pool)
    assert {"attempt-1/smoke", "trainer/seed-0", "trainer/seed-1"} <= set(sandboxes)
    assert sandboxes["trainer/seed-0"]["purpose"] == "trainer"
    # the code line is now the patch's tree, and the branch holds the attempt
    assert git(root, "rev-parse", "autopilot/code_digits^{tree}").strip() == code["tree"]
    assert code["commit"] in git(root, "log", "--format=%H", "autopilot/code_digits")
    assert git(root, "status", "--porcelain") == ""  # the user's checkout is untouched
    # the next run is a config run: it trains the new code line unpatched
    with ScriptedLLM([reply(answer(diff))]) as server:
        study = study_at(root, server.url)
        run_loop(study, "00003", upto="guard")
        assert server.requests == []
    third = read(root, "00003", "proposal.json")
    assert third["policy"] == "tpe" and third["code"]["tree"] == code["tree"] and not third["code"]["patched"]
    assert "replayed 1 finished run(s)" in third["rationale"]  # TPE models the runs on this code version alone
    assert read(root, "00003", "config.json")["code"]["commit"] == third["code"]["base_commit"]
    cli = CliRunner().invoke(main, ["--root", str(root), "code", "log", "--study", "code_digits"])
    assert cli.exit_code == 0 and "00002/1  accepted" in cli.output and "-> improved" in cli.output
    assert cli.output.rstrip().endswith("(start) the project")  # the code line down to where it began
    # a rollback takes the patch back from the code line
    cli = CliRunner().invoke(main, ["--root", str(root), "code", "revert", "00002", "--study", "code_digits"])
    assert cli.exit_code == 0, cli.output
    assert git(root, "rev-parse", "autopilot/code_digits^{tree}").strip() == code["base_tree"]
    assert "run 00002's patch reverted" in (root / "runs" / "code_digits" / "labbook.md").read_text()


def test_a_patch_touching_the_evaluator_is_rejected_and_a_config_run_proposes(root):
    diff = edit_patch(root, EVALUATE, 'correct = (predict(x, mean, std, layers) == y).astype(float)',
                      'correct = np.ones(len(y))')
    with ScriptedLLM([reply(answer(diff))]) as server:
        study = study_at(root, server.url)
        run_loop(study, "00002", upto="guard")
    proposal = read(root, "00002", "proposal.json")
    assert proposal["policy"] == "tpe" and proposal["fallback_from"]["policy"] == "code:llm:openai"
    assert "sealed evaluator" in proposal["fallback_from"]["reason"]
    assert proposal["code"]["patched"] is False and proposal["code"]["attempts"][0]["outcome"] == "rejected"
    rejected = read(root, "00002", "rejected_proposal.json")
    assert rejected["violations"][0]["rule"] == "protected" and rejected["policy"] == "code:llm:openai"
    assert rejected["code"]["diff"].count("correct = np.ones(len(y))") == 1 and rejected["rationale"]
    commit = proposal["code"]["attempts"][0]["commit"]
    assert "correct = np.ones(len(y))" in git(root, "show", commit)  # kept on the branch, never trained
    assert read(root, "00002", "config.json")["code"]["patched"] is False


AGENT = """
import json, os, pathlib, sys
prompt = sys.stdin.read()
train = pathlib.Path("examples/code_mode/train.py")
train.write_text(train.read_text().replace("b = np.zeros(10)", "b = np.zeros(10)  # bias"))
pathlib.Path("NOTES.md").write_text("the agent was here\\n")      # outside the allow-list
print("working...")
print(json.dumps({"rationale": "The bias starts at zero which is fine, and notes help the next person reading it.",
                  "hypothesis": "val_accuracy stays the same within the seed noise.",
                  "saw_key": "OPENAI_API_KEY" in os.environ, "saw_prompt": "examples/code_mode/train.py" in prompt}))
"""


def test_an_agent_cli_editing_outside_the_allow_list_is_caught_by_the_computed_diff(root, tmp_path, monkeypatch):
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-seen")
    config = load_study(root).config
    study = load_study(root, llm={**config["llm"], "backend": "command", "command": [sys.executable, str(agent)]})
    study.freeze()
    run_loop(study, "00002", upto="propose")
    proposal = read(root, "00002", "proposal.json")
    assert proposal["fallback_from"]["policy"] == "code:llm:command"
    assert "NOTES.md is not in code_mode.files" in proposal["fallback_from"]["reason"]
    assert read(root, "00002", "rejected_proposal.json")["code"]["attempts"][0]["outcome"] == "rejected"
    llm = root / "runs" / "code_digits" / "00002" / "llm"
    said = json.loads((llm / "coder-1.response.txt").read_text().splitlines()[-1])
    assert said["saw_prompt"] and said["saw_key"] is False  # the prompt on stdin; no API key in its environment
    meta = fsio.read_json(llm / "coder-1.meta.json")
    assert meta["backend"] == "command" and meta["sandbox"]["purpose"] == "agent CLI"
    assert not (root / "NOTES.md").exists()  # it edited its worktree, never the project


def test_an_endless_loop_is_killed_at_the_check_limit(root):
    diff = edit_patch(root, TRAIN, "    run.begin_training(", "    while True:\n        pass\n    run.begin_training(")
    with ScriptedLLM([reply(answer(diff))]) as server:
        study = study_at(root, server.url, max_attempts=1, check_seconds=3)
        run_loop(study, "00002", upto="propose")
    attempt = read(root, "00002", "proposal.json")["code"]["attempts"][0]
    assert attempt["outcome"] == "checks_failed" and "killed after the limit of 3 s" in attempt["reason"]
    assert read(root, "00002", "proposal.json")["policy"] == "tpe"


def test_the_studys_own_tests_run_on_the_patched_tree(root):
    diff = edit_patch(root, TRAIN, "DATA = Path(", "# TODO: BROKEN\nDATA = Path(")
    tests = ["python", "-c", "import pathlib, sys; text = pathlib.Path('examples/code_mode/train.py').read_text(); "
                             "sys.exit('test_train: BROKEN found' if 'BROKEN' in text else 0)"]
    with ScriptedLLM([reply(answer(diff))]) as server:
        study = study_at(root, server.url, max_attempts=1, test_command=tests)
        run_loop(study, "00002", upto="propose")
    attempt = read(root, "00002", "proposal.json")["code"]["attempts"][0]
    assert attempt["outcome"] == "checks_failed" and "the tests check failed" in attempt["reason"]
    assert "test_train: BROKEN found" in attempt["reason"]
    assert (root / "runs" / "code_digits" / "00002" / "code" / "attempt-1" / "tests.log").exists()


@pytest.mark.skipif(not CAPS.network_namespace, reason=f"no network namespace here: {CAPS.why_not}")
def test_a_patch_that_opens_a_socket_fails_without_network(root):
    diff = edit_patch(root, TRAIN, "DATA = Path(", 'import socket\nsocket.create_connection(("192.0.2.1", 443), '
                                                  'timeout=5)\n\nDATA = Path(')
    with ScriptedLLM([reply(answer(diff))]) as server:
        study = study_at(root, server.url, max_attempts=1)
        run_loop(study, "00002", upto="propose")
    attempt = read(root, "00002", "proposal.json")["code"]["attempts"][0]
    assert attempt["outcome"] == "checks_failed" and "Network is unreachable" in attempt["reason"]


PEEK = """    try:
        seen = sorted(os.listdir("data/code_digits/holdout"))
        labels = np.load("data/code_digits/holdout/val.npz")["y"].tolist()
    except OSError as e:
        labels = e.strerror
    print("holdout:", seen, "labels:", labels)
    run.begin_training("""


@pytest.mark.skipif(not CAPS.mounts, reason=f"no mount namespace here: {CAPS.why_not}")
def test_a_patch_that_reads_the_validation_labels_gets_nothing(root):
    diff = edit_patch(root, TRAIN, "from pathlib import Path\n", "import os\nfrom pathlib import Path\n",
                      "    run.begin_training(", PEEK)
    with ScriptedLLM([reply(answer(diff))]) as server:
        study = study_at(root, server.url)
        run_loop(study, "00002", upto="judge")
    log = (root / "runs" / "code_digits" / "00002" / "train.log").read_text()
    assert "holdout: [] labels: No such file or directory" in log
    summary = read(root, "00002", "trainer_summary.json")
    assert summary["status"] == "completed" and summary["metric"]["value"] > 0.5  # the evaluator read them
    # what a trainer writes into its own folder afterwards does not count: the kept evaluation does
    forged = {**summary, "metric": {**summary["metric"], "value": 1.0}}
    fsio.atomic_write_json(root / "runs" / "code_digits" / "00002" / "trainer_summary.json", forged)
    from autopilot.train.runner import train_run

    assert train_run(study, "00002")[0]["metric"]["value"] == summary["metric"]["value"]


def test_the_repair_loop_fixes_a_syntax_error_and_the_guard_checks_the_diff(root):
    broken = edit_patch(root, TRAIN, "    b = np.zeros(10)\n", "    b = np.zeros(10\n")
    fixed = edit_patch(root, TRAIN, *MINIBATCH)
    with ScriptedLLM([reply(answer(broken)), reply(answer(fixed))]) as server:
        study = study_at(root, server.url)
        run_loop(study, "00002", upto="propose")
        second = prompt_of(server.requests[1]["body"])
    code = read(root, "00002", "proposal.json")["code"]
    assert [a["outcome"] for a in code["attempts"]] == ["checks_failed", "accepted"]
    assert "SyntaxError" in code["attempts"][0]["reason"] and "SyntaxError" in second and "b = np.zeros(10" in second
    branch = git(root, "log", "--format=%H", "autopilot/code_digits")
    assert all(a["commit"] in branch for a in code["attempts"])  # every attempt is on the branch
    llm = root / "runs" / "code_digits" / "00002" / "llm"
    assert (llm / "coder-1.prompt.md").exists() and (llm / "coder-2.prompt.md").exists()
    # the guard checks the code against git itself: a diff edited after the fact is refused
    path = root / "runs" / "code_digits" / "00002" / "proposal.json"
    proposal = fsio.read_json(path)
    fsio.atomic_write_json(path, {**proposal, "code": {**proposal["code"], "diff": proposal["code"]["diff"] + "+x\n"}})
    from autopilot.guard import guard_run

    with pytest.raises(GuardRejected, match="not the diff between its base and its commit"):
        guard_run(study, "00002")
    shown = CliRunner().invoke(main, ["--root", str(root), "code", "show", "00002", "--study", "code_digits"])
    assert shown.exit_code == 0 and "attempt 1: checks_failed" in shown.output and "SyntaxError" in shown.output


def test_a_dry_run_of_a_code_run_shows_the_coders_prompt_and_writes_nothing(root):
    tip = git(root, "rev-parse", "autopilot/code_digits")
    result = CliRunner().invoke(main, ["--root", str(root), "propose", "--dry-run", "--study", "code_digits"])
    assert result.exit_code == 0, result.output
    assert "===== coder-1 prompt =====" in result.output and "## The files you may change" in result.output
    assert "### examples/code_mode/train.py" in result.output and '"rule": "dry_run"' in result.output
    assert not (root / "runs" / "code_digits" / "00002").exists()
    assert git(root, "rev-parse", "autopilot/code_digits") == tip


def test_approval_parks_the_patch_while_config_runs_go_on(root):
    diff = edit_patch(root, TRAIN, *MINIBATCH)
    cli = ["--root", str(root)]
    with ScriptedLLM([reply(answer(diff))]) as server:
        study = study_at(root, server.url, approval="required")
        run_loop(study, "00002", upto="guard")
        assert len(server.requests) == 1
        proposal = read(root, "00002", "proposal.json")
        assert proposal["policy"] == "tpe" and proposal["fallback_from"]["violations"][0]["rule"] == "approval"
        pending = read(root, "pending", "00002.json")
        parked = read(root, "00002", "rejected_proposal.json")["code"]
        assert pending["state"] == "pending" and pending["commit"] == parked["commit"]
        assert (root / "runs/code_digits/pending/00002.diff").read_text() == parked["diff"]
        result = CliRunner().invoke(main, [*cli, "approve", "00002", "--study", "code_digits", "--note", "ok"])
        assert result.exit_code == 0, result.output
        again = CliRunner().invoke(main, [*cli, "reject", "00002", "--study", "code_digits"])
        assert again.exit_code == 1 and "approved already" in again.output
        run_loop(study, "00003", upto="guard")  # a config run
        run_loop(study, "00004", upto="guard")  # the next code run trains the approved patch, no LLM asked
        assert len(server.requests) == 1
    fourth = read(root, "00004", "proposal.json")
    assert fourth["policy"] == "code:approved" and fourth["code"]["source"] == "approved:00002"
    assert read(root, "pending", "00002.json")["state"] == "used"
    assert read(root, "pending", "00002.json")["used_by"] == "00004"
    assert read(root, "00004", "config.json")["code"]["patched"] is True


def test_a_project_that_is_not_a_git_checkout_gets_a_repository_of_its_own(tmp_path):
    root = code_project(tmp_path / "plain", git=False)
    study = load_study(root)
    study.freeze()
    run_loop(study, "00001", upto="guard")
    repo = open_repo(study)
    assert repo.own and repo.git_dir == root / "runs" / "code_digits" / "code.git"
    files = repo.git("ls-tree", "-r", "--name-only", read(root, "00001", "config.json")["code"]["commit"]).split()
    assert TRAIN in files and EVALUATE in files and not any(f.startswith(("data/", "runs/")) for f in files)


@pytest.mark.parametrize(("change", "message"), [
    ({"task": "cnn_digits"}, "code_mode needs task `command`"),
    ({"code_mode": {"enabled": True, "files": [], "evaluator": {"command": ["x"]}}}, "code_mode.files is empty"),
    ({"code_mode": {"enabled": True, "files": ["t.py"]}}, "code_mode.evaluator.command is missing"),
])
def test_a_code_mode_study_is_checked_before_anything_runs(change, message):
    config = {**code_study_config(), **change}
    with pytest.raises(ConfigError, match=message):
        check_config(config, "test")
