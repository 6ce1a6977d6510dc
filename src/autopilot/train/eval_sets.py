"""Continual mode, the trainer's side: the champion and the challenger measured on every evaluation set of the run.

A continual run starts from the champion's weights (config.json `init_model`). Before its first step the trainer
measures those weights on each set of config.json `data.eval_sets` (the study's val_file as `val`, its other fixed
sets, the curriculum's held-out levels) with the sealed evaluation of causal_lm_eval, and keeps the result in
<run>/eval_before.json (bound to the config's nonce: a resumed run reads it, since its weights have moved on). After
training it measures the trained weights the same way. Both go into trainer_summary.json `eval_sets`, per set:
loss and, for exact-match specs, exact match per example, and for curriculum sets (`skill`) the generated texts,
which the skill's own grader reads. The judge pairs champion and challenger example by example
(autopilot.judge.sets).

Usage (autopilot.train.tasks.causal_lm):
    sets = load(run, tokenizer, max_positions, val)  # [] outside continual mode
    champion = before(run, model, tokenizer, sets, device)
    ...train...
    summary_field = report(sets, champion, measure(run, model, tokenizer, sets, device, val_result))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from autopilot import fsio
from autopilot.errors import TrainerError
from autopilot.train import lm_data
from autopilot.train.contract import TrainerRun
from autopilot.train.tasks import causal_lm_eval

log = logging.getLogger(__name__)

VAL = "val"  # the name of data.val_file among the sets


@dataclass(frozen=True)
class LoadedSet:
    name: str
    file: str
    skill: str | None  # a curriculum set: its generated texts are kept for the skill's grader
    eval_set: causal_lm_eval.EvalSet


def load(run: TrainerRun, tokenizer, max_positions: int, val: causal_lm_eval.EvalSet) -> list[LoadedSet]:
    """The run's evaluation sets (config.json data.eval_sets), tokenized for the sealed evaluation; `val` is the
    val_file's, built already."""
    found = []
    for spec in run.config["data"].get("eval_sets") or []:
        if spec["name"] == VAL:
            sealed = val
        else:
            records = lm_data.read_records(run.root / spec["file"])
            sealed = causal_lm_eval.build_eval_set(tokenizer, records, lm_data.check_spec(spec["spec"]), max_positions)
        found.append(LoadedSet(spec["name"], spec["file"], spec.get("skill"), sealed))
    return found


def measure(run: TrainerRun, model, tokenizer, sets: list[LoadedSet], device, val_result: dict | None = None) -> dict:
    """Each set's metrics, per-example scores and (curriculum sets) generated texts; `val_result` serves `val`."""
    out = {}
    for s in sets:
        if s.name == VAL and val_result is not None:
            result = val_result
        else:
            result = causal_lm_eval.evaluate(model, tokenizer, s.eval_set, device, keep_outputs=s.skill is not None,
                                             progress=lambda: run.heartbeat(phase="evaluate"))
        out[s.name] = {"metrics": result["metrics"], "per_example": result["per_example"],
                       "outputs": result["outputs"]}
    return out


def before(run: TrainerRun, model, tokenizer, sets: list[LoadedSet], device, resumed: bool) -> dict:
    """The champion's results: measured now (before the first step), or read back when the run resumes."""
    if not sets:
        return {}
    path = run.files.eval_before
    if path.exists():
        kept = fsio.read_json(path)
        if kept.get("nonce") == run.config.get("nonce") and set(kept["sets"]) == {s.name for s in sets}:
            return kept["sets"]
    if resumed:
        raise TrainerError(f"{path} is missing or belongs to another config: the champion's scores cannot be measured "
                           "once training has started; remove the run's checkpoint/ folder to start it over")
    run.heartbeat(phase="evaluate", force=True)
    results = measure(run, model, tokenizer, sets, device)
    fsio.atomic_write_json(path, {"nonce": run.config.get("nonce"), "sets": results})
    log.info("the champion measured on %d evaluation set(s) before training", len(sets))
    return results


def report(sets: list[LoadedSet], champion: dict, challenger: dict) -> dict:
    """trainer_summary.json `eval_sets`: per set its file, spec, size and both models' results."""
    return {s.name: {"file": s.file, "spec": s.eval_set.spec, "skill": s.skill, "examples": len(s.eval_set.examples),
                     "champion": champion[s.name], "challenger": challenger[s.name]} for s in sets}
