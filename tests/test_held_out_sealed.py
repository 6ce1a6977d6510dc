"""The champion's held-out test score is never an input of a policy or of the judge (feature J7): no file they read
holds it, and nothing they are given contains it."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from registry_study import add_run, load_study, make_registry_project

from autopilot import fsio
from autopilot.judge.verdicts import judge_run
from autopilot.propose import decide
from autopilot.registry import champion, store

READS: list[Path] = []
RECORDING = [False]


def audit(event: str, args: tuple) -> None:
    """Every file opened for reading while RECORDING (Python's audit hooks see every open, os.open included)."""
    if not RECORDING[0] or event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    mode, flags = args[1], args[2] or 0
    writing = (isinstance(mode, str) and not any(c in mode for c in "r+")) or (
        mode is None and flags & os.O_ACCMODE == os.O_WRONLY)
    if not writing:
        READS.append(Path(os.fsdecode(args[0])).resolve())


sys.addaudithook(audit)  # cannot be removed: it records only while a test asks


@contextmanager
def reads():
    READS.clear()
    RECORDING[0] = True
    try:
        yield READS
    finally:
        RECORDING[0] = False


AGENT = """
import json, sys
prompt = sys.stdin.read()
open(sys.argv[1], "a").write(prompt)
print(json.dumps({"overrides": {"quality": 0.62},
                  "rationale": "Lower quality values have not been tried yet and the space is barely explored so far.",
                  "hypothesis": "val_accuracy changes by less than the noise floor of the study.",
                  "housekeeping": {"new_todos": [], "notes": "only the upper half of quality was explored yet",
                                   "resolved_todos": []}}))
"""


@pytest.fixture
def sealed(tmp_path):
    """A study with two champions (each scored once on its test split) and run 00003 trained but not judged."""
    root = tmp_path / "project"
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    llm = {"backend": "command", "command": [sys.executable, str(agent), str(tmp_path / "prompts.txt")]}
    make_registry_project(root, llm=llm)
    add_run(root, "00001", "baseline", 0.80, seeds=2)
    champion.settle(load_study(root))
    add_run(root, "00002", "improved", 0.85, seeds=2)
    champion.settle(load_study(root))
    run = add_run(root, "00003", "unused", 0.83, seeds=1, journal=False)
    run.verdict.unlink()
    fsio.atomic_write_json(run.config, {**fsio.read_json(run.config), "hparams": {"quality": 0.75},
                                        "overrides": {"quality": 0.75}})
    values = [t["metric"]["value"] for t in store.held_out_scores(load_study(root).models).values()]
    assert len(values) == 2 and all(v is not None for v in values)
    return root, tmp_path / "prompts.txt", [f"{v:.6f}" for v in values] + [repr(v) for v in values]


def no_test_score_among(paths: list[Path], root: Path, needles: list[str]) -> None:
    models = (root / "models").resolve()
    assert any(p.name == "history.jsonl" for p in paths), "the audit hook saw no read of the ledger"
    for path in set(paths):
        assert path.name not in ("champion.json", "test_scores.jsonl", "test_summary.json", "best.json"), path
        assert not path.is_relative_to(models) or path == models / "digits_cnn" / "history.jsonl", path
        if path.is_file():
            text = path.read_text(errors="replace")
            assert not any(n in text for n in needles), f"{path} holds a held-out test score"


@pytest.mark.parametrize("policy", ["tpe", "random", "manual", "llm", "hybrid"])
def test_no_policy_reads_or_is_given_the_held_out_test_score(sealed, policy, monkeypatch):
    root, prompts, needles = sealed
    config = root / "config" / "config.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "policy": policy}))
    if policy == "manual":
        fsio.atomic_write_json(root / "runs" / "digits_cnn" / "next_config.json", {
            "overrides": {"quality": 0.66}, "rationale": "a person wants to see a lower quality value",
            "hypothesis": "the metric drops a little"})
    study = load_study(root)
    contexts = []
    original = decide.Context
    monkeypatch.setattr(decide, "Context", lambda *a, **k: contexts.append(original(*a, **k)) or contexts[-1])
    with reads() as opened:
        proposal, exchanges = decide.preview_run(study, "00004")
    assert contexts, "the policy's context was not seen"
    given = repr(contexts) + json.dumps(proposal) + json.dumps(exchanges, default=str)
    assert not any(n in given for n in needles)
    if policy == "llm":
        assert proposal["policy"] == "llm:command"
    if proposal["policy"].startswith(("llm", "hybrid:llm")):
        assert prompts.exists() and not any(n in prompts.read_text() for n in needles)
    no_test_score_among(opened, root, needles)


def test_the_judge_neither_reads_nor_records_the_held_out_test_score(sealed):
    root, _, needles = sealed
    study = load_study(root)
    with reads() as opened:
        verdict = judge_run(study, "00003")
    assert verdict["compared_to"] == "00002"  # judged against the champion, on validation seeds only
    assert not any(n in json.dumps(verdict) for n in needles)
    no_test_score_among(opened, root, needles)
