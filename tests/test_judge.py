"""The judge's statistics on seed values and score vectors whose answer is known."""

import numpy as np
import pytest

from autopilot.judge import stats
from autopilot.judge.stats import Noise


@pytest.mark.parametrize("df", [1, 2, 3.5, 7, 30, 200])
def test_t_distribution_matches_scipy(df):
    from scipy import stats as scipy_stats

    for t in (-4.0, -1.3, -0.2, 0.0, 0.7, 1.9, 6.0):
        assert stats.t_sf(t, df) == pytest.approx(scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-12)
    for p in (0.5, 0.9, 0.95, 0.975, 0.995, 0.05):
        assert stats.t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-7, abs=1e-9)


def test_noise_pools_only_groups_of_two_or_more():
    noise = stats.pooled_noise([[1.0, 3.0], [5.0], [2.0, 4.0, 6.0]])
    assert noise.df == 3
    assert noise.sd == pytest.approx(np.sqrt((2 + 8) / 3))
    assert not stats.pooled_noise([[1.0], [2.0]]).measured
    assert stats.pooled_noise([[0.9, 0.9], [0.8, 0.8, 0.8]]).zero


def test_a_gain_inside_the_noise_is_not_significant_and_one_far_outside_is():
    noise = Noise(0.01, 40)
    inc = [0.95, 0.94, 0.96, 0.95, 0.945]
    assert not stats.seed_test([0.952, 0.951, 0.953], inc, noise, 0.05, 0.95)["passed"]
    far = stats.seed_test([0.985, 0.986, 0.984], inc, noise, 0.05, 0.95)
    assert far["passed"] and far["name"] == "pooled_t" and 0 < far["bound"] < far["delta"]


def test_the_interval_has_the_stated_confidence():
    """A two-sided 95% interval covers the true difference 95% of the time (a +-t(0.95) one covers 90%)."""
    rng = np.random.default_rng(0)
    noise = Noise(1.0, 10_000)  # the noise is known here: coverage depends only on the interval's width
    covered = [stats.seed_test(list(rng.normal(0.3, 1, 3)), list(rng.normal(0, 1, 10)), noise, 0.05, 0.95)
               for _ in range(4000)]
    coverage = np.mean([t["low"] <= 0.3 <= t["high"] for t in covered])
    assert 0.94 <= coverage <= 0.96
    one_sided_pair = np.mean([t["bound"] <= 0.3 <= t["upper"] for t in covered])
    assert 0.88 <= one_sided_pair <= 0.92  # the pair of one-sided bounds at alpha 0.05 is a 90% interval


def test_welch_never_claims_more_certainty_than_the_pooled_noise():
    noise = Noise(0.01, 40)
    inc = [0.95, 0.94, 0.96, 0.95, 0.945]
    agreeing = [0.9701, 0.9700, 0.9702]  # three seeds that happen to agree: their own variance is tiny
    pooled = stats.seed_test(agreeing, inc, noise, 0.05, 0.95)
    welch = stats.seed_test(agreeing, inc, noise, 0.05, 0.95, welch=True)
    assert welch["name"] == "welch_t" and welch["se"] >= pooled["se"] - 1e-12
    spread = [0.99, 0.93, 0.99]  # a noisier candidate: Welch widens, pooled would not
    assert stats.seed_test(spread, inc, noise, 0.05, 0.95, welch=True)["se"] > \
        stats.seed_test(spread, inc, noise, 0.05, 0.95)["se"]


def test_zero_seed_noise_gives_no_test_rather_than_p_zero():
    test = stats.seed_test([0.97, 0.97, 0.97], [0.95] * 10, Noise(0.0, 9), 0.05, 0.95)
    assert test["name"] == "degenerate" and not test["passed"] and "artifact" in test["reason"]


def test_paired_bootstrap_sees_a_clear_gain_and_no_gain():
    rng = np.random.default_rng(1)
    inc = (rng.random(400) < 0.80).astype(float)
    better = np.maximum(inc, (rng.random(400) < 0.5).astype(float))  # fixes half of the errors, breaks none
    boot = stats.paired_bootstrap(better - inc, 0.95, 2000, 2)
    assert 0 < boot["low"] < (better - inc).mean() < boot["high"]
    assert boot["p_not_better"] == 0.0 and boot["p_not_worse"] == 1.0
    same = stats.paired_bootstrap(inc - inc, 0.95, 2000, 2)
    assert same["low"] == same["high"] == 0.0 and same["p_not_better"] == same["p_not_worse"] == 1.0


def test_aa_pooled_test_keeps_its_level():
    """Equal configs: the one-sided pooled test passes about alpha of the time."""
    rng = np.random.default_rng(11)
    noise = Noise(1.0, 60)
    passed = [stats.seed_test(list(rng.normal(0, 1, 3)), list(rng.normal(0, 1, 10)), noise, 0.05, 0.95)["passed"]
              for _ in range(3000)]
    assert 0.035 <= np.mean(passed) <= 0.065
