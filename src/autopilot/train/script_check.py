"""Before any run: a study's own trainer is set up consistently, and what it needs is installed.

The workflow calls `check_study` when it parses the Snakefile, so a study that names an unknown placeholder, a
pattern that captures nothing, or needs an optional extra that is missing fails at once, with the exact
`pip install` command, instead of as its first failed run. A study whose trainer runs in `container_image`
is checked for its settings only: what the image holds cannot be seen from here.

Usage:
    check_study(study.settings, project.root, "config/config.yaml")   # raises ConfigError / MissingDependency
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path, PurePosixPath

from autopilot import extras
from autopilot.errors import ConfigError
from autopilot.settings import MetricsFrom, StudySettings
from autopilot.train import script_argv, script_metrics

log = logging.getLogger(__name__)

PYTHON = re.compile(r"^python[0-9.]*$")


def script_python(command: tuple[str, ...], root: Path, source: str = "trainer") -> str | None:
    """The Python interpreter that runs the script, when the command starts with one (python, python3.11, a path)."""
    if not PYTHON.match(Path(command[0]).name):
        return None
    found = str(root / command[0]) if "/" in command[0] else shutil.which(command[0], path=os.environ.get("PATH"))
    if found is None or not os.access(found, os.X_OK):
        raise ConfigError(f"{source}: trainer.command[0] {command[0]!r} is not a program on PATH (nor under the root)")
    return found


def check_study(settings: StudySettings, root: Path, source: str) -> None:
    """ConfigError (or MissingDependency) for a `task: command` study whose trainer cannot work as set up."""
    if settings.task != "command":
        return
    trainer = settings.trainer
    script_argv.check_command(trainer, settings.baseline, source)
    check_metrics_from(trainer.metrics_from, settings.metric.name, source)
    if settings.container_image:
        return
    if trainer.metrics_from.source == "tensorboard":
        extras.require("tensorboard", f"{source}: trainer.metrics_from.source: tensorboard")
    if trainer.args == "hydra":
        python = script_python(trainer.command, root, source)
        if python is None:
            log.info("trainer.command does not start with python: not checking that it can import hydra")
        else:
            extras.require("hydra", f"{source}: trainer.args: hydra", python)


def check_metrics_from(settings: MetricsFrom, metric: str, source: str) -> None:
    where = f"{source}: trainer.metrics_from"
    kind = settings.source
    if settings.patterns is not None and kind != "stdout":
        raise ConfigError(f"{where}.patterns is read only from stdout, but source is {kind}")
    if kind == "json_file" and not settings.path:
        raise ConfigError(f"{where}: source json_file needs `path`, the file the script writes (relative to the "
                          "run folder, e.g. metrics.json)")
    for key in ("path", "per_example"):
        if getattr(settings, key) is not None:
            check_relative(getattr(settings, key), f"{where}.{key}")
    if settings.patterns:
        script_metrics.compile_patterns(settings.patterns, f"{where}.patterns")
        if metric not in settings.patterns:
            raise ConfigError(f"{where}.patterns has no pattern for the study's metric {metric!r}")
        if settings.loss is not None and settings.loss not in settings.patterns:
            raise ConfigError(f"{where}.patterns has no pattern for the loss {settings.loss!r}: add one, or set "
                              "trainer.metrics_from.loss: null to train without the NaN/divergence checks")


def check_relative(path: str, where: str) -> None:
    """A path under the run folder: relative, and not climbing out of it."""
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts:
        raise ConfigError(f"{where}: {path!r} must be a path inside the run folder (relative, without ..)")
