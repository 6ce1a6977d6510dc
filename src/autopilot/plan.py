"""Which runs an invocation of the workflow adds: the Snakefile asks this at parse time.

The DAG starts at the newest finished run on disk: finished runs (with verdict.json) are never part of
it, so its depth is `iterations`, not the length of the history, and nothing edited later can make
Snakemake re-execute a finished run. Unfinished run folders (a crash, a kill) come first and resume.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from autopilot import guard, ledger
from autopilot.paths import format_run_id, run_number
from autopilot.study import Study

log = logging.getLogger(__name__)

NO_RUN_REGEX = "(?!x)x"  # a wildcard constraint that matches nothing


@dataclass(frozen=True)
class Plan:
    run_ids: list[str]
    halted: str | None  # why no (more) runs were planned, if a budget or the kill switch says so

    def previous(self, run_id: str) -> str | None:
        """The planned run before `run_id`, or None for the first of this invocation."""
        i = self.run_ids.index(run_id)
        return self.run_ids[i - 1] if i else None

    @property
    def constraint(self) -> str:
        return "|".join(self.run_ids) or NO_RUN_REGEX


def plan_runs(study: Study, iterations: int) -> Plan:
    ids = study.paths.run_ids()
    finished = {i for i in ids if study.paths.run(i).is_finished()}
    unfinished = [i for i in ids if i not in finished]
    history = ledger.read_history(study.paths)
    halted = guard.halt_reason(study, history)
    if halted or iterations <= 0:
        return Plan([], halted)
    room = study.config["budget"]["max_runs"] - len(finished)
    n = min(iterations, room)
    planned = unfinished[:n]
    next_number = run_number(ids[-1]) + 1 if ids else 1
    while len(planned) < n:
        planned.append(format_run_id(next_number))
        next_number += 1
    short = None if n == iterations else f"run budget: only {n} of {iterations} runs fit in budget.max_runs"
    return Plan(planned, short)
