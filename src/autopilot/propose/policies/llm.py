"""The `llm` policy: an LLM (the worker) reads the study's record and proposes the next run.

The prompt comes from `autopilot.propose.prompt`, the answer is checked against the proposal schema's worker
part (`autopilot.propose.answers`), and the exchange is saved in the run's llm/ folder. Any failure raises
LLMFailure: `autopilot.propose.decide` then lets the fallback policy propose and records why. The proposal goes
through the same guard as every other, plus the LLM part of the quality gate (housekeeping included).

Usage:
    raw = propose_llm(ctx, Audit.for_run(study, run_id))
"""

from __future__ import annotations

from autopilot.propose import answers, llm, prompt
from autopilot.propose.llm.audit import Audit
from autopilot.propose.policies import Context


def label(study) -> str:
    """The proposal's policy string, e.g. `llm:openai`."""
    return f"llm:{study.settings.llm.backend}"


def propose_llm(ctx: Context, audit: Audit, optimizer: str = "", feedback: str = "", role: str = "worker") -> dict:
    """The worker's answer for the run: overrides, rationale, hypothesis, housekeeping. `feedback`: why its previous
    answer for this run was rejected (the repair loop); `role`: the name its exchange is saved under."""
    send, check = answers.worker_schemas(ctx.study)
    text = prompt.worker_prompt(ctx, optimizer, feedback)
    return llm.exchange(llm.settings_for(ctx.study), role, text, send, check, audit)
