"""Start the warm processes an invocation will use before its first job asks for them.

A job that finds no command server (`autopilot.warm.commands`) or trainer pool (`autopilot.warm.trainers`) starts one
and carries on cold; the pool's `import torch` then holds up the first run by about three seconds. When a
workflow starts on this machine with runs to train, the main Snakemake process starts both in the background,
so that they import while the first proposal is made. They must have the environment the jobs will have,
since a warm process serves only clients with its own import-time settings: Snakemake sets the OpenMP and BLAS
thread counts of each job to the job's threads, which is 1 for every rule of the loop.

A cluster job on a node never uses a warm process: one started by another job would be killed when that job
ends. So on a cluster executor the workflow exports AUTOPILOT_NO_WARMSTART=1 to its jobs instead.

Usage (from the Snakefile's `onstart:`):
    warmup.start(study)
"""

from __future__ import annotations

import os

from autopilot import apikeys
from autopilot.study import Study
from autopilot.warm import client, commands, protocol, trainers

# What Snakemake's shell() sets to the job's threads (snakemake/shell.py).
JOB_THREAD_VARS = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
LOOP_RULE_THREADS = 1


def job_env(threads: int = LOOP_RULE_THREADS) -> dict[str, str]:
    """The environment a job of this workflow gets from Snakemake."""
    return {**os.environ, **{var: str(threads) for var in JOB_THREAD_VARS}}


def start(study: Study) -> list[str]:
    """Start the command server and the study's trainer pool where none listens; return what was started."""
    if os.environ.get("AUTOPILOT_NO_WARMSTART") == "1":
        return []
    env = apikeys.without_keys(job_env(), apikeys.key_variables(study.settings.llm.api_key_env))  # need no LLM key
    started = []
    if not protocol.listening(commands.socket_path(env)):
        client.start_server(env)
        started.append("command server")
    task = study.settings.task
    if task != "command" and not protocol.listening(trainers.socket_path(study.project.root, task, env)):
        trainers.start_pool(task, study.project.root, env)
        started.append(f"{task} trainer pool")
    return started

