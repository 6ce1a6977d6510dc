"""A real single-node SLURM cluster (Debian's slurmctld, slurmd and munge; see ../shared/SLURM-LOCAL.md) runs a
two-generation study through `--profile profiles/slurm`, and its files match those of the same study run locally.

Needs root and the packages (`bin/test` installs them where apt-get works); skipped with the reason otherwise.
Everything but /etc/slurm/slurm.conf (a symlink, because the job step's srun reads only that path) lives in a
scratch folder, and every daemon started here is stopped at the end.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import VENV_BIN, env, make_project, snakemake

from autopilot import fsio

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLURM_CONF = Path("/etc/slurm/slurm.conf")
STUDY = {"generation_size": 2, "iterations": 3}  # the baseline alone, then a generation of two runs
SAME_IN_BOTH = ("run_id", "generation", "policy", "overrides", "params", "status", "verdict", "value",
                "seed_values", "compared_to", "delta", "interval")

SLURM_CONF_TEXT = """\
ClusterName=autopilottest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge}/run/munge.socket.2
StateSaveLocation={s}/state
SlurmdSpoolDir={s}/spool
SlurmctldPidFile={s}/run/slurmctld.pid
SlurmdPidFile={s}/run/slurmd.pid
SlurmctldLogFile={s}/log/slurmctld.log
SlurmdLogFile={s}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=300
DefMemPerCPU=100
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 {hardware} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def why_not() -> str | None:
    """Why no cluster can be started here, or None."""
    if os.geteuid() != 0:
        return "starting slurmctld, slurmd and munged needs root"
    missing = [b for b in ("slurmctld", "slurmd", "munged", "mungekey", "sbatch", "squeue") if not shutil.which(b)]
    if missing:
        return f"Debian packages slurmctld slurmd slurm-client munge are not installed (no {', '.join(missing)})"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]')"
    if SLURM_CONF.exists() and not SLURM_CONF.is_symlink():
        return f"{SLURM_CONF} belongs to a real SLURM installation: not touching it"
    if subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0:
        return "a slurmctld already runs on this machine (ports 6817/6818)"
    return None


def start_cluster(s: Path) -> None:
    munge = s / "munge"
    for d in ("etc", "state", "spool", "log", "run"):
        (s / d).mkdir(parents=True)
    for d in ("etc", "run", "log", "lib"):
        (munge / d).mkdir(parents=True)
    for d, mode in ((s, 0o755), (munge, 0o755), (munge / "run", 0o755), (munge / "etc", 0o700),
                    (munge / "log", 0o700), (munge / "lib", 0o700)):
        d.chmod(mode)  # munged wants its socket's folders open to all, its key's folder private
    subprocess.run(["chown", "-R", "munge:munge", str(munge)], check=True)
    as_munge = ["runuser", "-u", "munge", "--"]
    key = munge / "etc" / "munge.key"
    subprocess.run([*as_munge, "mungekey", "--create", f"--keyfile={key}"], check=True)
    key.chmod(0o400)
    subprocess.run([*as_munge, "munged", f"--socket={munge}/run/munge.socket.2", f"--key-file={key}",
                    f"--log-file={munge}/log/munged.log", f"--pid-file={munge}/run/munged.pid",
                    f"--seed-file={munge}/lib/munged.seed"], check=True)
    node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    hardware = re.sub(r"\s*RealMemory=\d+", "", re.sub(r"^NodeName=\S+\s*", "", node))
    conf = s / "etc" / "slurm.conf"
    conf.write_text(SLURM_CONF_TEXT.format(s=s, munge=munge, hardware=hardware))
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SLURM_CONF.unlink(missing_ok=True)
    SLURM_CONF.symlink_to(conf)
    subprocess.run(["slurmctld", "-f", str(conf), "-c"], check=True)  # -c: empty state, job ids from 1
    subprocess.run(["slurmd", "-f", str(conf), "-N", "localhost"], check=True)
    for _ in range(300):
        state = subprocess.run(["sinfo", "-h", "-n", "localhost", "-o", "%T"], capture_output=True, text=True)
        if state.stdout.strip() == "idle":
            return
        time.sleep(0.1)
    raise RuntimeError(f"the SLURM node did not come up; see {s}/log")


def stop_cluster(s: Path) -> None:
    for pid_file in (s / "run" / "slurmd.pid", s / "run" / "slurmctld.pid", s / "munge" / "run" / "munged.pid"):
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    if SLURM_CONF.is_symlink() and SLURM_CONF.resolve() == (s / "etc" / "slurm.conf").resolve():
        SLURM_CONF.unlink()


@pytest.fixture(scope="module")
def slurm_cluster():
    if "/usr/sbin" not in os.environ.get("PATH", "").split(os.pathsep):  # slurmctld, slurmd, munged live there
        os.environ["PATH"] = f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/sbin"
    reason = why_not()
    if reason:
        pytest.skip(f"no SLURM cluster: {reason}")
    scratch = Path(tempfile.mkdtemp(prefix="autopilot-slurm-"))
    try:
        start_cluster(scratch)
        yield scratch
    finally:
        stop_cluster(scratch)
        shutil.rmtree(scratch, ignore_errors=True)


def run_through_slurm(root: Path) -> subprocess.CompletedProcess:
    """The study through profiles/slurm, with what this test cluster needs on top: its partition, no GPU,
    squeue for status (no accounting), an early first status check, and the per-job logs kept."""
    cmd = [str(VENV_BIN / "snakemake"), "--profile", "profiles/slurm", "--jobs", "2",
           "--default-resources", "slurm_partition=debug", "runtime=10", "mem_mb=500", "cpus_per_task=1",
           "--set-resources", "train_model:gpu=0",
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
           "--slurm-keep-successful-logs", "--latency-wait", "5"]
    return subprocess.run(cmd, cwd=root, env=env(), capture_output=True, text=True, timeout=900)


def study_files(root: Path) -> tuple[list[dict], dict[str, dict]]:
    study = root / "runs" / "digits_cnn"
    history = sorted(fsio.iter_jsonl(study / "history.jsonl"), key=lambda e: e["run_id"])
    # a config.json's nonce binds its trainer's summary to that attempt: fresh each time, everything else the same
    configs = {p.parent.name: {k: v for k, v in fsio.read_json(p).items() if k != "nonce"}
               for p in study.glob("[0-9]*/config.json")}
    return [{k: e[k] for k in SAME_IN_BOTH} for e in history], configs


def test_a_two_generation_study_runs_through_slurm_and_matches_the_local_run(slurm_cluster, tmp_path):
    local = make_project(tmp_path / "local", **STUDY)
    cluster = make_project(tmp_path / "cluster", **STUDY)
    with ThreadPoolExecutor(1) as pool:  # the local study trains while the SLURM one mostly waits for its polls
        local_done = pool.submit(snakemake, local)
        proc = run_through_slurm(cluster)
        local_done.result()
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"

    # the training jobs went through SLURM: submitted, given job ids, and finished there
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", proc.stderr)
    train_logs = [Path(cluster, log) for _, log in submitted if "rule_train_model" in log]
    assert len(train_logs) == 3 and all(log.exists() for log in train_logs)
    states = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i %T"], capture_output=True, text=True).stdout
    finished = {line.split()[0] for line in states.splitlines() if line.endswith("COMPLETED")}
    assert {job for job, _ in submitted} <= finished
    assert "localrule train_model" not in proc.stderr and "localrule judge_run" in proc.stderr
    # cluster jobs started their trainers fresh: a warm pool on a node would die with the job that started it
    pools = subprocess.run(["pgrep", "-f", f"autopilot.warm.trainers cnn_digits {cluster}"],
                           capture_output=True, text=True)
    assert pools.stdout.split() == [] and "warming up" not in proc.stderr

    # and the study is the local one: same runs, same proposals and configs, same metrics and verdicts
    cluster_history, cluster_configs = study_files(cluster)
    local_history, local_configs = study_files(local)
    assert [e["run_id"] for e in cluster_history] == ["00001", "00002", "00003"]
    assert [e["generation"] for e in cluster_history] == [1, 2, 2]
    assert cluster_history == local_history
    assert cluster_configs == local_configs
