"""Atomic writes and JSON-lines ledgers."""

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
