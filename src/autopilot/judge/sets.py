"""Champion against challenger over several evaluation sets: paired tests per set, one rule for all of them.

In continual mode a run's trainer measures two models on the same examples in one process: the champion it
started from, before its first step, and the challenger it trained (autopilot.train.eval_sets). The question is
about these two models, not about a config: a run trains one seed, and the noise that remains is which examples
a set happens to hold, which the paired tests below account for. Per set:

  loss         rise = mean loss of the challenger / mean loss of the champion - 1 (mean answer-token loss per
               example). Wilcoxon's signed-rank test, one-sided, on the per-example differences, says whether the
               challenger's loss is lower (robust to the few examples that move a lot, no normality assumed;
               exact below EXACT_LIMIT examples, normal approximation with tie correction above).
  exact match  completion_v1 and syllo_v1 sets: McNemar's exact test on the examples the two models disagree on,
               one-sided, for a drop and for a gain.

The rule over the sets:
  1. regressed   the loss of any set rises by more than its threshold (default 15%: a size of effect, not a
                 test), or the exact match of any set drops significantly: Holm at alpha over the sets' drop tests;
  2. improved    otherwise, the study's metric (loss, or exact match) is better with significance on at least one
                 set: Holm at alpha over the sets' improvement tests;
  3. inconclusive otherwise.

Multiple comparisons: Holm's step-down correction (Holm 1979) in each family. It keeps the family-wise error rate
at alpha whatever the dependence between the sets, and the sets are dependent: the same two models answer all of
them, so a change that moves one set moves the others. It rejects everything Bonferroni rejects and more, at no
extra assumption (Hochberg and Hommel need positive dependence; Benjamini-Hochberg bounds the false discovery rate,
the wrong quantity for a gate where one false "improved" promotes a model and one false "regressed" quarantines a
good dataset). Regression by loss needs no correction: it is a threshold on the size of the rise, set by people.

Usage:
    result = compare(eval_sets, thresholds, default_rise=0.15, alpha=0.05, metric="val_loss", seed=7)
    result.verdict, result.sets, result.reason
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

EXACT_LIMIT = 400  # Wilcoxon's exact null distribution up to this many nonzero differences
BOOTSTRAP_SAMPLES = 2000
CONFIDENCE = 0.95


# ---------------------------------------------------------------- the tests

def signed_rank_less(diff: np.ndarray) -> float:
    """One-sided p-value of Wilcoxon's signed-rank test that the differences are centred below zero."""
    d = np.asarray(diff, dtype=np.float64)
    d = d[d != 0]
    n = len(d)
    if n == 0:
        return 1.0
    ranks = average_ranks(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    if n <= EXACT_LIMIT:  # exact, given the ties: doubled ranks are integers, the null is a sum of coin flips
        doubled = np.rint(2 * ranks).astype(np.int64)
        dist = np.zeros(int(doubled.sum()) + 1)
        dist[0] = 1.0
        for r in doubled:  # each rank is in W+ or not, with probability 1/2
            shifted = np.zeros_like(dist)
            shifted[r:] = dist[:len(dist) - r]
            dist = 0.5 * (dist + shifted)
        return float(min(1.0, dist[: int(round(2 * w_plus)) + 1].sum()))
    _, counts = np.unique(np.abs(d), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - float((counts ** 3 - counts).sum()) / 48
    z = (w_plus - n * (n + 1) / 4 + 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(-z / math.sqrt(2))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def binomial_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2): McNemar's exact one-sided p-value with k of n discordant pairs."""
    if k <= 0:
        return 1.0
    log_half = n * math.log(0.5)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half for i in range(k, n + 1)]
    top = max(terms)
    return float(min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms)))


def holm(p_values: dict[str, float], alpha: float) -> set[str]:
    """The hypotheses Holm's step-down procedure rejects at family-wise level alpha."""
    rejected = set()
    m = len(p_values)
    for i, (name, p) in enumerate(sorted(p_values.items(), key=lambda kv: (kv[1], kv[0]))):
        if p > alpha / (m - i):
            break
        rejected.add(name)
    return rejected


def bootstrap_interval(diff: np.ndarray, seed: int) -> dict:
    """Percentile interval of the mean paired difference (challenger - champion), resampling examples."""
    d = np.asarray(diff, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(BOOTSTRAP_SAMPLES, len(d)))].mean(axis=1)
    low, high = np.quantile(means, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return {"low": float(low), "high": float(high), "method": f"paired_bootstrap ({BOOTSTRAP_SAMPLES} resamples, "
                                                             f"{CONFIDENCE:.0%})"}


# ---------------------------------------------------------------- one set

@dataclass
class SetResult:
    name: str
    spec: str
    examples: int
    max_loss_rise: float
    loss: dict  # champion, challenger, rise, p_lower, interval
    exact_match: dict | None  # champion, challenger, gains, losses, p_drop, p_gain
    skill: str | None = None
    improved: bool = False
    regressed: list[str] = field(default_factory=list)  # why, in words

    def as_dict(self) -> dict:
        return {"name": self.name, "spec": self.spec, "skill": self.skill, "examples": self.examples,
                "max_loss_rise": self.max_loss_rise, "loss": self.loss, "exact_match": self.exact_match,
                "improved": self.improved, "regressed": self.regressed}


def measure_set(name: str, block: dict, max_loss_rise: float, seed: int) -> SetResult:
    """The paired statistics of one set of trainer_summary.json `eval_sets`."""
    c, x = block["champion"]["per_example"], block["challenger"]["per_example"]
    lc, lx = np.asarray(c["val_loss"]), np.asarray(x["val_loss"])
    loss = {"champion": float(lc.mean()), "challenger": float(lx.mean()),
            "rise": float(lx.mean() / lc.mean() - 1) if lc.mean() > 0 else (0.0 if lx.mean() == 0 else math.inf),
            "p_lower": signed_rank_less(lx - lc), "interval": bootstrap_interval(lx - lc, seed)}
    em = None
    if "exact_match" in c and "exact_match" in x:
        ec, ex = np.asarray(c["exact_match"]) > 0.5, np.asarray(x["exact_match"]) > 0.5
        gains, losses = int((ex & ~ec).sum()), int((ec & ~ex).sum())
        em = {"champion": float(ec.mean()), "challenger": float(ex.mean()), "gains": gains, "losses": losses,
              "p_drop": binomial_tail(losses, gains + losses), "p_gain": binomial_tail(gains, gains + losses)}
    return SetResult(name, block["spec"], block["examples"], max_loss_rise, loss, em, block.get("skill"))


# ---------------------------------------------------------------- the rule

@dataclass
class Comparison:
    verdict: str  # improved | regressed | inconclusive
    sets: list[SetResult]
    reason: str


def compare(eval_sets: dict, thresholds: dict[str, float | None], default_rise: float, alpha: float, metric: str,
            seed: int) -> Comparison:
    """The verdict of the rule above over every set; `thresholds` maps a set's name to its own max_loss_rise."""
    sets = [measure_set(name, block, thresholds.get(name) or default_rise, seed + i)
            for i, (name, block) in enumerate(eval_sets.items())]
    for s in sets:
        if s.loss["rise"] > s.max_loss_rise:
            s.regressed.append(f"loss {s.loss['champion']:.4f} -> {s.loss['challenger']:.4f} "
                               f"({s.loss['rise']:+.1%}, more than {s.max_loss_rise:.0%})")
    drops = holm({s.name: s.exact_match["p_drop"] for s in sets if s.exact_match}, alpha)
    for s in sets:
        if s.name in drops:
            em = s.exact_match
            s.regressed.append(f"exact match {em['champion']:.1%} -> {em['challenger']:.1%} ({em['losses']} lost, "
                               f"{em['gains']} gained; McNemar p={em['p_drop']:.2g}, Holm at {alpha:g})")
    if metric == "exact_match":
        better = {s.name: s.exact_match["p_gain"] for s in sets if s.exact_match}
    else:
        better = {s.name: s.loss["p_lower"] for s in sets}
    for s in sets:
        s.improved = s.name in holm(better, alpha)
    regressed = [s for s in sets if s.regressed]
    if regressed:
        return Comparison("regressed", sets, "; ".join(f"{s.name}: {', '.join(s.regressed)}" for s in regressed))
    improved = [s for s in sets if s.improved]
    if improved:
        return Comparison("improved", sets, f"{metric} better on {', '.join(s.name for s in improved)} "
                                            f"(Holm at {alpha:g} over {len(better)} set(s)); no set regressed")
    return Comparison("inconclusive", sets, f"no set's {metric} changed significantly (Holm at {alpha:g} over "
                                            f"{len(better)} set(s)) and none regressed")
