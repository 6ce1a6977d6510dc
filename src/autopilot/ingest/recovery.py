"""Recovery after a crash: an ingest killed half way is completed or undone by the next one.

Before it links an entry into the queue, ingest writes queue/.ingest.intent.json: which file it claimed (its
name and identity) and the id its report or reason carries. The next ingest, under the same lock, looks for that
entry: if it is in the queue, the claimed file is removed (only if it is still the version that was read);
a report linked without its entry is removed. Then everything left in the claim area goes back to the inbox,
and stale copies in queue/.staging/ are dropped: nothing is lost, nothing is queued twice.

Usage:
    write_intent(project, id=..., ms=..., source=name, claimed=[{"name": ..., "identity": [...]}])
    recover(project)
"""

from __future__ import annotations

import json
import logging
import os

from autopilot import fsio
from autopilot.errors import AutopilotError
from autopilot.ingest import claim_area, queue
from autopilot.ingest.claim_area import identity
from autopilot.ingest.files import printable
from autopilot.ingest.queue import META_SUFFIX, REASON_SUFFIX, REPORT_SUFFIX
from autopilot.paths import Project

log = logging.getLogger(__name__)

INTENT = ".ingest.intent.json"


def write_intent(project: Project, **intent) -> None:
    """What is about to be published and removed. ASCII JSON: names that are not UTF-8 survive the round trip."""
    fsio.atomic_write_bytes(project.queue / INTENT, json.dumps(intent).encode("ascii"))


def recover(project: Project) -> None:
    """Finish or undo the move of a killed ingest (from its intent file): what was published is removed from the
    claim area, everything else in it goes back to the inbox; then stale staged copies are dropped."""
    intent_path = project.queue / INTENT
    if intent_path.exists():
        intent = fsio.read_json(intent_path)
        if _published(project, intent):
            log.warning("completing the interrupted ingest of %s", printable(intent["source"]))
            _remove_published(project, intent)
        intent_path.unlink()
    claim_area.give_back_all(project)
    for stale in queue.staging(project).iterdir():
        stale.unlink()


def recover_quietly(project: Project) -> None:
    try:
        recover(project)
    except Exception:
        log.exception("recovery after a failed ingest failed too; the next ingest tries again")


def _remove_published(project: Project, intent: dict) -> None:
    """Remove the claimed files of a published entry, each only if it is still the version that was read."""
    for item in intent.get("claimed", []):
        path = project.ingesting / item["name"]
        if os.path.lexists(path) and list(identity(os.lstat(path))) == item["identity"]:
            os.unlink(path)
    if "claimed" not in intent:  # an intent of a version that read files in place: they are in the inbox
        log.warning("%s: left in the inbox (an interrupted ingest of an older version queued it; remove it by "
                    "hand if its entry in queue/ is complete)", printable(intent["source"]))


def _published(project: Project, intent: dict) -> bool:
    """Whether the interrupted ingest's entry is in the queue; if only its report or reason is, remove that."""
    prefix = f"{intent['ms']:013d}-"
    for folder in queue.all_folders(project):
        for doc in folder.glob(prefix + "*") if folder.is_dir() else []:
            if not doc.name.endswith((REPORT_SUFFIX, REASON_SUFFIX)):
                continue
            try:
                content = fsio.read_json(doc)
            except AutopilotError:
                continue
            if content.get("ingest_id") != intent["id"]:
                continue
            entry = folder / content["entry"]
            if os.path.lexists(entry):
                return True
            log.warning("removing %s: the ingest that wrote it was killed before its entry was linked", doc)
            doc.unlink()
            queue.companion(entry, META_SUFFIX).unlink(missing_ok=True)
    return False
