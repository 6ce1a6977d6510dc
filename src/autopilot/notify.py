"""Told, not found out: each event (a promotion, a hold, the loop stopping) is appended to runs/<study>/events.jsonl
and, when the study names a command, written as one JSON object to that command's stdin.

    notify:
      command: [sh, -c, "curl -fsS -H 'Content-Type: application/json' -d @- \"$SLACK_WEBHOOK_URL\""]
      on: [promoted, rolled_back, failure_spike, disk_low]

A command that cannot start, exits non-zero or outlives notify.timeout_seconds is logged (a warning, and its
output with the reason in runs/<study>/logs/notify.log) and never raises: telling must never stop the loop.

Usage:
    notify.emit(study, "promoted", "run 00007 is the new champion", run_id="00007")
"""

from __future__ import annotations

import json
import logging

from autopilot import fsio, schemas
from autopilot.clock import now_iso
from autopilot.processes import run_limited
from autopilot.settings import Notify
from autopilot.study import Study

log = logging.getLogger(__name__)

EVENTS = ("promoted", "rolled_back", "paused", "stopped", "failure_spike", "plateau", "disk_low")


def emit(study: Study, event: str, message: str, **details) -> dict:
    """Record the event and run the study's notify command for it; never raises for a failing command or disk."""
    record = {"event": event, "study": study.name, "at": now_iso(),
              "message": message, "details": details}
    schemas.validate(record, "event")
    try:
        fsio.append_jsonl(study.paths.events, record)
    except OSError as e:  # a full disk is one of the events: telling must not fail on it
        log.warning("could not append to %s: %s", study.paths.events, e)
    settings = study.settings.notify
    if settings.command and event in settings.on:
        send(study, settings, record)
    return record


def send(study: Study, settings: Notify, record: dict) -> bool:
    """Run the notify command with the event on stdin; False (and a logged reason) when it did not succeed."""
    argv, limit = list(settings.command), settings.timeout_seconds
    out = study.paths.logs / "notify.log"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fsio.append_text(out, f"=== {record['at']} {record['event']}: {' '.join(argv)} ===\n")
        code = run_limited(argv, cwd=study.project.root, timeout=limit, output=out,
                           stdin=json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
    except OSError as e:
        problem = f"could not start {argv[0]!r}: {e.strerror or e}"
    else:
        problem = (None if code == 0 else f"timed out after {limit:g}s (its process group was killed)"
                   if code is None else f"exited with status {code}")
    if problem is None:
        return True
    log.warning("notify command for %s %s; the loop goes on (see %s)", record["event"], problem, out)
    try:
        fsio.append_text(out, f"=== notify {record['event']}: {problem} ===\n")
    except OSError:
        pass
    return False
