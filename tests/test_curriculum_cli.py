"""`autopilot curriculum show` and `autopilot curriculum generate`: the state for people, data by hand."""

from __future__ import annotations

import json

from click.testing import CliRunner
from continual_helpers import STUDY, continual_config, load_study
from helpers import make_project

from autopilot.cli import main
from autopilot.curriculum import binary, state, syllo
from autopilot.curriculum.state import Score


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_generate_writes_a_level_as_json_lines_the_same_for_the_same_seed(tmp_path):
    shown = invoke("curriculum", "generate", "binary", "--level", "2", "--count", "5", "--seed", "7")
    assert shown.exit_code == 0, shown.output
    assert [json.loads(line) for line in shown.output.splitlines()] == binary.generate(2, 5, seed="7")
    out = tmp_path / "syllo.jsonl"
    written = invoke("curriculum", "generate", "syllo", "--level", "3", "--count", "4", "--out", str(out))
    assert written.exit_code == 0 and "wrote 4 syllo records of level 3 (syllo_v1)" in written.output
    assert [json.loads(line) for line in out.read_text().splitlines()] == syllo.generate(3, 4, seed="0")


def test_generate_refuses_a_level_past_the_skills_last_and_writes_nothing(tmp_path):
    out = tmp_path / "x.jsonl"
    result = invoke("curriculum", "generate", "binary", "--level", "6", "--out", str(out))
    assert result.exit_code == 2 and "binary has levels 1 to 5" in result.output and not out.exists()


def test_show_prints_each_skills_level_trend_and_advances(tmp_path):
    root = make_project(tmp_path, **continual_config(curriculum={"enabled": True, "eval_size": 10}))
    study = load_study(root)
    for k in range(1, 4):
        state.record_run(study, f"0000{k}", f"0000{k}", [Score("binary", 1, 9, 10), Score("syllo", 1, 2, 10)])
    result = invoke("--root", str(root), "curriculum", "show", "--study", STUDY)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("binary: level 2 of 5; at it not measured yet")
    assert "  run 00003  level 1  0.90" in lines and "  advanced 1 -> 2 after run 00003 (0.90, 0.90, 0.90)" in lines
    assert any(line.startswith("syllo: level 1 of 10; at it 0.20 0.20 0.20") for line in lines)
    rows = json.loads(invoke("--root", str(root), "curriculum", "show", "--study", STUDY, "--json").output)
    assert rows["binary"]["level"] == 2 and [t["accuracy"] for t in rows["syllo"]["trend"]] == [0.2, 0.2, 0.2]


def test_show_says_when_a_study_has_no_curriculum(tmp_path):
    root = make_project(tmp_path, **continual_config())
    load_study(root)  # frozen into runs/<study>/study.json, as the first invocation does
    result = invoke("--root", str(root), "curriculum", "show", "--study", STUDY)
    assert result.exit_code == 0 and "has no curriculum (curriculum.enabled is false)" in result.output
