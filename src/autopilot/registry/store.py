"""The registry's files in models/<study>/: the pointer `current`, the event history, champion records.

`current` is a relative symlink to the champion's folder (`current -> 00007`), so that `models/<study>/current/
model` is a path any server takes (vLLM, transformers). It is replaced with one rename: a reader sees the old
champion or the new one, never none.

Usage:
    run_id = current_run(study.models)          # None before the first promotion
    swap_current(study.models, "00007")
    before = previous_champion(ledger.champion_events(study.models))   # where a rollback goes
"""

from __future__ import annotations

import os
from pathlib import Path

from autopilot import fsio, schemas
from autopilot.errors import AutopilotError
from autopilot.paths import RUN_ID_RE, ChampionPaths, ModelPaths


def current_run(models: ModelPaths) -> str | None:
    """The run `current` points to; None when there is no champion yet."""
    try:
        target = os.readlink(models.current)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise AutopilotError(f"{models.current} is not the registry's symlink ({e.strerror}); move it away and run "
                             "`autopilot journal` (or the workflow) again to point it to the champion") from None
    name = Path(target).name
    if not RUN_ID_RE.match(name):
        raise AutopilotError(f"{models.current} points to {target!r}, not to a champion folder of this study")
    return name


def swap_current(models: ModelPaths, run_id: str) -> None:
    """Point `current` to the champion folder `run_id` with one rename (atomic on POSIX)."""
    tmp = models.dir / f".current.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(run_id, tmp)
    os.replace(tmp, models.current)
    fsio.fsync_path(models.dir)


def read_champion(champion: ChampionPaths) -> dict | None:
    """champion.json, or None when the folder is missing or incomplete (champion.json is written last)."""
    return fsio.read_json(champion.record) if champion.record.exists() else None


def append_event(models: ModelPaths, event: dict) -> None:
    schemas.validate(event, "registry_event", what=f"registry event of run {event.get('run_id')}")
    fsio.append_jsonl(models.history, event)


def previous_champion(events: list[dict]) -> str | None:
    """The champion before the current one: where `autopilot models rollback` goes (None: there was none)."""
    return events[-1]["previous"] if events else None


def held_out_scores(models: ModelPaths) -> dict[str, dict]:
    """run id -> its held-out test block (models/<study>/test_scores.jsonl): for people, never for selection."""
    return {line["run_id"]: {k: v for k, v in line.items() if k != "run_id"}
            for line in fsio.iter_jsonl(models.test_scores)}
