"""The trainer contract, implemented once: every built-in task and any user script use this.

A trainer reads config.json, appends to metrics.jsonl as it goes, keeps status/status.json fresh, honours
control/{pause,stop,skip} and its time budget, writes trainer_summary.json at the end and exits non-zero
on failure. With this module a user script is a few lines:

    from autopilot.train.contract import TrainerRun
    with TrainerRun.from_argv() as run:          # argv: CONFIG RUN_DIR
        for step in range(run.hparams["steps"]):
            loss = train_step()
            run.step(step, loss=loss)            # NaN check, metrics, heartbeat, control files
            if run.should_end:                   # stop/skip/budget: leave the loop, then report
                break
        run.finish(metric_value=acc, per_example=correct)
"""

from __future__ import annotations

import logging
import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

from autopilot import fsio, schemas
from autopilot.errors import TrainingDiverged
from autopilot.paths import RunPaths, control_file
from autopilot.train import gpus
from autopilot.train import summary as trainer_summary

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0  # status.json is refreshed at least this often while training
EXPLODE_FACTOR = 100.0  # a loss this many times the first finite loss counts as divergence
PAUSE_POLL_SECONDS = 0.5


def paused(control_dir: Path) -> bool:
    """control/pause holds a trainer at its next step, unless control/stop ends it."""
    return control_file(control_dir, "pause").exists() and not control_file(control_dir, "stop").exists()


class TrainerRun:
    """One trainer process's side of the contract."""

    def __init__(self, config: dict, root: Path | None = None):
        schemas.validate(config, "config_json", what="config.json")
        self.config = config
        self.root = Path(root or Path.cwd())
        self.run_dir = self.root / config["paths"]["run_dir"]
        self.files = RunPaths(self.run_dir)  # the run folder's files (metrics.jsonl, trainer_summary.json, ...)
        self.control_dir = self.root / config["paths"]["control_dir"]
        self.status_file = self.root / config["paths"]["status_file"]
        self.started = time.monotonic()
        self.train_started: float | None = None
        self.train_seconds = 0.0
        self.end_reason: str | None = None  # "stopped" | "skipped" | "timeout" once the loop must end
        self.first_loss: float | None = None
        self.last_loss: float | None = None
        self.steps = 0
        self.total_steps: int | None = None
        self.start_step = 0  # the step training (re)started from: a resumed run's ETA counts from there
        self.data_hash: str | None = None
        self.device = "cpu"
        self._last_beat = 0.0
        self._finished = False

    # --- construction --------------------------------------------------------------------------------
    @classmethod
    def from_argv(cls, argv: list[str] | None = None) -> TrainerRun:
        """`prog CONFIG RUN_DIR`; the working directory is the project root."""
        argv = sys.argv[1:] if argv is None else argv
        if len(argv) != 2:
            sys.exit(f"usage: {Path(sys.argv[0]).name} CONFIG_JSON RUN_DIR")
        gpus.join_claim()  # the run's GPU stays claimed while this trainer lives, whoever started it
        return cls(fsio.read_json(Path(argv[0])))

    @property
    def hparams(self) -> dict:
        return self.config["hparams"]

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def max_seconds(self) -> float:
        return float(self.config["max_seconds"])

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # --- during training -----------------------------------------------------------------------------
    def begin_training(self, total_steps: int | None = None, start_step: int = 0) -> None:
        self.total_steps = total_steps
        self.start_step = self.steps = start_step
        self.train_started = time.monotonic()
        self.heartbeat(phase="train", force=True)

    def step(self, step: int, loss: float, **metrics: Any) -> None:
        """Record one optimizer step: divergence check, metrics line, heartbeat, control files."""
        self.check_step(step, loss)
        self.record_step(step, loss, **metrics)

    def check_step(self, step: int, loss: float) -> float:
        """The deciding half of `step`: divergence check and control files (a pause holds here); returns the
        elapsed seconds at the step's end, for `record_step`."""
        self.steps = step
        self.check_loss(loss, step)
        self.last_loss = float(loss)
        self.poll_control()
        return self.elapsed()

    def record_step(self, step: int, loss: float, at: float | None = None, **metrics: Any) -> None:
        """The writing half of `step`: the metrics line (time `at`, default now) and the heartbeat. A trainer
        may call it after starting the next step, so that the writes overlap the device's work."""
        line = {"step": step, "time": round(self.elapsed() if at is None else at, 3), "loss": float(loss), **metrics}
        fsio.append_jsonl(self.files.metrics, line)
        self.heartbeat(phase="train", **{k: v for k, v in metrics.items() if k in ("lr", "tokens_per_second")})

    def check_loss(self, loss: float, step: int) -> None:
        loss = float(loss)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"loss became {loss} at step {step}")
        if self.first_loss is None:
            self.first_loss = max(abs(loss), 1e-8)
        elif loss > EXPLODE_FACTOR * self.first_loss:
            raise TrainingDiverged(
                f"loss exploded at step {step}: {loss:.4g} > {EXPLODE_FACTOR:g} x first loss {self.first_loss:.4g}"
            )

    def log_metrics(self, step: int, **values: Any) -> None:
        fsio.append_jsonl(self.files.metrics, {"step": step, "time": round(self.elapsed(), 3), **values})

    def heartbeat(self, phase: str, force: bool = False, **extra: Any) -> None:
        now = time.monotonic()
        if not force and now - self._last_beat < HEARTBEAT_SECONDS:
            return
        self._last_beat = now
        eta = None
        if self.total_steps and self.steps > self.start_step and self.train_started:
            per_step = (now - self.train_started) / (self.steps - self.start_step)
            eta = round(per_step * max(self.total_steps - self.steps, 0), 1)
        status = {
            "phase": phase,
            "study": self.config["study"],
            "run": self.config["run_id"],
            "seed_index": self.config["seed_index"],
            "step": self.steps,
            "total_steps": self.total_steps,
            "loss": self.last_loss,
            "eta_seconds": eta,
            "heartbeat": time.time(),
            **extra,
        }
        fsio.atomic_write_json(self.status_file, status)

    def poll_control(self) -> None:
        """Honour control files: wait while paused; note stop/skip and the time budget in `end_reason`."""
        paused_at = None
        pause, stop, skip = (control_file(self.control_dir, s) for s in ("pause", "stop", "skip"))
        while paused(self.control_dir):
            if paused_at is None:
                paused_at = time.monotonic()
                log.info("paused by %s", pause)
            self.heartbeat(phase="paused", force=True)
            time.sleep(PAUSE_POLL_SECONDS)
        if paused_at is not None:
            # time spent paused is not training time and does not count against the budget
            self.started += time.monotonic() - paused_at
        if stop.exists():
            self.end_reason = "stopped"
        elif skip.exists():
            try:
                skip.unlink(missing_ok=True)  # a skip applies to the current run only
            except OSError:  # a sandboxed trainer (code mode) sees control/ read-only: its runner removes the file
                pass
            self.end_reason = "skipped"
        elif self.elapsed() > self.max_seconds:
            self.end_reason = "timeout"
        elif self.config.get("max_steps") is not None and self.steps >= self.config["max_steps"]:
            self.end_reason = "stopped"  # a smoke run (code mode) of a few steps

    @property
    def should_end(self) -> bool:
        return self.end_reason is not None

    def end_training(self) -> None:
        if self.train_started is not None:
            self.train_seconds = time.monotonic() - self.train_started
        self.heartbeat(phase="evaluate", force=True)

    # --- the end -------------------------------------------------------------------------------------
    def finish(
        self,
        metric_value: float | None,
        per_example: list[float] | None = None,
        metrics: dict | None = None,
        status: str | None = None,
        error: str | None = None,
        **fields: Any,
    ) -> dict:
        """Write trainer_summary.json. Status defaults to `completed`, or to why the loop ended early.

        `fields` are further summary fields: `parameters` (the model's size) and `peak_memory_mb` (measured here
        as the process's peak resident set when not given), which the study's judge.constraints may limit.
        """
        fields.setdefault("peak_memory_mb", peak_rss_mb())
        if self.train_started is not None and not self.train_seconds:
            self.train_seconds = time.monotonic() - self.train_started
        summary = trainer_summary.build(
            self.config, self.root, status or self.end_reason or "completed", metric_value=metric_value,
            per_example=per_example, metrics=metrics, steps=self.steps, train_seconds=self.train_seconds,
            wall_seconds=self.elapsed(), device=self.device, data_hash=self.data_hash, error=error, **fields)
        trainer_summary.write(self.files, summary)
        self._finished = True
        self.heartbeat(phase="finished", force=True)
        return summary

    def __enter__(self) -> TrainerRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or self._finished:
            return False
        if isinstance(exc, TrainingDiverged):
            self.finish(None, status="failed", error=f"training diverged: {exc}")
            log.error("training diverged: %s", exc)
            sys.exit(1)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return False
        self.finish(None, status="failed", error=f"{type(exc).__name__}: {exc}")
        return False  # the traceback goes to train.log; the summary says what happened



class TestRun:
    """The other request of the contract: the champion's score on the held-out test split, once per promotion.

    The registry (autopilot.registry.testscore) asks a built-in task with `python -m autopilot.train.tasks.<task>
    --test REQUEST OUT_DIR`, and a study's own trainer through `trainer.test_command` ({config}: the request,
    {run_dir}: OUT_DIR). The test split is read only here: no trainer, policy or judge ever sees it.

        with TestRun.from_argv() as test:                     # argv: REQUEST OUT_DIR
            model = load(test.weights)                        # the champion's exported weights folder
            test.report(metric_value=acc, per_example=correct)  # writes OUT_DIR/test_summary.json
    """

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, request: dict, root: Path | None = None):
        schemas.validate(request, "test_request", what="test request")
        self.request = request
        self.root = Path(root or Path.cwd())
        self.weights = self.root / request["weights"]
        self.out_dir = self.root / request["out_dir"]
        self.started = time.monotonic()
        self._finished = False

    @classmethod
    def from_argv(cls, argv: list[str] | None = None) -> TestRun:
        """`prog REQUEST OUT_DIR` (after the program's own --test flag); the working directory is the project root."""
        argv = sys.argv[1:] if argv is None else argv
        argv = argv[1:] if argv[:1] == ["--test"] else argv
        if len(argv) != 2:
            sys.exit(f"usage: {Path(sys.argv[0]).name} --test REQUEST_JSON OUT_DIR")
        return cls(fsio.read_json(Path(argv[0])))

    @property
    def hparams(self) -> dict:
        return self.request["hparams"]

    @property
    def data(self) -> dict:
        return self.request["data"]

    def report(self, metric_value: float | None, per_example: list[float] | None = None, metrics: dict | None = None,
               status: str | None = None, error: str | None = None) -> dict:
        """Write test_summary.json: the study's metric on the test split (and how many examples it scored)."""
        value = trainer_summary.finite_or_none(metric_value)
        summary = {
            "status": status or ("completed" if value is not None else "failed"),
            "metric": {"name": self.request["metric"]["name"], "value": value, "goal": self.request["metric"]["goal"]},
            "examples": None if per_example is None else len(per_example),
            "metrics": {k: trainer_summary.finite_or_none(v) for k, v in (metrics or {}).items()},
            "seconds": round(time.monotonic() - self.started, 3),
            "error": error if value is not None or error else "the test evaluation produced no metric",
        }
        schemas.validate(summary, "test_summary", what="test summary")
        fsio.atomic_write_json(self.out_dir / "test_summary.json", summary)
        self._finished = True
        return summary

    def __enter__(self) -> TestRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or self._finished or isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return False
        self.report(None, status="failed", error=f"{type(exc).__name__}: {exc}")
        return False


def peak_rss_mb() -> float:
    """Peak resident set of this process in MB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
