"""Can a night of promotions be trusted? Whole studies replayed through the real runner, judge and journal.

Each study is a baseline and 99 candidates (100 runs), in generations of 1 or 4. The package's own code decides
every seed and verdict (`_studyreplay`: the guard writes each config, `autopilot.train.runner` trains the seeds the
judge's protocol asks for, the judge writes verdict.json, the journal the ledger); only the trainer is replaced by
a pool of seeds:

* synthetic pools: normal seed values with a known mean (A: 0, B1: +1 sd, B2: +2 sd, sd 1);
* seed pools of the real digits trainer (A: the default baseline, B1: 7 epochs, B2: 12 epochs; the gains in sd
  are measured from the pools), trained once and cached in benchmarks/results/seedpools/.

Measured, per pool family and generation size (README "How a run is judged"):
* A/A studies (every candidate is A): false promotions per study (mean, and P(at least one)), and trainer
  processes per candidate;
* detection: one candidate at a random place is B1 (+1 sd) or B2 (+2 sd): the share of studies that promote it;
* incumbent bias: (the record's mean a run is compared with - the incumbent's true mean) / sd, over every
  comparison against a promoted incumbent (the baseline's record selected nothing); and, at each promotion, the
  bias of the run's record and of its fresh confirmation seeds (which passed a test, and so lean high);
* the choice of Welch's test (synthetic): A/A studies where 10% of the candidates change a noise key and are 3x
  noisier, and the detection of a +2 sd gain that changes a noise key, with noise_keys [lr] against [];
* same-seed pairs (digits): the correlation of accuracy between two configs trained on the same seeds;
* search at equal compute: the default study (real TPE policy, config/config.yaml's judge and tpe settings)
  against Optuna's default TPE with one seed per trial and the same number of trainer processes, on three
  problems with a known optimum (`_problems`): regret ratios, for the TPE settings the study could use
  (`--variants`: which of them the study should default to).

Usage:
    python benchmarks/judge_study.py               # everything: hours on 2 cores (30 synthetic studies of 100 runs
                                                   # take about 3 minutes); --jobs N on a larger machine
    python benchmarks/judge_study.py --quick       # smoke run: synthetic pools, fewer and shorter studies, one
                                                   # short search study
    python benchmarks/judge_study.py --only search --variants default --search-studies 10   # one section
    python benchmarks/judge_study.py --only search --problems logscale --search-budget 100   # a shorter night
The last line is one JSON object; `targets` holds the study-level targets and whether they are met.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import click
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _studyreplay import NormalPool, SeedPool, plain_tpe, replay_search, replay_study  # noqa: E402

from autopilot import fsio, ledger  # noqa: E402
from autopilot.paths import Project  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DIGITS_BASE = {"lr": 0.003, "batch_size": 64, "epochs": 6, "weight_decay": 0.0001, "width": 16, "dropout": 0.1,
               "optimizer": "adam"}
DIGITS_ARMS = {"A": {}, "B1": {"epochs": 7}, "B2": {"epochs": 12}}
TARGETS = {"false_promotions_max": 0.2, "detection_2sd_min": 0.8, "incumbent_bias_sd_max": 0.25,
           "processes_per_aa_candidate_max": 2.5, "search_regret_ratio_max": 1.2}
CANDIDATES = 99  # a study: the baseline and 99 candidates (--quick: QUICK_CANDIDATES)
QUICK_CANDIDATES = 39
KINDS = ("aa", "gain1", "gain2")  # A/A studies; one candidate +1 sd; one candidate +2 sd
VARIANTS = {"default": {}, "startup_4": {"n_startup_trials": 4}, "startup_10": {"n_startup_trials": 10},
            "multivariate": {"multivariate": True}}  # each over the embedded default study's `tpe:` block
TMP = "/dev/shm" if os.path.isdir("/dev/shm") else None  # studies write thousands of small files


def default_study() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def default_judge() -> dict:
    return default_study()["judge"]


def tpe_variant(label: str) -> dict:
    """The TPE settings of a search variant: the embedded default study's, with the variant's changes."""
    return {**(default_study().get("tpe") or {}), **VARIANTS[label]}


# --- pools ------------------------------------------------------------------------------------------------
def synthetic_pools() -> dict:
    return {"A": NormalPool(0.0, 1.0), "B1": NormalPool(1.0, 1.0), "B2": NormalPool(2.0, 1.0),
            "N": NormalPool(0.0, 3.0)}


def digits_pools(n_a: int, n_b: int) -> dict:
    from _seedpool import cached_pool

    pools = {}
    for arm, change in DIGITS_ARMS.items():
        values, rows = cached_pool({**DIGITS_BASE, **change}, n_a if arm == "A" else n_b, first_seed=1000)
        pools[arm] = SeedPool([float(v) for v in values], [r.astype(np.float64) for r in rows])
    return pools


# --- one study --------------------------------------------------------------------------------------------
def arms_for(kind: str, rng: np.random.Generator, candidates: int = CANDIDATES) -> list[str]:
    arms = ["A"] * candidates
    if kind.startswith("gain"):
        arms[int(rng.integers(candidates))] = {"gain1": "B1", "gain2": "B2", "gain2_noisy": "B2w"}[kind]
    if kind == "aa_noisy":
        for i in np.flatnonzero(rng.random(candidates) < 0.1):
            arms[i] = "N"
    return arms


def one_study(task: tuple) -> dict:
    """Replay one study and reduce it to its figures (run in a worker process)."""
    pools, judge, kind, gen, seed, candidates = task
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(seed)
    arms = arms_for(kind, rng, candidates)
    sd = pools["A"].sd
    with tempfile.TemporaryDirectory(dir=TMP) as tmp:
        result = replay_study(Path(tmp), judge, pools, arms, gen, seed)
        verdicts = {e["run_id"]: fsio.read_json(Project(Path(tmp)).study("replay").run(e["run_id"]).verdict)
                    for e in result.history}
    arm_of = {f"{i + 1:05d}": arm for i, arm in enumerate(["A", *arms])}
    true = {run: pools[arm].mean for run, arm in arm_of.items()}
    changes = [b for a, b in zip(result.incumbents, result.incumbents[1:]) if b != a]
    promoted = {e["run_id"] for e in result.history if e["verdict"] == "improved"}
    bias = [(v["incumbent_value"] - true[v["compared_to"]]) / sd for v in verdicts.values()
            if v["compared_to"] in promoted and v["incumbent_value"] is not None]
    entries = {e["run_id"]: e for e in result.history}
    record = [(np.mean(ledger.unselected_values(entries[r])) - true[r]) / sd for r in changes]
    fresh = [(np.mean(ledger.stage_values(entries[r], "confirm")) - true[r]) / sd for r in changes
             if ledger.stage_values(entries[r], "confirm")]
    return {"false": sum(arm_of[r] in ("A", "N") for r in changes), "detected": any(arm_of[r] != "A" and
            arm_of[r] != "N" for r in changes), "processes": result.processes, "bias": bias,
            "record_at_promotion": record, "fresh_at_promotion": fresh, "by_stage": result.by_stage}


def mean_of(studies: list[dict], key: str) -> float | None:
    values = [b for s in studies for b in s[key]]
    return round(float(np.mean(values)), 4) if values else None


def scenario(pools: dict, judge: dict, kind: str, gen: int, n: int, seed: int, jobs: int,
             candidates: int = CANDIDATES) -> dict:
    """`n` studies of 1 + `candidates` runs; false promotions are counted per 100 runs (a shorter study's
    count scaled up), so that studies of every length report the target's unit."""
    tasks = [(pools, judge, kind, gen, seed * 100_003 + i, candidates) for i in range(n)]
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        studies = pool.map(one_study, tasks)
    false = np.array([s["false"] for s in studies])
    baseline_seeds = 1 + judge["noise_seeds"]
    bias = [b for s in studies for b in s["bias"]]
    stages: dict = {}
    for s in studies:
        for k, v in s["by_stage"].items():
            stages[k] = stages.get(k, 0) + v / n / candidates
    per_100 = 100 / (candidates + 1)
    out = {"studies": n, "runs_per_study": candidates + 1, "false_promotions": int(false.sum()),
           "false_promotions_mean": round(float(false.mean() * per_100), 4),
           "p_any_false_promotion": round(float((false > 0).mean()), 4),
           "processes_per_candidate": round(float(np.mean([(s["processes"] - baseline_seeds) / candidates
                                                          for s in studies])), 3),
           "incumbent_bias_sd": round(float(np.mean(bias)), 4) if bias else None,
           "comparisons_with_promoted_incumbents": len(bias),
           "promoted_incumbents": sum(len(s["record_at_promotion"]) for s in studies),
           "_bias": bias,
           "record_bias_at_promotion_sd": mean_of(studies, "record_at_promotion"),
           "confirm_bias_at_promotion_sd": mean_of(studies, "fresh_at_promotion"),
           "processes_by_stage_per_candidate": {k: round(v, 3) for k, v in sorted(stages.items())}}
    if kind.startswith("gain"):
        out["detection"] = round(float(np.mean([s["detected"] for s in studies])), 4)
    return out


def judge_section(family: str, pools: dict, judge: dict, gens: list[int], n: int, jobs: int,
                  kinds: tuple[str, ...] = KINDS, candidates: int = CANDIDATES) -> dict:
    out = {"gains_sd": {arm: round((pools[arm].mean - pools["A"].mean) / pools["A"].sd, 3) for arm in ("B1", "B2")},
           "seed_sd": round(pools["A"].sd, 5)}
    for gen in gens:
        pooled = []
        for kind in kinds:
            t0 = time.monotonic()
            result = scenario(pools, judge, kind, gen, n, seed=10 * gen + KINDS.index(kind), jobs=jobs,
                              candidates=candidates)
            pooled += result.pop("_bias")
            out[f"g{gen}_{kind}"] = {**result, "seconds": round(time.monotonic() - t0, 1)}
            print(f"{family} g{gen} {kind}: {out[f'g{gen}_{kind}']}", file=sys.stderr, flush=True)
        # the bias every comparison against a promoted incumbent saw, over the three kinds of study
        out[f"g{gen}_incumbent_bias_sd"] = round(float(np.mean(pooled)), 4) if pooled else None
    return out


def welch_section(judge: dict, n: int, jobs: int) -> dict:
    """Stage 2 with Welch's test when a noise key differs (noise_keys [lr]) against always pooled ([])."""
    pools = {**synthetic_pools(), "B2w": NormalPool(2.0, 1.0)}
    out = {}
    for name, keys in (("welch", ["lr"]), ("pooled", [])):
        j = {**judge, "noise_keys": keys}
        out[name] = {"aa_noisy": scenario(pools, j, "aa_noisy", 1, n, seed=71, jobs=jobs),
                     "gain2_noisy_key": scenario(pools, j, "gain2_noisy", 1, n, seed=72, jobs=jobs)}
        for v in out[name].values():
            v.pop("_bias")
        print(f"welch choice {name}: {out[name]}", file=sys.stderr, flush=True)
    return out


# --- search at equal compute ------------------------------------------------------------------------------
def one_search(task: tuple) -> dict:
    problem_name, judge, tpe, budget, seed = task
    warnings.filterwarnings("ignore")
    problem = make_problem(problem_name)
    with tempfile.TemporaryDirectory(dir=TMP) as tmp:
        study = replay_search(Path(tmp), problem, judge, tpe, budget, seed)
    plain = plain_tpe(problem, study["processes"], seed)
    return {"study": study["regret"] / problem.seed_sd, "plain": plain["regret"] / problem.seed_sd,
            "runs": study["runs"], "processes": study["processes"]}


def make_problem(name: str):
    import _problems

    return getattr(_problems, name)()


def search_section(problems: list[str], variants: dict, budget: int, n: int, jobs: int) -> dict:
    out = {"budget_processes": budget, "studies_per_problem": n, "regret_unit": "the problem's seed sd"}
    judge = default_judge()
    for name in problems:
        make_problem(name)  # builds (and caches) a tabular problem's pools before the workers start
        out[name] = {}
        for label, tpe in variants.items():
            tasks = [(name, judge, tpe, budget, 7919 * i + 17) for i in range(n)]
            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                rows = pool.map(one_search, tasks)
            study, plain = np.array([r["study"] for r in rows]), np.array([r["plain"] for r in rows])
            out[name][label] = {"study_regret": round(float(study.mean()), 4),
                                "plain_tpe_regret": round(float(plain.mean()), 4),
                                "ratio": round(float(study.mean() / plain.mean()), 3),
                                "ratio_90ci": ratio_interval(study, plain),
                                "runs_per_study": round(float(np.mean([r["runs"] for r in rows])), 1)}
            print(f"search {name} {label}: {out[name][label]}", file=sys.stderr, flush=True)
    return out


def ratio_interval(study: np.ndarray, plain: np.ndarray, samples: int = 2000) -> list[float]:
    """90% bootstrap interval of mean(study) / mean(plain), resampling the paired studies."""
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(study), size=(samples, len(study)))
    ratios = study[idx].mean(axis=1) / np.maximum(plain[idx].mean(axis=1), 1e-12)
    return [round(float(q), 3) for q in np.quantile(ratios, [0.05, 0.95])]


def same_seed_correlation(pools: dict, n: int = 40) -> dict:
    """Correlation of accuracy across configs on the same seeds (the pools share their first seed numbers)."""
    a = np.asarray(pools["A"].values[:n])
    return {arm: round(float(np.corrcoef(a, np.asarray(pools[arm].values[:n]))[0, 1]), 3) for arm in ("B1", "B2")}


# --- the report -------------------------------------------------------------------------------------------
def check_targets(judge_out: dict, search_out: dict | None) -> dict:
    aa = [v for fam in judge_out.values() for k, v in fam.items() if k.endswith("_aa")]
    gain2 = [v for fam in judge_out.values() for k, v in fam.items() if k.endswith("_gain2")]
    biases = [v for fam in judge_out.values() for k, v in fam.items() if k.endswith("_incumbent_bias_sd")
              and v is not None]
    got, met = {}, {}
    if aa and gain2:
        got = {"false_promotions": max(v["false_promotions_mean"] for v in aa),
               "detection_2sd": min(v["detection"] for v in gain2),
               "incumbent_bias_sd": max(biases, key=abs) if biases else 0.0,
               "processes_per_aa_candidate": max(v["processes_per_candidate"] for v in aa)}
        met = {"false_promotions": got["false_promotions"] <= TARGETS["false_promotions_max"],
               "detection_2sd": got["detection_2sd"] >= TARGETS["detection_2sd_min"],
               "incumbent_bias_sd": abs(got["incumbent_bias_sd"]) <= TARGETS["incumbent_bias_sd_max"],
               "processes_per_aa_candidate":
                   got["processes_per_aa_candidate"] <= TARGETS["processes_per_aa_candidate_max"]}
    if search_out and any(isinstance(v, dict) and "default" in v for v in search_out.values()):
        default = [search_out[p]["default"]["ratio"] for p in search_out if isinstance(search_out[p], dict)
                   and "default" in search_out[p]]
        got["search_regret_ratio"] = max(default)
        met["search_regret_ratio"] = got["search_regret_ratio"] <= TARGETS["search_regret_ratio_max"]
    return {"limits": TARGETS, "worst": got, "met": met, "all_met": all(met.values())}


SECTIONS = ("synthetic", "digits", "welch", "search")


@click.command()
@click.option("--quick", is_flag=True,
              help="Smoke run: synthetic pools, generation size 1, A/A and +2 sd studies only, fewer and shorter "
                   f"studies ({QUICK_CANDIDATES + 1} runs; false promotions are still counted per 100 runs).")
@click.option("--studies", type=int, help="Studies per scenario (default 100; --quick: 10).")
@click.option("--search-studies", type=int, help="Studies per search problem and setting (default 30; quick 1).")
@click.option("--search-budget", type=click.IntRange(min=20), default=200, show_default=True,
              help="Trainer processes each search study (and plain TPE) may use: 200 is about a 100-run study, "
                   "the length of the judging figures' studies (--quick: 40).")
@click.option("--only", "only", type=click.Choice(SECTIONS), multiple=True,
              help="Measure only these sections (repeat the option); default: all of them (--quick: synthetic and "
                   "one search problem).")
@click.option("--variants", default="default,startup_10,multivariate", show_default=True,
              help="TPE settings the search section compares, comma-separated: default (config/config.yaml's), "
                   f"or that with one change: {', '.join(v for v in VARIANTS if v != 'default')}.")
@click.option("--problems", default="mixed,logscale,digits_grid", show_default=True,
              help="Search problems (benchmarks/_problems.py), comma-separated; digits_grid trains 648 seeds once.")
@click.option("--jobs", type=int, default=min(2, os.cpu_count() or 1), show_default=True, help="Worker processes.")
@click.option("--skip-search", is_flag=True, help="Only the judge's figures.")
def main(quick: bool, studies: int | None, search_studies: int | None, search_budget: int, only: tuple[str, ...],
         variants: str, problems: str, jobs: int, skip_search: bool) -> None:
    t0 = time.monotonic()
    judge = default_judge()
    n = studies or (10 if quick else 100)
    sections = set(only or (("synthetic", "search") if quick else SECTIONS)) - ({"search"} if skip_search else set())
    candidates = QUICK_CANDIDATES if quick else CANDIDATES
    out = {"quick": quick, "runs_per_study": candidates + 1, "judge_settings": judge, "judge": {}}
    if "synthetic" in sections:
        kinds = ("aa", "gain2") if quick else KINDS  # quick: what the targets need
        out["judge"]["synthetic"] = judge_section("synthetic", synthetic_pools(), judge, [1] if quick else [1, 4],
                                                  n, jobs, kinds, candidates)
    if "digits" in sections:
        pools = digits_pools(240, 40)
        out["judge"]["digits"] = judge_section("digits", pools, judge, [1, 4], n, jobs)
        out["judge"]["digits"]["same_seed_correlation"] = same_seed_correlation(pools)
    if "welch" in sections:
        out["welch_choice"] = welch_section(judge, n, jobs)
    search = None
    if "search" in sections:
        labels = ["default"] if quick else variants.split(",")
        unknown = [v for v in labels if v not in VARIANTS]
        if unknown:
            raise click.BadParameter(f"unknown TPE variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}",
                                     param_hint="--variants")
        chosen = {name: tpe_variant(name) for name in labels}
        search = search_section(["mixed"] if quick else problems.split(","), chosen, 40 if quick else search_budget,
                                search_studies or (1 if quick else 30),
                                jobs)
        out["search"] = search
    out["targets"] = check_targets(out["judge"], None if quick else search)
    out["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
