"""The guard of a patch: deny by default, like the guard of a config.

A patch may change, add or delete only files the study's allow-list (`code_mode.files`) names, and never a protected
one: the sealed evaluator's files, the sealed paths, anything under `.git*`, dependency manifests (a patch must not
install packages), the workflow itself (Snakefile, rules/, schemas/, config/, profiles/), and `code_mode.protected`
(data). It may not make a symlink, a submodule, a binary file or a mode change; a rename or copy must stay inside
the allow-list at both ends; it must change something and stay under `code_mode.max_patch_lines`. Rejections are
violations like the config guard's (key, value, rule, message). A hunk that hard-codes a searched hyperparameter (it
assigns a literal to `lr`, or stops reading `lr` from the hyperparameters) is flagged, not rejected: it is recorded,
and the labbook shows it, because the optimizer's value for that key would be silently ignored.

Usage:
    violations, flags = check(changes, rules)     # changes: autopilot.code.patch.read_changes(...)
    rules = Rules.for_study(study, repo.prefix)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from autopilot.code.globs import matches
from autopilot.code.patch import SUBMODULE, SYMLINK, FileChange, changed_lines
from autopilot.study import Study

MANIFESTS = re.compile(r"^(pyproject\.toml|setup\.py|setup\.cfg|requirements[^/]*\.(txt|in)|constraints[^/]*\.txt|"
                       r"Pipfile(\.lock)?|poetry\.lock|uv\.lock|pdm\.lock|environment[^/]*\.ya?ml|conda[^/]*\.ya?ml|"
                       r"package(-lock)?\.json|yarn\.lock|pnpm-lock\.yaml|Cargo\.(toml|lock)|go\.(mod|sum)|"
                       r"Gemfile(\.lock)?|MANIFEST\.in|tox\.ini|noxfile\.py|Dockerfile[^/]*)$")
WORKFLOW = ("Snakefile", "rules/**", "schemas/**", "config/**", "profiles/**", "**/*.smk")
REGULAR_MODES = {"100644", "000000"}  # a plain file, or none (added / deleted)


@dataclass(frozen=True)
class Rules:
    allowed: tuple[str, ...]
    evaluator: tuple[str, ...]
    sealed: tuple[str, ...]
    protected: tuple[str, ...]
    max_lines: int
    prefix: str  # the project root inside the repository
    searched: tuple[str, ...]  # the search space's keys

    @classmethod
    def for_study(cls, study: Study, prefix: str) -> Rules:
        code = study.settings.code_mode
        return cls(code.files, evaluator_files(study), code.sealed, code.protected, code.max_patch_lines, prefix,
                   tuple(study.search_space))


def evaluator_files(study: Study) -> tuple[str, ...]:
    """The sealed evaluator's code: `evaluator.files`, or the project files its command names."""
    evaluator = study.settings.code_mode.evaluator
    if evaluator.files:
        return evaluator.files
    root = study.project.root
    return tuple(arg for arg in evaluator.command or () if "{" not in arg and (root / arg).is_file())


def violation(path: str, rule: str, message: str) -> dict:
    return {"key": path, "value": None, "rule": rule, "message": message}


def protection(path: str, rules: Rules) -> str | None:
    """Why a project path may never change, or None."""
    name = PurePosixPath(path).name
    if matches(path, rules.evaluator):
        return "the sealed evaluator's code"
    if matches(path, rules.sealed):
        return "a sealed path (code_mode.sealed)"
    if any(part.startswith(".git") for part in PurePosixPath(path).parts):
        return "git's own files (.git*)"
    if MANIFESTS.match(name):
        return "a dependency manifest (a patch may not install packages)"
    if matches(path, WORKFLOW):
        return "the workflow itself (Snakefile, rules/, schemas/, config/, profiles/)"
    if matches(path, rules.protected):
        return "protected by code_mode.protected"
    return None


def path_problem(repo_path: str, rules: Rules, what: str) -> dict | None:
    if not repo_path.startswith(rules.prefix):
        return violation(repo_path, "outside", f"{what} {repo_path} lies outside the project")
    path = repo_path[len(rules.prefix):]
    why = protection(path, rules)
    if why:
        return violation(path, "protected", f"{what} {path} is {why}: no patch may touch it")
    if not matches(path, rules.allowed):
        return violation(path, "allow_list", f"{what} {path} is not in code_mode.files ({list(rules.allowed)})")
    return None


def change_problems(c: FileChange, rules: Rules) -> list[dict]:
    found = [p for p in (path_problem(c.path, rules, "file"),
                         c.old_path and path_problem(c.old_path, rules, "renamed or copied from")) if p]
    path = c.path.removeprefix(rules.prefix)
    if SYMLINK in (c.old_mode, c.new_mode):
        found.append(violation(path, "symlink", f"{path}: symlinks may not be made or changed by a patch"))
    elif SUBMODULE in (c.old_mode, c.new_mode):
        found.append(violation(path, "submodule", f"{path}: submodules may not be changed by a patch"))
    elif c.new_mode not in REGULAR_MODES or (c.status in "MT" and c.old_mode != c.new_mode):
        found.append(violation(path, "mode", f"{path}: mode {c.old_mode} -> {c.new_mode}; a patch may not change "
                                             "file modes (executable bits)"))
    if c.binary:
        found.append(violation(path, "binary", f"{path}: binary content may not be patched"))
    return found


def check(changes: list[FileChange], rules: Rules) -> tuple[list[dict], list[dict]]:
    """The patch's violations (it may not run) and flags (it may, recorded)."""
    if not changes:
        return [violation("(patch)", "empty", "the patch changes nothing")], []
    found = [v for c in changes for v in change_problems(c, rules)]
    lines = changed_lines(changes)
    if lines > rules.max_lines:
        found.append(violation("(patch)", "size", f"the patch changes {lines} lines, over code_mode.max_patch_lines="
                                                  f"{rules.max_lines}"))
    return found, hardcoded(changes, rules)


def hardcoded(changes: list[FileChange], rules: Rules) -> list[dict]:
    """Flags: a searched hyperparameter assigned a literal, or read no more, by the patch."""
    flags = []
    for key in rules.searched:
        k = re.escape(key)
        assign = re.compile(rf"""(?<![\w.])['"]?{k}['"]?\s*[:=]\s*[-+]?(\d|\.\d)""")
        read = re.compile(rf"""\[\s*['"]{k}['"]\s*\]|\.get\(\s*['"]{k}['"]|\.{k}\b|['"]{k}['"]""")
        plus = [line for c in changes for line in c.added_lines]
        minus = [line for c in changes for line in c.removed_lines]
        hit = next((line for line in plus if assign.search(line)), None)
        if hit is not None:
            flags.append({"key": key, "rule": "hardcoded", "line": hit.strip()[:200],
                          "message": f"the patch assigns a literal to the searched hyperparameter `{key}`: "
                                     f"{hit.strip()[:120]!r}; the optimizer's value may be ignored"})
        elif any(read.search(line) for line in minus) and not any(read.search(line) for line in plus):
            flags.append({"key": key, "rule": "hardcoded", "line": None,
                          "message": f"the patch stops reading the searched hyperparameter `{key}`; the optimizer's "
                                     "value may be ignored"})
    return flags
