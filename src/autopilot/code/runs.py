"""What the loop's steps do for a run of a code-mode study: the guard checks its code, the trainer runs it
sandboxed from its checkout with the sealed evaluator after it, and the journal moves the code line.

  * guard: the code in proposal.json is verified against git itself (the commit exists, its tree is the one
    named, its diff against the base is the diff recorded, the diff guard passes it again, and an approval it
    needs was given) before config.json names it;
  * train: each seed's trainer runs from runs/<study>/<run>/code/tree in the sandbox (never the warm pool); when it
    completed, the sealed evaluator scores what it saved. What counts is kept where no trainer can write
    (code/evaluations/seed-k.json): a run resumed later trusts that, not files in a trainer's folder;
  * journal: a run that becomes the champion makes its tree the code line (autopilot.code.history.take).

Usage:
    violations, code = verify(study, proposal)          # guard
    summary = train_seed(study, run, config, k)         # runner, for a config with `code`
    follow_champion(study, entry, best)                 # journal
"""

from __future__ import annotations

import logging

from autopilot import fsio, guard, schemas
from autopilot.code import checkout, diffguard, evaluate, history, patch, sandbox
from autopilot.code.repo import open_repo
from autopilot.enums import RunStatus
from autopilot.paths import RunPaths, control_file
from autopilot.study import Study

log = logging.getLogger(__name__)


def verify(study: Study, proposal: dict) -> tuple[list[dict], dict | None]:
    """The guard's check of a proposal's code; its violations and config.json's `code` block."""
    code = proposal.get("code")
    if code is None:
        return [guard.violation("code", None, "code", "code mode is on but the proposal names no code: propose the "
                                                      "run again (autopilot propose)")], None
    repo = open_repo(study)
    found = []
    for name in ("base_commit", "commit"):
        if not repo.exists(code[name]):
            found.append(guard.violation(f"code.{name}", code[name], "code", f"commit {code[name][:12]} is not in "
                                         f"the repository {repo.git_dir}"))
    if found:
        return found, None
    if repo.tree_of(code["commit"]) != code["tree"]:
        found.append(guard.violation("code.tree", code["tree"], "code", "the commit's tree is not the one recorded"))
    if not code["patched"]:
        if code["commit"] != code["base_commit"]:
            found.append(guard.violation("code.commit", code["commit"], "code", "an unpatched run must train its base"))
    else:
        found += verify_patch(study, repo, proposal, code)
    block = {"commit": code["commit"], "tree": code["tree"], "base_commit": code["base_commit"],
             "patched": code["patched"]}
    return found, block


def verify_patch(study: Study, repo, proposal: dict, code: dict) -> list[dict]:
    changes = patch.read_changes(repo, code["base_commit"], code["commit"])
    found, _ = diffguard.check(changes, diffguard.Rules.for_study(study, repo.prefix))
    if patch.diff_text(repo, code["base_commit"], code["commit"]) != code["diff"]:
        found.append(guard.violation("code.diff", None, "code", "the diff in proposal.json is not the diff between "
                                                                "its base and its commit"))
    if not code["attempts"] or code["attempts"][-1]["outcome"] != "accepted":
        found.append(guard.violation("code.attempts", None, "code", "the patch's last attempt did not pass its checks"))
    if study.settings.code_mode.approval == "required" and proposal["policy"] != "code:approved":
        found.append(guard.violation("code", None, "approval", "code_mode.approval is required and this patch was not "
                                                               "approved (autopilot approve RUN)"))
    return found


def trusted_record(run: RunPaths, k: int):
    return run.code_dir / "evaluations" / f"seed-{k}.json"


def train_seed(study: Study, run: RunPaths, config: dict, k: int) -> dict:
    """Train seed `k` of a code-mode run from its checkout, in the sandbox, and score it with the sealed evaluator."""
    from autopilot.train import supervisor

    seed_run = run.seed(k)
    kept = trusted_record(run, k)
    if kept.exists():
        summary = fsio.read_json(kept)
        fsio.atomic_write_json(seed_run.summary, summary)  # what a trainer wrote there since does not count
        log.info("run %s seed %d already trained and evaluated (%s)", run.id, k, summary["status"])
        return summary
    root = study.project.root
    tree = checkout.ensure_checkout(study, run, config["code"]["commit"])
    argv = checkout.in_checkout(supervisor.trainer_argv(config, study.settings, seed_run, root), tree, root)
    policy = checkout.trainer_policy(study, run, seed_run, tree)
    reports: list[dict] = []

    def sandboxed(command: list[str]) -> sandbox.Launch:
        launch = sandbox.prepare(command, policy, "trainer")
        reports.append(launch.report)
        return launch

    log.info("run %s seed %d: %s (sandboxed, from %s)", run.id, k, " ".join(argv), tree)
    summary = supervisor.run_trainer(argv, seed_run, config, root, study.settings.budget.max_retries,
                                     sandboxed=sandboxed)
    note_sandbox(run, f"trainer/seed-{k}", reports[-1] if reports else {})
    if summary["status"] == RunStatus.COMPLETED:
        summary = evaluate.evaluate_seed(study, seed_run, config["code"]["base_commit"], summary)
    summary = {**summary, "evaluation": summary.get("evaluation")}
    schemas.validate(summary, "trainer_summary", what=str(seed_run.summary))
    fsio.atomic_write_json(seed_run.summary, summary)
    fsio.atomic_write_json(kept, summary)
    if summary["status"] == RunStatus.SKIPPED:  # the sandboxed trainer saw control/ read-only and left the file
        control_file(study.project.control, "skip").unlink(missing_ok=True)
    return summary


def note_sandbox(run: RunPaths, key: str, report: dict) -> None:
    current = fsio.read_json(run.sandbox) if run.sandbox.exists() else {}
    current[key] = report
    fsio.atomic_write_json(run.sandbox, current)


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
