"""`autopilot init`: a new project from the installed package, the one way tests and benchmarks make theirs."""

from __future__ import annotations

import filecmp
import os

import yaml
from click.testing import CliRunner
from helpers import REPO

from autopilot.cli import main
from autopilot.ops.scaffold import create_project
from autopilot.paths import PROJECT_FILES, Project
from autopilot.study import Study


def same_tree(a, b) -> bool:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    return not (cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files) and all(
        same_tree(os.path.join(a, d), os.path.join(b, d)) for d in cmp.common_dirs)


def test_init_makes_a_project_that_holds_the_workflow_the_study_and_the_examples(tmp_path):
    root = tmp_path / "my-study"
    result = CliRunner().invoke(main, ["init", str(root)], catch_exceptions=False)
    assert result.exit_code == 0
    assert f"cd {root} && snakemake -c2 --profile profiles/local" in result.output
    for name in PROJECT_FILES:
        source, copy = REPO / name, root / name
        assert same_tree(source, copy) if source.is_dir() else filecmp.cmp(source, copy, shallow=False), name
    assert (root / "config" / "config.yaml").read_text() == (REPO / "config" / "config.yaml").read_text()
    assert all((root / d).is_dir() and not any((root / d).iterdir()) for d in ("inbox", "queue", "runs"))
    study = Study.load(Project(root), root / "config" / "config.yaml")
    assert study.name == "digits_cnn"
    assert Study.load(Project(root), root / "config" / "studies" / "lm_sft.yaml").config["task"] == "causal_lm"


def test_init_refuses_a_folder_that_already_holds_a_project_and_changes_nothing(tmp_path):
    root = tmp_path / "p"
    (root / "config").mkdir(parents=True)
    (root / "config" / "config.yaml").write_text("study: mine\n")
    result = CliRunner().invoke(main, ["init", str(root)])
    assert result.exit_code == 1 and "already holds config" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in root.rglob("*")) == ["config", "config.yaml"]
    assert (root / "config" / "config.yaml").read_text() == "study: mine\n"


def test_an_empty_existing_folder_is_fine_and_config_overrides_update_the_study(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    create_project(root, {"iterations": 3, "judge": {"noise_seeds": 1}})
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    assert config["iterations"] == 3 and config["judge"] == {"noise_seeds": 1} and config["study"] == "digits_cnn"
