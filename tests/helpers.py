"""What the tests share that is not a fixture: the repository, throw-away projects, the workflow's environment,
running Snakemake. Fixtures live in conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from autopilot.ingest.checks import Settings
from autopilot.ops.scaffold import QUICK_STUDY, quick_project, workflow_env
from autopilot.paths import Project

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

FAST_STUDY = QUICK_STUDY  # the default study cut down to train in well under a second per seed


def make_project(root: Path, **overrides) -> Path:
    """A new project in `root`, as `autopilot init` makes it, whose study is the default + FAST_STUDY + overrides."""
    return quick_project(root, **overrides)


def env() -> dict:
    """The environment of workflow subprocesses; warm trainer pools of throw-away projects idle out fast."""
    return workflow_env(VENV_BIN)


# What `./bin/demo` does not install: the test extra, and the lm extra (transformers, peft, ...).
NOT_IN_DEMO = ("pytest", "_pytest", "hypothesis", "conftest", "helpers", "lm_helpers", "transformers", "peft",
               "tokenizers", "safetensors")


def env_without(folder: Path, modules: tuple[str, ...] = NOT_IN_DEMO) -> dict:
    """env() for subprocesses in which `modules` cannot be imported, as in a venv that lacks them: a
    sitecustomize.py in `folder` (first on PYTHONPATH) marks them missing before anything runs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(f"import sys\nfor name in {modules!r}:\n    sys.modules[name] = None\n")
    e = env()
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), e.get("PYTHONPATH")]))
    return e


def snakemake(root: Path, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the workflow in `root` with the local profile; output captured (shown on failure)."""
    cmd = [str(VENV_BIN / "snakemake"), "-c2", "--profile", "profiles/local", *args]
    proc = subprocess.run(cmd, cwd=root, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def ingest_settings(**overrides) -> Settings:
    """Ingest settings of a study whose default spec is chat_sft_v1, with `overrides`."""
    return Settings.from_config({"default_spec": "chat_sft_v1", **overrides})


def drop(project: Project, name: str, data: bytes) -> Path:
    """A file dropped into the project's inbox."""
    path = project.inbox / name
    path.write_bytes(data)
    return path
