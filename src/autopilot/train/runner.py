"""Train a guarded run: the seeds the judge's protocol asks for, one after another.

`autopilot.judge.protocol.walk` reads the seeds on disk and says which stage needs seeds next (the baseline's
noise seeds, one seed of the incumbent's config for its record, a candidate's screen, stage-1 seeds, fresh
confirmation seeds, a promoted run's record) or that the run is decided; this module trains them. The
incumbent is the one before the run's generation, as in the judge, whatever its siblings did.

Seed 0 trains in the run folder; the run's extra seed k in <run>/seeds/seed-k/, a seed of the incumbent's
config in <run>/incumbent/seed-k/, each with the same files as a run folder and its stage in config.json
(`seed_stage`). Each config.json carries a fresh nonce, which its summary must echo to count; a seed that
already has a final summary answering its config.json is not trained again, so a re-invoked run picks up where
it was killed. `control/stop` between two seeds gives the next seed a `stopped` summary (it never started), and
the judge then calls the run `stopped` rather than judging it on fewer seeds.

Usage:
    summaries = train_run(study, "00007")
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

from autopilot import apikeys, fsio, ledger
from autopilot.enums import RunStatus
from autopilot.ingest import claims
from autopilot.journal import record
from autopilot.judge import protocol
from autopilot.paths import RunPaths
from autopilot.study import Study
from autopilot.train import gpus, supervisor

log = logging.getLogger(__name__)

FINAL_STATUSES = frozenset(RunStatus)
# trains one seed: (study, the run's folder, the seed's folder, its config) -> its summary; a benchmark or a
# test replaces it with seeds drawn from a pool
SeedTrainer = Callable[[Study, RunPaths, RunPaths, dict], dict]


def seed_config(config: dict, study: Study, run_id: str, seed_run: RunPaths, k: int, stage: str) -> dict:
    """A guarded config with another seed, folder and stage: nothing else may differ between seeds."""
    out = copy.deepcopy(config)
    tag = k if stage != "incumbent" else f"incumbent-{k}"  # never the seed of one of the run's own seeds
    out["run_id"] = run_id
    out["seed"] = ledger.derive_seed(study.settings.seed, run_id, tag)
    out["seed_index"] = k
    out["seed_stage"] = stage
    out["nonce"] = ledger.new_nonce()  # a summary from before this start does not answer it
    out["paths"]["run_dir"] = str(seed_run.dir.relative_to(study.project.root))
    return out


def train_seed(study: Study, run: RunPaths, seed_run: RunPaths, config: dict) -> dict:
    """Train one seed under the supervisor (its own process group, a time limit, retries of system kills)."""
    k = config["seed_index"]
    if config.get("code"):  # code mode: from the run's checkout, sandboxed, scored by the sealed evaluator
        from autopilot.train import sandboxed

        return sandboxed.train_seed(study, run, config, k, lambda: config)
    summary = ledger.bound_summary(seed_run) if k > 0 else None
    if summary is not None and summary["status"] in FINAL_STATUSES:
        log.info("%s already trained (%s)", seed_run.dir, summary["status"])
        return summary
    if k > 0:
        fsio.atomic_write_json(seed_run.config, config)
    argv = supervisor.trainer_argv(config, study.settings, seed_run, study.project.root)
    log.info("run %s seed %d (%s): %s", run.id, k, config.get("seed_stage", "first"), " ".join(argv))
    return supervisor.run_trainer(argv, seed_run, config, study.project.root, study.settings.budget.max_retries)


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


def train_seeds(study: Study, run_id: str, trainer: SeedTrainer = train_seed) -> list[dict]:
    """Train seeds until the protocol has decided the run; return the summaries of the run's own seeds."""
    run = study.paths.run(run_id)
    config = fsio.read_json(run.config)
    if config.get("code"):  # code mode: the sealed evaluator's records are the seeds' summaries
        from autopilot.train import sandboxed

        sandboxed.restore_kept(run)
    # the incumbent as the judge will see it: the ledger, and any judged run it misses
    history = ledger.before_generation(record.current_history(study), ledger.run_generation(run))
    sit = protocol.situation_of(study, run_id, history)
    while (need := protocol.walk(sit, ledger.seed_records(run)).need) is not None:
        seed_run, seed_cfg = next_seed(study, run, config, sit, need.stage)
        if study.project.control_file("stop").exists():
            log.info("run %s: stop requested, no more seeds", run_id)
            write_not_started(study, seed_run, seed_cfg)
            break
        trainer(study, run, seed_run, seed_cfg)
    return [s for _, s in ledger.seed_summaries(run)]


def next_seed(study: Study, run: RunPaths, config: dict, sit: protocol.Situation, stage: str) -> tuple[RunPaths, dict]:
    """The folder and config of the next seed of `stage` (a killed seed's folder is reused: it resumes)."""
    if stage == "incumbent":
        k = 1 + len(ledger.incumbent_seed_summaries(run))
        seed_run = run.incumbent_seed(k)
        base = fsio.read_json(study.paths.run(sit.incumbent["run_id"]).config)
        return seed_run, seed_config(base, study, run.id, seed_run, k, stage)
    k = len(ledger.seed_summaries(run))
    seed_run = run.seed(k)
    return seed_run, (config if k == 0 else seed_config(config, study, run.id, seed_run, k, stage))


def write_not_started(study: Study, seed_run: RunPaths, config: dict) -> None:
    """The summary of a seed that control/stop kept from starting: the run is `stopped`, not judged short."""
    if config["seed_index"] > 0:
        fsio.atomic_write_json(seed_run.config, config)
    supervisor.write_fallback_summary(seed_run, config, study.project.root, RunStatus.STOPPED,
                                      "not started: control/stop was set before this seed", 0.0)
