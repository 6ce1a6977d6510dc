"""How often does the judge call a rerun "improved", and how often does it catch a real improvement?

A/A pairs: incumbent and candidate are the same config (different seeds): every `improved` is false.
A/B pairs: the candidate is a known better config of the default study (more epochs): `improved` is a hit.
Seeds of both configs are trained once here with the real task code; the judge's protocol (screen on the
first seed, confirmation seeds, seed-level test) is then replayed over many random draws of those seeds.

Usage:
    python benchmarks/judge_aa.py            # 40 seeds per config, 4000 draws (a few minutes on 2 cores)
    python benchmarks/judge_aa.py --quick    # smoke run used by the tests
The last line is one JSON object with the rates.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _seedpool import seed_pool  # noqa: E402

from autopilot import bundled  # noqa: E402
from autopilot.judge import stats  # noqa: E402
from autopilot.settings import Judge  # noqa: E402
from autopilot.study import check_config  # noqa: E402

BETTER = {"epochs": 10}  # a known improvement of the default baseline (about +2 points of accuracy)


def replay(inc_pool, cand_pool, same: bool, judge_cfg: Judge, overrides: dict, rng) -> tuple[str, int]:
    """One comparison under the judge's protocol; returns the verdict and the candidate seeds used."""
    n_inc = 1 + judge_cfg.noise_seeds
    extra, welch = stats.extra_seeds_for(overrides, judge_cfg)
    if same:  # A/A: incumbent and candidate seeds must be distinct seeds of one pool
        idx = rng.permutation(len(inc_pool))
        inc = [inc_pool[i] for i in idx[:n_inc]]
        cand_all = [inc_pool[i] for i in idx[n_inc:n_inc + 1 + extra]]
    else:
        inc = [inc_pool[i] for i in rng.choice(len(inc_pool), n_inc, replace=False)]
        cand_all = [cand_pool[i] for i in rng.choice(len(cand_pool), 1 + extra, replace=False)]
    inc_r = [stats.SeedResult(v, pe) for v, pe in inc]
    first = cand_all[0]
    cand = cand_all if stats.needs_confirmation(first[0], [v for v, _ in inc], True) else cand_all[:1]
    cand_r = [stats.SeedResult(v, pe) for v, pe in cand]
    cfg = dataclasses.replace(judge_cfg, bootstrap_samples=200)  # the bootstrap is for the record, it does not decide
    result = stats.decide(cand_r, inc_r, [], cfg, True, welch, bootstrap_seed=int(rng.integers(1 << 30)))
    return result["verdict"], len(cand)


def judge_cfg_seeds_needed(judge_cfg: Judge) -> int:
    """Seeds one A/A draw uses at most: the incumbent's and a fully confirmed candidate's."""
    return judge_cfg.noise_seeds + 1 + judge_cfg.max_confirm_seeds + 1


@click.command()
@click.option("--seeds", default=40, help="Seeds trained per config.")
@click.option("--draws", default=4000, help="Random comparisons replayed per kind (A/A, A/B).")
@click.option("--noise-seeds", type=int, help="Override stats.noise_seeds of config/config.yaml.")
@click.option("--confirm-seeds", type=int, help="Override stats.confirm_seeds of config/config.yaml.")
@click.option("--quick", is_flag=True, help="Smoke run: the fewest seeds the protocol needs, 100 draws, 1-2 epochs.")
def main(seeds: int, draws: int, noise_seeds: int | None, confirm_seeds: int | None, quick: bool) -> None:
    default_study = bundled.project_files() / "config" / "config.yaml"
    config = check_config(yaml.safe_load(default_study.read_text()), "config/config.yaml")
    base = dict(config["baseline"])
    better = {**base, **BETTER}
    if quick:
        seeds, draws = judge_cfg_seeds_needed(Judge.parse(config["judge"])), 100
        base["epochs"], better["epochs"] = 1, 2
    judge_cfg = Judge.parse(config["judge"])
    if noise_seeds is not None:
        judge_cfg = dataclasses.replace(judge_cfg, noise_seeds=noise_seeds)
    if confirm_seeds is not None:
        judge_cfg = dataclasses.replace(judge_cfg, confirm_seeds=confirm_seeds)
    if judge_cfg_seeds_needed(judge_cfg) > seeds:
        raise click.UsageError(f"--seeds {seeds} is too few for the protocol's seed counts")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        pool_a = seed_pool(base, seeds, 1000, Path(tmp))
        pool_b = seed_pool(better, seeds, 5000, Path(tmp))
    train_s = time.monotonic() - t0
    rng = np.random.default_rng(0)
    aa = [replay(pool_a, pool_a, True, judge_cfg, BETTER, rng) for _ in range(draws)]
    ab = [replay(pool_a, pool_b, False, judge_cfg, BETTER, rng) for _ in range(draws)]
    va, vb = np.array([v for v, _ in pool_a]), np.array([v for v, _ in pool_b])
    out = {
        "seeds_per_config": seeds, "draws": draws, "quick": quick,
        "noise_seeds": judge_cfg.noise_seeds, "confirm_seeds": judge_cfg.confirm_seeds,
        "mean_a": round(float(va.mean()), 4), "mean_b": round(float(vb.mean()), 4),
        "seed_sd_a": round(float(va.std(ddof=1)), 4), "seed_sd_b": round(float(vb.std(ddof=1)), 4),
        "true_gain": round(float(vb.mean() - va.mean()), 4),
        "false_improved_rate": round(sum(v == "improved" for v, _ in aa) / draws, 4),
        "false_regressed_rate": round(sum(v == "regressed" for v, _ in aa) / draws, 4),
        "detection_rate": round(sum(v == "improved" for v, _ in ab) / draws, 4),
        "mean_candidate_seeds_aa": round(float(np.mean([n for _, n in aa])), 3),
        "mean_candidate_seeds_ab": round(float(np.mean([n for _, n in ab])), 3),
        "targets": {"false_improved_rate_max": 0.05, "detection_rate_min": 0.80},
        "train_seconds": round(train_s, 1),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
