"""The warm command server: runs the loop's commands in a process that has already imported them.

Every rule of the workflow starts `autopilot <command>`, and a fresh interpreter spends about 0.3 s importing
click, yaml, jsonschema, numpy and optuna before 10-70 ms of work: most of the loop's overhead on a 2-core
machine. So the console script (`autopilot.console`) hands the loop's commands to this server, one per user,
interpreter and import-time settings (see `autopilot.warm.protocol`), which forks a child per command:

    autopilot judge ...  --(unix socket: key, argv, cwd, environment, umask + stdin/stdout/stderr)-->  server
                         <--ready--  --go-->                                                       | fork
                         <--{"pid"}, then {"exit"}-- child: same cwd, env, umask and descriptors, own session,
                                                      runs the same click command, reports its exit status

The server listens before it imports (a client waits for it rather than start a second one) and forks only on
"go"; the child sends its pid before the command starts. So a client that gave up waiting (30 s), or got no
pid, knows that the command did not run and runs it itself.

The client forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to the child's process group and exits as the child did
(re-raising its signal if it was killed by one); if the client dies (SIGKILL), the child notices the closed
socket and kills its own process group, as if it had been the client's own process. The server refuses work
and exits as soon as the package's code or schemas (or the installed packages) changed since it started, so
edited code never runs stale, and exits after AUTOPILOT_POOL_IDLE_SECONDS (300) without work. A declined command runs in
the client's own process.

Usage (started on demand by the console script; by hand for debugging):
    python -m autopilot.warm.commands
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import sys
import threading
import traceback

from autopilot.warm import protocol

KIND = protocol.COMMAND_SERVER
POLL_SECONDS = 0.5  # how often the server reaps children and checks its socket and idle time

# What the loop's commands import; the server imports it once, every child inherits it.
PRELOAD = (
    "autopilot.cli",
    "autopilot.propose.decide",
    "autopilot.propose.policies.optimizer",
    "autopilot.propose.policies.manual",
    "autopilot.propose.policies.hybrid",
    "autopilot.propose.policies.llm",
    "optuna",
    "numpy.ma",  # loaded by numpy.quantile and numpy.unique in the judge
    "autopilot.guard",
    "autopilot.train.runner",
    "autopilot.judge.verdicts",
    "autopilot.continual.judging",
    "autopilot.continual.training",
    "autopilot.journal.record",
)


# --- the server ------------------------------------------------------------------------------------------
def socket_path(env=None) -> str | None:
    """The socket of the command server that serves clients with this environment (default: ours)."""
    return protocol.socket_path(KIND, protocol.key(KIND, env=env))


def serve() -> None:
    key = protocol.key(KIND)
    children: dict[int, socket.socket] = {}

    def busy() -> bool:
        _reap(children)
        return bool(children)

    def refuse_stale(conn: socket.socket, server: socket.socket) -> None:
        _refuse_stale(conn, key)
        server.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:  # every client already waiting learns why, and starts a fresh server
                _refuse_stale(server.accept()[0], key)

    def drain() -> None:
        while children:  # report every running command's end before leaving
            _reap(children, block=True)

    protocol.serve(KIND, key, preload=preload, busy=busy, refuse_stale=refuse_stale, drain=drain,
                   handle=lambda conn, server: _handle(conn, server, key, children), poll_seconds=POLL_SECONDS)


def preload() -> None:
    """Import what the loop's commands use, and read the schemas they validate against."""
    from autopilot import schemas

    for name in PRELOAD:
        importlib.import_module(name)
    schemas.preload()


def _receive(conn: socket.socket, key: str) -> tuple[protocol.LineReader, dict, list[int]]:
    """The client's request and its stdin/stdout/stderr; ValueError (descriptors closed) if unusable."""
    fds: list[int] = []
    try:
        conn.settimeout(protocol.CLIENT_SECONDS)
        data, fds, _, _ = socket.recv_fds(conn, 65536, 3)
        reader = protocol.LineReader(conn, data)
        request = reader.read()
        if request is None or len(fds) != 3:
            raise ValueError("incomplete request")
        if request["key"] != key:  # two keys with one checksum
            raise ValueError("this server serves another interpreter or other settings")
        return reader, request, fds
    except (OSError, ValueError, KeyError) as e:
        _close(fds)
        raise ValueError(str(e)) from None


def _handle(conn: socket.socket, server: socket.socket, key: str, children: dict[int, socket.socket]) -> None:
    try:
        reader, request, fds = _receive(conn, key)
    except ValueError as e:
        protocol.decline(conn, {"error": f"declined: {e}"})
        return
    if not protocol.server_handshake(reader):  # the client gave up waiting and runs the command itself
        _close(fds)
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        server.close()
        for other in children.values():
            other.close()
        _run_child(conn, request, fds)
    _close(fds)
    children[pid] = conn


def _refuse_stale(conn: socket.socket, key: str) -> None:
    conn.setblocking(True)
    with contextlib.suppress(ValueError):
        _close(_receive(conn, key)[2])  # read before answering: unread data would reset the connection
    protocol.decline(conn, {"error": "stale: the package changed since this server started", "stale": True})


def _close(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _reap(children: dict[int, socket.socket], block: bool = False) -> None:
    """Collect ended children; one killed by a signal could not report, so report it for it."""
    while children:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            try:
                protocol.send(conn, {"exit": code})
            except OSError:
                pass
        conn.close()
        if block:
            return


# --- the child -------------------------------------------------------------------------------------------
def _run_child(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """Become the command's process, run it, report the exit status; never returns."""
    code = 1
    done = threading.Event()
    try:
        os.setsid()
        protocol.default_signals()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.umask(request["umask"])
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["AUTOPILOT_COMMAND_SERVER"] = str(os.getppid())  # `autopilot -v` says it ran warm
        sys.argv = ["autopilot", *request["argv"]]
        sys.stdout.reconfigure(line_buffering=sys.stdout.isatty())
        protocol.send(conn, {"pid": os.getpid()})
        threading.Thread(target=_die_with_client, args=(conn, done), daemon=True).start()
        from autopilot.cli import main

        main.main(args=request["argv"], prog_name="autopilot")
        code = 0
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        _exit_child(conn, code, done)


def _exit_child(conn: socket.socket, code: int, done: threading.Event) -> None:
    """What the interpreter does at exit (threads, atexit, flush), then report and leave."""
    try:
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        traceback.print_exc()
        code = code or 1
    done.set()
    try:
        protocol.send(conn, {"exit": code})
    except OSError:
        pass
    os._exit(code)


def _die_with_client(conn: socket.socket, done: threading.Event) -> None:
    """The client sends nothing more: end of stream means it died, and the command dies with it."""
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    if not done.is_set():
        os.killpg(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    serve()
