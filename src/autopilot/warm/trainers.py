"""A warm trainer pool: one long-lived process per project and task, with the task (and torch) imported,
that forks a trainer on request. It takes the two seconds of `import torch` out of every run.

    autopilot train  --(unix socket: key, args, cwd, log, env; the run's lock)-->  pool (listens while importing)
                     <--ready--  --go-->                                  pool --fork--> trainer (own session)
                     <--pid (from the trainer), then the exit status (from the pool)--

The pool forks only on "go", and the trainer sends its pid before anything else, so a supervisor that gave up
waiting (30 s), or got no pid, knows that no trainer started and may start one itself.

The trainer is the same as one started by `warm.fork.ForkedTrainer`: its own session and process group
(the supervisor kills the group past the time limit), the project root as working directory, output in
train.log, the caller's environment, the run folder's lock (`train.runlock`: sent with the request, held by
the trainer). It dies with the `autopilot train` that asked for it: when that connection closes before the
trainer ended, the pool ends the trainer's group; and when the trainer ends, the pool kills what is left of
its group before reaping it. It outlives the pool itself (the supervisor then waits for it by pid).

A pool serves one project and task, and only clients with its own import-time settings (thread counts: see
`autopilot.warm.protocol`). It exits after AUTOPILOT_POOL_IDLE_SECONDS (300) without requests, and refuses work
and exits as soon as any source file of the package changed since it started, so edited code is never run by
a stale pool. Set AUTOPILOT_NO_WARMSTART=1 to start every trainer as a fresh process instead.

Usage (started on demand by the supervisor; by hand for debugging):
    python -m autopilot.warm.trainers TASK PROJECT_ROOT
"""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from autopilot import processes
from autopilot.warm import protocol

log = logging.getLogger(__name__)

UNKNOWN_EXIT = -255  # exit status of a trainer whose pool died before reporting it
START_TIMEOUT_SECONDS = 30.0
ORPHAN_TERM_SECONDS = 5.0  # a trainer whose supervisor died: between SIGTERM and SIGKILL of its group


def pool_key(root: Path, task: str, env=None) -> str:
    """Who a pool serves: one project and task, this interpreter and its import-time settings."""
    return protocol.key("pool", str(Path(root).resolve()), task, env=env)


def socket_path(root: Path, task: str, env=None) -> str | None:
    return protocol.socket_path("pool", pool_key(root, task, env))


# --- the pool --------------------------------------------------------------------------------------------
def serve(task: str, root: Path) -> None:
    from autopilot.warm.fork import preload

    key = pool_key(root, task)
    loaded = {}
    waiters: list[threading.Thread] = []
    clients: list[socket.socket] = []  # connections of running trainers' supervisors, closed by their waiters

    def busy() -> bool:  # a running trainer keeps the pool alive
        waiters[:] = [t for t in waiters if t.is_alive()]
        clients[:] = [c for c in clients if c.fileno() != -1]
        return bool(waiters)

    def handle(conn: socket.socket, server: socket.socket) -> None:
        waiter = _handle(conn, loaded["module"], task, key, [server, *clients])
        if waiter is not None:
            waiters.append(waiter)
            clients.append(conn)

    def drain() -> None:
        for t in waiters:  # report every running trainer's exit before leaving
            t.join()

    protocol.serve("pool", key, preload=lambda: loaded.update(module=preload(task)), handle=handle, busy=busy,
                   gone=lambda: not root.is_dir(),  # the project is gone
                   refuse_stale=lambda conn, server: protocol.decline(
                       conn, {"error": "stale: the package changed since this pool started"}),
                   drain=drain, poll_seconds=1.0)


def _handle(conn: socket.socket, module, task: str, key: str, others: list[socket.socket]) -> threading.Thread | None:
    """Fork one trainer for the request on `conn`; a thread reports its exit status when it ends.

    The trainer closes `others`, the pool's listening socket and the connections of other trainers' supervisors:
    held open by a trainer, they would let clients queue at a pool that died (the socket file stays after a
    SIGKILL) and keep a supervisor from seeing its pool's death."""
    from autopilot.warm.fork import run_child

    lock_fds: list[int] = []
    try:
        conn.settimeout(protocol.CLIENT_SECONDS)
        data, lock_fds, _, _ = socket.recv_fds(conn, 65536, 1)
        reader = protocol.LineReader(conn, data)
        request = reader.read()
        if request is None or len(lock_fds) != 1:
            raise ValueError("connection closed before a full request (with the run's lock)")
        if request["key"] != key:  # two keys with one checksum
            raise ValueError("this pool serves another project, task, interpreter or settings")
        log_fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except (OSError, ValueError, KeyError) as e:
        _close(lock_fds)
        protocol.decline(conn, {"error": f"bad request: {e}"})
        return None
    os.set_inheritable(lock_fds[0], False)  # held by the trainer, not by the programs it may start
    if not protocol.server_handshake(reader):  # the supervisor gave up waiting and starts it itself
        _close([log_fd, *lock_fds])
        conn.close()
        return None
    pid = os.fork()
    if pid == 0:
        for other in others:
            other.close()
        try:  # the pid first: a client that gets no pid knows that no trainer started
            protocol.send(conn, {"pid": os.getpid()})
        except OSError:
            os._exit(1)  # the supervisor is gone before its trainer started
        conn.close()
        protocol.default_signals()
        os.environ.clear()
        os.environ.update(request["env"])
        run_child(module, task, request["args"], Path(request["cwd"]), log_fd)  # keeps the run's lock open
    _close([log_fd, *lock_fds])
    waiter = threading.Thread(target=_report_exit, args=(conn, processes.GroupLeader(pid)))
    waiter.start()
    return waiter


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _report_exit(conn: socket.socket, trainer: processes.GroupLeader) -> None:
    """Report the trainer's exit status to its supervisor; if the supervisor goes first, end the trainer."""
    while trainer.poll() is None:
        pidfd = trainer.fileno()
        watched = [conn] if pidfd is None else [conn, pidfd]
        ready = select.select(watched, [], [], 1.0 if pidfd is not None else processes.POLL_SECONDS)[0]
        if conn in ready and not _receive_nothing(conn):  # the supervisor died: nobody waits for this trainer
            log.warning("the supervisor of trainer %d is gone: ending its process group", trainer.pid)
            processes.terminate_group(trainer, ORPHAN_TERM_SECONDS)
    try:
        protocol.send(conn, {"returncode": trainer.returncode})
    except OSError:
        pass  # the supervisor went away (killed); the trainer's files tell what happened
    finally:
        conn.close()


def _receive_nothing(conn: socket.socket) -> bool:
    """A supervisor sends nothing after "go": what it sends is read and dropped; False once it hung up."""
    try:
        return bool(conn.recv(4096))
    except OSError:
        return False


# --- the client ------------------------------------------------------------------------------------------
class PooledTrainer:
    """A trainer forked by the pool, with the part of subprocess.Popen's interface the supervisor uses."""

    def __init__(self, reader: protocol.LineReader, pid: int):
        self.conn = reader.conn
        self.reader = reader
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self._read(timeout=0.0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._read(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(f"pooled trainer {self.pid}", timeout)
        return code

    def _read(self, timeout: float | None) -> int | None:
        if self.returncode is not None:
            return self.returncode
        self.conn.settimeout(timeout if timeout is None or timeout > 0 else 0.001)
        try:
            message = self.reader.read()
        except (TimeoutError, BlockingIOError):
            return None
        if message is None:  # the pool died: the trainer, if alive, is waited for by pid
            return self._wait_orphan(timeout)
        self.returncode = message["returncode"]
        self.conn.close()
        return self.returncode

    def _wait_orphan(self, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while _alive(self.pid):
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        self.returncode = UNKNOWN_EXIT  # the pool died first: the summary (or its absence) decides
        return self.returncode


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def start_pool(task: str, root: Path, env: dict[str, str] | None = None) -> None:
    """Start the pool of `task` for this project and this environment (or `env`) in the background."""
    subprocess.Popen([sys.executable, "-m", "autopilot.warm.trainers", task, str(root)], cwd=root, env=env,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


def request(task: str, args: list[str], root: Path, log_path: Path, lock_fd: int) -> PooledTrainer | None:
    """A trainer forked by the project's warm pool (started if needed) that holds the run's lock `lock_fd`,
    or None if no pool could serve."""
    key = pool_key(root, task)
    path = protocol.socket_path("pool", key)
    if path is None:
        return None
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    started = False
    while time.monotonic() < deadline:
        conn = protocol.connect(path)
        if conn is None:
            if not started:
                start_pool(task, root)
                started = True
            time.sleep(0.05)
            continue
        if not protocol.serves_us(conn, path):  # before the request: it carries this environment
            conn.close()
            return None
        message = {"key": key, "args": args, "cwd": str(root), "log": str(log_path), "env": dict(os.environ)}
        try:
            socket.send_fds(conn, [protocol.encode(message)], [lock_fd])
        except OSError:
            conn.close()
            continue
        reader = protocol.LineReader(conn)
        reply = protocol.client_handshake(reader, timeout=max(0.1, deadline - time.monotonic()))
        if reply is not None and reply.get("ready"):
            try:
                started = reader.read()
            except (OSError, ValueError):
                started = None
            if started is not None and "pid" in started:
                return PooledTrainer(reader, started["pid"])
        conn.close()
        if reply is None or reply.get("ready"):  # the pool left, or is still importing: ask again
            continue  # (no pid: no trainer started, so asking again cannot start a second one)
        log.info("warm pool declined (%s); starting a fresh one", reply.get("error"))
        if not started:
            time.sleep(0.2)  # let the stale pool remove its socket
            start_pool(task, root)
            started = True
    return None


if __name__ == "__main__":
    serve(sys.argv[1], Path(sys.argv[2]))
