"""A patch: applied to a worktree, recorded as a tree, and read back as git sees it.

However the change came (a unified diff from an LLM, or the edits of an agent CLI in the worktree), what is guarded,
checked and trained is the same thing: the worktree after `git clean -fdX` (files the project ignores, which only
the patch or the agent can have made, are removed, so the tree that trains is exactly the commit), staged whole, as
git's own `diff --raw` and `--numstat` describe it against the base. An LLM's diff is applied with `git apply
--recount` (hunk line counts are recomputed: models get them wrong), which also refuses paths that leave the tree.

Usage:
    apply_diff(repo, worktree, diff_text)              # PatchError with git's message when it does not apply
    tree = stage(repo, worktree)                       # the worktree as a tree object
    changes = read_changes(repo, base, tree)           # [FileChange(...)]
    text = diff_text(repo, base, tree)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from autopilot.code.repo import CodeRepo
from autopilot.errors import CodeError, PatchError

FENCED_DIFF = re.compile(r"```(?:diff|patch|udiff)?[ \t]*\n(.*?)```", re.DOTALL)
SYMLINK, SUBMODULE = "120000", "160000"


@dataclass(frozen=True)
class FileChange:
    """One path of a patch, as git reports it."""

    status: str  # A added, M modified, D deleted, R renamed, C copied, T type changed
    path: str  # the path after the change (repository-relative)
    old_path: str | None  # the path before a rename or copy
    old_mode: str
    new_mode: str
    added: int | None  # None: binary
    removed: int | None
    added_lines: tuple[str, ...] = field(default=(), repr=False)
    removed_lines: tuple[str, ...] = field(default=(), repr=False)

    @property
    def binary(self) -> bool:
        return self.added is None


def extract_diff(text: str) -> str:
    """The diff in an LLM's answer text: a fenced ```diff block, else the text from its first diff header."""
    for m in FENCED_DIFF.finditer(text):
        body = m.group(1)
        if re.search(r"^(diff --git |--- |@@ )", body, re.MULTILINE):
            return body
    start = re.search(r"^(diff --git |--- )", text, re.MULTILINE)
    return text[start.start():] if start else ""


def apply_diff(repo: CodeRepo, worktree: Path, diff: str) -> None:
    """Apply a unified diff to the worktree; PatchError carries git's message (the worker gets it back)."""
    if not diff.strip():
        raise PatchError("the answer holds no unified diff (```diff ... ``` with ---/+++ headers and @@ hunks)")
    if not (re.search(r"^--- ", diff, re.MULTILINE) and re.search(r"^\+\+\+ ", diff, re.MULTILINE)
            and re.search(r"^@@ ", diff, re.MULTILINE)):
        raise PatchError(f"the diff is not a unified diff: it needs `--- a/<path>` and `+++ b/<path>` lines, each on a "
                         f"line of its own, and `@@ -l,n +l,n @@` hunks; it starts {diff.strip()[:120]!r}")
    if not diff.endswith("\n"):
        diff += "\n"
    try:
        repo.git("apply", "--recount", "--whitespace=nowarn", "--verbose", "-", cwd=worktree, input=diff)
    except CodeError as e:
        raise PatchError(f"the diff does not apply to the base: {str(e).split(': ', 1)[-1]}") from None


def stage(repo: CodeRepo, worktree: Path) -> str:
    """The worktree as a tree object: ignored files removed, everything else staged (the worktree's own index)."""
    repo.git("clean", "-fdXq", cwd=worktree)
    repo.git("add", "--all", cwd=worktree)
    return repo.git("write-tree", cwd=worktree).strip()


def read_changes(repo: CodeRepo, base: str, tree: str) -> list[FileChange]:
    """Every path that differs between `base` and `tree`, renames and copies detected, with its added lines."""
    raw = repo.git("diff-tree", "-r", "-z", "-M", "-C", "--raw", "--no-commit-id", base, tree).split("\0")
    counts = _numstat(repo, base, tree)
    lines = _hunk_lines(diff_text(repo, base, tree, context=0))
    out = []
    i = 0
    while i < len(raw) - 1:
        meta = raw[i].lstrip(":").split()
        if len(meta) < 5:
            i += 1
            continue
        old_mode, new_mode, status = meta[0], meta[1], meta[4][0]
        if status in "RC":
            old_path, path = raw[i + 1], raw[i + 2]
            i += 3
        else:
            old_path, path = None, raw[i + 1]
            i += 2
        added, removed = counts.get(path, (0, 0))
        plus, minus = lines.get(path, ((), ()))
        out.append(FileChange(status, path, old_path, old_mode, new_mode, added, removed, plus, minus))
    return out


def _numstat(repo: CodeRepo, base: str, tree: str) -> dict[str, tuple[int | None, int | None]]:
    out = {}
    parts = repo.git("diff-tree", "-r", "-z", "-M", "-C", "--numstat", "--no-commit-id", base, tree).split("\0")
    i = 0
    while i < len(parts):
        fields = parts[i].split("\t")
        if len(fields) < 3:
            i += 1
            continue
        added, removed, path = fields
        if path == "":  # a rename: the two paths follow as their own fields
            path = parts[i + 2]
            i += 3
        else:
            i += 1
        out[path] = (None, None) if added == "-" else (int(added), int(removed))
    return out


def _hunk_lines(text: str) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Added and removed lines per path of a git diff (a deleted file under its old path)."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    current = before = None
    for line in text.splitlines():
        if line.startswith("diff --git "):
            current = before = None
        elif current is None and line.startswith("--- "):
            before = line[4:].removeprefix("a/")
        elif current is None and line.startswith("+++ "):
            current = line[4:].removeprefix("b/") if line[4:] != "/dev/null" else before
            out.setdefault(current, ([], []))
        elif current is not None and line.startswith("+"):
            out[current][0].append(line[1:])
        elif current is not None and line.startswith("-"):
            out[current][1].append(line[1:])
    return {k: (tuple(a), tuple(r)) for k, (a, r) in out.items()}


def diff_text(repo: CodeRepo, base: str, tree: str, context: int = 3) -> str:
    """The patch as text, renames detected (what proposal.json and patch.diff hold)."""
    return repo.git("diff-tree", "-r", "-p", "-M", "-C", "--no-color", f"-U{context}", "--no-commit-id", base, tree)


def changed_lines(changes: list[FileChange]) -> int:
    """Added plus removed lines of a patch (a binary file counts as none: it is rejected on its own)."""
    return sum((c.added or 0) + (c.removed or 0) for c in changes)
