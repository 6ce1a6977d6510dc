"""What becomes of a continual run's dataset, by its verdict: never silently done.

    improved       queue/done/ with <name>.outcome.json: the run, `promoted`
    inconclusive   queue/done/ with <name>.outcome.json: the run, `no effect` (consumed: it changed nothing)
    regressed      queue/quarantine/ with <name>.evidence.json: the per-set deltas that blocked the promotion;
                   `autopilot queue retry NAME` puts it back into its queue
    failed, stopped, skipped   back into its queue, in its place (the run did not judge it)

Called by the judge step before it writes verdict.json, and idempotent: the claim (<run>/data_claim.json) records
`released` and `outcome` last, and an entry found in its target folder already is not moved again.

Usage:
    data = settle(study, run, verdict="regressed", evidence={...})   # the verdict's `data` block, or None
"""

from __future__ import annotations

import logging
from pathlib import Path

from autopilot import fsio
from autopilot.clock import now_iso
from autopilot.ingest import queue
from autopilot.paths import RunPaths
from autopilot.study import Study

log = logging.getLogger(__name__)

OUTCOMES = {"improved": "done", "inconclusive": "done", "regressed": "quarantined"}  # else: requeued
EFFECT = {"improved": "promoted: the champion was trained on it", "inconclusive": "no effect: consumed, the champion "
          "stays (no set changed significantly)"}


def settle(study: Study, run: RunPaths, verdict: str, evidence: dict) -> dict | None:
    """Move the run's claimed dataset by the verdict, write its record beside it; return the verdict's `data`."""
    if not run.data_claim.exists():
        return None
    claim = fsio.read_json(run.data_claim)
    if claim.get("released"):
        return data_block(claim)
    project = study.project
    entry = project.root / claim["entry"]
    outcome = OUTCOMES.get(verdict, "requeued")
    folder = {"done": project.done, "quarantined": project.quarantine}.get(outcome)
    if folder is None:
        moved = already(entry, project.queue_dir(claim["priority"])) or queue.requeue(project, entry)
    else:
        moved = already(entry, folder) or (queue.finish if outcome == "done" else queue.quarantine)(project, entry)
        suffix = queue.OUTCOME_SUFFIX if outcome == "done" else queue.EVIDENCE_SUFFIX
        record = {"run_id": run.id, "study": study.name, "verdict": verdict, "entry": moved.name,
                  "source": claim.get("source"), "sha256": claim["sha256"], "at": now_iso(), **evidence}
        if outcome == "done":
            record["effect"] = EFFECT[verdict]
        fsio.atomic_write_json(queue.companion(moved, suffix), record)
    log.info("run %s: %s -> %s (%s)", run.id, entry.name, moved.parent.name, verdict)
    claim = {**claim, "released": str(moved.relative_to(project.root)), "outcome": outcome}
    fsio.atomic_write_json(run.data_claim, claim)
    return data_block(claim)


def already(entry: Path, folder: Path) -> Path | None:
    """The entry in `folder` when a judge killed after the move left it there, else None."""
    target = folder / entry.name
    return target if not entry.exists() and target.exists() else None


def data_block(claim: dict) -> dict:
    return {"entry": Path(claim["entry"]).name, "source": claim.get("source"), "spec": claim["spec"],
            "records": claim.get("records"), "sha256": claim["sha256"], "outcome": claim["outcome"],
            "now_at": claim["released"]}
