"""Secondary costs beside the metric: the Pareto front, and how `autopilot results` and the report show it."""

from __future__ import annotations

from click.testing import CliRunner
from helpers import make_project
from ops_study import entry, write_history

from autopilot.cli import main
from autopilot.judge.front import pareto_front
from autopilot.ops import report
from autopilot.paths import Project
from autopilot.study import Study


def costs(wall, mem, params=1000):
    return {"wall_seconds": wall, "peak_memory_mb": mem, "parameters": params}


HISTORY = [
    entry("00001", "baseline", 0.80, policy="baseline", costs=costs(10.0, 300.0)),
    entry("00002", "improved", 0.85, costs=costs(20.0, 300.0)),      # better and slower: on the front
    entry("00003", "inconclusive", 0.84, costs=costs(20.0, 400.0)),  # dominated by 00002
    entry("00004", "regressed", 0.78, costs=costs(5.0, 500.0)),      # worse but fastest: on the front
    entry("00005", "over_limit", 0.99, costs=costs(1.0, 100.0)),     # over a limit: never a trade-off
    entry("00006", "failed", None),
    entry("00007", "inconclusive", 0.80, costs=costs(10.0, 250.0)),  # as good as 00001, less memory: front
]


def test_the_front_holds_the_runs_no_other_run_dominates():
    assert pareto_front(HISTORY, maximize=True) == {"00002", "00004", "00007"}
    # 00001 is dominated by 00007 (same metric and time, less memory)
    assert "00001" not in pareto_front(HISTORY, maximize=True)


def test_for_a_metric_to_minimize_lower_is_better():
    flipped = [{**e, "value": None if e["value"] is None else 1 - e["value"]} for e in HISTORY]
    assert pareto_front(flipped, maximize=False) == {"00002", "00004", "00007"}


def test_a_cost_some_runs_did_not_report_is_left_out():
    partial = [{**e, "costs": {**(e.get("costs") or {}), "peak_memory_mb": None}} for e in HISTORY]
    # on metric and wall time alone, 00001 and 00007 tie and 00004 is the fastest
    assert pareto_front(partial, maximize=True) == {"00001", "00002", "00004", "00007"}
    legacy = [{k: v for k, v in e.items() if k != "costs"} for e in HISTORY]
    assert pareto_front(legacy, maximize=True) == {"00002"}  # no costs at all: the best metric alone


def table_rows(out: str) -> dict[str, str]:
    """Run id -> the lines of its row in `autopilot results` (a cell holds one cost a line)."""
    rows: dict[str, str] = {}
    for line in out.splitlines():
        if line[:5].isdigit():
            run = line[:5]
        elif not (rows and line.startswith(" ")):
            continue
        rows[run] = rows.get(run, "") + line + "\n"
    return rows


def test_results_and_the_report_show_costs_and_mark_the_front(tmp_path):
    root = make_project(tmp_path / "p")
    write_history(root, HISTORY, curves=False)
    out = CliRunner().invoke(main, ["--root", str(root), "results"], env={"COLUMNS": "250"}).output
    rows = table_rows(out)
    assert all(cost in rows["00002"] for cost in ("20.0 s", "300 MB", "1,000 p")) and "◆" in rows["00002"]
    assert "◆" not in rows["00003"] and "◆" not in rows["00005"] and "over_limit" in rows["00005"]
    assert "Pareto front: 00002, 00004, 00007" in out
    study = Study.load(Project(root), root / "config" / "config.yaml")
    page = report.render(study, HISTORY)
    front = page[page.index('<table id="front">'):page.index("</table>", page.index('<table id="front">'))]
    assert [r for r in ("00001", "00002", "00003", "00004", "00007") if f'data-run="{r}"' in front] == \
        ["00002", "00004", "00007"]


def test_the_built_in_task_and_the_contract_measure_the_costs_a_limit_gates(tmp_path):
    from autopilot import fsio
    from autopilot.train.contract import TrainerRun
    from autopilot.train.tasks import cnn_digits

    config = {"run_id": "00001", "study": "c", "task": "cnn_digits", "seed": 1, "seed_index": 0,
              "hparams": {"epochs": 1, "width": 8}, "overrides": {}, "metric": {"name": "val_accuracy",
                                                                               "goal": "maximize"},
              "max_seconds": 600, "data": {"split_seed": 0}, "init_model": None,
              "paths": {"run_dir": "run", "control_dir": "control", "status_file": "status/status.json"}}
    cnn_digits.train(TrainerRun(config, root=tmp_path))
    summary = fsio.read_json(tmp_path / "run" / "trainer_summary.json")
    # conv 1->8 (80), conv 8->16 (1168), linear 256->10 (2570)
    assert summary["parameters"] == 80 + 1168 + 2570
    assert summary["peak_memory_mb"] > 10 and summary["wall_seconds"] > 0
