"""The claim area of the inbox: a file is renamed into inbox/.ingesting/ before a byte of it is read.

The rename frees the file's name at once: a producer that writes a new version, or the rest of a file under
the same name, makes a new file and never changes the one being read; and the only name ingest ever removes is
the one in the claim area, which holds the very file that was read (its inode, size and modification time are
compared first). The claim area is inside the inbox, so the rename works whatever file system the inbox is on.

A claimed file goes back to the inbox under its name when it must wait (still being written, changed while it
was read, no room to copy it) and, after a crash, before the next ingest (`give_back_all`). Going back never
replaces anything: if a new file took the name meanwhile, the claimed one returns as `<stem>.returned-<n>`.
Only ingest touches the claim area, under the queue's writer lock.

Usage:
    claimed = claim_area.take(project, "chat.jsonl", path.lstat())   # None: gone or replaced meanwhile
    ...read claimed.path...
    claim_area.give_back(project, [claimed])      # or, once its copy is published:
    claim_area.release(project, [claimed])
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from autopilot import fsio
from autopilot.errors import IngestError
from autopilot.ingest.queue import DATA_SUFFIX, META_SUFFIX, link_new
from autopilot.paths import Project

log = logging.getLogger(__name__)


def identity(st: os.stat_result) -> tuple[int, int, int]:
    """What tells one version of a file from another: inode, size, modification time (ns)."""
    return st.st_ino, st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class Claimed:
    name: str  # its name in the inbox
    path: Path  # where it is while ingest holds it: inbox/.ingesting/<name>
    st: os.stat_result  # as it was looked at in the inbox (lstat): the file read must be this one

    def unchanged(self) -> bool:
        try:
            return identity(os.lstat(self.path)) == identity(self.st)
        except FileNotFoundError:
            return False


def take(project: Project, name: str, st: os.stat_result) -> Claimed | None:
    """Rename inbox/<name> into the claim area; None when it is gone, or was replaced after `st` was taken
    (the replacement goes back: it is looked at next time)."""
    area = project.ingesting
    area.mkdir(exist_ok=True)
    target = area / name
    if os.path.lexists(target):
        raise IngestError(f"{target} is still claimed by an earlier ingest that could not give it back; "
                          f"move it into inbox/ by hand")
    try:
        os.rename(project.inbox / name, target)
    except FileNotFoundError:
        return None
    claimed = Claimed(name, target, st)
    if not claimed.unchanged():
        give_back(project, [claimed])
        return None
    return claimed


def give_back(project: Project, claimed: list[Claimed]) -> None:
    """Return claimed files to the inbox, a data file and its sidecar under names that still pair."""
    for n in range(10_000):
        names = [returned_name(c.name, n) for c in claimed]
        if not any(os.path.lexists(project.inbox / name) and not _same(project.inbox / name, c.path)
                   for name, c in zip(names, claimed, strict=True)):
            break
    else:
        raise IngestError(f"no free name in inbox/ to give back {claimed[0].name}")
    for name, c in zip(names, claimed, strict=True):
        _return(c.path, project.inbox / name)
    fsio.fsync_path(project.inbox)


def release(project: Project, claimed: list[Claimed]) -> None:
    """Remove claimed files whose copy is published; one that changed after it was read goes back instead."""
    changed = [c for c in claimed if not c.unchanged()]
    for c in claimed:
        if c not in changed:
            os.unlink(c.path)
    if changed:
        log.warning("%s changed after it was read: it goes back to the inbox", changed[0].name)
        give_back(project, changed)
    fsio.fsync_path(project.ingesting)


def give_back_all(project: Project) -> None:
    """After a crash: every file left in the claim area goes back to the inbox (pairs stay pairs)."""
    area = project.ingesting
    if not area.is_dir():
        return
    names = sorted(os.listdir(area))
    for name in names:
        if name.endswith(META_SUFFIX) and _data_of(name) in names:
            continue  # goes with its data file
        group = [name]
        if name.endswith(DATA_SUFFIX) and _sidecar_of(name) in names:
            group.append(_sidecar_of(name))
        log.warning("giving %s back to the inbox (claimed by an ingest that did not finish)", group[0])
        give_back(project, [Claimed(n, area / n, os.lstat(area / n)) for n in group])


def tidy(project: Project) -> None:
    """Remove the claim area when it is empty, so that the inbox holds only what people put there."""
    try:
        project.ingesting.rmdir()
    except OSError:  # absent, or holding a file that could not go back (the next ingest tries again)
        pass


def returned_name(name: str, n: int) -> str:
    """`chat.jsonl` for n=0, `chat.returned-1.jsonl` for n=1; the sidecar alike."""
    if n == 0:
        return name
    for suffix in (META_SUFFIX, DATA_SUFFIX):
        if name.endswith(suffix):
            return f"{name.removesuffix(suffix)}.returned-{n}{suffix}"
    return f"{name}.returned-{n}"


def _return(src: Path, dst: Path) -> None:
    if os.path.lexists(dst) and _same(dst, src):  # killed between the link and the unlink of a return
        os.unlink(src)
        return
    if not link_new(src, dst):
        raise IngestError(f"{dst} was taken while {src.name} went back to the inbox")
    os.unlink(src)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.lstat(a).st_ino == os.lstat(b).st_ino and os.lstat(a).st_dev == os.lstat(b).st_dev
    except FileNotFoundError:
        return False


def _data_of(sidecar: str) -> str:
    return sidecar.removesuffix(META_SUFFIX) + DATA_SUFFIX


def _sidecar_of(data: str) -> str:
    return data.removesuffix(DATA_SUFFIX) + META_SUFFIX
