"""One code run's patch: ask the coder, apply, guard, check, and send failures back, up to code_mode.max_attempts.

Each attempt gets a fresh worktree of the code line (runs/<study>/<run>/code/attempt-k/tree). The coder's diff is
applied there (or the agent CLI edits it), the result is staged and read back as git sees it, and committed on the
branch autopilot/<study> whatever happens next, so every attempt is kept. Then:
  * the diff guard rejects it (a protected file, outside the allow-list, too big...): final, the fallback proposes;
  * it does not apply, its rationale is too thin, or a check fails (compile, tests, smoke run): the error tail goes
    back to the coder for the next attempt;
  * it passes: it trains, or, with `code_mode.approval: required`, it is parked in pending/ and the run trains a
    config proposal meanwhile.
An approved patch waiting in pending/ is taken first by the next code run (no LLM asked): applied to the code line as
it is then and checked again.

The loop lives here, with the proposing; what it uses (worktrees, the diff guard, checks, history, approval) is
autopilot.code.

Usage:
    outcome = propose_patch(ctx, audit)    # Outcome(proposal or None, violations, rejected, line)
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from autopilot import fsio, guard
from autopilot.clock import now_iso
from autopilot.code import approval, checks, diffguard, history, patch
from autopilot.code.globs import matches
from autopilot.code.repo import CodeRepo, open_repo
from autopilot.errors import PatchError
from autopilot.propose import prompt
from autopilot.propose.llm import LLMFailure
from autopilot.propose.llm.audit import Audit
from autopilot.propose.policies import Context
from autopilot.propose.policies import code as coder
from autopilot.train import adapter

log = logging.getLogger(__name__)

FILE_CHARS = 8000  # of one allow-listed file shown to the coder
MESSAGE_DIFF_CHARS = 20000  # of a diff that did not apply, kept in its attempt's commit message
EMPTY_HOUSEKEEPING = {"new_todos": [], "notes": "", "resolved_todos": []}


@dataclass
class Outcome:
    proposal: dict | None  # the code run's proposal, when a patch passed
    violations: list[dict] = field(default_factory=list)  # why no patch trains (the fallback proposes)
    rejected: dict | None = None  # the last patch proposal that did not pass, with its violations
    line: dict | None = None  # the code line as it is: what a fallback config run trains


@dataclass
class Step:
    record: dict  # the attempt, as proposal.code.attempts lists it
    proposal: dict | None = None
    violations: list[dict] = field(default_factory=list)
    feedback: str = ""  # for the coder's next attempt; empty: no next attempt
    final: bool = False
    tried: dict | None = None  # the patch proposal that did not pass (kept as rejected_proposal.json)


def line_record(repo: CodeRepo, base: str) -> dict:
    """proposal.code of a run that trains the code line as it is."""
    tree = repo.tree_of(base)
    return {"base_commit": base, "base_tree": tree, "commit": base, "tree": tree, "patched": False, "diff": "",
            "diff_lines": 0, "files": [], "flags": [], "source": None, "attempts": []}


def propose_patch(ctx: Context, audit: Audit) -> Outcome:
    study = ctx.study
    repo = open_repo(study)
    if audit.folder is None:
        return preview(ctx, repo, audit)
    base = history.line_tip(repo, study)
    line = line_record(repo, base)
    approved = approval.next_approved(study)
    if approved is not None:
        return use_approved(ctx, repo, line, approved)
    attempts: list[dict] = []
    feedback = ""
    step = None
    for k in range(1, study.settings.code_mode.max_attempts + 1):
        step = one_attempt(ctx, repo, line, k, feedback, audit)
        attempts.append(step.record)
        if step.proposal is not None or step.final:
            break
        feedback = step.feedback
    return finish(ctx, line, attempts, step)


def preview(ctx: Context, repo: CodeRepo, audit: Audit) -> Outcome:
    """A dry run (propose --dry-run): the coder's prompt, nothing asked, applied, committed or checked; the config
    proposal that stands in for the patch is what the dry run shows."""
    study = ctx.study
    line = line_record(repo, history.line_tip(repo, study, create=False))
    text = prompt.coder_prompt(ctx, files_text(repo, line["base_commit"], study), rules_text(study), "",
                               agent=study.settings.llm.backend == "command")
    audit.record("coder-1", text, "(not asked in a dry run: a patch is applied, committed and checked, which a dry "
                                  "run does not do)", {"status": "skipped", "latency_seconds": None})
    why = guard.violation("(code)", None, "dry_run", "a dry run shows the coder's prompt only; the config proposal "
                                                     "below stands in for the patch")
    return Outcome(None, [why], None, line)


def finish(ctx: Context, line: dict, attempts: list[dict], step: Step) -> Outcome:
    if step.proposal is not None:
        step.proposal["code"]["attempts"] = attempts
        if ctx.study.settings.code_mode.approval == "required" and step.proposal["policy"] != "code:approved":
            return park(ctx, line, step.proposal)
        return Outcome(step.proposal, line=line)
    reason = f"{len(attempts)} attempt(s) did not pass: {step.record['reason']}"
    violations = step.violations or [guard.violation("(code)", None, "checks", reason)]
    rejected = None
    if step.tried is not None:
        rejected = guard.json_safe({**step.tried, "code": {**step.tried["code"], "attempts": attempts},
                                    "violations": violations})
    return Outcome(None, violations, rejected, {**line, "attempts": attempts})


def park(ctx: Context, line: dict, proposal: dict) -> Outcome:
    approval.park(ctx.study, ctx.run_id, proposal["code"], proposal)
    proposal["code"]["attempts"][-1].update(outcome="parked", reason="waits for a person: code_mode.approval is "
                                                                     "required")
    path = ctx.study.paths.pending_record(ctx.run_id)
    violation = guard.violation("(code)", None, "approval",
                                f"the patch passed its checks and waits for `autopilot approve {ctx.run_id}` ({path})")
    return Outcome(None, [violation], {**proposal, "violations": [violation]},
                   {**line, "attempts": proposal["code"]["attempts"]})


def one_attempt(ctx: Context, repo: CodeRepo, line: dict, k: int, feedback: str, audit: Audit) -> Step:
    study, run = ctx.study, ctx.study.paths.run(ctx.run_id)
    folder = run.attempt_dir(k)
    worktree = folder / "tree"
    tree = repo.add_worktree(worktree, line["base_commit"])
    try:
        text = prompt.coder_prompt(ctx, files_text(repo, line["base_commit"], study), rules_text(study), feedback,
                                   agent=study.settings.llm.backend == "command")
        try:
            answer = ask(ctx, text, tree, worktree, folder, audit, f"coder-{k}")
        except LLMFailure as e:
            return failed_answer(ctx, repo, line, k, e)
        return judge_attempt(ctx, repo, line, k, worktree, tree, answer)
    finally:
        repo.remove_worktree(worktree)


def ask(ctx: Context, text: str, tree, worktree, folder, audit: Audit, role: str) -> dict:
    if ctx.study.settings.llm.backend == "command":
        return coder.run_agent(ctx, text, tree, worktree, folder, audit, role)
    answer = coder.ask_for_diff(ctx, text, audit, role)
    fsio.atomic_write_text(folder / "answer.diff", answer["diff"])
    try:
        patch.apply_diff(open_repo(ctx.study), worktree, answer["diff"])
    except PatchError as e:
        answer["apply_error"] = str(e)
    return answer


def failed_answer(ctx: Context, repo: CodeRepo, line: dict, k: int, e: LLMFailure) -> Step:
    """An answer that could not be had or read: an unreadable one goes back to the coder, a dead LLM ends the run's
    attempts."""
    commit = history.commit_attempt(repo, ctx.study, line["base_tree"], line["base_commit"],
                                    attempt_message(ctx, k, "failed", str(e), "", ""))
    record = attempt_record(k, commit, "failed", f"{e.kind}: {e}", None)
    repairable = e.kind in ("invalid_json", "invalid_answer")
    feedback = f"Your previous answer could not be used: {e}" if repairable else ""
    return Step(record, violations=[guard.violation("(llm)", None, e.kind, str(e))], feedback=feedback,
                final=not repairable)


def judge_attempt(ctx: Context, repo: CodeRepo, line: dict, k: int, worktree, tree, answer: dict) -> Step:
    study = ctx.study
    base = line["base_commit"]
    if answer.get("apply_error"):
        reason = answer["apply_error"]
        body = answer["diff"][:MESSAGE_DIFF_CHARS]
        commit = history.commit_attempt(repo, study, line["base_tree"], base,
                                        attempt_message(ctx, k, "does_not_apply", reason, answer, body))
        return Step(attempt_record(k, commit, "does_not_apply", reason, None),
                    violations=[guard.violation("(code)", None, "does_not_apply", reason)],
                    feedback=f"{reason}\n\nYour diff was:\n{fenced(answer['diff'])}\nWrite it again against the files "
                             "exactly as shown above.")
    staged = patch.stage(repo, worktree)
    changes = patch.read_changes(repo, base, staged)
    diff = patch.diff_text(repo, base, staged)
    fsio.atomic_write_text(ctx.study.paths.run(ctx.run_id).attempt_dir(k) / "patch.diff", diff)
    violations, flags = diffguard.check(changes, diffguard.Rules.for_study(study, repo.prefix))
    code = {**line, "commit": None, "tree": staged, "patched": True, "diff": diff,
            "diff_lines": patch.changed_lines(changes), "files": sorted(repo.to_project(c.path) or c.path
                                                                        for c in changes), "flags": flags,
            "source": f"llm:{study.settings.llm.backend}"}
    proposal = code_proposal(ctx, coder.label(ctx), answer, code)
    outcome, reason = "accepted", None
    if violations:
        outcome, reason = "rejected", "; ".join(v["message"] for v in violations)
    quality = guard.quality_problems(proposal)
    if not violations and quality:
        outcome, reason = "rejected", "; ".join(v["message"] for v in quality)
    result = None
    if outcome == "accepted":
        config = guard.build_config(study, proposal)

        def trainer_argv(config_path: str, run_dir: str) -> list[str]:
            return adapter.trainer_argv(study.settings.trainer, config, config_path, run_dir)

        result = checks.run_checks(study, ctx.study.paths.run(ctx.run_id), k, tree, config, code["files"],
                                   trainer_argv)
        record_sandbox(ctx, k, result.sandbox)
        if not result.ok:
            outcome, reason = "checks_failed", f"the {result.failed} check failed: {result.tail[-1500:]}"
    commit = history.commit_attempt(repo, study, staged, base, attempt_message(ctx, k, outcome, reason, answer, ""))
    code["commit"] = commit
    record = attempt_record(k, commit, outcome, reason, code["diff_lines"], result.checks if result else [])
    if outcome == "accepted":
        return Step(record, proposal=proposal)
    if violations:  # the guard's rejection is final: the fallback proposes
        return Step(record, violations=violations, final=True, tried=proposal)
    if quality:
        return Step(record, violations=quality, tried=proposal, feedback="The guard rejected your rationale or "
                    f"hypothesis: {reason}\n\nYour patch was:\n{fenced(diff)}\nSend it again with a real rationale "
                    "and hypothesis.")
    return Step(record, violations=[guard.violation("(code)", None, f"checks:{result.failed}", reason)],
                tried=proposal,
                feedback=f"The patch applied, but the {result.failed} check failed:\n{fenced(result.tail)}\n\nYour "
                         f"patch was:\n{fenced(diff)}\nFix it: send a new diff against the files as shown above.")


def use_approved(ctx: Context, repo: CodeRepo, line: dict, record: dict) -> Outcome:
    """Train a patch a person approved: applied to the code line as it is now and checked again."""
    study = ctx.study
    folder = study.paths.run(ctx.run_id).attempt_dir(1)
    worktree = folder / "tree"
    tree = repo.add_worktree(worktree, line["base_commit"])
    approval.mark_used(study, record["run_id"], ctx.run_id)
    answer = {"rationale": record["rationale"], "hypothesis": record["hypothesis"],
              "diff": approval.diff_of(study, record["run_id"])}
    try:
        patch.apply_diff(repo, worktree, answer["diff"])
    except PatchError as e:
        answer["apply_error"] = f"the approved patch of run {record['run_id']} no longer applies: {e}"
    try:
        step = judge_attempt(ctx, repo, line, 1, worktree, tree, answer)
    finally:
        repo.remove_worktree(worktree)
    if step.proposal is not None:
        step.proposal["policy"] = "code:approved"
        step.proposal["code"]["source"] = f"approved:{record['run_id']}"
        step.proposal["rationale"] = (f"Approved by {record['decided_by']} at {record['decided_at']} (patch of run "
                                      f"{record['run_id']}). " + record["rationale"])[:4000]
    step.final = True
    return finish(ctx, line, [step.record], step)


def code_proposal(ctx: Context, policy: str, answer: dict, code: dict) -> dict:
    """A patch proposal: the champion's hyperparameters (only the code changes), the coder's reasons."""
    return {"run_id": ctx.run_id, "policy": policy, "overrides": dict((ctx.best or {}).get("overrides") or {}),
            "rationale": answer["rationale"], "hypothesis": answer["hypothesis"],
            "housekeeping": dict(EMPTY_HOUSEKEEPING), "mentor": None, "fallback_from": None, "created_at": now_iso(),
            "code": code}


def attempt_record(k: int, commit: str | None, outcome: str, reason: str | None, lines: int | None,
                   checks_done: list | None = None) -> dict:
    return {"attempt": k, "commit": commit, "outcome": outcome, "reason": None if reason is None else reason[:4000],
            "diff_lines": lines, "checks": checks_done or []}


def attempt_message(ctx: Context, k: int, outcome: str, reason: str | None, answer, body: str) -> str:
    hypothesis = (answer or {}).get("hypothesis", "") if isinstance(answer, dict) else ""
    text = f"{ctx.study.name} run {ctx.run_id} attempt {k}: {outcome}\n\n"
    if hypothesis:
        text += f"Hypothesis: {hypothesis[:1000]}\n"
    if isinstance(answer, dict) and answer.get("rationale"):
        text += f"Rationale: {answer['rationale'][:2000]}\n"
    if reason:
        text += f"\n{reason[:3000]}\n"
    if body:
        text += f"\nThe diff that did not apply:\n{body}\n"
    return text


def record_sandbox(ctx: Context, k: int, reports: dict) -> None:
    """Add the checks' sandbox reports to the run's sandbox.json."""
    run = ctx.study.paths.run(ctx.run_id)
    current = fsio.read_json(run.sandbox) if run.sandbox.exists() else {}
    current.update({f"attempt-{k}/{name}": report for name, report in reports.items()})
    fsio.atomic_write_json(run.sandbox, current)


def fenced(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text.rstrip()}\n{fence}"


def files_text(repo: CodeRepo, commit: str, study) -> str:
    """The allow-listed files at `commit` (read from git), each in a fenced block (long ones cut, and said so)."""
    listed = repo.git("ls-tree", "-r", "-z", "--name-only", "--full-tree", commit).split("\0")
    rules = study.settings.code_mode.files
    shown = []
    for path in sorted(p for p in listed if p):
        rel = repo.to_project(path)
        if rel is None or not matches(rel, rules):
            continue
        text = repo.git("show", f"{commit}:{path}")
        cut = "" if len(text) <= FILE_CHARS else f"\n... ({len(text) - FILE_CHARS} more characters not shown)"
        shown.append(f"### {rel}\n{fenced(text[:FILE_CHARS] + cut)}")
    globs = ", ".join(rules)
    return "\n\n".join(shown) + f"\n\nYou may also add new files matching: {globs}." if shown else \
        f"(no file matches code_mode.files yet: {globs}; you may add them)"


def rules_text(study) -> str:
    code = study.settings.code_mode
    evaluator = ", ".join(diffguard.evaluator_files(study)) or "its files"
    return "\n".join([
        f"- Change only files matching: {', '.join(code.files)}. Everything else is rejected.",
        f"- Never touch the sealed evaluator ({evaluator}), data ({', '.join(code.protected) or 'none'}), sealed "
        "paths, .git*, dependency manifests or the workflow files.",
        f"- At most {code.max_patch_lines} changed lines (added plus removed). No binary files, symlinks, renames out "
        "of the allowed files, or mode changes.",
        "- Keep the trainer contract: read the hyperparameters from the run's config, call run.step(step, loss=...) "
        "every step, and save the model as the evaluator expects. Do not hard-code hyperparameters.",
        f"- Before it trains, the patch must compile, pass the study's tests and train {code.smoke_steps} steps with "
        "a finite loss.",
    ])
