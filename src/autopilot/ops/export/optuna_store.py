"""`autopilot export optuna`: a study's finished runs as trials of an Optuna study, added once.

The storage is an Optuna RDB URL (`sqlite:///optuna.db`, any SQLAlchemy URL) or the path of a journal file
(JournalFileBackend); `optuna-dashboard <storage>` shows either. Each run becomes one trial, in run order: its
searched parameters with the study's distributions, its judged value (the mean over its seeds), COMPLETE, FAIL
(failed, timeout, out of memory) or PRUNED (stopped, skipped), the per-step values of the study's metric as
intermediate values, its start and end times, and the verdict, policy, seed values and run folder as user
attributes. A parameter whose value lies outside today's search space (the space was edited after the run) goes
into the user attribute `params_outside_space` instead, since Optuna cannot hold it as a parameter.

Usage:
    added, present = export_optuna(study, "sqlite:///optuna.db")
"""

from __future__ import annotations

import logging

from autopilot import guard
from autopilot.enums import CUT_SHORT, RunStatus
from autopilot.errors import AutopilotError
from autopilot.ops.export.records import RunRecord, finished_runs
from autopilot.study import Study

log = logging.getLogger(__name__)

RUN_ID_ATTR = "autopilot_run_id"


def storage_of(spec: str):
    """An RDB storage for a URL, a journal file storage for a path."""
    import optuna

    if "://" in spec:
        return optuna.storages.RDBStorage(spec)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(spec))


def export_optuna(study: Study, storage: str, study_name: str | None = None) -> tuple[list[str], list[str]]:
    """Add the study's finished runs the Optuna study does not hold; return (run ids added, run ids already there)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if study.maximize else "minimize"
    name = study_name or study.name
    target = optuna.create_study(storage=storage_of(storage), study_name=name, direction=direction,
                                 load_if_exists=True)
    if target.direction.name.lower() != direction:
        raise AutopilotError(f"Optuna study {name!r} in {storage} is to {target.direction.name.lower()}, but "
                             f"{study.metric_name} is to {direction}: pass another --study-name")
    present = {t.user_attrs.get(RUN_ID_ATTR) for t in target.get_trials(deepcopy=False)}
    added, kept = [], []
    for record in finished_runs(study):
        if record.run_id in present:
            kept.append(record.run_id)
            continue
        target.add_trial(frozen_trial(record, study))
        added.append(record.run_id)
    return added, kept


def distributions(search_space: dict) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for key, space in search_space.items():
        if space["type"] == "float":
            out[key] = FloatDistribution(space["low"], space["high"], log=space.get("log", False))
        elif space["type"] == "int":
            out[key] = IntDistribution(space["low"], space["high"], log=space.get("log", False),
                                       step=space.get("step", 1))
        else:
            out[key] = CategoricalDistribution(space["choices"])
    return out


def frozen_trial(record: RunRecord, study: Study):
    from optuna.trial import FrozenTrial, TrialState

    entry = record.entry
    space = distributions(study.search_space)
    params, outside = {}, {}
    for key, value in entry["params"].items():
        if key in space and guard.check_value(key, value, study.search_space[key]) is None:
            params[key] = value
        else:
            outside[key] = value
    if entry["status"] == RunStatus.COMPLETED and entry["value"] is not None:
        state, value = TrialState.COMPLETE, entry["value"]
    else:  # a run a person cut short is pruned; any other end is a failure
        state, value = (TrialState.PRUNED if entry["status"] in CUT_SHORT else TrialState.FAIL), None
    intermediate = {}
    for step, _, name, number in record.series():
        if name == study.metric_name:
            intermediate[step] = number
    attrs = {RUN_ID_ATTR: record.run_id, "verdict": entry["verdict"], "policy": entry["policy"],
             "status": entry["status"], "seed_values": entry["seed_values"], "delta": entry["delta"],
             "compared_to": entry["compared_to"], "run_dir": str(record.run.dir.relative_to(record.root)),
             "rationale": entry.get("rationale") or ""}
    if outside:
        attrs["params_outside_space"] = outside
    if entry.get("error"):
        attrs["error"] = entry["error"]
    return FrozenTrial(number=0, trial_id=0, state=state, value=value, values=None, params=params,
                       distributions={k: space[k] for k in params}, user_attrs=attrs, system_attrs={},
                       intermediate_values=intermediate, datetime_start=local(record.started),
                       datetime_complete=local(record.finished))


def local(moment):
    """Optuna keeps naive local times (datetime.now()); the ledger keeps UTC."""
    return moment.astimezone().replace(tzinfo=None)
