"""The results table of a study, from its ledger: what `./bin/demo` prints at the end."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from autopilot import ledger
from autopilot.formatting import VERDICT_STYLE, delta_text, describe_overrides, metric_text
from autopilot.study import Study


def metric_cell(e: dict) -> str:
    delta = delta_text(e, against=False)
    return metric_text(e) + (f"  Δ {delta}" if delta and e["value"] is not None else "")


def print_results(study: Study, as_json: bool = False, last: int = 0) -> None:
    history = ledger.read_history(study.paths)
    rows = history[-last:] if last else history
    console = Console()
    if as_json:
        for e in rows:
            console.print_json(json.dumps(e)) if console.is_terminal else print(json.dumps(e))
        return
    best = ledger.best_entry(history)
    table = Table(title=f"study {study.name}: {study.settings.metric.goal} {study.metric_name}")
    # runs that trained side by side share a generation, and were judged against the best before it
    generations = [ledger.generation_of(e) for e in history]
    by_generation = study.settings.generation_size > 1 or len(set(generations)) < len(generations)
    columns = ("run", "gen") if by_generation else ("run",)
    for col in (*columns, "policy", "changes", f"{study.metric_name}  (Δ vs best, interval)", "verdict"):
        table.add_column(col, overflow="fold")
    for e in rows:
        style = VERDICT_STYLE.get(e["verdict"], "")
        policy = e["policy"] + (" (fallback)" if e["fallback_from"] else "")
        first = (e["run_id"], str(ledger.generation_of(e))) if by_generation else (e["run_id"],)
        table.add_row(*first, policy, describe_overrides(e["overrides"]), metric_cell(e),
                      f"[{style}]{e['verdict']}[/{style}]")
    console.print(table)
    if best:
        console.print(f"best: run {best['run_id']} with {study.metric_name} = {best['value']:.4f}")
    console.print(f"lab journal: {study.paths.labbook}\nledger: {study.paths.history}")
