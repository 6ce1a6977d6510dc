"""What a study is doing, at a glance: `autopilot status` and `autopilot watch`, and the monitor's /api/status.

Everything comes from files, read only: status/status.json (the trainer's heartbeat), control/, the queue
folders, runs/<study>/history.jsonl, status/daemon.json. A heartbeat older than
`control.STALE_AFTER_SECONDS` while a trainer should be alive is flagged STALE: the trainer is hung or gone.

Usage:
    snap = snapshot(study)            # a JSON-able dict (what --json prints)
    Console().print(render(snap))     # the same for people
"""

from __future__ import annotations

import os
import time
from collections import Counter

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from autopilot import fsio, holds, ledger
from autopilot.clock import iso
from autopilot.enums import ACTIVE_PHASES
from autopilot.formatting import VERDICT_STYLE, duration, number
from autopilot.ingest import queue
from autopilot.ops import control
from autopilot.paths import CONTROL_SIGNALS, Project
from autopilot.registry import listing
from autopilot.study import Study

LAST_VERDICTS = 5


def snapshot(study: Study, now: float | None = None) -> dict:
    """The whole picture as one JSON-able dict; works on a study with no runs yet."""
    now = time.time() if now is None else now
    project = study.project
    history = ledger.read_history(study.paths)
    return {
        "study": study.name,
        "time": iso(now),
        "live": live(project, now),
        "halted": holds.halt_reason(study, history),
        "control": {name: project.control_file(name).exists() for name in CONTROL_SIGNALS},
        "study_paused": holds.study_pause_reason(study.paths),
        "queue": queue.counts(project),
        "best": best(study, history),
        "champion": listing.champion_summary(study),
        "continual": continual(study),
        "last_verdicts": [verdict_row(e) for e in history[-LAST_VERDICTS:][::-1]],
        "verdicts": dict(Counter(e["verdict"] for e in history)),
        "policies": dict(Counter(e["policy"] for e in history)),
        "fallbacks": sum(1 for e in history if e.get("fallback_from")),
        "runs": {"finished": len(history), "unfinished": unfinished(study, history)},
        "budget": budget_left(study, history),
        "daemon": daemon(project, now),
    }


def continual(study: Study) -> dict | None:
    """Mode continual: the data each champion was trained on, in order, and the curriculum per skill."""
    if not study.settings.is_continual:
        return None
    from autopilot.continual import lineage
    from autopilot.curriculum import state

    steps = lineage.chain(study)
    return {"lineage": steps, "lineage_text": lineage.describe(study, steps), "curriculum": state.summary(study)}


def live(project: Project, now: float) -> dict:
    """The trainer's status.json with the heartbeat's age, and whether it is active and whether it is STALE."""
    status, problem = control.check_status(project)
    status = status or {}
    beat = status.get("heartbeat")
    age = None if beat is None else round(now - float(beat), 1)
    active = status.get("phase") in ACTIVE_PHASES
    return {**status, "heartbeat_age": age, "active": active, "problem": problem,
            "stale": bool(active and age is not None and age > control.STALE_AFTER_SECONDS)}


def best(study: Study, history: list[dict]) -> dict | None:
    entry = ledger.incumbent(history, ledger.champion_events(study.models))
    if entry is None:
        return None
    record = ledger.incumbent_values(history, entry)  # seeds that decided nothing about it, and those added since
    return {"run_id": entry["run_id"], "value": sum(record) / len(record), "seeds": len(record),
            "metric": study.metric_name, "goal": study.settings.metric.goal}


def verdict_row(e: dict) -> dict:
    return {"run_id": e["run_id"], "verdict": e["verdict"], "value": e["value"], "delta": e["delta"],
            "policy": e["policy"]}


def unfinished(study: Study, history: list[dict]) -> list[str]:
    done = {e["run_id"] for e in history}
    return [r for r in study.paths.run_ids() if r not in done]


def budget_left(study: Study, history: list[dict]) -> dict:
    state = holds.budget_state(study, history)
    return {**state, "runs_left": max(0, state["max_runs"] - state["runs_used"]),
            "seconds_left": round(max(0.0, state["max_total_seconds"] - state["seconds_used"]), 1)}


def daemon(project: Project, now: float) -> dict | None:
    """status/daemon.json with `alive` (its pid runs), or None if no daemon ever ran here."""
    if not project.daemon_state.exists():
        return None
    try:
        state = fsio.read_json(project.daemon_state)
    except Exception:
        return None
    state["alive"] = state.get("state") != "exited" and pid_alive(state.get("pid"))
    limit = state.get("max_wall_seconds")
    if limit and state["alive"]:
        state["wall_seconds_left"] = round(max(0.0, limit - (now - state["started"])), 1)
    return state


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- for people ----------------------------------------------------------------------------------------
def render(snap: dict) -> RenderableType:
    """The snapshot as a rich renderable: one line per topic, then the last verdicts."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, cell in (("now", now_line(snap)), ("heartbeat", heartbeat_line(snap["live"])),
                        ("holds", holds_line(snap)), ("queue", queue_line(snap["queue"])),
                        ("best", best_line(snap["best"])),
                        ("champion", listing.describe_champion(snap["champion"])), *continual_rows(snap["continual"]),
                        ("runs", runs_line(snap)), ("budget", budget_line(snap)),
                        ("daemon", daemon_line(snap["daemon"]))):
        grid.add_row(label, cell)
    title = Text(f"autopilot · study {snap['study']} · {snap['time']}", style="bold")
    return Group(title, grid, verdicts_table(snap["last_verdicts"]))


def now_line(snap: dict) -> Text:
    s = snap["live"]
    if s.get("problem"):
        return Text(f"unknown: {s['problem']}", style="bold red")
    if not s.get("phase"):
        return Text("idle: no trainer has run in this project yet")
    total = f"/{s['total_steps']}" if s.get("total_steps") else ""
    where = f"run {s.get('run')} seed {s.get('seed_index', 0)}, step {s.get('step')}{total}"
    loss = f", loss {number(s.get('loss'))}" if s.get("loss") is not None else ""
    eta = f", ETA {duration(s.get('eta_seconds'))}" if s["active"] and s.get("eta_seconds") is not None else ""
    phase = s["phase"] if s["active"] else f"idle (last: {s['phase']})"
    style = "yellow" if s["phase"] == "paused" else ("green" if s["active"] else "")
    return Text(f"{phase}: {where}{loss}{eta}", style=style)


def heartbeat_line(s: dict) -> Text:
    if s.get("heartbeat_age") is None:
        return Text("-")
    line = Text(f"{duration(s['heartbeat_age'])} ago")
    if s["stale"]:
        line.append(f"  STALE: no heartbeat for {duration(s['heartbeat_age'])} in phase {s['phase']}; "
                    "the trainer may be hung or gone", style="bold red")
    return line


def holds_line(snap: dict) -> Text:
    if not snap["halted"]:
        on = [name for name, set_ in snap["control"].items() if set_]
        return Text("none: the loop may start runs" + (f" (pending: {', '.join(on)})" if on else ""))
    return Text(snap["halted"], style="yellow")


def queue_line(q: dict) -> str:
    return (f"high {q.get('high', 0)} · normal {q.get('normal', 0)} · low {q.get('low', 0)}   "
            f"(inbox {q.get('inbox', 0)}, processing {q.get('processing', 0)}, failed {q.get('failed', 0)}"
            + (f", quarantine {q['quarantine']}" if q.get("quarantine") else "") + ")")


def continual_rows(c: dict | None) -> list[tuple[str, RenderableType]]:
    """Mode continual: the champion's lineage, and one row per curriculum skill (forgetting in red)."""
    if c is None:
        return []
    from autopilot.curriculum.state import describe

    rows: list[tuple[str, RenderableType]] = [("trained on", c["lineage_text"])]
    for skill, row in c["curriculum"].items():
        rows.append((f"curriculum {skill}", Text(describe(row), style="bold red" if row["forgotten"] else "")))
    return rows


def best_line(b: dict | None) -> str:
    if b is None:
        return "no successful run yet"
    return f"run {b['run_id']}: {b['metric']} = {number(b['value'])} ({b['seeds']} seed(s), {b['goal']})"


def tally(counts: dict) -> str:
    return " · ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "-"


def runs_line(snap: dict) -> str:
    unfinished = snap["runs"]["unfinished"]
    return (f"{snap['runs']['finished']} finished" + (f", unfinished {', '.join(unfinished)}" if unfinished else "")
            + f"; verdicts {tally(snap['verdicts'])}; policies {tally(snap['policies'])}; "
            f"fallbacks {snap['fallbacks']}")


def budget_line(snap: dict) -> str:
    b = snap["budget"]
    line = (f"runs {b['runs_used']} of {b['max_runs']} ({b['runs_left']} left) · training "
            f"{duration(b['seconds_used'])} of {duration(b['max_total_seconds'])} ({duration(b['seconds_left'])} left)")
    d = snap["daemon"]
    if d and d.get("wall_seconds_left") is not None:
        line += f" · daemon wall time {duration(d['wall_seconds_left'])} left"
    return line


def daemon_line(d: dict | None) -> Text:
    if d is None:
        return Text("never ran here")
    if d["alive"]:
        return Text(f"{d.get('state')} (pid {d.get('pid')}, since {iso(d['started'])})"
                    + (f": {d['note']}" if d.get("note") else ""), style="green")
    return Text(f"not running; it ended: {d.get('stop_reason') or 'killed'}")


def verdicts_table(rows: list[dict]) -> RenderableType:
    if not rows:
        return Text("no finished run yet")
    table = Table(title=f"last {len(rows)} verdicts", title_justify="left")
    for col in ("run", "verdict", "value", "delta", "policy"):
        table.add_column(col)
    for r in rows:
        style = VERDICT_STYLE.get(r["verdict"], "")
        table.add_row(r["run_id"], Text(r["verdict"], style=style), number(r["value"]),
                      number(r["delta"], "+.4f"), r["policy"])
    return table
