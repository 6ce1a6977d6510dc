"""The client side of the warm command server: hand a command to it, forward signals, return its exit status.

The server (`autopilot.warm.commands`) forks a child that takes this process's working directory, environment,
umask and stdin/stdout/stderr (the descriptors themselves, passed over the socket), runs the same click command
and reports its exit status. Meanwhile SIGINT/SIGTERM/SIGHUP/SIGQUIT sent here go to the child's process group;
if this process is killed, the child sees its socket close and kills its own group. The protocol is in
`autopilot.warm.protocol`.
"""

from __future__ import annotations

import os
import sys

FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")


def run_warm(argv: list[str]) -> int | None:
    """Run `autopilot ARGV` in the command server and return its exit status; None if the server did not
    start it (the caller then runs it itself). Starts a server for the next command where none listens."""
    import socket

    from autopilot.warm import protocol

    key = protocol.key(protocol.COMMAND_SERVER)
    path = protocol.socket_path(protocol.COMMAND_SERVER, key)
    if path is None or not _std_fds_open():
        return None
    conn = protocol.connect(path)
    if conn is None:
        start_server()
        return None
    with conn:
        if not protocol.serves_us(conn, path):  # before the request: it carries this environment, keys and all
            return None
        umask = os.umask(0)
        os.umask(umask)
        request = {"key": key, "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "umask": umask}
        reader = protocol.LineReader(conn)
        try:
            socket.send_fds(conn, [protocol.encode(request)], [0, 1, 2])
        except OSError:
            return None
        reply = protocol.client_handshake(reader)
        if reply is None or not reply.get("ready"):  # not started, and never will be
            if reply is not None and reply.get("stale"):
                start_server()  # the stale one is on its way out
            return None
        try:
            started = reader.read()
        except (OSError, ValueError):
            started = None
        if started is None or "pid" not in started:  # the child sends its pid before the command starts
            return None
        return _wait_for(started["pid"], reader)


def _wait_for(pid: int, reader) -> int:
    """The child's exit status; signals to this process go to the child's process group meanwhile."""
    import signal

    def forward(signum, frame):
        try:
            os.killpg(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    for name in FORWARDED_SIGNALS:
        signal.signal(getattr(signal, name), forward)
    message = reader.read()
    if message is None or "exit" not in message:  # the server and the child are gone: status unknown
        print(f"autopilot: lost the command server while it ran pid {pid}; exit status unknown", file=sys.stderr)
        return 1
    code = message["exit"]
    if code < 0:  # killed by a signal: die of the same signal, as the command itself would have
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def _std_fds_open() -> bool:
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            return False
    return True


def start_server(env: dict[str, str] | None = None) -> None:
    """Start the command server for this environment (or `env`) in the background; of two started at once,
    the one that loses the socket exits."""
    import subprocess

    subprocess.Popen([sys.executable, "-m", "autopilot.warm.commands"], cwd="/", env=env, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
