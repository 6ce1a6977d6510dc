"""The judge step of a continual run: champion against challenger, then the dataset's outcome and the curriculum.

The trainer measured both models on every set of the run (trainer_summary.json `eval_sets`); autopilot.judge.sets
applies the paired tests and the rule over the sets (its docstring: Holm's correction, and why). Before verdict.json
is written (it marks the run finished), the run's dataset is moved by the verdict (autopilot.continual.datasets)
and the curriculum records its evaluation of the model that goes on: the challenger when it is promoted, else the
champion (autopilot.curriculum.state). Both are idempotent, so a judge killed half way is simply run again.

Usage:
    verdict = judge_run(study, "00007")      # writes runs/<study>/00007/verdict.json
"""

from __future__ import annotations

from autopilot import fsio, ledger, schemas
from autopilot.clock import now_iso
from autopilot.continual import datasets
from autopilot.judge import sets
from autopilot.paths import RunPaths
from autopilot.study import Study

NOT_JUDGED = {"stopped": "the run was ended by control/stop before it finished",
              "skipped": "the run was skipped by control/skip"}
CORRECTION = "holm"


def judge_run(study: Study, run_id: str) -> dict:
    run = study.paths.run(run_id)
    config = fsio.read_json(run.config)
    first = ledger.first_summary(run)
    metric = study.metric_name
    base = {"run_id": run_id, "compared_to": config.get("champion"), "metric": dict(study.config["metric"]),
            "value": None, "seed_values": [], "incumbent_value": None, "incumbent_seed_values": [], "delta": None,
            "interval": None, "test": None, "bootstrap": None, "noise_floor": None, "promoted": False,
            "judged_at": now_iso()}
    comparison = None
    if first["status"] in NOT_JUDGED:
        name, reason = first["status"], NOT_JUDGED[first["status"]]
    elif not ledger.is_success(first) or not first.get("eval_sets"):
        name = "failed"
        reason = f"trainer status {first['status']}: {(first.get('error') or 'no eval_sets in its summary')[:500]}"
    else:
        c = study.settings.continual
        comparison = sets.compare(first["eval_sets"], thresholds(config), c.max_loss_rise, c.alpha, metric,
                                  seed=ledger.derive_seed(study.settings.seed, run_id, 7))
        name, reason = comparison.verdict, comparison.reason
        base.update(values(first["eval_sets"]["val"], metric, comparison))
    evidence = {"reason": reason, "champion": config.get("champion"),
                "sets": [] if comparison is None else [brief(s) for s in comparison.sets]}
    data = datasets.settle(study, run, name, evidence)
    skills = curriculum(study, run, config, first, name) if comparison is not None else None
    verdict = {**base, "verdict": name, "promoted": name == "improved", "reason": describe(name, reason, config, data),
               "continual": {"champion": config.get("champion"), "init_model": config["init_model"],
                             "rule": {"metric": metric, "max_loss_rise": study.settings.continual.max_loss_rise,
                                      "alpha": study.settings.continual.alpha, "correction": CORRECTION},
                             "sets": [] if comparison is None else [s.as_dict() for s in comparison.sets],
                             "data": data, "curriculum": skills}}
    schemas.validate(verdict, "verdict")
    fsio.atomic_write_json(run.verdict, verdict)
    return verdict


def thresholds(config: dict) -> dict[str, float | None]:
    return {s["name"]: s.get("max_loss_rise") for s in config["data"]["eval_sets"]}


def values(val: dict, metric: str, comparison: sets.Comparison) -> dict:
    """The verdict's value fields, on the study's val_file: the challenger's metric against the champion's."""
    challenger, champion = val["challenger"]["metrics"][metric], val["champion"]["metrics"][metric]
    mine = next(s for s in comparison.sets if s.name == "val")
    interval = mine.loss["interval"] if metric == "val_loss" else None
    return {"value": challenger, "seed_values": [challenger], "incumbent_value": champion,
            "incumbent_seed_values": [champion], "delta": challenger - champion, "interval": interval,
            "bootstrap": interval, "test": {"method": f"paired per set, {CORRECTION} over sets",
                                            "p_lower_loss": mine.loss["p_lower"]}}


def brief(s: sets.SetResult) -> dict:
    """A set's line of the evidence: the deltas people read first."""
    em = s.exact_match
    return {"name": s.name, "loss_champion": s.loss["champion"], "loss_challenger": s.loss["challenger"],
            "loss_rise": s.loss["rise"], "exact_match_champion": em and em["champion"],
            "exact_match_challenger": em and em["challenger"], "regressed": s.regressed}


def describe(name: str, reason: str, config: dict, data: dict | None) -> str:
    start = f"from champion run {config['champion']}" if config.get("champion") else "from the base model"
    if data is None:
        return f"{reason}; trained {start}"
    where = {"done": "queue/done/", "quarantined": "queue/quarantine/ (`autopilot queue retry` brings it back)",
             "requeued": "back into its queue"}[data["outcome"]]
    return f"{reason}; trained {start} on {data['source'] or data['entry']} ({data['records']} records), now in {where}"


def curriculum(study: Study, run: RunPaths, config: dict, summary: dict, verdict: str) -> dict | None:
    """Record the curriculum's evaluation of the model that goes on; return the verdict's `curriculum` block."""
    if not study.settings.curriculum.enabled:
        return None
    from autopilot.curriculum import SKILLS, state

    promoted = verdict == "improved"
    side, model = ("challenger", run.id) if promoted else ("champion", config.get("champion"))
    scores = []
    for spec in config["data"]["eval_sets"]:
        skill = spec.get("skill")
        if skill is None or skill not in SKILLS:
            continue
        outputs = summary["eval_sets"][spec["name"]][side]["outputs"] or []
        expected = [SKILLS[skill].answer(r) for r in fsio.iter_jsonl(study.project.root / spec["file"])]
        correct = sum(SKILLS[skill].grade(e, o) for e, o in zip(expected, outputs, strict=True))
        scores.append(state.Score(skill, spec["level"], correct, len(expected)))
    state.record_run(study, run.id, model, scores)
    return {s.skill: {"level": s.level, "accuracy": s.accuracy, "model": model} for s in scores
            if s.level == max(x.level for x in scores if x.skill == s.skill)}
