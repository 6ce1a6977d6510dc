"""Generations end to end: real Snakemake invocations with the local profile on 2 cores and no GPU."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from helpers import VENV_BIN, env, make_project, snakemake

from autopilot import fsio, ledger
from autopilot.journal.synthetic import write_runs
from autopilot.paths import Project
from autopilot.study import Study

pytestmark = pytest.mark.slow

# every seed trains 2 s whatever its epochs, so that two runs of a generation surely meet in time
TIMED_BASELINE = {"lr": 0.003, "batch_size": 64, "epochs": 2, "weight_decay": 0.0001, "width": 8, "dropout": 0.1,
                  "optimizer": "adam", "time_budget_s": 2.0}


def max_concurrent(log_text: str, rule: str = "train_model") -> int:
    """Most jobs of `rule` running at once, from the order of starts and ends in Snakemake's log."""
    running, most, starting = set(), 0, False
    for line in log_text.splitlines():
        if re.match(rf"^(local)?rule {rule}:", line):
            starting = True
        elif starting and (m := re.match(r"^\s+jobid: (\d+)", line)):
            running.add(m.group(1))
            most = max(most, len(running))
            starting = False
        elif m := re.match(rf"^Finished jobid: (\d+) \(Rule: {rule}\)", line):
            running.discard(m.group(1))
    return most


def history(root: Path) -> list[dict]:
    return list(fsio.iter_jsonl(root / "runs" / "digits_cnn" / "history.jsonl"))


def test_a_generation_trains_side_by_side_and_the_next_sees_all_its_results(tmp_path):
    root = make_project(tmp_path / "p", generation_size=2, iterations=5, baseline=TIMED_BASELINE)
    proc = snakemake(root)  # -c2, no GPU, no --resources: the cores alone limit the runs training at once
    assert max_concurrent(proc.stderr) == 2
    entries = history(root)
    assert sorted((e["run_id"], e["generation"]) for e in entries) == [
        ("00001", 1), ("00002", 2), ("00003", 2), ("00004", 3), ("00005", 3)]
    assert {e["compared_to"] for e in entries if e["generation"] == 2} == {"00001"}
    best_after_2 = ledger.best_entry([e for e in entries if e["generation"] <= 2])["run_id"]
    assert {e["compared_to"] for e in entries if e["generation"] == 3} == {best_after_2}
    # generation 3 was proposed from every result of generations 1 and 2
    done = sum(e["status"] == "completed" for e in entries if e["generation"] < 3)
    for run_id in ("00004", "00005"):
        proposal = fsio.read_json(root / "runs" / "digits_cnn" / run_id / "proposal.json")
        assert f"replayed {done} finished run(s)" in proposal["rationale"]
    labbook = (root / "runs" / "digits_cnn" / "labbook.md").read_text()
    assert [int(g) for g in re.findall(r"^## Generation (\d+)", labbook, re.MULTILINE)] == [1, 2, 3]
    assert fsio.read_json(root / "runs" / "digits_cnn" / "best.json")["run_id"] == ledger.best_entry(entries)["run_id"]
    table = subprocess.run(["autopilot", "results"], cwd=root, env=env(), capture_output=True, text=True).stdout
    assert "gen" in table  # the results table says which runs trained side by side (◆: on the Pareto front)
    assert [(r, int(g)) for r, g in re.findall(r"^(\d{5})◆? +(\d+) ", table, re.MULTILINE)] == [
        (e["run_id"], e["generation"]) for e in entries]


def test_a_gpu_cap_of_one_trains_one_run_at_a_time(tmp_path):
    root = make_project(tmp_path / "p", generation_size=3, iterations=3, baseline=TIMED_BASELINE)
    snakemake(root, "--config", "iterations=1")  # the baseline
    proc = snakemake(root, "--resources", "gpu=1", "--config", "iterations=2")
    assert max_concurrent(proc.stderr) == 1
    assert len(history(root)) == 3


def test_the_dag_holds_the_new_generations_only_and_each_waits_for_the_whole_previous_one(tmp_path):
    root = make_project(tmp_path / "p", generation_size=2)
    write_runs(Study.load(Project(root), root / "config" / "config.yaml"), 30)
    proc = subprocess.run([str(VENV_BIN / "snakemake"), "-n", "-c1", "--profile", "profiles/local", "--config",
                           "iterations=4"], cwd=root, env=env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert re.search(r"^total\s+26$", out, re.MULTILINE)  # ingest + 4 runs x 6 steps + all
    assert "run=00030" not in out and "00030/verdict.json" not in out
    propose_inputs = re.findall(r"rule propose_run:\n\s+input: (.*)\n", out)
    assert sorted(propose_inputs) == sorted(["queue/.ingest.done"] * 2 + [
        "runs/digits_cnn/00031/verdict.json, runs/digits_cnn/00032/verdict.json"] * 2)


def test_a_generation_killed_midway_resumes_with_the_same_proposals_and_a_consistent_ledger(tmp_path):
    from test_chaos import kill_all

    root = make_project(tmp_path / "p", generation_size=3, baseline=TIMED_BASELINE).resolve()
    snakemake(root, "--config", "iterations=1")
    study = root / "runs" / "digits_cnn"
    proc = subprocess.Popen([str(VENV_BIN / "snakemake"), "-c2", "--profile", "profiles/local", "--config",
                             "iterations=3"], cwd=root, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(study.glob("0000[234]/proposal.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    kill_all(root)  # snakemake, its jobs and the trainers, mid-generation
    proc.wait()
    before = {p.parent.name: fsio.read_json(p) for p in study.glob("0000[234]/proposal.json")}
    assert before, "no proposal of generation 2 was written before the kill"
    snakemake(root, "--unlock")
    snakemake(root, "--config", "iterations=3")
    entries = history(root)
    assert sorted(e["run_id"] for e in entries) == ["00001", "00002", "00003", "00004"]
    for run_id, proposal in before.items():  # a run proposed before the kill kept its place and its point
        after = fsio.read_json(study / run_id / "proposal.json")
        assert (after["generation"], after["generation_index"], after["overrides"]) == (
            proposal["generation"], proposal["generation_index"], proposal["overrides"])
    for e in entries:  # every run was judged against the best run before its generation
        best = ledger.best_entry(ledger.before_generation(entries, e["generation"]))
        judged = best is not None and e["verdict"] not in ("failed", "stopped", "skipped")
        assert e["compared_to"] == (best["run_id"] if judged else None)
        assert (best is None) == (e["verdict"] == "baseline")
