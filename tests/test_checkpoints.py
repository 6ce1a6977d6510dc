"""Checkpoints: round trip, atomic under SIGKILL, never replaced, random states, and a retention property."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot.errors import TrainerError
from autopilot.train import checkpoints


def test_save_latest_load_round_trip(tmp_path):
    ckpt = tmp_path / "checkpoint"
    assert checkpoints.latest(ckpt) is None
    for step in (5, 10):
        checkpoints.save(ckpt, step, {"w": torch.full((3,), float(step)), "step": step}, metric=step / 10,
                         write_extra=lambda folder: (folder / "model").mkdir())
    last = checkpoints.latest(ckpt)
    assert last.name == "step-00000010" and (last / "model").is_dir()
    state = checkpoints.load(last)
    assert state["step"] == 10 and torch.equal(state["w"], torch.full((3,), 10.0))
    assert checkpoints.meta(last)["metric"] == 1.0


def test_a_complete_checkpoint_is_never_replaced(tmp_path):
    first = checkpoints.save(tmp_path, 3, {"v": 1})
    again = checkpoints.save(tmp_path, 3, {"v": 2})
    assert again == first and checkpoints.load(first)["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000003"]  # no temp folder left behind


def test_an_exception_mid_write_leaves_nothing(tmp_path):
    checkpoints.save(tmp_path, 1, {"v": 1})

    def broken(folder):
        (folder / "partial.bin").write_bytes(b"x" * 100)
        raise OSError("disk full")

    try:
        checkpoints.save(tmp_path, 2, {"v": 2}, write_extra=broken)
    except OSError:
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000001"]


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from autopilot.train import checkpoints
    ckpt = Path(sys.argv[1])
    def slow(folder):
        (folder / "model.safetensors").write_bytes(b"half of the weights")
        (ckpt.parent / "writing").touch()
        time.sleep(60)   # killed here, in the middle of the checkpoint
    checkpoints.save(ckpt, int(sys.argv[2]), {"v": "new"}, write_extra=slow)
""")


def kill_mid_write(tmp_path, step: int) -> None:
    ckpt = tmp_path / "checkpoint"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(ckpt), str(step)])
    deadline = time.monotonic() + 30
    while not (tmp_path / "writing").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the writer never started its checkpoint"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (tmp_path / "writing").unlink()


def test_a_checkpoint_killed_mid_write_never_replaces_a_good_one(tmp_path):
    ckpt = tmp_path / "checkpoint"
    good = checkpoints.save(ckpt, 4, {"v": "good"}, metric=0.5)
    kill_mid_write(tmp_path, 8)  # a newer step, killed mid-write: must not shadow the good one
    assert checkpoints.latest(ckpt) == good and checkpoints.complete(ckpt) == [good]
    assert checkpoints.load(good)["v"] == "good"
    assert len(list(ckpt.glob(".step-*.tmp"))) == 1  # the torn temp folder, invisible to latest()
    checkpoints.prune(ckpt, keep_last=1, goal="minimize")
    assert list(ckpt.glob(".step-*.tmp")) == [] and checkpoints.latest(ckpt) == good


def test_rng_state_round_trip():
    state = checkpoints.rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(2))
    random.random(), np.random.rand(), torch.rand(5)  # move every generator on
    checkpoints.set_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(2))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


class Tampered:
    """What a doctored state.pt could hold: an object whose unpickling runs a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_training_state_with_random_states_loads_as_data_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    path = checkpoints.save(tmp_path, 1, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                          "rng": checkpoints.rng_state(), "epoch": 1, "trained_seconds": 0.5})
    state = checkpoints.load(path)
    assert torch.equal(state["model"]["weight"], model.state_dict()["weight"])
    assert state["optimizer"]["param_groups"][0]["lr"] == 0.01
    checkpoints.set_rng_state(state["rng"])  # NumPy's uint32 key array came back as an array


def test_a_tampered_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = checkpoints.save(tmp_path / "checkpoint", 1, {"model": {}, "rng": Tampered(marker)})
    with pytest.raises(TrainerError, match="not loaded: it holds more than tensors, plain data and random states"):
        checkpoints.load(path)
    assert not marker.exists()


# ---------------------------------------------------------------- retention: a property over many schedules

def simulate(tmp_path, save_every: int, eval_every: int, keep: int, steps: int, metrics: list[float], goal: str):
    """Save every `save_every` steps (with the metric when an evaluation fell on that step) and prune after
    each save, as the trainers do; after every prune the best and the latest must still be there."""
    pick = min if goal == "minimize" else max
    saved: dict[int, float | None] = {}
    for step in range(1, steps + 1):
        if step % save_every:
            continue
        metric = metrics[step % len(metrics)] if step % eval_every == 0 else None
        checkpoints.save(tmp_path, step, None, metric=metric)
        saved[step] = metric
        checkpoints.prune(tmp_path, keep_last=keep, goal=goal)
        present = {int(p.name.removeprefix("step-")) for p in checkpoints.complete(tmp_path)}
        scored = [(m, s) for s, m in saved.items() if m is not None]
        assert step in present, "the latest checkpoint was deleted"
        if scored:
            best_value = pick(m for m, _ in scored)
            best_step = min(s for m, s in scored if m == best_value)  # ties: the earliest best is kept
            assert best_step in present, f"the best checkpoint (step {best_step}) was deleted"
        assert len(present) <= max(keep, 1) + 1
        assert sorted(present)[-max(keep, 1):] == sorted(saved)[-max(keep, 1):]  # the last K, all of them


@settings(max_examples=150, deadline=None)
@given(save_every=st.integers(1, 7), eval_every=st.integers(1, 9), keep=st.integers(0, 4),
       steps=st.integers(1, 60), metrics=st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=12),
       goal=st.sampled_from(["minimize", "maximize"]))
def test_prune_never_deletes_the_best_or_the_latest(tmp_path_factory, save_every, eval_every, keep, steps, metrics,
                                                     goal):
    with mock.patch("os.fsync"):  # durability is not what this property is about; fsync would make it slow
        simulate(tmp_path_factory.mktemp("ckpt"), save_every, eval_every, keep, steps, metrics, goal)
