"""The workflow is up to the Snakemake workflow catalog's standard: `snakemake --lint` and `snakefmt --check` find
nothing, and every rule brings its software for `--sdm apptainer` (the controller image for the short steps, the
trainer image for training) and for `--sdm conda` (envs/, whose packages and bounds are pyproject.toml's)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from helpers import REPO, VENV_BIN, env, make_project
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from autopilot.paths import PROJECT_FILES

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
CONTROLLER_IMAGE = f"images/autopilot-controller-{VERSION}.sif"
TRAINER_IMAGE = f"images/autopilot-trainer-{VERSION}.sif"
CONDA_NAMES = {"pytorch": "torch", "python-fastjsonschema": "fastjsonschema"}  # conda-forge -> PyPI, where they differ
# What each environment leaves out of the package's dependencies, and why (the end-to-end test below proves the
# rules' commands run without them): snakemake runs the workflow, no rule's command imports it; the short steps
# never train.
LEFT_OUT = {"controller": {"snakemake", "torch", "scikit-learn"}, "trainer": {"snakemake"}}
SHORT_STEPS = ("ingest", "propose_run", "guard_proposal", "judge_run", "record_run", "report_study")
TRAINER_STEPS = ("train_model", "update_champion")  # the champion step exports and scores weights: torch


def rule_blocks() -> dict[str, str]:
    """Rule name -> the text of its block, from rules/*.smk."""
    blocks = {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        for match in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", path.read_text(), re.M):
            blocks[match.group(1)] = match.group(2)
    return blocks


def requirements(names: list[str]) -> dict[str, SpecifierSet]:
    reqs = [Requirement(r) for r in names]
    return {canonicalize_name(r.name): r.specifier for r in reqs}


def env_file(name: str) -> dict:
    return yaml.safe_load((REPO / "envs" / f"{name}.yaml").read_text())


def conda_packages(name: str) -> dict[str, SpecifierSet]:
    """PyPI name -> bounds of every package of envs/<name>.yaml except python and pip."""
    out = {}
    for spec in env_file(name)["dependencies"]:
        assert isinstance(spec, str), f"envs/{name}.yaml: {spec!r}: every package comes from conda, none from pip"
        conda_name, _, bounds = spec.partition(" ")
        if conda_name not in ("python", "pip"):
            out[canonicalize_name(CONDA_NAMES.get(conda_name, conda_name))] = SpecifierSet(bounds.replace(" ", ""))
    return out


# --- lint and format --------------------------------------------------------------------------------------
def test_snakemake_lint_reports_nothing(tmp_path):
    root = make_project(tmp_path / "p")
    proc = subprocess.run([str(VENV_BIN / "snakemake"), "--lint"], cwd=root, env=env(), capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in out, out[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in out


def test_snakefmt_finds_nothing_to_change():
    snakefmt = shutil.which("snakefmt", path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    assert snakefmt, "snakefmt is not installed (pip install -e '.[test]')"
    proc = subprocess.run([snakefmt, "--check", "Snakefile", "rules/"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- software per rule ------------------------------------------------------------------------------------
def test_every_rule_declares_its_conda_env_and_the_images_are_the_dockerfiles_at_the_package_version():
    blocks = rule_blocks()
    assert set(blocks) == {*SHORT_STEPS, *TRAINER_STEPS}
    for rule, block in blocks.items():
        wanted = "trainer" if rule in TRAINER_STEPS else "controller"
        assert f'conda:\n        "../envs/{wanted}.yaml"' in block, f"rule {rule} has no conda: ../envs/{wanted}.yaml"
    # one image for every rule (the Snakefile's), which train_model replaces with the trainer's or the study's
    assert f'\ncontainer: "{CONTROLLER_IMAGE}"\n' in (REPO / "Snakefile").read_text()
    assert all("container:\n        get_trainer_image()" in blocks[rule] for rule in TRAINER_STEPS)
    assert sum("container:" in block for block in blocks.values()) == len(TRAINER_STEPS)
    assert f'TRAINER_IMAGE = "{TRAINER_IMAGE}"' in (REPO / "rules" / "common.smk").read_text()
    docker_readme = (REPO / "docker" / "README.md").read_text()
    for image in ("controller", "trainer"):
        assert f"-f docker/{image}.Dockerfile -t autopilot-{image}:{VERSION} ." in docker_readme
        assert f"images/autopilot-{image}-{VERSION}.sif docker-daemon://autopilot-{image}:{VERSION}" in docker_readme


@pytest.mark.parametrize("name", ["controller", "trainer"])
def test_each_conda_env_has_pyprojects_packages_and_bounds(name):
    project = PYPROJECT["project"]
    runtime = requirements(project["dependencies"])
    if name == "trainer":
        runtime |= requirements(project["optional-dependencies"]["lm"])  # as docker/trainer.Dockerfile: .[lm]
    expected = {pkg: bounds for pkg, bounds in runtime.items() if pkg not in LEFT_OUT[name]}
    expected |= requirements(PYPROJECT["build-system"]["requires"])  # the post-deploy script builds the package
    assert conda_packages(name) == expected
    spec = env_file(name)
    assert spec["channels"] == ["conda-forge", "nodefaults"]  # one channel, no silent defaults (licensing, mixing)
    python = next(d for d in spec["dependencies"] if d.startswith("python "))
    pinned = python.split("=")[-1]
    assert re.fullmatch(r"3\.\d+", pinned) and SpecifierSet(project["requires-python"]).contains(f"{pinned}.0")
    assert "pip" in spec["dependencies"]
    script = REPO / "envs" / f"{name}.post-deploy.sh"
    assert os.access(script, os.X_OK)
    assert script.read_text() == (REPO / "envs" / "controller.post-deploy.sh").read_text()


@pytest.mark.slow
def test_the_post_deploy_script_installs_this_checkout_editable(tmp_path):
    """What Snakemake runs in a new conda environment, here in a venv holding only what the env file lists for
    the build (pip, setuptools): the package comes from the project folder, editable, so it reads that folder's
    schemas/ and workflow files."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "src", *PROJECT_FILES):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, root / name)
    venv = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    build = requirements(PYPROJECT["build-system"]["requires"])["setuptools"]
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"setuptools{build}"], check=True,
                   timeout=300)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    clean["PATH"] = f"{venv / 'bin'}{os.pathsep}{clean.get('PATH', '')}"
    proc = subprocess.run(["bash", str(root / "envs" / "controller.post-deploy.sh")], cwd=root, env=clean,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import autopilot, autopilot.bundled as b; "
                            "print(autopilot.__file__); print(b.project_files())"],
                           cwd=tmp_path, env=clean, capture_output=True, text=True, check=True)
    assert where.stdout.split() == [str(root / "src" / "autopilot" / "__init__.py"), str(root)]
    assert (venv / "bin" / "autopilot").exists()


def test_the_post_deploy_script_asks_for_a_wheel_in_a_project_that_is_no_checkout(tmp_path):
    """A project made by `autopilot init` has no source to install: the script says what to set, and fails."""
    root = make_project(tmp_path / "p")
    proc = subprocess.run(["bash", str(root / "envs" / "trainer.post-deploy.sh")], cwd=root, capture_output=True,
                          text=True, timeout=60, env={k: v for k, v in env().items() if k != "AUTOPILOT_PACKAGE"})
    assert proc.returncode == 1 and "set AUTOPILOT_PACKAGE to an autopilot wheel" in proc.stderr


# --- apptainer, stood in for by a script that runs each command on the host with only its image's packages ----
FAKE_APPTAINER = """#!/bin/sh
# stands in for apptainer: records each call, "pulls" by touching the image, and runs `exec`'s command on the
# host with the packages of that image only (a sitecustomize that refuses every other installed distribution)
echo "$* [no warm start: ${AUTOPILOT_NO_WARMSTART:-0}]" >> "$APPTAINER_CALLS"
case "$1" in
  --version) echo "apptainer version 1.3.4" ;;
  pull) touch "$3" ;;
  *) case "$*" in
       *autopilot-controller-*) only="$BLOCKERS/controller" ;;
       *) only="$BLOCKERS/trainer" ;;
     esac
     while [ "$1" != "-c" ]; do shift; done; shift
     PYTHONPATH="$only${PYTHONPATH:+:$PYTHONPATH}" exec bash -c "$1" ;;
esac
"""

SITECUSTOMIZE = """\
import sys
from importlib.machinery import PathFinder

REFUSED = frozenset({refused!r})


class ImagePathFinder(PathFinder):
    \"\"\"sys.path as the image has it: the top-level modules of distributions it does not hold are not found.\"\"\"

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.partition(".")[0] in REFUSED:
            return None
        return super().find_spec(fullname, path, target)


sys.meta_path[:] = [ImagePathFinder if finder is PathFinder else finder for finder in sys.meta_path]
"""


def closure(names: set[str]) -> set[str]:
    """The installed distributions `names` need, with their own dependencies (extras left out)."""
    seen: set[str] = set()
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def refused_modules(env_name: str) -> set[str]:
    """Top-level modules installed here that envs/<env_name>.yaml (plus the package itself) would not bring."""
    allowed = closure({*conda_packages(env_name), "pip"}) | {"autopilot"}  # the package: installed --no-deps
    refused = set()
    for module, dists in metadata.packages_distributions().items():
        if not any(canonicalize_name(d) in allowed for d in dists) and module not in sys.stdlib_module_names:
            refused.add(module)
    return refused


def fake_apptainer(tmp_path: Path) -> dict:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apptainer").write_text(FAKE_APPTAINER)
    (fake / "apptainer").chmod(0o755)
    for name in ("controller", "trainer"):
        folder = tmp_path / "blockers" / name
        folder.mkdir(parents=True)
        (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(refused=sorted(refused_modules(name))))
    return {**env(), "PATH": f"{fake}{os.pathsep}{env()['PATH']}", "APPTAINER_CALLS": str(tmp_path / "calls.txt"),
            "BLOCKERS": str(tmp_path / "blockers")}


def test_the_controller_image_stand_in_refuses_torch(tmp_path):
    """The stand-in must really take packages away, or the end-to-end test below would prove nothing."""
    e = fake_apptainer(tmp_path)
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"
    for image, code in ((CONTROLLER_IMAGE, 1), (TRAINER_IMAGE, 0)):
        proc = subprocess.run(["apptainer", "exec", image, "sh", "-c", f'{sys.executable} -c "{probe}"'], env=e,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == code, proc.stderr[-2000:]
    assert "No module named 'sklearn'" in subprocess.run(
        ["apptainer", "exec", CONTROLLER_IMAGE, "sh", "-c", f"{sys.executable} -c 'import sklearn'"], env=e,
        capture_output=True, text=True).stderr


def test_a_missing_image_is_named_before_any_job_runs(tmp_path):
    e = fake_apptainer(tmp_path)
    root = make_project(tmp_path / "p")
    proc = subprocess.run([str(VENV_BIN / "snakemake"), "-c1", "--profile", "profiles/local", "--sdm", "apptainer"],
                          cwd=root, env=e, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"{CONTROLLER_IMAGE} (rules ingest, propose_run" in out, out[-3000:]
    assert f"{TRAINER_IMAGE} (rules train_model, update_champion)" in out
    assert not list((root / "runs").glob("*/*/proposal.json"))  # nothing ran


@pytest.mark.slow
def test_each_rule_runs_in_its_image_with_only_the_packages_of_its_conda_env(tmp_path):
    """Two runs under `--sdm apptainer`: the short steps run in the controller image, holding only what
    envs/controller.yaml lists (no torch, no scikit-learn, no snakemake); training in the study's image, which
    overrides the trainer image."""
    e = fake_apptainer(tmp_path)
    image = "docker://registry.example.org/autopilot-trainer:0.1.0"
    root = make_project(tmp_path / "p", container_image=image)
    (root / "images").mkdir()
    (root / CONTROLLER_IMAGE).touch()
    proc = subprocess.run([str(VENV_BIN / "snakemake"), "-c2", "--profile", "profiles/local", "--sdm", "apptainer",
                           "--config", "iterations=2"], cwd=root, env=e, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (tmp_path / "calls.txt").read_text().splitlines()
    assert sum(line.startswith("pull ") and f"{image} [" in line for line in lines) == 1  # local images: no pull
    executed = [line for line in lines if line.startswith("exec ")]
    trained = [line for line in executed if "autopilot train" in line or "autopilot champion" in line]
    short = [line for line in executed if line not in trained]
    assert len(trained) == 2 * 2 and not any(CONTROLLER_IMAGE in line for line in trained)
    assert len(short) == 1 + 4 * 2 and all(CONTROLLER_IMAGE in line for line in short)  # ingest, then 4 per run
    study = root / "runs" / "digits_cnn"
    verdicts = [json.loads(p.read_text())["verdict"] for p in sorted(study.glob("*/verdict.json"))]
    assert verdicts[0] == "baseline" and len(verdicts) == 2 and "failed" not in verdicts
    assert json.loads((study / "00002" / "proposal.json").read_text())["policy"] == "tpe"  # optuna, in the image
    # the host's warm command server would run the commands outside the image: the workflow turned it off
    assert all(line.endswith("[no warm start: 1]") for line in executed)
    report = subprocess.run([str(VENV_BIN / "snakemake"), "report_study", "-c1", "--sdm", "apptainer"], cwd=root,
                            env=e, capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    assert (study / "report.html").stat().st_size > 1000
    logs = "".join(p.read_text() for p in study.glob("**/logs/*.log"))
    assert "No module named" not in logs, textwrap.shorten(logs, 3000)
