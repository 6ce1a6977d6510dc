"""`autopilot daemon`: invoke the workflow again and again until a stop condition says enough.

Each pass looks at the signal flags and the stop conditions; when a run may start it invokes Snakemake once
for one generation (ingest, then the next run, or the next `generation_size` runs trained side by side:
`--config iterations=<generation_size>`, so that SIGINT never waits for more than the current generation), in
its own session, with its output appended to runs/<study>/logs/daemon-YYYY-MM-DD.log. While
the loop may not start a run (control/pause, or the study paused itself) or after the workflow failed, it
waits `daemon.poll_seconds` and looks again. It holds the instance lock of `autopilot cron` all along.

It stops on: control/stop or control/stop-after-run; the run budget and training-time budget (budget.*);
its wall-clock budget (daemon.max_wall_seconds); a plateau (none of the last daemon.plateau_runs runs was
`improved`); SIGINT (after the current run or generation; a second SIGINT acts as SIGTERM); SIGTERM (now: Snakemake's
process group is terminated, `autopilot train` kills its trainer, and the run resumes from its checkpoint at
the next invocation); the workflow failing MAX_FAILED_INVOCATIONS times in a row.
It pauses the study when more than daemon.max_failures of the last daemon.failure_window runs failed
(runs/<study>/paused.json and a section in labbook.md), then waits as for a pause.

Signal handlers only set flags and the loop acts on them, like huey's consumer; `loop(now=...)` takes the time
from the caller so that tests can move the clock.

Usage:
    reason = Daemon(project, cron.Invocation(cores="2")).run()
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from autopilot import fsio, holds, ledger, notify, processes, settings
from autopilot.errors import AutopilotError
from autopilot.ops import control, cron
from autopilot.paths import Project
from autopilot.study import Study

log = logging.getLogger(__name__)

MAX_FAILED_INVOCATIONS = 3  # the workflow failing this many times in a row is not going to heal by itself
STOP_WAIT_SECONDS = 30.0  # after SIGTERM to Snakemake's group, before SIGKILL (the supervisor needs ~5 s)
SLICE_SECONDS = 0.2  # how often waits look at the signal flags


# --- stop conditions (pure functions of the ledger) ----------------------------------------------------
def plateau(history: list[dict], k: int) -> str | None:
    """Why the study has plateaued (none of the last k runs improved), or None."""
    if k <= 0 or len(history) < k or any(e["verdict"] in ledger.PROMOTING_VERDICTS for e in history[-k:]):
        return None
    best = ledger.best_entry(history)
    held = f"run {best['run_id']} is still the best" if best else "no run has succeeded"
    return f"plateau: none of the last {k} runs improved ({held}; daemon.plateau_runs={k})"


def wall_budget(started: float, now: float, limit: float | None) -> str | None:
    if limit is None or now - started < limit:
        return None
    return f"wall-clock budget spent: the daemon ran {now - started:.0f}s of daemon.max_wall_seconds={limit:g}s"


# --- the daemon ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pass:
    """What one pass decided: stop (with the reason), or wait this many seconds before the next pass."""

    exit: str | None = None
    wait: float = 0.0


class Daemon:
    def __init__(self, project: Project, invocation: cron.Invocation, clock: Callable[[], float] = time.time):
        self.project = project
        self.invocation = invocation
        self.clock = clock
        self.started = clock()
        self.finish_requested = False  # SIGINT: after the current run
        self.stop_requested = False  # SIGTERM: now
        self.failed_in_a_row = 0
        self.invocations = 0
        self.settings: settings.Daemon | None = None

    # Signal handlers only set flags: the loop acts on them between and during invocations.
    def on_sigint(self, signum, frame) -> None:
        self.stop_requested = self.finish_requested
        self.finish_requested = True

    def on_sigterm(self, signum, frame) -> None:
        self.stop_requested = True

    def run(self) -> str:
        """Pass after pass until a stop condition; return why the daemon stopped."""
        handlers = {signal.SIGINT: self.on_sigint, signal.SIGTERM: self.on_sigterm}
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        reason = "killed"
        try:
            while True:
                step = self.loop()
                if step.exit:
                    reason = step.exit
                    return reason
                self.sleep(step.wait)
        except AutopilotError as e:
            reason = f"error: {e}"
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.write_state("exited", stop_reason=reason)
            self.tell(reason)

    def tell(self, reason: str) -> None:
        """The study's notify command hears why the daemon stopped (`plateau`, else `stopped`)."""
        try:
            study = self.invocation.study(self.project)
        except AutopilotError:  # the study cannot be read (that may be why the daemon stopped)
            return
        event = "plateau" if reason.startswith("plateau") else "stopped"
        notify.emit(study, event, f"study {study.name}: the daemon stopped: {reason}", reason=reason,
                    invocations=self.invocations)

    def loop(self, now: float | None = None) -> Pass:
        """One pass: flags, stop conditions, then one invocation of the workflow (or a wait)."""
        now = self.clock() if now is None else now
        if self.stop_requested or self.finish_requested:
            return Pass(exit="SIGTERM: stopped now" if self.stop_requested else "SIGINT: stopped after the run")
        study = self.invocation.study(self.project)
        self.settings = study.settings.daemon
        history = ledger.read_history(study.paths)
        control.pause_on_failure_spike(study, history)
        control.hold_if_disk_low(study)
        held = holds.halt_reason(study, history)
        busy = cron.running_snakemake(self.project)  # someone started Snakemake by hand: let it finish
        if (held and self.may_wait(study)) or (busy and not held):
            self.write_state("waiting", note=held or busy)
            return Pass(wait=self.settings.poll_seconds)
        reason = (held or plateau(history, self.settings.plateau_runs)
                  or wall_budget(self.started, now, self.settings.max_wall_seconds))
        if reason:
            return Pass(exit=reason)
        return self.after_invocation(self.invoke(study))

    def may_wait(self, study: Study) -> bool:
        """True when the loop is held by a pause (a person resumes it), not by a stop or a spent budget."""
        if any(self.project.control_file(s).exists() for s in ("stop", "stop-after-run")):
            return False
        return self.project.control_file("pause").exists() or holds.study_pause_reason(study.paths) is not None

    def after_invocation(self, code: int) -> Pass:
        if code == 0 or self.stop_requested:
            self.failed_in_a_row = 0
            return Pass()
        self.failed_in_a_row += 1
        if self.failed_in_a_row >= MAX_FAILED_INVOCATIONS:
            return Pass(exit=f"the workflow failed {self.failed_in_a_row} times in a row (last exit status {code}); "
                             f"see runs/<study>/logs/daemon-*.log")
        return Pass(wait=self.settings.poll_seconds)

    def invoke(self, study: Study) -> int:
        """Run Snakemake once for one generation, in its own session so that Ctrl-C at a terminal reaches only us."""
        self.invocations += 1
        path = cron.dated_log(study, "daemon")
        with path.open("ab") as out:
            argv = self.invocation.argv("--config", f"iterations={study.settings.generation_size}")
            cron.stamp(out, f"autopilot daemon (pid {os.getpid()}), invocation {self.invocations}: {' '.join(argv)}")
            cleared = cron.clear_stale_lock(self.project, self.invocation, out)
            if cleared:
                cron.stamp(out, cleared)
            proc = subprocess.Popen(argv, cwd=self.project.root, env=cron.env(), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            self.write_state("running", note=f"snakemake pid {proc.pid}; log {path}")
            code = self.wait(proc)
            cron.stamp(out, f"snakemake exited with status {code}")
        return code

    def wait(self, proc: subprocess.Popen) -> int:
        """Wait for Snakemake; on SIGTERM terminate its process group (SIGKILL after STOP_WAIT_SECONDS)."""
        while True:
            try:
                return proc.wait(timeout=SLICE_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            if self.stop_requested:
                self.write_state("stopping", note="SIGTERM: terminating the workflow")
                return processes.terminate_group(proc, STOP_WAIT_SECONDS)

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early for a signal."""
        deadline = time.monotonic() + seconds
        while not (self.finish_requested or self.stop_requested) and time.monotonic() < deadline:
            time.sleep(min(SLICE_SECONDS, max(0.0, deadline - time.monotonic())))

    def write_state(self, state: str, note: str | None = None, stop_reason: str | None = None) -> None:
        """status/daemon.json: what `autopilot status` shows about the daemon."""
        fsio.atomic_write_json(self.project.daemon_state, {
            "pid": os.getpid(), "state": state, "note": note, "stop_reason": stop_reason,
            "started": self.started, "updated": time.time(), "invocations": self.invocations,
            "poll_seconds": self.settings and self.settings.poll_seconds,
            "max_wall_seconds": self.settings and self.settings.max_wall_seconds,
        })


def run_daemon(project: Project, invocation: cron.Invocation) -> str:
    """Run the daemon while holding the instance lock; return why it stopped."""
    with cron.single_instance(project, "autopilot daemon") as other:
        if other:
            raise AutopilotError(f"another instance is running: {other}; the daemon did not start")
        return Daemon(project, invocation).run()
