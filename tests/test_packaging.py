"""A non-editable install works: the wheel carries the schemas and the workflow, and a project made from it runs.

The wheel is built from a copy of the repository and installed without its dependencies into a fresh venv that
borrows the test venv's site-packages (a .pth line: nothing is downloaded, and the checkout's src/ is not on
the path); then `autopilot --help`, `autopilot init` and one run of the study, through Snakemake.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml
from helpers import FAST_STUDY, REPO

pytestmark = pytest.mark.slow


def repository_copy(target: Path) -> Path:
    """The files git would commit (tracked, and new ones not ignored): no build/, .venv, runs."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


def clean_env(venv: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "AUTOPILOT_"))}
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "AUTOPILOT_NO_WARMSTART": "1"}


def test_the_wheel_installs_into_a_fresh_venv_and_runs_a_study(tmp_path):
    source = repository_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(source)], check=True, capture_output=True, timeout=300)
    [wheel] = dist.glob("autopilot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("autopilot/_project/Snakefile", "autopilot/_project/rules/loop.smk",
                 "autopilot/_project/schemas/config.schema.yaml", "autopilot/_project/config/config.yaml",
                 "autopilot/_project/profiles/local/config.yaml", "autopilot/_project/examples/softmax_digits.py",
                 "autopilot/_project/envs/controller.yaml", "autopilot/_project/envs/trainer.post-deploy.sh",
                 "autopilot/templates/monitor.html"):
        assert name in names, name

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True, timeout=300)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = clean_env(venv)

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import autopilot; print(autopilot.__file__)"],
                           env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where  # the wheel's copy, not the checkout's src/
    helped = subprocess.run([str(venv / "bin" / "autopilot"), "--help"], env=env, capture_output=True, text=True)
    assert helped.returncode == 0 and "init" in helped.stdout and "propose" in helped.stdout

    project = tmp_path / "project"
    subprocess.run([str(venv / "bin" / "autopilot"), "init", str(project)], env=env, check=True, capture_output=True)
    config = yaml.safe_load((project / "config" / "config.yaml").read_text())
    (project / "config" / "config.yaml").write_text(yaml.safe_dump({**config, **FAST_STUDY, "iterations": 1}))
    run = subprocess.run([str(venv / "bin" / "python"), "-m", "snakemake", "-c1", "--profile", "profiles/local"],
                         cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    verdict = yaml.safe_load((project / "runs" / "digits_cnn" / "00001" / "verdict.json").read_text())
    assert verdict["verdict"] == "baseline"
    shown = subprocess.run([str(venv / "bin" / "autopilot"), "results"], cwd=project, env=env, capture_output=True,
                           text=True, check=True).stdout
    assert "00001" in shown and "baseline" in shown
