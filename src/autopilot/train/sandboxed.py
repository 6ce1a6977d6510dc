"""A seed of a code-mode run: its trainer runs from the run's checkout in the sandbox, the sealed evaluator scores it.

Each seed's trainer runs from runs/<study>/<run>/code/tree (autopilot.code.checkout) in the sandbox
(autopilot.code.sandbox), never in the warm pool; when it completed, the sealed evaluator (autopilot.code.evaluate)
scores what it saved. What counts is kept where no trainer can write (code/evaluations/seed-k.json): a run resumed
later trusts that record, not the files in a trainer's own folder. What each sandbox had goes to sandbox.json.

Usage:
    summary = train_seed(study, run, config, k)         # the runner, for a config.json with `code`
    restore_kept(run)                                   # before the runner reads the seeds a run has
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from autopilot import fsio, schemas
from autopilot.code import checkout, evaluate, sandbox
from autopilot.enums import RunStatus
from autopilot.paths import RunPaths, control_file
from autopilot.study import Study
from autopilot.train import supervisor

log = logging.getLogger(__name__)


def trusted_record(run: RunPaths, k: int):
    return run.kept_evaluations / f"seed-{k}.json"


def train_seed(study: Study, run: RunPaths, config: dict, k: int, seed_config: Callable[[], dict]) -> dict:
    """Train seed `k` of a code-mode run from its checkout, in the sandbox, and score it with the sealed evaluator.
    `config` is the run's guarded config.json; `seed_config()` makes an extra seed's (a fresh nonce each time)."""
    seed_run = run.seed(k)
    kept = trusted_record(run, k)
    if kept.exists():
        summary = fsio.read_json(kept)
        fsio.atomic_write_json(seed_run.summary, summary)  # what a trainer wrote there since does not count
        log.info("run %s seed %d already trained and evaluated (%s)", run.id, k, summary["status"])
        return summary
    if k > 0:
        config = seed_config()
        fsio.atomic_write_json(seed_run.config, config)
    root = study.project.root
    tree = checkout.ensure_checkout(study, run, config["code"]["commit"])
    argv = checkout.in_checkout(supervisor.trainer_argv(config, study.settings, seed_run, root), tree, root)
    policy = checkout.trainer_policy(study, run, seed_run, tree)
    reports: list[dict] = []

    def sandboxed(command: list[str]) -> sandbox.Launch:
        launch = sandbox.prepare(command, policy, "trainer")
        reports.append(launch.report)
        return launch

    log.info("run %s seed %d: %s (sandboxed, from %s)", run.id, k, " ".join(argv), tree)
    summary = supervisor.run_trainer(argv, seed_run, config, root, study.settings.budget.max_retries,
                                     sandboxed=sandboxed)
    note_sandbox(run, f"trainer/seed-{k}", reports[-1] if reports else {})
    if summary["status"] == RunStatus.COMPLETED:
        summary = evaluate.evaluate_seed(study, seed_run, config["code"]["base_commit"], summary)
    summary = {**summary, "evaluation": summary.get("evaluation")}
    schemas.validate(summary, "trainer_summary", what=str(seed_run.summary))
    fsio.atomic_write_json(seed_run.summary, summary)
    fsio.atomic_write_json(kept, summary)
    if summary["status"] == RunStatus.SKIPPED:  # the sandboxed trainer saw control/ read-only and left the file
        control_file(study.project.control, "skip").unlink(missing_ok=True)
    return summary


def restore_kept(run: RunPaths) -> None:
    """Put each kept evaluation back into its seed's folder: whatever a trainer wrote there since does not count,
    and the judge's protocol reads the seeds' folders (a decided run trains nothing more that would rewrite them)."""
    for kept in sorted(run.kept_evaluations.glob("seed-*.json")):
        k = int(kept.stem.split("-")[1])
        fsio.atomic_write_json(run.seed(k).summary, fsio.read_json(kept))


def note_sandbox(run: RunPaths, key: str, report: dict) -> None:
    current = fsio.read_json(run.sandbox) if run.sandbox.exists() else {}
    current[key] = report
    fsio.atomic_write_json(run.sandbox, current)
