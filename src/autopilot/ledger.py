"""Reading a study's results: the history ledger, the incumbent and its record, the seeds of a run.

history.jsonl is the ledger: one line per finished run, written by the journal. The incumbent (best run) is
derived from it, never kept as separate state. Runs are made in generations (several runs proposed together,
trained side by side, each judged against the incumbent before its generation). The incumbent is, in the latest
generation that promoted any run (`baseline` or `improved`), the promoted run with the best mean on its fresh
confirmation seeds (`value`): the seeds that selected a run are not the ones that rank it (see
`autopilot.judge.protocol`). With one run per generation that is simply the last promoted run. A person
may choose another (`autopilot models promote` or `rollback`, recorded in models/<study>/history.jsonl): that run
is the incumbent until the judge promotes a run journaled after the choice (`incumbent`).

Each line lists its seeds with the stage they served (`seeds`): a run's own seeds, and the seeds of the
incumbent's config it trained to add to the incumbent's record (stage `incumbent`). The incumbent's record, the
values every later run is compared with, is its seeds that took no part in any decision about it (all of the
baseline's; a promoted run's `record` seeds, trained once its promotion was decided) and every `incumbent` seed
that later runs trained for it. Lines written before seeds had stages are read as one group of such seeds.

A seed's trainer_summary.json counts only when it answers that seed folder's config.json: each config.json
carries a fresh `nonce` (`new_nonce`), which the trainer echoes in its summary. A summary that was there before
its seed started, or that belongs to another attempt or config, is not counted (and a warning says so).
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autopilot import fsio, schemas
from autopilot.enums import PROMOTING, RunStatus
from autopilot.paths import ModelPaths, RunPaths, StudyPaths, run_number

log = logging.getLogger(__name__)

PROMOTING_VERDICTS = tuple(sorted(PROMOTING))
UNSELECTED_STAGES = ("baseline", "record")  # seeds that played no part in any decision about their run
OWN_STAGES = ("baseline", "screen", "select", "confirm", "record")  # a run's own config, not `incumbent`


@dataclass(frozen=True)
class Slot:
    """A run's place in the study: its generation, and its position in it (which of the generation's points)."""

    generation: int
    index: int


@dataclass(frozen=True)
class SeedRecord:
    """One trained seed as the judge sees it: its stage, outcome and costs."""

    k: int
    stage: str  # baseline | screen | select | confirm | record | incumbent (the incumbent's config, for its record)
    status: str
    value: float | None  # the metric, None unless the seed completed with a finite value
    per_example: np.ndarray | None
    error: str | None
    seed: int | None = None
    wall_seconds: float | None = None
    peak_memory_mb: float | None = None
    parameters: int | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


def derive_seed(study_seed: int, run_id: str, k: int | str) -> int:
    """Seed of the k-th seed of a run: stable, independent of everything but the study seed, run id and k."""
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
    """The incumbent: the promoted run of the latest promoting generation with the best fresh mean."""
    promoted = [e for e in history if e["verdict"] in PROMOTING_VERDICTS]
    if not promoted:
        return None
    latest = max(generation_of(e) for e in promoted)
    group = [e for e in promoted if generation_of(e) == latest]
    if len(group) == 1:
        return group[0]
    # every promoted run of one generation beat the same incumbent, so the sign of its delta is the metric's
    # direction; their `value` is the mean of their fresh confirmation seeds (ties: the first by id)
    sign = 1.0 if (group[0]["delta"] or 0.0) >= 0 else -1.0
    return max(group, key=lambda e: (sign * (e["value"] if e["value"] is not None else -sign * math.inf),
                                     -run_number(e["run_id"])))


def entry_seeds(entry: dict) -> list[dict]:
    """A history entry's seeds ({k, stage, status, value}); a line written before stages existed: its seed
    values as one group (the baseline's, or those of a run selected on them: `legacy`)."""
    if entry.get("seeds") is not None:
        return entry["seeds"]
    stage = "baseline" if entry["verdict"] == "baseline" else "legacy"
    return [{"k": k, "stage": stage, "status": "completed", "value": v} for k, v in enumerate(entry["seed_values"])]


def stage_values(entry: dict, *stages: str) -> list[float]:
    return [s["value"] for s in entry_seeds(entry) if s["stage"] in stages and s["value"] is not None]


def unselected_values(entry: dict) -> list[float]:
    """The seeds of a run that took no part in any decision about it; for a line without stages, all its seeds."""
    if entry.get("seeds") is None:
        return list(entry["seed_values"])
    return stage_values(entry, *UNSELECTED_STAGES)


def topup_values(history: list[dict], run_id: str) -> list[float]:
    """Seeds of `run_id`'s config that later runs trained for its record, in the order they were journaled."""
    return [v for e in history if e.get("compared_to") == run_id for v in stage_values(e, "incumbent")]


def incumbent_values(history: list[dict], entry: dict) -> list[float]:
    """The incumbent's record: its seeds that decided nothing about it, and the seeds later runs added to it. A
    run without such seeds (one a person chose with `autopilot models promote`, or one promoted in a study whose
    seeds all agree, judged on a single seed) starts from its fresh confirmation seeds, or else its own seeds."""
    own = unselected_values(entry) or stage_values(entry, "confirm") or stage_values(entry, *OWN_STAGES)
    return own + topup_values(history, entry["run_id"])


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


def run_place(run: RunPaths) -> int:
    """The run's place in its generation (0: the first, or a run proposed before generations existed)."""
    return (read_path(run.proposal) or {}).get("generation_index") or 0


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
    """(k, summary) of every seed of a run's own config with a summary answering its config: seed 0 first."""
    return _bound([(0, run)] + _numbered(run.seeds_dir))


def incumbent_seed_summaries(run: RunPaths) -> list[tuple[int, dict]]:
    """(k, summary) of the seeds of the incumbent's config that the run trained for the incumbent's record."""
    return _bound(_numbered(run.incumbent_seeds_dir))


def _numbered(folder: Path) -> list[tuple[int, RunPaths]]:
    if not folder.is_dir():
        return []
    extra = [d for d in folder.iterdir() if d.name.startswith("seed-")]
    return [(int(d.name.split("-")[-1]), RunPaths(d)) for d in sorted(extra, key=lambda p: int(p.name[5:]))]


def _bound(seeds: list[tuple[int, RunPaths]]) -> list[tuple[int, dict]]:
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


def metric_value(summary: dict) -> float | None:
    """A summary's metric if the seed completed with a finite number (a user trainer may write NaN)."""
    value = summary["metric"]["value"]
    if summary["status"] != RunStatus.COMPLETED or not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return float(value) if math.isfinite(value) else None


def is_success(summary: dict) -> bool:
    return metric_value(summary) is not None


def seed_error(summary: dict) -> str | None:
    """Why a seed gave no usable metric (None when it did)."""
    if summary["status"] != RunStatus.COMPLETED:
        return f"status {summary['status']}: {(summary.get('error') or 'no error text')[-500:]}"
    if metric_value(summary) is None:
        return f"the trainer reported {summary['metric']['name']} = {summary['metric']['value']!r}, not a finite number"
    return None


def _record(k: int, stage: str, summary: dict) -> SeedRecord:
    pe = summary.get("per_example")
    return SeedRecord(
        k=k, stage=stage, status=summary["status"], value=metric_value(summary),
        per_example=None if not pe else np.asarray(pe["values"], dtype=np.float64),
        error=seed_error(summary), seed=summary.get("seed"), wall_seconds=summary.get("wall_seconds"),
        peak_memory_mb=summary.get("peak_memory_mb"), parameters=summary.get("parameters"))


def seed_stage(seed_run: RunPaths, default: str) -> str:
    """The stage a seed served, as its config.json records it (`default` for a run from before stages)."""
    return (read_path(seed_run.config) or {}).get("seed_stage") or default


def seed_records(run: RunPaths) -> list[SeedRecord]:
    """Every seed of a run with a summary answering its config: its own (seed 0 first), then the incumbent's."""
    own = [_record(k, seed_stage(run.seed(k), "legacy"), s) for k, s in seed_summaries(run)]
    topups = [_record(k, "incumbent", s) for k, s in incumbent_seed_summaries(run)]
    return own + topups




def successful_seeds(run: RunPaths) -> list[dict]:
    """The summaries of a run's completed seeds, seed 0 first."""
    return [s for _, s in seed_summaries(run) if is_success(s)]


def example_goal(run: RunPaths) -> str | None:
    for _, s in seed_summaries(run):
        if s.get("per_example"):
            return s["per_example"]["goal"]
    return None


def noise_groups(history: list[dict], keep: Callable[[dict], bool] | None = None) -> list[list[float]]:
    """Groups of seed values of one config each, none of them conditioned on its own spread: a run's stage-1
    seeds (not its screen seed, which was kept only for beating the incumbent), its confirmation seeds, and its
    record together with the seeds later runs added to it. Their pooled spread is the study's noise; `keep`
    (an entry -> bool) limits them to some runs' configs (a noise regime, autopilot.judge.regimes)."""
    topups: dict[str, list[float]] = {}
    for e in history:
        if e.get("compared_to"):
            topups.setdefault(e["compared_to"], []).extend(stage_values(e, "incumbent"))
    groups = []
    for e in history:
        if keep is not None and not keep(e):
            continue
        groups.append(stage_values(e, "select"))
        groups.append(stage_values(e, "confirm"))
        groups.append(unselected_values(e) + topups.get(e["run_id"], []))
    return [g for g in groups if len(g) >= 2]


def code_changed(config: dict, incumbent: dict) -> bool:
    """Whether a run (its config.json) trains other code than the incumbent (a history entry): a patch, or a code line
    that moved since. Code mode treats such a change as possibly changing the seed noise, as a noise key does."""
    code = config.get("code")
    return bool(code) and (code["patched"] or (incumbent.get("code") or {}).get("tree") != code["tree"])


def total_train_seconds(history: list[dict]) -> float:
    return float(sum(e.get("train_seconds") or 0.0 for e in history))


def read_path(path: Path):
    return fsio.read_json(path) if path.exists() else None
