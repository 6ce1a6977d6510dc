"""Built-in policies: TPE rebuilt from the ledger alone, random, manual, and the fallback."""

import json
from pathlib import Path

import pytest
from helpers import FAST_STUDY  # noqa: E402

from autopilot import fsio, ledger
from autopilot.journal.synthetic import write_runs
from autopilot.paths import Project
from autopilot.propose.decide import propose_run
from autopilot.propose.policies import Context
from autopilot.propose.policies.optimizer import propose_random, propose_tpe
from autopilot.study import Study, check_config


@pytest.fixture
def study(tmp_path: Path) -> Study:
    config = {"study": "p", "task": "cnn_digits", "metric": {"name": "val_accuracy", "goal": "maximize"},
              "baseline": FAST_STUDY["baseline"], "search_space": FAST_STUDY["search_space"],
              "tpe": {"n_startup_trials": 2}}
    s = Study(Project(tmp_path), check_config(config, "test"))
    write_runs(s, 12, seed=3)
    return s


def context(study: Study, run_id: str = "00013") -> Context:
    history = ledger.read_history(study.paths)
    return Context(study, run_id, history, ledger.best_entry(history))


def test_tpe_depends_only_on_the_ledger(study):
    first = propose_tpe(context(study))
    again = propose_tpe(context(study))
    assert first["overrides"] == again["overrides"]  # no hidden state: same files, same point
    assert "TPE" in first["rationale"] and "12 finished run" in first["rationale"]
    lines = study.paths.history.read_text().splitlines()
    study.paths.history.write_text("\n".join(lines[:6]) + "\n")
    fewer = propose_tpe(context(study))
    assert "6 finished run" in fewer["rationale"]


def test_tpe_points_stay_in_the_space(study):
    from autopilot import guard
    for i in range(13, 23):
        p = propose_tpe(context(study, f"{i:05d}"))
        assert guard.check_overrides(p["overrides"], study.search_space) == []


def test_random_policy(study):
    p = propose_random(context(study))
    assert p["rationale"].startswith("Random search")


def test_manual_file_is_merged_archived_and_removed(study):
    study.paths.next_config.write_text(json.dumps({"overrides": {"lr": 0.01},
                                                   "rationale": "Try a larger step size than TPE has.",
                                                   "hypothesis": "Faster convergence in 2 epochs."}))
    proposal = propose_run(study, "00013")
    assert proposal["policy"] == "manual" and proposal["overrides"] == {"lr": 0.01}
    assert not study.paths.next_config.exists()
    assert json.loads(study.paths.run("00013").manual_input.read_text())["overrides"] == {"lr": 0.01}


def test_rejected_manual_proposal_falls_back_with_the_reason(study):
    study.paths.next_config.write_text(json.dumps({"lr": 5.0, "eval_split": "test"}))
    proposal = propose_run(study, "00013")
    run = study.paths.run("00013")
    assert proposal["policy"] == "tpe"
    reason = proposal["fallback_from"]["reason"]
    assert proposal["fallback_from"]["policy"] == "manual"
    assert "eval_split" in reason and "lr" in reason
    rejected = fsio.read_json(run.rejected_proposal)
    assert {v["rule"] for v in rejected["violations"]} == {"whitelist", "range"}
    assert run.manual_input.exists() and not study.paths.next_config.exists()


def test_first_run_is_the_baseline(tmp_path):
    config = {"study": "b", "task": "cnn_digits", "metric": {"name": "val_accuracy", "goal": "maximize"},
              "baseline": FAST_STUDY["baseline"], "search_space": FAST_STUDY["search_space"]}
    s = Study(Project(tmp_path), check_config(config, "test"))
    proposal = propose_run(s, "00001")
    assert proposal["policy"] == "baseline" and proposal["overrides"] == {}
