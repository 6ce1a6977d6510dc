"""The champion's held-out test score: evaluated once, when a run is first promoted, in a process of its own.

The registry writes a request (test/request.json: the weights, hparams and the study's data block with its test
part) and runs the task with `--test` (a built-in task) or the study's trainer.test_command; the evaluation
writes test/test_summary.json through autopilot.train.contract.TestRun. Only that process reads the test split.
The score goes to champion.json, models/<study>/test_scores.jsonl, best.json and the labbook: files that no
policy and no judge reads, so it can never steer a selection.

Which studies have a test split: cnn_digits always (the digits' held-out 20%), causal_lm when data.test_file is
set, a command study when trainer.test_command is set.

Usage:
    test = evaluate(study, "00007", champion_paths, weights)     # champion.json's `test`, or None
"""

from __future__ import annotations

import logging
import sys
import time

from autopilot import fsio, schemas
from autopilot.clock import now_iso
from autopilot.paths import ChampionPaths
from autopilot.processes import run_limited
from autopilot.study import Study

log = logging.getLogger(__name__)

GRACE_SECONDS = 60.0  # loading a model takes time a training budget does not count


def has_test_split(study: Study) -> bool:
    task = study.settings.task
    if task == "causal_lm":
        return bool(study.settings.data.test_file)
    if task == "command":
        return bool(study.settings.trainer and study.settings.trainer.test_command)
    return True


def test_argv(study: Study, request: str, out_dir: str) -> list[str]:
    task = study.settings.task
    if task == "command":
        return [a.replace("{config}", request).replace("{run_dir}", out_dir)
                for a in study.settings.trainer.test_command]
    return [sys.executable, "-m", f"autopilot.train.tasks.{task}", "--test", request, out_dir]


def build_request(study: Study, run_id: str, champion: ChampionPaths, weights: dict, hparams: dict) -> dict:
    root = study.project.root
    return {
        "study": study.name, "run_id": run_id, "task": study.settings.task, "hparams": hparams,
        "metric": dict(study.config["metric"]), "data": dict(study.config.get("data", {})),
        "weights": str((champion.dir / weights["path"]).relative_to(root)), "weights_format": weights["format"],
        "init_model": study.settings.model and study.settings.model.path,
        "max_seconds": float(study.settings.budget.max_seconds_per_run),
        "out_dir": str(champion.test_dir.relative_to(root)),
    }


def evaluate(study: Study, run_id: str, champion: ChampionPaths, weights: dict, hparams: dict) -> dict | None:
    """Score the champion on the test split once; None when the study has no test split."""
    if not has_test_split(study):
        return None
    started = time.monotonic()
    if weights["format"] == "none":
        return failed(study, f"no weights to evaluate: {weights['error']}", started)
    root = study.project.root
    request = build_request(study, run_id, champion, weights, hparams)
    schemas.validate(request, "test_request")
    fsio.atomic_write_json(champion.test_request, request)
    champion.test_summary.unlink(missing_ok=True)
    argv = test_argv(study, str(champion.test_request.relative_to(root)), request["out_dir"])
    limit = request["max_seconds"] + GRACE_SECONDS
    log.info("run %s: held-out test evaluation: %s", run_id, " ".join(argv))
    try:
        code = run_limited(argv, cwd=root, timeout=limit, output=champion.test_log)
    except OSError as e:
        return failed(study, f"could not start {argv[0]!r}: {e.strerror or e}", started)
    if code is None:
        return failed(study, f"the test evaluation took longer than {limit:g}s and was killed", started, "timeout")
    try:
        summary = fsio.read_json(champion.test_summary)
        schemas.validate(summary, "test_summary", what=str(champion.test_summary))
    except Exception as e:  # no summary, or a broken one: the evaluation's failure, recorded with its log
        return failed(study, f"exit status {code}, no valid test summary ({e}); see {champion.test_log}", started)
    if code != 0 and summary["status"] == "completed":
        return failed(study, f"the test evaluation exited with status {code} after reporting a score", started)
    return stamp(summary)


def failed(study: Study, error: str, started: float, status: str = "failed") -> dict:
    log.warning("held-out test evaluation %s: %s", status, error)
    summary = {"status": status, "metric": {**study.config["metric"], "value": None}, "examples": None,
               "metrics": {}, "seconds": round(time.monotonic() - started, 3), "error": error}
    schemas.validate(summary, "test_summary")
    return stamp(summary)


def stamp(summary: dict) -> dict:
    """The test block of champion.json: the summary, the split it measured, and when."""
    return {**summary, "split": "test", "evaluated_at": now_iso()}
