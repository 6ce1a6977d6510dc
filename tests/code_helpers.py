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
from helpers import REPO, make_project

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
                  judge={"noise_seeds": 1, "select_seeds": 1, "confirm_seeds": 2, "record_seeds": 1,
                         "incumbent_seeds": 2, "noise_keys": ["lr"]},
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


def edit_patch(root: Path, path: str, *pairs: str) -> str:
    """A unified diff that replaces each `old` by its `new` (pairs: old, new, old, new...) in the project file `path`,
    as an LLM would write it."""
    text = changed = (root / path).read_text()
    for old, new in zip(pairs[::2], pairs[1::2], strict=True):
        assert old in changed, f"{old!r} is not in {path}"
        changed = changed.replace(old, new, 1)
    return "".join(difflib.unified_diff(text.splitlines(True), changed.splitlines(True), f"a/{path}", f"b/{path}"))


def new_file_patch(path: str, text: str) -> str:
    lines = text.splitlines(True)
    return f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{len(lines)} @@\n" + "".join("+" + line for line in lines)


def run_loop(study: Study, run_id: str, upto: str = "journal") -> dict:
    """The loop's steps for one run, in this process (what the workflow's rules call): the last step's result."""
    from autopilot.guard import guard_run
    from autopilot.journal.record import journal_run
    from autopilot.judge.verdicts import judge_run
    from autopilot.propose.decide import propose_run
    from autopilot.train.runner import train_run

    steps = {"propose": propose_run, "guard": guard_run, "train": train_run, "judge": judge_run,
             "journal": journal_run}
    out = None
    for name, fn in steps.items():
        out = fn(study, run_id)
        if name == upto:
            break
    return out


def copy_project(source: Path, dest: Path) -> Path:
    """A copy of a project (its git repository and runs included) to go on from."""
    shutil.copytree(source, dest, symlinks=True)
    return dest


MINIBATCH = ("""        logits = x @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = -np.log(p[np.arange(len(y)), y] + 1e-12).mean() + hp["l2"] * (w**2).sum()
        p[np.arange(len(y)), y] -= 1
        w -= hp["lr"] * (x.T @ p / len(y) + 2 * hp["l2"] * w)
        b -= hp["lr"] * p.mean(0)
""", """        order = rng.permutation(len(y))
        for i in range(0, len(y), 64):  # mini-batches: many more updates per epoch than one full batch
            xb, yb = x[order[i:i + 64]], y[order[i:i + 64]]
            logits = xb @ w + b
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            loss = -np.log(p[np.arange(len(yb)), yb] + 1e-12).mean() + hp["l2"] * (w**2).sum()
            p[np.arange(len(yb)), yb] -= 1
            w -= hp["lr"] * (xb.T @ p / len(yb) + 2 * hp["l2"] * w)
            b -= hp["lr"] * p.mean(0)
""")
"""A real improvement of the example trainer: mini-batch SGD instead of one full-batch step per epoch."""

REASONS = {"rationale": "Each epoch takes a single full-batch gradient step, so eight epochs are eight updates; "
                        "mini-batches of 64 give about seventeen updates per epoch at the same cost.",
           "hypothesis": "val_accuracy rises well above the baseline's, by several points."}


def answer(diff: str, **reasons) -> dict:
    """The coder's answer around a diff."""
    return {"diff": diff, **REASONS, **reasons}
