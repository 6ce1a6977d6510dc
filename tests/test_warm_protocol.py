"""What warm processes and their clients check before they trust each other: a socket folder that is not
private turns warm processes off and is reported once; a client sends nothing to a process of another user."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from autopilot.warm import client, protocol, trainers

NOBODY = 65534


@pytest.fixture
def tmpdir_short(monkeypatch):
    """A TMPDIR of this test alone, short enough for unix socket paths (pytest's tmp_path may not be)."""
    path = Path(tempfile.mkdtemp(prefix="ap-", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setattr(protocol, "_reported", set())
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_open(folder: Path) -> str:
    folder.mkdir()
    folder.chmod(0o777)
    return "is open to other users (mode 0777)"


def make_link(folder: Path) -> str:
    elsewhere = folder.parent / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    folder.symlink_to(elsewhere)
    return "is not a folder (a link or a file)"


def make_foreign(folder: Path) -> str:
    if os.geteuid() != 0:
        pytest.skip("making a folder of another user needs root")
    folder.mkdir(mode=0o700)
    os.chown(folder, NOBODY, NOBODY)
    return f"belongs to another user (uid {NOBODY})"


def run_lock(folder: Path) -> int:
    """A descriptor of a run's trainer lock, as the supervisor hands it to the pool (train.runlock)."""
    return os.open(folder / ".trainer.lock", os.O_RDWR | os.O_CREAT)


@pytest.mark.parametrize("prepare", [make_open, make_link, make_foreign])
def test_a_socket_folder_that_is_not_private_turns_warm_processes_off_and_is_reported_once(tmpdir_short, caplog,
                                                                                          prepare):
    folder = tmpdir_short / f"autopilot-{os.getuid()}"
    why = prepare(folder)
    caplog.set_level(logging.WARNING, logger="autopilot.warm.protocol")
    assert client.run_warm(["judge", "--study", "s", "--run", "00001"]) is None  # runs cold
    assert protocol.socket_path("commands", protocol.key("commands")) is None
    assert trainers.request("cnn_digits", ["a", "b"], tmpdir_short, tmpdir_short / "train.log",
                            run_lock(tmpdir_short)) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"autopilot: {folder} {why}, so warm processes are off and every command starts cold; "
                        "remove it (or set TMPDIR to a folder of your own) to have them again"]
    assert not list(folder.glob("*.sock"))


def foreign_listener(path: str) -> tuple[int, int]:
    """A process that binds `path`, becomes another user, listens, and writes to a pipe how many bytes the first
    client sent before it hung up. Returns its pid and the pipe's read end."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(path)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            server.listen(1)
            os.write(write, b"L")
            server.settimeout(20)
            conn, _ = server.accept()
            conn.settimeout(20)
            got = 0
            while chunk := conn.recv(65536):
                got += len(chunk)
            os.write(write, str(got).encode())
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"L"
    return pid, read


def sent_to(pid: int, read: int) -> int:
    got = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    return int(got)


@pytest.mark.skipif(os.geteuid() != 0, reason="listening as another user needs root")
@pytest.mark.parametrize("kind", ["command", "pool"])
def test_a_client_sends_nothing_to_a_warm_process_of_another_user(tmpdir_short, caplog, monkeypatch, kind):
    monkeypatch.setenv("SOME_API_KEY", "sk-test-for-my-own-processes-only")
    caplog.set_level(logging.WARNING, logger="autopilot.warm.protocol")
    if kind == "command":
        path = protocol.socket_path("commands", protocol.key("commands"))
        pid, read = foreign_listener(path)
        assert client.run_warm(["judge", "--study", "s", "--run", "00001"]) is None  # runs cold instead
    else:
        path = trainers.socket_path(tmpdir_short, "cnn_digits")
        pid, read = foreign_listener(path)
        assert trainers.request("cnn_digits", ["a", "b"], tmpdir_short, tmpdir_short / "train.log",
                            run_lock(tmpdir_short)) is None
    assert sent_to(pid, read) == 0  # not a byte of the request, which carries the environment
    assert [r.getMessage() for r in caplog.records] == [
        f"autopilot: {path} is served by another user (uid {NOBODY}); nothing was sent to it, and the command runs "
        "cold. Remove the socket, or set TMPDIR to a folder of your own"]


def test_a_warm_process_of_this_user_is_trusted():
    a, b = socket.socketpair()
    with a, b:
        assert protocol.peer_uid(a) == os.getuid() and protocol.serves_us(a, "unused")
