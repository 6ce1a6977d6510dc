# Config validation and the helpers the rules use (no rules here). The plan is made once, at parse time.
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

from autopilot.paths import Project
from autopilot.plan import plan_runs
from autopilot.study import Study, check_config

PROJECT = Project(Path.cwd())
STUDY = Study(PROJECT, check_config(dict(config), "config (config/config.yaml + --config)"))
STUDY.freeze()
PLAN = plan_runs(STUDY, STUDY.config["iterations"])
RUNS = f"runs/{STUDY.name}"

if PLAN.halted:
    logger.warning(f"autopilot: {PLAN.halted}")


wildcard_constraints:
    run=PLAN.constraint,


def get_planned_entries(wildcards):
    """The journal entries of the runs this invocation adds."""
    return [f"{RUNS}/{run}/journal_entry.json" for run in PLAN.run_ids]


def get_propose_inputs(wildcards):
    """The previous run's verdict, only when that run is new in this invocation (finished runs are read from
    disk by the command, never declared: that keeps them out of the DAG). The first new run waits for ingest."""
    previous = PLAN.previous(wildcards.run)
    if previous is None:
        return {"ingest": "queue/.ingest.done"}
    return {"previous": f"{RUNS}/{previous}/verdict.json"}


def report_halt():
    stop = PROJECT.control_file("stop")
    if stop.exists():
        logger.warning(f"autopilot: the loop stopped because {stop} exists; `autopilot resume` removes it")
