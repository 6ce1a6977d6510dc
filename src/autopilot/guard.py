"""The guard: nothing reaches a trainer that it did not pass.

Deny by default. A proposal must match schemas/proposal.schema.yaml; it may change only keys of the study's
search space, each within its type and range; it must pass the quality gate (a real rationale and a
hypothesis); and the study's budget and kill switch (control/stop) must allow another run (`autopilot.holds`).
The guard is the only writer of config.json. Dataset content and LLM output are data here, never commands.

Usage:
    violations = check_proposal(proposal, study)      # [] when it may run
    guard_run(study, run_id)                          # writes config.json and guard.json, or raises
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from pathlib import Path

from autopilot import fsio, holds, ledger, schemas
from autopilot.clock import now_iso
from autopilot.errors import GuardRejected
from autopilot.ingest import claims
from autopilot.paths import Project
from autopilot.study import Study

MIN_RATIONALE_CHARS = 20
MIN_HYPOTHESIS_CHARS = 10
# The LLM part of the gate (policies llm:*, hybrid:llm:*): a model that answers with filler is not obeyed.
LLM_MIN_RATIONALE_WORDS = 8
LLM_MIN_HYPOTHESIS_WORDS = 4
LLM_MIN_NOTES_WORDS = 4
LLM_MIN_TODO_WORDS = 2
TODO_ID = re.compile(r"^T\d+$")


def violation(key: str, value, rule: str, message: str) -> dict:
    return {"key": key, "value": json_safe(value), "rule": rule, "message": message}


def finite(value: int | float) -> bool:
    """A number a float can hold: not NaN or infinite, and no integer beyond 1.8e308 (those raise OverflowError)."""
    if isinstance(value, int):
        return abs(value) <= sys.float_info.max  # int and float compare exactly, without converting
    return math.isfinite(value)


def describe_number(value: int | float) -> str:
    """A number as JSON would spell it, or the size of an integer too long to print (Python refuses past 4300
    digits)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, int) and not finite(value):
        digits = int(abs(value).bit_length() * math.log10(2)) + 1
        return f"{'a negative' if value < 0 else 'an'} integer of about {digits} digits"
    return repr(value)


def json_safe(obj):
    """`obj` with every number JSON cannot hold (NaN, Infinity, an integer beyond the float range) spelled as a
    string, so that a rejected proposal and the reason can be written down (fsio refuses NaN)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, int | float) and not isinstance(obj, bool) and not finite(obj):
        return describe_number(obj)
    return obj


def check_value(key: str, value, space: dict) -> dict | None:
    """The violation of one override against its search-space entry, or None."""
    kind = space["type"]
    if kind == "categorical":
        if not any(same_choice(value, c) for c in space["choices"]):
            return violation(key, value, "choices", f"`{key}` must be one of {space['choices']}, but got {value!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return violation(key, value, "type", f"`{key}` must be a number ({kind}), but got {value!r}")
    if not finite(value):
        return violation(key, value, "range", f"`{key}` must be a finite number within "
                         f"[{space['low']}, {space['high']}], but got {describe_number(value)}")
    if kind == "int" and not float(value).is_integer():
        return violation(key, value, "type", f"`{key}` must be an integer, but got {value!r}")
    if not space["low"] <= value <= space["high"]:
        return violation(
            key, value, "range", f"`{space['low']} <= {key} <= {space['high']}` must hold, but got {key}={value!r}"
        )
    if kind == "int" and (int(value) - space["low"]) % space.get("step", 1):
        return violation(key, value, "step", f"`{key}` must be low + k*{space['step']}, but got {value!r}")
    return None


def same_choice(value, choice) -> bool:
    """Equal and of the same kind: True is not 1, "64" is not 64, but 64.0 is 64."""
    if isinstance(value, bool) or isinstance(choice, bool):
        return type(value) is type(choice) and value == choice
    return isinstance(value, str) == isinstance(choice, str) and value == choice


def normalize(overrides: dict, search_space: dict) -> dict:
    """Checked overrides in their canonical form: the matching choice itself, ints as int."""
    out = {}
    for key, value in overrides.items():
        space = search_space[key]
        if space["type"] == "categorical":
            value = next(c for c in space["choices"] if same_choice(value, c))
        elif space["type"] == "int":
            value = int(value)
        else:
            value = float(value)
        out[key] = value
    return out


def check_overrides(overrides: dict, search_space: dict) -> list[dict]:
    found = []
    for key, value in overrides.items():
        if key not in search_space:
            found.append(violation(key, value, "whitelist",
                                   f"`{key}` is not in the study's search space (allowed: {sorted(search_space)})"))
            continue
        problem = check_value(key, value, search_space[key])
        if problem:
            found.append(problem)
    return found


def quality_problems(proposal: dict) -> list[dict]:
    """The quality gate: a proposal must say why (rationale) and what it expects to see (hypothesis)."""
    found = []
    if len(proposal.get("rationale", "").strip()) < MIN_RATIONALE_CHARS:
        found.append(violation("rationale", proposal.get("rationale"), "quality",
                               f"rationale must be at least {MIN_RATIONALE_CHARS} characters of real text"))
    if len(proposal.get("hypothesis", "").strip()) < MIN_HYPOTHESIS_CHARS:
        found.append(violation("hypothesis", proposal.get("hypothesis"), "quality",
                               f"hypothesis must be at least {MIN_HYPOTHESIS_CHARS} characters of real text"))
    if proposal.get("policy", "").startswith(("llm:", "hybrid:llm:")):
        found += llm_quality_problems(proposal)
    elif proposal.get("policy", "").startswith("code:llm:"):  # a patch: its reasons, no housekeeping asked
        found += llm_text_problems(proposal)
    return found


def distinct_words(text: str) -> int:
    return len({w.lower() for w in re.findall(r"[^\W\d_]{2,}", text)})


def llm_text_problems(proposal: dict) -> list[dict]:
    """An LLM's rationale and hypothesis: real sentences, and a hypothesis that is not the rationale again."""
    found = []
    rationale, hypothesis = proposal.get("rationale", ""), proposal.get("hypothesis", "")
    if distinct_words(rationale) < LLM_MIN_RATIONALE_WORDS:
        found.append(violation("rationale", rationale, "quality",
                               f"an LLM's rationale must use at least {LLM_MIN_RATIONALE_WORDS} distinct words"))
    if distinct_words(hypothesis) < LLM_MIN_HYPOTHESIS_WORDS or hypothesis.strip() == rationale.strip():
        found.append(violation("hypothesis", hypothesis, "quality", f"an LLM's hypothesis must use at least "
                               f"{LLM_MIN_HYPOTHESIS_WORDS} distinct words and differ from the rationale"))
    return found


def llm_quality_problems(proposal: dict) -> list[dict]:
    """The gate for an LLM's proposal: real sentences, a hypothesis that is not the rationale again, and the
    housekeeping (notes for its next turn; new TODOs that say something; resolved TODOs by id)."""
    found = llm_text_problems(proposal)
    housekeeping = proposal.get("housekeeping") or {}
    if distinct_words(housekeeping.get("notes", "")) < LLM_MIN_NOTES_WORDS:
        found.append(violation("housekeeping.notes", housekeeping.get("notes"), "quality",
                               f"an LLM's housekeeping.notes (its workpad) must use at least {LLM_MIN_NOTES_WORDS} "
                               "distinct words"))
    for todo in housekeeping.get("new_todos", []):
        if distinct_words(todo) < LLM_MIN_TODO_WORDS:
            found.append(violation("housekeeping.new_todos", todo, "quality",
                                   f"a new TODO must use at least {LLM_MIN_TODO_WORDS} distinct words, got {todo!r}"))
    for todo_id in housekeeping.get("resolved_todos", []):
        if not TODO_ID.match(todo_id):
            found.append(violation("housekeeping.resolved_todos", todo_id, "quality",
                                   f"resolved TODOs are ids like T001, got {todo_id!r}"))
    return found


def check_proposal(proposal: dict, study: Study) -> list[dict]:
    """Every rule the proposal breaks: shape, whitelist and ranges, quality gate."""
    shape = [violation("(proposal)", None, "schema", p) for p in schemas.problems(proposal, "proposal")]
    if shape:
        return shape
    return check_overrides(proposal["overrides"], study.search_space) + quality_problems(proposal)


def resolve_data(study: Study, run_id: str) -> dict:
    """The `data` block a run's trainer receives: with data.source `queue`, the dataset that `propose` claimed for the
    run (queue/processing/) is its train_file; the runner releases it when the run's seeds are done. Never the
    held-out test_file: only the champion's one test evaluation sees it (autopilot.registry.testscore)."""
    data = {k: v for k, v in study.config.get("data", {}).items() if k != "test_file"}
    if study.settings.data.source == "queue":
        data = claims.data_for_run(study.project, data, study.paths.run(run_id))
    return data


def build_config(study: Study, proposal: dict) -> dict:
    """The config.json of a run whose proposal passed: the baseline with the overrides, its seed, data and paths."""
    run_id = proposal["run_id"]
    overrides = normalize(proposal["overrides"], study.search_space)
    data = resolve_data(study, run_id)
    init_model = study.settings.model.path if study.settings.model else None  # causal_lm: the model folder
    start = None
    if study.settings.is_continual:  # from the champion's weights; measured with it on the study's sets
        from autopilot.continual.start import run_start

        start = run_start(study)
        init_model, data = start.init_model, {**data, "eval_sets": start.eval_sets}
    config = config_document(
        run_id, study.name, study.settings.task, seed=ledger.derive_seed(study.settings.seed, run_id, 0),
        hparams={**study.settings.baseline, **overrides}, overrides=overrides, metric=dict(study.config["metric"]),
        max_seconds=study.settings.budget.max_seconds_per_run, data=data, init_model=init_model,
        # causal_lm: how it uses the hardware (autopilot.train.lm_runtime), the same for every run of the study
        causal_lm=dataclasses.asdict(study.settings.causal_lm) if study.settings.task == "causal_lm" else None)
    if start is not None:
        config["champion"] = start.champion
    return config


def config_document(run_id: str, study: str, task: str, *, seed: int, hparams: dict, metric: dict,
                    max_seconds: float, overrides: dict | None = None, data: dict | None = None,
                    init_model: str | None = None, seed_index: int = 0, run_dir: str | None = None,
                    causal_lm: dict | None = None) -> dict:
    """A config.json document (schemas/config_json.schema.yaml), paths relative to the project root. The guard
    builds every run's from its study; benchmarks and tests that drive a trainer directly build theirs here."""
    layout = Project(Path("."))
    return {
        "run_id": run_id,
        "study": study,
        "task": task,
        "seed": seed,
        "seed_index": seed_index,
        "nonce": ledger.new_nonce(),  # echoed by the trainer: binds its summary to this document
        "hparams": dict(hparams),
        "overrides": dict(overrides or {}),
        "metric": dict(metric),
        "max_seconds": max_seconds,
        "data": dict(data or {}),
        "init_model": init_model,
        **({"causal_lm": dict(causal_lm)} if causal_lm is not None else {}),
        "paths": {"run_dir": run_dir or str(layout.study(study).run(run_id).dir), "control_dir": str(layout.control),
                  "status_file": str(layout.status)},
    }


def guard_run(study: Study, run_id: str) -> dict:
    """Check the run's final proposal; write config.json and guard.json, or raise GuardRejected."""
    run = study.paths.run(run_id)
    proposal = fsio.read_json(run.proposal)
    history = ledger.read_history(study.paths)
    holds.ensure_may_run(study, history)
    found = check_proposal(proposal, study)
    if proposal.get("run_id") != run_id:
        found.append(violation("run_id", proposal.get("run_id"), "identity",
                               f"proposal is for another run than {run_id}"))
    code, checked = None, []
    if study.settings.code_mode.enabled and not found:  # the code it names, verified against git itself
        from autopilot.code import runs as code_runs

        problems, code = code_runs.verify(study, proposal)
        found += problems
        checked = ["code:commit", "code:diff_guard", "code:checks_passed", "code:approval"]
    elif proposal.get("code") is not None:
        found.append(violation("code", None, "code", "the proposal names code, but code_mode is not enabled"))
    if found:
        raise GuardRejected(
            f"{run.proposal}: rejected by the guard: " + "; ".join(v["message"] for v in found), found
        )
    config = build_config(study, proposal)
    if code is not None:
        config["code"] = code
    schemas.validate(config, "config_json", what="config.json")
    decision = {
        "run_id": run_id,
        "decision": "accepted",
        "policy": proposal["policy"],
        "checked": ["schema:proposal", "whitelist", "type", "range", "quality_gate", "budget", "kill_switch",
                    *checked],
        "violations": [],
        "rejected_first": proposal["fallback_from"],
        "budget": holds.budget_state(study, history),
        "checked_at": now_iso(),
    }
    schemas.validate(decision, "guard")
    fsio.atomic_write_json(run.guard, decision)
    fsio.atomic_write_json(run.config, config)  # last: config.json exists only for a passed proposal
    return decision
