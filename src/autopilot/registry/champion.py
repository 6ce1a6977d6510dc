"""The champion: the judge's promotions (in the champion step after the journal), a person's promotions and rollbacks.

models/<study>/
    current            relative symlink to the champion's folder, replaced with one rename
    <run>/             champion.json (written last: it marks the folder complete), model/ (weights), test/
    history.jsonl      one line per promotion, manual promotion and rollback: who, why, the champion before
    test_scores.jsonl  one line per held-out evaluation (never read by a policy or the judge)

`settle` runs in the champion step after each run is journaled (`autopilot champion`, the workflow's
update_champion rule, in the trainer's software): when the ledger's incumbent is not the champion,
it is promoted (weights exported, scored once on the held-out test split, pointed to), best.json and the labbook
say so, and retention removes what is no longer kept. A champion folder is never changed once complete, so a
rollback makes the previous champion current again byte for byte. A person's promotion or rollback also makes
that run the study's incumbent (autopilot.ledger.incumbent) until the judge promotes a run journaled later.

Usage:
    step(study, "00007")                                                   # the workflow's champion step
    promote(study, "00005", reason="better on our own eval", force=True)   # autopilot models promote
    rollback(study, reason="answers got worse in production")              # autopilot models rollback
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import shutil
import socket
from collections.abc import Iterator

from filelock import FileLock

from autopilot import fsio, ledger, notify, schemas
from autopilot.clock import now_iso
from autopilot.errors import AutopilotError
from autopilot.journal import record as journal
from autopilot.registry import export, retention, store, testscore
from autopilot.study import Study

log = logging.getLogger(__name__)

BY_JUDGE = "the judge"
KIND = {"promotion": "promoted by the judge", "manual_promotion": "promoted by hand", "rollback": "rolled back"}


def who() -> str:
    """user@host of the person running a command."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in a bare container
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@contextlib.contextmanager
def locked(study: Study) -> Iterator[None]:
    """One registry change at a time (the champion steps of a generation, a person's command)."""
    study.models.dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(study.models.lock)):
        yield


# --- the workflow's champion step -------------------------------------------------------------------------
def settle(study: Study, history: list[dict] | None = None) -> dict | None:
    """Make the ledger's incumbent the champion if it is not (the event written, or None); apply retention."""
    return _settle(study, history)[0]


def _settle(study: Study, history: list[dict] | None) -> tuple[dict | None, list[dict]]:
    with locked(study):
        history = ledger.read_history(study.paths) if history is None else history
        target = ledger.incumbent(history, ledger.champion_events(study.models))
        event = None
        if target is not None and target["run_id"] != store.current_run(study.models):
            verdict = ledger.read_path(study.paths.run(target["run_id"]).verdict) or {}
            event = change(study, history, target, "promotion", BY_JUDGE,
                           verdict.get("reason") or f"verdict {target['verdict']}")
        elif target is not None:
            write_best(study, target, history=history)  # the journal wrote best.json: add the test score
        pruned = retention.apply(study, history, ledger.champion_events(study.models), store.current_run(study.models))
    return event, pruned


def step(study: Study, run_id: str) -> dict:
    """The workflow's champion step after run `run_id` is journaled: settle, and record what it did in the run's
    registry.json (the promotion event, the champion after it, what retention freed)."""
    if not study.paths.run(run_id).entry.exists():
        raise AutopilotError(f"run {run_id} is not journaled yet (no journal_entry.json): run `autopilot journal "
                             f"--run {run_id}` first")
    event, pruned = _settle(study, None)
    record = {"run_id": run_id, "study": study.name, "event": event, "champion": store.current_run(study.models),
              "removed": sum(len(line["removed"]) for line in pruned),
              "freed_bytes": sum(line["freed_bytes"] for line in pruned), "at": now_iso()}
    schemas.validate(record, "registry_step", what=str(study.paths.run(run_id).registry))
    fsio.atomic_write_json(study.paths.run(run_id).registry, record)
    return record


# --- a person's commands ---------------------------------------------------------------------------------
def promote(study: Study, run_id: str, reason: str, force: bool = False, by: str | None = None) -> dict:
    """Make a journaled run the champion and the study's incumbent; a run the judge did not promote needs force."""
    with locked(study):
        history = ledger.read_history(study.paths)  # under the lock: `after_run` is the last run journaled now
        entry = journaled(history, run_id)
        if entry["value"] is None:
            raise AutopilotError(f"run {run_id} has no metric (verdict {entry['verdict']}): it cannot be the champion")
        forced = entry["verdict"] not in ledger.PROMOTING_VERDICTS
        if forced and not force:
            raise AutopilotError(f"run {run_id} was not promoted by the judge (verdict {entry['verdict']}); add "
                                 "--force to make it the champion anyway (the registry and the labbook say it was "
                                 "forced)")
        if store.current_run(study.models) == run_id:
            raise AutopilotError(f"run {run_id} is the champion already; nothing changed")
        if store.read_champion(study.models.champion(run_id)) is None \
                and retention.run_states(study).get(run_id) == "none":
            raise AutopilotError(f"run {run_id} has no weights left to export: retention removed its checkpoints "
                                 f"(retention.keep_last_runs={study.settings.retention.keep_last_runs}) and it "
                                 "was never a champion whose folder is kept")
        return change(study, history, entry, "manual_promotion", by or who(), reason, forced)


def rollback(study: Study, reason: str, to: str | None = None, by: str | None = None) -> dict:
    """Make the previous champion (or `to`, an earlier one) the champion and the study's incumbent again.

    The previous champion is the one `current` named before its last change, so a second rollback returns to
    where the first one left (as `kubectl rollout undo` does); `to` reaches further back. Retention always keeps
    the previous champion's folder; an older one may be gone, and then its checkpoints are exported again if
    they are still on disk.
    """
    with locked(study):
        history = ledger.read_history(study.paths)
        events = ledger.champion_events(study.models)
        current = store.current_run(study.models)
        if current is None or not events:
            raise AutopilotError(f"study {study.name} has no champion yet: nothing to roll back")
        earlier = sorted({ev["run_id"] for ev in events} - {current})
        if to is None:
            to = store.previous_champion(events)
            if to is None:
                raise AutopilotError(f"run {current} is the study's first champion: there is none before it to roll "
                                     "back to (`autopilot models promote RUN --reason ...` makes another run champion)")
        elif to == current:
            raise AutopilotError(f"run {to} is the champion already; nothing changed")
        elif to not in earlier:
            raise AutopilotError(f"run {to} was never a champion of study {study.name} (earlier champions: "
                                 f"{', '.join(earlier) or 'none'}); `autopilot models promote {to} --reason ...` "
                                 "makes it champion")
        if store.read_champion(study.models.champion(to)) is None \
                and retention.run_states(study).get(to) == "none":
            raise AutopilotError(f"run {to}'s weights are gone: retention removed its champion folder "
                                 f"(retention.keep_champions={study.settings.retention.keep_champions}) and its "
                                 "checkpoints; the champions kept are listed by `autopilot models list`")
        return change(study, history, journaled(history, to), "rollback", by or who(), reason)


def journaled(history: list[dict], run_id: str) -> dict:
    entry = next((e for e in history if e["run_id"] == run_id), None)
    if entry is None:
        raise AutopilotError(f"run {run_id} is not in the study's ledger (history.jsonl): only a judged and journaled "
                             "run can be the champion; see `autopilot results`")
    return entry


# --- one change of champion ------------------------------------------------------------------------------
def change(study: Study, history: list[dict], entry: dict, kind: str, by: str, reason: str,
           forced: bool = False) -> dict:
    """Export and score the champion if it is new, record the event, swap `current`; tell the labbook and notify.

    The event is written before the swap: a process killed in between leaves a record the next champion step
    completes (it promotes the incumbent again), never a champion nobody recorded.
    """
    run_id = entry["run_id"]
    previous = store.current_run(study.models)
    champion = ensure_champion(study, entry)
    event = {"event": kind, "run_id": run_id, "previous": previous, "by": by, "reason": reason, "forced": forced,
             "verdict": entry["verdict"], "after_run": history[-1]["run_id"] if history else None, "at": now_iso()}
    store.append_event(study.models, event)
    store.swap_current(study.models, run_id)
    write_best(study, entry, champion, history)
    journal.note(study, f"Champion: run {run_id} ({KIND[kind]})", describe_change(study, event, champion))
    test = champion["test"] or {}
    notify.emit(study, "rolled_back" if kind == "rollback" else "promoted",
                f"study {study.name}: run {run_id} is the champion ({KIND[kind]}{', forced' if forced else ''}); "
                f"{study.metric_name} {fmt(entry['value'])}, held-out test {fmt(test.get('metric', {}).get('value'))}",
                run_id=run_id, previous=previous, kind=kind, by=by, reason=reason, forced=forced,
                value=entry["value"], test_value=test.get("metric", {}).get("value"),
                path=str((study.models.current / "model").relative_to(study.project.root)))
    log.info("study %s: run %s is the champion (%s by %s)", study.name, run_id, kind, by)
    return event


def ensure_champion(study: Study, entry: dict) -> dict:
    """champion.json of the run, exporting its weights and scoring them on the test split the first time."""
    run_id = entry["run_id"]
    champion = study.models.champion(run_id)
    existing = store.read_champion(champion)
    if existing is not None:
        return existing
    shutil.rmtree(champion.dir, ignore_errors=True)  # an incomplete folder left by a killed export
    tmp = study.models.dir / f".{run_id}.export.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = export.export_weights(study, run_id, tmp / "model")
    os.rename(tmp, champion.dir)
    hparams = (ledger.read_path(study.paths.run(run_id).config) or {}).get("hparams", {})
    test = testscore.evaluate(study, run_id, champion, weights, hparams)
    record = {"study": study.name, "run_id": run_id, "task": study.settings.task, "verdict": entry["verdict"],
              "metric": {**study.config["metric"], "value": entry["value"]}, "seed_values": entry["seed_values"],
              "interval": entry["interval"], "compared_to": entry["compared_to"], "hparams": hparams,
              "weights": weights, "test": test, "exported_at": now_iso()}
    schemas.validate(record, "champion", what=str(champion.record))
    if test is not None:
        fsio.append_jsonl(study.models.test_scores, {"run_id": run_id, **test})
    fsio.atomic_write_json(champion.record, record)  # last: the folder is complete
    return record


# --- what people read ------------------------------------------------------------------------------------
def write_best(study: Study, entry: dict, champion: dict | None = None,
               history: list[dict] | None = None) -> None:
    """best.json: the study's incumbent, the mean and seeds of its record (`ledger.incumbent_values`: seeds that
    decided nothing about it), with the champion's held-out test score (rewritten only when it changed)."""
    champion = champion or store.read_champion(study.models.champion(entry["run_id"])) or {}
    values = ledger.incumbent_values(history or [], entry)
    best = {"run_id": entry["run_id"], "value": sum(values) / len(values), "seed_values": values,
            "metric": study.config["metric"], "verdict": entry["verdict"], "params": entry["params"],
            "updated_at": entry["finished_at"], "champion": str(study.models.current.relative_to(study.project.root)),
            "test": test_line(champion.get("test"))}
    if ledger.read_path(study.paths.best) != best:
        fsio.atomic_write_json(study.paths.best, best)


def test_line(test: dict | None) -> dict | None:
    """The test block in short: metric, value, examples, status, error."""
    if test is None:
        return None
    return {"metric": test["metric"]["name"], "value": test["metric"]["value"], "examples": test["examples"],
            "status": test["status"], "error": test["error"], "evaluated_at": test["evaluated_at"]}


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def describe_test(test: dict | None) -> str:
    if test is None:
        return "no held-out test split in this study (cnn_digits has one; causal_lm: data.test_file; command: " \
               "trainer.test_command)"
    if test["metric"]["value"] is None:
        return f"held-out test evaluation {test['status']}: {test['error']}"
    return (f"held-out test: {test['metric']['name']} = {test['metric']['value']:.4f} on {test['examples']} test "
            f"examples (measured once, at its first promotion; never used to select a run)")


def describe_change(study: Study, event: dict, champion: dict) -> str:
    """The labbook's section on a change of champion."""
    run_id, previous = event["run_id"], event["previous"]
    if event["event"] == "rollback":
        how = f"rolled back from run {previous} by {event['by']}: {event['reason']}"
    elif event["event"] == "manual_promotion":
        forced = f" (forced: its verdict was `{event['verdict']}`)" if event["forced"] else ""
        how = f"promoted by {event['by']}{forced}: {event['reason']}"
    else:
        how = f"promoted by the judge: {event['reason']}"
    weights = champion["weights"]
    where = f"models/{study.name}/{run_id}/{weights['path']}"
    lines = [f"- {how}",
             f"- validation: {study.metric_name} = {fmt(champion['metric']['value'])} over "
             f"{len(champion['seed_values'])} seed(s)",
             f"- {describe_test(champion['test'])}",
             f"- weights: {where} ({weights['format']}, seed {weights['seed_index']}: the best of its seeds on "
             f"validation); `models/{study.name}/current` points there" if weights["format"] != "none"
             else f"- no weights: {weights['error']}"]
    if previous and previous != run_id:
        lines.append(f"- the champion before: run {previous} (`autopilot models rollback --reason TEXT` goes back)")
    if event["event"] != "promotion":
        lines.append(f"- run {run_id} is now the study's incumbent: later runs are judged against it")
    return "\n".join(lines)
