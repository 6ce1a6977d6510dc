"""Reading a study's results: the history ledger, the best run, the seeds of a run.

history.jsonl is the ledger: one line per finished run, written by the journal. The best run (incumbent)
is derived from it, never kept as separate state. Runs are made in generations (several runs proposed together,
trained side by side, each judged against the best run before its generation), so the incumbent is: among the
promoted runs (`baseline` or `improved`) of the latest generation that has any, the one that beat the incumbent
before that generation by the most. With one run per generation that is simply the last promoted run. A person
may choose another (`autopilot models promote` or `rollback`, recorded in models/<study>/history.jsonl): that run
is the incumbent until the judge promotes a run journaled after the choice (`incumbent`).

A seed's trainer_summary.json counts only when it answers that seed folder's config.json: each config.json
carries a fresh `nonce` (`new_nonce`), which the trainer echoes in its summary. A summary that was there before
its seed started, or that belongs to another attempt or config, is not counted (and a warning says so).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from autopilot import fsio, schemas
from autopilot.enums import PROMOTING, RunStatus
from autopilot.paths import ModelPaths, RunPaths, StudyPaths, run_number

log = logging.getLogger(__name__)

PROMOTING_VERDICTS = tuple(sorted(PROMOTING))


@dataclass(frozen=True)
class Slot:
    """A run's place in the study: its generation, and its position in it (which of the generation's points)."""

    generation: int
    index: int


def derive_seed(study_seed: int, run_id: str, k: int) -> int:
    """Seed of the k-th seed of a run: stable, independent of everything but the study seed and run id."""
    digest = hashlib.sha256(f"{study_seed}:{run_id}:{k}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def new_nonce() -> str:
    """A fresh attempt id for a config.json; the trainer echoes it in trainer_summary.json."""
    return secrets.token_hex(8)


def read_history(study: StudyPaths) -> list[dict]:
    """The ledger's entries, each checked against schemas/history_entry. A line that is torn (a power cut), not
    JSON or not a history entry is skipped with a warning: one bad line never stops a command, and the
    journal records that run again from its folder (`record.sync`), whose files are the source of truth."""
    history = []
    valid = schemas.fast_validator("history_entry")
    for line in fsio.scan_jsonl(study.history):
        problem = line.problem
        if problem is None and not valid(line.record):  # the fast check; jsonschema says why (or that it is fine)
            found = schemas.problems(line.record, "history_entry")
            problem = f"not a history entry ({'; '.join(found[:3])})" if found else None
        if problem is not None:
            log.warning("%s: line %d skipped: %s", study.history, line.number, problem)
            continue
        history.append(line.record)
    return history


def generation_of(entry: dict) -> int:
    """A history entry's generation; a run journaled before generations existed is its own, numbered by its id."""
    return entry["generation"] if entry.get("generation") is not None else run_number(entry["run_id"])


def before_generation(history: list[dict], generation: int) -> list[dict]:
    """The entries of earlier generations: what a run of `generation` is proposed, trained and judged with,
    whatever its siblings have finished meanwhile."""
    return [e for e in history if generation_of(e) < generation]


def best_entry(history: list[dict]) -> dict | None:
    promoted = [e for e in history if e["verdict"] in PROMOTING_VERDICTS]
    if not promoted:
        return None
    latest = max(generation_of(e) for e in promoted)
    # every promoted run of one generation was compared with the same incumbent, so |delta| orders them
    # (a run of a generation with no incumbent is a `baseline` without delta: the first by id wins)
    return max((e for e in promoted if generation_of(e) == latest),
               key=lambda e: (abs(e["delta"] or 0.0), -run_number(e["run_id"])))


def champion_events(models: ModelPaths) -> list[dict]:
    """models/<study>/history.jsonl: the registry's promotions, manual promotions and rollbacks, oldest first."""
    return list(fsio.iter_jsonl(models.history))


def incumbent(history: list[dict], events: list[dict]) -> dict | None:
    """The run later runs are judged against: the judge's best (`best_entry`), unless a person's choice (a manual
    promotion or a rollback among `events`) came after the last run the judge promoted in `history`.

    A choice counts for `history` only if the run journaled last when it was made (`after_run`) is in it: the runs
    of a generation that was under way during a rollback are all judged against the incumbent before it.
    """
    best = best_entry(history)
    position = {e["run_id"]: i for i, e in enumerate(history)}
    chosen = [ev for ev in events if ev["event"] != "promotion" and ev.get("after_run") in position]
    if not chosen:
        return best
    last_promoted = max((i for i, e in enumerate(history) if e["verdict"] in PROMOTING_VERDICTS), default=-1)
    if position[chosen[-1]["after_run"]] < last_promoted:
        return best
    return next((e for e in history if e["run_id"] == chosen[-1]["run_id"]), best)


def run_generation(run: RunPaths) -> int:
    """The generation a run's proposal.json records (a run proposed before generations existed: its number)."""
    proposal = read_path(run.proposal) or {}
    return proposal.get("generation") or run_number(run.id)


def recorded_slot(run: RunPaths) -> Slot | None:
    """The generation and place an unfinished run's proposal.json records, if it got that far."""
    proposal = read_path(run.proposal) or {}
    if proposal.get("generation") is None:
        return None
    return Slot(proposal["generation"], proposal.get("generation_index", 0))


def slot_of(run: RunPaths, history: list[dict]) -> Slot:
    """A run's slot when no plan names it: as its proposal recorded it, else a generation of its own after the
    history (a run proposed by hand, outside the workflow)."""
    return recorded_slot(run) or Slot(max((generation_of(e) for e in history), default=0) + 1, 0)


def bound_summary(seed: RunPaths) -> dict | None:
    """The seed folder's summary if it answers the folder's config.json (the same nonce), else None."""
    if not seed.summary.exists():
        return None
    summary = fsio.read_json(seed.summary)
    config = read_path(seed.config)
    if config is None or summary.get("nonce") != config.get("nonce"):
        log.warning("%s is not counted: it does not answer %s (nonce %r, config.json has %r)", seed.summary,
                    seed.config, summary.get("nonce"), None if config is None else config.get("nonce"))
        return None
    return summary


def seed_summaries(run: RunPaths) -> list[tuple[int, dict]]:
    """(k, summary) of every seed of a run that has a summary answering its config: seed 0 first."""
    seeds = [(0, run)]
    if run.seeds_dir.is_dir():
        extra = [d for d in run.seeds_dir.iterdir() if d.name.startswith("seed-")]
        seeds += [(int(d.name.split("-")[-1]), RunPaths(d)) for d in sorted(extra, key=lambda p: int(p.name[5:]))]
    found = [(k, bound_summary(seed)) for k, seed in seeds]
    return [(k, summary) for k, summary in found if summary is not None]


def first_summary(run: RunPaths) -> dict:
    """The summary of the run's own seed, or a `failed` stand-in that says why there is none to count."""
    summary = bound_summary(run)
    if summary is not None:
        return summary
    why = ("no trainer summary" if not run.summary.exists() else
           f"{run.summary.name} does not answer this run's config.json (its nonce differs): not counted")
    return {"status": "failed", "metric": {"value": None}, "error": why}


def is_success(summary: dict) -> bool:
    return summary["status"] == RunStatus.COMPLETED and summary["metric"]["value"] is not None


def successful_seeds(run: RunPaths) -> list[dict]:
    """The summaries of a run's completed seeds, seed 0 first."""
    return [s for _, s in seed_summaries(run) if is_success(s)]


def example_goal(run: RunPaths) -> str | None:
    for _, s in seed_summaries(run):
        if s.get("per_example"):
            return s["per_example"]["goal"]
    return None


def noise_groups(history: list[dict], exclude: set[str]) -> list[list[float]]:
    """Seed-level metric values of every multi-seed run in the ledger (the study's noise floor)."""
    return [e["seed_values"] for e in history if len(e.get("seed_values") or []) >= 2 and e["run_id"] not in exclude]


def code_changed(config: dict, incumbent: dict) -> bool:
    """Whether a run (its config.json) trains other code than the incumbent (a history entry): a patch, or a code line
    that moved since. Code mode treats such a change as possibly changing the seed noise, as a noise key does."""
    code = config.get("code")
    return bool(code) and (code["patched"] or (incumbent.get("code") or {}).get("tree") != code["tree"])


def total_train_seconds(history: list[dict]) -> float:
    return float(sum(e.get("train_seconds") or 0.0 for e in history))


def read_path(path: Path):
    return fsio.read_json(path) if path.exists() else None
