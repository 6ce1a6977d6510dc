"""The champion's lineage in a continual study: each champion in order, and the data it was trained on.

A continual run records the champion it started from (config.json `champion`) and the dataset it consumed
(<run>/data_claim.json). Walking those links back from the current champion gives the chain of weights, oldest
first: the base model, then every promoted run with its dataset. A rollback changes `current`, and so the chain.

Usage:
    steps = chain(study)          # [{"run_id": "00001", "data": {...}, "started_from": None, ...}, ...]
    print(describe(study, steps)) # base model -> 00001 (a.jsonl, 60 records) -> ...
"""

from __future__ import annotations

from pathlib import Path

from autopilot import ledger
from autopilot.registry import store
from autopilot.study import Study


def chain(study: Study) -> list[dict]:
    """The current champion and its ancestors, oldest first, each with the dataset it was trained on."""
    steps, seen = [], set()
    run_id = store.current_run(study.models)
    while run_id is not None and run_id not in seen:
        seen.add(run_id)
        run = study.paths.run(run_id)
        config = ledger.read_path(run.config) or {}
        claim = ledger.read_path(run.data_claim) or {}
        verdict = ledger.read_path(run.verdict) or {}
        steps.append({"run_id": run_id, "started_from": config.get("champion"),
                      "data": {"source": claim.get("source"), "entry": Path(claim["entry"]).name if claim else None,
                               "records": claim.get("records"), "sha256": claim.get("sha256")},
                      "verdict": verdict.get("verdict"), "value": verdict.get("value"),
                      "champion_value": verdict.get("incumbent_value")})
        run_id = config.get("champion")
    return steps[::-1]


def data_name(step: dict) -> str:
    d = step["data"]
    name = Path(d["source"]).name if d["source"] else d["entry"] or "no dataset recorded"
    return f"{name}, {d['records']} records" if d["records"] is not None else name


def describe(study: Study, steps: list[dict]) -> str:
    """One line: base model -> 00001 (a.jsonl, 60 records) -> 00003 (b.jsonl, 120 records)."""
    if not steps:
        return "no champion yet: runs start from the base model"
    first = steps[0]["started_from"]
    origin = (study.settings.model.path if study.settings.model else "the base model") if first is None \
        else f"run {first} (not a continual run: its own lineage is not recorded)"
    return " -> ".join([origin] + [f"{s['run_id']} ({data_name(s)})" for s in steps])
