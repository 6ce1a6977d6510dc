"""Which runs an invocation of the workflow adds, in which generations: the Snakefile asks this at parse time.

The DAG starts at the newest finished run on disk: finished runs (with verdict.json) are never part of
it, so its depth is the number of generations planned, not the length of the history, and nothing edited
later can make Snakemake re-execute a finished run. Unfinished run folders (a crash, a kill) come first and
resume; one whose proposal.json records its generation keeps it, so that it is proposed again from the same
history.

A generation is `generation_size` runs proposed together and trained side by side; every run of a generation
is proposed after all runs of the previous one are judged. The first generation of a study holds the baseline
alone (every other run is judged against it), and the last one of an invocation may be smaller when
`iterations` (a count of runs) is not a multiple of the size.

The main Snakemake process makes the plan and exports it in AUTOPILOT_PLAN; job processes (a cluster job
parses the Snakefile again, later, when more runs are finished) take it from there. The propose rule passes each
run's generation and place to `autopilot propose` as parameters.

Usage:
    plan = plan_runs(study, 8)
    plan.groups        # [["00001"], ["00002", "00003", "00004", "00005"], ...]
    plan.slot("00003") # Slot(generation=2, index=1)
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from autopilot import holds, ledger
from autopilot.errors import AutopilotError
from autopilot.ledger import Slot
from autopilot.paths import format_run_id, run_number
from autopilot.study import Study

log = logging.getLogger(__name__)

NO_RUN_REGEX = "(?!x)x"  # a wildcard constraint that matches nothing
ENV_VAR = "AUTOPILOT_PLAN"


@dataclass(frozen=True)
class Plan:
    study: str
    groups: list[list[str]]  # the planned runs by generation, in the order they run
    slots: dict[str, Slot]
    halted: str | None  # why no (more) runs were planned, if a budget or the kill switch says so

    @property
    def run_ids(self) -> list[str]:
        return [run_id for group in self.groups for run_id in group]

    def slot(self, run_id: str) -> Slot:
        return self.slots[run_id]

    def previous(self, run_id: str) -> list[str]:
        """The runs of the planned generation before `run_id`'s: empty for the first of this invocation."""
        i = next(i for i, group in enumerate(self.groups) if run_id in group)
        return self.groups[i - 1] if i else []

    @property
    def constraint(self) -> str:
        return "|".join(self.run_ids) or NO_RUN_REGEX

    def to_json(self) -> str:
        return json.dumps({"study": self.study, "groups": self.groups, "halted": self.halted,
                           "slots": {r: [s.generation, s.index] for r, s in self.slots.items()}})

    @classmethod
    def from_json(cls, text: str) -> Plan:
        d = json.loads(text)
        return cls(d["study"], d["groups"], {r: Slot(*s) for r, s in d["slots"].items()}, d["halted"])

    def export(self) -> None:
        """Hand the plan to the jobs of this invocation (they inherit the environment, or are given it)."""
        os.environ[ENV_VAR] = self.to_json()

    @classmethod
    def from_env(cls) -> Plan:
        text = os.environ.get(ENV_VAR)
        if text is None:
            raise AutopilotError(f"{ENV_VAR} is not set in this job's environment: the executor must pass it on "
                              f"(Snakemake does so for variables named by `envvars:`)")
        return cls.from_json(text)


def generation_gaps(slots: dict[str, Slot], finished: set[str]) -> dict[str, Slot]:
    """Places of a generation, up to its last recorded one, whose run was never proposed (the invocation was
    killed first: with several jobs at once, place 2 may be proposed before place 0). They keep their
    generation and place, as their siblings assumed (TPE's constant liar counted them), and their run id."""
    out = {}
    for g in {s.generation for s in slots.values()}:
        members = {r: s for r, s in slots.items() if s.generation == g}
        first = min(run_number(r) - s.index for r, s in members.items())
        for k in range(max(s.index for s in members.values()) + 1):
            run_id = format_run_id(first + k)
            if first + k >= 1 and run_id not in members and run_id not in finished:
                out[run_id] = Slot(g, k)
    return out


def chunk(run_ids: list[str], first_size: int, size: int) -> list[list[str]]:
    """Consecutive generations: the first of `first_size` runs, the others of `size` (the last may be short)."""
    groups: list[list[str]] = []
    i = 0
    while i < len(run_ids):
        step = size if groups else first_size
        groups.append(run_ids[i:i + step])
        i += step
    return groups


def plan_runs(study: Study, iterations: int) -> Plan:
    ids = study.paths.run_ids()
    finished = {i for i in ids if study.paths.run(i).is_finished()}
    unfinished = [i for i in ids if i not in finished]
    history = ledger.read_history(study.paths)
    halted = holds.halt_reason(study, history)
    if halted or iterations <= 0:
        return Plan(study.name, [], {}, halted)
    room = study.settings.budget.max_runs - len(finished)
    n = min(iterations, room)
    recorded_slots = {r: s for r in unfinished if (s := ledger.recorded_slot(study.paths.run(r))) is not None}
    gaps = generation_gaps(recorded_slots, finished)
    resumed = sorted(set(unfinished) | set(gaps))[:n]
    next_number = run_number(ids[-1]) + 1 if ids else 1
    new = [format_run_id(next_number + i) for i in range(n - len(resumed))]

    slots = {r: s for r, s in {**recorded_slots, **gaps}.items() if r in resumed}
    recorded = sorted({s.generation for s in slots.values()})
    groups = [[r for r in resumed if r in slots and slots[r].generation == g] for g in recorded]
    fresh = [r for r in resumed if r not in slots] + new
    size = study.settings.generation_size
    first_size = 1 if ledger.best_entry(history) is None and not slots else size  # the baseline trains alone
    last = max([ledger.generation_of(e) for e in history] + [s.generation for s in slots.values()], default=0)
    for g, group in enumerate(chunk(fresh, first_size, size), start=last + 1):
        groups.append(group)
        slots.update({r: Slot(g, i) for i, r in enumerate(group)})
    short = None if n == iterations else f"run budget: only {n} of {iterations} runs fit in budget.max_runs"
    return Plan(study.name, groups, slots, short)
