"""A warm trainer pool: one long-lived process per project and task, with the task (and torch) imported,
that forks a trainer on request. It takes the two seconds of `import torch` out of every run.

    autopilot train  --(unix socket: args, cwd, log, env)-->  pool  --fork-->  trainer (own session)
                     <--(pid, then the exit status)---------

The trainer is the same as one started by `warmstart.ForkedTrainer`: its own session and process group
(the supervisor kills the group past the time limit), the project root as working directory, output in
train.log, the caller's environment. The pool exits after IDLE_SECONDS without requests, and refuses work
and exits as soon as any source file of the package changed since it started, so edited code is never
run by a stale pool. Set AUTOPILOT_NO_WARMSTART=1 to start every trainer as a fresh process instead.

Usage (started on demand by the supervisor; by hand for debugging):
    python -m autopilot.warmpool TASK PROJECT_ROOT
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

IDLE_SECONDS = float(os.environ.get("AUTOPILOT_POOL_IDLE_SECONDS", 300))  # then the pool exits
UNKNOWN_EXIT = -255  # exit status of a trainer whose pool died before reporting it
START_TIMEOUT_SECONDS = 30.0
PACKAGE_DIR = Path(__file__).resolve().parent


def source_fingerprint() -> str:
    """Changes whenever a source file of the package (or the interpreter) changes."""
    h = hashlib.sha256(f"{sys.executable}|{sys.version}".encode())
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        st = path.stat()
        h.update(f"{path}|{st.st_mtime_ns}|{st.st_size}".encode())
    return h.hexdigest()[:16]


def socket_path(root: Path, task: str) -> Path:
    """Short (sun_path holds 108 bytes) and unique per project, task and interpreter."""
    key = hashlib.sha256(f"{Path(root).resolve()}|{task}|{sys.executable}".encode()).hexdigest()[:16]
    return Path("/tmp") / f"autopilot-pool-{key}.sock"


# --- the pool --------------------------------------------------------------------------------------------
def serve(task: str, root: Path) -> None:
    from autopilot.warmstart import preload

    module = preload(task)
    fingerprint = source_fingerprint()
    path = socket_path(root, task)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    server.bind(str(tmp))
    server.listen(16)
    os.replace(tmp, path)  # atomic: a client sees either no socket or a listening one
    inode = path.stat().st_ino
    server.settimeout(1.0)
    last_used = time.monotonic()
    waiters: list[threading.Thread] = []
    try:
        while True:
            waiters = [t for t in waiters if t.is_alive()]
            if waiters:
                last_used = time.monotonic()  # a running trainer keeps the pool alive
            elif time.monotonic() - last_used > IDLE_SECONDS or not root.is_dir():
                break  # idle, or the project is gone
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            last_used = time.monotonic()
            if source_fingerprint() != fingerprint:
                _reply(conn, {"error": "stale: the package changed since this pool started"})
                conn.close()
                break
            waiter = _handle(conn, module, task)
            if waiter is not None:
                waiters.append(waiter)
    finally:
        try:
            if path.stat().st_ino == inode:  # another pool may have taken the path over
                path.unlink()
        except FileNotFoundError:
            pass
        server.close()
        for t in waiters:  # report every running trainer's exit before leaving
            t.join()


def _handle(conn: socket.socket, module, task: str) -> threading.Thread | None:
    """Fork one trainer for the request on `conn`; a thread reports its exit status when it ends."""
    from autopilot.warmstart import run_child

    try:
        request = json.loads(_read_line(conn))
        log_fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except (OSError, ValueError, KeyError) as e:
        _reply(conn, {"error": f"bad request: {e}"})
        conn.close()
        return None
    pid = os.fork()
    if pid == 0:
        conn.close()
        os.environ.clear()
        os.environ.update(request["env"])
        run_child(module, task, request["args"], Path(request["cwd"]), log_fd)
    os.close(log_fd)
    _reply(conn, {"pid": pid})
    waiter = threading.Thread(target=_report_exit, args=(conn, pid))
    waiter.start()
    return waiter


def _report_exit(conn: socket.socket, pid: int) -> None:
    _, status = os.waitpid(pid, 0)
    try:
        _reply(conn, {"returncode": os.waitstatus_to_exitcode(status)})
    except OSError:
        pass  # the supervisor went away (killed); the trainer's files tell what happened
    finally:
        conn.close()


def _reply(conn: socket.socket, message: dict) -> None:
    conn.sendall((json.dumps(message) + "\n").encode())


def _read_line(conn: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before a full line")
        data += chunk
    return data.decode()


# --- the client ------------------------------------------------------------------------------------------
class PooledTrainer:
    """A trainer forked by the pool, with the part of subprocess.Popen's interface the supervisor uses."""

    def __init__(self, conn: socket.socket, pid: int):
        self.conn = conn
        self.pid = pid
        self.returncode: int | None = None
        self._buffer = b""

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
            while not self._buffer.endswith(b"\n"):
                chunk = self.conn.recv(4096)
                if not chunk:  # the pool died: the trainer, if alive, is waited for by pid
                    return self._wait_orphan(timeout)
                self._buffer += chunk
        except (TimeoutError, BlockingIOError):
            return None
        self.returncode = json.loads(self._buffer)["returncode"]
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


def _connect(path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
        return conn
    except OSError:
        conn.close()
        return None


def _start_pool(task: str, root: Path) -> None:
    subprocess.Popen([sys.executable, "-m", "autopilot.warmpool", task, str(root)], cwd=root,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


def request(task: str, args: list[str], root: Path, log_path: Path) -> PooledTrainer | None:
    """A trainer forked by the project's warm pool (started if needed), or None if no pool could serve."""
    path = socket_path(root, task)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    started = False
    while time.monotonic() < deadline:
        conn = _connect(path)
        if conn is None:
            if not started:
                _start_pool(task, root)
                started = True
            time.sleep(0.05)
            continue
        message = {"args": args, "cwd": str(root), "log": str(log_path), "env": dict(os.environ)}
        try:  # a pool can die between accepting and reading (its SLURM job ended, say): try another
            conn.sendall((json.dumps(message) + "\n").encode())
            reply = json.loads(_read_line(conn))
        except (OSError, ValueError):
            conn.close()
            continue
        if "pid" in reply:
            return PooledTrainer(conn, reply["pid"])
        conn.close()
        log.info("warm pool declined (%s); starting a fresh one", reply.get("error"))
        if not started:
            time.sleep(0.2)  # let the stale pool remove its socket
            _start_pool(task, root)
            started = True
    return None


if __name__ == "__main__":
    serve(sys.argv[1], Path(sys.argv[2]))
