"""`autopilot status` and `autopilot watch`: what a person (or a script) sees, from the files alone."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import make_project
from ops_study import entry, write_history

from autopilot import fsio, schemas
from autopilot.cli import main
from autopilot.ops import control

HISTORY = [
    entry("00001", "baseline", 0.80, policy="baseline"),
    entry("00002", "inconclusive", 0.79),
    entry("00003", "improved", 0.84),
    entry("00004", "failed", None),
    entry("00005", "regressed", 0.70, policy="random"),
    entry("00006", "inconclusive", 0.83, fallback_from="llm:openai: timed out"),
    entry("00007", "skipped", None),
]


def invoke(root: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--root", str(root), *args], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def busy(tmp_path) -> Path:
    """A project in the middle of run 00008, with queued files, a pending stop and a daemon."""
    root = make_project(tmp_path / "p", budget={"max_runs": 50, "max_total_seconds": 1000})
    for e in HISTORY:
        schemas.validate(e, "history_entry")
    write_history(root, HISTORY, curves=False)
    (root / "runs" / "digits_cnn" / "00008").mkdir()
    fsio.atomic_write_json(root / "status" / "status.json", {
        "phase": "train", "study": "digits_cnn", "run": "00008", "seed_index": 1, "step": 120, "total_steps": 400,
        "loss": 0.4321, "eta_seconds": 95.0, "heartbeat": time.time() - 3})
    for priority, n in (("high", 2), ("normal", 0), ("low", 3)):
        for i in range(n):
            (root / "queue" / priority).mkdir(parents=True, exist_ok=True)
            (root / "queue" / priority / f"000000000000{i}-0000-data{i}.jsonl").write_text("{}\n")
    (root / "queue" / "high" / "0000000000000-0000-data0.report.json").write_text("{}")  # not an entry
    (root / "control").mkdir()
    (root / "control" / "stop-after-run").touch()
    return root


def test_status_json_has_everything_a_script_needs(busy):
    snap = json.loads(invoke(busy, "status", "--json"))
    live = snap["live"]
    assert (live["phase"], live["run"], live["seed_index"], live["step"], live["total_steps"]) == \
        ("train", "00008", 1, 120, 400)
    assert live["loss"] == 0.4321 and live["eta_seconds"] == 95.0
    assert 2 <= live["heartbeat_age"] < 30 and live["active"] and not live["stale"]
    assert {k: snap["queue"][k] for k in ("high", "normal", "low")} == {"high": 2, "normal": 0, "low": 3}
    assert snap["best"] == {"run_id": "00003", "value": 0.84, "seeds": 1, "metric": "val_accuracy",
                            "goal": "maximize"}
    assert [v["run_id"] for v in snap["last_verdicts"]] == ["00007", "00006", "00005", "00004", "00003"]
    assert snap["last_verdicts"][0]["verdict"] == "skipped"
    assert snap["policies"] == {"baseline": 1, "tpe": 5, "random": 1}
    assert snap["fallbacks"] == 1
    assert snap["runs"] == {"finished": 7, "unfinished": ["00008"]}
    budget = snap["budget"]
    assert (budget["runs_left"], budget["seconds_used"], budget["seconds_left"]) == (43, 87.5, 912.5)
    assert "stop after the current run requested" in snap["halted"]
    assert snap["control"]["stop-after-run"] and not snap["control"]["pause"]


def test_status_for_people_shows_the_same_and_flags_a_stale_heartbeat(busy):
    out = invoke(busy, "status")
    for text in ("train: run 00008 seed 1, step 120/400, loss 0.4321, ETA 1m35s", "high 2 · normal 0 · low 3",
                 "run 00003: val_accuracy = 0.8400", "fallbacks 1", "runs 7 of 50 (43 left)",
                 "stop after the current run requested", "00007", "skipped"):
        assert text in out, text
    assert "STALE" not in out
    status = busy / "status" / "status.json"
    fsio.atomic_write_json(status, {**fsio.read_json(status), "heartbeat": time.time() - 600})
    out = invoke(busy, "status")
    assert "STALE: no heartbeat for 10m00s in phase train" in out
    assert json.loads(invoke(busy, "status", "--json"))["live"]["stale"] is True


def test_a_finished_trainer_is_idle_not_stale(busy):
    status = busy / "status" / "status.json"
    fsio.atomic_write_json(status, {**fsio.read_json(status), "phase": "finished",
                                    "heartbeat": time.time() - 2 * control.STALE_AFTER_SECONDS})
    out = invoke(busy, "status")
    assert "idle (last: finished)" in out and "STALE" not in out


def test_status_and_watch_work_on_a_project_with_no_runs_yet(tmp_path):
    root = make_project(tmp_path / "p")
    out = invoke(root, "status")
    assert "idle: no trainer has run" in out and "no successful run yet" in out and "no finished run yet" in out
    snap = json.loads(invoke(root, "status", "--json"))
    assert snap["runs"] == {"finished": 0, "unfinished": []} and snap["best"] is None and snap["halted"] is None
    assert "no successful run yet" in invoke(root, "watch", "--once")
    line = invoke(root, "watch", "--once", "--json")
    assert json.loads(line)["study"] == "digits_cnn"


def test_status_shows_the_studys_own_pause_and_the_daemon(busy):
    (busy / "control" / "stop-after-run").unlink()
    fsio.atomic_write_json(busy / "runs" / "digits_cnn" / "paused.json", {
        "reason": "6 of the last 10 runs failed", "by": "the failure-rate check", "at": "x", "last_run": "00007",
        "resumed_at": None})
    fsio.atomic_write_json(busy / "status" / "daemon.json", {
        "pid": 999999, "state": "waiting", "note": None, "stop_reason": "plateau: none of the last 30 runs improved",
        "started": time.time() - 60, "updated": time.time(), "invocations": 3, "poll_seconds": 30,
        "max_wall_seconds": None})
    out = invoke(busy, "status")
    assert "study paused: 6 of the last 10 runs failed" in out
    assert "not running; it ended: plateau: none of the last 30 runs improved" in out
