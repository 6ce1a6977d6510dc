"""What `autopilot models list` and `models show` print: the registry's history and one champion's record.

Usage:
    rows = history_rows(study)          # one dict per promotion, manual promotion and rollback
    info = champion_info(study, None)   # the current champion: champion.json, files, events
"""

from __future__ import annotations

from autopilot import ledger
from autopilot.errors import AutopilotError
from autopilot.registry import retention, store
from autopilot.study import Study


def history_rows(study: Study) -> list[dict]:
    """Every change of champion, oldest first, with the run's validation value and held-out test score."""
    values = {e["run_id"]: e["value"] for e in ledger.read_history(study.paths)}
    tests = store.held_out_scores(study.models)
    current = store.current_run(study.models)
    kept = set(study.models.champion_ids())
    events = ledger.champion_events(study.models)
    rows = []
    for i, ev in enumerate(events):
        test = tests.get(ev["run_id"]) or {}
        rows.append({**ev, "value": values.get(ev["run_id"]), "test_value": (test.get("metric") or {}).get("value"),
                     "test_examples": test.get("examples"), "weights_kept": ev["run_id"] in kept,
                     "current": ev["run_id"] == current and i == len(events) - 1})
    return rows


def champion_info(study: Study, run_id: str | None) -> dict:
    """champion.json of `run_id` (default: the current champion), its files and the events that named it."""
    current = store.current_run(study.models)
    run_id = run_id or current
    if run_id is None:
        raise AutopilotError(f"study {study.name} has no champion yet: the first run the judge promotes becomes "
                             f"one (models/{study.name}/current)")
    record = store.read_champion(study.models.champion(run_id))
    events = [ev for ev in ledger.champion_events(study.models) if ev["run_id"] == run_id]
    if record is None and not events:
        raise AutopilotError(f"run {run_id} was never a champion of study {study.name}; `autopilot models list` "
                             "shows those that were")
    folder = study.models.champion(run_id).dir
    weights = folder / (record["weights"]["path"] or "") if record and record["weights"]["path"] else None
    return {"run_id": run_id, "current": run_id == current, "record": record, "events": events,
            "folder": str(folder.relative_to(study.project.root)) if folder.exists() else None,
            "weights_bytes": retention.dir_bytes(weights) if weights and weights.exists() else None,
            "test": store.held_out_scores(study.models).get(run_id)}


def champion_summary(study: Study) -> dict | None:
    """The current champion in one dict (status, results, report, digest): run, path, how it came, test score."""
    run_id = store.current_run(study.models)
    if run_id is None:
        return None
    record = store.read_champion(study.models.champion(run_id)) or {}
    events = [ev for ev in ledger.champion_events(study.models) if ev["run_id"] == run_id]
    test = record.get("test")
    return {"run_id": run_id, "path": str(study.models.current.relative_to(study.project.root)),
            "value": (record.get("metric") or {}).get("value"), "event": events[-1]["event"] if events else None,
            "by": events[-1]["by"] if events else None, "at": events[-1]["at"] if events else None,
            "weights": (record.get("weights") or {}).get("format"),
            "test": None if test is None else {"metric": test["metric"]["name"], "value": test["metric"]["value"],
                                               "examples": test["examples"], "status": test["status"],
                                               "error": test["error"]}}


def describe_champion(c: dict | None) -> str:
    """One line for people: `run 00007 (models/s/current): held-out test val_accuracy 0.9554 on 359 examples`."""
    if c is None:
        return "none yet (the first run the judge promotes becomes the champion)"
    how = {"promotion": "promoted by the judge", "manual_promotion": f"promoted by {c['by']}",
           "rollback": f"rolled back to by {c['by']}"}.get(c["event"], "")
    t = c["test"]
    if t is None:
        test = "no held-out test split"
    elif t["value"] is None:
        test = f"held-out test {t['status']}: {t['error']}"
    else:
        test = f"held-out test {t['metric']} {t['value']:.4f} on {t['examples']} examples (measured once, at promotion)"
    return f"run {c['run_id']} ({c['path']}; {how}): {test}"
