"""Ingest under hostile input and a hostile world: one bad file never stops the ingest, nothing is lost.

Sidecars that are FIFOs, directories, links, huge, deeply nested, alias bombs or not UTF-8; data files over the
size limit; an unexpected error in one file; a full disk; a writer that stalls longer than settle_seconds; a
producer that replaces a file while it is ingested.
"""

from __future__ import annotations

import errno
import os
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import drop, ingest_settings

from autopilot import fsio, schemas
from autopilot.ingest import claim_area, files, inbox, queue
from autopilot.ingest.inbox import ingest_inbox
from autopilot.paths import Project

LATER = time.time() + 3600  # an injected clock at which every file written by a test has settled
GOOD = b'{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}\n'
ALIAS_BOMB = b'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + b"".join(
    f'{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},'
    f'*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n'.encode() for i in range(8)
) + b"spec: chat_sft_v1\nnote: *i\n"  # 9**9 strings once walked: a schema message or a JSON dump never ends


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = Project(tmp_path / "p")
    project.inbox.mkdir(parents=True)
    return project


def reason_of(entry: Path) -> dict:
    reason = fsio.read_json(queue.companion(entry, queue.REASON_SUFFIX))
    schemas.validate(reason, "ingest_reason")
    return reason


def bounded_ingest(project: Project, **overrides) -> tuple[list, float, int]:
    """Ingest with the time it took and the peak of Python's allocations."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        outcomes = ingest_inbox(project, ingest_settings(**overrides), now=LATER)
        return outcomes, time.monotonic() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------- hostile sidecars


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_dir(path: Path) -> None:
    path.mkdir()


def make_link(path: Path) -> None:
    target = path.parent.parent / "elsewhere.yaml"
    target.write_bytes(b"spec: chat_sft_v1\n")
    os.symlink(target, path)


def make_huge(path: Path) -> None:
    with path.open("wb") as f:
        f.write(b"spec: chat_sft_v1\nnote: ")
        f.truncate(256 * 1024 * 1024)  # sparse: costs no disk, but a plain read takes 256 MiB of memory


SIDECARS = {
    # name: (how to make x.meta.yaml, what the reason says, whether the sidecar moves beside the file)
    "fifo": (make_fifo, "is a FIFO (named pipe), not a regular file", True),
    "directory": (make_dir, "is a directory (left in inbox/), not a regular file", False),
    "symlink": (make_link, "is a symbolic link; links are never followed", True),
    "huge": (make_huge, f"more than {64 * 1024} bytes", True),
    "deep": (lambda p: p.write_bytes(b"spec: chat_sft_v1\nnote: " + b"[" * 30_000 + b"]" * 30_000 + b"\n"),
             "nested deeper than 8 levels", True),
    "alias_bomb": (lambda p: p.write_bytes(ALIAS_BOMB), "aliases (*name) are not allowed", True),
    "invalid_utf8": (lambda p: p.write_bytes(b"spec: chat_sft_v1\nnote: caf\xe9\n"), "invalid UTF-8 at byte 28", True),
    "huge_integer": (lambda p: p.write_bytes(b"priority: " + b"9" * 50_000 + b"\n"), "not valid UTF-8 YAML", True),
}


@pytest.mark.parametrize("case", list(SIDECARS))
def test_a_hostile_sidecar_rejects_its_file_with_a_reason_in_bounded_time_and_memory(project, case):
    make, says, moves = SIDECARS[case]
    make(project.inbox / "x.meta.yaml")
    drop(project, "x.jsonl", GOOD)
    drop(project, "other.jsonl", GOOD)  # the next file is ingested as usual
    outcomes, seconds, peak = bounded_ingest(project)
    by_source = {o.source: o for o in outcomes}
    assert by_source["other.jsonl"].status == "accepted"
    rejected = by_source["x.jsonl"]
    assert rejected.status == "rejected" and rejected.entry.parent == project.failed
    assert rejected.entry.read_bytes() == GOOD
    [finding] = reason_of(rejected.entry)["findings"]
    assert finding["kind"] == "sidecar" and finding["message"].startswith("x.meta.yaml") and says in finding["message"]
    assert seconds < 20 and peak < 16 * 1024 * 1024, f"{seconds:.1f} s, peak {peak / 2**20:.0f} MiB"
    kept = queue.companion(rejected.entry, queue.META_SUFFIX)
    assert os.path.lexists(kept) == moves and os.path.lexists(project.inbox / "x.meta.yaml") != moves
    if case == "symlink":
        assert kept.is_symlink() and (project.root / "elsewhere.yaml").read_bytes() == b"spec: chat_sft_v1\n"


def test_a_fifo_named_like_a_data_file_is_left_alone_without_blocking(project):
    os.mkfifo(project.inbox / "pipe.jsonl")
    outcomes, seconds, _ = bounded_ingest(project)
    assert [(o.source, o.status) for o in outcomes] == [("pipe.jsonl", "waiting")]
    assert "FIFO" in outcomes[0].detail and seconds < 20
    assert (project.inbox / "pipe.jsonl").exists()


def test_validate_refuses_a_fifo_instead_of_waiting_for_a_writer(project, tmp_path):
    from autopilot.cli import main

    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)
    result = CliRunner().invoke(main, ["--root", str(project.root), "validate", str(fifo), "--spec", "chat_sft_v1"])
    assert result.exit_code == 1 and "is a FIFO (named pipe), not a regular file" in result.output


# ---------------------------------------------------------------- data files


def test_a_data_file_over_max_file_bytes_is_moved_to_failed_unread(project, monkeypatch):
    data = GOOD * 100
    drop(project, "big.jsonl", data)
    drop(project, "big.meta.yaml", b"priority: high\n")
    monkeypatch.setattr(inbox, "check_stream", lambda *a: pytest.fail("a file over the limit must not be read"))
    [outcome] = ingest_inbox(project, ingest_settings(max_file_bytes=1000), now=LATER)
    assert outcome.status == "rejected" and outcome.entry.read_bytes() == data
    reason = reason_of(outcome.entry)
    assert reason["findings"][0]["kind"] == "too_large" and "max_file_bytes=1000" in reason["reason"]
    assert reason["sha256"] is None and reason["bytes"] == len(data)
    assert queue.companion(outcome.entry, queue.META_SUFFIX).read_bytes() == b"priority: high\n"
    assert list(project.inbox.iterdir()) == []


def test_an_unexpected_error_in_one_file_fails_that_file_only(project, monkeypatch):
    drop(project, "cursed.jsonl", GOOD)
    drop(project, "cursed.meta.yaml", b"priority: low\n")
    drop(project, "fine.jsonl", GOOD)
    real = inbox.check_stream

    def check(stream, spec, settings):
        if b"cursed" in b"".join(p.name.encode() for p in project.ingesting.iterdir()):
            raise RuntimeError("a bug in a check")
        return real(stream, spec, settings)

    monkeypatch.setattr(inbox, "check_stream", check)
    outcomes = {o.source: o for o in ingest_inbox(project, ingest_settings(), now=LATER)}
    assert outcomes["fine.jsonl"].status == "accepted"
    failed = outcomes["cursed.jsonl"]
    assert failed.status == "rejected" and failed.entry.read_bytes() == GOOD
    reason = reason_of(failed.entry)
    assert reason["findings"][0]["kind"] == "internal_error" and "RuntimeError: a bug in a check" in reason["reason"]
    assert queue.companion(failed.entry, queue.META_SUFFIX).read_bytes() == b"priority: low\n"
    assert list(project.inbox.iterdir()) == [] and list(queue.staging(project).iterdir()) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_while_staging_leaves_the_inbox_file_intact_and_the_ingest_going(project, monkeypatch, code):
    path = drop(project, "chat.jsonl", GOOD * 100)
    before = path.stat()
    real = inbox._Tee.readinto
    calls = []

    def full_after_the_first_piece(self, buffer):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(code, os.strerror(code))
        return real(self, buffer)

    monkeypatch.setattr(inbox._Tee, "readinto", full_after_the_first_piece)
    monkeypatch.setattr(queue, "CHUNK", 512)  # several pieces: the disk fills in the middle of the copy
    [outcome] = ingest_inbox(project, ingest_settings(), now=LATER)
    assert outcome.status == "waiting" and "no space left" in outcome.detail
    after = path.stat()
    assert path.read_bytes() == GOOD * 100 and (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert list(queue.staging(project).iterdir()) == [] and not project.failed.exists()
    monkeypatch.undo()
    [outcome] = ingest_inbox(project, ingest_settings(), now=LATER)
    assert outcome.status == "accepted" and outcome.entry.read_bytes() == GOOD * 100


def test_the_ingest_command_exits_0_on_a_full_disk_so_the_loop_goes_on(project, monkeypatch):
    from autopilot.cli import main

    drop(project, "chat.jsonl", GOOD)
    os.utime(project.inbox / "chat.jsonl", (1000, 1000))

    def full(self, buffer):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(inbox._Tee, "readinto", full)
    result = CliRunner().invoke(main, ["--root", str(project.root), "ingest"])
    assert result.exit_code == 0, result.output
    assert "1 waiting" in result.output and (project.inbox / "chat.jsonl").read_bytes() == GOOD


def test_too_little_free_space_for_the_copy_waits_before_writing_a_byte(project, monkeypatch):
    drop(project, "chat.jsonl", GOOD)
    monkeypatch.setattr(inbox, "free_bytes", lambda folder: inbox.STAGING_RESERVE)
    [outcome] = ingest_inbox(project, ingest_settings(), now=LATER)
    assert outcome.status == "waiting" and "not enough free space" in outcome.detail
    assert (project.inbox / "chat.jsonl").read_bytes() == GOOD and list(queue.staging(project).iterdir()) == []


# ---------------------------------------------------------------- writers that stall, producers that replace


def test_a_writer_that_stalls_past_settle_seconds_is_not_ingested_half_way(project):
    path = project.inbox / "gen.jsonl"
    writer = path.open("wb")
    writer.write(GOOD * 10)  # half of it, in whole lines: a partial file that would pass every check
    writer.flush()
    os.utime(path, (time.time() - 60, time.time() - 60))  # ...and then nothing for a minute
    [outcome] = ingest_inbox(project, ingest_settings(settle_seconds=5))
    assert outcome.status == "waiting" and "still open for writing" in outcome.detail
    writer.write(GOOD * 10)  # the writer goes on: its bytes land in the file, none is lost
    writer.close()
    [outcome] = ingest_inbox(project, ingest_settings(), now=LATER)
    assert outcome.status == "accepted" and outcome.entry.read_bytes() == GOOD * 20


def test_a_replacement_dropped_while_a_file_is_ingested_is_never_removed(project, monkeypatch):
    drop(project, "daily.jsonl", GOOD)
    real = queue.publish

    def publish_then_a_new_version_arrives(*args, **kwargs):
        entry = real(*args, **kwargs)
        drop(project, "daily.jsonl.tmp", GOOD * 2)
        os.rename(project.inbox / "daily.jsonl.tmp", project.inbox / "daily.jsonl")  # a producer's atomic replace
        return entry

    monkeypatch.setattr(queue, "publish", publish_then_a_new_version_arrives)
    [outcome] = ingest_inbox(project, ingest_settings(), now=LATER)
    assert outcome.status == "accepted" and outcome.entry.read_bytes() == GOOD
    assert (project.inbox / "daily.jsonl").read_bytes() == GOOD * 2  # the new version waits for the next ingest
    monkeypatch.undo()
    [outcome] = ingest_inbox(project, ingest_settings(), now=LATER)
    assert outcome.status == "accepted" and outcome.entry.read_bytes() == GOOD * 2


def test_a_file_changed_after_it_was_read_goes_back_instead_of_being_removed(project, monkeypatch):
    path = drop(project, "late.jsonl", GOOD)
    real = queue.publish

    def publish_then_a_late_write(*args, **kwargs):
        entry = real(*args, **kwargs)
        with (project.ingesting / "late.jsonl").open("ab") as f:  # a writer without a lease check (NFS)
            f.write(GOOD)
        return entry

    monkeypatch.setattr(queue, "publish", publish_then_a_late_write)
    [outcome] = ingest_inbox(project, ingest_settings(), now=LATER)
    assert outcome.status == "accepted" and outcome.entry.read_bytes() == GOOD
    assert path.read_bytes() == GOOD * 2 and not project.ingesting.exists()


def test_a_crash_while_reading_gives_the_claimed_pair_back_on_the_next_run(project, monkeypatch):
    drop(project, "k.meta.yaml", b"priority: high\n")
    drop(project, "k.jsonl", GOOD)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stands for SIGKILL in the middle of the checks

    monkeypatch.setattr(inbox, "check_stream", killed)
    with pytest.raises(KeyboardInterrupt):
        ingest_inbox(project, ingest_settings(), now=LATER)
    monkeypatch.undo()
    assert sorted(os.listdir(project.ingesting)) == ["k.jsonl", "k.meta.yaml"]
    drop(project, "k.jsonl", GOOD * 3)  # meanwhile a new file took the name: both are kept, each with its sidecar
    outcomes = ingest_inbox(project, ingest_settings(), now=LATER)
    assert sorted((o.source, o.entry.read_bytes()) for o in outcomes) == [
        ("k.jsonl", GOOD * 3), ("k.returned-1.jsonl", GOOD)]
    returned = next(o for o in outcomes if o.source == "k.returned-1.jsonl")
    assert returned.entry.parent == project.queue_dir("high")
    assert list(project.inbox.iterdir()) == []


def test_the_lease_probe_tells_an_open_writer(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fd = files.open_regular(path)
    try:
        assert files.held_for_writing(fd) is False
        with path.open("ab"):
            assert files.held_for_writing(fd) is True
        assert files.held_for_writing(fd) is False
    finally:
        os.close(fd)


def test_a_claim_never_replaces_and_gives_back_under_a_free_name(project):
    path = drop(project, "a.jsonl", b"1\n")
    claimed = claim_area.take(project, "a.jsonl", path.lstat())
    assert claimed is not None and not path.exists()
    drop(project, "a.jsonl", b"2\n")
    claim_area.give_back(project, [claimed])
    assert (project.inbox / "a.jsonl").read_bytes() == b"2\n"
    assert (project.inbox / "a.returned-1.jsonl").read_bytes() == b"1\n"


def test_concurrent_producers_lose_nothing(project):
    """Producers write under .tmp names and rename while ingest runs again and again: every file arrives once."""
    stop = threading.Event()
    written = []

    def produce():
        for i in range(60):
            tmp = project.inbox / f"f{i}.jsonl.tmp"
            tmp.write_bytes(GOOD * (i + 1))
            os.rename(tmp, project.inbox / f"f{i}.jsonl")
            written.append(i)
        stop.set()

    thread = threading.Thread(target=produce)
    thread.start()
    seen = []
    while not stop.is_set() or any(p.name.endswith(".jsonl") for p in project.inbox.iterdir()):
        seen += [o for o in ingest_inbox(project, ingest_settings(settle_seconds=0)) if o.status == "accepted"]
    thread.join()
    assert sorted(o.source for o in seen) == sorted(f"f{i}.jsonl" for i in written)
    assert all(o.entry.read_bytes() == GOOD * (int(o.source[1:-6]) + 1) for o in seen)
