"""The guard: deny by default, each key within its type and range, the quality gate, budgets."""

from pathlib import Path

import pytest

from autopilot import fsio, guard, holds
from autopilot.errors import LoopHalted
from autopilot.paths import Project
from autopilot.study import Study

SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
    "epochs": {"type": "int", "low": 1, "high": 20},
    "width": {"type": "categorical", "choices": [8, 16, 32]},
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
    "flag": {"type": "categorical", "choices": [True, False]},
}


@pytest.mark.parametrize("overrides, rule", [
    ({"eval_split": "test"}, "whitelist"),          # reaching for the evaluation
    ({"lr": 0.5}, "range"),
    ({"lr": float("nan")}, "range"),
    ({"lr": "0.01"}, "type"),
    ({"lr": True}, "type"),
    ({"epochs": 2.5}, "type"),
    ({"epochs": 0}, "range"),
    ({"width": 12}, "choices"),
    ({"width": "16"}, "choices"),
    ({"optimizer": "lion"}, "choices"),
    ({"flag": 1}, "choices"),                        # 1 is not True
])
def test_each_violation_is_named(overrides, rule):
    found = guard.check_overrides(overrides, SPACE)
    assert [v["rule"] for v in found] == [rule]
    assert next(iter(overrides)) in found[0]["message"]


def test_values_inside_the_space_pass_and_are_normalized():
    overrides = {"lr": 0.01, "epochs": 3.0, "width": 16.0, "optimizer": "sgd", "flag": False}
    assert guard.check_overrides(overrides, SPACE) == []
    norm = guard.normalize(overrides, SPACE)
    assert norm == {"lr": 0.01, "epochs": 3, "width": 16, "optimizer": "sgd", "flag": False}
    assert type(norm["epochs"]) is int and type(norm["width"]) is int


def proposal(**kw):
    base = {"run_id": "00002", "policy": "tpe", "overrides": {"lr": 0.01},
            "rationale": "The loss curve was still falling at the end of run 1.",
            "hypothesis": "Accuracy rises by a point.",
            "housekeeping": {"new_todos": [], "notes": "", "resolved_todos": []},
            "mentor": None, "fallback_from": None, "created_at": "2026-01-01T00:00:00+00:00"}
    return {**base, **kw}


@pytest.fixture
def study(tmp_path: Path) -> Study:
    config = {"study": "s", "task": "cnn_digits", "metric": {"name": "val_accuracy", "goal": "maximize"},
              "baseline": {"lr": 0.003, "epochs": 2, "width": 8, "optimizer": "adam", "flag": True},
              "search_space": SPACE, "budget": {"max_runs": 3, "max_total_seconds": 100}}
    from autopilot.study import check_config
    return Study(Project(tmp_path), check_config(config, "test"))


def test_quality_gate_rejects_empty_reasons(study):
    found = guard.check_proposal(proposal(rationale="because", hypothesis=""), study)
    assert {v["key"] for v in found} == {"rationale", "hypothesis"}


def test_schema_violations_come_first(study):
    found = guard.check_proposal(proposal(extra="x"), study)
    assert found and found[0]["rule"] == "schema"


def test_unbounded_strings_are_rejected_by_the_schema(study):
    found = guard.check_proposal(proposal(rationale="x" * 5000), study)
    assert found[0]["rule"] == "schema"


def test_budgets_and_kill_switch_halt_the_loop(study):
    holds.ensure_may_run(study, [])
    with pytest.raises(LoopHalted, match="run budget"):
        holds.ensure_may_run(study, [{"train_seconds": 1}] * 3)
    with pytest.raises(LoopHalted, match="time budget"):
        holds.ensure_may_run(study, [{"train_seconds": 60}, {"train_seconds": 41}])
    stop = study.project.control_file("stop")
    stop.parent.mkdir()
    stop.touch()
    with pytest.raises(LoopHalted, match="stop requested"):
        holds.ensure_may_run(study, [])


@pytest.mark.parametrize("overrides, said", [
    ({"lr": float("nan")}, "got NaN"),
    ({"lr": float("inf")}, "got Infinity"),
    ({"epochs": float("-inf")}, "got -Infinity"),
    ({"lr": 10**400}, "got an integer of about 401 digits"),
    ({"epochs": -(10**4000)}, "got a negative integer of about 4001 digits"),
    ({"width": 10**309}, "must be one of"),
])
def test_numbers_json_cannot_hold_are_rejected_with_a_reason_that_can_be_written(overrides, said):
    found = guard.check_overrides(overrides, SPACE)
    assert [v["rule"] for v in found] == ["range" if "got" in said else "choices"] and said in found[0]["message"]
    fsio.dumps_json(found)  # NaN and endless integers are spelled as strings: the reason can be written down
    assert isinstance(found[0]["value"], str) or found[0]["value"] == 10**309


def test_json_safe_spells_out_what_json_cannot_hold():
    value = {"a": [float("nan"), 1.5, 10**400, True], "b": float("-inf"), "c": "text"}
    assert guard.json_safe(value) == {"a": ["NaN", 1.5, "an integer of about 401 digits", True], "b": "-Infinity",
                                      "c": "text"}
