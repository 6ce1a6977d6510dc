"""What the warm processes (the trainer pool, the command server) and their clients share: where their unix
sockets live, which clients a warm process may serve, when its code is stale, and the protocol (one JSON
object per line).

A warm process has imported its modules under the environment it started with, and some variables take
effect only then (PYTHON*, the thread counts of OpenMP and BLAS: torch sizes its thread pool at import). So a
warm process serves only clients with the same interpreter and the same such variables: they are part of its
key, and so of its socket's name. Sockets live in a folder only this user can enter (`$TMPDIR` or /tmp, then
`autopilot-<uid>/`, mode 0700) and are themselves mode 0600: a warm process runs whatever a client asks. Where
that folder exists but is not private (another user made it first, or it is open to others, or a link), warm
processes are off and the process says so once. Both sides check the other's uid (SO_PEERCRED) before they
send anything: a client's request carries its environment, API keys included.

Standard library only, and the light part of it: the `autopilot` console script imports this on every call.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import sys
import time
import zlib

log = logging.getLogger(__name__)

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # src/autopilot
COMMAND_SERVER = "commands"  # the kind of the command server (autopilot.warm.commands); trainer pools are "pool"
SUN_PATH_MAX = 107  # bytes of a unix socket path, less the terminating NUL
HANDSHAKE_SECONDS = 30.0  # how long a client waits for a warm process that is still importing
# How long a warm process waits for a client's request, or its "go": a client sends the request as soon as it
# connects and "go" as soon as it reads "ready", so only a broken client is ever this slow, and it must not
# hold up the clients queued behind it for long (a warm process serves them one at a time).
CLIENT_SECONDS = 2.0
# CUDA_VISIBLE_DEVICES is not among them: CUDA reads it when first used, in the forked child (one pool serves
# every GPU of the machine).
IMPORT_TIME_ENV = ("PYTHON", "OMP_", "GOTO_", "OPENBLAS_", "MKL_", "VECLIB_", "NUMEXPR_", "LD_", "TORCH",
                   "PYTORCH_")


def import_time_env(env) -> dict[str, str]:
    """The variables of `env` that take effect when modules are imported."""
    return {k: v for k, v in sorted(env.items()) if k.startswith(IMPORT_TIME_ENV)}


def key(kind: str, *parts: str, env=None) -> str:
    """Who a warm process of `kind` serves: this interpreter and package, `parts`, the import-time variables."""
    settings = import_time_env(os.environ if env is None else env)
    return json.dumps([kind, sys.executable, PACKAGE_DIR, *parts, settings])


_reported: set[str] = set()  # folders and sockets this process has already said are not safe to use


def private_dir() -> str | None:
    """This user's folder for sockets, created if missing; None (reported once) if it is not safely ours."""
    path = os.path.join(os.environ.get("TMPDIR") or "/tmp", f"autopilot-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as e:
        return _unsafe(path, f"cannot be made or read ({e.strerror})")
    if not stat.S_ISDIR(st.st_mode):
        return _unsafe(path, "is not a folder (a link or a file)")
    if st.st_uid != os.getuid():
        return _unsafe(path, f"belongs to another user (uid {st.st_uid})")
    if st.st_mode & 0o077:
        return _unsafe(path, f"is open to other users (mode {stat.S_IMODE(st.st_mode):04o})")
    return path


def _unsafe(path: str, why: str) -> None:
    if path not in _reported:
        _reported.add(path)
        log.warning("autopilot: %s %s, so warm processes are off and every command starts cold; remove it "
                    "(or set TMPDIR to a folder of your own) to have them again", path, why)
    return None


def socket_path(kind: str, full_key: str) -> str | None:
    """The socket of the warm process with this key; None where no safe, short enough path exists.
    (A 64-bit checksum names it; the process checks the whole key, so a collision is only a refusal.)"""
    folder = private_dir()
    if folder is None:
        return None
    data = full_key.encode()
    path = os.path.join(folder, f"{kind}-{zlib.crc32(data):08x}{zlib.adler32(data):08x}.sock")
    return path if len(os.fsencode(path)) <= SUN_PATH_MAX else None


def source_fingerprint() -> str:
    """Changes whenever the package's code or schemas, the interpreter or the installed packages change."""
    import hashlib
    from pathlib import Path

    from autopilot import bundled

    h = hashlib.sha256(f"{sys.executable}|{sys.version}".encode())
    package = Path(PACKAGE_DIR)
    sources = [*package.rglob("*.py"), *(bundled.project_files() / "schemas").rglob("*.yaml")]
    for path in sorted(sources):
        st = path.stat()
        h.update(f"{path}|{st.st_mtime_ns}|{st.st_size}".encode())
    for entry in sys.path:  # site-packages folders change when a distribution is installed or removed
        if entry.endswith("-packages"):
            try:
                h.update(f"{entry}|{os.stat(entry).st_mtime_ns}".encode())
            except OSError:
                pass
    return h.hexdigest()[:16]


def idle_seconds() -> float:
    """How long a warm process waits for work before it exits: AUTOPILOT_POOL_IDLE_SECONDS, default 300."""
    return float(os.environ.get("AUTOPILOT_POOL_IDLE_SECONDS", 300))


def exit_on_sigterm() -> None:
    """In a warm process: SIGTERM ends it through its `finally:` (which removes the socket)."""
    import signal

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))


def default_signals() -> None:
    """In a child forked by a warm process: the signal dispositions of a fresh process."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def listen(path: str, backlog: int = 16) -> tuple[socket.socket, int]:
    """A listening socket at `path`, mode 0600, bound atomically; returns it and the path's inode."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    server.bind(tmp)
    os.chmod(tmp, 0o600)
    server.listen(backlog)
    os.replace(tmp, path)  # a client sees either no socket or a listening one
    return server, os.stat(path).st_ino


def still_ours(path: str, inode: int) -> bool:
    """False once another process took the path over (or it was removed)."""
    try:
        return os.stat(path).st_ino == inode
    except FileNotFoundError:
        return False


def release(path: str, inode: int) -> None:
    """Remove the socket file if it is still this process's."""
    if still_ours(path, inode):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def serve(kind: str, key: str, *, preload, handle, busy, refuse_stale, gone=lambda: False, drain=lambda: None,
          poll_seconds: float = 0.5) -> None:
    """The accept loop both kinds of warm process run: listen before importing (clients wait for this process, none
    starts another), `preload()`, then hand each connection of this user to `handle(conn, server)` until idle.

    It leaves when nothing was `busy()` for idle_seconds(), when `gone()`, or when another process took the socket
    over; when a file of the package changed since it started, `refuse_stale(conn, server)` answers the client (and
    any waiting ones) and it leaves too. `drain()` runs last, after the socket is released: report every child's end.
    """
    path = socket_path(kind, key)
    if path is None:
        return
    idle = idle_seconds()
    exit_on_sigterm()
    fingerprint = source_fingerprint()
    server, inode = listen(path)
    preload()
    server.settimeout(poll_seconds)
    last_used = time.monotonic()
    try:
        while True:
            if busy():
                last_used = time.monotonic()
            elif time.monotonic() - last_used > idle or gone() or not still_ours(path, inode):
                break
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            last_used = time.monotonic()
            if not same_user(conn):
                conn.close()
                continue
            if source_fingerprint() != fingerprint:
                refuse_stale(conn, server)
                break
            handle(conn, server)
    finally:
        release(path, inode)
        server.close()
        drain()


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end (as it was when it connected, or listened); None if unknown."""
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    except (OSError, AttributeError):
        return None
    return int.from_bytes(creds[4:8], sys.byteorder)


def same_user(conn: socket.socket) -> bool:
    """The peer runs as this user (checked on top of the socket's mode)."""
    return peer_uid(conn) == os.getuid()


def serves_us(conn: socket.socket, path: str) -> bool:
    """A client's check before it sends a request: the warm process at `path` runs as this user (a request holds
    the client's environment). Said once when it does not."""
    if same_user(conn):
        return True
    if path not in _reported:
        _reported.add(path)
        log.warning("autopilot: %s is served by another user (uid %s); nothing was sent to it, and the command "
                    "runs cold. Remove the socket, or set TMPDIR to a folder of your own", path, peer_uid(conn))
    return False


def listening(path: str | None) -> bool:
    """A warm process listens at `path` (it reads the empty request of this probe and goes on)."""
    conn = connect(path)
    if conn is not None:
        conn.close()
    return conn is not None


def connect(path: str | None) -> socket.socket | None:
    if path is None:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        return conn
    except OSError:
        conn.close()
        return None


def encode(message: dict) -> bytes:
    return (json.dumps(message) + "\n").encode()


def send(conn: socket.socket, message: dict) -> None:
    conn.sendall(encode(message))


def decline(conn: socket.socket, message: dict) -> None:
    """Answer a request that will not be carried out (a client already gone is no error) and hang up."""
    try:
        send(conn, message)
    except OSError:
        pass
    conn.close()


def client_handshake(reader: LineReader, timeout: float = HANDSHAKE_SECONDS) -> dict | None:
    """After sending a request: wait for the warm process's answer and, if it is ready, commit with "go".

    A warm process listens before it imports, so a client may wait here for seconds. Returns the answer:
    {"ready": true} once committed (the request will be carried out), {"error": ...} if declined, or None if
    the process left or did not answer in time (then it never will carry the request out: it forks only on
    "go", so the caller may safely do the work itself)."""
    reader.conn.settimeout(timeout)
    try:
        reply = reader.read()
        if reply is not None and reply.get("ready"):
            send(reader.conn, {"go": True})
        return reply
    except (OSError, ValueError):
        return None
    finally:
        reader.conn.settimeout(None)


def server_handshake(reader: LineReader) -> bool:
    """After reading a request: say it is accepted and wait for the client's "go"; False if it gave up."""
    reader.conn.settimeout(CLIENT_SECONDS)
    try:
        send(reader.conn, {"ready": True})
        answer = reader.read()
        return answer is not None and answer.get("go") is True
    except (OSError, ValueError):
        return False
    finally:
        reader.conn.settimeout(None)


class LineReader:
    """Reads one JSON message per line from a stream socket, keeping what arrived after a line."""

    def __init__(self, conn: socket.socket, already: bytes = b""):
        self.conn = conn
        self.buffer = already

    def read(self) -> dict | None:
        """The next message; None when the peer closed the connection before a full line."""
        while b"\n" not in self.buffer:
            chunk = self.conn.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)
