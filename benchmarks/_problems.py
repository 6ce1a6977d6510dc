"""Tuning problems with a known optimum and seed noise, for the search-at-equal-compute benchmark.

* `digits_grid`: a real tabular problem. Every config of a categorical grid of the built-in digits task
  (optimizer x width x lr x batch size) is trained on several seeds once (cached, `_seedpool.cached_pool`); a
  config's truth is the mean of its seeds, and a trained "seed" is one of them drawn at random: real seed noise.
* `mixed`: a simulated training response over six keys of every kind (log-scaled floats, a float, an int, two
  categoricals): the best learning rate depends on the optimizer, too much dropout or too few epochs cost
  accuracy, and the seed noise grows with the learning rate (a config near divergence is erratic).
* `logscale`: four log-scaled keys with the classic interaction of learning rate and batch size (the best
  learning rate grows with the batch), the noise again larger at high learning rates.

Each has `search_space` and `baseline` in the study config's format, `mean(params)` (the truth), `draw(params,
rng)` (one seed) and `optimum` (the best mean in the space).

Usage:
    problem = mixed()
    regret = problem.optimum - problem.mean(best_params)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DIGITS_BASE = {"lr": 0.003, "batch_size": 64, "epochs": 3, "weight_decay": 0.0001, "width": 16, "dropout": 0.1,
               "optimizer": "adam"}
DIGITS_GRID = {"optimizer": ["adam", "adamw", "sgd"], "width": [8, 16, 32], "lr": [0.001, 0.003, 0.01, 0.03],
               "batch_size": [32, 64, 128]}


@dataclass
class Problem:
    name: str
    kind: str
    search_space: dict
    baseline: dict
    mean: Callable[[dict], float]
    draw: Callable[[dict, np.random.Generator], float]
    optimum: float
    seed_sd: float  # a typical seed-to-seed spread, for reporting regret in units of it


def digits_grid(seeds: int = 6) -> Problem:
    """The real categorical grid; trains what the cache lacks (108 configs x `seeds`)."""
    from _seedpool import cached_pool

    table = {}
    for combo in itertools.product(*DIGITS_GRID.values()):
        point = dict(zip(DIGITS_GRID, combo))
        values, _ = cached_pool({**DIGITS_BASE, **point}, seeds, first_seed=100)
        table[combo] = np.asarray(values)
    key = lambda p: tuple(p[k] for k in DIGITS_GRID)  # noqa: E731
    sds = [float(np.std(v, ddof=1)) for v in table.values() if np.mean(v) > 0.9]
    return Problem(
        "digits_grid", "categorical (real seed noise of the digits CNN)",
        {k: {"type": "categorical", "choices": v} for k, v in DIGITS_GRID.items()},
        {k: DIGITS_BASE[k] for k in DIGITS_GRID},
        mean=lambda p: float(table[key(p)].mean()),
        draw=lambda p, rng: float(rng.choice(table[key(p)])),
        optimum=max(float(v.mean()) for v in table.values()),
        seed_sd=float(np.median(sds)),
    )


LR_CENTER = {"adam": -2.6, "adamw": -2.5, "sgd": -1.4}  # log10 of each optimizer's best learning rate
OPT_BONUS = {"adam": 0.0, "adamw": 0.004, "sgd": -0.006}
WIDTH_COST = {8: 0.018, 16: 0.006, 32: 0.0, 64: 0.002}


def mixed() -> Problem:
    """Six keys of every kind; accuracy-like values around 0.9, seed sd 0.006 rising to 0.02 at high lr."""
    def mean(p: dict) -> float:
        x = math.log10(p["lr"]) - LR_CENTER[p["optimizer"]]
        wd = math.log10(p["weight_decay"]) + 4.0
        return (0.975 + OPT_BONUS[p["optimizer"]] - 0.012 * x * x - 0.0015 * wd * wd
                - 0.05 * (p["dropout"] - 0.15) ** 2 - WIDTH_COST[p["width"]] - 0.06 / p["epochs"])

    def sd(p: dict) -> float:
        return 0.006 * (1.0 + 2.0 * max(0.0, math.log10(p["lr"]) + 1.8))

    space = {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
             "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
             "dropout": {"type": "float", "low": 0.0, "high": 0.5},
             "epochs": {"type": "int", "low": 2, "high": 20},
             "width": {"type": "categorical", "choices": [8, 16, 32, 64]},
             "optimizer": {"type": "categorical", "choices": ["adam", "adamw", "sgd"]}}
    best = {"lr": 10 ** LR_CENTER["adamw"], "weight_decay": 1e-4, "dropout": 0.15, "epochs": 20, "width": 32,
            "optimizer": "adamw"}
    return Problem("mixed", "mixed: log-scaled floats, a float, an int, categoricals", space,
                   {"lr": 0.01, "weight_decay": 1e-5, "dropout": 0.3, "epochs": 8, "width": 16, "optimizer": "adam"},
                   mean=mean, draw=lambda p, rng: float(rng.normal(mean(p), sd(p))), optimum=mean(best),
                   seed_sd=0.006)


def logscale() -> Problem:
    """Four log-scaled keys; the best lr grows with the square root of the batch size."""
    def mean(p: dict) -> float:
        ridge = math.log10(p["lr"]) - 0.5 * math.log10(p["batch_size"]) + 2.2
        return (0.95 - 0.02 * ridge * ridge - 0.004 * (math.log10(p["weight_decay"]) + 4.0) ** 2
                - 0.003 * (math.log10(p["eps"]) + 7.0) ** 2 - 0.004 * abs(math.log10(p["batch_size"]) - 2.0))

    def sd(p: dict) -> float:
        return 0.005 * (1.0 + 1.5 * max(0.0, math.log10(p["lr"]) + 1.5))

    space = {"lr": {"type": "float", "low": 1e-5, "high": 1.0, "log": True},
             "batch_size": {"type": "int", "low": 16, "high": 1024, "log": True},
             "weight_decay": {"type": "float", "low": 1e-7, "high": 0.1, "log": True},
             "eps": {"type": "float", "low": 1e-10, "high": 1e-3, "log": True}}
    best = {"lr": 10 ** (0.5 * 2.0 - 2.2), "batch_size": 100, "weight_decay": 1e-4, "eps": 1e-7}
    return Problem("logscale", "log-scaled numeric (lr x batch-size ridge)", space,
                   {"lr": 0.1, "batch_size": 32, "weight_decay": 1e-3, "eps": 1e-8},
                   mean=mean, draw=lambda p, rng: float(rng.normal(mean(p), sd(p))), optimum=mean(best),
                   seed_sd=0.005)
