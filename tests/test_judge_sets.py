"""Champion against challenger over several evaluation sets (autopilot.judge.sets): the paired tests are exact
where they say so, Holm's correction is applied per family, and the rule blocks a promotion on any set's
regression."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as scipy_stats

from autopilot.judge import sets


def brute_signed_rank(d: np.ndarray) -> float:
    d = d[d != 0]
    ranks = sets.average_ranks(np.abs(d))
    observed = ranks[d > 0].sum()
    hits = sum(1 for signs in itertools.product((0, 1), repeat=len(d)) if (ranks * signs).sum() <= observed + 1e-9)
    return hits / 2 ** len(d)


@pytest.mark.parametrize("seed", range(4))
def test_the_signed_rank_test_is_exact_with_ties_and_zeros(seed):
    rng = np.random.default_rng(seed)
    d = np.round(rng.normal(-0.3, 1.0, 11), 1)  # rounded: ties and zeros
    assert sets.signed_rank_less(d) == pytest.approx(brute_signed_rank(d), abs=1e-12)


def test_the_signed_rank_test_agrees_with_scipy_and_switches_to_the_normal_approximation_for_large_sets():
    rng = np.random.default_rng(7)
    d = rng.normal(-0.1, 1.0, 30)
    assert sets.signed_rank_less(d) == pytest.approx(scipy_stats.wilcoxon(d, alternative="less",
                                                                          method="exact").pvalue, rel=1e-9)
    big = rng.normal(-0.05, 1.0, sets.EXACT_LIMIT + 200)
    assert sets.signed_rank_less(big) == pytest.approx(scipy_stats.wilcoxon(big, alternative="less",
                                                                            correction=True).pvalue, rel=1e-6)
    assert sets.signed_rank_less(np.zeros(5)) == 1.0  # nothing changed: no evidence at all


def test_mcnemars_exact_tail_and_holms_step_down():
    for k, n in [(0, 0), (3, 3), (8, 10), (1, 12), (30, 45)]:
        expected = 1.0 if k == 0 else scipy_stats.binomtest(k, n, 0.5, alternative="greater").pvalue
        assert sets.binomial_tail(k, n) == pytest.approx(expected, rel=1e-9)
    assert sets.holm({"a": 0.01, "b": 0.04}, 0.05) == {"a", "b"}  # Bonferroni (0.025 each) would keep b
    assert sets.holm({"a": 0.01, "b": 0.04, "c": 0.03}, 0.05) == {"a"}  # 0.03 > 0.05 / 2: the step-down stops
    assert sets.holm({"a": 0.2}, 0.05) == set() and sets.holm({}, 0.05) == set()


def block(champion_loss, challenger_loss, champion_em=None, challenger_em=None) -> dict:
    def side(loss, em):
        per = {"val_loss": list(loss), **({"exact_match": list(em)} if em is not None else {})}
        return {"metrics": {}, "per_example": per, "outputs": None}

    return {"file": "x.jsonl", "spec": "completion_v1" if champion_em is not None else "chat_sft_v1", "skill": None,
            "examples": len(champion_loss), "champion": side(champion_loss, champion_em),
            "challenger": side(challenger_loss, challenger_em)}


RNG = np.random.default_rng(0)
BASE = RNG.uniform(1.0, 2.0, 40)


def compare(eval_sets: dict, metric: str = "val_loss", **thresholds) -> sets.Comparison:
    return sets.compare(eval_sets, thresholds, default_rise=0.15, alpha=0.05, metric=metric, seed=1)


def test_a_clear_gain_on_one_set_with_none_worse_is_improved():
    result = compare({"val": block(BASE, BASE * 0.7), "other": block(BASE, BASE * 1.01)})
    assert result.verdict == "improved" and [s.name for s in result.sets if s.improved] == ["val"]
    val = result.sets[0]
    assert val.loss["rise"] == pytest.approx(-0.3) and val.loss["p_lower"] < 1e-6
    assert val.loss["interval"]["high"] < 0  # challenger - champion, lower is better


def test_a_loss_rise_beyond_a_sets_threshold_blocks_the_promotion_whatever_the_other_sets_gained():
    result = compare({"val": block(BASE, BASE * 0.5), "skill": block(BASE, BASE * 1.2)})
    assert result.verdict == "regressed" and "skill" in result.reason and "+20.0%" in result.reason
    assert [s.name for s in result.sets if s.regressed] == ["skill"]
    lenient = compare({"val": block(BASE, BASE * 0.5), "skill": block(BASE, BASE * 1.2)}, skill=0.25)
    assert lenient.verdict == "improved"  # the set's own max_loss_rise


def test_a_significant_exact_match_drop_on_any_set_is_regressed_and_a_small_one_is_not():
    right, wrong = np.ones(40), np.zeros(40)
    dropped = right.copy()
    dropped[:12] = 0  # 12 lost, none gained
    result = compare({"val": block(BASE, BASE * 0.6), "em": block(BASE, BASE, right, dropped)})
    assert result.verdict == "regressed"
    em = next(s for s in result.sets if s.name == "em")
    assert em.exact_match["losses"] == 12 and em.exact_match["p_drop"] < 0.001 and em.regressed
    one = right.copy()
    one[0] = 0
    assert compare({"val": block(BASE, BASE * 0.6), "em": block(BASE, BASE, right, one)}).verdict == "improved"
    assert compare({"em": block(BASE, BASE, wrong, wrong)}).verdict == "inconclusive"


def test_the_studys_metric_decides_what_counts_as_better():
    champion, challenger = np.zeros(40), np.zeros(40)
    challenger[:15] = 1  # 15 gained, none lost, same loss
    eval_sets = {"em": block(BASE, BASE, champion, challenger)}
    assert compare(eval_sets, metric="exact_match").verdict == "improved"
    assert compare(eval_sets, metric="val_loss").verdict == "inconclusive"


def test_holm_counts_every_set_a_gain_could_have_been_found_on():
    """A gain just below alpha on one set of one is improved; the same gain among five unchanged sets is not."""
    gain = BASE.copy()
    order = np.argsort(-BASE)
    gain[order[:7]] *= 0.9  # seven examples better, four a little worse, the rest the same: p = 0.021
    gain[order[7:11]] *= 1.03
    alone = compare({"val": block(BASE, gain)})
    p = alone.sets[0].loss["p_lower"]
    assert 0.05 / 6 < p < 0.05, p
    assert alone.verdict == "improved"
    crowd = compare({"val": block(BASE, gain), **{f"s{i}": block(BASE, BASE) for i in range(5)}})
    assert crowd.verdict == "inconclusive" and "over 6 set(s)" in crowd.reason
