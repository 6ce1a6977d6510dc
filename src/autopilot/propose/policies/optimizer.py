"""The built-in optimizer policies: `tpe` (Optuna's TPE sampler) and `random`, rebuilt from the ledger.

No state is kept between proposals: every call makes a fresh in-memory Optuna study, replays
history.jsonl into it as finished trials (one per seed: the judge's extra seeds are information, not waste) and
asks for one point other than the incumbent's. Start-up points are counted in runs. The runs folder is the
only state, so deleting a run folder or editing the ledger is all it takes to change what TPE knows.

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
from autopilot.propose.policies import Context, changed_from_baseline, describe_overrides, same_point

log = logging.getLogger(__name__)

MAX_ASKS = 25  # asks for a point other than the incumbent's, before a repeat is accepted


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
    """History entries as Optuna trials, one per seed: a one-seed screen is an observation like any other, and a
    run confirmed on many seeds weighs as much as its seeds. A seed of the incumbent's config that a later run
    trained for its record (stage `incumbent`) is an observation of the incumbent's point. A run with no usable
    seed is one failed trial. Runs whose params left the current search space are skipped."""
    import optuna

    dists = distributions(search_space)
    recent = history[-max_history:]
    if best is not None and best not in recent:
        recent = [best, *recent]  # the incumbent always informs the model
    by_id = {e["run_id"]: e for e in history}
    trials = []
    for entry in recent:
        for params, value in observations(entry, by_id, search_space):
            if any(guard.check_value(k, v, search_space[k]) for k, v in params.items()):
                continue
            trials.append(optuna.trial.create_trial(
                params=params, distributions=dists, value=value,
                state=optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL,
            ))
    return trials


def observations(entry: dict, by_id: dict, search_space: dict) -> list[tuple[dict, float | None]]:
    """(params, value) of each seed of a ledger line (value None: a failed run)."""
    def point(e: dict) -> dict:
        return {k: e["params"].get(k) for k in search_space}

    out = []
    for seed in ledger.entry_seeds(entry):
        owner = by_id.get(entry.get("compared_to") or "") if seed["stage"] == "incumbent" else entry
        if owner is not None and seed["value"] is not None and seed["status"] == "completed":
            out.append((point(owner), seed["value"]))
    if not any(p == point(entry) for p, _ in out):
        ok = entry["value"] is not None and entry["status"] == "completed"
        out.append((point(entry), entry["value"] if ok else None))
    return out


def runs_done(history: list[dict]) -> int:
    """Finished runs with a metric: the optimizer's start-up counts runs (points), not their seeds."""
    return sum(e["value"] is not None and e["status"] == "completed" for e in history)


def make_sampler(sampler_name: str, tpe: dict, seed: int, n_runs: int):
    """TPE, or random points while fewer than `n_startup_trials` runs are done (the baseline's ten seeds
    are one point: TPE's own count of trials would end its start-up after the baseline alone)."""
    import optuna

    if sampler_name == "tpe" and n_runs >= tpe["n_startup_trials"]:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=0, constant_liar=True,
                                          multivariate=tpe["multivariate"])
    return optuna.samplers.RandomSampler(seed=seed)


def ask(ctx: Context, sampler_name: str) -> tuple[dict, int]:
    """The run's point of the search space from a fresh Optuna study replaying the ledger: the generation's
    points are asked in order, the earlier ones left pending, and the one at the run's index is returned.
    Also returns how many finished runs the ledger held."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = ctx.study.config
    first_run = generation_run_id(ctx.run_id, ctx.index, 0)  # the same seed for the whole generation
    seed = ledger.derive_seed(cfg["seed"], first_run, 1_000_003)  # not the training seed
    n_runs = runs_done(ctx.history)
    sampler = make_sampler(sampler_name, cfg["tpe"], seed, n_runs)
    study = optuna.create_study(direction="maximize" if ctx.study.maximize else "minimize", sampler=sampler)
    study.add_trials(replay(ctx.history, ctx.study.search_space, cfg["tpe"]["max_history"], ctx.best))
    taken = [ctx.best["params"]] if ctx.best and ctx.best.get("params") else []
    try:
        for _ in range(ctx.index + 1):
            point = new_point(study, distributions(ctx.study.search_space), taken)
            taken.append(point)
    except Exception as e:  # Optuna's own errors: report, and let the fallback decide
        raise ProposalError(f"{sampler_name}: Optuna could not propose a point: {e}") from e
    return point, n_runs


def new_point(study, dists: dict, taken: list[dict]) -> dict:
    """The next point Optuna asks for that is not the incumbent's nor an earlier place's of the generation.

    The incumbent's point is being re-measured already (every challenger that passes its screen adds a seed to
    its record), so a run of it is an equal config judged against itself, spent for nothing; on a categorical
    space TPE proposes it again and again (its many seeds fill TPE's model of good points). Other repeats are
    kept: a point that narrowly missed its confirmation gets a fresh chance, as plain TPE would re-sample it.
    A repeat is left pending, so the constant liar pushes the next ask away; after MAX_ASKS the last is taken.
    """
    for _ in range(MAX_ASKS):
        point = dict(study.ask(dists).params)  # left RUNNING: the liar sees it
        if not any(same_point(point, other) for other in taken):
            return point
    return point


def propose_tpe(ctx: Context) -> dict:
    point, n_done = ask(ctx, "tpe")
    overrides = changed_from_baseline(point, ctx.study.settings.baseline)
    n_startup = ctx.study.settings.tpe.n_startup_trials
    mode = "random start-up point" if n_done < n_startup else "TPE's most promising point by expected improvement"
    if ctx.index:
        mode += f" given the {ctx.index} point(s) proposed before it in this generation (constant liar)"
    return {
        "overrides": overrides,
        "rationale": (f"TPE (Optuna TPESampler) replayed {n_done} finished run(s) from history.jsonl, each of "
                      f"their seeds an observation; this is its "
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
