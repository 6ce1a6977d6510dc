"""Judge a trained run against the incumbent before its generation, and write verdict.json.

`autopilot.judge.protocol` walks the run's seeds (the same walk that told the runner which seeds to train);
this module records what it found: every seed with the stage it served and, for a failed one, why; the tests of
each stage reached; the interval of the deciding test at the study's stated confidence; the paired bootstrap
over examples for the record; the run's costs and the limits it broke. The incumbent comes from the ledger
(history.jsonl, and any judged run it misses: `record.current_history`) and the registry's events: the one
before the run's generation, so the runs of a generation are judged alike, in whatever order they finish.

Usage:
    verdict = judge_run(study, run_id)
"""

from __future__ import annotations

import numpy as np

from autopilot import fsio, ledger, schemas
from autopilot.clock import now_iso
from autopilot.errors import AutopilotError
from autopilot.journal import record
from autopilot.judge import protocol
from autopilot.judge.protocol import Outcome, Situation
from autopilot.ledger import SeedRecord
from autopilot.study import Study


def judge_run(study: Study, run_id: str) -> dict:
    """Walk the run's seeds and write its verdict.json; an unfinished protocol is an error (train first)."""
    run = study.paths.run(run_id)
    history = ledger.before_generation(record.current_history(study), ledger.run_generation(run))
    sit = protocol.situation_of(study, run_id, history)
    seeds = ledger.seed_records(run)
    out = protocol.walk(sit, seeds)
    if out.need is not None:
        raise AutopilotError(
            f"run {run_id}: its seeds are not all trained: the judge's protocol still needs {out.need.count} "
            f"{out.need.stage} seed(s); run `autopilot train --run {run_id}` first")
    verdict = build_verdict(study, sit, seeds, out)
    schemas.validate(verdict, "verdict")
    fsio.atomic_write_json(run.verdict, verdict)
    return verdict


def build_verdict(study: Study, sit: Situation, seeds: list[SeedRecord], out: Outcome) -> dict:
    own = [s for s in seeds if s.stage != "incumbent"]
    values = [s.value for s in own if s.ok]
    inc = sit.incumbent
    record_values = out.incumbent_values or ([] if inc is None else ledger.incumbent_values(sit.history, inc))
    test = out.tests.get(out.deciding) if out.deciding else None
    value = _mean(out.deciding_values) if out.deciding_values else _mean(values)
    verdict = {
        "run_id": sit.run_id,
        "verdict": out.verdict,
        "stage": out.stage,
        "compared_to": None if inc is None or out.verdict == "baseline" else inc["run_id"],
        "metric": dict(study.config["metric"]),
        "value": value,
        "seed_values": values,
        "seeds": [seed_doc(sit, s) for s in seeds],
        "incumbent_value": _mean(record_values),
        "incumbent_seed_values": record_values,
        "delta": None,
        "interval": None,
        "test": None,
        "tests": {name: _clean(t) for name, t in out.tests.items()},
        "welch_keys": list(sit.welch_keys) if "confirm" in out.tests else [],
        "bootstrap": out.bootstrap,
        "noise_floor": None if out.noise is None else {"seed_sd": _num(out.noise.sd), "df": out.noise.df},
        "costs": out.costs or protocol.costs_of(own),
        "over_limit": out.over_limit,
        "promoted": out.verdict in ledger.PROMOTING_VERDICTS,
        "reason": out.reason,
        "judged_at": now_iso(),
    }
    if test is not None and inc is not None:
        verdict.update(compared(sit, seeds, out, test))
    if verdict["bootstrap"] is None and inc is not None and out.deciding:
        verdict["bootstrap"] = protocol.bootstrap(sit, deciding_seeds(sit, own, out))
    return verdict


def compared(sit: Situation, seeds: list[SeedRecord], out: Outcome, test: dict) -> dict:
    """delta, interval and the deciding test, in the metric's own units; the reason with its numbers."""
    sign = 1.0 if sit.maximize else -1.0
    delta = sign * test["delta"]
    level = f"{sit.settings.confidence:.0%}"
    if "low" in test:
        low, high = (test["low"], test["high"]) if sit.maximize else (-test["high"], -test["low"])
        method = (f"{test['name']} over seed-level metrics, {test['n_candidate']} {out.deciding} seed(s) against "
                  f"{test['n_incumbent']} of the incumbent's record; {level} two-sided interval; the decision is "
                  f"one-sided at alpha {test['alpha']}")
        interval = {"low": low, "high": high, "level": sit.settings.confidence, "method": method}
    elif out.bootstrap and "low" in out.bootstrap:
        interval = {"low": out.bootstrap["low"], "high": out.bootstrap["high"], "level": sit.settings.confidence,
                    "method": f"paired bootstrap over examples, {level} (no seed noise to test against)"}
    else:
        interval = None
    numbers = f"delta {delta:+.4g}"
    if interval:
        numbers += f", {level} interval [{interval['low']:+.4g}, {interval['high']:+.4g}]"
    return {"delta": delta, "interval": interval, "test": _clean(test),
            "reason": (f"{len(out.deciding_values)} {out.deciding} seed(s) against the {len(out.incumbent_values)} "
                       f"seeds of run {sit.incumbent['run_id']}'s record ({numbers}): {out.reason}")}


def deciding_seeds(sit: Situation, own: list[SeedRecord], out: Outcome) -> list[SeedRecord]:
    """The seeds whose values decided: the screen seed, the stage-1 seeds with it, or the fresh seeds."""
    stages = {"screen": ("screen",), "select": ("screen", "select"), "confirm": ("confirm",)}.get(out.deciding, ())
    return [s for s in own if s.ok and protocol.stage_of(sit, s) in stages]


def seed_doc(sit: Situation, s: SeedRecord) -> dict:
    return {"k": s.k, "stage": protocol.stage_of(sit, s), "seed": s.seed, "status": s.status, "value": s.value,
            "error": s.error}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _num(x: float) -> float | None:
    return None if x != x else float(x)  # NaN -> null (JSON has no NaN)


def _clean(d: dict) -> dict:
    return {k: (_num(v) if isinstance(v, float) else v) for k, v in d.items()}
