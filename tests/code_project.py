"""A code-mode project for the tests: the workflow, the example's trainer and sealed evaluator, its data, in git.

Usage:
    root = code_project(tmp_path / "p", code_mode={"max_attempts": 2})
    study = load_study(root)
    patch = edit_patch(root, "examples/code_mode/train.py", "mean, std = ...", "mean, std = ...")
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import yaml
from conftest import REPO, make_project

from autopilot.paths import Project
from autopilot.study import Study
from autopilot.train.tasks.digits_data import split

TRAIN = "examples/code_mode/train.py"
EVALUATE = "examples/code_mode/evaluate.py"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def code_study_config(**code_mode) -> dict:
    """The example study (examples/code_mode/study.yaml), small and fast: runs of a few epochs."""
    config = yaml.safe_load((REPO / "examples" / "code_mode" / "study.yaml").read_text())
    config.update(iterations=1, baseline={"lr": 0.5, "epochs": 8, "l2": 0.0001},
                  judge={"noise_seeds": 1, "confirm_seeds": 1, "max_confirm_seeds": 1, "noise_keys": ["lr"]},
                  budget={"max_seconds_per_run": 60, "max_retries": 0})
    config["code_mode"] = {**config["code_mode"], "every_n_runs": 2, "max_attempts": 2, "check_seconds": 30,
                           "smoke_steps": 2, "memory_mb": 1024, **code_mode}
    return config


def code_project(root: Path, git: bool = True, **code_mode) -> Path:
    make_project(root)
    shutil.copytree(REPO / "examples" / "code_mode", root / "examples" / "code_mode", dirs_exist_ok=True)
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(code_study_config(**code_mode), sort_keys=False))
    data = split(0)
    holdout = root / "data" / "code_digits" / "holdout"
    holdout.mkdir(parents=True)
    x, y = data["train"]
    np.savez(root / "data" / "code_digits" / "train.npz", x=x.reshape(len(x), -1), y=y)
    xv, yv = data["val"]
    np.savez(holdout / "val.npz", x=xv.reshape(len(xv), -1), y=yv)
    if git:
        (root / ".gitignore").write_text("runs/\ndata/\nqueue/\ninbox/\ncontrol/\nstatus/\n.snakemake/\n__pycache__/\n")
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "the project"]):
            subprocess.run(["git", *args], cwd=root, check=True, env={**GIT_ENV, "PATH": "/usr/bin:/bin"})
    return root


def load_study(root: Path, **overrides) -> Study:
    return Study.load(Project(root), root / "config" / "config.yaml", overrides or None)


def edit_patch(root: Path, path: str, old: str, new: str) -> str:
    """A unified diff that replaces `old` by `new` in the project file `path` (as an LLM would write it)."""
    text = (root / path).read_text()
    assert old in text, f"{old!r} is not in {path}"
    changed = text.replace(old, new, 1)
    return "".join(difflib.unified_diff(text.splitlines(True), changed.splitlines(True), f"a/{path}", f"b/{path}"))


def new_file_patch(path: str, text: str) -> str:
    lines = text.splitlines(True)
    return f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{len(lines)} @@\n" + "".join("+" + line for line in lines)
