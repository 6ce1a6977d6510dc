"""The judge's statistics on score vectors and seed values whose answer is known."""

import dataclasses

import numpy as np
import pytest

from autopilot.judge import stats
from autopilot.settings import Judge

CFG = Judge(confidence=0.95, bootstrap_samples=2000, alpha=0.05, noise_seeds=4, confirm_seeds=2,
            max_confirm_seeds=4, noise_keys=("lr", "batch_size"))


def seeds(values, per_example=None):
    return [stats.SeedResult(v, None if per_example is None else np.asarray(pe))
            for v, pe in zip(values, per_example or [None] * len(values))]


def test_identical_runs_are_never_improved():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scores = (rng.random(360) < 0.95).astype(float)
        r = stats.decide(seeds([scores.mean()], [scores]), seeds([scores.mean()], [scores]), [], CFG, True, False, 1)
        assert r["verdict"] == "inconclusive"
        assert r["delta"] == 0


def test_a_clearly_better_vector_is_improved_by_the_paired_bootstrap():
    rng = np.random.default_rng(1)
    inc = (rng.random(400) < 0.80).astype(float)
    cand = np.maximum(inc, (rng.random(400) < 0.5).astype(float))  # fixes half of the errors, breaks none
    r = stats.decide(seeds([cand.mean()], [cand]), seeds([inc.mean()], [inc]), [], CFG, True, False, 2)
    assert r["verdict"] == "improved"
    assert r["interval"]["method"].startswith("paired_bootstrap")
    assert 0 < r["interval"]["low"] < r["delta"] < r["interval"]["high"]


def test_a_clearly_worse_vector_is_regressed():
    rng = np.random.default_rng(2)
    inc = (rng.random(400) < 0.9).astype(float)
    cand = inc * (rng.random(400) < 0.7)
    r = stats.decide(seeds([cand.mean()], [cand]), seeds([inc.mean()], [inc]), [], CFG, True, False, 3)
    assert r["verdict"] == "regressed"


def test_minimize_metrics_are_oriented():
    inc = np.full(200, 2.0)
    cand = np.full(200, 1.5) + np.random.default_rng(3).normal(0, 0.01, 200)
    r = stats.decide(seeds([cand.mean()], [cand]), seeds([inc.mean()], [inc]), [], CFG, False, False, 4)
    assert r["verdict"] == "improved"
    assert r["delta"] < 0  # reported in the metric's units: the loss went down
    assert r["interval"]["high"] < 0


def test_seed_noise_decides_when_it_is_measured():
    inc = [0.95, 0.94, 0.96, 0.95, 0.945]
    # a gain well inside the seed noise: inconclusive even though the mean is higher
    r = stats.decide(seeds([0.952, 0.951, 0.953]), seeds(inc), [], CFG, True, False, 5)
    assert r["verdict"] == "inconclusive"
    assert r["test"]["name"] == "pooled_t"
    # a gain far outside it: improved
    r = stats.decide(seeds([0.985, 0.986, 0.984]), seeds(inc), [], CFG, True, False, 5)
    assert r["verdict"] == "improved"
    assert r["interval"]["low"] > 0


def test_one_seed_is_a_screen_not_evidence():
    r = stats.decide(seeds([0.99]), seeds([0.95, 0.94, 0.96]), [], CFG, True, False, 6)
    assert r["verdict"] == "inconclusive"


def test_welch_is_used_for_noise_altering_changes():
    r = stats.decide(seeds([0.99, 0.98, 0.985, 0.99, 0.98]), seeds([0.95, 0.94, 0.96]), [], CFG, True, True, 7)
    assert r["test"]["name"] == "welch_t"
    assert stats.extra_seeds_for({"lr": 0.1}, CFG) == (4, True)
    assert stats.extra_seeds_for({"epochs": 3}, CFG) == (2, False)


def test_noise_floor_pools_only_multi_seed_runs():
    sd, df = stats.pooled_noise([[1.0, 3.0], [5.0], [2.0, 4.0, 6.0]])
    assert df == 3
    assert sd == pytest.approx(np.sqrt((2 + 8) / 3))


def test_screen_compares_with_the_incumbent_mean():
    assert stats.needs_confirmation(0.96, [0.95, 0.94], True)
    assert not stats.needs_confirmation(0.94, [0.95, 0.94], True)
    assert stats.needs_confirmation(0.5, [0.6, 0.7], False)


def test_aa_false_improved_rate_is_low_on_simulated_seeds():
    """Seeds whose errors move together across examples: the seed-level protocol stays near alpha."""
    rng = np.random.default_rng(11)
    improved = 0
    for _ in range(300):
        vals = rng.normal(0.95, 0.008, 8)
        inc, cand = vals[:5], vals[5:]
        cand = cand if stats.needs_confirmation(cand[0], list(inc), True) else cand[:1]
        quick = dataclasses.replace(CFG, bootstrap_samples=200)
        r = stats.decide(seeds(list(cand)), seeds(list(inc)), [], quick, True, False, 1)
        improved += r["verdict"] == "improved"
    assert improved / 300 <= 0.07


@pytest.mark.parametrize("df", [1, 2, 3.5, 7, 30, 200])
def test_t_distribution_matches_scipy(df):
    from scipy import stats as scipy_stats

    for t in (-4.0, -1.3, -0.2, 0.0, 0.7, 1.9, 6.0):
        assert stats.t_sf(t, df) == pytest.approx(scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-12)
    for p in (0.5, 0.9, 0.95, 0.975, 0.995, 0.05):
        assert stats.t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-7, abs=1e-9)
