"""Noise regimes: each side of a test is judged with the pooled noise of the runs near its noise keys."""

import numpy as np
import pytest

from autopilot.judge import regimes, stats
from autopilot.judge.stats import Noise

KEYS = ("lr", "batch_size")


def entry(run_id: str, lr: float, values: list[float], batch_size: int = 32) -> dict:
    """A history line whose record is `values` (seeds that selected nothing)."""
    seeds = [{"k": k, "stage": "baseline" if run_id == "00001" else "record", "status": "completed", "value": v}
             for k, v in enumerate(values)]
    return {"run_id": run_id, "verdict": "baseline" if run_id == "00001" else "improved", "seeds": seeds,
            "seed_values": values, "params": {"lr": lr, "batch_size": batch_size, "width": 8}}


def test_numbers_within_a_factor_of_two_are_one_regime_and_other_values_must_be_equal():
    assert regimes.near({"lr": 0.01, "batch_size": 32}, {"lr": 0.019, "batch_size": 64}, KEYS)
    assert not regimes.near({"lr": 0.01}, {"lr": 0.03}, KEYS)
    assert not regimes.near({"lr": 0.01, "batch_size": 32}, {"lr": 0.01, "batch_size": 128}, KEYS)
    assert regimes.near({"lr": 0.01, "opt": "sgd"}, {"lr": 0.01, "opt": "adam"}, KEYS)  # not a noise key
    assert not regimes.near({"opt": "sgd"}, {"opt": "adam"}, ("opt",))
    assert not regimes.near({"dropout": 0.0}, {"dropout": 0.1}, ("dropout",))  # zero is no ratio
    assert regimes.near({"lr": 0.01}, {"batch_size": 32}, KEYS)  # no key both set: no evidence either way


def test_each_side_gets_the_noise_of_its_own_regime():
    rng = np.random.default_rng(0)
    quiet = [entry("00001", 0.001, list(rng.normal(0.9, 0.005, 10)))]
    loud = [entry(f"0000{i}", 0.1, list(rng.normal(0.8, 0.05, 5))) for i in range(2, 6)]
    history = quiet + loud
    study = stats.pooled_noise([e["seed_values"] for e in history])
    q = regimes.regime_noise(history, {"lr": 0.0015, "batch_size": 32}, KEYS, study)
    loud_noise = regimes.regime_noise(history, {"lr": 0.08, "batch_size": 32}, KEYS, study)
    assert q.df == 9 and q.sd < 0.01 < 0.03 < loud_noise.sd and loud_noise.df == 16
    assert q.sd < study.sd < loud_noise.sd
    # a regime nobody trained in, and a study without noise keys: the study's noise
    assert regimes.regime_noise(history, {"lr": 0.01, "batch_size": 32}, KEYS, study) == study
    assert regimes.regime_noise(history, {"lr": 0.0015}, (), study) == study


def test_the_run_judged_never_counts_in_its_own_regime():
    history = [entry("00001", 0.1, [0.80, 0.81, 0.79, 0.80, 0.805, 0.80, 0.79, 0.81, 0.80, 0.80]),
               entry("00002", 0.01, [0.9, 0.9000001, 0.9, 0.9000001, 0.9, 0.9000001, 0.9, 0.9000001, 0.9, 0.9])]
    study = stats.pooled_noise([e["seed_values"] for e in history])
    own = regimes.regime_noise(history, {"lr": 0.01}, KEYS, study, exclude="00002")
    assert own == study  # its agreeing seeds alone would claim a tiny noise


def test_a_quiet_candidate_against_a_loud_incumbent_is_tested_with_each_sides_noise():
    inc = [0.80, 0.83, 0.78, 0.81, 0.79, 0.82, 0.80, 0.84, 0.77, 0.80]
    cand = [0.83, 0.835, 0.832]
    study, quiet, loud = Noise(0.03, 40), Noise(0.004, 20), Noise(0.02, 30)
    pooled = stats.seed_test(cand, inc, study, 0.05, 0.95)
    two = stats.seed_test(cand, inc, quiet, 0.05, 0.95, inc_noise=loud)
    assert two["name"] == "regime_t" and two["se"] == pytest.approx(np.sqrt(0.004 ** 2 / 3 + 0.02 ** 2 / 10))
    assert two["se"] < pooled["se"] and two["candidate_noise"] == {"sd": 0.004, "df": 20}
    assert two["incumbent_noise"] == {"sd": 0.02, "df": 30}
    welch = stats.seed_test(cand, inc, quiet, 0.01, 0.95, welch=True, inc_noise=loud)
    own = np.var(inc, ddof=1) / 10  # the incumbent's own spread is above its regime's floor: Welch keeps it
    expected = np.sqrt(0.004 ** 2 / 3 + max(own, 0.02 ** 2 / 10))
    assert welch["name"] == "welch_t" and welch["se"] == pytest.approx(expected)


def test_a_regime_test_keeps_its_stated_error_rate():
    """Each side's own noise, known well: a one-sided test at alpha 0.05 rejects a true null 5% of the time."""
    rng = np.random.default_rng(3)
    quiet, loud = Noise(0.5, 400), Noise(2.0, 400)
    rejections = [stats.seed_test(list(rng.normal(0, 0.5, 3)), list(rng.normal(0, 2.0, 10)), quiet, 0.05, 0.95,
                                  inc_noise=loud)["passed"] for _ in range(4000)]
    assert 0.04 <= np.mean(rejections) <= 0.06
