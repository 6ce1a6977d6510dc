"""The built-in optimizer policies: `tpe` (Optuna's TPE sampler) and `random`, rebuilt from the ledger.

No state is kept between proposals: every call makes a fresh in-memory Optuna study, replays
history.jsonl into it as finished trials and asks for one point. The runs folder is the only state, so
deleting a run folder or editing the ledger is all it takes to change what TPE knows.

The runs of a generation are proposed together without talking to each other: each one replays the same
history (earlier generations only) with the same sampler seed (that of the generation's first run), asks for
the generation's points one after another, the earlier ones left pending (TPE's constant liar scores a
pending point as a bad one, so the next lands elsewhere), and takes the point at its own index.
"""

from __future__ import annotations

import logging

from autopilot import guard, ledger
from autopilot.errors import ProposalError
from autopilot.paths import generation_run_id
from autopilot.propose.policies import Context, changed_from_baseline, describe_overrides

log = logging.getLogger(__name__)


def distributions(search_space: dict) -> dict:
    import optuna.distributions as d

    out = {}
    for key, s in search_space.items():
        if s["type"] == "float":
            out[key] = d.FloatDistribution(s["low"], s["high"], log=s.get("log", False))
        elif s["type"] == "int":
            step = 1 if s.get("log") else s.get("step", 1)  # Optuna allows no step with log
            out[key] = d.IntDistribution(s["low"], s["high"], log=s.get("log", False), step=step)
        else:
            out[key] = d.CategoricalDistribution(s["choices"])
    return out


def replay(history: list[dict], search_space: dict, max_history: int, best: dict | None) -> list:
    """History entries as Optuna trials; runs whose params left the current search space are skipped."""
    import optuna

    dists = distributions(search_space)
    recent = history[-max_history:]
    if best is not None and best not in recent:
        recent = [best, *recent]  # the incumbent always informs the model
    trials = []
    for entry in recent:
        params = {k: entry["params"].get(k) for k in search_space}
        if any(guard.check_value(k, v, search_space[k]) for k, v in params.items()):
            continue
        ok = entry["value"] is not None and entry["status"] == "completed"
        trials.append(optuna.trial.create_trial(
            params=params, distributions=dists, value=entry["value"] if ok else None,
            state=optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL,
        ))
    return trials


def ask(ctx: Context, sampler_name: str) -> dict:
    """The run's point of the search space from a fresh Optuna study replaying the ledger: the generation's
    points are asked in order, the earlier ones left pending, and the one at the run's index is returned."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = ctx.study.config
    first_run = generation_run_id(ctx.run_id, ctx.index, 0)  # the same seed for the whole generation
    seed = ledger.derive_seed(cfg["seed"], first_run, 1_000_003)  # not the training seed
    if sampler_name == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg["tpe"]["n_startup_trials"],
                                             constant_liar=True)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(direction="maximize" if ctx.study.maximize else "minimize", sampler=sampler)
    study.add_trials(replay(ctx.history, ctx.study.search_space, cfg["tpe"]["max_history"], ctx.best))
    try:
        for _ in range(ctx.index + 1):
            trial = study.ask(distributions(ctx.study.search_space))  # left RUNNING: the liar sees it
    except Exception as e:  # Optuna's own errors: report, and let the fallback decide
        raise ProposalError(f"{sampler_name}: Optuna could not propose a point: {e}") from e
    return dict(trial.params), sum(t.state.name == "COMPLETE" for t in study.trials)


def propose_tpe(ctx: Context) -> dict:
    point, n_done = ask(ctx, "tpe")
    overrides = changed_from_baseline(point, ctx.study.settings.baseline)
    n_startup = ctx.study.settings.tpe.n_startup_trials
    mode = "random start-up point" if n_done < n_startup else "TPE's most promising point by expected improvement"
    if ctx.index:
        mode += f" given the {ctx.index} point(s) proposed before it in this generation (constant liar)"
    return {
        "overrides": overrides,
        "rationale": (f"TPE (Optuna TPESampler) replayed {n_done} finished run(s) from history.jsonl; this is its "
                      f"{mode} ({n_done}/{n_startup} start-up runs done). Changes: {describe_overrides(overrides)}. "
                      f"For reference, {ctx.describe_best()}."),
        "hypothesis": (f"{ctx.study.metric_name} at this point is "
                       f"{'higher' if ctx.study.maximize else 'lower'} than the incumbent's."),
    }


def propose_random(ctx: Context) -> dict:
    point, n_done = ask(ctx, "random")
    overrides = changed_from_baseline(point, ctx.study.settings.baseline)
    return {
        "overrides": overrides,
        "rationale": (f"Random search: a point drawn uniformly (log-uniformly for log ranges) from the search space, "
                      f"independent of the {n_done} finished run(s). Changes: {describe_overrides(overrides)}."),
        "hypothesis": f"An unbiased sample of the space; it may beat the incumbent ({ctx.describe_best()}).",
    }
