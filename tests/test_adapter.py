"""An unmodified script run as a trainer: metrics read from its output, a JSON file or TensorBoard; the contract's
loss checks, control files, budget and summary kept on its behalf; system kills retried by the supervisor."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from autopilot import fsio, schemas
from autopilot.paths import RunPaths
from autopilot.settings import MetricsFrom, Trainer
from autopilot.train import adapter, supervisor

# A user's script: argparse flags in, metrics out in the way --mode says. It knows nothing of autopilot.
SCRIPT = textwrap.dedent("""
    import argparse, json, math, os, signal, sys, time
    from pathlib import Path
    p = argparse.ArgumentParser()
    p.add_argument("--mode"); p.add_argument("--out"); p.add_argument("--lr", type=float)
    p.add_argument("--steps", type=int, default=3); p.add_argument("--sleep", type=float, default=0.0)
    a = p.parse_args()
    out = Path(a.out)
    starts = out / "starts"
    n = int(starts.read_text()) + 1 if starts.exists() else 1
    starts.write_text(str(n))
    if a.mode == "sigkill-once" and n == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    losses = [1.0 / (s + 1) for s in range(a.steps)]
    if a.mode == "nan":
        losses[2] = float("nan")
    for step, loss in enumerate(losses, 1):
        if a.mode == "json-lines":
            print(json.dumps({"step": step, "loss": loss, "lr": a.lr}))
            if step == 2:
                print('{"grad_norm": NaN}')
        elif a.mode == "json-file":
            (out / "metrics.json").write_text(json.dumps({"step": step, "loss": loss, "acc": 0.5 + step / 100}))
        elif a.mode == "jsonl-file":
            with open(out / "metrics.jsonl.user", "a") as f:
                f.write(json.dumps({"step": step, "loss": loss}) + "\\n")
        elif a.mode == "tensorboard":
            from tensorboard.compat.proto import event_pb2, summary_pb2
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
            w = globals().get("w") or EventFileWriter(str(out / "tb"))
            v = [summary_pb2.Summary.Value(tag="train/loss", simple_value=loss)]
            w.add_event(event_pb2.Event(step=step, wall_time=time.time(), summary=summary_pb2.Summary(value=v)))
            w.flush()
        else:
            print(f"step {step} loss {loss:.4f}", flush=True)
        time.sleep(a.sleep)
    if a.mode == "no-metric":
        sys.exit(0)
    if a.mode == "exit3":
        print("Traceback: something broke"); sys.exit(3)
    if a.mode == "json-lines":
        print(json.dumps({"acc": 0.75, "epochs": 3}))
    elif a.mode == "tensorboard":
        v = [summary_pb2.Summary.Value(tag="acc", simple_value=0.9)]
        w.add_event(event_pb2.Event(step=a.steps, wall_time=time.time(), summary=summary_pb2.Summary(value=v)))
        w.close()
    elif a.mode == "jsonl-file":
        with open(out / "metrics.jsonl.user", "a") as f:
            f.write(json.dumps({"acc": 0.8}) + "\\n")
    elif a.mode != "json-file":
        print("final acc: 0.7500")
    if a.mode != "no-per-example":
        (out / "pe.json").write_text(json.dumps([1, 0, 1, 1]))
""")

STDOUT = {"source": "stdout", "patterns": {"loss": r"loss (\S+)", "acc": r"acc: (?P<value>[0-9.]+)",
                                           "step": r"^step (\d+)"},
          "path": None, "loss": "loss", "step": "step", "per_example": "pe.json"}


def settings(**changes) -> MetricsFrom:
    return MetricsFrom.parse({**STDOUT, **changes})


def trainer(command: list[str], args: str, metrics_from: MetricsFrom) -> Trainer:
    return Trainer(command=tuple(command), args=args, metrics_from=metrics_from)


def setup_run(root: Path, max_seconds: float = 60) -> tuple[RunPaths, dict]:
    (root / "script.py").write_text(SCRIPT)
    run = RunPaths(root / "runs" / "s" / "00001")
    run.dir.mkdir(parents=True)
    config = {"run_id": "00001", "study": "s", "task": "command", "seed": 7, "seed_index": 0,
              "hparams": {"lr": 1e-05}, "overrides": {}, "metric": {"name": "acc", "goal": "maximize"},
              "max_seconds": max_seconds, "data": {}, "init_model": None,
              "paths": {"run_dir": "runs/s/00001", "control_dir": "control", "status_file": "status/status.json"}}
    fsio.atomic_write_json(run.config, config)
    return run, config


def train(root: Path, mode: str, metrics_from: MetricsFrom, max_seconds: float = 60, max_retries: int = 0,
          steps: int = 3, sleep: float = 0.0, run_config=None) -> dict:
    run, config = run_config or setup_run(root, max_seconds)
    script = trainer([sys.executable, "script.py", "--mode", mode, "--out", "{run_dir}", "--steps", str(steps),
                      "--sleep", str(sleep)], "flags", metrics_from)
    argv = adapter.trainer_argv(script, config, "runs/s/00001/config.json", "runs/s/00001")
    return supervisor.run_trainer(argv, run, config, root, max_retries=max_retries)


def metric_lines(run_dir: Path) -> list[dict]:
    return list(fsio.iter_jsonl(run_dir / "metrics.jsonl"))


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setattr(supervisor, "RETRY_WAIT_SECONDS", 0.0)


def test_the_argv_wraps_the_script_in_the_adapter_only_when_metrics_are_read_for_it():
    config = {"hparams": {"lr": 1e-05}, "seed": 1}
    argv = adapter.trainer_argv(trainer(["python", "t.py"], "flags", settings()), config, "r/config.json", "r")
    assert argv[:3] == [sys.executable, "-m", "autopilot.train.adapter"] and json.loads(argv[4]) == STDOUT
    assert argv[5:] == ["r/config.json", "r", "--", "python", "t.py", "--lr", "1e-05"]
    contract = trainer(["python", "t.py"], "flags", settings(source="contract"))
    assert adapter.trainer_argv(contract, config, "r/config.json", "r") == ["python", "t.py", "--lr", "1e-05"]


def test_stdout_patterns_give_the_metric_the_loss_series_and_the_per_example_scores(tmp_path):
    summary = train(tmp_path, "stdout", settings())
    assert summary["status"] == "completed", summary["error"]
    assert summary["metric"] == {"name": "acc", "value": 0.75, "goal": "maximize"}
    assert summary["per_example"] == {"name": "pe", "goal": "maximize", "values": [1.0, 0.0, 1.0, 1.0]}
    assert summary["steps"] == 3 and summary["metrics"]["loss"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["device"] == "unknown" and summary["attempts"] == 1
    schemas.validate(summary, "trainer_summary")
    run_dir = tmp_path / "runs/s/00001"
    assert [(m["step"], m["loss"]) for m in metric_lines(run_dir) if "loss" in m] == [(1, 1.0), (2, 0.5), (3, 0.3333)]
    log = (run_dir / "train.log").read_text()
    assert "step 2 loss 0.5000" in log and "--lr 1e-05" in log  # the script's output, and the flags it got
    status = fsio.read_json(tmp_path / "status/status.json")
    assert status["phase"] == "finished" and status["run"] == "00001" and status["loss"] == pytest.approx(0.3333)


def test_json_lines_on_stdout(tmp_path):
    summary = train(tmp_path, "json-lines", settings(patterns=None))
    assert summary["status"] == "completed" and summary["metric"]["value"] == 0.75
    assert summary["metrics"] == {"loss": pytest.approx(1 / 3), "lr": 1e-05, "epochs": 3.0}
    lines = metric_lines(tmp_path / "runs/s/00001")
    assert [m["step"] for m in lines if "loss" in m] == [1, 2, 3]
    assert [m["grad_norm"] for m in lines if "grad_norm" in m] == [None]  # NaN of a metric other than the loss


@pytest.mark.parametrize("mode,path,value", [("json-file", "metrics.json", 0.53),
                                             ("jsonl-file", "metrics.jsonl.user", 0.8)])
def test_a_json_file_rewritten_or_appended_to(tmp_path, mode, path, value):
    summary = train(tmp_path, mode, settings(source="json_file", patterns=None, path=path), sleep=0.4)
    assert summary["status"] == "completed", summary["error"]
    assert summary["metric"]["value"] == value
    losses = [m["loss"] for m in metric_lines(tmp_path / "runs/s/00001") if "loss" in m]
    assert losses[-1] == pytest.approx(1 / 3) and all(round(loss, 4) in (1.0, 0.5, 0.3333) for loss in losses)


def test_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    summary = train(tmp_path, "tensorboard", settings(source="tensorboard", patterns=None, loss="train/loss"))
    assert summary["status"] == "completed", summary["error"]
    assert summary["metric"]["value"] == 0.9  # written as float32, read as the number meant
    assert summary["metrics"]["train/loss"] == pytest.approx(1 / 3) and summary["steps"] == 3
    assert [m["train/loss"] for m in metric_lines(tmp_path / "runs/s/00001") if "train/loss" in m] == [
        1.0, 0.5, pytest.approx(1 / 3)]


def test_a_nan_loss_ends_the_script_at_once_as_failed(tmp_path):
    t0 = time.monotonic()
    summary = train(tmp_path, "nan", settings(), steps=50, sleep=0.2)
    assert summary["status"] == "failed" and "training diverged: loss became nan at step 3" in summary["error"]
    assert time.monotonic() - t0 < 8  # not the 10 s the script would have taken


def test_an_exploding_loss_in_json_lines_is_divergence(tmp_path):
    run, config = setup_run(tmp_path)
    (tmp_path / "script.py").write_text('import json\nfor s, l in enumerate([1.0, 2.0, 500.0], 1):\n'
                                        '    print(json.dumps({"step": s, "loss": l}))\nprint(\'{"acc": 1}\')\n')
    summary = train(tmp_path, "x", settings(patterns=None), run_config=(run, config))
    assert summary["status"] == "failed" and "loss exploded at step 3" in summary["error"]


@pytest.mark.parametrize("mode,source,message", [
    ("no-metric", "stdout", "exited 0 without reporting 'acc': looked for the regex 'acc: (?P<value>[0-9.]+)' in "
                            "the script's output (3 lines"),
    ("no-metric", "json", "looked for a JSON object line with a number under 'acc' in the script's output"),
    ("stdout", "json_file", "looked for 'acc' in runs/s/00001/metrics.json, which the script did not write"),
    ("stdout", "tensorboard", "looked for a scalar tag 'acc' in TensorBoard event files under runs/s/00001, but the "
                              "script wrote none there"),
    ("exit3", "stdout", "the script exited with status 3\n--- last lines of its output ---\nstep 1 loss"),
    ("no-per-example", "stdout", "trainer.metrics_from.per_example names runs/s/00001/pe.json, but the script did "
                                 "not write it"),
])
def test_what_is_missing_is_named_with_where_it_was_looked_for(tmp_path, mode, source, message):
    changes = {"stdout": {}, "json": {"patterns": None}, "json_file": {"source": "json_file", "patterns": None,
               "path": "metrics.json"}, "tensorboard": {"source": "tensorboard", "patterns": None}}[source]
    summary = train(tmp_path, mode, settings(**changes))
    assert summary["status"] == "failed" and summary["attempts"] == 1
    assert message in summary["error"]
    assert summary["metric"]["value"] is None


def test_files_from_before_the_run_do_not_count(tmp_path):
    run, config = setup_run(tmp_path)
    (run.dir / "metrics.json").write_text('{"acc": 0.99}')  # an earlier attempt's
    (run.dir / "pe.json").write_text("[1, 1]")
    summary = train(tmp_path, "no-per-example", settings(source="json_file", patterns=None, path="metrics.json",
                                                         loss=None), run_config=(run, config))
    assert "metrics.json, which the script did not write this time (it is older than the run)" in summary["error"]
    summary = train(tmp_path, "no-per-example", settings(), run_config=(run, config))
    assert "pe.json, but the script did not write it this time" in summary["error"]


def test_a_script_killed_by_the_system_is_retried_by_the_supervisor(tmp_path):
    summary = train(tmp_path, "sigkill-once", settings(), max_retries=1)
    assert summary["status"] == "completed" and summary["attempts"] == 2
    assert "attempt 1 was killed by signal SIGKILL: retrying" in (tmp_path / "runs/s/00001/train.log").read_text()


def test_a_script_that_cannot_be_started_is_failed_with_the_reason(tmp_path):
    run, config = setup_run(tmp_path)
    argv = adapter.trainer_argv(trainer(["no-such-program-xyz"], "none", settings()), config,
                                "runs/s/00001/config.json", "runs/s/00001")
    summary = supervisor.run_trainer(argv, run, config, tmp_path)
    assert summary["status"] == "failed" and "could not start the script 'no-such-program-xyz'" in summary["error"]


def in_background(fn) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("signal_file,status", [("stop", "stopped"), ("skip", "skipped")])
def test_stop_and_skip_end_the_script_with_the_last_metric_seen(tmp_path, signal_file, status):
    result = {}
    thread = in_background(lambda: result.update(train(tmp_path, "stdout", settings(), steps=400, sleep=0.05)))
    log = tmp_path / "runs/s/00001/train.log"
    wait_for(lambda: log.exists() and "step 3 loss" in log.read_text())
    (tmp_path / "control").mkdir()
    (tmp_path / "control" / signal_file).touch()
    thread.join(30)
    assert result["status"] == status and result["steps"] >= 3
    assert (tmp_path / "control" / signal_file).exists() is (signal_file == "stop")  # a skip is used up


def test_pause_holds_the_script_and_paused_time_is_not_budget_time(tmp_path):
    result = {}
    (tmp_path / "control").mkdir()
    run_dir = tmp_path / "runs/s/00001"
    thread = in_background(lambda: result.update(train(tmp_path, "stdout", settings(), steps=30, sleep=0.1,
                                                       max_seconds=20)))
    status_file = tmp_path / "status/status.json"
    wait_for(lambda: (run_dir / "metrics.jsonl").exists() and status_file.exists())
    wait_for(lambda: fsio.read_json(status_file)["loss"] is not None)  # the live status shows the script's loss
    assert fsio.read_json(status_file)["phase"] == "train" and fsio.read_json(status_file)["step"] >= 1
    (tmp_path / "control" / "pause").touch()
    wait_for(lambda: fsio.read_json(status_file)["phase"] == "paused")
    time.sleep(0.5)
    held = len(metric_lines(run_dir))
    time.sleep(1.5)
    assert len(metric_lines(run_dir)) == held  # the script's group is stopped: no output while paused
    (tmp_path / "control" / "pause").unlink()
    thread.join(60)
    assert result["status"] == "completed" and result["steps"] == 30


def test_past_its_budget_the_script_is_ended_as_timeout(tmp_path):
    t0 = time.monotonic()
    summary = train(tmp_path, "stdout", settings(), steps=400, sleep=0.05, max_seconds=1.5)
    assert summary["status"] == "timeout" and summary["steps"] >= 1
    assert time.monotonic() - t0 < 1.5 + supervisor.grace_seconds(1.5)  # ended by the adapter, not the supervisor
    assert "timeout" not in (summary["error"] or "")


SLEEPER = "import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(120)\n"
LEAVER = ("import json, subprocess, sys\n"
          "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
          "open(sys.argv[1], 'w').write(str(child.pid))\nprint(json.dumps({'acc': 1.0}))\n")


def start_adapter(root: Path) -> tuple:
    import subprocess

    run, config = setup_run(root)
    (root / "sleeper.py").write_text(SLEEPER)
    pid_file = root / "script.pid"
    argv = adapter.trainer_argv(trainer([sys.executable, "sleeper.py", str(pid_file)], "none", settings()), config,
                                "runs/s/00001/config.json", "runs/s/00001")
    proc = subprocess.Popen(argv, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(pid_file.exists)
    wait_for(lambda: pid_file.read_text().strip() != "")
    return proc, int(pid_file.read_text()), run


def gone(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_the_script_does_not_outlive_the_adapter(tmp_path, sig):
    """SIGTERM (the supervisor's, past the hard limit or when told to stop) ends the script's group first;
    if the adapter itself is SIGKILLed, the kernel kills the script (parent-death signal)."""
    import signal

    proc, script_pid, run = start_adapter(tmp_path)
    t0 = time.monotonic()
    proc.send_signal(getattr(signal, sig))
    proc.wait(timeout=30)
    wait_for(lambda: gone(script_pid), timeout=10)
    assert time.monotonic() - t0 < adapter.TERM_WAIT_SECONDS + 5
    assert not run.summary.exists()  # the supervisor says what happened


def test_what_the_script_leaves_behind_is_ended_with_it(tmp_path):
    """A child that outlives the script (and holds its output open) neither delays the summary nor lives on."""
    run, config = setup_run(tmp_path)
    (tmp_path / "leaver.py").write_text(LEAVER)
    argv = adapter.trainer_argv(trainer([sys.executable, "leaver.py", "child.pid"], "none",
                                        settings(patterns=None, loss=None, per_example=None)), config,
                                "runs/s/00001/config.json", "runs/s/00001")
    t0 = time.monotonic()
    summary = supervisor.run_trainer(argv, run, config, tmp_path)
    assert summary["status"] == "completed" and time.monotonic() - t0 < adapter.OUTPUT_DRAIN_SECONDS + 5
    wait_for(lambda: gone(int((tmp_path / "child.pid").read_text())), timeout=10)
