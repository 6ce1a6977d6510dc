"""How a run's changes and result read, the same in the results table, the labbook, the report and the prompt."""

from __future__ import annotations

VERDICT_STYLE = {"improved": "green", "baseline": "cyan", "regressed": "red", "failed": "red",
                 "inconclusive": "yellow", "stopped": "magenta", "skipped": "magenta",
                 "over_limit": "dark_orange"}  # rich styles of verdicts


def duration(seconds: float | None) -> str:
    """`45s`, `3m07s`, `2h05m`; `-` when unknown."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def number(value: float | None, fmt: str = ".4f") -> str:
    """A metric or loss with four decimals; `-` when there is none."""
    return "-" if value is None else format(value, fmt)


def cost_items(entry: dict, parameters_unit: str = "params") -> list[str]:
    """What one seed of a run cost, as the run reported it: `12.3 s`, `210 MB`, `3,818 params` (absent ones left
    out)."""
    costs = entry.get("costs") or {}
    items = [f"{costs['wall_seconds']:.1f} s" if costs.get("wall_seconds") is not None else None,
             f"{costs['peak_memory_mb']:.0f} MB" if costs.get("peak_memory_mb") is not None else None,
             f"{costs['parameters']:,} {parameters_unit}" if costs.get("parameters") is not None else None]
    return [item for item in items if item]


def describe_overrides(overrides: dict) -> str:
    """`lr=0.003, width=32`, or that nothing changed."""
    if not overrides:
        return "no change from the baseline"
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in overrides.items())


def metric_text(entry: dict, sep: str = " ") -> str:
    """A ledger entry's metric: `0.9712 (3 seeds)`, `-` when it has none."""
    if entry["value"] is None:
        return "-"
    seeds = len(entry["seed_values"])
    return f"{entry['value']:.4f}" + (f"{sep}({seeds} seeds)" if seeds > 1 else "")


def delta_text(entry: dict, against: bool = True) -> str:
    """`+0.0123 [+0.0040, +0.0206] vs 00003`: the difference from the incumbent and its interval; `` when judged
    against nothing."""
    iv = entry.get("interval")
    if not iv or entry.get("delta") is None:
        return ""
    low, high = (f"{iv[k]:+.4f}" if iv.get(k) is not None else "-" for k in ("low", "high"))
    return f"{entry['delta']:+.4f} [{low}, {high}]" + (f" vs {entry['compared_to']}" if against else "")
