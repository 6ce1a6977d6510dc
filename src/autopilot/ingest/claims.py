"""A run's claim on a queued dataset (studies with `data.source: queue`).

`propose` claims the head of the queue for the run it proposes (the file moves to queue/processing/, and
<run>/data_claim.json records which one), the guard writes it into config.json as the run's train_file, and the
runner releases it when the run's seeds are done: to queue/done/ when the run completed, back to its queue
otherwise. A run that has a claim keeps it: proposing the same run again never claims a second file. An empty
queue halts the loop (nothing to train on) until a file is ingested.

Usage:
    claim_for_run(project, run)                  # in propose
    data = data_for_run(project, data, run)      # in the guard: the config's data block with train_file
    release_after_run(project, run, summaries)   # in train, after the last seed
"""

from __future__ import annotations

import logging
from pathlib import Path

from autopilot import fsio
from autopilot.errors import GuardRejected, LoopHalted
from autopilot.ingest import queue
from autopilot.paths import Project, RunPaths

log = logging.getLogger(__name__)


def claim_for_run(project: Project, run: RunPaths) -> dict:
    """The run's claim: the one it has, or the head of the queue moved to queue/processing/ now."""
    if run.data_claim.exists():
        return fsio.read_json(run.data_claim)
    entry = queue.claim_next(project)
    if entry is None:
        raise LoopHalted("data.source is `queue` and the queue is empty: drop a dataset into inbox/")
    report = fsio.read_json(queue.companion(entry, queue.REPORT_SUFFIX))
    claim = {"entry": str(entry.relative_to(project.root)), "spec": report["spec"],
             "priority": report["priority"], "sha256": report["sha256"], "source": report["source"],
             "records": report["counts"].get("records")}
    fsio.atomic_write_json(run.data_claim, claim)
    return claim


def data_for_run(project: Project, data: dict, run: RunPaths) -> dict:
    """The config's `data` block with the claimed dataset as the run's train_file."""
    if not run.data_claim.exists():
        raise GuardRejected(f"run {run.id}: data.source is `queue` but {run.data_claim} is missing "
                            "(propose claims the run's dataset)")
    claim = fsio.read_json(run.data_claim)
    if not (project.root / claim["entry"]).exists():
        raise GuardRejected(f"run {run.id}: the claimed dataset {claim['entry']} is gone from queue/processing/")
    return {**data, "train_file": claim["entry"], "train_spec": claim["spec"]}


def release_after_run(project: Project, run: RunPaths, summaries: list[dict]) -> Path | None:
    """Move the run's claimed entry to queue/done/ if its first seed completed, else back to its queue.

    Called when the run's seeds are done. A run whose training the loop will still resume (interrupted)
    must not call this: its entry stays in processing/. Returns the entry's new path (None: no claim).
    """
    if not run.data_claim.exists():
        return None
    claim = fsio.read_json(run.data_claim)
    if claim.get("released"):
        return project.root / claim["released"]
    entry = project.root / claim["entry"]
    trained = bool(summaries) and summaries[0]["status"] == "completed"
    moved = queue.finish(project, entry) if trained else queue.requeue(project, entry)
    log.info("%s: %s -> %s", run.dir, entry.name, moved.parent.name)
    fsio.atomic_write_json(run.data_claim, {**claim, "released": str(moved.relative_to(project.root))})
    return moved
