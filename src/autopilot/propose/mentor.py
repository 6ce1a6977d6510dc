"""The mentor: a second LLM role that reviews the worker's proposal before it runs.

It is asked every `mentor.every_n_runs` runs (by run number) and whenever the study is stuck (none of the
last `mentor.when_stuck_after` finished runs was `improved` or the baseline), for proposals of the LLM
(policy llm, or hybrid's LLM turns) that passed the guard. It answers approve or revise with a critique,
may add shared TODOs, and may amend the overrides; an amended proposal must pass the guard again, or the
worker's stands and the reason is recorded. The review is the proposal's `mentor` field; its critique goes
to runs/<study>/mentor_notes.md (by `autopilot.propose.workpad`) and from there into later prompts. A mentor that
fails leaves the worker's proposal as it is, with the error recorded.

Usage:
    reason = trigger(ctx)                       # None when no review is due
    proposal = review(ctx, proposal, audit)
"""

from __future__ import annotations

import logging

from autopilot import apikeys, guard, ledger
from autopilot.paths import run_number
from autopilot.propose import answers, llm, prompt
from autopilot.propose.llm import LLMFailure
from autopilot.propose.llm.audit import Audit
from autopilot.propose.policies import Context

log = logging.getLogger(__name__)


def is_llm_policy(policy: str) -> bool:
    return policy.startswith(("llm:", "hybrid:llm:"))


def trigger(ctx: Context) -> str | None:
    """Why a review is due for this run, or None."""
    cfg = ctx.study.settings.mentor
    every, stuck = cfg.every_n_runs, cfg.when_stuck_after
    if every and run_number(ctx.run_id) % every == 0:
        return "every run" if every == 1 else f"every {every} runs"
    recent = ctx.history[-stuck:] if stuck else []
    if stuck and len(recent) == stuck and not any(e["verdict"] in ledger.PROMOTING_VERDICTS for e in recent):
        return f"stuck: no improvement in the last {stuck} runs"
    return None


def review(ctx: Context, proposal: dict, audit: Audit, optimizer: str = "") -> dict:
    """The proposal with the mentor's review in `mentor`, its overrides amended if the amendment passes the guard.
    Whatever goes wrong, the worker's proposal stands, with the reason in `mentor.error`."""
    record = {"trigger": trigger(ctx), "review": None, "amended_from": None, "amendment_rejected": None,
              "error": None}
    try:
        return reviewed(ctx, proposal, audit, optimizer, record)
    except LLMFailure as e:
        log.warning("run %s: the mentor's review failed (%s); the worker's proposal stands", ctx.run_id, e)
        return {**proposal, "mentor": {**record, "error": str(e)[:2000]}}
    except Exception as e:  # a bug, or an input nobody foresaw: the worker's proposal stands all the same
        keys = apikeys.key_variables(ctx.study.settings.llm.api_key_env)
        log.error("run %s: the mentor's review raised; the worker's proposal stands:\n%s", ctx.run_id,
                  apikeys.redacted_traceback(e, keys))
        error = apikeys.redact(f"the review raised {type(e).__name__}: {e}", keys)
        return {**proposal, "mentor": {**record, "error": error[:2000]}}


def reviewed(ctx: Context, proposal: dict, audit: Audit, optimizer: str, record: dict) -> dict:
    send, check = answers.mentor_schemas(ctx.study)
    text = prompt.mentor_prompt(ctx, proposal, optimizer)
    answer = llm.exchange(llm.settings_for(ctx.study, "mentor"), "mentor", text, send, check, audit)
    record["review"] = guard.json_safe(answer)  # NaN or an endless integer can be recorded, never trained
    if answer["decision"] != "revise" or not answer["overrides"]:
        return {**proposal, "mentor": record}
    amended = {**proposal, "overrides": {**proposal["overrides"], **answer["overrides"]},
               "mentor": {**record, "amended_from": proposal["overrides"]}}
    problems = guard.check_proposal(amended, ctx.study)
    if problems:
        reasons = "; ".join(v["message"] for v in problems)
        log.warning("run %s: the mentor's amendment was rejected by the guard (%s)", ctx.run_id, reasons)
        return {**proposal, "mentor": {**record, "amendment_rejected": reasons[:4000]}}
    return amended
