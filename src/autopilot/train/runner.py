"""Train a guarded run: its own seed, then the extra seeds the judge's protocol asks for.

Seed 0 trains in the run folder. Then:
  * the study's first successful run (the baseline) trains `stats.noise_seeds` more seeds: the noise floor;
  * a candidate whose first seed beats the incumbent's mean trains `stats.confirm_seeds` more
    (`max_confirm_seeds` when it changes a noise-altering key); any other candidate stops at one seed.
The incumbent is the best run before the run's generation, as in the judge, whatever its siblings did.
Extra seed k lives in <run>/seeds/seed-k/ with the same files as the run folder. A seed that already has a
final summary answering its config.json is not trained again, so a re-invoked run picks up where it was
killed; any other seed gets a config.json with a fresh nonce, which its summary must echo to count.

Usage:
    summaries = train_run(study, "00007")
"""

from __future__ import annotations

import copy
import logging

from autopilot import apikeys, fsio, ledger
from autopilot.enums import RunStatus
from autopilot.ingest import claims
from autopilot.journal import record
from autopilot.judge import stats
from autopilot.paths import RunPaths
from autopilot.study import Study
from autopilot.train import gpus, supervisor

log = logging.getLogger(__name__)

FINAL_STATUSES = frozenset(RunStatus)


def seed_config(config: dict, study: Study, seed_run: RunPaths, k: int) -> dict:
    """The guarded config with another seed and folder: nothing else may differ between seeds."""
    out = copy.deepcopy(config)
    out["seed"] = ledger.derive_seed(study.settings.seed, config["run_id"], k)
    out["seed_index"] = k
    out["nonce"] = ledger.new_nonce()  # a summary from before this start does not answer it
    out["paths"]["run_dir"] = str(seed_run.dir.relative_to(study.project.root))
    return out


def train_seed(study: Study, run: RunPaths, config: dict, k: int) -> dict:
    seed_run = run.seed(k)
    if config.get("code"):  # code mode: from the run's checkout, sandboxed, scored by the sealed evaluator
        from autopilot.train import sandboxed

        return sandboxed.train_seed(study, run, config, k, lambda: seed_config(config, study, seed_run, k))
    summary = ledger.bound_summary(seed_run) if k > 0 else None
    if summary is not None:
        if summary["status"] in FINAL_STATUSES:
            log.info("run %s seed %d already trained (%s)", run.id, k, summary["status"])
            return summary
    if k > 0:
        config = seed_config(config, study, seed_run, k)
        fsio.atomic_write_json(seed_run.config, config)
    argv = supervisor.trainer_argv(config, study.settings, seed_run, study.project.root)
    log.info("run %s seed %d: %s", run.id, k, " ".join(argv))
    return supervisor.run_trainer(argv, seed_run, config, study.project.root, study.settings.budget.max_retries)


def planned_extra_seeds(study: Study, config: dict, first: dict, history: list[dict]) -> int:
    """How many extra seeds the protocol asks for after the first seed's summary."""
    if not ledger.is_success(first):
        return 0
    best = ledger.incumbent(history, ledger.champion_events(study.models))
    if best is None:
        return study.settings.judge.noise_seeds
    if not stats.needs_confirmation(first["metric"]["value"], best["seed_values"], study.maximize):
        return 0
    extra, _ = stats.extra_seeds_for(config["overrides"], study.settings.judge,
                                     ledger.code_changed(config, best))
    return extra


def train_run(study: Study, run_id: str) -> list[dict]:
    """Train the run's seeds on a GPU of its own (where the machine has several; see `autopilot.train.gpus`).
    The LLM's key variables leave this process's environment first: a trainer runs the study's own code, and
    whatever it starts or forks inherits that environment."""
    apikeys.forget_keys(apikeys.key_variables(study.settings.llm.api_key_env))
    with gpus.claim():
        summaries = train_seeds(study, run_id)
    if study.settings.code_mode.enabled:  # the checkout goes; its commit keeps the code
        from autopilot.code import runs as code_runs

        code_runs.finish_run(study, study.paths.run(run_id))
    # data.source: queue - the run's claimed dataset goes to queue/done/, or back to its queue if the run did
    # not complete; an interrupted `autopilot train` never gets here, so the entry waits in processing/
    claims.release_after_run(study.project, study.paths.run(run_id), summaries)
    return summaries


def train_seeds(study: Study, run_id: str) -> list[dict]:
    run = study.paths.run(run_id)
    config = fsio.read_json(run.config)
    # the incumbent as the judge will see it: the ledger, and any judged run it misses
    history = ledger.before_generation(record.current_history(study), ledger.run_generation(run))
    first = train_seed(study, run, config, 0)
    summaries = [first]
    for k in range(1, planned_extra_seeds(study, config, first, history) + 1):
        if study.project.control_file("stop").exists():
            log.info("run %s: stop requested, no more seeds", run_id)
            break
        summaries.append(train_seed(study, run, config, k))
        if summaries[-1]["status"] == "skipped":  # control/skip ends the whole run, not one seed
            break
    return summaries
