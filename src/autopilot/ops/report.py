"""The study's report: one self-contained HTML file, from history.jsonl and the runs' metrics.jsonl.

Nothing outside the file is loaded: the styles, the data (JSON) and the chart code (templates/plots.js, the
same as the live page's) are inlined, and the charts are drawn as SVG by the browser. The tables are plain
HTML, readable without JavaScript. Sections: summary cards, metric per run with interval bars coloured by
verdict and the best-so-far line, learning curves of the last RECENT_CURVES runs, verdict and policy counts,
failures with their error tails, the trade-offs (the runs on the Pareto front of the metric against wall time
and memory, `autopilot.judge.front`), and every run with its policy, changes, result, costs and rationale.

Interval bars: a judged run's bar is the judge's interval of its difference from the incumbent, placed at
the incumbent's mean (value - delta + [low, high]); the baseline's is a t-interval of its seed mean.

Usage:
    path = write_report(study)                  # runs/<study>/report.html
    data = report_data(study, history)          # what the charts draw (also served by the monitor)
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
from collections import Counter
from importlib import resources
from pathlib import Path

from autopilot import fsio, ledger
from autopilot.formatting import cost_items, delta_text, describe_overrides, number
from autopilot.judge import stats
from autopilot.judge.front import pareto_front
from autopilot.ops import continual_report
from autopilot.paths import RunPaths
from autopilot.registry import listing
from autopilot.study import Study

RECENT_CURVES = 8  # learning curves drawn in the report
MAX_CURVE_POINTS = 400  # a longer curve is thinned to about this many points (every k-th, and the last)


def template(name: str) -> str:
    return resources.files("autopilot").joinpath("templates", name).read_text(encoding="utf-8")


# --- data -----------------------------------------------------------------------------------------------
def seed_interval(values: list[float], confidence: float) -> tuple[float | None, float | None]:
    """Two-sided t-interval of the mean of seed values; (None, None) for fewer than two seeds."""
    n = len(values)
    if n < 2:
        return None, None
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return mean - half, mean + half


def run_points(history: list[dict], confidence: float = 0.95) -> list[dict]:
    """One point per finished run: value, interval bar, verdict, and the best value so far."""
    points, best = [], None
    for index, e in enumerate(history, 1):
        low = high = None
        iv = e.get("interval")
        if e["value"] is not None and iv and e.get("delta") is not None and None not in (iv.get("low"), iv.get("high")):
            incumbent = e["value"] - e["delta"]
            low, high = incumbent + iv["low"], incumbent + iv["high"]
        elif e["value"] is not None:
            low, high = seed_interval(e["seed_values"], confidence)
        if e["verdict"] in ledger.PROMOTING_VERDICTS:
            best = e["value"]
        points.append({"run_id": e["run_id"], "index": index, "value": e["value"], "low": low, "high": high,
                       "verdict": e["verdict"], "policy": e["policy"], "best_so_far": best})
    return points


def loss_curve(run: RunPaths, max_points: int = MAX_CURVE_POINTS) -> list[list[float]]:
    """[[step, loss], ...] from a run's metrics.jsonl, thinned to about max_points.

    A trainer that was started again (resumed from a checkpoint, or from scratch) logs steps it had logged
    before: the later lines win, so the curve is the one of the attempt that finished.
    """
    points: list[list[float]] = []
    for m in fsio.iter_jsonl(run.metrics):
        if isinstance(m.get("loss"), (int, float)) and math.isfinite(m["loss"]) and "step" in m:
            while points and points[-1][0] >= m["step"]:
                points.pop()
            points.append([m["step"], m["loss"]])
    if len(points) <= max_points:
        return points
    every = math.ceil(len(points) / max_points)
    return points[::every] + ([points[-1]] if (len(points) - 1) % every else [])


def recent_curves(study: Study, history: list[dict], n: int = RECENT_CURVES) -> list[dict]:
    return [{"run_id": e["run_id"], "points": loss_curve(study.paths.run(e["run_id"]))} for e in history[-n:]]


def report_data(study: Study, history: list[dict]) -> dict:
    best = ledger.incumbent(history, ledger.champion_events(study.models))
    record = [] if best is None else ledger.incumbent_values(history, best)
    return {
        "study": study.name,
        "metric": study.metric_name,
        "goal": study.settings.metric.goal,
        "runs": run_points(history, study.settings.judge.confidence),
        "curves": recent_curves(study, history),
        "verdicts": dict(Counter(e["verdict"] for e in history)),
        "policies": dict(Counter(e["policy"] for e in history)),
        "fallbacks": sum(1 for e in history if e.get("fallback_from")),
        "best": None if best is None else {"run_id": best["run_id"], "value": sum(record) / len(record),
                                           "seeds": len(record)},
        "front": sorted(pareto_front(history, study.maximize)),
    }


# --- HTML -----------------------------------------------------------------------------------------------
def esc(value) -> str:
    return html.escape("" if value is None else str(value))


def cards(data: dict, history: list[dict]) -> str:
    best = data["best"]
    failed = data["verdicts"].get("failed", 0)
    items = [("runs", len(history)), ("best run", best["run_id"] if best else "-"),
             (f"best {data['metric']}", number(best["value"]) if best else "-"),
             ("improved", data["verdicts"].get("improved", 0)), ("failed", failed),
             ("fallbacks", data["fallbacks"])]
    return '<div class="cards">' + "".join(
        f'<div class="card" id="card-{esc(k).replace(" ", "-")}"><div class="k">{esc(k)}</div>'
        f'<div class="v">{esc(v)}</div></div>' for k, v in items) + "</div>"


def counts_table(title: str, table_id: str, counts: dict) -> str:
    if not counts:
        return f"<p class='muted'>no {esc(title.lower())} yet</p>"
    top = max(counts.values())
    rows = "".join(f'<tr><td>{esc(k)}</td><td class="num" data-count="{v}">{v}'
                   f'<span class="bar" style="width:{round(120 * v / top)}px"></span></td></tr>'
                   for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f'<table id="{table_id}"><tr><th>{esc(title)}</th><th>runs</th></tr>{rows}</table>'


def failures_section(history: list[dict]) -> str:
    failed = [e for e in history if e["verdict"] == "failed"]
    if not failed:
        return "<p class='muted'>no failed run</p>"
    return "".join(f'<div class="failure" data-run="{esc(e["run_id"])}"><b>run {esc(e["run_id"])}</b>: status '
                   f'<code>{esc(e["status"])}</code>, policy {esc(e["policy"])}, changes '
                   f'{esc(describe_overrides(e["overrides"]))}<pre>{esc(e.get("error") or "no error text")}</pre></div>'
                   for e in reversed(failed))


def cost_text(e: dict) -> str:
    return ", ".join(cost_items(e)) or "-"


def front_section(history: list[dict], front: list[str], metric: str) -> str:
    """The runs that are best for some trade-off of the metric against wall time and memory."""
    if not front:
        return "<p class='muted'>no run with a metric yet</p>"
    rows = "".join(f'<tr data-run="{esc(e["run_id"])}"><td>{esc(e["run_id"])}</td>'
                   f'<td class="num">{number(e["value"])}</td><td class="num">{esc(cost_text(e))}</td>'
                   f'<td class="verdict verdict-{esc(e["verdict"])}">{esc(e["verdict"])}</td></tr>'
                   for e in history if e["run_id"] in front)
    return (f'<table id="front"><tr><th>run</th><th>{esc(metric)}</th><th>cost per seed</th><th>verdict</th>'
            f"</tr>{rows}</table>")


def runs_table(history: list[dict], points: list[dict], metric: str, front: list[str] = ()) -> str:
    head = ("<tr><th>run</th><th>policy</th><th>changes</th>"
            f"<th>{esc(metric)}</th><th>seeds</th><th>Δ vs incumbent [interval]</th><th>cost per seed</th>"
            "<th>front</th><th>verdict</th><th>rationale</th></tr>")
    rows = []
    for e, p in zip(reversed(history), reversed(points)):
        delta = delta_text(e) or "-"
        policy = esc(e["policy"]) + (f' <span class="muted" title="{esc(e["fallback_from"])}">(fallback)</span>'
                                     if e.get("fallback_from") else "")
        rows.append(
            f'<tr data-run="{esc(e["run_id"])}"><td>{esc(e["run_id"])}</td><td>{policy}</td>'
            f'<td class="text">{esc(describe_overrides(e["overrides"]))}</td>'
            f'<td class="num value" data-value="{"" if e["value"] is None else e["value"]}">{number(e["value"])}</td>'
            f'<td class="num">{len(e["seed_values"])}</td><td class="num">{esc(delta)}</td>'
            f'<td class="num cost">{esc(cost_text(e))}</td>'
            f'<td class="front">{"◆" if e["run_id"] in front else ""}</td>'
            f'<td class="verdict verdict-{esc(e["verdict"])}">{esc(e["verdict"])}</td>'
            f'<td class="text">{esc(e.get("rationale"))}</td></tr>')
    return f'<table id="runs">{head}{"".join(rows)}</table>'


def champion_section(study: Study) -> str:
    """The champion (models/<study>/current) with its held-out test score, and every change of champion."""
    rows = listing.history_rows(study)
    if not rows:
        return "<p class='muted'>no champion yet</p>"
    head = ("<tr><th>when</th><th>event</th><th>run</th><th>validation</th><th>held-out test</th><th>by</th>"
            "<th>reason</th></tr>")
    cells = "".join(
        f'<tr data-run="{esc(r["run_id"])}"><td>{esc(r["at"])}</td><td>{esc(r["event"])}'
        f'{" (forced)" if r["forced"] else ""}</td><td>{esc(r["run_id"])}{" *" if r["current"] else ""}</td>'
        f'<td class="num">{number(r["value"])}</td><td class="num test-value">{number(r["test_value"])}</td>'
        f'<td>{esc(r["by"])}</td><td class="text">{esc(r["reason"])}</td></tr>' for r in reversed(rows))
    summary = listing.describe_champion(listing.champion_summary(study))
    return (f"<p id='champion'>{esc(summary)}</p><table id='champions'>{head}{cells}</table>"
            "<p class='muted'>The held-out test score is measured once per champion, when it is first promoted, "
            "and never used to select a run. * = current.</p>")


def body(study: Study, data: dict, history: list[dict]) -> str:
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return "\n".join([
        f"<h1>autopilot report: study <span id='study'>{esc(study.name)}</span></h1>",
        f"<p class='muted'>{esc(data['goal'])} <b>{esc(data['metric'])}</b> · task {esc(study.settings.task)} · "
        f"{len(history)} finished runs · generated {now} from runs/{esc(study.name)}/history.jsonl</p>",
        cards(data, history),
        "<h2>Champion</h2>",
        champion_section(study),
        continual_report.section(study),
        "<h2>Metric per run</h2>",
        '<div id="metric-plot" class="plot"></div><div id="metric-legend" class="legend"></div>',
        "<p class='muted'>Bars: the judge's interval of the run's difference from the incumbent, placed at the "
        "incumbent's mean (the baseline: a t-interval of its seed mean). Dashed: the best so far.</p>",
        f"<h2>Learning curves of the last {len(data['curves'])} runs</h2>",
        '<div id="curves-plot" class="plot"></div>',
        "<h2>Verdicts and policies</h2>",
        '<div class="counts">' + counts_table("Verdict", "verdict-counts", data["verdicts"])
        + counts_table("Policy", "policy-counts", data["policies"]) + "</div>",
        f"<p>Proposals that fell back to the fallback policy: <b id='fallbacks'>{data['fallbacks']}</b></p>",
        f"<h2>Failures ({data['verdicts'].get('failed', 0)})</h2>",
        failures_section(history),
        "<h2>Trade-offs</h2>",
        "<p class='muted'>Runs that no other run beats on the metric while costing no more wall time and memory "
        "per seed (the Pareto front; runs over a limit of judge.constraints are left out). Marked ◆ below.</p>",
        front_section(history, data["front"], data["metric"]),
        "<h2>Runs, newest first</h2>",
        runs_table(history, data["runs"], data["metric"], data["front"]),
    ])


def script_json(obj) -> str:
    """JSON that is safe inside a <script> element."""
    return json.dumps(obj, allow_nan=False).replace("</", "<\\/")


def fill(page: str, values: dict[str, str]) -> str:
    """Replace each {{name}} of a template in one pass (text put in is never searched again)."""
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], page)


def render(study: Study, history: list[dict]) -> str:
    data = report_data(study, history)
    return fill(template("report.html"), {
        "title": f"autopilot report: {esc(study.name)}", "style": template("style.css"),
        "body": body(study, data, history), "plots": template("plots.js"), "data": script_json(data)})


def write_report(study: Study, out: Path | None = None) -> Path:
    """Write the report (default runs/<study>/report.html) and return its path."""
    path = Path(out) if out else study.paths.report
    fsio.atomic_write_text(path, render(study, ledger.read_history(study.paths)))
    return path
