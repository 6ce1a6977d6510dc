"""Generations: the plan lays runs out in generations, policies propose a generation's distinct points from the
same history, and every run of a generation is judged against the best run before it, in any finishing order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import FAST_STUDY  # noqa: E402
from seed_script import ScriptedTrainer

from autopilot import fsio, guard, ledger
from autopilot.clock import now_iso
from autopilot.journal import record
from autopilot.journal.synthetic import write_runs
from autopilot.judge.verdicts import judge_run
from autopilot.ledger import Slot
from autopilot.paths import Project
from autopilot.propose.decide import propose_run
from autopilot.study import Study, check_config
from autopilot.train import runner
from autopilot.workflow import plan
from autopilot.workflow.plan import Plan, plan_runs


def make_study(root: Path, **overrides) -> Study:
    config = {"study": "g", "task": "cnn_digits", "metric": {"name": "val_accuracy", "goal": "maximize"},
              "baseline": FAST_STUDY["baseline"], "search_space": FAST_STUDY["search_space"],
              "tpe": {"n_startup_trials": 2}, **overrides}
    study = Study(Project(root), check_config(config, "test"))
    study.freeze()
    return study


@pytest.fixture(autouse=True)
def no_plan_in_env(monkeypatch):
    monkeypatch.delenv(plan.ENV_VAR, raising=False)


# --- the plan ---------------------------------------------------------------------------------------------
def test_a_new_study_trains_the_baseline_alone_then_generations_of_k(tmp_path):
    p = plan_runs(make_study(tmp_path, generation_size=3), 8)
    assert p.groups == [["00001"], ["00002", "00003", "00004"], ["00005", "00006", "00007"], ["00008"]]
    assert [p.slot(r) for r in ("00001", "00003", "00008")] == [Slot(1, 0), Slot(2, 1), Slot(4, 0)]
    assert p.previous("00001") == [] and p.previous("00006") == ["00002", "00003", "00004"]
    assert p.constraint == "|".join(f"{i:05d}" for i in range(1, 9))


def test_generations_continue_after_the_history_and_one_run_each_is_the_old_loop(tmp_path):
    study = make_study(tmp_path, generation_size=2)
    write_runs(study, 5)  # runs journaled before generations existed: each is its own generation
    p = plan_runs(study, 5)
    assert p.groups == [["00006", "00007"], ["00008", "00009"], ["00010"]]
    assert p.slot("00006") == Slot(6, 0) and p.slot("00010") == Slot(8, 0)
    one = plan_runs(make_study(tmp_path, generation_size=1), 3)
    assert one.groups == [["00006"], ["00007"], ["00008"]] and one.previous("00007") == ["00006"]


def test_an_unfinished_run_keeps_the_generation_its_proposal_records(tmp_path):
    study = make_study(tmp_path, generation_size=3)
    write_runs(study, 3)
    for run_id, slot in (("00004", (4, 0)), ("00006", (4, 2))):  # 00005 was killed before it proposed
        study.paths.run(run_id).dir.mkdir()
        fsio.atomic_write_json(study.paths.run(run_id).proposal, {"generation": slot[0], "generation_index": slot[1]})
    study.paths.run("00005").dir.mkdir()
    p = plan_runs(study, 5)
    assert p.groups == [["00004", "00005", "00006"], ["00007", "00008"]]  # 00005 keeps its place in generation 4
    assert p.slot("00006") == Slot(4, 2) and p.slot("00005") == Slot(4, 1) and p.slot("00007") == Slot(5, 0)


def test_a_place_killed_before_its_folder_existed_keeps_its_run_id_and_place(tmp_path):
    study = make_study(tmp_path, generation_size=3)
    write_runs(study, 1)
    for run_id, index in (("00003", 1), ("00004", 2)):  # with two jobs at once, 00002 had not even started
        study.paths.run(run_id).dir.mkdir()
        fsio.atomic_write_json(study.paths.run(run_id).proposal, {"generation": 2, "generation_index": index})
    p = plan_runs(study, 4)
    assert p.groups == [["00002", "00003", "00004"], ["00005"]]
    assert [p.slot(r) for r in ("00002", "00003", "00004", "00005")] == [Slot(2, 0), Slot(2, 1), Slot(2, 2),
                                                                           Slot(3, 0)]
    assert plan_runs(study, 2).groups == [["00002", "00003"]]  # fewer iterations: the earliest places first


def test_the_plan_reaches_jobs_through_the_environment(tmp_path):
    study = make_study(tmp_path, generation_size=2)
    p = plan_runs(study, 3)
    p.export()
    assert Plan.from_env() == p and p.slot("00003") == Slot(2, 1)


def test_a_run_proposed_by_hand_keeps_its_recorded_place_or_gets_a_generation_of_its_own(tmp_path):
    study = make_study(tmp_path, generation_size=2)
    write_runs(study, 4)
    assert propose_run(study, "00005")["generation"] == 5  # outside the workflow: a generation after the history
    assert propose_run(study, "00006", Slot(6, 1))["generation_index"] == 1
    run = study.paths.run("00006")
    run.proposal.unlink()
    fsio.atomic_write_json(run.proposal, {"generation": 6, "generation_index": 1})
    assert ledger.slot_of(run, ledger.read_history(study.paths)) == Slot(6, 1)


def test_budget_and_kill_switch_still_cap_the_plan(tmp_path):
    study = make_study(tmp_path, generation_size=4, budget={"max_runs": 3})
    assert plan_runs(study, 8).groups == [["00001"], ["00002", "00003"]]
    study.project.control.mkdir()
    study.project.control_file("stop").touch()
    assert plan_runs(study, 8).run_ids == []


# --- proposals --------------------------------------------------------------------------------------------
def propose_generation(study: Study, first: int, k: int) -> list[dict]:
    runs = [f"{first + i:05d}" for i in range(k)]
    return [propose_run(study, r, Slot(first, i)) for i, r in enumerate(runs)]


@pytest.mark.parametrize("policy", ["tpe", "random"])
def test_a_generation_gets_distinct_points_and_records_its_place(tmp_path, policy):
    study = make_study(tmp_path, generation_size=4, policy=policy, tpe={"n_startup_trials": 2})
    write_runs(study, 12, seed=3)
    proposals = propose_generation(study, 13, 4)
    points = [json.dumps(p["overrides"], sort_keys=True) for p in proposals]
    assert len(set(points)) == 4
    assert [(p["generation"], p["generation_index"]) for p in proposals] == [(13, i) for i in range(4)]
    assert all(p["policy"] == policy for p in proposals)


def test_a_runs_proposal_does_not_depend_on_what_its_siblings_finished(tmp_path):
    study = make_study(tmp_path, generation_size=3)
    write_runs(study, 12, seed=3)
    before = propose_generation(study, 13, 3)
    # sibling 00013 finishes (judged, journaled) before 00015 is proposed again: 00015 must not see it
    fake_trained_run(study, "00013", [0.99, 0.99, 0.99], Slot(13, 0))
    judge_run(study, "00013")
    record.sync(study)
    assert any(e["run_id"] == "00013" for e in ledger.read_history(study.paths))
    again = propose_run(study, "00015")
    assert again["overrides"] == before[2]["overrides"]


def test_the_first_run_of_a_generation_proposes_what_a_lone_run_would(tmp_path):
    study = make_study(tmp_path, generation_size=3)
    write_runs(study, 12, seed=3)
    alone = propose_run(study, "00013")  # no plan: its own generation, place 0
    together = propose_generation(study, 13, 3)[0]
    assert alone["overrides"] == together["overrides"]


def test_next_config_is_taken_by_the_first_run_of_a_generation_only(tmp_path):
    study = make_study(tmp_path, generation_size=2)
    write_runs(study, 4)
    study.paths.next_config.write_text(json.dumps({"overrides": {"lr": 0.01}, "rationale": "a person wants this lr",
                                                   "hypothesis": "lr 0.01 trains faster"}))
    first, second = propose_generation(study, 5, 2)
    assert first["policy"] == "manual" and second["policy"] == "tpe"


def test_a_generation_with_no_incumbent_trains_one_baseline_not_k(tmp_path):
    study = make_study(tmp_path, generation_size=3)
    assert propose_run(study, "00001", Slot(1, 0))["policy"] == "baseline"
    fake_trained_run(study, "00001", [{"value": None, "status": "failed"}], Slot(1, 0))  # the baseline fails
    judge_run(study, "00001")
    record.sync(study)
    proposals = [propose_run(study, r, Slot(2, i)) for i, r in enumerate(("00002", "00003", "00004"))]
    assert [p["policy"] for p in proposals] == ["baseline", "tpe", "tpe"]  # the others explore
    for run_id, values, place in (("00004", [0.85], 2), ("00003", [0.95], 1), ("00002", [0.80, 0.81], 0)):
        fake_trained_run(study, run_id, values, Slot(2, place))  # judged and journaled in any finishing order
        judge_run(study, run_id)
        record.sync(study)
    verdicts = {e["run_id"]: e for e in ledger.read_history(study.paths)}
    assert [r for r, e in verdicts.items() if e["verdict"] == "baseline"] == ["00002"]
    assert len(verdicts["00002"]["seed_values"]) == 1 + study.settings.judge.noise_seeds
    for r in ("00003", "00004"):  # one seed each, compared with nothing (there was nothing to compare with)
        assert verdicts[r]["verdict"] == "inconclusive" and verdicts[r]["compared_to"] is None
        assert len(verdicts[r]["seed_values"]) == 1
    assert ledger.best_entry(list(verdicts.values()))["run_id"] == "00002"


# --- judging and journaling -------------------------------------------------------------------------------
def fake_trained_run(study: Study, run_id: str, seed_values: list, slot: Slot, topups=(0.80, 0.81)) -> None:
    """A run whose proposal and config are on disk, trained by the real runner on scripted seed values (cycled:
    the protocol asks for the seeds it needs): ready to be judged."""
    run = study.paths.run(run_id)
    if not run.proposal.exists():
        proposal = {"run_id": run_id, "policy": "tpe", "overrides": {"lr": 0.001 * (1 + int(run_id) % 7)},
                    "rationale": "a synthetic run of a generation", "hypothesis": "it may be better",
                    "housekeeping": {"new_todos": [], "notes": "", "resolved_todos": []}, "mentor": None,
                    "fallback_from": None, "created_at": now_iso(), "generation": slot.generation,
                    "generation_index": slot.index}
        fsio.atomic_write_json(run.proposal, proposal)
    fsio.atomic_write_json(run.config, guard.build_config(study, fsio.read_json(run.proposal)))
    runner.train_seeds(study, run_id, trainer=ScriptedTrainer({run_id: seed_values}, topups))


@pytest.fixture
def judged_generation(tmp_path) -> Study:
    """Baseline 00001 (generation 1); generation 2 = 00002..00004 where 00002 and 00003 both beat it."""
    study = make_study(tmp_path, generation_size=3)
    fake_trained_run(study, "00001", [0.80, 0.81, 0.79, 0.80], Slot(1, 0))
    judge_run(study, "00001")
    record.sync(study)
    fake_trained_run(study, "00002", [0.90, 0.91, 0.90], Slot(2, 0))
    fake_trained_run(study, "00003", [0.95, 0.96, 0.95], Slot(2, 1))
    fake_trained_run(study, "00004", [0.70], Slot(2, 2))
    return study


@pytest.mark.parametrize("order", [("00003", "00002", "00004"), ("00004", "00002", "00003")])
def test_each_run_of_a_generation_is_judged_against_the_best_before_it(judged_generation, order):
    study = judged_generation
    for run_id in order:  # each is judged and journaled before the next, as when they finish one by one
        judge_run(study, run_id)
        record.sync(study)
    verdicts = {r: fsio.read_json(study.paths.run(r).verdict) for r in ("00002", "00003", "00004")}
    assert {v["compared_to"] for v in verdicts.values()} == {"00001"}
    assert verdicts["00002"]["verdict"] == verdicts["00003"]["verdict"] == "improved"
    assert verdicts["00004"]["verdict"] == "regressed"
    # the best after the generation: the improved run with the best mean, whichever was journaled last
    history = ledger.read_history(study.paths)
    assert [e["run_id"] for e in history[1:]] == list(order)
    assert ledger.best_entry(history)["run_id"] == "00003"
    assert fsio.read_json(study.paths.best)["run_id"] == "00003"
    labbook = study.paths.labbook.read_text()
    assert labbook.count("## Generation 2: every run judged against run 00001") == 1
    assert "## Generation 1\n" in labbook and "### Run 00002: improved" in labbook


def test_the_next_generation_is_judged_against_the_generations_best(judged_generation):
    study = judged_generation
    for run_id in ("00002", "00003", "00004"):
        judge_run(study, run_id)
    record.sync(study)
    fake_trained_run(study, "00005", [0.96, 0.97, 0.965], Slot(3, 0))
    assert judge_run(study, "00005")["compared_to"] == "00003"


def test_best_entry_of_legacy_history_is_the_last_promoted_run():
    history = [{"run_id": "00001", "verdict": "baseline", "delta": None},
               {"run_id": "00002", "verdict": "improved", "delta": 0.05},
               {"run_id": "00003", "verdict": "improved", "delta": 0.01, "generation": None},
               {"run_id": "00004", "verdict": "regressed", "delta": -0.1}]
    assert ledger.best_entry(history)["run_id"] == "00003"
    assert ledger.best_entry(history[:1])["run_id"] == "00001" and ledger.best_entry([]) is None
