"""Propose the next run: pick the policy, check its proposal with the guard, fall back when it fails.

Order of precedence: the study's first successful run is the `baseline` (no overrides); a
runs/<study>/next_config.json written by a person is taken next (`manual`); otherwise the study's
`policy`. If that policy fails or its proposal breaks a guard rule, the fallback policy proposes instead
and proposal.json records `fallback_from` with the reason; the rejected proposal is kept beside it.

A run belongs to a generation (`autopilot.workflow.plan`): it is proposed from the history of earlier generations
only, so that every run of a generation sees the same history whatever its siblings have finished, and takes
its own point of the generation's (see `policies.optimizer`). In a generation with no promoted run before it,
its first run trains the baseline and the others are proposed by the policy (the judge compares them with nothing:
one baseline, not k); next_config.json is taken by the generation's first run alone.

The LLM policies (`llm`, `hybrid`) save every exchange in the run's llm/ folder; a due mentor reviews an
LLM proposal that passed the guard (`autopilot.propose.mentor`); the final proposal's housekeeping goes to the
study's workpad and shared TODOs (`autopilot.propose.workpad`).

Usage:
    proposal = propose_run(study, "00007")     # writes runs/<study>/00007/proposal.json
    proposal, exchanges = preview_run(study, "00007")   # the same decision, nothing written
"""

from __future__ import annotations

import dataclasses
import json
import logging
from functools import partial

from autopilot import apikeys, fsio, guard, holds, ledger, schemas
from autopilot.clock import now_iso
from autopilot.enums import CUT_SHORT
from autopilot.errors import ProposalError
from autopilot.formatting import describe_overrides
from autopilot.ingest import claims
from autopilot.journal import record
from autopilot.ledger import Slot
from autopilot.paths import generation_run_id, run_number
from autopilot.propose import mentor, workpad
from autopilot.propose.llm import LLMFailure
from autopilot.propose.llm.audit import Audit
from autopilot.propose.policies import Context, point_of, same_point
from autopilot.study import Study

log = logging.getLogger(__name__)

EMPTY_HOUSEKEEPING = {"new_todos": [], "notes": "", "resolved_todos": []}


def policy_label(ctx: Context, name: str) -> str:
    """The proposal's policy string of a configured policy: `llm` -> `llm:openai`, `hybrid` -> whose turn it is."""
    from autopilot.propose.policies import hybrid, llm

    if name == "llm":
        return llm.label(ctx.study)
    if name == "hybrid":
        return hybrid.label(ctx)
    return name


def policy_function(name: str, audit: Audit | None = None, feedback: str = "", role: str = "worker"):
    """The function of a policy label; the LLM's write their exchanges to `audit` (default: nowhere) under `role`,
    and are told `feedback` (why their previous answer for the run was rejected)."""
    from autopilot.propose.policies import hybrid, llm, manual, optimizer

    if name.startswith("llm:"):
        return partial(llm.propose_llm, audit=audit or Audit(), feedback=feedback, role=role)
    if name.startswith("hybrid:llm:"):
        return partial(hybrid.propose_llm_turn, audit=audit or Audit(), feedback=feedback, role=role)
    functions = {"tpe": optimizer.propose_tpe, "random": optimizer.propose_random, "manual": manual.propose_manual,
                 "hybrid:tpe": hybrid.propose_tpe_turn}
    if name not in functions:
        raise ProposalError(f"unknown policy {name!r}; built in: {sorted(functions)}, llm:<backend>")
    return functions[name]


def baseline_proposal(ctx: Context) -> dict:
    if ctx.study.settings.is_continual:  # no seed protocol: the judge pairs the two models example by example
        return {"overrides": {}, "rationale": "No run has been promoted yet: train the baseline config from the base "
                "model on the head of the queue, and judge it against the base model on every evaluation set.",
                "hypothesis": "Training on the queued data makes the base model better on at least one evaluation "
                              "set without regressing any."}
    noise = ctx.study.settings.judge.noise_seeds
    return {
        "overrides": {},
        "rationale": (f"First successful run of the study: train the baseline exactly as configured, with {noise} "
                      f"extra seeds to measure the seed-to-seed noise every later verdict must clear."),
        "hypothesis": "The baseline trains to a stable metric; its seed spread sets the study's noise floor.",
    }


def complete(raw: dict, run_id: str, policy: str) -> dict:
    """A policy's answer as a full proposal document (missing optional parts filled in)."""
    return {
        "run_id": run_id,
        "policy": policy,
        "overrides": raw.get("overrides", {}),
        "rationale": raw.get("rationale", ""),
        "hypothesis": raw.get("hypothesis", ""),
        "housekeeping": raw.get("housekeeping", EMPTY_HOUSEKEEPING),
        "mentor": raw.get("mentor"),
        "fallback_from": None,
        "created_at": now_iso(),
    }


def attempt(ctx: Context, policy: str, audit: Audit | None = None, feedback: str = "",
            role: str = "worker") -> tuple[dict | None, list[dict]]:
    """Ask one policy; return its proposal (None if it raised) and the guard's violations."""
    fn = baseline_proposal if policy == "baseline" else policy_function(policy, audit, feedback, role)
    try:
        proposal = complete(fn(ctx), ctx.run_id, policy)
    except LLMFailure as e:  # down, slow, unusable answer: the kind (timeout, http_500...) is counted in the journal
        return None, [guard.violation("(llm)", None, e.kind, str(e))]
    except ProposalError as e:
        return None, [guard.violation("(policy)", None, "policy_error", str(e))]
    except Exception as e:  # a bug, or an input nobody foresaw: the fallback proposes, the loop goes on
        return None, [guard.violation("(policy)", None, "policy_crash", crash_report(ctx, policy, e))]
    return proposal, guard.check_proposal(proposal, ctx.study)


def crash_report(ctx: Context, policy: str, error: Exception) -> str:
    """The unexpected error of a policy: logged with its traceback, described by type and message, the values of
    the LLM's key variables redacted from both (an exception may quote a request's headers)."""
    keys = apikeys.key_variables(ctx.study.settings.llm.api_key_env)
    log.error("run %s: policy %s raised an unexpected error:\n%s", ctx.run_id, policy,
              apikeys.redacted_traceback(error, keys))
    return apikeys.redact(f"{policy} raised {type(error).__name__}: {error}", keys)[:2000]


def first_policy(ctx: Context) -> str:
    if ctx.best is None and ctx.index == 0:
        return "baseline"
    if ctx.index == 0 and ctx.study.paths.next_config.exists():
        return "manual"
    code = ctx.study.settings.code_mode
    if code.enabled and run_number(ctx.run_id) % code.every_n_runs == 0:
        return f"code:llm:{ctx.study.settings.llm.backend}"
    return policy_label(ctx, ctx.study.settings.policy)


def propose_run(study: Study, run_id: str, slot: Slot | None = None) -> dict:
    """Write the run's proposal.json; `slot` is the run's generation and place (the workflow's plan passes them),
    else the one its proposal recorded, else a generation of its own after the history."""
    run = study.paths.run(run_id)
    history = record.current_history(study)
    proposal, rejected = decide(study, run_id, history, Audit.for_run(study, run_id), slot)
    if study.settings.data.source == "queue":  # the run's dataset is the head of the queue, claimed now
        if study.settings.is_continual and not run.data_claim.exists():
            from autopilot.continual.start import before_claim

            before_claim(study)  # the champion is exported; a low queue gets a curriculum batch first
        claims.claim_for_run(study.project, run)
    if rejected is not None:
        fsio.atomic_write_json(run.rejected_proposal, rejected)
    if (proposal.get("code") or {}).get("patched"):  # code mode: the patch, readable with `less` and `git apply`
        fsio.atomic_write_text(run.patch, proposal["code"]["diff"])
    fsio.atomic_write_json(run.proposal, proposal)
    workpad.record(study, proposal)
    if "manual" in (proposal["policy"], (proposal["fallback_from"] or {}).get("policy")):
        archive_manual_input(study, run)
    return proposal


def preview_run(study: Study, run_id: str, slot: Slot | None = None) -> tuple[dict, list[dict]]:
    """What propose_run would decide and the LLM exchanges that took, writing nothing (propose --dry-run)."""
    audit = Audit()
    proposal, _ = decide(study, run_id, record.current_history(study), audit, slot)
    return proposal, audit.exchanges


def decide(study: Study, run_id: str, history: list[dict], audit: Audit,
           slot: Slot | None = None) -> tuple[dict, dict | None]:
    """The run's final proposal, and the first policy's if the guard rejected it."""
    holds.ensure_may_run(study, history)
    slot = slot or ledger.slot_of(study.paths.run(run_id), history)
    earlier = ledger.before_generation(history, slot.generation)
    ctx = Context(study, run_id, earlier, ledger.incumbent(earlier, ledger.champion_events(study.models)), slot.index,
                  generation_siblings(study, run_id, slot.index))
    log.info("run %s: generation %d, place %d; %d earlier run(s)", run_id, slot.generation, slot.index, len(earlier))
    policy = first_policy(ctx)
    line, repairs, rejected = None, [], None
    if policy.startswith("code:"):
        from autopilot.propose import patches

        outcome = patches.propose_patch(ctx, audit)
        proposal, violations, rejected, line = outcome.proposal, outcome.violations, outcome.rejected, outcome.line
    else:
        if study.settings.code_mode.enabled:  # config runs train the code line as it is; TPE sees only its runs
            line, ctx = code_line_context(ctx, create=audit.folder is not None)
        proposal, violations, repairs = ask_with_repairs(ctx, policy, audit)
    if violations:
        reason = "; ".join(v["message"] for v in violations)
        fallback = study.settings.fallback_policy
        log.warning("run %s: %s proposal rejected (%s); falling back to %s", run_id, policy, reason, fallback)
        if proposal is not None and rejected is None:
            rejected = guard.json_safe({**proposal, "violations": violations})
        if policy.startswith("code:"):
            _, ctx = code_line_context(ctx, line)
        proposal, second = attempt(ctx, fallback)
        if second:
            raise ProposalError(f"run {run_id}: {policy} was rejected ({reason}) and the fallback {fallback} too: "
                                + "; ".join(v["message"] for v in second))
        proposal["fallback_from"] = {"policy": policy, "reason": reason[:4000], "violations": violations}
    if line is not None and "code" not in proposal:
        proposal["code"] = line
    if repairs:
        proposal["repairs"] = repairs
    proposal.update(generation=slot.generation, generation_index=slot.index)
    schemas.validate(proposal, "proposal")
    return proposal, rejected


def ask_with_repairs(ctx: Context, policy: str, audit: Audit) -> tuple[dict | None, list[dict], list[dict]]:
    """Ask the policy; an LLM whose proposal the guard rejects is asked again with the guard's reasons, up to
    llm.max_attempts answers in all. Returns the proposal, its violations ([] when it passed) and the rejected
    answers before it (each with its violations)."""
    tries = ctx.study.settings.llm.max_attempts if mentor.is_llm_policy(policy) else 1
    repairs: list[dict] = []
    feedback = ""
    for k in range(1, tries + 1):
        role = "worker" if k == 1 else f"worker-{k}"
        proposal, violations = attempt(ctx, policy, audit, feedback, role)
        if not violations and mentor.is_llm_policy(policy):
            violations = duplicates(ctx, proposal)
        if not violations or not repairable(violations) or k == tries:
            break
        repairs.append(guard.json_safe({"attempt": k, "overrides": None if proposal is None else proposal["overrides"],
                                        "violations": violations}))  # NaN and endless numbers are kept as text
        feedback = repair_feedback(ctx, proposal, violations)
        log.info("run %s: the worker's answer %d was rejected (%s); asking again", ctx.run_id, k, feedback)
    if not violations and mentor.is_llm_policy(policy) and mentor.trigger(ctx):
        proposal = mentor.review(ctx, proposal, audit)
        violations = duplicates(ctx, proposal)
    return proposal, violations, repairs


def repair_feedback(ctx: Context, proposal: dict | None, violations: list[dict]) -> str:
    """What the worker is told about its rejected answer: each reason, with the nearest allowed value of a number out
    of its range, and the overrides it proposed."""
    lines = []
    for v in violations:
        space = ctx.study.search_space.get(v["key"])
        hint = ""
        if v["rule"] == "range" and space and isinstance(v["value"], (int, float)):
            nearest = min(max(v["value"], space["low"]), space["high"])
            hint = f" (the nearest allowed value is {nearest})"
        lines.append(f"- {v['message']}{hint}")
    if proposal is not None:
        lines.append(f"- you proposed the overrides {json.dumps(proposal['overrides'])}: propose values that keep "
                     "every rule above")
    return "\n".join(lines)


REPAIRABLE = {"whitelist", "type", "range", "choices", "step", "quality", "duplicate", "schema", "invalid_json",
              "invalid_answer"}


def repairable(violations: list[dict]) -> bool:
    """Whether the worker can fix what it was rejected for (an LLM that is down or slow cannot)."""
    return all(v["rule"] in REPAIRABLE for v in violations)


def code_line_context(ctx: Context, line: dict | None = None, create: bool = True) -> tuple[dict, Context]:
    """The code line (proposal.code of a run that trains it unpatched) and the context of a config proposal on it:
    the history of the runs that trained the same code version (the same tree), the best run always kept. `create`
    false (a dry run): the branch is not made if it does not exist yet."""
    if line is None:
        from autopilot.code import history
        from autopilot.code.repo import open_repo
        from autopilot.propose import patches

        repo = open_repo(ctx.study)
        line = patches.line_record(repo, history.line_tip(repo, ctx.study, create))
    same = [e for e in ctx.history if (e.get("code") or {}).get("tree") == line["tree"]]
    plain = {k: v for k, v in line.items()}
    plain.update(commit=line["base_commit"], tree=line["base_tree"], patched=False, diff="", diff_lines=0, files=[],
                 flags=[], source=None)
    return plain, dataclasses.replace(ctx, history=same)


def generation_siblings(study: Study, run_id: str, index: int) -> tuple[dict, ...]:
    """The proposals already written for the earlier places of the run's generation."""
    out = []
    for k in range(index):
        sibling = study.paths.run(generation_run_id(run_id, index, k))
        proposal = ledger.read_path(sibling.proposal)
        if proposal is not None:
            out.append({"run_id": sibling.id, "policy": proposal["policy"], "overrides": proposal["overrides"]})
    return tuple(out)


def duplicates(ctx: Context, proposal: dict) -> list[dict]:
    """An LLM proposal of a point already trained, or proposed for this generation, wastes a run: rejected."""
    space, baseline = ctx.study.search_space, ctx.study.settings.baseline
    point = point_of(proposal["overrides"], baseline, space)
    for e in ctx.history:
        if e["status"] not in CUT_SHORT and e["params"] and same_point(point, e["params"]):
            return [guard.violation("(overrides)", proposal["overrides"], "duplicate",
                                    f"the same point as run {e['run_id']}, already trained "
                                    f"({describe_overrides(proposal['overrides'])})")]
    for s in ctx.siblings:
        if same_point(point, point_of(s["overrides"], baseline, space)):
            return [guard.violation("(overrides)", proposal["overrides"], "duplicate",
                                    f"the same point as run {s['run_id']} of this generation "
                                    f"({describe_overrides(proposal['overrides'])})")]
    return []


def archive_manual_input(study: Study, run) -> None:
    """Move next_config.json into the run folder: it is used once, and kept with the run it made."""
    source = study.paths.next_config
    fsio.atomic_write_bytes(run.manual_input, source.read_bytes())
    source.unlink()
