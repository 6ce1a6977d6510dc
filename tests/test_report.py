"""`autopilot report` and `snakemake report_study`: one self-contained HTML file, checked in a real Chromium."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from helpers import make_project, snakemake
from ops_study import Dom, chromium, entry, write_history

from autopilot.cli import main
from autopilot.ops import report
from autopilot.paths import Project, RunPaths
from autopilot.study import Study

HISTORY = [
    entry("00001", "baseline", 0.80, policy="baseline", seed_values=[0.79, 0.80, 0.81]),
    entry("00002", "inconclusive", 0.79),
    entry("00003", "improved", 0.84, seed_values=[0.83, 0.84, 0.85]),
    entry("00004", "failed", None),
    entry("00005", "regressed", 0.70, policy="random"),
    entry("00006", "inconclusive", 0.83, fallback_from="llm:openai: timed out",
          rationale="</script><script>document.title='pwned'</script> a rationale that tries to break out"),
    entry("00007", "stopped", None, status="stopped"),
    entry("00008", "improved", 0.86),
    entry("00009", "failed", None, error="trainer exited with status 1\n--- last lines of train.log ---\n"
                                          "ValueError: shapes (3,4) and (5,) not aligned"),
    entry("00010", "inconclusive", 0.855),
]


@pytest.fixture
def study(tmp_path) -> Study:
    root = make_project(tmp_path / "p")
    write_history(root, HISTORY)
    return Study.load(Project(root), root / "config" / "config.yaml")


def embedded_data(page: str) -> dict:
    block = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', page, re.S).group(1)
    return json.loads(block)


# --- what it computes ----------------------------------------------------------------------------------
def test_points_carry_interval_bars_and_the_best_so_far():
    points = report.run_points(HISTORY)
    judged = points[1]  # 0.79, delta -0.01 against 0.80, interval [-0.03, +0.02] of the difference
    assert judged["low"] == pytest.approx(0.77) and judged["high"] == pytest.approx(0.82)
    base = points[0]  # three seeds: a t-interval of their mean (t_0.975,2 = 4.303, sd 0.01)
    assert base["low"] == pytest.approx(0.80 - 4.303 * 0.01 / 3 ** 0.5, abs=1e-4)
    assert points[3]["value"] is None and points[3]["low"] is None
    assert [p["best_so_far"] for p in points] == [0.80, 0.80, 0.84, 0.84, 0.84, 0.84, 0.84, 0.86, 0.86, 0.86]


def test_a_loss_curve_keeps_the_attempt_that_finished_and_is_thinned(tmp_path):
    run = RunPaths(tmp_path)
    lines = [{"step": s, "loss": 9.0} for s in range(1, 6)]  # an attempt killed at step 5
    lines += [{"step": s, "loss": 1.0 / s} for s in range(3, 2001)]  # resumed from step 3's checkpoint
    lines += [{"step": 2000, "val": 0.9}]  # an evaluation line without a loss
    run.metrics.write_text("".join(json.dumps(m) + "\n" for m in lines))
    whole = report.loss_curve(run, max_points=10_000)
    assert whole[:3] == [[1, 9.0], [2, 9.0], [3, 1.0 / 3]] and len(whole) == 2000
    curve = report.loss_curve(run, max_points=400)
    assert 390 <= len(curve) <= 402 and curve[0] == [1, 9.0] and curve[-1] == [2000, 1.0 / 2000]
    assert all(a[0] < b[0] for a, b in zip(curve, curve[1:]))


def test_the_report_is_self_contained_and_its_data_matches_the_ledger(study):
    path = report.write_report(study)
    page = path.read_text()
    assert path == study.paths.dir / "report.html"
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing loads from outside
    assert "<script src" not in page and "<link" not in page
    data = embedded_data(page)
    assert [p["value"] for p in data["runs"]] == [e["value"] for e in HISTORY]
    assert data["verdicts"] == {"baseline": 1, "inconclusive": 3, "improved": 2, "failed": 2, "regressed": 1,
                                "stopped": 1}
    assert data["policies"] == {"baseline": 1, "tpe": 8, "random": 1} and data["fallbacks"] == 1
    assert [c["run_id"] for c in data["curves"]] == [f"{i:05d}" for i in range(3, 11)]
    assert page.count("</script>") == 3  # the rationale's </script> did not close anything
    assert "ValueError: shapes (3,4) and (5,) not aligned" in page


def test_the_report_command_writes_where_it_is_told_even_with_no_runs(tmp_path):
    root = make_project(tmp_path / "p")
    out = tmp_path / "elsewhere" / "r.html"
    result = CliRunner().invoke(main, ["--root", str(root), "report", "--out", str(out)])
    assert result.exit_code == 0 and f"report: {out}" in result.output
    assert embedded_data(out.read_text())["runs"] == [] and "no failed run" in out.read_text()


# --- in a real browser ---------------------------------------------------------------------------------
@pytest.mark.browser
def test_the_report_draws_its_charts_in_chromium_with_the_ledgers_numbers(study, tmp_path):
    path = report.write_report(study)
    shot = tmp_path / "report.png"
    dom = Dom(chromium(path.as_uri(), tmp_path / "chromium", screenshot=shot))
    assert dom.by_id("report-data") and dom.elements[0]["tag"] == "html"
    assert dom.by_class("run-point") and "pwned" not in dom.text("study")
    body = next(e for e in dom.elements if e["tag"] == "body")
    assert body["attrs"].get("data-drawn") == "yes"  # every chart script ran to its end

    points = {e["attrs"]["data-run"]: float(e["attrs"]["data-value"]) for e in dom.by_class("run-point", "circle")}
    assert points == {e["run_id"]: e["value"] for e in HISTORY if e["value"] is not None}
    bars = dom.by_class("ci-bar", "line")
    assert len(bars) == 7 and all(float(b["attrs"]["data-low"]) < float(b["attrs"]["data-high"]) for b in bars)
    assert {e["attrs"]["data-run"] for e in dom.by_class("failed-marker")} == {"00004", "00007", "00009"}
    best = dom.by_class("best-line", "path")[0]["attrs"]["data-values"].split(",")
    assert [float(v) for v in best] == [0.80, 0.80, 0.84, 0.84, 0.84, 0.84, 0.84, 0.86, 0.86, 0.86]
    curves = dom.by_class("curve", "path")
    assert [c["attrs"]["data-run"] for c in curves] == [f"{i:05d}" for i in range(3, 11)]
    assert all(c["attrs"]["d"].count("L") == 29 for c in curves)  # 30 points each

    cells = {e["attrs"]["data-value"]: e["text"] for e in dom.by_class("value", "td") if e["attrs"]["data-value"]}
    assert cells == {str(e["value"]): f"{e['value']:.4f}" for e in HISTORY if e["value"] is not None}
    assert dom.text("card-best-val_accuracy").endswith("0.8600") and dom.text("card-best-run").endswith("00008")
    assert dom.text("fallbacks") == "1"
    counts = [int(e["attrs"]["data-count"]) for e in dom.elements if "data-count" in e["attrs"]]
    assert counts == [3, 2, 2, 1, 1, 1] + [8, 1, 1]  # verdicts, then policies, most first
    assert shot.stat().st_size > 20_000


@pytest.mark.slow
def test_the_snakemake_target_writes_the_report_of_a_real_study(tmp_path):
    root = make_project(tmp_path / "p")
    snakemake(root, "--config", "iterations=1")
    snakemake(root, "report_study")
    page = (root / "runs" / "digits_cnn" / "report.html").read_text()
    history = [json.loads(line) for line in (root / "runs" / "digits_cnn" / "history.jsonl").read_text().splitlines()]
    assert [p["value"] for p in embedded_data(page)["runs"]] == [e["value"] for e in history]
    assert all(c["points"] for c in embedded_data(page)["curves"])  # real metrics.jsonl files were read
    proc = snakemake(root, "report_study")
    assert "Nothing to be done" in proc.stdout + proc.stderr  # rebuilt only when history.jsonl changes
