"""What the loop's steps ask of code mode for a run (the trainer's part is autopilot.train.sandboxed).

  * guard: the code in proposal.json is verified against git itself (the commit exists, its tree is the one
    named, its diff against the base is the diff recorded, the diff guard passes it again, its last attempt passed
    the checks, and an approval it needs was given) before config.json names it;
  * train: the run's checkout goes when its seeds are done (`finish_run`);
  * journal: the history line's `code` (`entry_code`), and a run that becomes the champion makes its tree the code
    line (autopilot.code.history.take).

Usage:
    violations, code = verify(study, proposal)          # guard
    follow_champion(study, entry, best)                 # journal
"""

from __future__ import annotations

import logging

from autopilot.code import diffguard, history, patch
from autopilot.code.repo import open_repo
from autopilot.paths import RunPaths
from autopilot.study import Study

log = logging.getLogger(__name__)


def violation(key: str, value, rule: str, message: str) -> dict:
    """A broken rule, as the guard records them (autopilot.guard.violation; not imported: the guard imports this)."""
    return {"key": key, "value": value, "rule": rule, "message": message}


def verify(study: Study, proposal: dict) -> tuple[list[dict], dict | None]:
    """The guard's check of a proposal's code; its violations and config.json's `code` block."""
    code = proposal.get("code")
    if code is None:
        return [violation("code", None, "code", "code mode is on but the proposal names no code: propose the "
                                                      "run again (autopilot propose)")], None
    repo = open_repo(study)
    found = []
    for name in ("base_commit", "commit"):
        if not repo.exists(code[name]):
            found.append(violation(f"code.{name}", code[name], "code", f"commit {code[name][:12]} is not in "
                                         f"the repository {repo.git_dir}"))
    if found:
        return found, None
    if repo.tree_of(code["commit"]) != code["tree"]:
        found.append(violation("code.tree", code["tree"], "code", "the commit's tree is not the one recorded"))
    if not code["patched"]:
        if code["commit"] != code["base_commit"]:
            found.append(violation("code.commit", code["commit"], "code", "an unpatched run must train its base"))
    else:
        found += verify_patch(study, repo, proposal, code)
    block = {"commit": code["commit"], "tree": code["tree"], "base_commit": code["base_commit"],
             "patched": code["patched"]}
    return found, block


def verify_patch(study: Study, repo, proposal: dict, code: dict) -> list[dict]:
    changes = patch.read_changes(repo, code["base_commit"], code["commit"])
    found, _ = diffguard.check(changes, diffguard.Rules.for_study(study, repo.prefix))
    if patch.diff_text(repo, code["base_commit"], code["commit"]) != code["diff"]:
        found.append(violation("code.diff", None, "code", "the diff in proposal.json is not the diff between "
                                                                "its base and its commit"))
    if not code["attempts"] or code["attempts"][-1]["outcome"] != "accepted":
        found.append(violation("code.attempts", None, "code", "the patch's last attempt did not pass its checks"))
    if study.settings.code_mode.approval == "required" and proposal["policy"] != "code:approved":
        found.append(violation("code", None, "approval", "code_mode.approval is required and this patch was not "
                                                               "approved (autopilot approve RUN)"))
    return found


def finish_run(study: Study, run: RunPaths) -> None:
    """After the run's seeds: its checkout goes (the commit keeps the code)."""
    if run.worktree.exists():
        open_repo(study).remove_worktree(run.worktree)


def entry_code(run_config: dict, proposal: dict) -> dict | None:
    """history.jsonl's `code` of a run: the version it trained, and what its patch was."""
    code = run_config.get("code")
    if code is None:
        return None
    recorded = proposal.get("code") or {}
    return {"commit": code["commit"], "tree": code["tree"], "patched": code["patched"],
            "diff_lines": recorded.get("diff_lines", 0), "files": recorded.get("files", []),
            "flags": [f["message"] for f in recorded.get("flags", [])]}


def follow_champion(study: Study, entry: dict, best: dict | None) -> None:
    """When the journaled run is the new champion, its code becomes the code line (later runs branch from it)."""
    if best is None or best["run_id"] != entry["run_id"] or not entry.get("code"):
        return
    repo = open_repo(study)
    tip = history.take(repo, study, entry["code"]["commit"], f"{study.name} run {entry['run_id']} is the champion "
                       f"({entry['verdict']}): its code becomes the code line")
    log.info("code line of %s: %s (run %s)", study.name, tip[:12], entry["run_id"])
