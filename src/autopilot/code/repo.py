"""The git repository that holds a study's code: the project's own, or a snapshot of it where it has none.

A project that is a git checkout keeps the study's code line in its own repository (branch autopilot/<study>;
`git merge autopilot/<study>` takes it over). A project that is not gets runs/<study>/code.git, a repository of its
own made from a snapshot of the project's files (not runs/, queue/, inbox/, caches, the sealed and protected paths
(data), nor files over SNAPSHOT_MAX_BYTES). Either way each code run checks out a worktree (`git worktree add
--detach`), so the user's checkout, index and HEAD are never touched, and every commit is made with plumbing
(write-tree, commit-tree).

Paths in diffs are the repository's; `prefix` is where the project root lies inside it ("" at the top).

Usage:
    repo = open_repo(study)
    repo.git("rev-parse", "HEAD")
    repo.add_worktree(path, commit); repo.remove_worktree(path)
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from autopilot.code.globs import matches
from autopilot.errors import CodeError
from autopilot.study import Study

log = logging.getLogger(__name__)

IDENTITY = {"GIT_AUTHOR_NAME": "autopilot", "GIT_AUTHOR_EMAIL": "autopilot@localhost",
            "GIT_COMMITTER_NAME": "autopilot", "GIT_COMMITTER_EMAIL": "autopilot@localhost"}
GIT_SECONDS = 120.0
SNAPSHOT_MAX_BYTES = 5 << 20  # a bigger file is data, not code: left out of a snapshot
SNAPSHOT_SKIP = {"runs", "queue", "inbox", "control", "status", ".snakemake", ".venv", "venv", ".git", "__pycache__",
                 ".pytest_cache", ".ruff_cache", ".mypy_cache", "node_modules"}


@dataclass(frozen=True)
class CodeRepo:
    git_dir: Path  # the repository's (common) git directory
    prefix: str  # the project root inside the repository: "" or "sub/dir/"
    own: bool  # a snapshot repository of the study (the project is not a git checkout)

    def git(self, *args: str, cwd: Path | None = None, input: str | None = None, check: bool = True,
            env: dict | None = None) -> str:
        """Run git on this repository (in the worktree `cwd` when given); its stdout, or CodeError with stderr."""
        out = self.git_bytes(*args, cwd=cwd, input=None if input is None else input.encode(), check=check, env=env)
        return out.decode("utf-8", errors="replace")

    def git_bytes(self, *args: str, cwd: Path | None = None, input: bytes | None = None, check: bool = True,
                  env: dict | None = None) -> bytes:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, **IDENTITY,
               "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})}
        argv = ["git", *args] if cwd is not None else ["git", f"--git-dir={self.git_dir}", *args]
        try:
            proc = subprocess.run(argv, cwd=cwd, env=env, input=input, capture_output=True, timeout=GIT_SECONDS)
        except subprocess.TimeoutExpired:
            raise CodeError(f"`git {' '.join(args)}` took over {GIT_SECONDS:g} s") from None
        if check and proc.returncode != 0:
            err = proc.stderr.decode("utf-8", errors="replace").strip()[-1500:]
            raise CodeError(f"`git {' '.join(args)}` failed ({proc.returncode}): {err}")
        return proc.stdout

    def resolve(self, rev: str) -> str:
        return self.git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()

    def tree_of(self, rev: str) -> str:
        return self.git("rev-parse", f"{rev}^{{tree}}").strip()

    def exists(self, rev: str) -> bool:
        return bool(self.git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False).strip())

    def add_worktree(self, path: Path, commit: str) -> Path:
        """A fresh worktree of `commit` at `path` (one left there by a killed run is replaced); the project's
        folder inside it is returned."""
        if path.exists():
            self.remove_worktree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.git("worktree", "add", "--detach", "--force", str(path), commit)
        return path / self.prefix

    def remove_worktree(self, path: Path) -> None:
        self.git("worktree", "remove", "--force", "--force", str(path), check=False)
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        self.git("worktree", "prune", check=False)

    def to_project(self, repo_path: str) -> str | None:
        """A repository path as a project path, or None when it lies outside the project."""
        if not repo_path.startswith(self.prefix):
            return None
        return repo_path[len(self.prefix):]


def open_repo(study: Study, create: bool = True) -> CodeRepo | None:
    """The repository of the study's code: the project's checkout, else the study's own snapshot repository (made
    now unless `create` is false: then None when there is none yet)."""
    root = study.project.root
    try:
        probe = subprocess.run(["git", "rev-parse", "--show-prefix", "--git-common-dir"], cwd=root,
                               capture_output=True, text=True, timeout=GIT_SECONDS)
    except FileNotFoundError:
        raise CodeError("code mode needs git, which is not installed (e.g. apt-get install git)") from None
    if probe.returncode == 0:
        prefix, common = probe.stdout.splitlines()[:2]
        return CodeRepo((root / common).resolve(), prefix, own=False)
    if not create and not (study.paths.code_repo / "HEAD").exists():
        return None
    return snapshot_repo(study)


def snapshot_repo(study: Study) -> CodeRepo:
    """runs/<study>/code.git, made on first use from a snapshot of the project's files."""
    git_dir = study.paths.code_repo
    repo = CodeRepo(git_dir, "", own=True)
    if (git_dir / "HEAD").exists() and repo.exists("refs/heads/main"):
        return repo
    git_dir.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(git_dir)], check=True,
                   capture_output=True, timeout=GIT_SECONDS)
    code = study.settings.code_mode
    files = [f for f in snapshot_files(study.project.root) if not matches(f, (*code.sealed, *code.protected))]
    index = git_dir / "snapshot.index"
    env = {"GIT_INDEX_FILE": str(index), "GIT_WORK_TREE": str(study.project.root)}
    try:
        repo.git("update-index", "--add", "-z", "--stdin", input="\0".join(files) + "\0", env=env)
        tree = repo.git("write-tree", env=env).strip()
    finally:
        index.unlink(missing_ok=True)
    commit = repo.git("commit-tree", tree, "-m", f"snapshot of the project for study {study.name} (not a git "
                      "checkout)").strip()
    repo.git("update-ref", "refs/heads/main", commit)
    log.info("the project is not a git checkout: snapshot of %d files in %s", len(files), git_dir)
    return repo


def snapshot_files(root: Path) -> list[str]:
    """The project's files for a snapshot repository (relative paths, sorted): not its runtime folders and caches,
    no symlinks, no file over SNAPSHOT_MAX_BYTES."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in SNAPSHOT_SKIP and not d.endswith(".egg-info"))
        for name in sorted(filenames):
            path = here / name
            if path.is_symlink() or path.suffix in (".pyc", ".pyo"):
                continue
            if path.stat().st_size <= SNAPSHOT_MAX_BYTES:
                out.append(path.relative_to(root).as_posix())
    return out
