"""A study whose trainer cannot start fails at validation, before any run, with the exact command to run."""

from __future__ import annotations

import shlex
import subprocess
import sys
import tomllib

import pytest
import yaml
from helpers import REPO, env_without, make_project, snakemake

from autopilot.errors import ConfigError
from autopilot.extras import install_command
from autopilot.paths import Project
from autopilot.study import Study
from autopilot.train.tasks import missing_extra
from autopilot.workflow import preflight

LM_STUDY = REPO / "config" / "studies" / "lm_sft.yaml"


def lm_study(root) -> Study:
    return Study.load(Project(root), LM_STUDY)


def test_a_missing_lm_extra_is_named_with_the_command_that_installs_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # as in a venv without peft
    problem = missing_extra("causal_lm")
    assert "needs the `lm` extra" in problem and "peft is not installed" in problem
    command = shlex.split(problem.splitlines()[-1])
    assert command[:4] == [sys.executable, "-m", "pip", "install"]
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["lm"]
    assert set(declared) == set(command[4:])
    assert problem.endswith(install_command("lm"))
    with pytest.raises(ConfigError, match="study lm_sft: task causal_lm needs the `lm` extra"):
        preflight.check(lm_study(REPO))
    assert missing_extra("cnn_digits") is None and missing_extra("command") is None


def test_a_trainer_in_an_image_or_on_a_node_brings_its_own_packages(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    (tmp_path / "models" / "tiny-lm").mkdir(parents=True)
    for name in ("chat_sft_small.jsonl", "chat_sft_small_val.jsonl"):
        (tmp_path / "examples" / "data").mkdir(parents=True, exist_ok=True)
        (tmp_path / "examples" / "data" / name).write_text("{}\n")
    preflight.check(lm_study(tmp_path), packages_here=False)
    with pytest.raises(ConfigError, match="transformers is not installed"):
        preflight.check(lm_study(tmp_path))


def test_a_missing_model_folder_says_how_to_build_the_example_one(tmp_path):
    with pytest.raises(ConfigError, match=r"model.path models/tiny-lm is not a folder.*python examples/make_tiny_lm"):
        preflight.check(lm_study(tmp_path))
    (tmp_path / "models" / "tiny-lm").mkdir(parents=True)
    with pytest.raises(ConfigError, match="data.val_file examples/data/chat_sft_small_val.jsonl is not a file"):
        preflight.check(lm_study(tmp_path))


@pytest.mark.slow
def test_the_example_lm_study_fails_at_validation_without_the_extra_and_starts_no_run(tmp_path):
    root = make_project(tmp_path / "p")
    args = ["snakemake", "-c1", "--profile", "profiles/local", "--configfile", "config/studies/lm_sft.yaml"]
    proc = subprocess.run(args, cwd=root, env=env_without(tmp_path / "demo-env"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert "task causal_lm needs the `lm` extra" in proc.stderr and "-m pip install 'transformers>=" in proc.stderr
    assert not (root / "runs" / "lm_sft" / "00001").exists() and not (root / "queue" / "ingest.log").exists()
    proc = snakemake(root, "--configfile", "config/studies/lm_sft.yaml", check=False)  # the extra, no model
    assert proc.returncode != 0 and "python examples/make_tiny_lm.py" in proc.stderr
    assert not (root / "runs" / "lm_sft" / "00001").exists()
    assert yaml.safe_load((root / "config" / "studies" / "lm_sft.yaml").read_text())["task"] == "causal_lm"
