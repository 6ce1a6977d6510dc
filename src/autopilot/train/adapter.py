"""Run an unmodified training script as a trainer: autopilot keeps the trainer contract on its behalf.

The script gets its hyperparameters as flags or Hydra overrides (`script_argv`) and never hears of autopilot.
This process starts it in a process group of its own, copies its output to train.log, and reads its metrics
from what it already writes (`script_metrics`: its output, a JSON file, TensorBoard events). Each loss value
goes through the contract's NaN and explosion checks and into metrics.jsonl; status.json gets heartbeats,
step and loss. Control files act on the script from outside: pause stops its group (SIGSTOP) until resume,
stop and skip end it, and so does its time budget. At the end this process writes trainer_summary.json: the
study's metric as last reported, the other metrics, per-example scores when the script writes them.

A script that the system killed (a signal it did not get from here, exit status 137) leaves no summary, and
this process dies the same way, so that the supervisor retries it as it retries any trainer killed by the
system. When this process is told to stop (the supervisor's SIGTERM), it ends the script's group first.

Usage (the supervisor builds this argv from the study's trainer settings: `trainer_argv`):
    python -m autopilot.train.adapter --metrics-from JSON CONFIG_JSON RUN_DIR -- SCRIPT [ARG...]
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from autopilot import extras, fsio, processes
from autopilot.enums import Phase, RunStatus
from autopilot.errors import AutopilotError, TrainerError, TrainingDiverged
from autopilot.paths import control_file
from autopilot.settings import MetricsFrom, Trainer
from autopilot.train import script_argv, script_metrics
from autopilot.train.contract import TrainerRun

log = logging.getLogger(__name__)

MODULE = "autopilot.train.adapter"
POLL_SECONDS = 0.2  # how often output, control files and the script's state are looked at
FILE_POLL_SECONDS = 1.0  # how often the files a script writes (JSON, event files) are read again
PAUSE_POLL_SECONDS = 0.5
TERM_WAIT_SECONDS = 3.0  # SIGTERM to SIGKILL of the script's group: within the supervisor's 5 s for this process
OUTPUT_DRAIN_SECONDS = 5.0  # after the script exits, how long its output pipe may stay open (a child holding it)
TAIL_LINES = 20  # of the script's output, quoted in the error of a failed run
SIGKILL_EXIT = 128 + signal.SIGKILL  # a shell's status for a child killed by SIGKILL (the OOM killer's signature)


def trainer_argv(trainer: Trainer, config: dict, config_path: str, run_dir: str) -> list[str]:
    """argv of a `task: command` trainer: the script itself when it keeps the contract, else this adapter around it."""
    script = script_argv.script_argv(trainer, config, config_path, run_dir)
    if trainer.metrics_from.source == "contract":
        return script
    return [sys.executable, "-m", MODULE, "--metrics-from", json.dumps(trainer.metrics_from.as_dict(), sort_keys=True),
            config_path, run_dir, "--", *script]


class Interrupted(TrainerError):
    """This process was told to stop: the script's group was ended; the supervisor writes what happened."""


class ScriptRun:
    """One run of the script: started, watched, ended, summarized."""

    def __init__(self, run: TrainerRun, settings: MetricsFrom, argv: list[str]):
        self.run, self.settings, self.argv = run, settings, argv
        self.run.device = "unknown"  # the script's business; the manifest says so
        if settings.source == "tensorboard":
            extras.require("tensorboard", "trainer.metrics_from.source: tensorboard")
        self.reader = script_metrics.make_reader(settings, run.run_dir, run.root)
        self.per_example_before = self.per_example_path and script_metrics.file_signature(self.per_example_path)
        self.latest: dict[str, float] = {}
        self.losses = 0
        self.diverged = ""
        self.lines: queue.Queue = queue.Queue()
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.signalled: list[int] = []
        self.proc: subprocess.Popen | None = None
        self.pump: threading.Thread | None = None

    @property
    def per_example_path(self) -> Path | None:
        return self.run.run_dir / self.settings.per_example if self.settings.per_example else None

    # --- the script's process --------------------------------------------------------------------------
    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, cwd=self.run.root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            process_group=0, preexec_fn=functools.partial(processes.die_with_parent, os.getpid()),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.pump = threading.Thread(target=self.copy_output, daemon=True)
        self.pump.start()

    def copy_output(self) -> None:
        """Each output line to train.log (this process's stdout) as it comes, and to the queue for the readers."""
        out = sys.stdout.buffer
        for raw in iter(self.proc.stdout.readline, b""):
            out.write(raw)
            out.flush()
            self.lines.put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        self.lines.put(None)

    def signal_group(self, sig: int) -> None:
        processes.signal_group(self.proc.pid, sig)

    def end_script(self) -> None:
        """SIGTERM the script's group (woken first, if paused), SIGKILL it after TERM_WAIT_SECONDS."""
        self.signal_group(signal.SIGCONT)
        self.signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout=TERM_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        self.signal_group(signal.SIGKILL)  # and whatever it started that outlived it
        self.proc.wait()

    # --- while it runs ---------------------------------------------------------------------------------
    def supervise(self) -> str | None:
        """Watch the script until it exits (None) or must end: `stopped`, `skipped`, `timeout`, `diverged`."""
        next_file_poll = 0.0
        while True:
            exited = self.proc.poll() is not None
            if exited:
                self.signal_group(signal.SIGKILL)  # what it started and left behind (a loader worker holding stdout)
                self.pump.join(OUTPUT_DRAIN_SECONDS)
            try:
                self.read_output()
                if exited or self.reader.reads_output or time.monotonic() >= next_file_poll:
                    self.take(self.reader.poll(final=exited))
                    next_file_poll = time.monotonic() + FILE_POLL_SECONDS
            except TrainingDiverged as e:
                self.diverged = str(e)
                return "diverged"
            if exited:
                return None
            self.run.heartbeat(phase=Phase.TRAIN)
            reason = self.control()
            if reason:
                return reason
            time.sleep(POLL_SECONDS)

    def read_output(self) -> None:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.tail.append(line)
                self.reader.feed(line)

    def collect_last(self) -> None:
        """What the script wrote before it was ended (a divergence in it no longer changes why it ended)."""
        self.pump.join(OUTPUT_DRAIN_SECONDS)
        self.read_output()
        try:
            self.take(self.reader.poll(final=True))
        except TrainingDiverged:
            pass

    def take(self, records: list[dict]) -> None:
        """New records: their step, the loss checks, metrics.jsonl, the latest value of each metric."""
        loss_key, step_key = self.settings.loss, self.settings.step
        lines = []
        try:
            for record in records:
                step = record.pop(step_key, None)
                if loss_key in record:
                    self.losses += 1
                    self.run.check_loss(record[loss_key], self.losses if step is None else int(step))
                    self.run.last_loss = record[loss_key]
                if step is not None or loss_key in record:
                    self.run.steps = self.losses if step is None else int(step)
                if record:
                    record = {k: v if math.isfinite(v) else None for k, v in record.items()}  # JSON has no NaN
                    lines.append({"step": self.run.steps, "time": round(self.run.elapsed(), 3), **record})
                    self.latest.update(record)
        finally:  # one write and one fsync for a poll's records: a script may print thousands a second
            if lines:
                fsio.append_text(self.run.files.metrics, "".join(
                    json.dumps(line, ensure_ascii=False, allow_nan=False) + "\n" for line in lines))

    def control(self) -> str | None:
        """The control files and the budget: why the script must end now, if it must (a pause waits here)."""
        if self.signalled:
            raise Interrupted(f"stopped by {signal.Signals(self.signalled[0]).name}")
        pause, stop, skip = (control_file(self.run.control_dir, s) for s in ("pause", "stop", "skip"))
        if pause.exists() and not stop.exists():
            self.pause()
        if stop.exists():
            return RunStatus.STOPPED
        if skip.exists():
            skip.unlink(missing_ok=True)  # a skip applies to the current run only
            return RunStatus.SKIPPED
        if self.run.elapsed() > self.run.max_seconds:
            return RunStatus.TIMEOUT
        return None

    def pause(self) -> None:
        """Hold the script's whole group (SIGSTOP) while control/pause exists; paused time is not budget time."""
        pause, stop = control_file(self.run.control_dir, "pause"), control_file(self.run.control_dir, "stop")
        paused_at = time.monotonic()
        log.info("paused by %s", pause)
        self.signal_group(signal.SIGSTOP)
        try:
            while pause.exists() and not stop.exists() and not self.signalled:
                self.run.heartbeat(phase=Phase.PAUSED, force=True)
                time.sleep(PAUSE_POLL_SECONDS)
        finally:
            self.signal_group(signal.SIGCONT)
        self.run.started += time.monotonic() - paused_at
        self.run.heartbeat(phase=Phase.TRAIN, force=True)

    # --- the end ---------------------------------------------------------------------------------------
    def summarize(self, reason: str | None) -> dict:
        """Write trainer_summary.json for the script; `reason` is why it was ended early (None: it exited)."""
        name = self.run.config["metric"]["name"]
        others = {k: v for k, v in self.latest.items() if k != name and v is not None}
        value = self.latest.get(name)
        if reason == "diverged":
            return self.run.finish(None, metrics=others, status=RunStatus.FAILED,
                                   error=f"training diverged: {self.diverged}")
        if reason is not None:
            return self.run.finish(value, metrics=others, status=reason)
        code = self.proc.returncode
        if code != 0:
            return self.failed(f"the script exited with status {code}", others)
        if value is None:
            return self.failed(f"the script exited 0 without reporting {name!r}: looked for {self.reader.where(name)}",
                               others)
        try:
            per_example = self.read_per_example()
        except TrainerError as e:
            return self.failed(str(e), others)
        example_name = self.per_example_path.stem if per_example is not None else "score"
        return self.run.finish(value, per_example=per_example, metrics=others, per_example_name=example_name)

    def failed(self, error: str, others: dict) -> dict:
        tail = "\n".join(self.tail)
        return self.run.finish(None, metrics=others, status=RunStatus.FAILED,
                               error=error + (f"\n--- last lines of its output ---\n{tail}" if tail else ""))

    def read_per_example(self) -> list[float] | None:
        """The per-example scores the script wrote this run (trainer.metrics_from.per_example), or None if unset."""
        path = self.per_example_path
        if path is None:
            return None
        shown = path.relative_to(self.run.root)
        signature = script_metrics.file_signature(path)
        if signature is None or signature == self.per_example_before:
            return self.missing_per_example(shown, "the script did not write it" if signature is None
                                            else "the script did not write it this time (it is older than the run)")
        try:
            values = fsio.read_json(path)
        except Exception as e:  # any unreadable file is the script's failure
            return self.missing_per_example(shown, f"it is not JSON ({e})")
        if not isinstance(values, list) or not values or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return self.missing_per_example(shown, "it is not a non-empty JSON list of numbers")
        return [float(v) for v in values]

    def missing_per_example(self, shown: Path, why: str) -> None:
        raise TrainerError(f"trainer.metrics_from.per_example names {shown}, but {why}")

    def system_kill(self) -> int | None:
        """The way to die that tells the supervisor the system killed the script (a signal, 137), or None."""
        code = self.proc.returncode
        if code < 0:
            return code
        return code if code == SIGKILL_EXIT else None


def run_script(config_path: Path, settings: MetricsFrom, argv: list[str]) -> int:
    """The adapter's whole life; returns its exit status (or dies by the script's signal)."""
    run = TrainerRun(fsio.read_json(config_path))
    print(f"=== autopilot adapter: {' '.join(argv)} ===", flush=True)
    try:
        script = ScriptRun(run, settings, argv)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda signum, frame: script.signalled.append(signum))
        run.begin_training()
        script.start()
    except (AutopilotError, OSError) as e:
        run.finish(None, status=RunStatus.FAILED, error=f"could not start the script {argv[0]!r}: {e}")
        return 1
    try:
        reason = script.supervise()
    except Interrupted as e:
        script.end_script()
        log.warning("%s: the script's process group was ended", e)
        return 128 + script.signalled[0]
    if reason is not None:
        script.end_script()
        script.collect_last()
    run.end_training()
    killed = None if reason else script.system_kill()
    if killed is not None:
        log.warning("the script was killed from outside (status %d); no summary, so that it may be retried", killed)
        if killed < 0:
            if -killed not in (signal.SIGKILL, signal.SIGSTOP):  # those two have no handler to reset
                signal.signal(-killed, signal.SIG_DFL)
            os.kill(os.getpid(), -killed)
        return killed
    summary = script.summarize(reason)
    return 1 if summary["status"] == RunStatus.FAILED else 0


def parse_argv(argv: list[str]) -> tuple[MetricsFrom, Path, list[str]]:
    if "--" not in argv or argv[:1] != ["--metrics-from"] or argv.index("--") != 4 or len(argv) < 6:
        raise SystemExit(f"usage: python -m {MODULE} --metrics-from JSON CONFIG_JSON RUN_DIR -- SCRIPT [ARG...]")
    return MetricsFrom.parse(json.loads(argv[1])), Path(argv[2]), argv[5:]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings, config_path, script = parse_argv(sys.argv[1:] if argv is None else argv)
    try:
        return run_script(config_path, settings, script)
    except AutopilotError as e:
        log.error("%s", e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
