"""The runs that are best for some trade-off: the Pareto front of the metric against a run's costs.

A run is on the front when no other run is at least as good on the metric and at least as cheap in wall
seconds per seed and peak memory, and strictly better in one of them. Only runs with a metric count, and not
those over a limit of `judge.constraints` (they are never acceptable, whatever the trade-off). A cost that
some of those runs did not report is left out of the comparison, so a trainer that reports no memory still gets
a front over the metric and wall time.

Usage:
    on_front = pareto_front(history, maximize=True)     # {"00003", "00007"}
"""

from __future__ import annotations

COSTS = ("wall_seconds", "peak_memory_mb")  # smaller is better


def eligible(history: list[dict]) -> list[dict]:
    return [e for e in history if e["value"] is not None and e["verdict"] not in ("failed", "over_limit")]


def pareto_front(history: list[dict], maximize: bool) -> set[str]:
    """Run ids of the runs no other run dominates on (metric, wall seconds, peak memory)."""
    runs = eligible(history)
    costs = [c for c in COSTS if runs and all((e.get("costs") or {}).get(c) is not None for e in runs)]
    sign = 1.0 if maximize else -1.0

    def point(e: dict) -> tuple[float, ...]:
        return (sign * e["value"], *(-e["costs"][c] for c in costs))  # every coordinate: larger is better

    points = {e["run_id"]: point(e) for e in runs}
    return {r for r, p in points.items()
            if not any(q != p and all(a >= b for a, b in zip(q, p)) for q in points.values())}
