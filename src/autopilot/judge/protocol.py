"""The seed protocol: which seeds a run trains, what each one is for, and what they decide.

A study is hundreds of comparisons, so the protocol is built to be right over a whole night, not only once.
Seeds are the unit (one seed's errors move together across examples), and every seed has one job:

1. **Baseline.** The study's first run (the first of its generation when no run was promoted before) trains
   1 + `noise_seeds` seeds. None of them selected it, so all of them are its record.
2. **Incumbent seed.** While the incumbent's record holds fewer than `incumbent_seeds` seeds, every candidate
   first trains one more seed of the *incumbent's* config for it (SMAC's intensifier: the incumbent gains a seed,
   up to a cap, each time it is challenged). A new record soon rests on as many seeds as the baseline's: its mean
   is steadier, every later test is sharper, and the two stages of a test, which share the record, are less
   correlated (one unlucky-low record cannot let a challenger through both). Every challenger adds one, whatever
   its own result: were only challengers that beat the record to add to it, a record that came out high would
   grow (and be corrected) more slowly than one that came out low. (Not with `data.source: queue`, where each
   run trains on another file.)
3. **Screen.** A candidate trains one seed. Unless it beats the mean of the incumbent's record it stops there:
   half of the runs of an equal config stop after one process, and the optimizer still learns from that seed.
4. **Selection** (stage 1). `select_seeds` more seeds; together with the screen seed they must beat the
   incumbent's record by a one-sided pooled t-test at `alpha`. This stage *selects*: its seeds are kept for
   the optimizer and the noise, never for ranking the run: they are biased upward by having passed.
5. **Confirmation** (stage 2). `confirm_seeds` fresh seeds, which played no part in selecting the run, must
   beat the incumbent's record on their own, at `confirm_alpha`. Only then is the run `improved` (promoted).
   In a generation every promoted run has such fresh seeds, and the new incumbent is the one with the best
   fresh mean, not the largest delta (`autopilot.ledger.best_entry`).
6. **Record.** A promoted run trains `record_seeds` more seeds, which decide nothing: they are its record, the
   mean and spread every later run is compared with. The seeds that selected it carry the luck that got them
   through (a run promoted on its selecting seeds is +0.7 to +1.0 sd too high), and even the fresh ones passed a
   test; these did not. The next challengers add seeds to it (step 2) until it holds `incumbent_seeds`.

False promotions need a false pass of both stages on independent seeds: about alpha x confirm_alpha per
candidate of an equal config instead of alpha (measured by `benchmarks/judge_study.py`, README "How a run is
judged").

The noise is a pooled within-config spread (`ledger.noise_groups`: stage-1 seeds without the screen seed,
confirmation seeds, and each record): each side of a test has the pooled noise of its *noise regime*, the runs
whose `noise_keys` lie near its own (`autopilot.judge.regimes`; the study's whole pool when it has no noise keys
or the regime too few degrees of freedom), so a quiet candidate is not judged with the spread of the loud
configs a search explores, nor a loud one with a quiet spread. Welch's test replaces the pooled one in stage 2
only when a key of `noise_keys` differs from the *incumbent's* value (not the baseline's), or in code mode when
the run trains other code than the incumbent (`welch_keys` then holds `code`); each side's variance is floored
at its regime's pooled one, so the incumbent's spread never rests on its own few seeds, and a candidate's
agreeing seeds prove nothing. Stage 1 keeps the pooled noises: it is a filter, and the fresh seeds decide.

Edge cases: a seed that failed (an error, a timeout, a NaN metric) ends the run as `failed` (a config that
fails on some seeds is not promoted); a seed of the incumbent's config that failed is recorded and skipped.
A stopped or skipped seed makes the run `stopped` / `skipped`: it is never judged on fewer seeds. In a study
whose seeds all agree exactly (a trainer that ignores its seed) more seeds would repeat the same number, so a
candidate stops after its screen and the paired bootstrap over examples decides (no per-example scores:
`inconclusive`). A run over one of the study's limits (`judge.constraints`) is `over_limit`: never promoted.

`walk` replays the protocol over the seeds on disk and says what to train next (`need`) or how the run ends:
the runner and the judge call it alike, so they cannot disagree, and a run killed midway picks up where it was.

Usage:
    situation = situation_of(study, run_id)
    outcome = walk(situation, ledger.seed_records(study.paths.run(run_id)))
    outcome.need      # Need(stage="select", count=2), or None once the run is decided
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from autopilot import ledger
from autopilot.judge import regimes, stats
from autopilot.judge.stats import Noise
from autopilot.ledger import SeedRecord
from autopilot.settings import Judge
from autopilot.study import Study

log = logging.getLogger(__name__)

NOT_JUDGED = ("stopped", "skipped")  # a seed ended by control/stop or control/skip ends the run so
CONTROL_FILE = {"stopped": "control/stop", "skipped": "control/skip"}
LIMITS = {  # judge.constraints key -> (cost name, unit) of a run's costs
    "max_peak_memory_mb": ("peak_memory_mb", "MB"),
    "max_wall_seconds": ("wall_seconds", "s"),
    "max_parameters": ("parameters", "parameters"),
}


@dataclass(frozen=True)
class Situation:
    """What a run is judged against: fixed for the whole run, whatever its siblings finish meanwhile."""

    run_id: str
    settings: Judge
    maximize: bool
    history: list[dict]  # the ledger before the run's generation
    incumbent: dict | None  # its history entry
    place: int  # the run's place in its generation
    welch_keys: tuple[str, ...] = ()  # noise keys whose value differs from the incumbent's
    params: dict = field(default_factory=dict)  # the run's hparams (its noise regime)
    topups: bool = True  # may the run train seeds of the incumbent's config for its record
    incumbent_examples: tuple[np.ndarray, ...] = ()  # per-example scores of the incumbent's unselected seeds
    examples_maximize: bool | None = None  # per-example scores have their own goal (a loss per example for an
    bootstrap_seed: int = 0                # accuracy...); None: the metric's

    def orient(self, values: list[float]) -> list[float]:
        return values if self.maximize else [-v for v in values]


@dataclass(frozen=True)
class Need:
    stage: str
    count: int


@dataclass
class Outcome:
    """How far the protocol got with the seeds on disk: what to train next, or the decision."""

    need: Need | None = None
    verdict: str | None = None
    stage: str | None = None  # the last stage the run reached
    reason: str = ""
    tests: dict = field(default_factory=dict)  # screen / select / confirm: the seed tests (oriented units)
    deciding: str | None = None  # which of `tests` decided
    bootstrap: dict | None = None  # the decision of a zero-noise study
    noise: Noise | None = None
    incumbent_values: list[float] = field(default_factory=list)
    deciding_values: list[float] = field(default_factory=list)
    costs: dict = field(default_factory=dict)
    over_limit: list[str] = field(default_factory=list)


# --- the situation of a run ------------------------------------------------------------------------------
def situation_of(study: Study, run_id: str, history: list[dict]) -> Situation:
    """The run's situation from the ledger of earlier generations (`history`), the registry's events (a person
    may have chosen the incumbent) and the files of the run."""
    run = study.paths.run(run_id)
    best = ledger.incumbent(history, ledger.champion_events(study.models))
    config = ledger.read_path(run.config) or {}
    settings = study.settings.judge
    welch = () if best is None else differing_noise_keys(config.get("hparams", {}), best, settings)
    if best is not None and ledger.code_changed(config, best):
        welch += ("code",)  # code mode: a patch may change the noise as a noise key may
    return Situation(
        run_id=run_id, settings=settings, maximize=study.maximize, history=history, incumbent=best,
        place=ledger.run_place(run), welch_keys=welch, params=config.get("hparams", {}),
        topups=may_top_up(study, best),
        incumbent_examples=() if best is None else incumbent_examples(study, best),
        examples_maximize=None if (goal := ledger.example_goal(run)) is None else goal == "maximize",
        bootstrap_seed=ledger.derive_seed(study.settings.seed, run_id, 7),
    )


def may_top_up(study: Study, incumbent: dict | None) -> bool:
    """Seeds of the incumbent's config can be trained again: its config.json is there, the study does not
    train each run on another file of the queue (data.source: queue), and it is not a run of code mode (whose
    seeds train from the run's own checkout)."""
    if incumbent is None or study.settings.data.source == "queue":
        return False
    config = study.paths.run(incumbent["run_id"]).config
    return config.exists() and not (ledger.read_path(config) or {}).get("code")


def differing_noise_keys(hparams: dict, incumbent: dict, settings: Judge) -> tuple[str, ...]:
    """The noise keys whose value differs from the incumbent's (a float up to rounding is the same value)."""
    out = []
    for key in settings.noise_keys:
        if key not in hparams or key not in incumbent.get("params", {}):
            continue
        a, b = hparams[key], incumbent["params"][key]
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
        if not (math.isclose(a, b, rel_tol=1e-9) if numbers else a == b):
            out.append(key)
    return tuple(out)


def incumbent_examples(study: Study, incumbent: dict) -> tuple[np.ndarray, ...]:
    """Per-example scores of the incumbent's unselected seeds, from its folder (none if it was pruned)."""
    run = study.paths.run(incumbent["run_id"])
    unselected = {s["k"] for s in ledger.entry_seeds(incumbent) if s["stage"] in ledger.UNSELECTED_STAGES + ("legacy",)}
    return tuple(s.per_example for s in ledger.seed_records(run)
                 if s.stage != "incumbent" and s.k in unselected and s.ok and s.per_example is not None)


# --- the protocol ------------------------------------------------------------------------------------------
def walk(sit: Situation, seeds: list[SeedRecord]) -> Outcome:
    """Replay the protocol over the run's seeds: the next seeds it needs, or how the run ends."""
    own = sorted((s for s in seeds if s.stage != "incumbent"), key=lambda s: s.k)
    topups = [s for s in seeds if s.stage == "incumbent"]
    cut = next((s for s in own + topups if s.status in NOT_JUDGED), None)
    if cut is not None:
        where = "of the incumbent's config" if cut.stage == "incumbent" else f"({stage_of(sit, cut)})"
        return Outcome(verdict=cut.status, stage=stage_of(sit, cut),
                       reason=f"seed {cut.k} {where} was {cut.status} by {CONTROL_FILE[cut.status]}: the run is "
                              "not judged on fewer seeds than the protocol asks for")
    failed = next((s for s in own if not s.ok), None)
    if failed is not None:
        return Outcome(verdict="failed", stage=stage_of(sit, failed),
                       reason=f"seed {failed.k} ({stage_of(sit, failed)}) failed: {failed.error}"
                              + ("" if failed.k == 0 else "; a config that fails on some seeds is not promoted"))
    if sit.incumbent is None:
        return walk_without_incumbent(sit, own)
    return walk_candidate(sit, own, topups)


def stage_of(sit: Situation, seed: SeedRecord) -> str:
    """A seed's stage; seed 0 is the baseline's or the screen (its config.json was written by the guard)."""
    if seed.k == 0 and seed.stage != "incumbent":
        return "baseline" if sit.incumbent is None else "screen"
    return seed.stage


def walk_without_incumbent(sit: Situation, own: list[SeedRecord]) -> Outcome:
    s = sit.settings
    if sit.place > 0:  # the generation's first run is the baseline: one baseline, not k
        if not own:
            return Outcome(need=Need("screen", 1))
        return Outcome(verdict="inconclusive", stage="screen", deciding_values=[own[0].value],
                       costs=costs_of(own),
                       reason="no run was promoted before this generation: its first run is the baseline, so this "
                              "run was not compared (its seed still informs the optimizer)")
    want = 1 + s.noise_seeds
    if len(own) < want:
        return Outcome(need=Need("baseline", want - len(own)))
    values = [x.value for x in own]
    noise = stats.pooled_noise([values])
    note = limits_note(s, costs_of(own))
    return Outcome(verdict="baseline", stage="baseline", noise=noise, deciding_values=values, costs=costs_of(own),
                   reason=f"first successful run: the baseline ({len(own)} seeds, seed sd {noise.sd:.4g}); all "
                          "of its seeds are its record" + (f"; note: it breaks {note}" if note else ""))


def walk_candidate(sit: Situation, own: list[SeedRecord], topups: list[SeedRecord]) -> Outcome:
    s = sit.settings
    if (sit.topups and not topups and len(ledger.incumbent_values(sit.history, sit.incumbent)) < s.incumbent_seeds
            and not stats.pooled_noise(ledger.noise_groups(sit.history)).zero):
        return Outcome(need=Need("incumbent", 1))
    if not own:
        return Outcome(need=Need("screen", 1))
    screen = own[0]
    record, noise, sides = incumbent_record(sit, own, topups, ("screen",))
    out = Outcome(stage="screen", incumbent_values=record, deciding_values=[screen.value], noise=noise,
                  deciding="screen")
    out.tests["screen"] = stats.seed_test(sit.orient([screen.value]), sit.orient(record), sides[0], s.alpha,
                                          s.confidence, inc_noise=sides[1])
    if limit_check(s, own, out):
        return out
    if noise.zero:
        return decide_by_examples(sit, own, out)
    if sit.orient([screen.value])[0] <= float(np.mean(sit.orient(record))):
        return finish(out, "inconclusive",
                      "its screen seed did not beat the incumbent's mean, so no further seeds were trained")
    select = [x for x in own if x.stage == "select"]
    if len(select) < s.select_seeds:
        return Outcome(need=Need("select", s.select_seeds - len(select)))
    _, noise, sides = incumbent_record(sit, own, topups, ("screen", "select"))
    chosen = [screen, *select]
    out = Outcome(stage="select", incumbent_values=record, noise=noise, tests=out.tests, deciding="select",
                  deciding_values=[x.value for x in chosen])
    out.tests["select"] = stats.seed_test(sit.orient(out.deciding_values), sit.orient(record), sides[0], s.alpha,
                                          s.confidence, inc_noise=sides[1])
    if limit_check(s, own, out):
        return out
    if not out.tests["select"]["passed"]:
        return finish(out, "inconclusive", f"its {len(chosen)} stage-1 seeds did not clear the test at "
                                           f"alpha {s.alpha}, so no confirmation seeds were trained")
    confirm = [x for x in own if x.stage == "confirm"]
    if len(confirm) < s.confirm_seeds:
        return Outcome(need=Need("confirm", s.confirm_seeds - len(confirm)))
    _, noise, sides = incumbent_record(sit, own, topups, ("screen", "select", "confirm"))
    out = Outcome(stage="confirm", incumbent_values=record, noise=noise, tests=out.tests, deciding="confirm",
                  deciding_values=[x.value for x in confirm])
    out.tests["confirm"] = stats.seed_test(sit.orient(out.deciding_values), sit.orient(record), sides[0],
                                           s.confirm_alpha, s.confidence, welch=bool(sit.welch_keys),
                                           inc_noise=sides[1])
    if limit_check(s, own, out):
        return out
    if out.tests["confirm"]["passed"]:
        kept = [x for x in own if x.stage == "record"]
        if len(kept) < s.record_seeds:
            return Outcome(need=Need("record", s.record_seeds - len(kept)))
        if limit_check(s, own, out):
            return out
        return finish(out, "improved", f"it cleared stage 1 and its {len(confirm)} fresh confirmation seeds "
                                       f"alone cleared the test at alpha {s.confirm_alpha}; its record is {len(kept)} "
                                       "more seeds that decided nothing")
    return finish(out, "inconclusive", f"it cleared stage 1, but its {len(confirm)} fresh confirmation seeds "
                                       f"did not clear the test at alpha {s.confirm_alpha}: not promoted")


def incumbent_record(sit: Situation, own: list[SeedRecord], topups: list[SeedRecord],
                     stages: tuple[str, ...]) -> tuple[list[float], Noise, tuple[Noise, Noise]]:
    """The incumbent's record, the study's noise and the noise of each side's regime (candidate, incumbent:
    autopilot.judge.regimes) as they stand once the run's seeds of `stages` are in: the run as its ledger line
    will hold it, so its seeds join the noise and the record as they will be journaled (a later stage's seeds
    only once they are being tested, so each stage is decided the same on every walk)."""
    seeds = [{"k": x.k, "stage": stage_of(sit, x), "status": x.status, "value": x.value} for x in own
             if stage_of(sit, x) in stages]
    seeds += [{"k": x.k, "stage": "incumbent", "status": x.status, "value": x.value} for x in topups]
    pending = {"run_id": sit.run_id, "verdict": "pending", "compared_to": sit.incumbent["run_id"], "seeds": seeds,
               "seed_values": [x["value"] for x in seeds if x["stage"] != "incumbent"]}
    history = [*sit.history, pending]
    noise = stats.pooled_noise(ledger.noise_groups(history))
    keys = sit.settings.noise_keys
    sides = (regimes.regime_noise(history, sit.params, keys, noise, exclude=sit.run_id),
             regimes.regime_noise(history, sit.incumbent.get("params") or {}, keys, noise, exclude=sit.run_id))
    return ledger.incumbent_values(history, sit.incumbent), noise, sides


def finish(out: Outcome, verdict: str, why: str) -> Outcome:
    """Set the verdict; a run clearly below the incumbent (one-sided upper bound < 0) is `regressed`."""
    test = out.tests[out.deciding]
    if verdict == "inconclusive" and test.get("upper") is not None and test["upper"] < 0:
        verdict = "regressed"
        why += "; its seeds lie clearly below the incumbent's"
    out.verdict, out.reason = verdict, why
    return out


def decide_by_examples(sit: Situation, own: list[SeedRecord], out: Outcome) -> Outcome:
    """A study without seed noise: the paired bootstrap over examples decides after the screen seed."""
    boot = bootstrap(sit, own[:1])
    out.bootstrap = boot
    if boot is None or "error" in boot:
        why = "no per-example scores" if boot is None else boot["error"]
        return finish(out, "inconclusive", "every seed of the study gave the same value (the trainer ignores its "
                                           f"seed?), so seeds cannot measure noise, and the examples cannot: {why}")
    alpha = sit.settings.alpha * sit.settings.confirm_alpha  # what the two seed stages would have demanded
    verdict = "improved" if boot["p_not_better"] < alpha else "regressed" if boot["p_not_worse"] < alpha \
        else "inconclusive"
    out.verdict = verdict
    out.reason = (f"every seed of the study gave the same value (the trainer ignores its seed?): a p-value of 0 "
                  f"from zero spread would be an artifact, so extra seeds were not trained and the paired "
                  f"bootstrap over {boot['n_examples']} examples decided (one-sided p {boot['p_not_better']:.4g} "
                  f"against {alpha:.4g})")
    return out


def bootstrap(sit: Situation, cand: list[SeedRecord]) -> dict | None:
    """Paired bootstrap of the seed-averaged per-example scores of `cand` against the incumbent's record, for
    the verdict's record (None without per-example scores on both sides; {"error": ...} when they do not pair)."""
    vectors = [x.per_example for x in cand if x.per_example is not None]
    inc = list(sit.incumbent_examples)
    if not vectors or len(vectors) < len(cand) or not inc:
        return None
    lengths = {len(v) for v in vectors + inc}
    if len(lengths) > 1:
        return {"error": f"per-example scores of different lengths ({sorted(lengths)}): the evaluation set must "
                         "stay fixed within a study, so examples cannot be paired"}
    c, i = np.mean(vectors, axis=0), np.mean(inc, axis=0)
    up = sit.maximize if sit.examples_maximize is None else sit.examples_maximize
    diff = c - i if up else i - c
    if not np.all(np.isfinite(diff)):
        return {"error": "per-example scores that are not finite numbers"}
    s = sit.settings
    boot = stats.paired_bootstrap(diff, s.confidence, s.bootstrap_samples, sit.bootstrap_seed)
    if not up:  # the interval in the per-example scores' own units
        boot["low"], boot["high"] = -boot["high"], -boot["low"]
    return {**boot, "confidence": s.confidence, "samples": s.bootstrap_samples, "n_examples": int(len(diff)),
            "n_seeds": len(vectors), "n_incumbent_seeds": len(inc), "example_goal": "maximize" if up else "minimize",
            "method": "paired bootstrap over seed-averaged per-example scores"}


# --- limits ------------------------------------------------------------------------------------------------
def costs_of(seeds: list[SeedRecord]) -> dict:
    """A run's costs: wall seconds of one seed (mean), peak memory (max), parameters (max); None: not reported."""
    done = [x for x in seeds if x.ok]
    walls = [x.wall_seconds for x in done if x.wall_seconds is not None]
    mems = [x.peak_memory_mb for x in done if x.peak_memory_mb is not None]
    params = [x.parameters for x in done if x.parameters is not None]
    return {"wall_seconds": round(float(np.mean(walls)), 3) if walls else None,
            "peak_memory_mb": max(mems) if mems else None, "parameters": max(params) if params else None}


def violations(settings: Judge, costs: dict) -> list[str]:
    """The study's limits (judge.constraints) that these costs break, in words."""
    out = []
    for key, (cost, unit) in LIMITS.items():
        limit, value = getattr(settings.constraints, key), costs.get(cost)
        if limit is not None and value is not None and value > limit:
            out.append(f"{cost} {value:g} {unit} > {key} {limit:g}")
    return out


def limits_note(settings: Judge, costs: dict) -> str:
    return "; ".join(violations(settings, costs))


def limit_check(settings: Judge, own: list[SeedRecord], out: Outcome) -> bool:
    """Record the run's costs; a run over a limit is `over_limit` at once (no more seeds are spent on it)."""
    out.costs = costs_of(own)
    out.over_limit = violations(settings, out.costs)
    if out.over_limit:
        out.verdict = "over_limit"
        out.reason = ("it breaks the study's limits (" + "; ".join(out.over_limit) + "): a run over a limit "
                      "cannot be promoted, whatever its metric")
    return bool(out.over_limit)
