"""Before any run: a study's own trainer is checked, and a missing optional extra is named with its pip command."""

from __future__ import annotations

import copy
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from helpers import REPO, make_project, snakemake

from autopilot import extras
from autopilot.errors import ConfigError, MissingDependency
from autopilot.paths import Project
from autopilot.settings import StudySettings
from autopilot.study import Study
from autopilot.train import script_check


def check_study(config: dict, root, source: str) -> None:
    script_check.check_study(StudySettings.parse(config), root, source)


def study(path: str) -> dict:
    return Study.load(Project(REPO), REPO / path).config


@pytest.fixture(scope="module")
def argparse_study() -> dict:
    return study("examples/argparse_study.yaml")


def changed(config: dict, **metrics_from) -> dict:
    out = copy.deepcopy(config)
    out["trainer"]["metrics_from"].update(metrics_from)
    return out


def test_the_example_studies_pass():
    for path in ("examples/argparse_study.yaml", "examples/hydra_train/study.yaml", "examples/softmax_study.yaml"):
        check_study(study(path), REPO, path)


@pytest.mark.parametrize("change,message", [
    ({"patterns": {"val_accuracy": "acc", "loss": "l (.*)"}}, r"patterns.val_accuracy: 'acc' has no group"),
    ({"patterns": {"val_accuracy": "acc ([0-9.]+"}}, r"patterns.val_accuracy: 'acc \(\[0-9.\]\+' is not a regular"),
    ({"patterns": {"loss": "l (.*)"}}, "patterns has no pattern for the study's metric 'val_accuracy'"),
    ({"patterns": {"val_accuracy": "a (.*)"}}, "no pattern for the loss 'loss': add one, or set trainer.metrics_from"),
    ({"source": "json_file", "patterns": None}, "source json_file needs `path`"),
    ({"source": "tensorboard"}, "patterns is read only from stdout, but source is tensorboard"),
    ({"per_example": "../other/pe.json"}, r"per_example: '../other/pe.json' must be a path inside the run folder"),
])
def test_inconsistent_metrics_settings_are_named(argparse_study, change, message):
    with pytest.raises(ConfigError, match=message):
        check_study(changed(argparse_study, **change), REPO, "study.yaml")


def test_an_unknown_placeholder_is_named(argparse_study):
    config = copy.deepcopy(argparse_study)
    config["trainer"]["command"].append("--depth={depth}")
    with pytest.raises(ConfigError, match=r"names \{depth\}, which is neither"):
        check_study(config, REPO, "study.yaml")


def test_a_missing_tensorboard_is_named_with_the_exact_install_command(monkeypatch, argparse_study):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # what find_spec sees when it is not installed
    config = changed(argparse_study, source="tensorboard", patterns=None)
    with pytest.raises(MissingDependency) as e:
        check_study(config, REPO, "study.yaml")
    assert f"{sys.executable} -m pip install 'tensorboard>=2.16'" in str(e.value)
    config["container_image"] = "docker://example/trainer:1"  # what the image holds cannot be seen from here
    check_study(config, REPO, "study.yaml")


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A real interpreter without the project's packages: a fresh venv."""
    folder = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    return folder / "bin" / "python"


def test_hydra_is_looked_for_in_the_scripts_own_interpreter(bare_python):
    config = study("examples/hydra_train/study.yaml")
    config["trainer"]["command"][0] = str(bare_python)
    with pytest.raises(MissingDependency, match=rf"{bare_python} -m pip install 'hydra-core>=1.3'"):
        check_study(config, REPO, "study.yaml")
    config["trainer"]["command"][0] = "python3.99"
    with pytest.raises(ConfigError, match="'python3.99' is not a program on PATH"):
        check_study(config, REPO, "study.yaml")


def test_the_extras_are_those_of_pyproject():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name in extras.MODULES:
        assert extras.requirements(name) == declared[name]
    assert extras.install_command("mlflow", "py") == "py -m pip install 'mlflow>=2.16'"


def test_the_workflow_fails_before_any_run_with_the_install_command(tmp_path, bare_python):
    root = make_project(tmp_path / "p")
    text = (REPO / "examples" / "hydra_train" / "study.yaml").read_text()
    (root / "study.yaml").write_text(text.replace('["python", ', f'["{bare_python}", '))
    proc = snakemake(root, "--configfile", "study.yaml", check=False)
    assert proc.returncode != 0
    assert f"{bare_python} -m pip install 'hydra-core>=1.3'" in proc.stdout + proc.stderr
    assert Project(root).study("hydra_digits").run_ids() == []


def test_the_metrics_from_settings_have_exactly_the_schemas_keys():
    import dataclasses

    from autopilot import schemas
    from autopilot.settings import MetricsFrom

    block = schemas.load("config")["properties"]["trainer"]["properties"]["metrics_from"]
    assert {f.name for f in dataclasses.fields(MetricsFrom)} == set(block["properties"])
    settings = study("examples/argparse_study.yaml").get("trainer")
    parsed = MetricsFrom.parse(settings["metrics_from"])
    assert parsed.as_dict() == settings["metrics_from"] and parsed.patterns["loss"] == r" loss (\S+)"
