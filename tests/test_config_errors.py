"""Config errors people can act on: the key, the file and line (or --config), what is allowed and a close match,
in a few lines and once, from `autopilot` commands and from snakemake alike; the full detail one flag away."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from click.testing import CliRunner
from helpers import REPO, VENV_BIN, env, make_project

from autopilot.cli import main
from autopilot.config_errors import ConfigProblems, ConfigSource, did_you_mean
from autopilot.paths import Project
from autopilot.study import Study, check_config


def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def write_study(path, text_after: str = "", **changes) -> None:
    """The default study with `changes`, plus raw YAML lines appended (to know their line numbers)."""
    config = default_config() | changes
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False) + text_after)


def line_of(path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def problem_lines(message: str) -> list[str]:
    return [line.strip() for line in message.splitlines() if line.startswith("  ")]


def test_a_misspelled_key_is_named_with_its_file_line_and_the_close_match(tmp_path):
    path = tmp_path / "study.yaml"
    write_study(path, "iteratons: 3\n")
    with pytest.raises(ConfigProblems) as e:
        Study.load(Project(tmp_path), path)
    message = str(e.value)
    assert f"{path}:{line_of(path, 'iteratons')}  `iteratons`: not a setting; did you mean `iterations`?" in message
    assert len(message.splitlines()) == 3  # head, the problem, where to read more
    assert "config/README.md" in message and "autopilot config check --full" in message
    assert "additionalProperties" not in message and "$schema" not in message  # not the schema dump


def test_nested_keys_values_and_ranges_say_what_is_allowed(tmp_path):
    path = tmp_path / "study.yaml"
    config = default_config()
    config["judge"] = {**config["judge"], "alpah": 0.1, "confidence": 1.5}
    config["policy"] = "tpee"
    config["search_space"]["lr_typo"] = config["search_space"].pop("lr")
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(ConfigProblems) as e:
        Study.load(Project(tmp_path), path)
    lines = problem_lines(str(e.value))
    assert f"{path}:{line_of(path, 'tpee')}  `policy`: \"tpee\" is not allowed: one of: tpe, random, manual, llm, " \
           f"hybrid; did you mean `tpe`?" in lines
    assert any("`judge.alpah`: not a setting; did you mean `alpha`?" in line for line in lines)
    assert any("`judge.confidence`: 1.5 is not allowed: a number > 0.5 and < 1" in line for line in lines)
    assert len(lines) == 3  # the cross-setting rule waits until the schema's problems are fixed
    del config["judge"]["alpah"], config["judge"]["confidence"]
    config["policy"] = "tpe"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(ConfigProblems, match=r"`search_space.lr_typo`: has no value in `baseline`; did you mean `lr`"):
        Study.load(Project(tmp_path), path)


def test_a_setting_at_the_wrong_level_and_a_rule_across_settings():
    config = default_config() | {"alpha": 0.01}
    with pytest.raises(ConfigProblems, match=r"`alpha`: not a setting; did you mean `judge.alpha`\?"):
        check_config(config, "c.yaml")
    config = default_config() | {"task": "causal_lm"}
    with pytest.raises(ConfigProblems) as e:
        check_config(config, "c.yaml")
    lines = problem_lines(str(e.value))
    assert len(lines) == 1 and "`model`, `data.val_file`, `data.spec`, `data.train_file`: missing; A causal_lm " \
                               "study names its model" in lines[0]


def test_a_key_given_with_snakemake_s_config_option_is_attributed_to_it(tmp_path):
    path = tmp_path / "study.yaml"
    write_study(path)
    source = ConfigSource((path,), {"judge": {"alpha": "0.7"}})
    config = default_config()
    config["judge"]["alpha"] = "0.7"
    with pytest.raises(ConfigProblems) as e:
        check_config(config, source)
    assert "--config  `judge.alpha`: \"0.7\" is not allowed: a number > 0 and < 0.5 (a number in quotes is text" \
           in str(e.value)
    assert "autopilot config check --full" in str(e.value) and "--config 'judge={\"alpha\": \"0.7\"}'" in str(e.value)


def test_the_full_form_shows_the_schema_of_each_bad_key(monkeypatch):
    config = default_config()
    config["judge"]["alpha"] = 0.7
    short = pytest.raises(ConfigProblems, check_config, config, "c.yaml").value
    assert "exclusiveMaximum" not in str(short)
    monkeypatch.setenv("AUTOPILOT_CONFIG_ERRORS", "full")
    full = str(pytest.raises(ConfigProblems, check_config, config, "c.yaml").value)
    assert "schema of `judge.alpha` (schemas/config.schema.yaml):" in full and "exclusiveMaximum: 0.5" in full
    assert "jsonschema: 0.7 is greater than or equal to the maximum of 0.5" in full


def test_did_you_mean():
    assert did_you_mean("iteratons", ["iterations", "seed"]) == "; did you mean `iterations`?"
    assert did_you_mean("lr_typo", ["lr", "batch_size"]) == "; did you mean `lr`?"
    assert did_you_mean("zzz", ["lr", "batch_size"]) == ""


# --- the `autopilot config check` command, and any command that reads the config --------------------------
def invoke(root, *args: str):
    return CliRunner().invoke(main, ["--root", str(root), *args])


def test_config_check_reports_valid_and_invalid_configs(tmp_path):
    root = make_project(tmp_path / "p")
    ok = invoke(root, "config", "check")
    assert ok.exit_code == 0 and "a valid study config (study digits_cnn" in ok.output
    bad = invoke(root, "config", "check", "--config", "iteratons=3", "--config", "policy=random")
    assert bad.exit_code == 1 and "--config  `iteratons`: not a setting; did you mean `iterations`?" in bad.output
    full = invoke(root, "config", "check", "--full", "--config", "judge={alpah: 1}")
    assert full.exit_code == 1 and "schema of `judge` (schemas/config.schema.yaml):" in full.output
    assert invoke(root, "config", "check", "--config", "no equals sign").exit_code == 2


def test_any_command_that_reads_the_config_says_the_same(tmp_path):
    root = make_project(tmp_path / "p", iteratons=3)
    result = invoke(root, "status")
    assert result.exit_code == 1
    assert "`iteratons`: not a setting; did you mean `iterations`?" in result.output
    assert "Traceback" not in result.output


# --- snakemake --------------------------------------------------------------------------------------------
def test_snakemake_prints_the_problem_once_in_a_few_lines(tmp_path):
    root = make_project(tmp_path / "p")
    cmd = [str(VENV_BIN / "snakemake"), "-n", "--config", "iteratons=3"]
    proc = subprocess.run(cmd, cwd=root, env=env(), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert out.count("  --config  `iteratons`: not a setting; did you mean `iterations`?") == 1
    assert "Failed validating" not in out and "$schema" not in out
    assert len(out.strip().splitlines()) <= 7, out
    full = subprocess.run(cmd, cwd=root, env={**env(), "AUTOPILOT_CONFIG_ERRORS": "full"}, capture_output=True,
                          text=True, timeout=300)
    full_out = full.stdout + full.stderr
    assert "schema of `(the whole config)`" in full_out and "additionalProperties: false" in full_out
