"""Policies turn a study's history into the next run's overrides, with a rationale and a hypothesis.

A policy is a function `propose(ctx: Context) -> dict` returning at least `overrides`, `rationale` and
`hypothesis` (and optionally `housekeeping`). It keeps no state of its own: everything it knows comes from
the Context, which is built from files under runs/<study>/. Which policy runs, the guard check and the
fallback are decided in `autopilot.propose.decide`.
"""

from __future__ import annotations

from dataclasses import dataclass

from autopilot.study import Study


@dataclass(frozen=True)
class Context:
    study: Study
    run_id: str
    history: list[dict]  # the runs of earlier generations only: the same for every run of a generation
    best: dict | None
    index: int = 0  # the run's place in its generation: the policy proposes the generation's index-th point
    # what was proposed for the earlier places of this generation (run_id, policy, overrides): runs that train
    # alongside this one, known to a policy that proposes one run after another (the LLM policies)
    siblings: tuple[dict, ...] = ()

    def describe_best(self) -> str:
        if self.best is None:
            return "no successful run yet"
        return (f"the best so far is run {self.best['run_id']} with {self.study.metric_name}="
                f"{self.best['value']:.4g} over {len(self.best['seed_values'])} seed(s)")


def changed_from_baseline(point: dict, baseline: dict) -> dict:
    """The part of a full point that differs from the baseline: the overrides."""
    out = {}
    for key, value in point.items():
        base = baseline.get(key)
        same = (isinstance(value, float) and isinstance(base, (int, float)) and not isinstance(base, bool)
                and abs(value - base) <= 1e-12 * max(abs(value), abs(base), 1.0))
        if not same and value != base:
            out[key] = value
    return out


def describe_overrides(overrides: dict) -> str:
    if not overrides:
        return "no change from the baseline"
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in overrides.items())


def point_of(overrides: dict, baseline: dict, space: dict) -> dict:
    """The full point of the search space a run trains: the baseline with the overrides applied."""
    merged = {**baseline, **overrides}
    return {k: merged[k] for k in space if k in merged}


def same_point(a: dict, b: dict) -> bool:
    """Equal points, floats compared to 1e-9 relative (a value written back by an LLM may be rounded)."""
    if a.keys() != b.keys():
        return False
    for key, x in a.items():
        y = b[key]
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
        if numbers and abs(x - y) <= 1e-9 * max(abs(x), abs(y), 1.0):
            continue
        if x != y:
            return False
    return True
