"""The judge's statistics: a one-sided test over seed-level metrics, the noise it needs, the paired bootstrap.

Values handed to `seed_test` are oriented (higher is better); the caller flips a metric to minimize. Nothing
here knows about runs, files or the protocol (`autopilot.judge.protocol` decides which seeds are compared).

* `seed_test` compares the mean of a candidate's seeds with the mean of the incumbent's. Pooled: one standard
  deviation for both sides, pooled over groups of seeds (`pooled_noise`): with tens of degrees of freedom it is
  far steadier than the two or five seeds of one run. When the two sides lie in different noise regimes, each
  side has its own pooled noise (`inc_noise`; `regime_t`, Welch-Satterthwaite degrees of freedom). Welch: each
  side keeps its own variance, floored at its pooled variance, so that a run whose few seeds happen to agree
  never looks more certain than the noise around it allows; a floored side brings the pooled df.
* The decision is one-sided at `alpha`; the interval reported beside it is two-sided at `confidence`, and says
  so (a bound at t(1 - alpha) on each side is a 1 - 2 alpha interval, not a 1 - alpha one).
* Zero seed variance (a trainer that ignores its seed) gives no test at all (`name: degenerate`): the standard
  error is zero and p = 0 would be an artifact, not evidence. The caller falls back to the paired bootstrap.
* `paired_bootstrap` resamples examples of the fixed evaluation set, pairing the two runs' per-example scores.

Usage:
    test = seed_test([0.95, 0.96, 0.955], [0.94, 0.945], Noise(0.008, 30), alpha=0.05, confidence=0.95)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Noise:
    """The study's seed noise: a pooled standard deviation and its degrees of freedom (0: not measured)."""

    sd: float
    df: int

    @property
    def measured(self) -> bool:
        return self.df > 0

    @property
    def zero(self) -> bool:
        """Every group of seeds gave identical values: the trainer ignores its seed."""
        return self.measured and self.sd == 0.0


def paired_bootstrap(diff: np.ndarray, confidence: float, samples: int, seed: int) -> dict:
    """Resample the examples of `diff` (per-example candidate - incumbent, oriented: positive is better) with
    replacement: the percentile interval of the mean at `confidence`, and the shares of resamples whose mean is
    not above zero (`p_not_better`) and not below it (`p_not_worse`): one-sided bootstrap p-values."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(samples, len(diff)))
    means = diff[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {"low": float(low), "high": float(high), "p_not_better": float(np.mean(means <= 0.0)),
            "p_not_worse": float(np.mean(means >= 0.0))}


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


@functools.lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on t_sf (monotone), to 1e-10 (cached: a study asks for the same
    few levels and pooled degrees of freedom again and again)."""
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


def pooled_noise(groups: list[list[float]]) -> Noise:
    """Pooled within-group standard deviation and its degrees of freedom (groups of size < 2 add nothing)."""
    ss, df, identical = 0.0, 0, True
    for g in groups:
        if len(g) >= 2:
            a = np.asarray(g, dtype=np.float64)
            ss += float(((a - a.mean()) ** 2).sum())
            df += len(g) - 1
            identical = identical and bool(a.min() == a.max())
    if not df:
        return Noise(float("nan"), 0)
    return Noise(0.0 if identical else math.sqrt(ss / df), df)  # exact zero, not a rounding residue


def _side(values: np.ndarray, noise: Noise, welch: bool) -> tuple[float, float]:
    """One side's variance of its mean and the df it brings: its pooled noise's; with Welch its own variance
    unless that is below the pooled one (few seeds that happen to agree prove nothing)."""
    n = len(values)
    own = float(values.var(ddof=1)) if welch and n >= 2 else 0.0
    floor = noise.sd ** 2
    if own > floor:
        return own / n, float(n - 1)
    return floor / n, float(noise.df)


def seed_test(cand: list[float], inc: list[float], noise: Noise, alpha: float, confidence: float,
              welch: bool = False, inc_noise: Noise | None = None) -> dict:
    """One-sided test that the candidate's seed mean is above the incumbent's (oriented values).

    `noise` is the candidate side's pooled noise and `inc_noise` the incumbent side's (None: the same).

    Returns the delta, its standard error and df, the p-value, `bound` (the one-sided lower bound at `alpha`:
    the decision is `bound > 0`), `upper` (the one-sided upper bound: `upper < 0` is a clear regression),
    and `low`/`high`, the two-sided interval at `confidence`.
    """
    c, i = np.asarray(cand, dtype=np.float64), np.asarray(inc, dtype=np.float64)
    inc_noise = noise if inc_noise is None else inc_noise
    delta = float(c.mean() - i.mean())
    base = {"delta": delta, "n_candidate": len(c), "n_incumbent": len(i), "alpha": alpha, "confidence": confidence}
    if not (noise.measured and inc_noise.measured):
        return {"name": "none", **base, "passed": False, "reason": "seed noise not measured"}
    if noise.zero or inc_noise.zero:
        return {"name": "degenerate", **base, "passed": False,
                "reason": "every seed of the study gave the same value (the trainer ignores its seed?): the "
                          "standard error is 0 and p = 0 would be an artifact, not evidence"}
    base |= {"candidate_noise": {"sd": noise.sd, "df": noise.df}, "incumbent_noise": {"sd": inc_noise.sd,
                                                                                         "df": inc_noise.df}}
    if welch or inc_noise != noise:
        (vc, dc), (vi, di) = _side(c, noise, welch), _side(i, inc_noise, welch)
        se = math.sqrt(vc + vi)
        df = (vc + vi) ** 2 / (vc ** 2 / dc + vi ** 2 / di)  # Welch-Satterthwaite
        name = "welch_t" if welch else "regime_t"
    else:
        se = noise.sd * math.sqrt(1 / len(c) + 1 / len(i))
        df = float(noise.df)
        name = "pooled_t"
    one = t_quantile(1 - alpha, df)
    two = t_quantile(0.5 + confidence / 2, df)
    bound = delta - one * se
    return {"name": name, **base, "se": se, "df": df, "p_value": t_sf(delta / se, df),
            "bound": bound, "upper": delta + one * se, "low": delta - two * se, "high": delta + two * se,
            "passed": bound > 0}
