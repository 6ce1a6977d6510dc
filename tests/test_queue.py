"""The queue: FIFO names, claim by atomic rename (never twice), finish, requeue under the original name."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from autopilot import fsio
from autopilot.errors import QueueError
from autopilot.ingest import queue
from autopilot.paths import Project


def put(project: Project, priority: str, ms: int, original: str = "data.jsonl", seq: int = 0) -> Path:
    """An accepted entry as ingest leaves it: the data file and its report."""
    folder = project.queue_dir(priority)
    entry = folder / queue.entry_name(ms, seq, original)
    fsio.atomic_write_bytes(entry, f'{{"n": {ms}}}\n'.encode())
    fsio.atomic_write_json(queue.companion(entry, queue.REPORT_SUFFIX), {"priority": priority, "entry": entry.name})
    return entry


def test_entry_names_sort_first_in_first_out():
    names = [queue.entry_name(ms, seq, "z.jsonl") for ms, seq in [(999, 0), (1000, 0), (1000, 1), (10**12, 3)]]
    assert sorted(names) == names
    assert names[1] == "0000000001000-0000-z.jsonl"
    assert queue.original_name(names[1]) == "z.jsonl"


def test_a_long_original_name_is_shortened_to_fit_with_its_companions():
    name = queue.entry_name(1, 0, "é" * 200 + ".jsonl")
    assert name.endswith(".jsonl")
    assert len(queue.companion(Path(name), queue.REASON_SUFFIX).name.encode()) <= 255


def test_claim_takes_high_before_normal_before_low_and_oldest_first(tmp_path):
    project = Project(tmp_path)
    low = put(project, "low", 1)
    normal_new = put(project, "normal", 30)
    normal_old = put(project, "normal", 20)
    high = put(project, "high", 40)
    claimed = [queue.claim_next(project) for _ in range(4)]
    assert [p.name for p in claimed] == [high.name, normal_old.name, normal_new.name, low.name]
    assert all(p.parent == project.processing for p in claimed)
    assert all(queue.companion(p, queue.REPORT_SUFFIX).exists() for p in claimed)
    assert queue.claim_next(project) is None


def test_finish_moves_entry_and_report_to_done(tmp_path):
    project = Project(tmp_path)
    put(project, "normal", 5)
    claimed = queue.claim_next(project)
    done = queue.finish(project, claimed)
    assert done.parent == project.done and done.read_bytes() == b'{"n": 5}\n'
    assert queue.companion(done, queue.REPORT_SUFFIX).exists()
    assert not claimed.exists()


def test_requeue_returns_an_entry_to_its_priority_under_its_own_name(tmp_path):
    project = Project(tmp_path)
    entry = put(project, "low", 5)
    put(project, "low", 9)
    claimed = queue.claim_next(project)
    back = queue.requeue(project, claimed)
    assert back == entry
    assert queue.companion(back, queue.REPORT_SUFFIX).exists()
    assert queue.claim_next(project).name == entry.name  # it kept its place in line


def test_release_refuses_a_path_outside_processing_and_never_overwrites(tmp_path):
    project = Project(tmp_path)
    entry = put(project, "normal", 5)
    with pytest.raises(QueueError, match="only a claimed entry"):
        queue.finish(project, entry)
    claimed = queue.claim_next(project)
    fsio.atomic_write_bytes(project.done / claimed.name, b"other\n")
    with pytest.raises(QueueError, match="never overwritten"):
        queue.finish(project, claimed)
    assert claimed.exists() and (project.done / claimed.name).read_bytes() == b"other\n"


def _claim_all(root: str, out: multiprocessing.Queue) -> None:
    project = Project(Path(root))
    got = []
    while (path := queue.claim_next(project)) is not None:
        got.append(path.name)
    out.put(got)


def test_concurrent_claimers_never_get_the_same_entry(tmp_path):
    project = Project(tmp_path)
    names = {put(project, ("high", "normal", "low")[i % 3], 1000 + i).name for i in range(150)}
    out = multiprocessing.get_context("fork").Queue()
    procs = [multiprocessing.get_context("fork").Process(target=_claim_all, args=(str(tmp_path), out))
             for _ in range(3)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    claimed = [n for got in results for n in got]
    assert len(claimed) == len(set(claimed)) == 150
    assert set(claimed) == names == {p.name for p in queue.entries(project.processing)}
