"""The optimizer sees every seed as an observation, counts its start-up in runs, and spends no run on the
incumbent's own point (which the judge re-measures already)."""

from __future__ import annotations

from autopilot import ledger
from autopilot.paths import Project
from autopilot.propose.policies import Context
from autopilot.propose.policies.optimizer import ask, replay, runs_done
from autopilot.study import Study, check_config

SPACE = {"opt": {"type": "categorical", "choices": ["a", "b", "c"]}}


def line(run_id: str, opt: str, seeds: list[tuple[str, float | None]], verdict: str = "inconclusive",
         compared_to: str | None = "00001") -> dict:
    values = [v for stage, v in seeds if stage != "incumbent" and v is not None]
    return {"run_id": run_id, "generation": int(run_id), "policy": "tpe", "overrides": {"opt": opt},
            "params": {"opt": opt}, "status": "completed", "verdict": verdict,
            "value": sum(values) / len(values) if values else None, "seed_values": values,
            "seeds": [{"k": k, "stage": s, "status": "completed", "value": v} for k, (s, v) in enumerate(seeds)],
            "compared_to": compared_to, "delta": 0.0, "interval": None, "train_seconds": 1.0, "wall_seconds": 1.0,
            "error": None, "fallback_from": None, "finished_at": "2026-01-01T00:00:00+00:00"}


HISTORY = [
    line("00001", "a", [("baseline", 0.90)] * 5, verdict="baseline", compared_to=None),
    line("00002", "b", [("screen", 0.80)]),  # a one-seed screen: an observation
    line("00003", "c", [("screen", 0.91), ("incumbent", 0.89), ("select", 0.88), ("select", 0.87)]),
]


def study(tmp_path, **tpe) -> Study:
    config = {"study": "o", "task": "command", "trainer": {"command": ["x"]},
              "metric": {"name": "acc", "goal": "maximize"}, "baseline": {"opt": "a"}, "search_space": SPACE,
              "tpe": {"n_startup_trials": 2, **tpe}}
    return Study(Project(tmp_path), check_config(config, "test"))


def test_every_seed_is_an_observation_and_an_incumbent_seed_belongs_to_the_incumbents_point():
    trials = replay(HISTORY, SPACE, 1000, ledger.best_entry(HISTORY))
    observed = sorted((t.params["opt"], t.value) for t in trials)
    assert observed == sorted([("a", 0.90)] * 5 + [("b", 0.80), ("c", 0.91), ("a", 0.89), ("c", 0.88),
                                                   ("c", 0.87)])


def test_start_up_counts_runs_not_seeds():
    assert runs_done(HISTORY[:1]) == 1  # five seeds, one point


def test_the_incumbents_own_point_is_not_proposed_again(tmp_path):
    s = study(tmp_path)
    history = [line("00001", "a", [("baseline", 0.99)] * 2, verdict="baseline", compared_to=None)]
    history += [line(f"{i:05d}", "bc"[i % 2], [("screen", 0.5)]) for i in range(2, 14)]
    for run in range(20, 26):  # TPE's model wants `a`, the incumbent's point, every time
        assert ask(Context(s, f"{run:05d}", history, None), "tpe")[0]["opt"] == "a"
        assert ask(Context(s, f"{run:05d}", history, history[0]), "tpe")[0]["opt"] != "a"
