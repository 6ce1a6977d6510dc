"""The guard of a patch, on what git itself reports about real trees: allow-list, protected files, symlinks, modes,
binaries, renames, size, and the flag for a hard-coded hyperparameter. A diff from an LLM is applied with git."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from autopilot.code import diffguard, patch
from autopilot.code.globs import matches
from autopilot.code.repo import CodeRepo
from autopilot.errors import PatchError

TRAIN = 'lr = hp["lr"]\nfor step in range(hp["epochs"]):\n    loss = step * lr\n'
RULES = diffguard.Rules(allowed=("train.py", "model/**"), evaluator=("evaluate.py",), sealed=("data/holdout",),
                        protected=("data/**",), max_lines=20, prefix="", searched=("lr", "epochs"))


@pytest.fixture
def repo(tmp_path: Path):
    """A git repository with the project's files committed, and a worktree of it to change."""
    root = tmp_path / "project"
    for name, text in {"train.py": TRAIN, "evaluate.py": "print('metric')\n", "model/net.py": "W = 1\n",
                       "notes.txt": "x\n", "pyproject.toml": "[project]\n", "data/train.csv": "1,2\n"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    env = {"PATH": "/usr/bin:/bin", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(["git", *args], cwd=root, check=True, env=env)
    code = CodeRepo(root / ".git", "", own=False)
    base = code.resolve("HEAD")
    worktree = tmp_path / "wt"
    code.add_worktree(worktree, base)
    return code, base, worktree


def checked(repo, change) -> tuple[list[dict], list[dict], list]:
    code, base, worktree = repo
    change(worktree)
    tree = patch.stage(code, worktree)
    changes = patch.read_changes(code, base, tree)
    violations, flags = diffguard.check(changes, RULES)
    return violations, flags, changes


def rules_of(violations: list[dict]) -> set[str]:
    return {v["rule"] for v in violations}


def test_globs_cross_folders_only_with_two_stars():
    assert matches("model/a/b.py", ["model/**"]) and matches("model/b.py", ["model/*.py"])
    assert not matches("model/a/b.py", ["model/*.py"]) and not matches("train.pyc", ["train.py"])
    assert matches("src/x/train.py", ["**/train.py"]) and matches("train.py", ["**/train.py"])
    assert matches("data/holdout/val.npz", ["data/holdout"])  # a folder covers what is inside it


def test_an_allowed_edit_passes_with_git_own_line_counts(repo):
    violations, flags, changes = checked(repo, lambda w: (w / "model/net.py").write_text("W = 2\nB = 0\n"))
    assert violations == [] and flags == []
    assert [(c.path, c.status, c.added, c.removed) for c in changes] == [("model/net.py", "M", 2, 1)]


@pytest.mark.parametrize(("path", "rule", "words"), [
    ("evaluate.py", "protected", "sealed evaluator"),
    ("data/train.csv", "protected", "code_mode.protected"),
    ("pyproject.toml", "protected", "dependency manifest"),
    ("notes.txt", "allow_list", "not in code_mode.files"),
])
def test_a_change_outside_the_allow_list_or_to_a_protected_file_is_rejected(repo, path, rule, words):
    violations, _, _ = checked(repo, lambda w: (w / path).write_text("changed\n"))
    assert rules_of(violations) == {rule} and words in violations[0]["message"] and path in violations[0]["message"]


def test_git_files_and_the_workflow_are_protected_even_when_allowed(repo):
    rules = diffguard.Rules(**{**RULES.__dict__, "allowed": ("**",)})
    for path in (".gitignore", ".github/workflows/ci.yml", "Snakefile", "rules/loop.smk", "requirements-dev.txt"):
        assert diffguard.protection(path, rules), path
    assert diffguard.protection("model/net.py", rules) is None


def test_symlinks_mode_changes_binaries_and_sealed_paths_are_rejected(repo):
    def change(w: Path):
        os.symlink("/etc/passwd", w / "model/link.py")
        (w / "train.py").chmod(0o755)
        (w / "model/blob.py").write_bytes(b"\x00\x01\x02binary\x00")
        (w / "data/holdout").mkdir(parents=True)
        (w / "data/holdout/val.csv").write_text("leak\n")

    violations, _, _ = checked(repo, change)
    assert {"symlink", "mode", "binary", "protected"} <= rules_of(violations)
    assert any("data/holdout/val.csv" in v["message"] and "sealed" in v["message"] for v in violations)


def test_a_rename_out_of_the_allow_list_is_rejected_at_its_new_end(repo):
    violations, _, changes = checked(repo, lambda w: (w / "model/net.py").rename(w / "net_copy.py"))
    assert [(c.status, c.old_path, c.path) for c in changes] == [("R", "model/net.py", "net_copy.py")]
    assert rules_of(violations) == {"allow_list"} and "net_copy.py" in violations[0]["message"]


def test_an_empty_or_oversized_patch_is_rejected(repo):
    violations, _, _ = checked(repo, lambda w: None)
    assert rules_of(violations) == {"empty"}
    violations, _, _ = checked(repo, lambda w: (w / "model/big.py").write_text("x = 1\n" * 25))
    assert rules_of(violations) == {"size"} and "25 lines" in violations[0]["message"]


def test_a_hard_coded_searched_hyperparameter_is_flagged_not_rejected(repo):
    violations, flags, _ = checked(repo, lambda w: (w / "train.py").write_text(TRAIN.replace('hp["lr"]', "0.01")))
    assert violations == []
    assert [f["key"] for f in flags] == ["lr"] and "0.01" in flags[0]["message"]
    _, flags, _ = checked(repo, lambda w: (w / "train.py").write_text(TRAIN.replace('range(hp["epochs"])', "range(3)")))
    assert [f["key"] for f in flags] == ["epochs"] and "stops reading" in flags[0]["message"]


def test_an_llm_diff_is_applied_with_sloppy_hunk_counts_and_a_bad_one_says_why(repo):
    code, base, worktree = repo
    sloppy = "--- a/model/net.py\n+++ b/model/net.py\n@@ -1,9 +1,9 @@\n-W = 1\n+W = 3\n"  # counts are wrong
    patch.apply_diff(code, worktree, patch.extract_diff(f"Here is my change:\n```diff\n{sloppy}```\nDone."))
    assert (worktree / "model/net.py").read_text() == "W = 3\n"
    with pytest.raises(PatchError, match="does not apply"):
        patch.apply_diff(code, worktree, "--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-no such line\n+x\n")
    with pytest.raises(PatchError, match="not a unified diff: it needs `--- a/<path>`"):
        patch.apply_diff(code, worktree, "<a unified diff: --- a/<path> and +++ b/<path> headers, @@ hunks>")
    with pytest.raises(PatchError, match="no unified diff"):
        patch.apply_diff(code, worktree, patch.extract_diff("I would rather not."))
