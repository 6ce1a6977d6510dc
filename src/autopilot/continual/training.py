"""The train step of a continual run: one trainer, from the champion's weights, on the run's claimed dataset.

No seed protocol: the judge compares the two models the run holds (the champion it started from and the weights it
trained), example by example, not a config's seed mean against another's. The claimed dataset stays in
queue/processing/ until the judge has decided what becomes of it (autopilot.continual.datasets), so an interrupted
run resumes on the same file from its checkpoint.

Usage:
    summaries = train_run(study, "00007")      # [the summary of its one seed]
"""

from __future__ import annotations

from autopilot import apikeys, fsio
from autopilot.study import Study
from autopilot.train import gpus, runner


def train_run(study: Study, run_id: str) -> list[dict]:
    apikeys.forget_keys(apikeys.key_variables(study.settings.llm.api_key_env))  # as runner.train_run: no LLM key
    run = study.paths.run(run_id)
    with gpus.claim():
        return [runner.train_seed(study, run, run, fsio.read_json(run.config))]  # seed 0 in the run folder
