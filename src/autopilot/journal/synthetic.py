"""Synthetic finished runs that pass every schema: a deep history without training thousands of models.

For benchmarks of the loop on long histories (benchmarks/deep_history.py) and tests of the planner and the policies.

Usage:
    write_runs(study, 5000, seed=0)      # runs 00001..05000, finished, with history.jsonl to match
"""

from __future__ import annotations

import json
import random

from autopilot import fsio, guard, ledger
from autopilot.journal import record
from autopilot.paths import format_run_id
from autopilot.study import Study

SUMMARY_MANIFEST = {"seed": 0, "python": "3.11", "packages": {}, "git_commit": None, "data_hash": None,
                    "device": "cpu", "platform": "synthetic", "hostname": "synthetic"}


def point(study: Study, rng: random.Random) -> dict:
    out = {}
    for key, s in study.search_space.items():
        if s["type"] == "categorical":
            out[key] = rng.choice(s["choices"])
        elif s["type"] == "int":
            out[key] = rng.randint(s["low"], s["high"])
        else:
            out[key] = rng.uniform(s["low"], s["high"])
    return out


def write_runs(study: Study, n: int, seed: int = 0) -> None:
    """Write runs 1..n of `study` as finished runs, with history.jsonl and labbook.md to match."""
    rng = random.Random(seed)
    paths = study.paths
    paths.dir.mkdir(parents=True, exist_ok=True)
    history_lines = []
    best_id = None
    for i in range(1, n + 1):
        run_id = format_run_id(i)
        run = paths.run(run_id)
        run.dir.mkdir()
        overrides = {} if i == 1 else point(study, rng)
        proposal = {"run_id": run_id, "policy": "baseline" if i == 1 else "tpe", "overrides": overrides,
                    "rationale": "synthetic run for the deep-history benchmark",
                    "hypothesis": "none: synthetic",
                    "housekeeping": {"new_todos": [], "notes": "", "resolved_todos": []},
                    "mentor": None, "fallback_from": None, "created_at": "2026-01-01T00:00:00+00:00"}
        config = guard.build_config(study, proposal)
        value = round(rng.uniform(0.8, 0.97), 4)
        summary = {"status": "completed", "metric": {"name": study.metric_name, "value": value,
                   "goal": study.settings.metric.goal}, "per_example": None, "metrics": {},
                   "seed": config["seed"], "nonce": config["nonce"], "steps": 10, "train_seconds": 1.0,
                   "wall_seconds": 1.5, "device": "cpu", "checkpoint": None, "error": None,
                   "manifest": SUMMARY_MANIFEST}
        verdict_name = "baseline" if i == 1 else rng.choice(["regressed", "inconclusive", "improved"])
        verdict = {"run_id": run_id, "verdict": verdict_name, "compared_to": None if i == 1 else best_id,
                   "metric": dict(study.config["metric"]), "value": value, "seed_values": [value],
                   "incumbent_value": None, "incumbent_seed_values": [], "delta": None, "interval": None,
                   "test": None, "bootstrap": None, "noise_floor": None,
                   "promoted": verdict_name in ledger.PROMOTING_VERDICTS, "reason": "synthetic",
                   "judged_at": "2026-01-01T00:00:00+00:00"}
        if i == 1:
            verdict["seed_values"] = [value, round(value - 0.005, 4)]
        for path, doc in ((run.proposal, proposal), (run.config, config), (run.summary, summary),
                          (run.verdict, verdict)):
            path.write_text(json.dumps(doc))
        entry = record.build_entry(study, run, verdict)
        run.entry.write_text(json.dumps(entry))
        history_lines.append(json.dumps(entry))
        if verdict["promoted"]:
            best_id = run_id
    paths.history.write_text("\n".join(history_lines) + "\n")
    fsio.atomic_write_text(paths.labbook, "# synthetic history\n")
    study.freeze()

