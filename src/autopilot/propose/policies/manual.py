"""The manual policy: a person writes runs/<study>/next_config.json, the loop runs it once.

Accepted forms: `{"overrides": {...}, "rationale": "...", "hypothesis": "..."}`, or just the overrides
`{"lr": 0.01}`. The file is merged with the baseline, checked by the guard like any proposal, archived
into the run folder (manual_input.json) and removed, whether it was accepted or not.
"""

from __future__ import annotations

from autopilot import fsio
from autopilot.errors import AutopilotError, ProposalError
from autopilot.propose.policies import Context, describe_overrides


def read_manual(ctx: Context) -> dict:
    path = ctx.study.paths.next_config
    if not path.exists():
        raise ProposalError(
            f"policy is `manual` but {path} does not exist: write the overrides there "
            '(e.g. {"overrides": {"lr": 0.01}, "rationale": "...", "hypothesis": "..."}) and invoke again'
        )
    try:
        raw = fsio.read_json(path)
    except AutopilotError as e:
        raise ProposalError(str(e)) from None
    if not isinstance(raw, dict):
        raise ProposalError(f"{path}: must hold a JSON object, got {type(raw).__name__}")
    return raw


def propose_manual(ctx: Context) -> dict:
    raw = read_manual(ctx)
    structured = "overrides" in raw
    overrides = raw["overrides"] if structured else raw
    if not isinstance(overrides, dict):
        raise ProposalError(f"{ctx.study.paths.next_config}: `overrides` must be an object")
    return {
        "overrides": overrides,
        "rationale": (raw.get("rationale") if structured else None)
        or f"Manual proposal from {ctx.study.paths.next_config.name} by a person: {describe_overrides(overrides)}.",
        "hypothesis": (raw.get("hypothesis") if structured else None)
        or f"The person expects this to beat the incumbent ({ctx.describe_best()}).",
    }
