"""Propose the next run: pick the policy, check its proposal with the guard, fall back when it fails.

Order of precedence: the study's first successful run is the `baseline` (no overrides); a
runs/<study>/next_config.json written by a person is taken next (`manual`); otherwise the study's
`policy`. If that policy fails or its proposal breaks a guard rule, the fallback policy proposes instead
and proposal.json records `fallback_from` with the reason; the rejected proposal is kept beside it.

A run belongs to a generation (`autopilot.plan`): it is proposed from the history of earlier generations
only, so that every run of a generation sees the same history whatever its siblings have finished, and takes
its own point of the generation's (see `policies.optimizer`). A generation with no successful run before it
trains the baseline in each of its runs; next_config.json is taken by the generation's first run alone.

Usage:
    proposal = propose_run(study, "00007")     # writes runs/<study>/00007/proposal.json
"""

from __future__ import annotations

import logging

from autopilot import fsio, guard, journal, ledger, plan, schemas
from autopilot.errors import ProposalError
from autopilot.policies import Context
from autopilot.study import Study

log = logging.getLogger(__name__)

EMPTY_HOUSEKEEPING = {"new_todos": [], "notes": "", "resolved_todos": []}


def policy_function(name: str):
    from autopilot.policies import manual, optimizer

    functions = {"tpe": optimizer.propose_tpe, "random": optimizer.propose_random, "manual": manual.propose_manual}
    if name not in functions:
        raise ProposalError(f"unknown policy {name!r}; built in: {sorted(functions)}")
    return functions[name]


def baseline_proposal(ctx: Context) -> dict:
    noise = ctx.study.config["judge"]["noise_seeds"]
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
        "created_at": guard.now_iso(),
    }


def attempt(ctx: Context, policy: str) -> tuple[dict | None, list[dict]]:
    """Ask one policy; return its proposal (None if it raised) and the guard's violations."""
    fn = baseline_proposal if policy == "baseline" else policy_function(policy)
    try:
        proposal = complete(fn(ctx), ctx.run_id, policy)
    except ProposalError as e:
        return None, [guard.violation("(policy)", None, "policy_error", str(e))]
    return proposal, guard.check_proposal(proposal, ctx.study)


def first_policy(ctx: Context) -> str:
    if ctx.best is None:
        return "baseline"
    if ctx.index == 0 and ctx.study.paths.next_config.exists():
        return "manual"
    return ctx.study.config["policy"]


def propose_run(study: Study, run_id: str) -> dict:
    run = study.paths.run(run_id)
    history = journal.sync(study)
    guard.ensure_may_run(study, history)
    slot = plan.slot_for(study, run_id)
    earlier = ledger.before_generation(history, slot.generation)
    ctx = Context(study, run_id, earlier, ledger.best_entry(earlier), slot.index)
    log.info("run %s: generation %d, place %d; %d earlier run(s)", run_id, slot.generation, slot.index, len(earlier))
    policy = first_policy(ctx)
    proposal, violations = attempt(ctx, policy)
    if violations:
        reason = "; ".join(v["message"] for v in violations)
        log.warning("run %s: %s proposal rejected (%s); falling back to %s",
                    run_id, policy, reason, study.config["fallback_policy"])
        if proposal is not None:
            fsio.atomic_write_json(run.rejected_proposal, {**proposal, "violations": violations})
        fallback = study.config["fallback_policy"]
        proposal, second = attempt(ctx, fallback)
        if second:
            raise ProposalError(f"run {run_id}: {policy} was rejected ({reason}) and the fallback {fallback} too: "
                                + "; ".join(v["message"] for v in second))
        proposal["fallback_from"] = {"policy": policy, "reason": reason[:4000], "violations": violations}
    proposal.update(generation=slot.generation, generation_index=slot.index)
    schemas.validate(proposal, "proposal")
    fsio.atomic_write_json(run.proposal, proposal)
    if policy == "manual":
        archive_manual_input(study, run)
    return proposal


def archive_manual_input(study: Study, run) -> None:
    """Move next_config.json into the run folder: it is used once, and kept with the run it made."""
    source = study.paths.next_config
    fsio.atomic_write_bytes(run.manual_input, source.read_bytes())
    source.unlink()
