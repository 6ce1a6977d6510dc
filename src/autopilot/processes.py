"""Process groups: the one home of ending them, and of children that must not outlive their parent.

Trainers, Snakemake under the daemon and agent CLIs each run in a session of their own, so that the whole
process group (data loader workers, shells, children) can be signalled at once. Three rules keep them from
living on where nobody waits for them:

* `die_with_parent()` in a freshly forked child asks the kernel (prctl PR_SET_PDEATHSIG, Linux) to kill it
  when its parent dies, however the parent dies (a SIGKILL included). The signal is tied to the parent
  *thread* that forked, so fork from a thread that outlives the child (the supervisor's main thread does).
* `GroupLeader` ends what is left of a child's group when the child itself ends: the leader is signalled
  while still unreaped (a zombie keeps its pid, and so the group id, from being reused by another process).
* `terminate_group()` asks a group to stop (SIGTERM), and kills it (SIGKILL) past a grace period.

Usage:
    leader = GroupLeader(pid)                  # a child started in its own session
    leader.wait(timeout=1.0)                   # its exit status; its stragglers are gone
    code = terminate_group(leader, grace=5.0)  # SIGTERM, then SIGKILL
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
POLL_SECONDS = 0.05  # how often a wait looks where the kernel cannot say at once that a child ended
# Looked up now, in the parent: a child between fork and exec must not take the dynamic loader's locks.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """In a freshly forked child of `parent`: receive `sig` when the parent dies (Linux; elsewhere nothing).

    If the parent is gone already the signal would never come, so the child ends at once instead. Safe
    between fork and exec (a Popen preexec_fn): no locks, no logging.
    """
    if _PRCTL is None:
        return
    if _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        os.write(2, f"autopilot: prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}\n".encode())
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False when the group is gone (or not ours to signal)."""
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_group(pgid: int) -> bool:
    return signal_group(pgid, signal.SIGKILL)


def terminate_group(proc, grace: float) -> int:
    """SIGTERM the group that `proc` leads; SIGKILL the group if `proc` outlives `grace` seconds; its exit status.

    `proc` has Popen's `pid` and `wait(timeout)`. The group's other members are left to end with their leader,
    unless `proc` is a GroupLeader (or a trainer of the warm pool), whose stragglers are killed when it ends.
    """
    signal_group(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log.warning("pid %d outlived SIGTERM by %.0fs: SIGKILL to its process group", proc.pid, grace)
    kill_group(proc.pid)
    return proc.wait()


class GroupLeader:
    """A child of this process that leads its own process group (it called setsid), with the part of
    subprocess.Popen's interface that supervisors use. When it ends, the rest of its group is killed before
    it is reaped. Wrap a Popen as `GroupLeader(popen.pid, popen)`; its returncode is kept in step."""

    def __init__(self, pid: int, popen: subprocess.Popen | None = None):
        self.pid = pid
        self.popen = popen
        self.returncode: int | None = None
        self._pidfd = _pidfd_open(pid)

    def fileno(self) -> int | None:
        """A descriptor that becomes readable when the child ends (Linux pidfd), for select(); None elsewhere."""
        return self._pidfd

    def poll(self) -> int | None:
        if self.returncode is None and _ended(self.pid):
            kill_group(self.pid)  # stragglers: the unreaped leader keeps the group id from being reused
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
            if self.popen is not None:
                self.popen.returncode = self.returncode  # so that Popen never waits for a pid that is not its own
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            if self._pidfd is not None:
                select.select([self._pidfd], [], [], min(left, 1.0))
            else:
                time.sleep(min(left, POLL_SECONDS))
        return self.returncode


def _ended(pid: int) -> bool:
    """The child has ended; it is not reaped (WNOWAIT)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _pidfd_open(pid: int) -> int | None:
    if sys.platform != "linux":
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:  # a kernel older than 5.3: wait() polls instead
        return None


# --- processes of this machine ---------------------------------------------------------------------------
def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot, /proc/<pid>/stat field 22): a pid plus its start time names
    one process, even after the pid is reused. None when there is no such process (or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def is_running(pid: int, started: int | None) -> bool:
    """The process `pid` that started at `started` is still there."""
    now = start_time(pid)
    return now is not None and now == started


def holders(path: Path) -> list[int]:
    """Pids (of this user, this machine) that have `path` open (Linux /proc; elsewhere none)."""
    try:
        target = os.stat(path)
    except OSError:
        return []
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                st = os.stat(fd)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                found.append(int(entry.name))
                break
    return found


# --- a short helper command with a time limit ----------------------------------------------------------
HELPER_GRACE_SECONDS = 5.0  # between SIGTERM and SIGKILL of a helper past its limit


def run_limited(argv: list[str], cwd: Path, timeout: float, stdin: bytes | None = None, output: Path | None = None,
                env: dict[str, str] | None = None) -> int | None:
    """Run a short helper command (a notify hook, a champion's held-out test) in a session of its own, to its end
    or to `timeout` seconds; its output is appended to `output` (or dropped). `stdin` is a small message (it must
    fit the pipe: an event, not a dataset). The exit status, or None when its process group was ended at the limit,
    so that a `sh -c "curl ..."` hook leaves no curl behind. OSError (no such program) is the caller's."""
    out = output.open("ab") if output is not None else subprocess.DEVNULL
    try:
        popen = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        leader = GroupLeader(popen.pid, popen)
        if stdin is not None:
            try:
                popen.stdin.write(stdin)
                popen.stdin.close()
            except BrokenPipeError:  # it did not read its stdin: its exit status says the rest
                pass
        try:
            return leader.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            terminate_group(leader, HELPER_GRACE_SECONDS)
            return None
    finally:
        if output is not None:
            out.close()
