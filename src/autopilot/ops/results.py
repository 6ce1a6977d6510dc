"""The results table of a study, from its ledger: what `./bin/demo` prints at the end.

It fits the terminal (80 columns and up) without breaking a number or a key: every column but `changes` is as wide
as its longest line (the metric cell is three short lines: value, Δ, interval), and `changes` takes the rest. Its
items are laid out here, not by rich: `key=value` items fill each line, an item too long for the column goes on as
`key=` and its value on the next line, and only a value longer than the whole column is folded.

Beside each run's metric: what one seed of it cost (wall seconds, peak memory, parameters; a column only when some
run reported a cost, so that a ledger without any keeps its width for changes), and ◆ after the run id of the runs
that are best for some trade-off of the metric against those costs (`autopilot.judge.front`).
"""

from __future__ import annotations

import json
import textwrap

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from autopilot import ledger
from autopilot.formatting import VERDICT_STYLE, cost_items, delta_text, describe_overrides, metric_text
from autopilot.judge.front import pareto_front
from autopilot.registry import listing, store
from autopilot.study import Study

GAP = 1  # between two columns: the box's blank divider (no padding)
MIN_CHANGES = 15  # the changes column is never narrower (batch_size=128,), even past the terminal's width
FRONT_MARK = "◆"  # after the run id: on the Pareto front of the metric against wall time and memory


def wrap_items(items: list[str], width: int) -> str:
    """`items` (`key=value`) laid out in lines of at most `width`, broken only between items or after a `=`."""
    lines: list[str] = []
    line = ""
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "")
        if line and len(line) + 1 + len(piece) <= width:
            line += " " + piece
            continue
        if line:
            lines.append(line)
        if len(piece) > width and "=" in piece:  # the key on one line, the value on the next
            key, value = piece.split("=", 1)
            lines += fold(key + "=", width)
            piece = value
        *whole, piece = fold(piece, width)
        lines += whole
        line = piece
    return "\n".join([*lines, line])


def fold(text: str, width: int) -> list[str]:
    """`text` cut into lines of `width`: only for a key or value longer than the whole column."""
    return [text[i:i + width] for i in range(0, len(text), width)] or [""]


def changes_width(table: Table, cells: list[list[str]], total: int) -> int:
    """What is left of `total` for the changes column once every other column has its longest line."""
    changes = next(i for i, c in enumerate(table.columns) if c.header == "changes")
    widths = []
    for i, column in enumerate(table.columns):
        if i != changes:
            lines = [*str(column.header).splitlines(), *(line for row in cells for line in row[i].splitlines())]
            widths.append(max(map(len, lines), default=0))
    return max(MIN_CHANGES, total - sum(widths) - GAP * (len(table.columns) - 1))


def metric_cell(e: dict) -> str:
    """`0.9679 (3 seeds)`, then `Δ +0.0167` and `[+0.0021, +0.0313]` on lines of their own."""
    delta = delta_text(e, against=False)
    if not delta or e["value"] is None:
        return metric_text(e)
    difference, interval = delta.split(" ", 1)
    return f"{metric_text(e)}\nΔ {difference}\n{interval}"


def cost_cell(e: dict) -> str:
    """What one seed of the run cost, one item a line: `12.3 s`, `210 MB`, `3,818 p` (parameters)."""
    return "\n".join(cost_items(e, parameters_unit="p")) or "-"


def print_results(study: Study, as_json: bool = False, last: int = 0) -> None:
    history = ledger.read_history(study.paths)
    rows = history[-last:] if last else history
    tests = {run_id: t["metric"]["value"] for run_id, t in store.held_out_scores(study.models).items()}
    front = pareto_front(history, study.maximize)
    console = Console()
    if as_json:
        for e in rows:
            e = {**e, "test_value": tests[e["run_id"]]} if e["run_id"] in tests else e
            line = json.dumps({**e, "pareto_front": e["run_id"] in front})
            console.print_json(line) if console.is_terminal else print(line)
        return
    best = ledger.incumbent(history, ledger.champion_events(study.models))
    table = Table(title=f"study {study.name}: {study.settings.metric.goal} {study.metric_name}",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=0)
    # runs that trained side by side share a generation, and were judged against the best before it
    generations = [ledger.generation_of(e) for e in history]
    by_generation = study.settings.generation_size > 1 or len(set(generations)) < len(generations)
    columns = ("run", "gen") if by_generation else ("run",)
    for col in (*columns, "policy"):
        table.add_column(col, no_wrap=True)
    table.add_column("changes", no_wrap=True)  # laid out by wrap_items
    held_out = "\nheld-out test" if tests else ""  # only champions have one, measured once when first promoted
    table.add_column(Text(f"{study.metric_name}\nΔ vs best\n[interval]{held_out}"), no_wrap=True)
    costed = any(cost_cell(e) != "-" for e in rows)
    if costed:
        table.add_column(Text("cost of\na seed"), no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    cells = []
    for e in rows:
        policy = e["policy"] + ("\n(fallback)" if e["fallback_from"] else "")
        run = e["run_id"] + (FRONT_MARK if e["run_id"] in front else "")
        first = (run, str(ledger.generation_of(e))) if by_generation else (run,)
        metric = metric_cell(e) + (f"\ntest {tests[e['run_id']]:.4f}" if tests.get(e["run_id"]) is not None else "")
        cost = [cost_cell(e)] if costed else []
        cells.append([*first, policy, describe_overrides(e["overrides"]), metric, *cost, e["verdict"]])
    width = changes_width(table, cells, console.width)
    for e, row in zip(rows, cells):
        row[len(columns) + 1] = (wrap_items(row[len(columns) + 1].split(", "), width) if e["overrides"]
                                 else textwrap.fill(row[len(columns) + 1], width))
        texts = [Text(c) for c in row]  # text, never markup
        texts[-1].stylize(VERDICT_STYLE.get(e["verdict"], ""))
        table.add_row(*texts)
    console.print(table)
    if best:
        values = ledger.incumbent_values(history, best)
        seeds = f"{len(values)} seeds" if len(values) > 1 else "1 seed"
        console.print(f"best: run {best['run_id']} with {study.metric_name} = {sum(values) / len(values):.4f} "
                      f"(the mean of its record: {seeds})")
    if front:
        console.print(f"{FRONT_MARK}: best for some trade-off of {study.metric_name} against wall time and memory "
                      f"(the Pareto front: {', '.join(sorted(front))})")
    console.print(f"champion: {listing.describe_champion(listing.champion_summary(study))}")
    console.print(f"lab journal: {study.paths.labbook}\nledger: {study.paths.history}")
