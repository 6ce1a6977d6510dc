"""Replay whole studies through the real runner, judge and journal, with seeds drawn from pools.

A "trainer" here is a pool: each seed of a config (an `arm`) gets the next value of that arm's pool, with its
per-example scores when the pool has them. Everything else is the package's own code: the guard builds each
config.json, `autopilot.train.runner.train_seeds` decides which seeds to train (the judge's protocol), the
judge writes verdict.json and the journal writes history.jsonl, labbook.md and best.json. Only the trainer
process and Snakemake's scheduling are left out: a generation's runs are trained and judged one after another,
which the runner and the judge cannot tell from side by side (each sees the ledger before its generation).

Usage:
    pools = {"A": NormalPool(0.0, 1.0), "B": NormalPool(2.0, 1.0)}
    result = replay_study(root, judge, pools, arms=["A"] * 99, generation_size=1, seed=0)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autopilot import fsio, guard, ledger
from autopilot.journal import record
from autopilot.judge import verdicts
from autopilot.paths import Project, RunPaths, format_run_id
from autopilot.study import Study, check_config
from autopilot.train import runner

MANIFEST = {"seed": 0, "python": "3", "packages": {}, "git_commit": None, "data_hash": None, "device": "cpu",
            "platform": "replay", "hostname": "replay"}


class NormalPool:
    """Seeds of a synthetic config: normal values with a known mean and sd (no per-example scores)."""

    def __init__(self, mean: float, sd: float):
        self.mean, self.sd = mean, sd

    def draw(self, rng: np.random.Generator) -> tuple[float, np.ndarray | None]:
        return float(rng.normal(self.mean, self.sd)), None


class SeedPool:
    """Seeds of a real trainer, trained once: each study draws them in its own random order, without
    replacement until the pool is used up (then a new order: `reused` counts those draws)."""

    def __init__(self, values: list[float], per_example: list[np.ndarray] | None):
        self.values, self.per_example = values, per_example
        self.mean, self.sd = float(np.mean(values)), float(np.std(values, ddof=1))
        self.order: list[int] = []
        self.reused = 0

    def start(self, rng: np.random.Generator) -> None:
        self.order, self.reused = list(rng.permutation(len(self.values))), 0

    def draw(self, rng: np.random.Generator) -> tuple[float, np.ndarray | None]:
        if not self.order:
            self.order = list(rng.permutation(len(self.values)))
            self.reused += 1
        i = self.order.pop()
        return self.values[i], None if self.per_example is None else self.per_example[i]


@dataclass
class PoolTrainer:
    """Stands in for `runner.train_seed`: writes the seed's config and a trainer summary drawn from its pool."""

    pools: dict
    rng: np.random.Generator
    processes: int = 0
    by_stage: dict = field(default_factory=dict)

    def __call__(self, study: Study, run: RunPaths, seed_run: RunPaths, config: dict) -> dict:
        value, per_example = self.pools[config["hparams"]["arm"]].draw(self.rng)
        self.processes += 1
        stage = config.get("seed_stage", "first")
        self.by_stage[stage] = self.by_stage.get(stage, 0) + 1
        summary = {
            "status": "completed", "metric": {"name": "score", "value": value, "goal": "maximize"},
            "per_example": None if per_example is None else
            {"name": "correct", "goal": "maximize", "values": per_example.tolist()},
            "metrics": {}, "seed": config["seed"], "nonce": config.get("nonce"), "steps": 1, "train_seconds": 1.0,
            "wall_seconds": 1.0, "device": "cpu", "checkpoint": None, "error": None, "manifest": MANIFEST,
            "attempts": 1,
        }
        if config["seed_index"] > 0:
            fsio.atomic_write_json(seed_run.config, config)
        fsio.atomic_write_json(seed_run.summary, summary)
        return summary


NOISY_LR = 0.05  # five times the baseline's lr: another noise regime (autopilot.judge.regimes), not a neighbour


def noisy_arm(arm: str) -> bool:
    """Arm N and arms named ...w also change `lr` to NOISY_LR, a noise key (the judge may then use Welch's test)."""
    return arm == "N" or arm.endswith("w")


def replay_config(judge: dict, arms: list[str], generation_size: int) -> dict:
    """A study whose keys are the arm (the pool a run's seeds come from) and `lr` (a noise key, nothing else)."""
    return check_config({
        "study": "replay", "task": "command", "trainer": {"command": ["pool"]},
        "metric": {"name": "score", "goal": "maximize"}, "generation_size": generation_size,
        "baseline": {"arm": "A", "lr": 0.01},
        "search_space": {"arm": {"type": "categorical", "choices": sorted(set(arms))},
                         "lr": {"type": "categorical", "choices": [0.01, NOISY_LR]}},
        "judge": judge, "budget": {"max_runs": 100000},
    }, "replayed study")


@dataclass
class StudyResult:
    history: list[dict]
    processes: int
    by_stage: dict
    incumbents: list[str]  # the incumbent after each generation


def replay_study(root: Path, judge: dict, pools: dict, arms: list[str], generation_size: int,
                 seed: int) -> StudyResult:
    """The baseline (arm A) then one run per entry of `arms`, in generations of `generation_size`."""
    logging.disable(logging.WARNING)
    rng = np.random.default_rng(seed)
    for pool in pools.values():
        if isinstance(pool, SeedPool):
            pool.start(rng)
    all_arms = ["A", *arms]
    study = Study(Project(root), replay_config(judge, all_arms, generation_size))
    study.paths.dir.mkdir(parents=True, exist_ok=True)
    trainer = PoolTrainer(pools, rng)
    generations = [[0]] + [list(range(i, min(i + generation_size, len(all_arms))))
                           for i in range(1, len(all_arms), generation_size)]
    incumbents = []
    for g, members in enumerate(generations, start=1):
        for place, i in enumerate(members):
            write_run(study, format_run_id(i + 1), all_arms[i], g, place)
        for i in members:
            run_id = format_run_id(i + 1)
            runner.train_seeds(study, run_id, trainer=trainer)
            verdicts.judge_run(study, run_id)
        history = record.sync(study)
        incumbents.append(ledger.best_entry(history)["run_id"] if ledger.best_entry(history) else None)
    return StudyResult(record.sync(study), trainer.processes, trainer.by_stage, incumbents)


def write_run(study: Study, run_id: str, arm: str, generation: int, place: int) -> None:
    """proposal.json and the guard's config.json of a run of `arm`."""
    run = study.paths.run(run_id)
    run.dir.mkdir(parents=True, exist_ok=True)
    overrides = ({} if arm == "A" else {"arm": arm}) | ({"lr": NOISY_LR} if noisy_arm(arm) else {})
    proposal = {"run_id": run_id, "policy": "replay", "overrides": overrides,
                "rationale": "replayed study: a config drawn from a seed pool", "hypothesis": "replayed, none",
                "housekeeping": {"new_todos": [], "notes": "", "resolved_todos": []}, "mentor": None,
                "fallback_from": None, "created_at": "2026-01-01T00:00:00+00:00",
                "generation": generation, "generation_index": place}
    fsio.atomic_write_json(run.proposal, proposal)
    fsio.atomic_write_json(run.config, guard.build_config(study, proposal))


def finite(x: float) -> bool:
    return x is not None and math.isfinite(x)


# --- search: the real policy proposes, a problem's truth plus seed noise trains -------------------------------
@dataclass
class ProblemTrainer:
    """Stands in for `runner.train_seed` on a tuning problem: one seed is one noisy draw at the config's point."""

    problem: object
    rng: np.random.Generator
    processes: int = 0

    def __call__(self, study: Study, run: RunPaths, seed_run: RunPaths, config: dict) -> dict:
        self.processes += 1
        params = {k: config["hparams"][k] for k in self.problem.search_space}
        summary = {
            "status": "completed", "metric": {"name": "score", "value": self.problem.draw(params, self.rng),
                                              "goal": "maximize"},
            "per_example": None, "metrics": {}, "seed": config["seed"], "nonce": config.get("nonce"), "steps": 1,
            "train_seconds": 1.0, "wall_seconds": 1.0, "device": "cpu", "checkpoint": None, "error": None,
            "manifest": MANIFEST, "attempts": 1,
        }
        if config["seed_index"] > 0:
            fsio.atomic_write_json(seed_run.config, config)
        fsio.atomic_write_json(seed_run.summary, summary)
        return summary


def search_config(problem, judge: dict, tpe: dict, seed: int) -> dict:
    return check_config({
        "study": "search", "task": "command", "trainer": {"command": ["problem"]}, "seed": seed,
        "metric": {"name": "score", "goal": "maximize"}, "baseline": dict(problem.baseline),
        "search_space": problem.search_space, "policy": "tpe", "tpe": tpe, "judge": judge,
        "budget": {"max_runs": 100000, "max_total_seconds": 1e9},
    }, f"search study on {problem.name}")


def replay_search(root: Path, problem, judge: dict, tpe: dict, budget: int, seed: int) -> dict:
    """A default study (real TPE policy, guard, runner, judge, journal) run until it has used `budget` trainer
    processes; its incumbent then, and what that cost."""
    from autopilot.propose.decide import propose_run

    logging.disable(logging.WARNING)
    study = Study(Project(root), search_config(problem, judge, tpe, seed))
    study.paths.dir.mkdir(parents=True, exist_ok=True)
    trainer = ProblemTrainer(problem, np.random.default_rng(seed))
    number = 0
    while trainer.processes < budget:
        number += 1
        run_id = format_run_id(number)
        propose_run(study, run_id)
        guard.guard_run(study, run_id)
        runner.train_seeds(study, run_id, trainer=trainer)
        verdicts.judge_run(study, run_id)
    history = record.sync(study)
    best = ledger.best_entry(history)
    params = {k: best["params"][k] for k in problem.search_space}
    return {"regret": problem.optimum - problem.mean(params), "processes": trainer.processes, "runs": number,
            "promotions": sum(e["verdict"] == "improved" for e in history)}


def plain_tpe(problem, processes: int, seed: int, n_startup_trials: int = 10, multivariate: bool = False) -> dict:
    """Optuna's TPE with one seed per trial, the baseline first, `processes` trials; the pick is the best
    observed trial, as a user of plain TPE would take it."""
    import optuna

    from autopilot.propose.policies.optimizer import distributions

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(seed)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=multivariate)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(dict(problem.baseline))
    dists = distributions(problem.search_space)
    for _ in range(processes):
        trial = study.ask(dists)
        study.tell(trial, problem.draw(trial.params, rng))
    return {"regret": problem.optimum - problem.mean(study.best_trial.params), "processes": processes}
