"""Noise regimes: the seed noise each side of a comparison is judged with.

Seed noise is rarely one number for a whole study: a learning rate near divergence or a small batch makes
seeds disagree far more than a quiet config does (the keys that do so are the study's `judge.noise_keys`).
Pooled over every run of the study, the spread of the loud configs a search explores inflates the test of a
quiet candidate (a real gain goes unseen), and a loud candidate would be judged with too small a noise.

So each side of a test is judged with the pooled noise of its *regime*: the runs whose noise keys all lie near
its own: numbers within a factor of `REGIME_FACTOR` of each other (a learning rate of 0.01 and 0.02, a batch of
32 and 64), anything else equal. A regime with fewer than `MIN_DF` degrees of freedom falls back to the study's
pooled noise, as does every regime of a study without noise keys (all its runs are one regime). The run being
judged never counts in its own regime: its own few seeds, which may happen to agree, would make it look more
certain than the configs around it allow. The incumbent's record, seeds that selected nothing, does count in
the incumbent's.

Measured (benchmarks/judge_study.py, README "How a run is judged"): on the log-scaled search problem, whose
noise grows with the learning rate, regimes moved the short study's regret ratio to plain TPE only from 1.48 to
1.44 (within the noise of 30 studies); with a tenth of the candidates 3x noisier in another regime, A/A false
promotions stayed at 0.20 per study, as with one pooled noise.

Usage:
    noise = regime_noise(history, params, ("lr", "batch_size"), study_noise, exclude="00012")
"""

from __future__ import annotations

import math

from autopilot import ledger
from autopilot.judge import stats
from autopilot.judge.stats import Noise

REGIME_FACTOR = 2.0  # two numeric values of a noise key within this factor are one regime
MIN_DF = 8  # a regime with fewer degrees of freedom is not measured well enough: the study's noise instead


def near(a: dict, b: dict, keys: tuple[str, ...]) -> bool:
    """Whether two configs' values of the noise keys lie in one regime (a key only one of them sets is no
    evidence either way)."""
    for key in keys:
        if key not in a or key not in b:
            continue
        x, y = a[key], b[key]
        if isinstance(x, bool) or isinstance(y, bool) or not all(isinstance(v, (int, float)) for v in (x, y)):
            if x != y:
                return False
        elif x > 0 and y > 0:
            if max(x, y) / min(x, y) > REGIME_FACTOR:
                return False
        elif not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
            return False
    return True


def regime_noise(history: list[dict], params: dict, keys: tuple[str, ...], study_noise: Noise,
                 exclude: str | None = None) -> Noise:
    """The pooled noise of the runs of `history` in the regime of `params` (not run `exclude`), or the study's
    when there are no noise keys or the regime has fewer than MIN_DF degrees of freedom."""
    if not keys:
        return study_noise
    noise = stats.pooled_noise(ledger.noise_groups(
        history, keep=lambda e: e["run_id"] != exclude and near(e.get("params") or {}, params, keys)))
    return noise if noise.df >= MIN_DF else study_noise
