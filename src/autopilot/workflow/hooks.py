"""What the Snakefile's `onstart:`, `onsuccess:` and `onerror:` hooks do, here where tests can reach it.

Snakemake knows its executor only once jobs are about to run (at parse time `workflow.local_exec` is always
true), so the choices that depend on it are made in `onstart:`.
"""

from __future__ import annotations

import os
import threading

from autopilot.study import Study
from autopilot.workflow.plan import Plan


def on_start(workflow, plan: Plan, study: Study) -> list[str]:
    """On a cluster executor, jobs start their trainers fresh (see `autopilot.warm.warmup`); on this machine, warm
    up what the planned runs will use. Returns what was started, for the log."""
    if not workflow.local_exec:
        os.environ["AUTOPILOT_NO_WARMSTART"] = "1"  # inherited by the jobs Snakemake submits from now on
        return []
    if not plan.run_ids or plan.halted or workflow.touch:
        return []
    from autopilot.warm import warmup

    return warmup.start(study)


def finish_without_waiting() -> None:
    """Snakemake's job-rate limiter leaves a threading.Timer of up to 1 s behind, and the interpreter waits for
    it at exit; once the workflow has ended nothing needs it (it only wakes the scheduler), so cancel it."""
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.cancel()
