"""The `autopilot` console script: the loop's commands run warm, everything else as a plain click program.

The rules of the workflow start `autopilot propose|guard|train|judge|journal` once per run each. Those go to
the user's warm command server (`autopilot.warm.commands`) when one is listening: it forks a child that takes
this process's working directory, environment, umask and stdin/stdout/stderr (the descriptors themselves,
passed over the socket), runs the same click command and reports its exit status, which this process exits
with. Meanwhile SIGINT/SIGTERM/SIGHUP/SIGQUIT sent here go to the child's process group; if this process is
killed, the child sees its socket close and kills its own group.

Any other command, a help request, AUTOPILOT_NO_WARMSTART=1, or no server (the first call starts one for the
next) runs the command in this process, exactly as before. Until then only light standard modules load: the
point is to spend milliseconds, not the 0.3 s of importing click, yaml, jsonschema, numpy and optuna.
"""

from __future__ import annotations

import os
import sys

WARM_COMMANDS = frozenset({"propose", "guard", "train", "judge", "journal"})
HELP_FLAGS = frozenset({"-h", "--help", "--version"})
FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")


def command_name(argv: list[str]) -> str | None:
    """The subcommand of `autopilot ARGV` (after the group's own --root/-v options), if any."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--root":
            i += 2
        elif arg.startswith("--root=") or arg in ("-v", "--verbose"):
            i += 1
        elif arg.startswith("-"):
            return None
        else:
            return arg
    return None


def runs_warm(argv: list[str]) -> bool:
    return (command_name(argv) in WARM_COMMANDS and not HELP_FLAGS.intersection(argv)
            and os.environ.get("AUTOPILOT_NO_WARMSTART") != "1")


def main() -> None:
    argv = sys.argv[1:]
    if runs_warm(argv):
        code = run_warm(argv)
        if code is not None:
            sys.exit(code)
    from autopilot.cli import main as cli_main

    cli_main()


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
