"""May another run start? The one home of that answer: the control files, the study's own pause, the budgets, and
the failure-rate spike that pauses a study.

    control/stop, control/stop-after-run, control/pause   set by `autopilot stop [--now]` and `pause`
    runs/<study>/paused.json                               the study paused itself (failures, disk); lifted by `resume`
    budget.max_runs, budget.max_total_seconds              spent by the runs in the ledger
    retention.min_free_gib                                 free space on the runs' disk (autopilot.registry.disk)

The workflow's plan, the guard, `propose`, the daemon, cron and `autopilot status` all ask `halt_reason`; nothing
here writes a file (pausing a study is `autopilot.ops.control.pause_study`; the hold for disk space, which lifts
itself, is `autopilot.ops.control.hold_if_disk_low`).

Usage:
    reason = halt_reason(study, history)      # None: a run may start
    ensure_may_run(study, history)            # or LoopHalted with the reason
"""

from __future__ import annotations

from autopilot import fsio, ledger
from autopilot.enums import Verdict
from autopilot.errors import LoopHalted
from autopilot.paths import StudyPaths
from autopilot.registry import disk
from autopilot.settings import Daemon
from autopilot.study import Study


def halt_reason(study: Study, history: list[dict]) -> str | None:
    """Why no further run may start (kill switch, stop after run, pause, the study's own pause, budget, disk space),
    or None."""
    stop = study.project.control_file("stop")
    if stop.exists():
        return f"stop requested ({stop} exists); remove it or run `autopilot resume` to continue"
    for signal, what in (("stop-after-run", "stop after the current run requested"), ("pause", "paused")):
        path = study.project.control_file(signal)
        if path.exists():
            return f"{what} ({path} exists); remove it or run `autopilot resume` to continue"
    paused = study_pause_reason(study.paths)
    if paused:
        return f"study paused: {paused}; `autopilot resume` continues"
    state = budget_state(study, history)
    if state["runs_used"] >= state["max_runs"]:
        return f"run budget spent: {state['runs_used']} of budget.max_runs={state['max_runs']} runs done"
    if state["seconds_used"] >= state["max_total_seconds"]:
        return (f"time budget spent: {state['seconds_used']:.0f}s of budget.max_total_seconds="
                f"{state['max_total_seconds']:g}s trained")
    return disk.free_space_hold(study)


def ensure_may_run(study: Study, history: list[dict]) -> None:
    reason = halt_reason(study, history)
    if reason:
        raise LoopHalted(reason)


def budget_state(study: Study, history: list[dict]) -> dict:
    """What the study has spent and may spend (guard.json records it with every run)."""
    budget = study.settings.budget
    return {
        "runs_used": len(history),
        "max_runs": budget.max_runs,
        "seconds_used": round(ledger.total_train_seconds(history), 3),
        "max_total_seconds": budget.max_total_seconds,
        "max_seconds_per_run": budget.max_seconds_per_run,
    }


def study_pause(study: StudyPaths) -> dict | None:
    """runs/<study>/paused.json, or None (a damaged file reads as a pause without details)."""
    if not study.paused.exists():
        return None
    try:
        return fsio.read_json(study.paused)
    except Exception:
        return {"reason": f"{study.paused} is damaged", "last_run": None, "resumed_at": None}


def study_pause_reason(study: StudyPaths) -> str | None:
    """Why the study paused itself, or None when it did not (or was resumed since)."""
    pause = study_pause(study)
    return None if pause is None or pause.get("resumed_at") else pause["reason"]


def failure_spike(history: list[dict], settings: Daemon, after_run: str | None = None) -> str | None:
    """Why the failure rate is too high (more than F failed of the last W runs after `after_run`), or None."""
    window, most = settings.failure_window, settings.max_failures
    recent = [e for e in history if after_run is None or e["run_id"] > after_run][-window:]
    failed = [e for e in recent if e["verdict"] == Verdict.FAILED]
    if len(failed) <= most:
        return None
    last_error = ((failed[-1].get("error") or "").strip().splitlines() or ["no error text"])[-1][:200]
    return (f"{len(failed)} of the last {len(recent)} runs failed (runs {', '.join(e['run_id'] for e in failed)}; "
            f"daemon.max_failures={most} in daemon.failure_window={window}); last error: {last_error}")


def new_failure_spike(study: Study, history: list[dict]) -> str | None:
    """A failure spike since the study's last such pause (the runs up to it are not counted again), or None while
    the study is paused already."""
    if study_pause_reason(study.paths):
        return None
    earlier = study_pause(study.paths)
    return failure_spike(history, study.settings.daemon, earlier and earlier.get("last_run"))
