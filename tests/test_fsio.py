"""Atomic writes and JSON-lines ledgers."""

import errno
import os
import stat

import pytest

from autopilot import fsio


def test_atomic_writes_leave_no_temp_file_and_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        fsio.atomic_write_json(tmp_path / "report.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "x.json"
    fsio.atomic_write_json(path, {"v": 1})
    with pytest.raises(ValueError):
        fsio.atomic_write_json(path, {"v": float("nan")})  # JSON has no NaN: refused before anything is written
    assert fsio.read_json(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_a_torn_last_line_is_skipped_but_a_bad_middle_line_is_an_error(tmp_path):
    path = tmp_path / "history.jsonl"
    fsio.append_jsonl(path, {"run_id": "00001"})
    with path.open("ab") as f:
        f.write(b'{"run_id": "000')
    assert [e["run_id"] for e in fsio.iter_jsonl(path)] == ["00001"]
    path.write_bytes(b'{"a": 1}\n{broken\n{"a": 2}\n')
    with pytest.raises(ValueError):
        list(fsio.iter_jsonl(path))


def test_an_append_after_a_torn_last_line_cuts_the_fragment_off_instead_of_gluing_onto_it(tmp_path, caplog):
    path = tmp_path / "history.jsonl"
    fsio.append_jsonl(path, {"run_id": "00001"})
    with path.open("ab") as f:
        f.write(b'{"run_id": "00002", "no')  # a power cut in the middle of the second record
    fsio.append_jsonl(path, {"run_id": "00002"})  # the journal records the run again
    assert path.read_bytes() == b'{"run_id": "00001"}\n{"run_id": "00002"}\n'
    assert [e["run_id"] for e in fsio.iter_jsonl(path)] == ["00001", "00002"]
    assert "cut off a torn last line of 23 bytes" in caplog.text


@pytest.mark.parametrize("tail", [b"\x00" * 40, '{"note": "caf\u00e9"}'.encode()[:-3]],
                         ids=["zeros-after-a-power-cut", "cut-inside-a-character"])
def test_torn_tails_that_are_not_even_text_are_skipped_and_cut(tmp_path, tail):
    path = tmp_path / "metrics.jsonl"
    fsio.append_jsonl(path, {"step": 1})
    with path.open("ab") as f:
        f.write(tail)
    assert list(fsio.iter_jsonl(path)) == [{"step": 1}]
    fsio.append_jsonl(path, {"step": 2})
    assert list(fsio.iter_jsonl(path)) == [{"step": 1}, {"step": 2}]


def test_a_complete_record_that_only_lost_its_newline_is_kept(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}')  # e.g. saved by an editor that drops the final newline
    fsio.append_jsonl(path, {"a": 3})
    assert [e["a"] for e in fsio.iter_jsonl(path)] == [1, 2, 3]


def test_a_short_write_on_a_full_disk_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "history.jsonl"
    fsio.append_jsonl(path, {"run_id": "00001"})
    before = path.read_bytes()
    real_write = os.write
    calls = []

    def disk_full(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:10]))  # the kernel took 10 bytes, then the disk was full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsio.os, "write", disk_full)
    with pytest.raises(OSError, match="No space left"):
        fsio.append_jsonl(path, {"run_id": "00002", "rationale": "x" * 100})
    monkeypatch.undo()
    assert path.read_bytes() == before and len(calls) == 2
    fsio.append_jsonl(path, {"run_id": "00002"})
    assert [e["run_id"] for e in fsio.iter_jsonl(path)] == ["00001", "00002"]


def test_appended_text_starts_on_a_line_of_its_own_after_a_torn_one(tmp_path):
    path = tmp_path / "labbook.md"
    path.write_text("# Lab journal\n\n## Run 00001: base")  # cut short
    fsio.append_text(path, "\n## Run 00001: baseline\n")
    assert path.read_text().splitlines()[-2:] == ["", "## Run 00001: baseline"]
