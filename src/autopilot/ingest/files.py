"""Opening files that someone else dropped: once, without following a link or waiting on a FIFO, regular files
only, and never reading more than asked.

A name in inbox/ can be anything: a FIFO (a plain open would wait for a writer forever), a directory, a link to
/dev/zero or to a file outside the project, a sparse file of terabytes. `open_regular` opens it with
O_NOFOLLOW|O_NONBLOCK and then looks at what it opened (fstat), so a name swapped between a check and the open
cannot fool it; `read_at_most` never reads more than its limit; `held_for_writing` asks the kernel whether
another process still has the file open for writing (a Linux lease), the one sign of a writer that stalled
longer than `settle_seconds` and will go on.

Usage:
    fd = open_regular(path)              # NotRegular (an IngestError) says what it is instead
    data = read_at_most(fd, 64 * 1024)   # at most limit + 1 bytes: len(data) > limit means "too big"
    held_for_writing(fd)                 # True, False, or None where the kernel cannot tell
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path

from autopilot.errors import IngestError

PIECE = 1 << 16
KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
         (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link"),
         (stat.S_ISREG, "a regular file"))


class NotRegular(IngestError):
    """The name is a link, a FIFO, a directory, a socket or a device: nothing ingest reads."""


def kind(mode: int) -> str:
    """`a FIFO (named pipe)`, `a directory`, ... for a stat mode."""
    return next((name for test, name in KINDS if test(mode)), "not a regular file")


def printable(name: str) -> str:
    """A file name as valid UTF-8 text (names that are not show their bad bytes escaped)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def open_regular(path: Path) -> int:
    """A read-only descriptor of `path`, which must be a regular file itself (not a link to one)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise NotRegular(f"{Path(path).name} is a symbolic link; links are never followed") from None
        if e.errno == errno.ENXIO:  # a socket (or a FIFO without a reader on some systems)
            raise NotRegular(f"{Path(path).name} is {kind(os.lstat(path).st_mode)}, not a regular file") from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegular(f"{Path(path).name} is {kind(mode)}, not a regular file")
    return fd


def read_at_most(fd: int, limit: int) -> bytes:
    """The first `limit + 1` bytes at most: one byte more than allowed tells a file that is too big."""
    chunks, left = [], limit + 1
    while left > 0:
        chunk = os.read(fd, min(left, PIECE))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def held_for_writing(fd: int) -> bool | None:
    """Whether any process has the file open for writing: True, False, or None where this cannot be known.

    A read lease (fcntl F_SETLEASE) is refused with EAGAIN exactly when the file is open for writing anywhere
    on this machine; it is given back at once. None: not Linux, a file system without leases (NFS, FUSE), or a
    file of another user (leases need its owner); the checks after the copy then stand alone.
    """
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except AttributeError:
        return None
    except OSError as e:
        return True if e.errno == errno.EAGAIN else None
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return False
