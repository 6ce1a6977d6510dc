"""Judge a trained run against the best run before it, and write verdict.json.

The statistics live in `autopilot.judge.stats`; this module gathers the seeds from disk and records the result.
The incumbent comes from the ledger (history.jsonl, and any judged run it misses: `record.current_history`): the
best run before the run's generation, so the runs of a generation are judged alike, in whatever order they finish.
"""

from __future__ import annotations

import numpy as np

from autopilot import fsio, ledger, schemas
from autopilot.clock import now_iso
from autopilot.journal import record
from autopilot.judge import stats
from autopilot.paths import RunPaths
from autopilot.study import Study

NOT_JUDGED = {  # trainer status -> verdict and reason: these runs are not compared with anything
    "stopped": ("stopped", "the run was ended by control/stop before it finished"),
    "skipped": ("skipped", "the run was skipped by control/skip"),
}


def seed_results(run: RunPaths) -> list[stats.SeedResult]:
    """Completed seeds of a run with their metric and per-example scores."""
    results = []
    for s in ledger.successful_seeds(run):
        pe = s.get("per_example")
        results.append(stats.SeedResult(float(s["metric"]["value"]), None if not pe else np.asarray(pe["values"])))
    return results


def judge_run(study: Study, run_id: str) -> dict:
    run = study.paths.run(run_id)
    history = ledger.before_generation(record.current_history(study), ledger.run_generation(run))
    first = ledger.first_summary(run)
    cand = seed_results(run)
    best = ledger.incumbent(history, ledger.champion_events(study.models))
    base = {
        "run_id": run_id,
        "compared_to": None,
        "metric": dict(study.config["metric"]),
        "value": float(np.mean([s.value for s in cand])) if cand else None,
        "seed_values": [s.value for s in cand],
        "incumbent_value": None if best is None else best["value"],
        "incumbent_seed_values": [] if best is None else best["seed_values"],
        "delta": None,
        "interval": None,
        "test": None,
        "bootstrap": None,
        "noise_floor": None,
        "promoted": False,
        "judged_at": now_iso(),
    }
    if first["status"] in NOT_JUDGED:
        name, reason = NOT_JUDGED[first["status"]]
        verdict = {**base, "verdict": name, "reason": reason}
    elif not ledger.is_success(first) or not cand:
        error = (first.get("error") or "")[:500]
        verdict = {**base, "verdict": "failed", "reason": f"trainer status {first['status']}: {error}"}
    elif best is None:
        sd, df = stats.pooled_noise([base["seed_values"]])
        verdict = {**base, "verdict": "baseline", "promoted": True, "noise_floor": {"seed_sd": _num(sd), "df": df},
                   "reason": f"first successful run: the baseline ({len(cand)} seeds, seed sd {sd:.4g})"}
    else:
        verdict = compare(study, run_id, run, cand, best, history, base)
    schemas.validate(verdict, "verdict")
    fsio.atomic_write_json(run.verdict, verdict)
    return verdict


def compare(study, run_id, run, cand, best, history, base) -> dict:
    config = fsio.read_json(run.config)
    inc_run = study.paths.run(best["run_id"])
    inc = seed_results(inc_run)
    if not inc:  # the incumbent's folder was pruned: judge on its recorded seed values alone
        inc = [stats.SeedResult(v, None) for v in best["seed_values"]]
    groups = ledger.noise_groups(history, exclude={best["run_id"], run_id})
    _, welch = stats.extra_seeds_for(config["overrides"], study.settings.judge, ledger.code_changed(config, best))
    goal = ledger.example_goal(run)
    result = stats.decide(cand, inc, groups, study.settings.judge, study.maximize, welch,
                          bootstrap_seed=ledger.derive_seed(study.settings.seed, run_id, 7),
                          example_maximize=None if goal is None else goal == "maximize")
    sd, df = stats.pooled_noise([[s.value for s in cand], [s.value for s in inc], *groups])
    v = result["verdict"]
    iv = result["interval"]
    reason = (f"{len(cand)} seed(s) vs {len(inc)} of run {best['run_id']}: delta {result['delta']:+.4g}, "
              f"interval [{iv['low']:+.4g}, {iv['high']:+.4g}] ({iv['method']})")
    if len(cand) == 1 and v != "regressed":
        reason += "; first seed did not beat the incumbent's mean, so no confirmation seeds were run"
    return {**base, "verdict": v, "compared_to": best["run_id"], "delta": result["delta"], "interval": iv,
            "test": _clean(result["test"]), "bootstrap": result["bootstrap"],
            "noise_floor": {"seed_sd": _num(sd), "df": df}, "promoted": v == "improved", "reason": reason}


def _num(x: float) -> float | None:
    return None if x != x else float(x)  # NaN -> null (JSON has no NaN)


def _clean(d: dict) -> dict:
    return {k: (_num(v) if isinstance(v, float) else v) for k, v in d.items()}
