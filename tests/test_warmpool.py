"""The warm trainer pool: same results as a fresh process, never stale code, killable, survivable; its trainers
hold nothing of the pool's."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cnn_task import HP, argv, write_config
from test_supervisor import gone

from autopilot import fsio
from autopilot.train import checkpoints
from autopilot.warm import protocol, trainers

TRAIN = ("import sys, json; from pathlib import Path; from autopilot import fsio; "
         "from autopilot.train import supervisor; "
         "from autopilot.paths import RunPaths; root = Path.cwd(); run = RunPaths(root / 'runs/s' / sys.argv[1]); "
         "argv = [sys.executable, '-m', 'autopilot.train.tasks.cnn_digits', f'runs/s/{sys.argv[1]}/config.json', "
         "f'runs/s/{sys.argv[1]}']; supervisor.run_trainer(argv, run, fsio.read_json(run.config), root)")


def train_in_subprocess(root: Path, run_id: str, **extra_env: str) -> subprocess.Popen:
    """`autopilot train` runs in its own process; so does this (pytest's process has run torch already)."""
    env = {**{k: v for k, v in os.environ.items() if k != "AUTOPILOT_NO_WARMSTART"}, **extra_env}
    return subprocess.Popen([sys.executable, "-c", TRAIN, run_id], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def pool_pids(root: Path) -> list[int]:
    """Pools of this project; their forked trainers share the command line but have a pool as parent."""
    out = subprocess.run(["pgrep", "-f", f"autopilot.warm.trainers cnn_digits {root}"], capture_output=True, text=True)
    pids = {int(p) for p in out.stdout.split()}
    return sorted(p for p in pids if parent(p) not in pids)


def parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


@pytest.fixture
def root(tmp_path):
    yield tmp_path
    for pid in pool_pids(tmp_path):
        os.kill(pid, signal.SIGTERM)


def test_pool_serves_later_runs_and_gives_the_same_results(root, monkeypatch):
    monkeypatch.setenv("AUTOPILOT_NO_WARMSTART", "1")
    from autopilot.train import supervisor

    cold_run = write_config(root, HP, "00001")
    cold = supervisor.run_trainer(argv(cold_run, root), cold_run, fsio.read_json(cold_run.config), root)
    for run_id in ("00002", "00003"):
        write_config(root, HP, run_id)
        proc = train_in_subprocess(root, run_id)
        assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:]
        summary = fsio.read_json(root / "runs" / "s" / run_id / "trainer_summary.json")
        assert summary["status"] == "completed"
        assert summary["per_example"]["values"] == cold["per_example"]["values"]  # same seed, same model
    assert len(pool_pids(root)) == 1  # one pool served both runs
    assert Path(trainers.socket_path(root, "cnn_digits")).exists()


def test_a_changed_package_retires_the_pool(root):
    write_config(root, HP, "00001")
    assert train_in_subprocess(root, "00001").wait(timeout=120) == 0
    [first] = pool_pids(root)
    source = Path(protocol.PACKAGE_DIR) / "train" / "tasks" / "__init__.py"
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        write_config(root, HP, "00002")
        assert train_in_subprocess(root, "00002").wait(timeout=120) == 0
    finally:
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fsio.read_json(root / "runs/s/00002/trainer_summary.json")["status"] == "completed"
    deadline = time.monotonic() + 10
    while first in pool_pids(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert first not in pool_pids(root)


def test_a_pooled_trainer_survives_the_death_of_its_pool(root):
    write_config(root, {**HP, "epochs": 8}, "00001")
    proc = train_in_subprocess(root, "00001")
    ckpt = root / "runs/s/00001/checkpoint"
    deadline = time.monotonic() + 60
    while not checkpoints.complete(ckpt) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pool_pids(root):
        os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:]
    summary = fsio.read_json(root / "runs/s/00001/trainer_summary.json")
    assert summary["status"] == "completed"  # the trainer has its own session; the summary decides


def test_pool_trainers_honour_the_time_limit(root):
    write_config(root, {**HP, "epochs": 100_000}, "00001", max_seconds=1.0)
    assert train_in_subprocess(root, "00001").wait(timeout=120) == 0
    summary = fsio.read_json(root / "runs/s/00001/trainer_summary.json")
    assert summary["status"] == "timeout"


def test_a_pooled_trainer_holds_neither_the_pools_socket_nor_other_supervisors_connections(root):
    """A trainer is forked by the pool: it must close what the pool holds for others, or a SIGKILLed pool would
    still take connections (queued for ever), and a supervisor would not see its pool die."""
    started = []
    try:
        for run_id in ("00001", "00002"):
            run = write_config(root, {**HP, "epochs": 100_000}, run_id)
            lock = os.open(run.trainer_lock, os.O_RDWR | os.O_CREAT)  # what the supervisor holds (train.runlock)
            trainer = trainers.request("cnn_digits", argv(run, root)[3:], root, run.train_log, lock)
            os.close(lock)
            assert trainer is not None
            started.append(trainer)
        path = trainers.socket_path(root, "cnn_digits")
        [pool] = pool_pids(root)
        os.kill(pool, signal.SIGKILL)
        os.waitpid(pool, 0)  # started by this process (trainers.request): its child
        assert Path(path).exists()  # a killed pool leaves its socket file behind
        assert not takes_connections(path)  # and no trainer listens there on its behalf
        first = started[0]  # forked before the second, which must not hold its supervisor's connection
        first.conn.settimeout(10)
        assert first.conn.recv(1) == b""  # its pool is gone, and the supervisor knows at once
    finally:
        for trainer in started:
            os.killpg(trainer.pid, signal.SIGKILL)


def takes_connections(path: str) -> bool:
    """Something listens at `path`, even if it never accepts (a unix socket's full backlog blocks connect())."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(path)
        return True
    except (TimeoutError, BlockingIOError):
        return True
    except OSError:  # refused: nobody holds the listening socket
        return False
    finally:
        probe.close()


def trainer_pid(root: Path, run_id: str) -> int:
    """The trainer's pid once it has trained an epoch (the run's lock file names it)."""
    deadline = time.monotonic() + 120
    while not checkpoints.complete(root / f"runs/s/{run_id}/checkpoint") and time.monotonic() < deadline:
        time.sleep(0.05)
    return fsio.read_json(root / f"runs/s/{run_id}/.trainer.lock")["trainer"]["pid"]


@pytest.mark.parametrize("started_by", ["pool", "supervisor"])
def test_a_warm_trainer_dies_with_its_supervisor(root, started_by):
    """SIGKILL to `autopilot train`: the trainer forked for it, by the pool or by itself, does not train on."""
    write_config(root, {**HP, "epochs": 1000}, "00001")
    # no room for a socket path under a TMPDIR this long: no pool, the supervisor forks the trainer itself
    no_pool = {"TMPDIR": str(root / ("t" * 120))} if started_by == "supervisor" else {}
    proc = train_in_subprocess(root, "00001", **no_pool)
    trainer = trainer_pid(root, "00001")
    assert (parent(trainer) in pool_pids(root)) == (started_by == "pool")
    proc.kill()
    proc.wait()
    assert gone(trainer, within=trainers.ORPHAN_TERM_SECONDS + 10), "the trainer trains on with nobody waiting"
