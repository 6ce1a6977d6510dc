"""The free-space guard: a study holds before a run when the runs' disk is low, says why, and goes on by itself."""

from __future__ import annotations

import json
import subprocess
from collections import namedtuple
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from helpers import env, make_project, snakemake
from ops_study import entry, write_history

from autopilot import fsio, holds, ledger
from autopilot.cli import main
from autopilot.errors import LoopHalted
from autopilot.ops import control
from autopilot.paths import Project
from autopilot.registry import disk
from autopilot.study import Study

Usage = namedtuple("Usage", "total used free")
GIB = 2**30


def study_at(root: Path) -> Study:
    study = Study.load(Project(root), root / "config" / "config.yaml")
    study.freeze()
    return study


def free(gib: float):
    return lambda path: Usage(100 * GIB, 100 * GIB - int(gib * GIB), int(gib * GIB))


def test_the_threshold_is_the_setting_or_twice_the_last_runs_checkpoints_and_at_least_a_gib(tmp_path):
    study = study_at(make_project(tmp_path / "p"))
    assert disk.threshold(study) == (GIB, "the 1 GiB minimum (retention.min_free_gib: null)")
    for run_id, size in (("00001", 3 * GIB), ("00002", 2 * GIB)):
        fsio.append_jsonl(study.paths.retention_log, {
            "what": "run", "run_id": run_id, "kept": "final", "removed": [], "freed_bytes": 0,
            "checkpoint_bytes": size, "at": "2026-01-01T00:00:00+00:00"})
    assert disk.threshold(study) == (4 * GIB, "twice the 2.0 GiB of run 00002's checkpoints")
    study = study_at(make_project(tmp_path / "q", retention={"min_free_gib": 0.5}))
    assert disk.threshold(study) == (GIB // 2, "retention.min_free_gib=0.5")
    assert disk.free_space_hold(study, free(0.6)) is None
    reason = disk.free_space_hold(study, free(0.25))
    assert reason.startswith("disk low: 256.0 MiB free on the file system of ") and "512.0 MiB" in reason


def test_a_low_disk_holds_the_study_in_paused_json_the_labbook_and_status_then_lifts_itself(tmp_path):
    root = make_project(tmp_path / "p", notify={"command": ["sh", "-c", "cat >> told.jsonl"]})
    study = study_at(root)
    write_history(root, [entry("00001", "baseline", 0.8)], curves=False)
    history = ledger.read_history(study.paths)
    reason = control.hold_if_disk_low(study, free(0.2))
    assert reason and reason.startswith("disk low")
    paused = fsio.read_json(study.paths.paused)
    assert paused["by"] == "the free-space check" and paused["reason"] == reason and paused["resumed_at"] is None
    assert "## Paused by the free-space check" in study.paths.labbook.read_text()
    assert holds.halt_reason(study, history) == f"study paused: {reason}; `autopilot resume` continues"
    told = [json.loads(line) for line in (root / "told.jsonl").read_text().splitlines()]
    assert [t["event"] for t in told] == ["disk_low"] and told[0]["details"]["need_bytes"] == GIB
    control.hold_if_disk_low(study, free(0.2))  # still low: no second section, no second message
    assert study.paths.labbook.read_text().count("Paused by the free-space check") == 1
    assert len((root / "told.jsonl").read_text().splitlines()) == 1
    assert control.hold_if_disk_low(study, free(5)) is None
    assert fsio.read_json(study.paths.paused)["resumed_at"] is not None
    assert "## Resumed by the free-space check" in study.paths.labbook.read_text()
    assert holds.halt_reason(study, history) is None


def test_the_disk_check_neither_replaces_nor_lifts_a_pause_for_failures(tmp_path):
    root = make_project(tmp_path / "p")
    study = study_at(root)
    control.pause_study(study, "5 of the last 10 runs failed", by="the failure-rate check", last_run="00010")
    control.hold_if_disk_low(study, free(0.1))
    control.hold_if_disk_low(study, free(50))
    paused = fsio.read_json(study.paths.paused)
    assert paused["by"] == "the failure-rate check" and paused["resumed_at"] is None


def test_no_run_starts_while_the_disk_is_low_and_the_first_step_of_a_run_records_the_hold(tmp_path):
    root = make_project(tmp_path / "p", retention={"min_free_gib": 10**9})  # more than any disk has: full
    study = study_at(root)
    with pytest.raises(LoopHalted, match="disk low"):
        holds.ensure_may_run(study, [])
    assert not study.paths.paused.exists()  # the check itself writes nothing (`autopilot status` asks it too)
    result = CliRunner().invoke(main, ["--root", str(root), "propose", "--run", "00001"])
    assert result.exit_code == 1 and "disk low" in result.output
    assert fsio.read_json(study.paths.paused)["by"] == "the free-space check"
    assert not study.paths.run("00001").proposal.exists()


@pytest.mark.slow
def test_a_full_disk_holds_the_workflow_with_the_reason_shown_and_the_study_goes_on_after(tmp_path):
    """The real workflow: the baseline trains and is promoted; then a disk that is too full for the next run (a
    threshold above any free space) holds the study before it starts, in status, labbook and paused.json; once
    there is room the next invocation goes on by itself."""
    root = make_project(tmp_path / "p", iterations=1)
    snakemake(root)
    config_path = root / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config_path.write_text(yaml.safe_dump({**config, "retention": {"min_free_gib": 10**9}}))
    proc = snakemake(root)
    assert "disk low" in proc.stderr
    study_dir = root / "runs" / "digits_cnn"
    assert sorted(p.name for p in study_dir.glob("0*")) == ["00001"]
    paused = fsio.read_json(study_dir / "paused.json")
    assert paused["by"] == "the free-space check" and "(retention.min_free_gib=1e+09)" in paused["reason"]
    status = json.loads(subprocess.run(["autopilot", "status", "--json"], cwd=root, env=env(), capture_output=True,
                                       text=True, check=True).stdout)
    assert status["halted"].startswith("study paused: disk low") and status["study_paused"] == paused["reason"]
    assert "Paused by the free-space check" in (study_dir / "labbook.md").read_text()
    config_path.write_text(yaml.safe_dump(config))
    snakemake(root)
    assert (study_dir / "00002" / "verdict.json").exists()
    assert fsio.read_json(study_dir / "paused.json")["resumed_at"] is not None
    champion = fsio.read_json(root / "models" / "digits_cnn" / "current" / "champion.json")
    assert champion["run_id"] == "00001" and champion["test"]["examples"] == 359
    assert 0.0 < champion["test"]["metric"]["value"] <= 1.0
