"""What the Snakefile's `onstart:`, `onsuccess:` and `onerror:` hooks do, here where tests can reach it.

Snakemake knows its executor only once jobs are about to run (at parse time `workflow.local_exec` is always
true), so the choices that depend on it are made in `onstart:`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from autopilot.errors import ConfigError
from autopilot.study import Study
from autopilot.workflow.plan import Plan


def on_start(workflow, plan: Plan, study: Study) -> list[str]:
    """On a cluster executor, or when rules bring their own software (`--sdm apptainer|conda`: an interpreter
    other than this one), jobs run their commands and trainers fresh (see `autopilot.warm.warmup`); on this
    machine, warm up what the planned runs will use. Returns what was started, for the log."""
    check_images(workflow)
    if not workflow.local_exec or deploys_software(workflow):
        os.environ["AUTOPILOT_NO_WARMSTART"] = "1"  # inherited by the jobs Snakemake submits from now on
        return []
    if not plan.run_ids or plan.halted or workflow.touch:
        return []
    from autopilot.warm import warmup

    return warmup.start(study)


def deployment_methods(workflow) -> set[str]:
    """The names of the software deployment methods Snakemake was given (`--sdm apptainer conda` -> both)."""
    return {m.name for m in workflow.deployment_settings.deployment_method}


def deploys_software(workflow) -> bool:
    """Rules run in their container image (`--sdm apptainer`) or conda environment (`--sdm conda`)."""
    return bool(deployment_methods(workflow) & {"APPTAINER", "CONDA"})


def check_images(workflow) -> None:
    """Under `--sdm apptainer`, an image that is a local file (not docker://...) must exist before any job
    starts: say which, for which rules, and how to make it, instead of one failure per job."""
    if "APPTAINER" not in deployment_methods(workflow):
        return
    missing: dict[str, list[str]] = {}
    for rule in workflow.rules:
        image = rule.container_img
        if not rule.norun and isinstance(image, str) and "://" not in image and not Path(image).exists():
            missing.setdefault(image, []).append(rule.name)
    if missing:
        listed = "".join(f"\n  {image} (rules {', '.join(rules)})" for image, rules in missing.items())
        raise ConfigError(
            f"--sdm apptainer: {len(missing)} image file(s) the rules run in do not exist:{listed}\n"
            "Build them as docker/README.md shows (docker build, then `apptainer build images/<name>-<tag>.sif "
            "docker-daemon://<name>:<tag>`) or pull them (`apptainer pull images/<name>-<tag>.sif "
            "docker://<registry>/<name>:<tag>`); the study's container_image replaces the trainer image.")


def finish_without_waiting() -> None:
    """Snakemake's job-rate limiter leaves a threading.Timer of up to 1 s behind, and the interpreter waits for
    it at exit; once the workflow has ended nothing needs it (it only wakes the scheduler), so cancel it."""
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.cancel()
