"""The history of a study's code: the branch autopilot/<study>, on which every attempt is committed.

The branch's first-parent line is the study's code line: its tree is the code every run starts from. Each attempt
of a code run (kept or not) is a commit whose parent is the code line it started from, and is recorded on the branch
by a merge commit that keeps the line's tree as it was (`git log autopilot/<study>` lists every attempt; `git log
--first-parent` the line alone). When a run's verdict makes it the champion, a merge commit takes its tree: later
runs branch from it. `revert` undoes a run's patch on the line with a commit of its own. Nothing here touches a
checkout: commits are made with write-tree / commit-tree, and the branch moves by compare-and-swap under a lock.
A code version is a tree: runs that trained the same tree ran the same code, whatever commit carried it.

Usage:
    tip = line_tip(repo, study)
    commit = commit_attempt(repo, study, tree, base, message)
    take(repo, study, commit, "run 00007 improved")
    revert(repo, study, run_commit, run_base, "revert run 00007")
    events(repo, study)
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from filelock import FileLock

from autopilot.code.repo import IDENTITY, CodeRepo
from autopilot.errors import CodeError, PatchError
from autopilot.study import Study

log = logging.getLogger(__name__)


def branch(study: Study) -> str:
    return f"refs/heads/autopilot/{study.name}"


def _lock(study: Study) -> FileLock:
    study.paths.dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(study.paths.code_lock))


def line_tip(repo: CodeRepo, study: Study, create: bool = True) -> str:
    """The code line's commit; the branch is made on first use from the project's HEAD (or its snapshot), unless
    `create` is false (a dry run): then the commit it would start from."""
    ref = branch(study)
    if repo.exists(ref):
        return repo.resolve(ref)
    if not create:
        return repo.resolve("refs/heads/main" if repo.own else "HEAD")
    with _lock(study):
        if not repo.exists(ref):
            start = repo.resolve("refs/heads/main" if repo.own else "HEAD")
            repo.git("update-ref", ref, start, "")
            log.info("code line %s starts at %s", ref, start[:12])
    return repo.resolve(ref)


def commit_attempt(repo: CodeRepo, study: Study, tree: str, base: str, message: str) -> str:
    """Commit an attempt's tree on top of its base, and record it on the branch (the line's tree unchanged)."""
    commit = repo.git("commit-tree", tree, "-p", base, "-m", message).strip()
    _merge(repo, study, commit, keep_line=True, message=f"record attempt {commit[:12]}: {message.splitlines()[0]}")
    return commit


def take(repo: CodeRepo, study: Study, commit: str, message: str) -> str:
    """The code line becomes `commit`'s tree (a run was promoted); returns the new tip."""
    if repo.tree_of(line_tip(repo, study)) == repo.tree_of(commit):
        return line_tip(repo, study)
    return _merge(repo, study, commit, keep_line=False, message=message)


def _merge(repo: CodeRepo, study: Study, commit: str, keep_line: bool, message: str) -> str:
    ref = branch(study)
    with _lock(study):
        tip = line_tip(repo, study)
        tree = repo.tree_of(tip if keep_line else commit)
        merged = repo.git("commit-tree", tree, "-p", tip, "-p", commit, "-m", message).strip()
        repo.git("update-ref", ref, merged, tip)
    return merged


def revert(repo: CodeRepo, study: Study, commit: str, base: str, message: str) -> str:
    """Undo `base..commit` on the code line: a commit whose tree is the line's without that patch."""
    patch = repo.git("diff-tree", "-r", "-p", "--binary", "--full-index", base, commit)
    if not patch.strip():
        raise CodeError(f"commit {commit[:12]} changes nothing against its base {base[:12]}: nothing to revert")
    ref = branch(study)
    with _lock(study), tempfile.TemporaryDirectory() as tmp:
        tip = line_tip(repo, study)
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        repo.git("read-tree", tip, env=env)
        try:
            repo.git("apply", "--cached", "-R", "-", input=patch, env=env)
        except CodeError as e:
            raise PatchError(f"the patch of {commit[:12]} cannot be taken back from the code line as it is now "
                             f"(a later patch changed the same lines): {str(e).split(': ', 1)[-1]}") from None
        tree = repo.git("write-tree", env=env).strip()
        new = repo.git("commit-tree", tree, "-p", tip, "-m", message).strip()
        repo.git("update-ref", ref, new, tip)
    return new


def events(repo: CodeRepo, study: Study, limit: int = 200) -> list[dict]:
    """The branch's first-parent line, newest first, down to the commit it started from (the last one listed, the
    first not made by autopilot): commit, tree, time, subject, the attempt it recorded or took."""
    out = []
    fmt = "%H%x1f%T%x1f%cI%x1f%P%x1f%an%x1f%s"
    for line in repo.git("log", "--first-parent", f"-{limit}", f"--format={fmt}", branch(study)).splitlines():
        commit, tree, when, parents, author, subject = line.split("\x1f", 5)
        parents = parents.split()
        ours = author == IDENTITY["GIT_AUTHOR_NAME"]
        out.append({"commit": commit, "tree": tree, "time": when, "subject": subject if ours else f"(start) {subject}",
                    "attempt": parents[1] if len(parents) > 1 else None})
        if not ours:
            break
    return out
