"""`autopilot results` at 80 columns: no number and no key is ever broken across lines."""

from __future__ import annotations

import re

from click.testing import CliRunner
from helpers import make_project
from ops_study import entry, write_history

from autopilot import fsio
from autopilot.cli import main
from autopilot.paths import Project
from autopilot.study import Study

ALL_KEYS = {"lr": 0.0123456, "batch_size": 128, "epochs": 12, "weight_decay": 3.565e-06, "width": 32,
            "dropout": 0.25, "optimizer": "sgd"}  # every key of the default study changed at once
LONG = {"lora_target_modules": "q_proj,v_proj,k_proj,o_proj,gate_proj,up_proj"}  # longer than any column


def history() -> list[dict]:
    return [
        entry("00001", "baseline", 0.951234, policy="baseline", seed_values=[0.95] * 10, generation=1),
        entry("00002", "improved", 0.967891, policy="llm:openai", overrides=ALL_KEYS, seed_values=[0.96] * 3,
              generation=2, fallback_from="llm:openai: timeout"),  # as the journal writes it (a string)
        entry("00003", "inconclusive", 0.950012, overrides=LONG, generation=2),
        entry("00004", "regressed", 0.912345, overrides={"lr": 0.0005, "optimizer": "adam"}, generation=3,
              delta=-0.038889, interval={"low": -0.051234, "high": -0.026543, "method": "welch_t"}),
        entry("00005", "failed", None, generation=3),
    ]


def results(tmp_path, **config) -> list[str]:
    root = make_project(tmp_path / "p", **config)
    study = Study.load(Project(root), root / "config" / "config.yaml")
    study.freeze()
    write_history(root, history(), curves=False)
    for run_id in ("00001", "00002"):  # champions show their held-out score in a column of its own
        fsio.append_jsonl(study.models.test_scores, {"run_id": run_id, "metric": {"value": 0.9611}})
    out = CliRunner(env={"COLUMNS": "80"}).invoke(main, ["--root", str(root), "results"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return out.output.splitlines()


def test_results_fit_80_columns_and_break_no_number_or_key(tmp_path):
    for config in ({"generation_size": 2}, {}):
        lines = results(tmp_path / str(len(config)), **config)
        assert max(map(len, lines)) <= 80, "\n".join(lines)
        words = {w for line in lines for w in re.split(r"\s+", line.strip())}
        for e in history():
            for key, value in e["overrides"].items():
                shown = f"{value:.4g}" if isinstance(value, float) else f"{value}"
                item = f"{key}={shown}"
                if e["overrides"] is not LONG:  # whole, or its key ending one line and its value starting the next
                    whole = item in words or item + "," in words
                    split = f"{key}=" in words and (shown in words or shown + "," in words)
                    assert whole or split, (item, "\n".join(lines))
            if e["value"] is not None:
                assert f"{e['value']:.4f}" in words
            if e["interval"]:
                for number in (e["delta"], e["interval"]["low"], e["interval"]["high"]):
                    assert any(f"{number:+.4f}" in w for w in words), number
            assert e["run_id"] in words and e["verdict"] in words
        assert "0.9611" in words
        assert any(line.split()[-1:] == ["(fallback)"] or "(fallback)" in line.split() for line in lines)


def test_an_item_wider_than_the_column_folds_inside_changes_and_keeps_its_key_whole(tmp_path):
    lines = results(tmp_path, generation_size=2)
    start = next(i for i, line in enumerate(lines) if "lora_target_modules=" in line)
    column = lines[start].index("lora_target_modules=")
    pieces = [line[column:].split()[0] for line in lines[start:start + 4] if line[column:column + 1].strip()]
    assert "".join(pieces).startswith("lora_target_modules=q_proj,v_proj,k_proj,o_proj,gate_proj,up_proj")
