"""A run's code on disk, and how its trainer is started from there in the sandbox.

The trainer of a code-mode run starts from the project root as always (paths in config.json, the data, status/ are
where they always are), but its program comes from the run's checkout: each argument that names a file of the
project is replaced by the same file in the checkout (`python train.py` -> `python <checkout>/train.py`, so Python
imports the script's neighbours from there too), and PYTHONPATH starts with the checkout. It runs in the sandbox:
its seed folder is all it may write (plus status/), the run's own records (proposal, config, code, other seeds)
stay read-only inside it, and the sealed paths are hidden. It never goes to the warm trainer pool.

Usage:
    tree = ensure_checkout(study, run, commit)       # runs/<study>/<run>/code/tree/<prefix>
    argv = in_checkout(argv, tree, root)
    policy = trainer_policy(study, run, seed_run)
"""

from __future__ import annotations

import os
from pathlib import Path

from autopilot.code import sandbox
from autopilot.code.repo import CodeRepo, open_repo
from autopilot.paths import RunPaths
from autopilot.study import Study

RUN_RECORDS = ("proposal.json", "rejected_proposal.json", "guard.json", "config.json", "patch.diff", "llm", "code",
               "seeds", "sandbox.json", "logs")  # inside a run folder, what its seed-0 trainer may not change


def ensure_checkout(study: Study, run: RunPaths, commit: str, repo: CodeRepo | None = None) -> Path:
    """The run's worktree at `commit` (made again when missing or at another commit); its project folder."""
    repo = repo or open_repo(study)
    path = run.worktree
    head = path / ".git"
    if head.exists() and repo.git("rev-parse", "HEAD", cwd=path, check=False).strip() == commit:
        repo.git("checkout", "--force", "--quiet", commit, cwd=path)  # a file a trainer may have changed comes back
        repo.git("clean", "-fdxq", cwd=path)
        return path / repo.prefix
    return repo.add_worktree(path, commit)


def in_checkout(argv: list[str], tree: Path, root: Path) -> list[str]:
    """`argv` with every argument that names a project file replaced by that file in the checkout."""
    out = []
    for arg in argv:
        if arg and not arg.startswith("-") and not os.path.isabs(arg) and (tree / arg).is_file() \
                and (root / arg).resolve() != (tree / arg).resolve():
            out.append(str(tree / arg))
        else:
            out.append(arg)
    return out


def sealed_paths(study: Study) -> tuple[Path, ...]:
    return tuple((study.project.root / s).resolve() for s in study.settings.code_mode.sealed)


def trainer_policy(study: Study, run: RunPaths, seed_run: RunPaths, tree: Path) -> sandbox.Policy:
    """What a trainer of the run's code may do: write its seed folder and status/, nothing else."""
    code = study.settings.code_mode
    seed_run.dir.mkdir(parents=True, exist_ok=True)
    study.project.status_dir.mkdir(parents=True, exist_ok=True)
    readonly = tuple(run.dir / name for name in RUN_RECORDS) if seed_run.dir == run.dir else ()
    run.seeds_dir.mkdir(exist_ok=True)  # made now, so that it is bound read-only rather than made by the trainer
    return sandbox.Policy(
        root=study.project.root.resolve(), writable=(seed_run.dir.resolve(), study.project.status_dir.resolve()),
        readonly=tuple(p.resolve() for p in readonly), sealed=sealed_paths(study), network=False,
        memory_mb=code.memory_mb, env_names=code.env, set_env=(("PYTHONPATH", python_path(tree)),),
        strict=code.strict_sandbox)


def python_path(tree: Path) -> str:
    """PYTHONPATH with the checkout first (a `python -m pkg.train` trainer imports its package from there)."""
    rest = os.environ.get("PYTHONPATH")
    return str(tree) + (os.pathsep + rest if rest else "")
