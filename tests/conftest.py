"""Shared fixtures: a throw-away copy of the project to run real studies in, and a fast study config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PROJECT_FILES = ("Snakefile", "rules", "config", "profiles", "schemas")

# A study that trains in well under a second per seed, for end-to-end tests.
FAST_STUDY = {
    "iterations": 2,
    "baseline": {"lr": 0.003, "batch_size": 64, "epochs": 2, "weight_decay": 0.0001, "width": 8,
                 "dropout": 0.1, "optimizer": "adam"},
    "search_space": {
        "lr": {"type": "float", "low": 0.0005, "high": 0.02, "log": True},
        "epochs": {"type": "int", "low": 1, "high": 3},
        "width": {"type": "categorical", "choices": [8, 16]},
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
    },
    "judge": {"noise_seeds": 1, "confirm_seeds": 1, "max_confirm_seeds": 1},
}


def make_project(root: Path, **overrides) -> Path:
    """Copy the workflow into `root` and write config/config.yaml = default study + FAST_STUDY + overrides."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, dirs_exist_ok=True)
        elif src.exists():
            shutil.copy2(src, root / name)
    for d in ("inbox", "queue", "runs"):
        (root / d).mkdir(exist_ok=True)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(FAST_STUDY)
    config.update(overrides)
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def env() -> dict:
    """The environment of workflow subprocesses; warm trainer pools of throw-away projects idle out fast."""
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AUTOPILOT_POOL_IDLE_SECONDS": "15"}


def snakemake(root: Path, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the workflow in `root` with the local profile; output captured (shown on failure)."""
    cmd = [str(VENV_BIN / "snakemake"), "-c2", "--profile", "profiles/local", *args]
    proc = subprocess.run(cmd, cwd=root, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")
