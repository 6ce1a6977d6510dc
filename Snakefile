# autopilot: propose -> guard -> train -> judge -> journal -> champion, for `iterations` new runs of a study.
# Usage: snakemake -c2 --profile profiles/local [--config iterations=5]
# Every rule brings its software for `--sdm apptainer` (this image; train_model: the trainer image) and for
# `--sdm conda` (envs/); see README, "Snakemake workflow catalog conventions".
from snakemake.utils import min_version

min_version("9.0")


# A study file given with --configfile replaces the embedded default study instead of merging into it.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# The controller image (docker/controller.Dockerfile, built as in docker/README.md) for every short step.
container: "images/autopilot-controller-0.1.0.sif"


include: "rules/common.smk"
include: "rules/ingest.smk"
include: "rules/loop.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        get_planned_outputs,


onstart:
    for started in hooks.on_start(workflow, PLAN, STUDY):
        logger.info(f"autopilot: warming up the {started}")


onsuccess:
    hooks.finish_without_waiting()


onerror:
    report_halt()
    hooks.finish_without_waiting()
