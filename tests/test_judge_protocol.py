"""The judge's seed protocol end to end on scripted seeds: the real runner decides which seeds to train, the
real judge writes verdict.json, the real journal writes the ledger (only the trainer process is scripted)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from seed_script import ScriptedTrainer

from autopilot import fsio, guard, ledger
from autopilot.errors import AutopilotError
from autopilot.journal import record
from autopilot.judge.verdicts import judge_run
from autopilot.paths import Project
from autopilot.study import Study, check_config
from autopilot.train import runner

JUDGE = {"noise_seeds": 4, "select_seeds": 2, "confirm_seeds": 3, "record_seeds": 2, "incumbent_seeds": 7,
         "noise_keys": ["lr"]}
BASE = [0.80, 0.81, 0.79, 0.80, 0.805]  # the baseline's five seeds: sd about 0.008


def make_study(root, generation_size: int = 1, **judge) -> Study:
    config = {"generation_size": generation_size, "study": "j", "task": "command",
              "trainer": {"command": ["python", "unused.py"]},
              "metric": {"name": "acc", "goal": "maximize"}, "baseline": {"lr": 0.01, "width": 8},
              "search_space": {"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
                               "width": {"type": "categorical", "choices": [8, 16]}},
              "judge": {**JUDGE, **judge}}
    study = Study(Project(root), check_config(config, "test"))
    study.paths.dir.mkdir(parents=True)
    return study


@pytest.fixture
def study(tmp_path) -> Study:
    return make_study(tmp_path)


def prepare(study: Study, run_id: str, overrides: dict, generation: int | None = None, place: int = 0) -> None:
    run = study.paths.run(run_id)
    run.dir.mkdir(parents=True, exist_ok=True)
    proposal = {"run_id": run_id, "policy": "tpe" if overrides else "baseline", "overrides": overrides,
                "rationale": "a scripted run of the protocol tests", "hypothesis": "scripted, none",
                "housekeeping": {"new_todos": [], "notes": "", "resolved_todos": []}, "mentor": None,
                "fallback_from": None, "created_at": "2026-01-01T00:00:00+00:00", "generation": generation,
                "generation_index": place}
    fsio.atomic_write_json(run.proposal, proposal)
    fsio.atomic_write_json(run.config, guard.build_config(study, proposal))


def trained(study: Study, run_id: str, values, overrides=None, topups=(0.80,), generation=None, place=0,
            judge=True) -> tuple[dict | None, ScriptedTrainer]:
    prepare(study, run_id, overrides if overrides is not None else {"width": 16}, generation, place)
    trainer = ScriptedTrainer({run_id: values}, topups)
    runner.train_seeds(study, run_id, trainer=trainer)
    if not judge:
        return None, trainer
    verdict = judge_run(study, run_id)
    record.sync(study)
    return verdict, trainer


def stages(verdict: dict) -> list[str]:
    return [s["stage"] for s in verdict["seeds"]]


def with_baseline(study: Study) -> dict:
    return trained(study, "00001", BASE, overrides={})[0]


def test_the_baseline_trains_its_noise_seeds_and_all_of_them_are_its_record(study):
    v = with_baseline(study)
    assert v["verdict"] == "baseline" and stages(v) == ["baseline"] * 5
    assert ledger.incumbent_values(ledger.read_history(study.paths), ledger.read_history(study.paths)[0]) == BASE
    assert fsio.read_json(study.paths.best)["seed_values"] == BASE


def test_a_candidate_that_loses_its_screen_stops_after_one_seed(tmp_path):
    study = make_study(tmp_path, incumbent_seeds=5)  # the baseline's record is full: no seed is added to it
    with_baseline(study)
    v, trainer = trained(study, "00002", [0.79])
    assert v["verdict"] == "inconclusive" and v["stage"] == "screen" and stages(v) == ["screen"]
    assert len(trainer.calls) == 1 and "did not beat the incumbent's mean" in v["reason"]


def test_a_real_gain_is_selected_confirmed_on_fresh_seeds_and_recorded_on_seeds_that_decided_nothing(study):
    with_baseline(study)
    values = [0.86, 0.85, 0.87, 0.84, 0.85, 0.845, 0.852, 0.848]
    v, trainer = trained(study, "00002", values, topups=[0.80])
    assert v["verdict"] == "improved" and v["promoted"] and v["stage"] == "confirm"
    # one seed of the incumbent's config for its record, the screen, stage 1, fresh seeds, then its own record
    assert [c[2] for c in trainer.calls] == ["incumbent", "first", "select", "select", "confirm", "confirm",
                                             "confirm", "record", "record"]
    assert stages(v) == ["screen", "select", "select", "confirm", "confirm", "confirm", "record", "record",
                         "incumbent"]
    assert v["incumbent_seed_values"] == BASE + [0.80]  # the record grew by the seed this run trained for it
    assert v["value"] == pytest.approx(np.mean([0.84, 0.85, 0.845]))  # the fresh seeds decided and rank it
    assert set(v["tests"]) == {"screen", "select", "confirm"} and v["test"] == v["tests"]["confirm"]
    history = ledger.read_history(study.paths)
    assert ledger.best_entry(history)["run_id"] == "00002"
    assert ledger.incumbent_values(history, history[1]) == [0.852, 0.848]  # neither lucky nor tested seeds
    best = fsio.read_json(study.paths.best)
    assert best["run_id"] == "00002" and best["value"] == pytest.approx(0.85) and best["seed_values"] == [0.852, 0.848]
    # the next run is compared with that record, and adds a seed of 00002's config to it
    v3, _ = trained(study, "00003", [0.90, 0.91, 0.90, 0.92, 0.91, 0.90], overrides={"width": 8, "lr": 0.02},
                    topups=[0.846])
    assert v3["compared_to"] == "00002" and v3["incumbent_seed_values"] == [0.852, 0.848, 0.846]
    assert ledger.incumbent_values(ledger.read_history(study.paths)[:3], history[1]) == [0.852, 0.848, 0.846]


def test_a_lucky_selection_that_fresh_seeds_do_not_confirm_is_not_promoted(study):
    with_baseline(study)
    v, _ = trained(study, "00002", [0.84, 0.85, 0.86, 0.80, 0.795, 0.81])
    assert v["tests"]["select"]["passed"] and not v["tests"]["confirm"]["passed"]
    assert v["verdict"] == "inconclusive" and not v["promoted"] and "fresh confirmation seeds" in v["reason"]
    assert ledger.best_entry(ledger.read_history(study.paths))["run_id"] == "00001"


def test_the_incumbent_record_grows_by_one_seed_per_challenger_up_to_its_cap(tmp_path):
    study = make_study(tmp_path, incumbent_seeds=6)
    with_baseline(study)  # 5 seeds
    v2, t2 = trained(study, "00002", [0.79])  # adds one seed to the record, whatever its own result
    v3, t3 = trained(study, "00003", [0.83, 0.79])  # the record has 6: nothing added
    assert [c[2] for c in t2.calls].count("incumbent") == 1 and "incumbent" not in [c[2] for c in t3.calls]
    assert len(v3["incumbent_seed_values"]) == 6


def test_welch_only_when_a_noise_key_differs_from_the_incumbents_value(study):
    with_baseline(study)  # lr 0.01
    same, _ = trained(study, "00002", [0.86, 0.85, 0.87, 0.84, 0.85, 0.845], overrides={"width": 16})
    assert same["welch_keys"] == [] and same["tests"]["confirm"]["name"] == "pooled_t"
    # 00002 (lr 0.01, the baseline's) is the incumbent; a run at lr 0.01 with other changes: pooled
    other, _ = trained(study, "00003", [0.90, 0.91, 0.90, 0.92, 0.91, 0.90], overrides={"width": 8})
    assert other["compared_to"] == "00002" and other["tests"]["confirm"]["name"] == "pooled_t"
    assert other["welch_keys"] == [] and other["verdict"] == "improved"
    # now the incumbent is 00003 (lr 0.01); lr 0.03 differs from it: Welch
    diff, _ = trained(study, "00004", [0.95, 0.96, 0.95, 0.97, 0.96, 0.95], overrides={"lr": 0.03})
    assert diff["welch_keys"] == ["lr"] and diff["tests"]["confirm"]["name"] == "welch_t"
    # stage 1 filters with each side's regime noise (autopilot.judge.regimes): nobody trained near lr 0.03, so
    # the candidate's side has the study's noise, and the incumbent's the pooled noise of the runs at lr 0.01
    select = diff["tests"]["select"]
    assert select["name"] == "regime_t"
    assert select["incumbent_noise"]["df"] < select["candidate_noise"]["df"] <= diff["noise_floor"]["df"]


def test_zero_seed_noise_never_yields_improved_from_p_zero(study):
    trained(study, "00001", [0.80], overrides={})  # a trainer that ignores its seed: every seed 0.80
    v, trainer = trained(study, "00002", [0.85])
    assert v["verdict"] == "inconclusive" and len(trainer.calls) == 1  # more seeds would repeat 0.85
    assert "ignores its seed" in v["reason"] and "no per-example scores" in v["reason"]
    assert v["tests"]["screen"]["name"] == "degenerate"


def test_zero_seed_noise_is_judged_by_the_examples_when_there_are_any(tmp_path):
    rng = np.random.default_rng(0)
    inc = (rng.random(300) < 0.80).astype(float)
    better = np.maximum(inc, (rng.random(300) < 0.5).astype(float))
    same = inc.copy()
    for per_example, expected in ((better, "improved"), (same, "inconclusive")):
        study = make_study(tmp_path / expected)
        trained(study, "00001", [{"value": float(inc.mean()), "per_example": inc}], overrides={})
        v, _ = trained(study, "00002", [{"value": float(per_example.mean()) + 1e-9, "per_example": per_example}])
        assert v["verdict"] == expected and v["bootstrap"]["n_examples"] == 300
        assert "paired bootstrap" in v["reason"]


def test_per_example_scores_are_judged_in_their_own_direction(study):
    rng = np.random.default_rng(1)
    inc = rng.random(300)  # a loss per example (lower is better) for an accuracy-like metric
    lower = inc * 0.8
    trained(study, "00001", [{"value": 0.80, "per_example": inc, "example_goal": "minimize"}], overrides={})
    v, _ = trained(study, "00002", [{"value": 0.80 + 1e-9, "per_example": lower, "example_goal": "minimize"}])
    assert v["verdict"] == "improved" and v["bootstrap"]["example_goal"] == "minimize"
    assert v["bootstrap"]["high"] < 0  # the interval in the losses' own units: the candidate's are lower


def test_a_nan_metric_is_a_failed_seed(study):
    with_baseline(study)
    v, _ = trained(study, "00002", [0.86, {"value": float("nan")}, 0.85])
    assert v["verdict"] == "failed" and v["stage"] == "select"
    bad = next(s for s in v["seeds"] if s["status"] == "completed" and s["value"] is None)
    assert "not a finite number" in bad["error"] and "seed 1 (select) failed" in v["reason"]


def test_a_failed_seed_of_the_incumbents_config_is_recorded_and_skipped(study):
    with_baseline(study)
    v, _ = trained(study, "00002", [0.86, 0.85, 0.87, 0.84, 0.85, 0.845], topups=[{"value": None, "status": "failed"}])
    assert v["verdict"] == "improved"
    topup = next(s for s in v["seeds"] if s["stage"] == "incumbent")
    assert topup["status"] == "failed" and topup["error"]
    assert v["incumbent_seed_values"] == BASE


@pytest.mark.parametrize("signal", ["stop", "skip"])
def test_stop_or_skip_during_extra_seeds_is_never_judged_on_fewer_seeds(study, signal):
    with_baseline(study)
    prepare(study, "00002", {"width": 16})

    script = ScriptedTrainer({"00002": [0.86, 0.85, 0.87]}, [0.80])

    def trainer(study_, run, seed_run, config):  # the person acts while stage 1 trains
        if config.get("seed_stage") == "select" and signal == "skip":  # the trainer ends the seed as skipped
            return ScriptedTrainer({"00002": [{"value": None, "status": "skipped"}]})(study_, run, seed_run, config)
        if config.get("seed_stage") == "select":  # `stop --now` lands after this seed's last step
            study.project.control.mkdir(exist_ok=True)
            study.project.control_file("stop").touch()
        return script(study_, run, seed_run, config)

    runner.train_seeds(study, "00002", trainer=trainer)
    v = judge_run(study, "00002")
    assert v["verdict"] == ("stopped" if signal == "stop" else "skipped")
    assert "not judged on fewer seeds" in v["reason"] and not v["promoted"]
    if signal == "stop":  # the seed after the one in flight never started: its summary says so
        assert any(s["status"] == "stopped" and s["value"] is None for s in v["seeds"])


def test_different_per_example_lengths_are_an_error_in_the_verdict_not_a_crash(study):
    pe = np.ones(100)
    trained(study, "00001", [{"value": 0.80 + 0.01 * k, "per_example": pe} for k in range(5)], overrides={})
    v, _ = trained(study, "00002", [{"value": 0.79, "per_example": np.ones(90)}])
    assert "different lengths" in v["bootstrap"]["error"] and v["verdict"] == "inconclusive"


def test_the_judge_refuses_a_run_whose_seeds_are_not_all_trained(study):
    with_baseline(study)
    prepare(study, "00002", {"width": 16})
    run = study.paths.run("00002")
    ScriptedTrainer({"00002": [0.86]})(study, run, run, fsio.read_json(run.config))
    with pytest.raises(AutopilotError, match="still needs 1 incumbent seed"):
        judge_run(study, "00002")


def test_a_killed_run_resumes_its_protocol_without_training_seeds_again(study):
    with_baseline(study)
    prepare(study, "00002", {"width": 16})
    script = ScriptedTrainer({"00002": [0.86, 0.85, 0.87, 0.84, 0.85, 0.845]}, [0.80])

    def dies_after_three(study_, run, seed_run, config):
        if len(script.calls) == 3:
            raise KeyboardInterrupt  # autopilot train killed while stage 1 trains
        return script(study_, run, seed_run, config)

    with pytest.raises(KeyboardInterrupt):
        runner.train_seeds(study, "00002", trainer=dies_after_three)
    again = ScriptedTrainer({"00002": [0.87, 0.84, 0.85, 0.845]}, [0.80])
    runner.train_seeds(study, "00002", trainer=again)
    assert [c[1:] for c in again.calls] == [(2, "select"), (3, "confirm"), (4, "confirm"), (5, "confirm"),
                                            (6, "record"), (7, "record")]
    assert judge_run(study, "00002")["verdict"] == "improved"


def test_a_run_over_a_limit_is_never_promoted(tmp_path):
    study = make_study(tmp_path, constraints={"max_peak_memory_mb": 500})
    trained(study, "00001", [{"value": v, "peak_memory_mb": 300.0} for v in BASE], overrides={})
    v, trainer = trained(study, "00002", [{"value": 0.95, "peak_memory_mb": 800.0}])
    assert v["verdict"] == "over_limit" and not v["promoted"] and stages(v) == ["screen", "incumbent"]
    assert v["over_limit"] == ["peak_memory_mb 800 MB > max_peak_memory_mb 500"]
    assert "cannot be promoted" in v["reason"] and v["costs"]["peak_memory_mb"] == 800.0
    entry = ledger.read_history(study.paths)[-1]
    assert entry["verdict"] == "over_limit" and entry["costs"]["peak_memory_mb"] == 800.0


def test_a_generation_promotes_by_fresh_means_not_by_the_seeds_that_selected(tmp_path):
    study = make_study(tmp_path, generation_size=2)
    trained(study, "00001", BASE, overrides={}, generation=1)
    # 00002: a lucky stage 1, modest fresh seeds; 00003: a modest stage 1, better fresh seeds
    trained(study, "00002", [0.90, 0.91, 0.92, 0.84, 0.845, 0.85], generation=2, place=0, judge=False)
    trained(study, "00003", [0.85, 0.845, 0.86, 0.86, 0.865, 0.87], generation=2, place=1, judge=False)
    for run_id in ("00003", "00002"):
        judge_run(study, run_id)
    history = record.sync(study)
    e2, e3 = (next(e for e in history if e["run_id"] == r) for r in ("00002", "00003"))
    assert e2["verdict"] == e3["verdict"] == "improved"
    assert np.mean(ledger.stage_values(e2, "screen", "select")) > np.mean(ledger.stage_values(e3, "screen", "select"))
    assert ledger.best_entry(history)["run_id"] == "00003"
    trained(study, "00004", [0.70], generation=3)
    labbook = study.paths.labbook.read_text()
    assert "## Generation 3: every run judged against run 00003" in labbook
    assert "generation 2 promoted 2 runs, and the incumbent is the one with the best mean on its fresh" in labbook


def test_a_nan_metric_from_a_user_trainer_does_not_crash_autopilot_train(tmp_path):
    from autopilot.train import supervisor

    script = tmp_path / "nan_trainer.py"
    script.write_text("import json, sys\n"
                      "json.dump({'status': 'completed', 'metric': {'name': 'acc', 'value': float('nan'), "
                      "'goal': 'maximize'}, 'metrics': {'loss': float('inf')}, 'seed': 1, 'steps': 1, "
                      "'train_seconds': 0.1, 'wall_seconds': 0.1, 'device': 'cpu', 'error': None, 'manifest': "
                      "{'seed': 1, 'python': '3', 'packages': {}, 'git_commit': None, 'data_hash': None, "
                      "'device': 'cpu', 'platform': 'x'}}, open(sys.argv[2] + '/trainer_summary.json', 'w'))\n")
    study = make_study(tmp_path)
    prepare(study, "00001", {})
    run = study.paths.run("00001")
    config = fsio.read_json(run.config)
    summary = supervisor.run_trainer([sys.executable, str(script), str(run.config), str(run.dir)], run, config,
                                     tmp_path)
    assert summary["status"] == "failed" and summary["metric"]["value"] is None
    assert "not a finite number" in summary["error"] and summary["metrics"]["loss"] is None
    assert fsio.read_json(run.summary)["status"] == "failed"  # written as valid JSON
