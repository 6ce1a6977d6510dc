"""`autopilot init DIR`: a new project, ready to run: the workflow, the default study and the examples copied
from the installed package (autopilot.bundled), and the empty state folders inbox/, queue/, runs/.

`--quick` cuts the default study down (QUICK_STUDY) so that a run trains in about a second: the whole loop in a
minute, to see it work. The test suite and the benchmarks make their throw-away projects the same way, with a
study tweaked by a few keys (written back without the comments of config/config.yaml).

Usage:
    create_project(Path("my-study"))                                # as `autopilot init my-study`
    create_project(root, config={**QUICK_STUDY, "iterations": 2})   # as `autopilot init --quick`, 2 runs a time
    quick_project(root, judge={...})          # a throw-away project of the tests and benchmarks
    subprocess.run(["snakemake", ...], cwd=root, env=workflow_env(bin_dir))
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from autopilot import bundled, fsio
from autopilot.errors import ConfigError
from autopilot.paths import PROJECT_FILES, STATE_DIRS

# The default study (the CNN on the digits), cut down to train in well under a second per seed: 2 epochs of a
# narrow net, 4 keys to tune, one extra seed for the noise floor and one to confirm.
QUICK_STUDY = {
    "iterations": 2,
    "baseline": {"lr": 0.003, "batch_size": 64, "epochs": 2, "weight_decay": 0.0001, "width": 8,
                 "dropout": 0.1, "optimizer": "adam"},
    "search_space": {
        "lr": {"type": "float", "low": 0.0005, "high": 0.02, "log": True},
        "epochs": {"type": "int", "low": 1, "high": 3},
        "width": {"type": "categorical", "choices": [8, 16]},
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
    },
    "judge": {"noise_seeds": 1, "select_seeds": 1, "confirm_seeds": 2, "record_seeds": 1, "incumbent_seeds": 2},
}


def create_project(root: Path, config: dict | None = None) -> Path:
    """Copy the project files into `root` (new or empty of them); `config` updates keys of the default study."""
    root = Path(root)
    taken = [name for name in PROJECT_FILES if (root / name).exists()]
    if taken:
        raise ConfigError(f"{root} already holds {', '.join(taken)}: `autopilot init` makes a new project; give a "
                          f"new folder (or an empty one)")
    source = bundled.project_files()
    root.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        if (source / name).is_dir():
            shutil.copytree(source / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source / name, root / name)
    for name in STATE_DIRS:
        (root / name).mkdir(exist_ok=True)
    if config:
        path = root / "config" / "config.yaml"
        study = {**yaml.safe_load(path.read_text(encoding="utf-8")), **config}
        fsio.atomic_write_text(path, yaml.safe_dump(study, sort_keys=False))
    return root


def quick_project(root: Path, **overrides) -> Path:
    """A throw-away project (tests, benchmarks) whose study is QUICK_STUDY with some keys changed."""
    return create_project(root, {**QUICK_STUDY, **overrides})


def deep_project(root: Path, n_runs: int) -> Path:
    """A quick project whose study already has `n_runs` synthetic finished runs (autopilot.journal.synthetic)."""
    from autopilot.journal.synthetic import write_runs
    from autopilot.paths import Project
    from autopilot.study import Study

    quick_project(root, budget={"max_runs": 100_000})
    write_runs(Study.load(Project(root), Project(root).default_config), n_runs)
    return root


def workflow_env(bin_dir: Path) -> dict:
    """The environment to run a throw-away project's workflow in: `bin_dir`'s snakemake and autopilot first, warm
    trainer pools that idle out after 15 s (the project is gone soon)."""
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "AUTOPILOT_POOL_IDLE_SECONDS": "15"}
