"""End to end: real Snakemake invocations of small studies in a throw-away copy of the project."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import REPO, env, make_project, snakemake

from autopilot import fsio, schemas

pytestmark = pytest.mark.slow

SCHEMA_OF = {
    "proposal.json": "proposal", "guard.json": "guard", "config.json": "config_json",
    "trainer_summary.json": "trainer_summary", "verdict.json": "verdict", "journal_entry.json": "history_entry",
}
RUN_FILES = ("proposal.json", "guard.json", "config.json", "metrics.jsonl", "trainer_summary.json", "train.log",
             "verdict.json", "journal_entry.json")


def study_dir(root: Path, name: str = "digits_cnn") -> Path:
    return root / "runs" / name


def finished_runs(root: Path, name: str = "digits_cnn") -> list[Path]:
    return sorted(p.parent for p in study_dir(root, name).glob("[0-9]*/verdict.json"))


def check_every_json_file(root: Path) -> int:
    """Every JSON file under runs/ parses and validates against its schema; returns how many were checked."""
    checked = 0
    for path in (root / "runs").rglob("*.json"):
        doc = fsio.read_json(path)
        if path.name in SCHEMA_OF:
            schemas.validate(doc, SCHEMA_OF[path.name], what=str(path))
            checked += 1
    for path in (root / "runs").rglob("history.jsonl"):
        for entry in fsio.iter_jsonl(path):
            schemas.validate(entry, "history_entry")
    return checked


def snapshot(runs: list[Path]) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file of the given runs, but their checkpoints (retention removes those)."""
    out = {}
    for run in runs:
        for f in sorted(run.rglob("*")):
            if f.is_file() and "checkpoint" not in f.relative_to(run).parts:
                out[str(f)] = (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
    return out


def test_a_study_advances_and_every_file_matches_its_schema(project):
    snakemake(project)
    runs = finished_runs(project)
    assert [r.name for r in runs] == ["00001", "00002"]
    for run in runs:
        for name in RUN_FILES:
            assert (run / name).exists(), f"{run.name}/{name} missing"
    assert check_every_json_file(project) >= 2 * len(SCHEMA_OF)
    history = [json.loads(line) for line in (study_dir(project) / "history.jsonl").read_text().splitlines()]
    assert [e["run_id"] for e in history] == ["00001", "00002"]
    assert history[0]["verdict"] == "baseline" and len(history[0]["seed_values"]) == 2  # 1 + noise_seeds
    labbook = (study_dir(project) / "labbook.md").read_text()
    assert "## Run 00001: baseline" in labbook and "## Run 00002" in labbook
    summary = fsio.read_json(runs[0] / "trainer_summary.json")
    manifest = summary["manifest"]
    assert manifest["packages"]["torch"] and manifest["data_hash"] and manifest["seed"] == summary["seed"]

    # the next invocation continues where the last one stopped
    snakemake(project, "--config", "iterations=1")
    assert [r.name for r in finished_runs(project)] == ["00001", "00002", "00003"]
    out = subprocess.run(["autopilot", "results"], cwd=project, env=env(), capture_output=True, text=True)
    assert out.returncode == 0 and "00003" in out.stdout and "baseline" in out.stdout


def test_finished_runs_are_never_re_executed(project, tmp_path):
    snakemake(project)
    before = snapshot(finished_runs(project))
    # edit the config, a rule and a package module, then invoke again
    config = yaml.safe_load((project / "config" / "config.yaml").read_text())
    config["search_space"]["lr"]["high"] = 0.05
    config["judge"]["alpha"] = 0.01
    (project / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    loop = project / "rules" / "loop.smk"
    loop.write_text(loop.read_text().replace("> {log} 2>&1", "> {log} 2>&1 # edited"))
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "autopilot", src / "autopilot")
    judge_py = src / "autopilot" / "judge" / "stats.py"
    judge_py.write_text(judge_py.read_text() + "\nEDITED = True\n")
    e = {**env(), "PYTHONPATH": str(src), "AUTOPILOT_SCHEMAS": str(REPO / "schemas")}
    proc = subprocess.run([str(Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "snakemake"), "-c2",
                           "--profile", "profiles/local", "--config", "iterations=1"],
                          cwd=project, env=e, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(finished_runs(project)) == 3
    assert snapshot(finished_runs(project)[:2]) == before
    for run in ("00001", "00002"):
        assert f"wildcards: run={run}" not in proc.stderr


def test_a_study_can_use_its_own_trainer_script(tmp_path):
    root = make_project(tmp_path / "p")  # examples/ comes with the project, as `autopilot init` makes it
    snakemake(root, "--configfile", "examples/softmax_study.yaml", "--config", "iterations=3")
    runs = finished_runs(root, "softmax_digits")
    assert len(runs) == 3
    first = fsio.read_json(runs[0] / "trainer_summary.json")
    assert first["status"] == "completed" and first["metric"]["value"] > 0.5
    assert len(first["per_example"]["values"]) > 300
    assert check_every_json_file(root) >= 3 * len(SCHEMA_OF)
    # the champion: the user trainer's weights copied, and scored once by its own --test on the held-out digits
    champion = fsio.read_json(root / "models" / "softmax_digits" / "current" / "champion.json")
    assert champion["weights"]["format"] == "files" and champion["test"]["examples"] == 359
    assert champion["test"]["metric"]["value"] > 0.5
    # the embedded default study was not touched by the --configfile study
    assert not study_dir(root).exists()


def test_control_stop_halts_the_loop_and_removing_it_resumes(project):
    (project / "control").mkdir()
    (project / "control" / "stop").touch()
    proc = snakemake(project)
    assert "stop requested" in proc.stderr
    assert finished_runs(project) == []
    (project / "control" / "stop").unlink()
    snakemake(project, "--config", "iterations=1")
    assert len(finished_runs(project)) == 1


def test_run_budget_caps_the_study(tmp_path):
    root = make_project(tmp_path / "p", budget={"max_runs": 2})
    snakemake(root, "--config", "iterations=3")
    assert len(finished_runs(root)) == 2
    proc = snakemake(root, "--config", "iterations=1")
    assert "run budget spent" in proc.stderr
    assert len(finished_runs(root)) == 2
