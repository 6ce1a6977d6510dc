"""The journal: labbook.md for people, history.jsonl for programs, one entry per finished run.

`sync` is idempotent and self-healing: it appends every finished run (one with verdict.json) that the
ledger does not hold yet, in run order, so a process killed between judging and journaling loses nothing.
Per run it writes, in this order: <run>/journal_entry.json, a labbook section (unless the labbook holds it
already: a sync killed before the commit point), the history line (the commit point), then best.json
(a convenience pointer for people; programs derive the best from the ledger). A ledger line that is torn or
invalid is skipped by `ledger.read_history`, so its run is recorded again here.
When a study makes several runs per generation, the labbook opens each generation with a heading that names
the incumbent its runs were judged against; the runs of a generation are journaled in the order they finish.
A run whose first proposal was not used adds its reasons (the rules it broke: timeout, http_500, invalid_json,
whitelist, quality...) to runs/<study>/fallbacks.json, and its labbook section ends with the counts so far.
"""

from __future__ import annotations

import logging
from collections import Counter

from filelock import FileLock

from autopilot import fsio, ledger, schemas
from autopilot.errors import AutopilotError
from autopilot.formatting import describe_overrides
from autopilot.paths import RunPaths
from autopilot.study import Study

log = logging.getLogger(__name__)

ERROR_CHARS = 600


def sync(study: Study) -> list[dict]:
    """Bring history.jsonl and labbook.md up to date with the finished runs; return the history."""
    paths = study.paths
    paths.dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(paths.journal_lock)):
        history = ledger.read_history(paths)
        known = {e["run_id"] for e in history}
        for run_id in paths.run_ids():
            run = paths.run(run_id)
            if run_id in known or not run.verdict.exists():
                continue
            verdict = fsio.read_json(run.verdict)
            entry = build_entry(study, run, verdict)
            record(study, run, entry, history, verdict["reason"])
            history.append(entry)
        best = ledger.best_entry(history)
        if best is not None and (ledger.read_path(paths.best) or {}).get("run_id") != best["run_id"]:
            write_best(study, best, best["finished_at"])  # a sync killed between the commit point and best.json
    return history


def current_history(study: Study) -> list[dict]:
    """The ledger as `sync` would leave it, written nowhere: the ledger's lines, then an entry for each finished run
    it misses (killed between judging and journaling, or a lost line), built from the run's folder. The stages read
    this; only the record_run step and the start of an invocation write the journal."""
    history = ledger.read_history(study.paths)
    known = {e["run_id"] for e in history}
    for run_id in study.paths.run_ids():
        run = study.paths.run(run_id)
        if run_id not in known and run.verdict.exists():
            history.append(build_entry(study, run, fsio.read_json(run.verdict)))
    return history


def record(study: Study, run: RunPaths, entry: dict, history: list[dict], reason: str) -> None:
    schemas.validate(entry, "history_entry", what=f"journal entry of run {run.id}")
    fsio.atomic_write_json(run.entry, entry)
    if not study.paths.labbook.exists():
        fsio.append_text(study.paths.labbook, labbook_header(study))
    best = ledger.best_entry([*history, entry])  # a sibling of this generation may have improved by more
    previous = history[-1] if history else None
    counts = count_fallback(study, run.id, ledger.read_path(run.proposal) or {}) if entry["fallback_from"] else None
    section = (generation_heading(study, entry, previous) + labbook_section(study, entry, reason, best)
               + fallback_counts_line(counts))
    if section not in study.paths.labbook.read_text(encoding="utf-8", errors="replace"):  # recorded again: once
        fsio.append_text(study.paths.labbook, section)
    fsio.append_jsonl(study.paths.history, entry)
    if entry.get("code") and entry["verdict"] in ledger.PROMOTING_VERDICTS:  # its code becomes the code line
        from autopilot.code import runs as code_runs

        code_runs.follow_champion(study, entry, best)
    if entry["verdict"] in ledger.PROMOTING_VERDICTS:
        write_best(study, best, entry["finished_at"])


def write_best(study: Study, best: dict, updated_at: str) -> None:
    fsio.atomic_write_json(study.paths.best, {
        "run_id": best["run_id"], "value": best["value"], "seed_values": best["seed_values"],
        "metric": study.config["metric"], "verdict": best["verdict"], "params": best["params"],
        "updated_at": updated_at,
    })


def build_entry(study: Study, run: RunPaths, verdict: dict) -> dict:
    proposal = ledger.read_path(run.proposal) or {}
    config = ledger.read_path(run.config) or {}
    summaries = [s for _, s in ledger.seed_summaries(run)]
    first = ledger.first_summary(run)
    hparams = config.get("hparams", {})
    fallback = proposal.get("fallback_from")
    error = first.get("error")
    return {
        "run_id": run.id,
        "generation": proposal.get("generation"),
        "policy": proposal.get("policy", "unknown"),
        "overrides": proposal.get("overrides", {}),
        "params": {k: hparams[k] for k in study.search_space if k in hparams},
        "status": first["status"],
        "verdict": verdict["verdict"],
        "value": verdict["value"],
        "seed_values": verdict["seed_values"],
        "compared_to": verdict["compared_to"],
        "delta": verdict["delta"],
        "interval": verdict["interval"],
        "train_seconds": round(sum(s.get("train_seconds", 0.0) for s in summaries), 3),
        "wall_seconds": round(sum(s.get("wall_seconds", 0.0) for s in summaries), 3),
        "error": None if not error else error[-ERROR_CHARS:],
        "fallback_from": None if not fallback else f"{fallback['policy']}: {fallback['reason']}"[:ERROR_CHARS],
        "rationale": proposal.get("rationale", "")[:ERROR_CHARS],
        "finished_at": verdict["judged_at"],
        "attempts": max((s.get("attempts", 1) for s in summaries), default=1),
        **({"code": code_entry(config, proposal)} if config.get("code") else {}),
    }


def code_entry(config: dict, proposal: dict) -> dict:
    """Code mode: the version the run trained (its tree), and what its patch was."""
    from autopilot.code import runs as code_runs

    return code_runs.entry_code(config, proposal)


def fallback_reasons(proposal: dict) -> list[str]:
    """Why a run's first proposal was not used: the distinct rules it broke."""
    violations = (proposal.get("fallback_from") or {}).get("violations") or []
    return sorted({v.get("rule", "unknown") for v in violations}) or ["unknown"]


def count_fallback(study: Study, run_id: str, proposal: dict) -> dict:
    """Add the run's fallback reasons to runs/<study>/fallbacks.json (keyed by run: journaling again adds
    nothing) and return the counts by reason."""
    path = study.paths.fallbacks
    runs = (ledger.read_path(path) or {}).get("runs", {})
    runs[run_id] = fallback_reasons(proposal)
    counts = dict(Counter(reason for reasons in runs.values() for reason in reasons).most_common())
    fsio.atomic_write_json(path, {"counts": counts, "runs": runs})
    return counts


def fallback_counts_line(counts: dict | None) -> str:
    if not counts:
        return ""
    return "- fallbacks so far, by reason: " + ", ".join(f"{reason} {n}" for reason, n in counts.items()) + "\n"


def labbook_header(study: Study) -> str:
    m = study.settings.metric
    return (f"# Lab journal: {study.name}\n\n"
            f"Goal: {m.goal} `{m.name}`. Task: `{study.settings.task}`. "
            f"Search space: {', '.join(study.search_space)}.\n"
            f"Each section is one finished run; its files are in runs/{study.name}/<run>/.\n")


def generation_heading(study: Study, e: dict, previous: dict | None) -> str:
    """A heading when this entry opens a generation, in a study that makes several runs per generation."""
    if study.settings.generation_size == 1:
        return ""
    generation = ledger.generation_of(e)
    if previous is not None and ledger.generation_of(previous) == generation:
        return ""
    against = f": every run judged against run {e['compared_to']}" if e["compared_to"] else ""
    return f"\n## Generation {generation}{against}\n"


def promotion_note(e: dict, best: dict | None) -> str:
    if e["verdict"] not in ledger.PROMOTING_VERDICTS:
        return ""
    if best is None or best["run_id"] == e["run_id"]:
        return "; new best"
    return f"; promoted, but run {best['run_id']} of the same generation beat the incumbent by more and stays best"


def labbook_section(study: Study, e: dict, reason: str, best: dict | None = None) -> str:
    """The run's section of labbook.md: entry `e` and the judge's `reason` for its verdict."""
    name = study.metric_name
    level = "##" if study.settings.generation_size == 1 else "###"  # under its generation's heading
    lines = [f"\n{level} Run {e['run_id']}: {e['verdict']}\n"]
    changes = describe_overrides(e["overrides"])
    if (e.get("code") or {}).get("patched"):
        changes = f"the code (hyperparameters: {changes})"
    lines.append(f"- policy: `{e['policy']}`; changes: {changes}")
    if e["fallback_from"]:
        lines.append(f"- fallback: the first proposal was not used ({e['fallback_from']})")
    if (e.get("code") or {}).get("patched"):
        c = e["code"]
        lines.append(f"- code: patch of {c['diff_lines']} line(s) to {', '.join(c['files'])} (commit "
                     f"{c['commit'][:12]}; runs/{study.name}/{e['run_id']}/patch.diff)")
        lines += [f"- flagged: {flag}" for flag in c["flags"]]
    if e["rationale"]:
        lines.append(f"- rationale: {e['rationale']}")
    if e["value"] is not None:
        seeds = ", ".join(f"{v:.4f}" for v in e["seed_values"])
        lines.append(f"- result: {name} = {e['value']:.4f} (mean of {len(e['seed_values'])} seed(s): {seeds})")
    if e["compared_to"] and e["interval"]:
        iv = e["interval"]
        lines.append(f"- against run {e['compared_to']}: delta {e['delta']:+.4f}, interval "
                     f"[{iv['low']:+.4f}, {iv['high']:+.4f}] by {iv['method']}")
    lines.append(f"- verdict: **{e['verdict']}**: {reason}" + promotion_note(e, best))
    if e["error"]:
        tail = e["error"].strip().splitlines()[-1][:300]
        lines.append(f"- error: `{tail}`")
    if e.get("attempts", 1) > 1:
        lines.append(f"- attempts: {e['attempts']} (the system killed the trainer and it was started again; "
                     "see train.log)")
    lines.append(f"- status `{e['status']}`; training {e['train_seconds']:.1f} s, wall {e['wall_seconds']:.1f} s; "
                 f"finished {e['finished_at']}")
    return "\n".join(lines) + "\n"


def note(study: Study, title: str, text: str) -> None:
    """Append a section about the study rather than a run (it paused itself, ...) to labbook.md."""
    study.paths.dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(study.paths.journal_lock)):
        if not study.paths.labbook.exists():
            fsio.append_text(study.paths.labbook, labbook_header(study))
        fsio.append_text(study.paths.labbook, f"\n## {title}\n\n{text}\n")


def journal_run(study: Study, run_id: str) -> dict:
    """Journal a judged run (and any earlier ones the ledger misses); return its entry."""
    history = sync(study)
    run = study.paths.run(run_id)
    entry = next((e for e in history if e["run_id"] == run_id), None)
    if entry is None:
        raise AutopilotError(f"run {run_id} has no verdict.json: judge it first (autopilot judge --run {run_id})")
    if not run.entry.exists():  # killed between the history line and this file: rewrite it from the ledger
        fsio.atomic_write_json(run.entry, entry)
    return entry

