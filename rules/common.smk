# Config validation and the helpers the rules use (no rules here). The plan is made once, at parse time.
from pathlib import Path

from snakemake.exceptions import WorkflowError

from autopilot.config_errors import ConfigSource
from autopilot.errors import ConfigError
from autopilot.journal import record
from autopilot.ops import control
from autopilot.paths import Project
from autopilot.study import Study, check_config
from autopilot.train import script_check
from autopilot.workflow import hooks, preflight
from autopilot.workflow.plan import ENV_VAR, Plan, plan_runs

# Checked against schemas/config.schema.yaml by the package, as every `autopilot` command checks it, rather than
# by snakemake.utils.validate (which prints the whole schema and config, and would quote an API key pasted in place
# of llm.api_key_env): an error names the key, file:line or --config, what is allowed and a close match.
# AUTOPILOT_CONFIG_ERRORS=full adds the schema of each bad key.
PROJECT = Project(Path.cwd())
SOURCE = ConfigSource(tuple(map(Path, workflow.configfiles)), workflow.config_settings.overwrite_config)
try:
    STUDY = Study(PROJECT, check_config(dict(config), SOURCE))
except ConfigError as e:
    raise WorkflowError(str(e)) from None  # the message alone, without the package's frames
STUDY.freeze()


def trainers_run_here():
    """Whether the trainers run with this interpreter: one machine, and no software of their own (--sdm apptainer
    gives train_model the trainer image, --sdm conda envs/trainer.yaml)."""
    return workflow.local_exec and not hooks.deploys_software(workflow)


# The main process plans; a job process (a cluster job parses this file again, when more runs are finished)
# takes the same plan from the environment the main process exported it to.
if workflow.is_main_process:
    # a missing extra or model folder fails here, before any run, saying what to do (a trainer that runs in an
    # image or on another node has its own packages: only the files are checked then)
    try:
        preflight.check(STUDY, packages_here=trainers_run_here())
        script_check.check_study(STUDY.settings, PROJECT.root, str(SOURCE))
    except ConfigError as e:
        raise WorkflowError(str(e)) from None
    record.sync(STUDY)  # the journal repairs itself once per invocation: runs judged but not journaled by a killed one
    control.hold_if_disk_low(STUDY)  # before any run: hold (paused.json, labbook) while the disk is low, or lift it
    PLAN = plan_runs(STUDY, STUDY.settings.iterations)
    PLAN.export()
else:
    PLAN = Plan.from_env()
RUNS = f"runs/{STUDY.name}"
# The trainer image (docker/trainer.Dockerfile, built as in docker/README.md); the Snakefile names the controller's.
TRAINER_IMAGE = "images/autopilot-trainer-0.1.0.sif"


envvars:
    ENV_VAR,  # executors that do not pass the whole environment to a job pass this (kubernetes)


if PLAN.halted:
    logger.warning(f"autopilot: {PLAN.halted}")


wildcard_constraints:
    run=PLAN.constraint,


def cap_gpus():
    """On one machine, cap the `gpu` resource at its GPU count unless `--resources gpu=N` is given. Without
    GPUs it stays uncapped, so the cores alone limit how many runs train at once; a cluster has its own count."""
    if workflow.is_main_process and workflow.local_exec and "gpu" not in workflow.global_resources:
        from autopilot.train import gpus

        n = gpus.count()
        if n:
            workflow.register_resource("gpu", n)


cap_gpus()


def get_planned_outputs(wildcards):
    """The last file of each run this invocation adds: its champion step (registry.json, after the journal)."""
    return [f"{RUNS}/{run}/registry.json" for run in PLAN.run_ids]


def get_propose_inputs(wildcards):
    """The verdicts of every run of the previous generation, only when those runs are new in this invocation
    (finished runs are read from disk by the command, never declared: that keeps them out of the DAG); in a
    continual study their champion steps, since the next run starts from the champion they leave. The
    first new generation waits for ingest. An LLM proposes the runs of a generation one after another, each
    seeing the proposals before it (TPE's constant liar needs no such order)."""
    previous = PLAN.previous(wildcards.run)
    waits_for = "registry.json" if STUDY.settings.is_continual else "verdict.json"
    inputs = (
        {"previous": [f"{RUNS}/{run}/{waits_for}" for run in previous]}
        if previous
        else {"ingest": "queue/.ingest.done"}
    )
    group = next(g for g in PLAN.groups if wildcards.run in g)
    place = group.index(wildcards.run)
    if place and STUDY.settings.uses_llm:
        inputs["sibling"] = f"{RUNS}/{group[place - 1]}/proposal.json"
    return inputs


def get_generation(wildcards):
    """The run's generation in this invocation's plan: passed to `autopilot propose`."""
    return PLAN.slot(wildcards.run).generation


def get_place(wildcards):
    """The run's place in its generation (which of the generation's points it takes)."""
    return PLAN.slot(wildcards.run).index


def get_trainer_image():
    """The image train_model runs in under `--sdm apptainer`: the study's container_image, else the trainer
    image built from docker/trainer.Dockerfile (docker/README.md)."""
    return STUDY.settings.container_image or TRAINER_IMAGE


def report_halt():
    stop = PROJECT.control_file("stop")
    if stop.exists():
        logger.warning(f"autopilot: the loop stopped because {stop} exists; `autopilot resume` removes it")
