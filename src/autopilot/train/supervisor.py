"""Run one trainer process under supervision: its own process group, a hard time limit, a summary always.

The trainer (a built-in task or the study's own command) is started in a new session so that, past
`max_seconds` plus a grace period, the whole process group (data loader workers, shells, children) can
be killed at once. Time spent paused (control/pause) does not count against that limit, as it does not
count against the trainer's own budget. Whatever happens, the run folder ends with a valid
trainer_summary.json: the trainer's own, or one written here that says `timeout` or `failed` with the tail
of train.log.

A trainer killed by the system (a signal such as the OOM killer's SIGKILL, or a trainer that reports `oom`) is
started again, up to `max_retries` times, and resumes from its checkpoint; a failure of the trainer's own code
(a traceback, a non-zero exit, a `failed` summary) is never retried, and neither is a timeout. The summary
records `attempts`. If `autopilot train` itself is told to stop (SIGTERM, SIGINT, SIGHUP), the trainer's
process group is killed and no summary is written, so the run resumes on the next invocation.

No trainer outlives its supervisor or shares its folder with another: the trainer dies with `autopilot train`
however that ends (a SIGKILL included: `autopilot.processes.die_with_parent`, or the warm pool watching the
connection), holds the run folder's lock while it lives (`train.runlock`), and what is left of its process
group is killed as soon as it ends.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from autopilot import fsio, processes, schemas
from autopilot.enums import ACTIVE_PHASES
from autopilot.errors import TrainerError
from autopilot.paths import RunPaths
from autopilot.settings import StudySettings
from autopilot.train import adapter, gpus, runlock
from autopilot.train import summary as trainer_summary
from autopilot.train.contract import paused
from autopilot.warm.trainers import UNKNOWN_EXIT

log = logging.getLogger(__name__)

TERM_WAIT_SECONDS = 5.0  # between SIGTERM and SIGKILL of the process group
LOG_TAIL_CHARS = 2000
WAIT_SLICE_SECONDS = 0.2  # how often the wait for the trainer looks at the stop flag
RETRY_WAIT_SECONDS = 1.0  # between a killed attempt and the next (lets the memory that was freed settle)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
TASKS_PACKAGE = "autopilot.train.tasks."  # a built-in task is a module of it, run with -m


class Interrupted(TrainerError):
    """`autopilot train` was told to stop: the trainer's process group was killed; the run resumes later."""


def grace_seconds(max_seconds: float) -> float:
    """Time a trainer gets past its budget to evaluate and write its summary before it is killed."""
    return min(60.0, max(5.0, 0.1 * max_seconds))


def builtin_task(argv: list[str]) -> str | None:
    """The task module name when `argv` starts a built-in task (which can be forked warm), else None."""
    if len(argv) == 5 and argv[0] == sys.executable and argv[1] == "-m" and argv[2].startswith(TASKS_PACKAGE):
        return argv[2].removeprefix(TASKS_PACKAGE)
    return None


def trainer_argv(config: dict, settings: StudySettings, run: RunPaths, root: Path) -> list[str]:
    """argv of the trainer: a built-in task module, or the study's command (see `autopilot.train.adapter`)."""
    config_path = str(run.config.relative_to(root))
    run_dir = str(run.dir.relative_to(root))
    if config["task"] == "command":
        return adapter.trainer_argv(settings.trainer, config, config_path, run_dir)
    return [sys.executable, "-m", f"{TASKS_PACKAGE}{config['task']}", config_path, run_dir]


def run_trainer(argv: list[str], run: RunPaths, config: dict, root: Path, max_retries: int = 0,
                sandboxed: Callable[[list[str]], Any] | None = None) -> dict:
    """Run the trainer to completion or to its time limit, retrying kills by the system; return the summary.

    TrainerError if another `autopilot train` is training in this folder. `sandboxed(argv)` (code mode) returns
    the start of the trainer in its sandbox: an object with `argv`, `env`, `oom_killed()` and `close()`
    (autopilot.code.sandbox.Launch). Such a trainer never goes to the warm pool, and one its own memory limit
    killed is `oom` and not retried (it would only go over again)."""
    with runlock.hold(run) as lock:
        attempt = 1
        summary, killed_by = _attempt(argv, run, config, root, lock, sandboxed)
        while killed_by and attempt <= max_retries:
            log.warning("%s: attempt %d %s; starting it again", run.dir, attempt, killed_by)
            with run.train_log.open("ab") as out:
                out.write(f"\n=== autopilot: attempt {attempt} {killed_by}: retrying ===\n".encode())
            time.sleep(RETRY_WAIT_SECONDS)
            attempt += 1
            summary, killed_by = _attempt(argv, run, config, root, lock, sandboxed)
        summary = {**summary, "attempts": attempt}
        schemas.validate(summary, "trainer_summary")
        fsio.atomic_write_json(run.summary, summary)
    return summary


def _attempt(argv: list[str], run: RunPaths, config: dict, root: Path,
             lock: runlock.RunLock,
             sandboxed: Callable[[list[str]], Any] | None = None) -> tuple[dict, str | None]:
    """One start of the trainer: its summary, and why the system killed it (None: ran, failed or timed out)."""
    max_seconds = float(config["max_seconds"])
    limit = max_seconds + grace_seconds(max_seconds)
    run.dir.mkdir(parents=True, exist_ok=True)
    run.summary.unlink(missing_ok=True)  # a summary from an earlier attempt must not stand for this one
    started = time.monotonic()
    launch = None
    with run.train_log.open("ab") as out:
        out.write(f"\n=== autopilot: {' '.join(argv)} (limit {limit:.0f}s) ===\n".encode())
        out.flush()
        try:
            launch = sandboxed(argv) if sandboxed is not None else None
            proc = start(argv, root, out, run.train_log, lock.fd, launch)
        except OSError as e:
            if launch is not None:
                launch.close()
            reason = f"could not start trainer {argv[0]!r}: {e}"
            return write_fallback_summary(run, config, root, "failed", reason, 0.0), None
        lock.trainer_started(proc.pid)
        try:
            timed_out, held = _wait(proc, limit, root / config["paths"]["control_dir"])
        except Interrupted:
            mark_ended(config, root, "interrupted")
            raise
        finally:
            over_memory = launch is not None and launch.oom_killed()
            if launch is not None:
                launch.close()
    wall = time.monotonic() - started
    if over_memory:
        mark_ended(config, root, "killed")
        return write_fallback_summary(run, config, root, "oom", "the trainer went over its sandbox's memory limit "
                                      "(code_mode.memory_mb) and the kernel killed it", wall), None
    if timed_out:
        mark_ended(config, root, "timeout")
        return write_fallback_summary(
            run, config, root, "timeout",
            f"trainer exceeded max_seconds={max_seconds:g} (+{grace_seconds(max_seconds):g}s grace); "
            f"its process group was killed after {wall:.1f}s" + (f" ({held:.1f}s of them paused)" if held else ""),
            wall,
        ), None
    killed_by = system_kill(proc.returncode, run)
    if killed_by:
        mark_ended(config, root, "killed")
    return _collect(proc.returncode, run, config, root, wall), killed_by


def mark_ended(config: dict, root: Path, phase: str) -> None:
    """A killed trainer's status.json must not go on saying that it trains: set its phase (timeout, ...)."""
    path = root / config["paths"]["status_file"]
    try:
        status = fsio.read_json(path)
    except Exception:  # no status yet, or not readable: nothing claims the trainer is alive
        return
    if (status.get("run"), status.get("seed_index")) == (config["run_id"], config["seed_index"]) \
            and status.get("phase") in ACTIVE_PHASES:
        fsio.atomic_write_json(path, {**status, "phase": phase, "heartbeat": time.time()})


def system_kill(returncode: int, run: RunPaths) -> str | None:
    """How the system ended the trainer (a signal, out of memory, its pool killed), or None for its own end.

    A trainer that wrote a summary ended by itself, unless that summary says `oom`. A negative return code
    is the signal that killed it; 137 is SIGKILL seen through a shell (the OOM killer's signature).
    """
    if run.summary.exists():
        return "ran out of memory" if _summary_status(run) == "oom" else None
    if returncode < 0:
        return f"was killed by signal {signal_name(-returncode)}"
    if returncode == 128 + signal.SIGKILL:
        return "was killed (exit status 137: SIGKILL, as the OOM killer sends)"
    if returncode == UNKNOWN_EXIT:
        return "was lost with its warm pool"
    return None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _summary_status(run: RunPaths) -> str | None:
    try:
        return fsio.read_json(run.summary).get("status")
    except Exception:  # an unreadable summary is judged by _collect
        return None


def start(argv: list[str], root: Path, out, log_path: Path, lock_fd: int, launch: Any = None):
    """Start the trainer in its own session, output to `out`, holding the run's lock `lock_fd`, dying with this
    process: a built-in task is forked warm; a sandboxed one (`launch`, code mode) never is."""
    task = builtin_task(argv)
    if launch is not None:
        argv = launch.argv
    if task is not None and launch is None and os.environ.get("AUTOPILOT_NO_WARMSTART") != "1":
        from autopilot.warm import trainers
        from autopilot.warm.fork import ForkedTrainer

        pooled = trainers.request(task, argv[3:], root, log_path, lock_fd)
        return pooled if pooled is not None else ForkedTrainer(task, argv[3:], root, out.fileno())
    # the run's lock and its GPU claim go with the trainer: each is held while either process lives
    popen = subprocess.Popen(argv, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                             pass_fds=(lock_fd, *gpus.held_fds()),
                             preexec_fn=functools.partial(processes.die_with_parent, os.getpid()),
                             env=launch.env if launch is not None else {**os.environ, "PYTHONUNBUFFERED": "1"})
    return processes.GroupLeader(popen.pid, popen)


def _wait(proc, limit: float, control_dir: Path) -> tuple[bool, float]:
    """Wait for the trainer; past `limit` seconds, not counting those while control/pause holds it, kill its
    process group. Returns whether it was killed, and the seconds it was held.

    A stop signal to this process (the daemon's SIGTERM, Ctrl-C) kills the trainer's group too and raises
    Interrupted: a trainer in its own session would otherwise go on training with nobody waiting for it.
    """
    last = time.monotonic()
    deadline, held = last + limit, 0.0
    with _stop_flag() as stop:
        while True:
            try:
                proc.wait(timeout=max(0.0, min(WAIT_SLICE_SECONDS, deadline - time.monotonic())))
                return False, held
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if paused(control_dir):  # the slice counts as paused: the deadline moves on with the clock
                deadline += now - last
                held += now - last
            last = now
            if stop:
                _kill_group(proc)
                raise Interrupted(f"stopped by {signal_name(stop[0])}: the trainer's process group was "
                                  "killed; the run resumes from its last checkpoint on the next invocation")
            if time.monotonic() >= deadline:
                break
    log.warning("trainer pid %d exceeded %.0fs: terminating its process group", proc.pid, limit)
    _kill_group(proc)
    return True, held


@contextlib.contextmanager
def _stop_flag() -> Iterator[list[int]]:
    """While waiting, SIGTERM, SIGINT and SIGHUP only append their number to the list yielded (flag only)."""
    received: list[int] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be restored from here
                signal.signal(sig, handler)


def _kill_group(proc) -> None:
    """SIGTERM the trainer's process group, SIGKILL it after TERM_WAIT_SECONDS; the leader is reaped."""
    processes.terminate_group(proc, TERM_WAIT_SECONDS)


def _collect(returncode: int, run: RunPaths, config: dict, root: Path, wall: float) -> dict:
    if run.summary.exists():
        try:
            summary = fsio.read_json(run.summary)
            schemas.validate(summary, "trainer_summary", what=str(run.summary))
        except Exception as e:  # a broken summary is the trainer's failure, not ours
            return write_fallback_summary(run, config, root, "failed", f"trainer wrote an invalid summary: {e}", wall)
        if "nonce" not in summary:  # a trainer without the contract's helper: this start is the only writer
            summary["nonce"] = config.get("nonce")  # (the summary was removed before it, the run's lock held)
        if summary["nonce"] != config.get("nonce"):
            return write_fallback_summary(
                run, config, root, "failed", f"{run.summary} answers another config.json (nonce "
                f"{summary['nonce']!r}, this attempt's is {config.get('nonce')!r}): not this trainer's result", wall)
        if returncode not in (0, UNKNOWN_EXIT) and summary["status"] == "completed":
            return write_fallback_summary(
                run, config, root, "failed", f"trainer exited with status {returncode} after reporting success", wall
            )
        return finite_summary(summary)
    if returncode == UNKNOWN_EXIT:
        reason = "trainer ended without writing trainer_summary.json (its warm pool died first)"
    elif returncode == 0:
        reason = "trainer exited 0 without writing trainer_summary.json (see the trainer contract in README)"
    else:
        reason = f"trainer exited with status {returncode}"
    return write_fallback_summary(run, config, root, "failed", reason, wall)


def finite_summary(summary: dict) -> dict:
    """A user trainer's summary with its non-finite numbers (NaN, inf: JSON has none) made explicit: a metric
    that is not a finite number makes a `failed` seed with the reason; other numbers become null."""
    value = summary["metric"]["value"]
    if isinstance(value, float) and not math.isfinite(value):
        summary = {**summary, "status": "failed", "metric": {**summary["metric"], "value": None},
                   "error": f"the trainer reported {summary['metric']['name']} = {value}, not a finite number"
                            + (f"; {summary['error']}" if summary.get("error") else "")}
    metrics = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
               for k, v in summary.get("metrics", {}).items()}
    pe = summary.get("per_example")
    if pe and not all(math.isfinite(v) for v in pe["values"]):
        log.warning("per-example scores that are not finite numbers: dropped (the judge cannot pair them)")
        pe = None
    return {**summary, "metrics": metrics, "per_example": pe}


def log_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - chars))
        return f.read().decode("utf-8", errors="replace")


def write_fallback_summary(run: RunPaths, config: dict, root: Path, status: str, reason: str, wall: float) -> dict:
    """The summary of a trainer that could not write its own."""
    tail = log_tail(run.train_log)
    summary = trainer_summary.build(config, root, status, train_seconds=wall, wall_seconds=wall,
                                    error=reason + (f"\n--- last lines of train.log ---\n{tail}" if tail else ""))
    trainer_summary.write(run, summary)
    log.error("%s: %s", run.dir, reason)
    return summary
