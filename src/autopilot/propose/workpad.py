"""The study's shared notes, in markdown for people and prompts alike.

    runs/<study>/workpad.md         the worker's notes (housekeeping.notes), one section per run
    runs/<study>/shared_todo.md     TODOs with ids: `- [ ] T003 text (run 00004, worker)`, `- [x]` once resolved
    runs/<study>/mentor_notes.md    the mentor's critiques, one section per review

A proposal's housekeeping is written here once the proposal is final (after the guard and the mentor): new
TODOs get the next free id, `resolved_todos` ids that are open are ticked off (unknown ids are ignored and
logged). The files are rewritten atomically under the study's workpad lock, since the runs of a generation
are proposed side by side.

Usage:
    record(study, proposal)
    open_todos(study)          # [("T001", "try sgd with a higher lr (run 00003, worker)"), ...]
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from filelock import FileLock

from autopilot import fsio
from autopilot.study import Study

log = logging.getLogger(__name__)

TODO_LINE = re.compile(r"^- \[(?P<done>[ x])\] (?P<id>T\d+) (?P<text>.*)$")


def workpad_file(study: Study) -> Path:
    return study.paths.workpad


def todo_file(study: Study) -> Path:
    return study.paths.shared_todo


def mentor_file(study: Study) -> Path:
    return study.paths.mentor_notes


def one_line(text: str) -> str:
    return " ".join(text.split())


def read_todos(study: Study) -> list[dict]:
    path = todo_file(study)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [{"id": m["id"], "done": m["done"] == "x", "text": m["text"]} for m in map(TODO_LINE.match, lines) if m]


def open_todos(study: Study) -> list[tuple[str, str]]:
    return [(t["id"], t["text"]) for t in read_todos(study) if not t["done"]]


def write_todos(study: Study, todos: list[dict]) -> None:
    head = (f"# Shared TODOs: {study.name}\n\nOpen items are `- [ ]`, done ones `- [x]`. Proposals add items "
            "(housekeeping.new_todos, the mentor's new_todos) and resolve them by id "
            "(housekeeping.resolved_todos).\n\n")
    body = "".join(f"- [{'x' if t['done'] else ' '}] {t['id']} {t['text']}\n" for t in todos)
    fsio.atomic_write_text(todo_file(study), head + body)


def update_todos(study: Study, run_id: str, added: list[tuple[str, str]], resolved: list[str]) -> None:
    todos = read_todos(study)
    known = {t["id"]: t for t in todos}
    for todo_id in resolved:
        if todo_id in known and not known[todo_id]["done"]:
            known[todo_id]["done"] = True
            known[todo_id]["text"] += f" (resolved by run {run_id})"
        else:
            log.warning("run %s resolves TODO %r, which is not open; ignored", run_id, todo_id)
    number = max((int(t["id"][1:]) for t in todos), default=0)
    for text, who in added:
        number += 1
        todos.append({"id": f"T{number:03d}", "done": False, "text": f"{one_line(text)} (run {run_id}, {who})"})
    write_todos(study, todos)


def append_section(path: Path, title: str, text: str) -> None:
    old = path.read_text(encoding="utf-8") if path.exists() else f"# {path.stem.replace('_', ' ').capitalize()}\n"
    fsio.atomic_write_text(path, f"{old}\n## {title}\n\n{text.strip()}\n")


def record(study: Study, proposal: dict) -> None:
    """Write the final proposal's housekeeping and the mentor's review to the study's notes."""
    housekeeping = proposal["housekeeping"]
    review = (proposal.get("mentor") or {}).get("review")
    added = [(t, "worker") for t in housekeeping["new_todos"]] + [(t, "mentor") for t in (review or {}).get(
        "new_todos", [])]
    if not (housekeeping["notes"].strip() or added or housekeeping["resolved_todos"] or review):
        return
    run_id, policy = proposal["run_id"], proposal["policy"]
    with FileLock(str(study.paths.workpad_lock)):
        if housekeeping["notes"].strip():
            append_section(workpad_file(study), f"Run {run_id} ({policy})", housekeeping["notes"])
        if added or housekeeping["resolved_todos"]:
            update_todos(study, run_id, added, housekeeping["resolved_todos"])
        if review:
            append_section(mentor_file(study), f"Run {run_id}: {review['decision']} ({proposal['mentor']['trigger']})",
                           review["critique"])


def tail(path: Path, chars: int) -> str:
    """The last `chars` characters of a notes file, cut at a line start ("" when there is none)."""
    if not path.exists():
        return ""
    text = path.read_text(encoding="utf-8")
    if len(text) <= chars:
        return text.strip()
    cut = text[-chars:]
    return ("[... earlier notes cut ...]\n" + cut[cut.find("\n") + 1:]).strip()
