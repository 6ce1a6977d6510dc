"""The judge: is a run better than the best so far, worse, or can we not tell?

Seeds are the unit. Two seeds of one config give two different models, and one seed's errors move together
across examples, so a paired test over examples alone calls a plain rerun "better" far too often. The
judge therefore works at the level of seeds whenever the study's seed noise is measured:

* The baseline (first successful run) is trained with `noise_seeds` extra seeds; the spread of seed-level
  metrics within every multi-seed run of the study is the noise floor (pooled standard deviation).
* A candidate trains one seed. Unless it beats the incumbent's mean it is not confirmed further
  (`needs_confirmation`). Otherwise it trains `confirm_seeds` more seeds (or `max_confirm_seeds` when it
  changes a key that may change the noise, e.g. the learning rate), and is `improved` only when the
  one-sided interval of the difference of seed means clears zero: a pooled t-test with the study's noise
  floor, or Welch's test for noise-altering changes.
* `regressed` when the interval lies below zero, `inconclusive` otherwise.

The paired bootstrap over per-example scores (seed-averaged) gives each comparison's interval for the
record and decides alone only where no seed noise could be measured.

Usage:
    verdict = judge_run(study, run_id)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from autopilot.settings import Judge

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeedResult:
    value: float
    per_example: np.ndarray | None


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str


# --- statistics ---------------------------------------------------------------------------------------
def paired_bootstrap(
    cand: np.ndarray, inc: np.ndarray, confidence: float, samples: int, seed: int, maximize: bool = True
) -> Interval:
    """Percentile interval of mean(cand - inc) over examples resampled with replacement (paired)."""
    diff = np.asarray(cand, dtype=np.float64) - np.asarray(inc, dtype=np.float64)
    if not maximize:
        diff = -diff  # "better" is always positive
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(samples, len(diff)))
    means = diff[idx].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(low), float(high), "paired_bootstrap")


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz's method)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom.

    Computed here rather than with scipy: importing scipy.special costs half a second of every judge's start.
    """
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t > 0 else 1.0 - tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on t_sf (monotone), to 1e-10."""
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > 1.0 - p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_sf(mid, df) > 1.0 - p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return 0.5 * (lo + hi)


def pooled_noise(groups: list[list[float]]) -> tuple[float, int]:
    """Pooled within-group standard deviation and its degrees of freedom (groups of size < 2 add nothing)."""
    ss, df = 0.0, 0
    for g in groups:
        if len(g) >= 2:
            a = np.asarray(g, dtype=np.float64)
            ss += float(((a - a.mean()) ** 2).sum())
            df += len(g) - 1
    return (math.sqrt(ss / df) if df else float("nan")), df


def seed_test(
    cand: list[float], inc: list[float], noise_groups: list[list[float]], alpha: float, welch: bool
) -> dict:
    """One-sided test that the candidate's seed mean beats the incumbent's (values oriented: higher is better).

    Pooled: the standard deviation is pooled over the candidate, the incumbent and every other multi-seed run
    of the study (the noise floor). Welch: each side's own variance (used when the change may alter noise).
    Returns the delta, a one-sided lower bound and a two-sided interval at 1 - 2*alpha, the p-value and df.
    """
    c, i = np.asarray(cand, dtype=np.float64), np.asarray(inc, dtype=np.float64)
    delta = float(c.mean() - i.mean())
    if welch and len(c) >= 2 and len(i) >= 2:
        vc, vi = c.var(ddof=1) / len(c), i.var(ddof=1) / len(i)
        se = math.sqrt(vc + vi)
        # Welch-Satterthwaite degrees of freedom
        df = (vc + vi) ** 2 / ((vc**2) / (len(c) - 1) + (vi**2) / (len(i) - 1)) if se > 0 else len(c) + len(i) - 2.0
        name = "welch_t"
    else:
        sd, df = pooled_noise([list(c), list(i), *noise_groups])
        if df == 0:
            return {"name": "none", "delta": delta, "reason": "seed noise not measured"}
        se = sd * math.sqrt(1 / len(c) + 1 / len(i))
        name = "pooled_t"
    if se == 0:
        # every seed gave the same value: the difference is exact
        p = 0.0 if delta > 0 else 1.0
        return {"name": name, "delta": delta, "se": 0.0, "df": df, "p_value": p, "low": delta, "high": delta,
                "one_sided_low": delta, "one_sided_high": delta, "alpha": alpha}
    q = t_quantile(1 - alpha, df)
    return {
        "name": name, "delta": delta, "se": se, "df": df, "alpha": alpha,
        "p_value": t_sf(delta / se, df),
        "one_sided_low": delta - q * se,
        "one_sided_high": delta + q * se,
        "low": delta - q * se, "high": delta + q * se,
    }


# --- the decisions --------------------------------------------------------------------------------------
def needs_confirmation(first_value: float, incumbent_values: list[float], maximize: bool) -> bool:
    """Train more seeds only for a candidate whose first seed beats the incumbent's mean."""
    mean = float(np.mean(incumbent_values))
    return first_value > mean if maximize else first_value < mean


def extra_seeds_for(overrides: dict, settings: Judge, code_changed: bool = False) -> tuple[int, bool]:
    """How many confirmation seeds a candidate gets, and whether Welch's test applies (a noise key changed, or the
    code: every patch is treated as possibly changing the noise)."""
    noisy = code_changed or any(k in settings.noise_keys for k in overrides)
    return (settings.max_confirm_seeds if noisy else settings.confirm_seeds), noisy


def decide(
    cand: list[SeedResult],
    inc: list[SeedResult],
    noise_groups: list[list[float]],
    settings: Judge,
    maximize: bool,
    welch: bool,
    bootstrap_seed: int,
    example_maximize: bool | None = None,
) -> dict:
    """Verdict of a candidate against the incumbent, with everything that went into it."""
    sign = 1.0 if maximize else -1.0
    cand_v = [sign * s.value for s in cand]
    inc_v = [sign * s.value for s in inc]
    noise_v = [[sign * v for v in g] for g in noise_groups]
    alpha = settings.alpha
    boot = None
    if all(s.per_example is not None for s in cand + inc) and cand and inc:
        c_ex = np.mean([s.per_example for s in cand], axis=0)
        i_ex = np.mean([s.per_example for s in inc], axis=0)
        if c_ex.shape == i_ex.shape:
            # per-example scores have their own direction (a loss per example for an accuracy metric...)
            ex_max = maximize if example_maximize is None else example_maximize
            iv = paired_bootstrap(c_ex, i_ex, settings.confidence, settings.bootstrap_samples,
                                  bootstrap_seed, ex_max)
            boot = {"low": iv.low, "high": iv.high, "oriented": True, "example_maximize": ex_max,
                    "confidence": settings.confidence,
                    "samples": settings.bootstrap_samples, "n_examples": int(c_ex.shape[0]),
                    "method": "paired bootstrap over seed-averaged per-example scores"}
    test = seed_test(cand_v, inc_v, noise_v, alpha, welch)
    if test["name"] != "none":
        low, high = test["one_sided_low"], test["one_sided_high"]
        method = f"{test['name']} over seed-level metrics (one-sided bounds at alpha {alpha})"
        # a single seed is a screen, not evidence: `improved` needs the confirmation seeds
        can_improve = len(cand) > 1
    elif boot is not None:
        low, high = boot["low"], boot["high"]
        method = "paired_bootstrap over examples (seed noise not measured)"
        can_improve = True
    else:
        low = high = test["delta"]
        method = "difference of single values (no per-example scores, no seed noise)"
        can_improve = False
    if low > 0 and can_improve:
        verdict = "improved"
    elif high < 0:
        verdict = "regressed"
    else:
        verdict = "inconclusive"
    # report in the metric's own units: oriented values are flipped back for a metric to minimize
    if boot is not None:
        if not boot.pop("example_maximize"):
            boot["low"], boot["high"] = -boot["high"], -boot["low"]
        boot.pop("oriented")
    raw_low, raw_high = (low, high) if maximize else (-high, -low)
    return {
        "verdict": verdict,
        "delta": sign * test["delta"],
        "interval": {"low": raw_low, "high": raw_high, "method": method},
        "test": test,
        "bootstrap": boot,
    }
