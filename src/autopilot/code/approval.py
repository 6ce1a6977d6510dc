"""The approval gate: with `code_mode.approval: required` a patch waits for a person, and the night goes on.

A patch that passed the guard and the checks is parked in runs/<study>/pending/<run>.json (with <run>.diff); its run
trains a config proposal instead, so nothing waits. `autopilot approve RUN` or `autopilot reject RUN` records the
decision, who made it and why, in that file. The next code run after an approval takes the oldest approved patch (no
LLM is asked), applies it to the code line as it is then, checks it again, and trains it; the file then says which
run used it. Nothing is deleted: pending/ is the record of every decision.

Usage:
    park(study, proposal_code, run_id)
    approve(study, "00004", note="looks right")  /  reject(study, "00004", note="touches the loss")
    record = next_approved(study); mark_used(study, record["run_id"], "00006")
"""

from __future__ import annotations

import getpass

from filelock import FileLock

from autopilot import fsio, ledger, schemas
from autopilot.clock import now_iso
from autopilot.errors import AutopilotError
from autopilot.study import Study


def park(study: Study, run_id: str, code: dict, proposal: dict) -> dict:
    """Write pending/<run>.json and <run>.diff for a patch that waits for a person."""
    record = {"run_id": run_id, "state": "pending", "base_commit": code["base_commit"], "commit": code["commit"],
              "tree": code["tree"], "files": code["files"], "diff_lines": code["diff_lines"],
              "policy": proposal["policy"], "rationale": proposal["rationale"][:4000],
              "hypothesis": proposal["hypothesis"][:1000], "flags": code["flags"], "created_at": now_iso(),
              "decided_at": None, "decided_by": None, "reason": None, "used_by": None}
    schemas.validate(record, "pending_patch")
    fsio.atomic_write_text(study.paths.pending_diff(run_id), code["diff"])
    fsio.atomic_write_json(study.paths.pending_record(run_id), record)
    return record


def read(study: Study, run_id: str) -> dict:
    path = study.paths.pending_record(run_id)
    if not path.exists():
        waiting = [r["run_id"] for r in records(study) if r["state"] == "pending"]
        raise AutopilotError(f"no patch of run {run_id} in {study.paths.pending}/ (waiting for a decision: "
                             f"{', '.join(waiting) or 'none'})")
    return fsio.read_json(path)


def records(study: Study) -> list[dict]:
    folder = study.paths.pending
    return [fsio.read_json(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def decide(study: Study, run_id: str, state: str, note: str | None) -> dict:
    with FileLock(str(study.paths.code_lock)):
        record = read(study, run_id)
        if record["state"] != "pending":
            raise AutopilotError(f"the patch of run {run_id} is {record['state']} already"
                                 + (f" (by {record['decided_by']} at {record['decided_at']})" if record["decided_by"]
                                    else ""))
        record.update(state=state, decided_at=now_iso(), decided_by=getpass.getuser(), reason=(note or None))
        schemas.validate(record, "pending_patch")
        fsio.atomic_write_json(study.paths.pending_record(run_id), record)
    return record


def approve(study: Study, run_id: str, note: str | None = None) -> dict:
    return decide(study, run_id, "approved", note)


def reject(study: Study, run_id: str, note: str | None = None) -> dict:
    return decide(study, run_id, "rejected", note)


def next_approved(study: Study) -> dict | None:
    """The oldest approved patch no run has trained yet."""
    return next((r for r in records(study) if r["state"] == "approved"), None)


def diff_of(study: Study, run_id: str) -> str:
    return study.paths.pending_diff(run_id).read_text(encoding="utf-8")


def mark_used(study: Study, run_id: str, by_run: str) -> None:
    with FileLock(str(study.paths.code_lock)):
        record = ledger.read_path(study.paths.pending_record(run_id))
        if record is not None and record["state"] == "approved":
            fsio.atomic_write_json(study.paths.pending_record(run_id), {**record, "state": "used", "used_by": by_run})
