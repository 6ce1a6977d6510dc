"""Steering a study without killing it: the control files, and the pause a study puts on itself.

    control/pause            the trainer holds at its next step (status phase `paused`); no new run starts
    control/stop-after-run   `autopilot stop`: the current run trains to its end, seeds included; then no new run
    control/stop             `autopilot stop --now`: the run ends at its next step as `stopped`; no new run
    control/skip             the run ends at its next step as `skipped` (its trainer removes the file); the loop
                             goes on with the next run
    runs/<study>/paused.json the study paused itself (too many failures; reason also in labbook.md) unless
                             it has `resumed_at`

The trainer polls control/ at every step (autopilot.train.contract); the loop reads it in holds.halt_reason before
every run, and the daemon between invocations. `autopilot resume` removes every hold: pause, both stops and
the study's own pause. Each function returns the sentence the CLI prints: what will happen, and when.

Usage:
    print(control.pause(project))
    print(control.stop(project, now=True))
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path

from autopilot import fsio, holds, notify, schemas
from autopilot.clock import now_iso
from autopilot.enums import ACTIVE_PHASES
from autopilot.errors import AutopilotError
from autopilot.journal import record
from autopilot.paths import Project, StudyPaths
from autopilot.registry import disk
from autopilot.study import Study

log = logging.getLogger(__name__)

STALE_AFTER_SECONDS = 120.0  # no heartbeat for this long while a trainer should be alive: it is hung or gone
HOLDS = ("pause", "stop", "stop-after-run")  # what `resume` removes (a pending skip is not a hold)


def read_status(project: Project) -> dict | None:
    """status/status.json, or None when there is none, or it cannot be read or is malformed (logged)."""
    status, problem = check_status(project)
    if problem:
        log.warning("%s", problem)
    return status


def check_status(project: Project) -> tuple[dict | None, str | None]:
    """(status.json, None) when it is well formed; (None, what is wrong with it, field by field) when it is not;
    (None, None) when there is none. A damaged status file must never break `status`, `watch` or the monitor."""
    path = project.status
    if not path.exists():
        return None, None
    where = path.relative_to(project.root)
    try:
        status = fsio.read_json(path)
    except AutopilotError as e:
        return None, f"{where} is malformed: {str(e).removeprefix(f'{path}: ')}"
    not_finite = _not_finite(status)
    found = [*(f"{key}: {value} is not a finite number" for key, value in not_finite.items()),
             *(p for p in schemas.problems(status, "status") if p.split(":", 1)[0] not in not_finite)]
    if found:
        return None, f"{where} is malformed: " + "; ".join(found[:5])
    return status, None


def _not_finite(status) -> dict:
    """NaN and Infinity parse as JSON numbers in Python, and a JSON Schema `number` takes them."""
    if not isinstance(status, dict):
        return {}
    return {key: value for key, value in status.items() if isinstance(value, float) and not math.isfinite(value)}


def live_run(project: Project, now: float | None = None) -> dict | None:
    """status.json when a trainer is training, paused or evaluating with a fresh heartbeat, else None."""
    status = read_status(project)
    if not status or status.get("phase") not in ACTIVE_PHASES:
        return None
    age = (time.time() if now is None else now) - float(status.get("heartbeat") or 0)
    return status if age <= STALE_AFTER_SECONDS else None


def describe_run(status: dict) -> str:
    """`run 00007 (seed 0, step 120 of 400)` from a status.json."""
    total = f" of {status['total_steps']}" if status.get("total_steps") else ""
    return f"run {status.get('run')} (seed {status.get('seed_index', 0)}, step {status.get('step')}{total})"


def _touch(path: Path) -> bool:
    """Create a control file; False if it was there already."""
    if path.exists():
        return False
    fsio.atomic_write_text(path, f"{now_iso()}\n")
    return True


def pause(project: Project) -> str:
    if not _touch(project.control_file("pause")):
        return f"already paused ({project.control_file('pause')} exists); nothing changed"
    live = live_run(project)
    now = (f"{describe_run(live)} holds at its next step (status phase `paused`)" if live
           else "no run is training now")
    return f"paused: {now}; no new run starts until `autopilot resume`"


def resume(project: Project, study: StudyPaths | None = None) -> str:
    removed = [p for p in (project.control_file(s) for s in HOLDS) if p.exists()]
    for path in removed:
        path.unlink(missing_ok=True)
    lifted = [str(p.relative_to(project.root)) for p in removed]
    if study is not None and _resume_study(study):
        lifted.append(f"the study's own pause ({study.paused.relative_to(project.root)})")
    if not lifted:
        return "nothing to resume: no pause or stop is set"
    live = live_run(project)
    going_on = f"{describe_run(live)} goes on within a second; " if live else ""
    return (f"resumed (lifted {', '.join(lifted)}): {going_on}"
            "new runs start at the next invocation of the workflow (daemon, cron or snakemake)")


def stop(project: Project, now: bool = False) -> str:
    path = project.control_file("stop" if now else "stop-after-run")
    if not _touch(path):
        return f"already requested ({path} exists); nothing changed"
    live = live_run(project)
    if now:
        ends = (f"{describe_run(live)} ends at its next step as `stopped` (kept in the journal)" if live
                else "no run is training now")
    else:
        ends = (f"{describe_run(live)} trains to its end, extra seeds included" if live
                else "no run is training now")
    return (f"stop{' now' if now else ' after the current run'}: {ends}; then no new run starts and a running "
            "daemon exits; `autopilot resume` undoes it")


def skip(project: Project) -> str:
    path = project.control_file("skip")
    if not _touch(path):
        return f"a skip is already pending ({path} exists); nothing changed"
    live = live_run(project)
    if live:
        return (f"skip: {describe_run(live)} ends at its next step as `skipped`; the loop goes on with the next "
                "run")
    return (f"skip: no run is training now, so the next run that trains ends at its first step as `skipped`; "
            f"remove {path} to cancel")


# --- the study's own pause ------------------------------------------------------------------------------
def pause_on_failure_spike(study: Study, history: list[dict]) -> str | None:
    """Pause the study if its failure rate spiked since its last such pause; return the reason, or None."""
    reason = holds.new_failure_spike(study, history)
    if reason:
        pause_study(study, reason, by="the failure-rate check", last_run=history[-1]["run_id"])
        notify.emit(study, "failure_spike", f"study {study.name} paused itself: {reason}",
                    last_run=history[-1]["run_id"])
    return reason


DISK_CHECK = "the free-space check"


def hold_if_disk_low(study: Study, usage=shutil.disk_usage) -> str | None:
    """Before a run: hold the study while the runs' disk is low (paused.json, labbook, notify `disk_low`), and lift
    that hold once there is room again. Returns why it holds, or None."""
    reason = disk.free_space_hold(study, usage)
    pause = holds.study_pause(study.paths)
    ours = pause is not None and pause.get("by") == DISK_CHECK and not pause.get("resumed_at")
    if reason and holds.study_pause_reason(study.paths) is None:
        # keep the failure check's mark: the runs it counted before its own last pause stay uncounted
        pause_study(study, reason, by=DISK_CHECK, last_run=(pause or {}).get("last_run"))
        notify.emit(study, "disk_low", reason, free_bytes=usage(disk.runs_folder(study)).free,
                    need_bytes=disk.threshold(study)[0])
    elif reason is None and ours:
        at = now_iso()
        fsio.atomic_write_json(study.paths.paused, {**pause, "resumed_at": at})
        record.note(study, "Resumed by the free-space check",
                    f"There is room on the runs' disk again: the hold of {pause['at']} is lifted ({at}).")
        log.info("study %s: free space is back; the hold is lifted", study.name)
    return reason


def pause_study(study: Study, reason: str, by: str, last_run: str | None) -> None:
    """Pause a study with a reason: runs/<study>/paused.json and a section in labbook.md.

    The file stays after `resume` (with `resumed_at`) so that the runs up to `last_run` are not counted
    again by the check that paused it.
    """
    at = now_iso()
    fsio.atomic_write_json(study.paths.paused,
                           {"reason": reason, "by": by, "at": at, "last_run": last_run, "resumed_at": None})
    record.note(study, f"Paused by {by}", f"{reason}\n\nNo new run starts until `autopilot resume` ({at}).")
    log.warning("study %s paused: %s", study.name, reason)


def _resume_study(study: StudyPaths) -> bool:
    pause = holds.study_pause(study)
    if pause is None or pause.get("resumed_at"):
        return False
    fsio.atomic_write_json(study.paused, {**pause, "resumed_at": now_iso()})
    return True
