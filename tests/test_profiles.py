"""The Snakemake profiles: each is accepted by Snakemake and documented with its command; on one machine the
`gpu` resource is capped at the machine's GPUs (and left uncapped without any), and each run gets its own GPU."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest
import yaml
from helpers import REPO, VENV_BIN, env, make_project, snakemake
from test_generation_workflow import TIMED_BASELINE, max_concurrent

from autopilot.errors import AutopilotError
from autopilot.workflow import plan

PLUGINS = {"slurm": "snakemake_executor_plugin_slurm", "kubernetes": "snakemake_executor_plugin_kubernetes"}


def profile(name: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())


def test_the_cluster_profiles_say_what_the_issue_asks():
    slurm = profile("slurm")
    resources = dict(r.split("=", 1) for r in slurm["default-resources"])
    assert slurm["executor"] == "slurm" and slurm["slurm-requeue"] is True
    assert {"slurm_partition", "runtime", "mem_mb"} <= set(resources)
    k8s = profile("kubernetes")
    assert k8s["executor"] == "kubernetes" and k8s["set-resources"]["train_model"]["gpu_manufacturer"] == "nvidia"
    assert "gpu" not in str(profile("local"))  # a count in YAML could not fit every machine: see cap_gpus
    loop = (REPO / "rules" / "loop.smk").read_text()
    assert "gpu=1," in loop.split("rule train_model:")[1].split("rule ")[0]


def test_the_readme_gives_the_command_of_each_profile():
    readme = (REPO / "README.md").read_text()
    for name in ("local", "slurm", "kubernetes"):
        assert f"--profile profiles/{name}" in readme


@pytest.mark.parametrize("name", ["slurm", "kubernetes"])
def test_snakemake_accepts_the_cluster_profile(tmp_path, name):
    if importlib.util.find_spec(PLUGINS[name]) is None:
        pytest.skip(f"{PLUGINS[name]} is not installed (pip install -e '.[test]')")
    root = make_project(tmp_path / "p")
    proc = subprocess.run([str(VENV_BIN / "snakemake"), "-n", "--profile", f"profiles/{name}", "--config",
                           "iterations=3", "generation_size=2"], cwd=root, env=env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^train_model\s+3$", proc.stdout, re.MULTILINE), proc.stdout[-3000:]  # the job stats table


def test_a_job_process_without_the_plan_says_so():
    os.environ.pop(plan.ENV_VAR, None)
    with pytest.raises(AutopilotError, match="AUTOPILOT_PLAN is not set"):
        plan.Plan.from_env()


CLAIM = """
import sys, time
from autopilot.train import gpus
with gpus.claim(sys.argv[1]) as device:
    import os
    print(device, os.environ["CUDA_VISIBLE_DEVICES"], time.monotonic(), flush=True)
    time.sleep(1.5)
"""


def test_each_run_claims_a_gpu_of_its_own(tmp_path):
    e = {**env(), "CUDA_VISIBLE_DEVICES": "0,1"}
    procs = [subprocess.Popen([sys.executable, "-c", CLAIM, str(tmp_path)], env=e, stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    lines = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(device == visible for device, visible, _ in lines)
    starts = sorted((float(t), device) for device, _, t in lines)
    assert {starts[0][1], starts[1][1]} == {"0", "1"}  # two at once, on different GPUs
    assert starts[2][0] - starts[0][0] >= 1.0  # the third waited for a GPU to be free


def test_without_several_gpus_nothing_is_claimed(monkeypatch):
    from autopilot.train import gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with gpus.claim() as device:
        assert device is None and gpus.count() == 0


@pytest.mark.slow
def test_the_local_profile_caps_gpu_at_the_machines_count(tmp_path):
    root = make_project(tmp_path / "p", generation_size=2, baseline=TIMED_BASELINE)
    snakemake(root, "--config", "iterations=1")  # the baseline alone
    one_gpu = {**env(), "CUDA_VISIBLE_DEVICES": "0"}  # this machine "has" one GPU: runs train one at a time
    proc = subprocess.run([str(VENV_BIN / "snakemake"), "-c2", "--profile", "profiles/local", "--config",
                           "iterations=2"], cwd=root, env=one_gpu, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert max_concurrent(proc.stderr) == 1
    # without a GPU (the default here) the cores alone limit them: test_generation_workflow.py shows 2 at once
