"""Throw-away projects for the benchmarks, made as `autopilot init --quick` makes one (nothing from tests/).

Usage (from a benchmark; its own folder is on sys.path when it runs as `python benchmarks/<x>.py`):
    from _project import VENV_BIN, env, make_project
    root = make_project(Path(tmp) / "p", judge={...})   # the quick study, some keys changed
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from autopilot.ops.scaffold import QUICK_STUDY, create_project

VENV_BIN = Path(sys.executable).parent  # snakemake and autopilot of the interpreter that runs the benchmark


def make_project(root: Path, **overrides) -> Path:
    """A new project in `root` whose study is the quick study with `overrides`."""
    return create_project(root, {**QUICK_STUDY, **overrides})


def env() -> dict:
    """The environment of the workflow: this interpreter's scripts first; warm trainer pools idle out fast."""
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AUTOPILOT_POOL_IDLE_SECONDS": "15"}
