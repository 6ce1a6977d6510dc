"""The morning read: what a study did since a time (`autopilot digest --since 12h`).

From files only: the runs journaled in the window (history.jsonl) with their verdicts and failures, the changes
of champion (models/<study>/history.jsonl) with their held-out test scores, the holds and stops (events.jsonl),
and the time and compute spent: trainer processes (every seed, failed ones too), training and wall seconds.

Usage:
    d = digest(study, since=parse_since("12h"))
    print(render(d))
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

from autopilot import fsio, holds, ledger
from autopilot.errors import AutopilotError
from autopilot.formatting import delta_text, describe_overrides, duration, metric_text, number
from autopilot.registry import listing, store
from autopilot.study import Study

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
HOLD_EVENTS = ("paused", "stopped", "failure_spike", "plateau", "disk_low")


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """`12h`, `30m`, `2d`, `1w`, `90s` before now, or an ISO time (UTC when it names no zone)."""
    now = now or dt.datetime.now(dt.UTC)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match:
        return now - dt.timedelta(seconds=float(match.group(1)) * UNITS[match.group(2)])
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise AutopilotError(f"--since {text!r}: give a duration such as 12h, 30m, 2d, or a time such as "
                             "2026-01-31T22:00") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def when(text: str | None) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return parsed if parsed is None or parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def within(text: str | None, since: dt.datetime) -> bool:
    t = when(text)
    return t is not None and t >= since


def digest(study: Study, since: dt.datetime, now: dt.datetime | None = None) -> dict:
    """Everything the digest says, as one JSON-able dict."""
    now = now or dt.datetime.now(dt.UTC)
    history = ledger.read_history(study.paths)
    runs = [e for e in history if within(e.get("finished_at"), since)]
    tests = store.held_out_scores(study.models)
    changes = [{**ev, "test": (tests.get(ev["run_id"]) or {}).get("metric", {}).get("value"),
                "test_examples": (tests.get(ev["run_id"]) or {}).get("examples")}
               for ev in ledger.champion_events(study.models) if within(ev["at"], since)]
    held = [e for e in fsio.iter_jsonl(study.paths.events) if e["event"] in HOLD_EVENTS and within(e["at"], since)]
    processes = sum(len(ledger.seed_summaries(study.paths.run(e["run_id"]))) or 1 for e in runs)
    return {
        "study": study.name, "metric": study.metric_name, "goal": study.settings.metric.goal,
        "since": since.isoformat(timespec="seconds"), "until": now.isoformat(timespec="seconds"),
        "runs": [{k: e.get(k) for k in ("run_id", "verdict", "value", "seed_values", "delta", "interval",
                                        "compared_to", "policy", "overrides", "error", "finished_at")} for e in runs],
        "verdicts": dict(Counter(e["verdict"] for e in runs)),
        "champion_changes": changes,
        "holds": held,
        "compute": {"trainer_processes": processes,
                    "train_seconds": round(sum(e.get("train_seconds") or 0.0 for e in runs), 1),
                    "wall_seconds": round(sum(e.get("wall_seconds") or 0.0 for e in runs), 1)},
        "champion": listing.champion_summary(study),
        "held_now": holds.halt_reason(study, history),
    }


def render(d: dict) -> str:
    """The digest for people: a few short paragraphs."""
    c = d["compute"]
    tally = ", ".join(f"{v} {n}" for v, n in sorted(d["verdicts"].items(), key=lambda kv: -kv[1]))
    lines = [f"study {d['study']}, {d['since']} to {d['until']}",
             "",
             f"runs: {len(d['runs'])} finished" + (f" ({tally})" if tally else "") +
             f"; {c['trainer_processes']} trainer processes, training {duration(c['train_seconds'])}, "
             f"wall {duration(c['wall_seconds'])}"]
    for r in d["runs"]:
        against = f" Δ {delta_text(r)}" if delta_text(r) else ""
        error = f": {(r['error'] or '').strip().splitlines()[-1][:120]}" if r["verdict"] == "failed" and r["error"] \
            else ""
        lines.append(f"  {r['run_id']} {r['verdict']:<12} {d['metric']} {metric_text(r)}{against}  "
                     f"({r['policy']}: {describe_overrides(r['overrides'] or {})}){error}")
    lines += ["", f"champion changes: {len(d['champion_changes']) or 'none'}"]
    for ev in d["champion_changes"]:
        test = (f"held-out test {number(ev['test'])} on {ev['test_examples']} examples" if ev["test"] is not None
                else "no held-out test score")
        lines.append(f"  {ev['at']} run {ev['run_id']} {ev['event']} by {ev['by']}"
                     f"{' (forced)' if ev['forced'] else ''}: {test}; {ev['reason'][:160]}")
    lines += ["", f"holds and stops: {len(d['holds']) or 'none'}"]
    lines += [f"  {h['at']} {h['event']}: {h['message'][:200]}" for h in d["holds"]]
    lines += ["", f"champion now: {listing.describe_champion(d['champion'])}",
              f"held now: {d['held_now'] or 'no: the loop may start runs'}"]
    return "\n".join(lines)
