"""Before the first job of an invocation: what the study needs that this machine lacks, said with what to do.

A study whose trainer cannot start would otherwise fail at its first train step, after ingest and a proposal,
and leave a failed run in the journal. The Snakefile calls `check` right after validating the config, so such
a study fails at validation, before any run, with the exact command to run.

Usage:
    preflight.check(study)   # raises ConfigError
"""

from __future__ import annotations

from autopilot.errors import ConfigError
from autopilot.study import Study
from autopilot.train.tasks import missing_extra


def check(study: Study, packages_here: bool = True) -> None:
    """Raise ConfigError naming the first thing the study's task needs and cannot find. `packages_here`: the
    trainers run with this interpreter (not in an image, not on a cluster node), so its packages are checked."""
    settings, root = study.settings, study.project.root
    problem = missing_extra(settings.task) if packages_here else None
    if problem:
        raise ConfigError(f"study {study.name}: {problem}")
    if settings.task != "causal_lm":
        return
    if not (root / settings.model.path).is_dir():
        raise ConfigError(f"study {study.name}: model.path {settings.model.path} is not a folder; it must hold a model "
                          f"and its tokenizer saved with save_pretrained (for config/studies/lm_sft.yaml, build the "
                          f"tiny one: python examples/make_tiny_lm.py)")
    files = {"val_file": settings.data.val_file}
    if settings.data.source == "file":
        files["train_file"] = settings.data.train_file
    for key, name in files.items():
        if not (root / name).is_file():
            raise ConfigError(f"study {study.name}: data.{key} {name} is not a file (relative to the project root, "
                              f"{root})")
