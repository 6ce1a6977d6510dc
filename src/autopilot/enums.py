"""The names that files carry: a trainer's status, a verdict, a live phase. Each enum is checked against the schema
that constrains the same field (tests/test_settings.py), so code and files cannot drift apart. They are `StrEnum`s:
equal to their strings, written to JSON as them."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """trainer_summary.json `status`."""

    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    OOM = "oom"
    STOPPED = "stopped"
    SKIPPED = "skipped"


class Verdict(StrEnum):
    """verdict.json `verdict`."""

    BASELINE = "baseline"
    IMPROVED = "improved"
    REGRESSED = "regressed"
    INCONCLUSIVE = "inconclusive"
    FAILED = "failed"
    STOPPED = "stopped"
    SKIPPED = "skipped"
    OVER_LIMIT = "over_limit"


class Phase(StrEnum):
    """status/status.json `phase`: what the trainer (or the loop) is doing now."""

    LOAD = "load"
    TRAIN = "train"
    PAUSED = "paused"
    EVALUATE = "evaluate"
    FINISHED = "finished"
    TIMEOUT = "timeout"
    KILLED = "killed"
    INTERRUPTED = "interrupted"


PROMOTING = frozenset({Verdict.BASELINE, Verdict.IMPROVED})  # verdicts that make a run a candidate incumbent
ACTIVE_PHASES = frozenset({Phase.TRAIN, Phase.PAUSED, Phase.EVALUATE})  # a trainer is alive in these
CUT_SHORT = frozenset({RunStatus.STOPPED, RunStatus.SKIPPED})  # ended by a person, not by the trainer
