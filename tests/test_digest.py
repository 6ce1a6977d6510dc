"""`autopilot digest`: what happened in a window: runs, verdicts, promotions with test scores, holds, compute."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner
from registry_study import add_run, load_study, make_registry_project

from autopilot import fsio, notify
from autopilot.cli import main
from autopilot.errors import AutopilotError
from autopilot.ops.digest import digest, parse_since, render
from autopilot.registry import champion

NOW = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def stamp_history(study, times: dict[str, str]) -> None:
    """Give ledger lines the finish times of a night."""
    lines = [json.loads(x) for x in study.paths.history.read_text().splitlines()]
    study.paths.history.write_text("".join(json.dumps({**e, "finished_at": times[e["run_id"]]}) + "\n"
                                           for e in lines))


def test_parse_since_takes_durations_and_times():
    assert parse_since("12h", NOW) == NOW - dt.timedelta(hours=12)
    assert parse_since("90m", NOW) == NOW - dt.timedelta(minutes=90)
    assert parse_since("2d", NOW) == NOW - dt.timedelta(days=2)
    assert parse_since("2026-03-01T22:00", NOW) == dt.datetime(2026, 3, 1, 22, 0, tzinfo=dt.UTC)
    with pytest.raises(AutopilotError, match="12h, 30m, 2d"):
        parse_since("last night", NOW)


def test_the_digest_counts_the_window_only_and_names_promotions_with_their_test_scores(tmp_path):
    root = make_registry_project(tmp_path / "project", notify={"command": None})
    add_run(root, "00001", "baseline", 0.80, seeds=3)
    study = load_study(root)
    champion.settle(study)
    add_run(root, "00002", "failed", None)
    add_run(root, "00003", "improved", 0.86, seeds=2)
    champion.settle(study)
    stamp_history(study, {"00001": "2026-03-01T12:00:00+00:00", "00002": "2026-03-01T23:10:00+00:00",
                          "00003": "2026-03-02T03:30:00+00:00"})
    notify.emit(study, "disk_low", "disk low: 800.0 MiB free")
    notify.emit(study, "promoted", "not a hold")
    d = digest(study, parse_since("12h", NOW), NOW)
    assert [r["run_id"] for r in d["runs"]] == ["00002", "00003"]  # run 00001 finished 20 h ago
    assert d["verdicts"] == {"failed": 1, "improved": 1}
    assert d["compute"] == {"trainer_processes": 3, "train_seconds": 25.0, "wall_seconds": 26.0}
    changes = d["champion_changes"]  # the events were just written, inside any window that ends now
    assert [(c["run_id"], c["event"]) for c in changes] == [("00001", "promotion"), ("00003", "promotion")]
    assert all(c["test"] is not None and c["test_examples"] == 40 for c in changes)
    assert [h["event"] for h in d["holds"]] == ["disk_low"]
    assert d["champion"]["run_id"] == "00003" and d["held_now"] is None
    text = render(d)
    assert "runs: 2 finished (failed 1, improved 1); 3 trainer processes" in text
    assert f"run 00003 promotion by the judge: held-out test {changes[1]['test']:.4f} on 40 examples" in text
    assert "disk_low: disk low: 800.0 MiB free" in text
    assert "RuntimeError: CUDA error: boom" in text  # the failed run's last error line
    result = CliRunner().invoke(main, ["--root", str(root), "digest", "--since", "1w", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["study"] == "digits_cnn"
    assert fsio.read_json(study.paths.best)["run_id"] == "00003"
