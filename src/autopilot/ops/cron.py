"""One cron-safe invocation of the workflow (`bin/autopilot-cron` runs `autopilot cron`), and what the daemon shares.

    1. One instance at a time: a non-blocking filelock, status/instance.lock, held by `autopilot cron` and
       `autopilot daemon` alike; status/instance.pid beside it says who holds it. A second caller exits 0.
    2. A Snakemake lock (.snakemake/locks/) with no live owner -- a killed invocation left it -- is cleared
       with `snakemake --unlock` before running. Owner: any live snakemake process whose working folder is
       this project (read from /proc; without /proc, any snakemake process at all).
    3. Nothing to do (paused, stopped, budget spent) is said and exits 0 without starting Snakemake.
    4. snakemake runs once; its output goes to runs/<study>/logs/cron-YYYY-MM-DD.log (appended).

Usage:
    code, message = cron.run_once(project, Invocation(cores="2"))
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock, Timeout

from autopilot import fsio, holds, ledger
from autopilot.clock import now_iso
from autopilot.ops import control
from autopilot.paths import Project
from autopilot.study import Study

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Invocation:
    """How to call Snakemake: cores, profile, an optional study file, extra arguments."""

    cores: str = "all"
    profile: str = "profiles/local"
    configfile: Path | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)

    def argv(self, *more: str) -> list[str]:
        argv = [sys.executable, "-m", "snakemake", "--cores", self.cores, "--profile", self.profile]
        if self.configfile:
            argv += ["--configfile", str(self.configfile)]
        return argv + list(self.extra) + list(more)

    def study(self, project: Project) -> Study:
        """The study Snakemake will run: --configfile's, else config/config.yaml's."""
        return Study.load(project, self.configfile or project.default_config)


def env() -> dict[str, str]:
    """Cron's PATH is minimal: the rules' `autopilot` commands are found beside this Python."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}


# --- one instance at a time ----------------------------------------------------------------------------
@contextlib.contextmanager
def single_instance(project: Project, what: str) -> Iterator[str | None]:
    """Hold the instance lock while inside; yields None, or who holds it when another process does."""
    project.status_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(project.instance_lock), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        yield holder(project) or "another autopilot process"
        return
    try:
        left_by = holder(project)  # a pid file left behind: its process was killed while it held the lock
        if left_by:
            log.info("the previous holder of %s ended without cleaning up: %s", project.instance_lock, left_by)
        fsio.atomic_write_json(project.instance_pid, {
            "pid": os.getpid(), "what": what, "since": now_iso()})
        yield None
    finally:
        project.instance_pid.unlink(missing_ok=True)
        lock.release()


def holder(project: Project) -> str | None:
    """`autopilot daemon (pid 123, since ...)` from status/instance.pid, or None."""
    try:
        who = fsio.read_json(project.instance_pid)
    except Exception:
        return None
    return f"{who.get('what', 'autopilot')} (pid {who.get('pid')}, since {who.get('since')})"


# --- stale Snakemake locks -----------------------------------------------------------------------------
def snakemake_locks(root: Path) -> list[Path]:
    folder = Project(root).snakemake_locks
    return sorted(folder.glob("*.lock")) if folder.is_dir() else []


def snakemake_owners(root: Path) -> list[int]:
    """Pids of live snakemake processes that may own this project's locks (never this process)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return _any_snakemake()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if b"snakemake" in (entry / "cmdline").read_bytes() and (entry / "cwd").resolve() == root.resolve():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to look at
            continue
    return found


def _any_snakemake() -> list[int]:
    out = subprocess.run(["ps", "-A", "-o", "pid=,command="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "snakemake" in line and line.split()]


def running_snakemake(project: Project) -> str | None:
    """`Snakemake (pid 123) is running in this project` when a live process holds its lock, else None."""
    if not snakemake_locks(project.root):
        return None
    owners = snakemake_owners(project.root)
    return f"Snakemake (pid {', '.join(map(str, owners))}) is running in this project" if owners else None


def clear_stale_lock(project: Project, invocation: Invocation, log_file) -> str | None:
    """Unlock the working folder if a killed Snakemake left its lock (call running_snakemake first)."""
    locks = snakemake_locks(project.root)
    if not locks:
        return None
    subprocess.run(invocation.argv("--unlock"), cwd=project.root, env=env(), stdout=log_file,
                   stderr=subprocess.STDOUT, check=False)
    left = snakemake_locks(project.root)
    return (f"cleared a stale Snakemake lock ({len(locks)} lock file(s), no live owner)" if not left
            else f"`snakemake --unlock` left {len(left)} lock file(s)")


# --- one invocation ------------------------------------------------------------------------------------
def dated_log(study: Study, kind: str, now: dt.datetime | None = None) -> Path:
    day = (now or dt.datetime.now()).strftime("%Y-%m-%d")
    study.paths.logs.mkdir(parents=True, exist_ok=True)
    return study.paths.logs / f"{kind}-{day}.log"


def stamp(log_file, text: str) -> None:
    log_file.write(f"\n=== {dt.datetime.now().isoformat(timespec='seconds')} {text} ===\n".encode())
    log_file.flush()


def run_once(project: Project, invocation: Invocation) -> tuple[int, str]:
    """`autopilot cron`: (exit status, what happened). 0 when another instance runs or there is nothing to do."""
    with single_instance(project, "autopilot cron") as other:
        if other:
            return 0, f"another instance is running: {other}; nothing to do"
        study = invocation.study(project)
        history = ledger.read_history(study.paths)
        control.pause_on_failure_spike(study, history)  # the daemon's stop condition, honoured here too
        control.hold_if_disk_low(study)
        halted = holds.halt_reason(study, history) or running_snakemake(project)
        if halted:
            return 0, f"nothing to do: {halted}"
        path = dated_log(study, "cron")
        with path.open("ab") as out:
            stamp(out, f"autopilot cron (pid {os.getpid()}): {' '.join(invocation.argv())}")
            cleared = clear_stale_lock(project, invocation, out)
            if cleared:
                stamp(out, cleared)
            code = subprocess.run(invocation.argv(), cwd=project.root, env=env(), stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
            stamp(out, f"snakemake exited with status {code}")
        note = f"{cleared}; " if cleared else ""
        return code, f"{note}snakemake exited with status {code}; log: {path}"
