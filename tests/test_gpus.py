"""Several runs per GPU box, simulated on CPU: runs claim N "devices" (CUDA_VISIBLE_DEVICES=0,...,N-1) through
the lock files of autopilot.train.gpus. No device is used twice at once, none idles while a run waits, and a
claim ends with its process however it ends (exit, exception, SIGKILL), but not while its trainer lives."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lm_helpers import write_config

from autopilot.train import gpus
from autopilot.train.contract import TrainerRun

CLAIMER = """
import json, os, sys, time
from autopilot.train import gpus
gpus.POLL_SECONDS = 0.02
lock_dir, events, hold, mode = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
asked = time.monotonic()
with gpus.claim(lock_dir) as device:
    got = time.monotonic()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == device
    print(device, flush=True)
    if mode == "crash":
        raise RuntimeError("the trainer crashed")
    trainer = [sys.executable, "-c", "from autopilot.train import gpus; gpus.join_claim(); print('joined', "
               "flush=True); import time; time.sleep(60)"]
    if mode == "trainer":  # a trainer started as the supervisor starts one: it gets the lock's descriptor too
        from autopilot.train import supervisor
        run_lock = os.open(os.path.join(lock_dir, "run.lock"), os.O_RDWR | os.O_CREAT)  # see train.runlock
        with open(events, "ab") as out:
            proc = supervisor.start(trainer, os.getcwd(), out, events, run_lock)
        print(proc.pid, flush=True)
    if mode == "pooled":  # started by another process (the warm pool): it only has AUTOPILOT_GPU_CLAIM to join
        import subprocess
        proc = subprocess.Popen(trainer, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert proc.stdout.readline().strip() == "joined"
        print(proc.pid, flush=True)
    time.sleep(hold)
    released = time.monotonic()
with open(events, "a") as f:
    f.write(json.dumps({"device": device, "asked": asked, "got": got, "released": released}) + "\\n")
"""
HOLD_SECONDS = 1.5
SLACK_SECONDS = 1.0  # how long a freed device may wait for a waiting run: polling and a loaded machine


def start(tmp_path: Path, n_devices: int, mode: str = "exit", hold: float = HOLD_SECONDS) -> subprocess.Popen:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(map(str, range(n_devices))),
           "AUTOPILOT_NO_WARMSTART": "1"}
    return subprocess.Popen([sys.executable, "-c", CLAIMER, str(tmp_path / "locks"), str(tmp_path / "events.jsonl"),
                             str(hold), mode], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def is_free(tmp_path: Path, device: str) -> bool:
    fd = gpus.try_claim(device, tmp_path / "locks")
    if fd is not None:
        os.close(fd)
    return fd is not None


@pytest.fixture
def locks(tmp_path):
    (tmp_path / "locks").mkdir()
    return tmp_path


def test_a_generation_of_runs_keeps_every_device_busy_and_none_shared(locks):
    n, k = 3, 8
    procs = [start(locks, n) for _ in range(k)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    runs = [json.loads(line) for line in (locks / "events.jsonl").read_text().splitlines()]
    assert len(runs) == k and {r["device"] for r in runs} == {"0", "1", "2"}
    for device in "012":  # one run at a time on each device
        spans = sorted((r["got"], r["released"]) for r in runs if r["device"] == device)
        assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))
    waited = [r for r in runs if r["got"] - r["asked"] > SLACK_SECONDS]
    assert len(waited) >= k - n  # the rest waited for a device...
    for release in sorted(r["released"] for r in runs):  # ...and took each one as soon as it was free
        waiting = [r for r in waited if r["asked"] < release < r["got"]]
        if waiting:
            assert any(release <= r["got"] <= release + SLACK_SECONDS for r in runs), release


@pytest.mark.parametrize("mode", ["exit", "crash"])
def test_a_claim_ends_with_its_run(locks, mode):
    proc = start(locks, 2, mode, hold=0.1)
    device = proc.stdout.readline().strip()
    assert proc.wait(timeout=60) == (0 if mode == "exit" else 1)
    assert device in ("0", "1") and is_free(locks, device) and is_free(locks, "1" if device == "0" else "0")


def test_a_sigkilled_run_leaves_no_stale_claim(locks):
    proc = start(locks, 2, hold=600)
    device = proc.stdout.readline().strip()
    assert not is_free(locks, device)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert is_free(locks, device)


@pytest.mark.parametrize("mode", ["trainer", "pooled"])
def test_the_claim_lasts_as_long_as_the_trainer(locks, mode):
    """`autopilot train` killed: a trainer it started dies with it (PR_SET_PDEATHSIG), and the claim ends with both;
    a trainer another process started (the warm pool, until it sees its supervisor gone) keeps the claim."""
    proc = start(locks, 2, mode, hold=600)
    device, trainer = proc.stdout.readline().strip(), int(proc.stdout.readline())
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        if mode == "pooled":
            assert not is_free(locks, device)
            os.killpg(trainer, signal.SIGKILL)  # it ends at last, and its claim with it
        deadline = time.monotonic() + 30
        while not is_free(locks, device):
            assert time.monotonic() < deadline, "the claim outlived the trainer, or the trainer its supervisor"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(trainer, signal.SIGKILL)


def test_without_several_devices_nothing_is_claimed(monkeypatch, tmp_path):
    for listed in ("", "0"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
        with gpus.claim(tmp_path) as device:
            assert device is None and gpus.held_fds() == ()
    assert list(tmp_path.iterdir()) == []


def test_a_trainer_started_from_its_config_joins_the_claim(locks, monkeypatch):
    fd = gpus.try_claim("1", locks / "locks")
    monkeypatch.setenv(gpus.CLAIM_ENV, str(gpus.lock_path("1", locks / "locks")))
    run = write_config(locks / "p")  # any run's config.json; nothing is trained
    os.close(fd)
    try:
        TrainerRun.from_argv([str(run.config), str(run.dir)])
        assert not is_free(locks, "1")  # this process holds it now, as the trainer it stands for
    finally:
        os.close(gpus._joined.pop(str(gpus.lock_path("1", locks / "locks"))))
    assert is_free(locks, "1")
