"""The `hybrid` policy: TPE leads, the LLM proposes a share of the runs (llm.hybrid_share, 30% by default).

Which runs are the LLM's is decided by the run id alone (a hash of the study seed and the id), so a run
proposed again after a crash gets the same proposer. On its turns the LLM sees TPE's view: the best run and
the point TPE would propose next; it may take that point, change it, or go elsewhere, saying why.

Usage:
    llm_turn(ctx)                       # True on the LLM's runs
    raw = propose_llm_turn(ctx, audit)  # the LLM's proposal, shown TPE's suggestion
"""

from __future__ import annotations

import json

from autopilot import ledger
from autopilot.propose.llm.audit import Audit
from autopilot.propose.policies import Context, changed_from_baseline, describe_overrides, llm, optimizer

SHARE_SALT = 2_000_003  # keeps the hybrid draw apart from every other seed derived from the run id


def llm_turn(ctx: Context) -> bool:
    cfg = ctx.study.config
    draw = ledger.derive_seed(cfg["seed"], ctx.run_id, SHARE_SALT) / 2**31
    return draw < cfg["llm"]["hybrid_share"]


def label(ctx: Context) -> str:
    return f"hybrid:{llm.label(ctx.study)}" if llm_turn(ctx) else "hybrid:tpe"


def optimizer_view(ctx: Context) -> str:
    """The prompt section that shows the LLM what TPE knows and would do next."""
    point, n_done = optimizer.ask(ctx, "tpe")
    suggestion = changed_from_baseline(point, ctx.study.settings.baseline)
    return (f"\n## The optimizer's view (TPE)\n"
            f"This study is run by TPE (Optuna's TPESampler), which proposes most runs; you propose a share of them. "
            f"TPE has modelled {n_done} finished run(s); {ctx.describe_best()}.\n"
            f"TPE's suggested next point, as overrides of the baseline: `{json.dumps(suggestion)}` "
            f"({describe_overrides(suggestion)}). Take it, change it, or propose something else, and say why.\n")


def propose_llm_turn(ctx: Context, audit: Audit, feedback: str = "", role: str = "worker") -> dict:
    return llm.propose_llm(ctx, audit, optimizer_view(ctx), feedback, role)


def propose_tpe_turn(ctx: Context) -> dict:
    proposal = optimizer.propose_tpe(ctx)
    share = ctx.study.settings.llm.hybrid_share
    turn = f"Hybrid policy, TPE's turn (the LLM proposes {share:.0%} of runs). "
    proposal["rationale"] = turn + proposal["rationale"]
    return proposal
