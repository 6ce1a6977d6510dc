"""The curriculum through the loop with the tiny model: binary moves up from level 1 once mastered, and a second
workflow invocation resumes at the same levels, with the same held-out sets and batch numbers.

STAND-IN GRADER. The tiny test model (2 layers, hidden 32) learns the format of binary arithmetic in seconds but
not the arithmetic: trained for minutes, it still answered none of level 1's held-out problems (which it never
saw) right. So this test replaces binary's exact grader by `stand_in_grade`, which counts an answer right when it
is a binary numeral, and nothing else changes: the trainer generates the answers of the held-out sets, the judge
grades them with the skill's grader (here the stand-in), and the curriculum decides on those accuracies. What is
shown is the curriculum's machinery end to end (batches, evaluations, the 80%-over-3 rule, restarts), not that
the tiny model learns binary arithmetic. The README says the same.

The second invocation is a new Snakemake process with a new plan; its jobs may reuse the warm command server and
trainer pool, whose children read every state from disk. A fresh interpreter resuming from curriculum.json alone
is tested in tests/test_curriculum_state.py.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import shutil

import pytest
from click.testing import CliRunner
from continual_helpers import (
    STUDY,
    build_binary_model,
    completions,
    continual_config,
    level_one_problems,
    load_study,
    write_jsonl,
)
from helpers import make_project, snakemake

from autopilot import fsio
from autopilot.cli import main
from autopilot.continual import start
from autopilot.curriculum import batches, state
from autopilot.ingest import queue


def status_text(root) -> str:
    return CliRunner().invoke(main, ["--root", str(root), "status", "--study", STUDY], env={"COLUMNS": "200"}).output


def stand_in_grade(expected: str, output: str) -> bool:
    """STAND-IN for binary.grade in this test only: right when the answer is a binary numeral (see above)."""
    return re.match(r"\s*[01]+(\s|$)", output) is not None


SITECUSTOMIZE = f'''"""STAND-IN GRADER of tests/test_curriculum_loop.py (its docstring says why), for the workflow."""
import re

import autopilot.curriculum.binary as _binary

{inspect.getsource(stand_in_grade)}
_binary.grade = stand_in_grade
'''


@pytest.mark.slow
def test_binary_advances_from_level_one_and_a_restart_resumes_at_the_same_levels(tmp_path, monkeypatch):
    root = make_project(tmp_path / "p", **continual_config(iterations=2, curriculum={
        "enabled": True, "skills": ["binary"], "batch_size": 64, "eval_size": 8, "min_queue": 1}))
    shutil.copytree(build_binary_model(tmp_path / "tiny-lm"), root / "models" / "tiny-lm")
    write_jsonl(root / "data" / "val.jsonl", completions(level_one_problems()[:16]))
    (tmp_path / "stand_in").mkdir()
    (tmp_path / "stand_in" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "stand_in"),
                                                                  os.environ.get("PYTHONPATH")])))
    snakemake(root)  # two runs: two evaluations at level 1, each on a batch generated because the queue was empty
    study = load_study(root)
    before = state.load(study)["skills"]["binary"]
    assert before["level"] == 1 and len(before["evaluations"]) == 2 and before["batches"] == 2
    held = hashlib.sha256(study.paths.held_out("binary", 1).read_bytes()).hexdigest()
    assert "level 1 of 5" in status_text(root)

    snakemake(root, "--config", "iterations=1")  # the restart: a new invocation, one more run

    after = state.load(study)["skills"]["binary"]
    accuracies = [e["accuracy"] for e in after["evaluations"]]
    assert [e["level"] for e in after["evaluations"]] == [1, 1, 1], after
    assert [e["run_id"] for e in after["evaluations"]] == ["00001", "00002", "00003"]
    assert after["advances"][0]["run_id"] == "00003" and after["advances"][0]["accuracies"] == accuracies
    assert sum(accuracies) / 3 >= 0.8 and after["level"] == 2  # the window spanned the restart
    assert hashlib.sha256(study.paths.held_out("binary", 1).read_bytes()).hexdigest() == held
    runs = root / "runs" / STUDY
    trained = [fsio.read_json(runs / f"0000{k}" / "config.json")["data"]["train_file"] for k in (1, 2, 3)]
    assert [t.rsplit("-", 2)[1:] for t in trained] == [["L01", "b00001.jsonl"], ["L01", "b00002.jsonl"],
                                                       ["L01", "b00003.jsonl"]]
    assert [s["name"] for s in fsio.read_json(runs / "00003" / "config.json")["data"]["eval_sets"]] == [
        "val", "binary@L1"]

    # what the next run's propose and guard do: a batch at level 2 replaying level 1, measured on both levels
    [outcome] = batches.top_up(study)
    assert outcome.status == "accepted" and outcome.source.endswith(f"{STUDY}-binary-L02-b00004.jsonl")
    [entry] = queue.entries(study.project.queue_dir("low"))
    levels = [r["id"].split("-")[1] for r in fsio.iter_jsonl(entry)]
    assert levels.count("L2") == 51 and levels.count("L1") == 13  # replay_share 0.2 of 64 from level 1
    sets = start.eval_sets(study, start.curriculum_levels(study))
    assert [s["name"] for s in sets] == ["val", "binary@L1", "binary@L2"]
    status = status_text(root)
    assert "curriculum binary" in status and "level 2 of 5" in status
    report = CliRunner().invoke(main, ["--root", str(root), "report", "--study", STUDY])
    assert report.exit_code == 0, report.output
    page = (runs / "report.html").read_text()
    at = page.index('id="curriculum-binary"')
    skill = page[at:page.index("</div>", at)]
    assert "level 2 of 5" in skill and skill.count('<td class="num">1</td>') == 3  # the trend: three at level 1
