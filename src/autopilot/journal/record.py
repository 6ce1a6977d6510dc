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
            write_best(study, best, best["finished_at"], history)  # killed between the commit point and best.json
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
    after = [*history, entry]
    best = ledger.best_entry(after)  # a sibling of this generation may have a better mean on its fresh seeds
    previous = history[-1] if history else None
    counts = count_fallback(study, run.id, ledger.read_path(run.proposal) or {}) if entry["fallback_from"] else None
    section = (generation_heading(study, entry, previous, history) + labbook_section(study, entry, reason, best)
               + fallback_counts_line(counts))
    if section not in study.paths.labbook.read_text(encoding="utf-8", errors="replace"):  # recorded again: once
        fsio.append_text(study.paths.labbook, section)
    fsio.append_jsonl(study.paths.history, entry)
    if entry.get("code") and entry["verdict"] in ledger.PROMOTING_VERDICTS:  # its code becomes the code line
        from autopilot.code import runs as code_runs

        code_runs.follow_champion(study, entry, best)
    added = ledger.stage_values(entry, "incumbent") and best is not None and entry["compared_to"] == best["run_id"]
    if entry["verdict"] in ledger.PROMOTING_VERDICTS or added:  # a new incumbent, or a seed more in its record
        write_best(study, best, entry["finished_at"], after)


def write_best(study: Study, best: dict, updated_at: str, history: list[dict]) -> None:
    """best.json: the incumbent, with the mean and seeds of its record (`ledger.incumbent_values`)."""
    values = ledger.incumbent_values(history, best)
    fsio.atomic_write_json(study.paths.best, {
        "run_id": best["run_id"], "value": sum(values) / len(values), "seed_values": values,
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
        **seeds_and_costs(verdict),
    }


def code_entry(config: dict, proposal: dict) -> dict:
    """Code mode: the version the run trained (its tree), and what its patch was."""
    from autopilot.code import runs as code_runs

    return code_runs.entry_code(config, proposal)


def seeds_and_costs(verdict: dict) -> dict:
    """The seeds by stage and the costs of a verdict (a verdict from before seed stages has neither)."""
    out = {}
    if "seeds" in verdict:
        out["seeds"] = [{k: s[k] for k in ("k", "stage", "status", "value")} for s in verdict["seeds"]]
    if verdict.get("costs"):
        out["costs"] = verdict["costs"]
    return out


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


def generation_heading(study: Study, e: dict, previous: dict | None, history: list[dict] | None = None) -> str:
    """A heading when this entry opens a generation, in a study that makes several runs per generation; it names
    the incumbent and, when the generation before promoted several runs, how it was chosen among them."""
    if study.settings.generation_size == 1:
        return ""
    generation = ledger.generation_of(e)
    if previous is not None and ledger.generation_of(previous) == generation:
        return ""
    against = f": every run judged against run {e['compared_to']}" if e["compared_to"] else ""
    return f"\n## Generation {generation}{against}\n" + choice_note(history or [], e["compared_to"])


def choice_note(history: list[dict], incumbent: str | None) -> str:
    """How the incumbent was chosen when its generation promoted several runs: by their fresh means."""
    entry = next((h for h in history if h["run_id"] == incumbent), None)
    if entry is None or entry["verdict"] != "improved":
        return ""
    generation = ledger.generation_of(entry)
    rivals = [h for h in history if ledger.generation_of(h) == generation and h["verdict"] == "improved"]
    if len(rivals) < 2:
        return ""
    means = ", ".join(f"run {h['run_id']} {h['value']:.4f}" for h in rivals)
    return (f"\nRun {incumbent} is the incumbent: generation {ledger.generation_of(entry)} promoted {len(rivals)} "
            f"runs, and the incumbent is the one with the best mean on its fresh confirmation seeds ({means}), not "
            "the one that beat the incumbent before it by the most.\n")


def promotion_note(e: dict, best: dict | None, generation_size: int = 1) -> str:
    if e["verdict"] not in ledger.PROMOTING_VERDICTS:
        return ""
    if best is not None and best["run_id"] != e["run_id"]:
        return (f"; promoted, but run {best['run_id']} of the same generation has the better mean on its fresh "
                "confirmation seeds and is the incumbent")
    if generation_size > 1 and e["verdict"] == "improved":
        return ("; promoted, and the incumbent so far: among a generation's promoted runs the one with the best "
                "mean on its fresh confirmation seeds is the incumbent")
    return "; new incumbent"


def seeds_line(name: str, e: dict) -> str:
    """The run's seeds by stage: which ones selected it, which ones are its record."""
    seeds = ledger.entry_seeds(e)
    parts = []
    for stage, label in (("baseline", "baseline"), ("screen", "screen"), ("select", "stage 1"),
                         ("confirm", "fresh (stage 2)"), ("record", "record"), ("legacy", "seeds"),
                         ("incumbent", "added to the incumbent")):
        values = [s["value"] for s in seeds if s["stage"] == stage]
        if values:
            parts.append(f"{label}: " + ", ".join("failed" if v is None else f"{v:.4f}" for v in values))
    return f"- result: {name} = {e['value']:.4f} ({'; '.join(parts)})"


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
        lines.append(seeds_line(name, e))
    if e["compared_to"] and e["interval"]:
        iv = e["interval"]
        level = f"{iv['level']:.0%} " if iv.get("level") else ""
        lines.append(f"- against run {e['compared_to']}: delta {e['delta']:+.4f}, {level}interval "
                     f"[{iv['low']:+.4f}, {iv['high']:+.4f}] by {iv['method']}")
    lines.append(f"- verdict: **{e['verdict']}**: {reason}"
                 + promotion_note(e, best, study.settings.generation_size))
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

