"""Retention across runs: what stays on disk once runs are judged and journaled.

Kept: the current champion's folder and those of the `retention.keep_champions` champions before it (so that
`autopilot models rollback` always has its target), and the final checkpoint of each seed of the latest
`retention.keep_last_runs` journaled runs (a person may still promote one of them). Removed: every other
checkpoint folder of a journaled run (<run>/checkpoint/, <run>/seeds/seed-k/checkpoint/) and the folders of
older champions. Never removed: anything else of a run (metrics, summaries, verdicts, configs, logs), a run that
is not journaled yet (it may still train, be judged or be promoted), the registry's pointer and history.

Each removal is one line of runs/<study>/retention.jsonl (a pass appends its lines with one write): what, the
bytes freed and, for a run, the size of its checkpoints before (the free-space guard's default threshold comes
from it). A run's state there (`final` kept, or `none`) makes the pass cheap however long the study: only runs
whose state must change are looked at.

Usage:
    lines = apply(study, history, events, current)      # after the champion step's promotion, under its lock
    keep = kept_champions(events, current, keep=2)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from autopilot import fsio, schemas
from autopilot.clock import now_iso
from autopilot.paths import RunPaths
from autopilot.study import Study
from autopilot.train import checkpoints

log = logging.getLogger(__name__)


def kept_champions(events: list[dict], current: str | None, keep: int) -> set[str]:
    """Champion folders to keep: the current one and the `keep` champions before it, latest first (the one just
    before is where a rollback goes)."""
    latest: list[str] = []
    for ev in reversed(events):
        for run_id in (ev["run_id"], ev["previous"]):
            if run_id is not None and run_id not in latest:
                latest.append(run_id)
    return ({current} - {None}) | set(latest[:keep + 1])


def wanted_states(journaled: list[str], keep_last: int | None) -> dict[str, str]:
    """run id -> what its checkpoints should be reduced to: `final` (the latest keep_last runs) or `none`."""
    if keep_last is None:
        return {}
    ordered = sorted(journaled)
    recent = set(ordered[-keep_last:])
    return {run_id: "final" if run_id in recent else "none" for run_id in ordered}


def run_states(study: Study) -> dict[str, str]:
    """What retention.jsonl says each run was reduced to so far."""
    return {line["run_id"]: line["kept"] for line in fsio.iter_jsonl(study.paths.retention_log)
            if line["what"] == "run"}


def apply(study: Study, history: list[dict], events: list[dict], current: str | None) -> list[dict]:
    """Remove what retention no longer keeps; return the lines written to retention.jsonl."""
    settings = study.settings.retention
    states = run_states(study)
    lines = []
    for run_id, want in wanted_states([e["run_id"] for e in history], settings.keep_last_runs).items():
        if states.get(run_id) in ("none", want):
            continue
        before = sum(dir_bytes(d) for d in checkpoint_dirs(study.paths.run(run_id)))
        removed, freed = prune_run(study.paths.run(run_id), keep_final=want == "final")
        lines.append(log_line(study, "run", run_id, want, removed, freed, before))
    keep = kept_champions(events, current, settings.keep_champions)
    for run_id in study.models.champion_ids():
        if run_id not in keep:
            folder = study.models.champion(run_id).dir
            freed = dir_bytes(folder)
            shutil.rmtree(folder)
            lines.append(log_line(study, "champion", run_id, "none", [folder], freed, freed))
    for leftover in study.models.dir.glob(".*.export.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)  # an export killed midway (the lock is held: none runs now)
    if lines:  # one write and one fsync, however many runs (the first pass over a long study has thousands)
        fsio.append_text(study.paths.retention_log, "".join(json.dumps(line) + "\n" for line in lines))
    return lines


def log_line(study: Study, what: str, run_id: str, kept: str, removed: list[Path], freed: int, before: int) -> dict:
    root = study.project.root
    line = {"what": what, "run_id": run_id, "kept": kept, "removed": [str(p.relative_to(root)) for p in removed],
            "freed_bytes": freed, "checkpoint_bytes": before,
            "at": now_iso()}
    schemas.validate(line, "retention_entry")
    if removed:
        log.info("retention: %s %s: removed %d folder(s), %.1f MiB", what, run_id, len(removed), freed / 2**20)
    return line


def checkpoint_dirs(run: RunPaths) -> list[Path]:
    """The checkpoint folders of every seed of a run that has one."""
    seeds = [run.dir] + (sorted(d for d in run.seeds_dir.iterdir() if d.name.startswith("seed-"))
                         if run.seeds_dir.is_dir() else [])
    return [d / run.checkpoint.name for d in seeds if (d / run.checkpoint.name).is_dir()]


def prune_run(run: RunPaths, keep_final: bool) -> tuple[list[Path], int]:
    """Remove a run's checkpoint folders, or all but each seed's final checkpoint; (removed, bytes freed).

    Keeping the final one, only step-N folders older than the latest complete one (and leftover temp folders)
    go: a trainer's own checkpoint layout (files right in checkpoint/) is its final checkpoint, kept whole.
    """
    removed, freed = [], 0
    for folder in checkpoint_dirs(run):
        final = checkpoints.latest(folder) if keep_final else None
        targets = [p for p in folder.iterdir() if p != final and p.name.startswith(("step-", ".step-"))
                   and (final is not None or p.name.startswith("."))] if keep_final else [folder]
        for path in targets:
            freed += dir_bytes(path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed, freed


def dir_bytes(path: Path) -> int:
    """Bytes of the files under `path` (symlinks not followed)."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    return total
