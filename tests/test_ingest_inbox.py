"""The inbox: settled files become queue entries byte for byte, rejected ones keep a reason, nothing is lost."""

from __future__ import annotations

import hashlib
import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest
from helpers import drop, ingest_settings

from autopilot import fsio, schemas
from autopilot.ingest import inbox, queue
from autopilot.ingest.inbox import ingest_inbox, summarize
from autopilot.paths import Project

LATER = time.time() + 3600  # an injected clock at which every file written by a test has settled
GOOD = b'{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}\n'


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = Project(tmp_path)
    project.inbox.mkdir()
    return project


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def every_file(project: Project) -> list[Path]:
    """Every file the project holds outside the lock, staging and intent (for "nothing lost, nothing twice")."""
    return sorted(p for p in project.root.rglob("*") if (p.is_file() or p.is_symlink())
                  and ".staging" not in p.parts and not p.name.startswith(".ingest"))


def only_entry(outcomes) -> Path:
    [outcome] = outcomes
    return outcome.entry


# ---------------------------------------------------------------- accepted and rejected


def test_an_accepted_file_is_copied_byte_for_byte_with_a_report(project):
    data = GOOD * 3
    drop(project, "chat.jsonl", data)
    outcomes = ingest_inbox(project, ingest_settings(), now=LATER)
    entry = only_entry(outcomes)
    assert outcomes[0].status == "accepted" and entry.parent == project.queue_dir("normal")
    assert entry.read_bytes() == data and entry.name.endswith("-chat.jsonl")
    report = fsio.read_json(queue.companion(entry, queue.REPORT_SUFFIX))
    schemas.validate(report, "ingest_report")
    assert report["sha256"] == sha(data) and report["bytes"] == len(data)
    assert (report["spec"], report["level"], report["priority"]) == ("chat_sft_v1", "standard", "normal")
    assert report["counts"] == {"lines": 3, "records": 3, "errors": 0, "warnings": 0}
    assert report["source"] == "chat.jsonl" and report["entry"] == entry.name
    assert not (project.inbox / "chat.jsonl").exists()
    assert summarize(outcomes) == "ingest: 1 accepted (normal 1)"


def test_a_rejected_file_goes_to_failed_with_findings_and_totals(project):
    data = GOOD + b"[1]\n" + b"{oops\n" + GOOD
    drop(project, "bad.jsonl", data)
    entry = only_entry(ingest_inbox(project, ingest_settings(), now=LATER))
    assert entry.parent == project.failed and entry.read_bytes() == data
    reason = fsio.read_json(queue.companion(entry, queue.REASON_SUFFIX))
    schemas.validate(reason, "ingest_reason")
    assert [(f["line"], f["kind"]) for f in reason["findings"]] == [(2, "not_object"), (3, "json")]
    assert reason["totals"] == {"not_object": 1, "json": 1}
    assert reason["sha256"] == sha(data) and "line 2" in reason["reason"]
    assert list(project.inbox.iterdir()) == []


def test_the_sidecar_sets_spec_and_priority_and_is_kept_in_the_report(project):
    sidecar = b"spec: completion_v1\npriority: high\nnote: from the nightly generator  # kept\n"
    drop(project, "c.meta.yaml", sidecar)
    drop(project, "c.jsonl", b'{"prompt": "2+2=", "completion": "4"}\n')
    entry = only_entry(ingest_inbox(project, ingest_settings(), now=LATER))
    assert entry.parent == project.queue_dir("high")
    report = fsio.read_json(queue.companion(entry, queue.REPORT_SUFFIX))
    assert report["spec"] == "completion_v1" and report["meta"]["note"].startswith("from the nightly")
    assert report["meta_yaml"].encode() == sidecar
    assert list(project.inbox.iterdir()) == []


@pytest.mark.parametrize("sidecar, problem", [
    (b"spec: [unclosed\n", "not valid UTF-8 YAML"),
    (b"spec: chat_sft_v1\npriority: urgent\n", "priority"),
    (b"spek: chat_sft_v1\n", "spek"),
    (b"- a list\n", "not a mapping"),
    (b"spec: \xff\n", "not valid UTF-8"),
])
def test_a_bad_sidecar_rejects_its_file_and_both_are_kept(project, sidecar, problem):
    drop(project, "d.meta.yaml", sidecar)
    drop(project, "d.jsonl", GOOD)
    entry = only_entry(ingest_inbox(project, ingest_settings(), now=LATER))
    assert entry.parent == project.failed and entry.read_bytes() == GOOD
    assert queue.companion(entry, queue.META_SUFFIX).read_bytes() == sidecar
    reason = fsio.read_json(queue.companion(entry, queue.REASON_SUFFIX))
    assert reason["findings"][0]["kind"] == "sidecar" and problem in reason["findings"][0]["message"]
    assert list(project.inbox.iterdir()) == []


def test_deny_by_default_no_spec_or_an_unknown_one_is_rejected(project):
    drop(project, "nospec.jsonl", GOOD)
    drop(project, "odd.meta.yaml", b"spec: chat_sft_v9\n")
    drop(project, "odd.jsonl", GOOD)
    outcomes = ingest_inbox(project, ingest_settings(default_spec=None), now=LATER)
    reasons = {o.source: fsio.read_json(queue.companion(o.entry, queue.REASON_SUFFIX)) for o in outcomes}
    assert reasons["nospec.jsonl"]["findings"][0]["kind"] == "no_spec"
    assert "default_spec" in reasons["nospec.jsonl"]["reason"]
    assert reasons["odd.jsonl"]["findings"][0]["kind"] == "unknown_spec"
    assert "chat_sft_v1" in reasons["odd.jsonl"]["reason"]


def test_not_a_jsonl_file_is_moved_to_failed_never_deleted(project):
    drop(project, "notes.csv", b"a,b\n1,2\n")
    entry = only_entry(ingest_inbox(project, ingest_settings(), now=LATER))
    assert entry.parent == project.failed and entry.read_bytes() == b"a,b\n1,2\n"
    assert entry.name.endswith("-notes.csv")
    reason = fsio.read_json(queue.companion(entry, queue.REASON_SUFFIX))
    assert reason["findings"][0]["kind"] == "not_jsonl"


# ---------------------------------------------------------------- names and order


def test_entries_are_named_first_in_first_out_and_never_overwrite(project):
    for i, name in enumerate(["b.jsonl", "a.jsonl", "c.jsonl"]):
        path = drop(project, name, GOOD)
        os.utime(path, (1000 + i, 1000 + i))  # dropped in the order b, a, c
    outcomes = ingest_inbox(project, ingest_settings(), now=LATER)
    assert [o.source for o in outcomes] == ["b.jsonl", "a.jsonl", "c.jsonl"]
    names = [o.entry.name for o in outcomes]
    assert sorted(names) == names and len(set(names)) == 3  # same millisecond: the sequence number orders them
    assert [queue.claim_next(project).name for _ in range(3)] == names


def test_a_taken_name_is_never_overwritten(project):
    taken = project.queue_dir("normal") / queue.entry_name(queue.now_ms(LATER), 0, "x.jsonl")
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"already here\n")
    drop(project, "x.jsonl", GOOD)
    entry = only_entry(ingest_inbox(project, ingest_settings(), now=LATER))
    assert entry != taken and entry.read_bytes() == GOOD and taken.read_bytes() == b"already here\n"


# ---------------------------------------------------------------- left alone


def test_files_still_being_written_are_left_alone(project):
    names = {".hidden.jsonl": GOOD, "upload.jsonl.part": GOOD, "gen.jsonl.tmp": GOOD, "README.md": b"# note\n"}
    for name, data in names.items():
        drop(project, name, data)
    fresh = drop(project, "fresh.jsonl", GOOD)
    outcomes = ingest_inbox(project, ingest_settings(settle_seconds=30), now=time.time())
    assert {o.status for o in outcomes} == {"waiting"} and "fresh.jsonl" in {o.source for o in outcomes}
    assert all((project.inbox / n).read_bytes() == d for n, d in names.items()) and fresh.read_bytes() == GOOD
    assert not project.queue_dir("normal").exists()
    later = ingest_inbox(project, ingest_settings(settle_seconds=30), now=time.time() + 31)
    assert [o.source for o in later if o.status == "accepted"] == ["fresh.jsonl"]


def test_a_file_waits_while_its_sidecar_is_being_written(project):
    drop(project, "s.jsonl", GOOD)
    os.utime(project.inbox / "s.jsonl", (1000, 1000))
    drop(project, "s.meta.yaml", b"priority: high\n")
    outcomes = ingest_inbox(project, ingest_settings(settle_seconds=30), now=time.time())
    assert [(o.source, o.status) for o in outcomes] == [("s.jsonl", "waiting")]
    assert only_entry(ingest_inbox(project, ingest_settings(), now=LATER)).parent == project.queue_dir("high")


def test_a_sidecar_without_its_file_waits(project):
    drop(project, "early.meta.yaml", b"spec: chat_sft_v1\n")
    outcomes = ingest_inbox(project, ingest_settings(), now=LATER)
    assert [(o.source, o.status) for o in outcomes] == [("early.meta.yaml", "waiting")]
    assert (project.inbox / "early.meta.yaml").exists()


def test_a_file_that_changes_while_it_is_read_is_left_for_next_time(project, monkeypatch):
    path = drop(project, "growing.jsonl", GOOD * 1000)
    writer = path.open("ab")  # a writer that paused longer than settle_seconds, and goes on through its descriptor
    monkeypatch.setattr(inbox.files, "held_for_writing", lambda fd: None)  # a file system without leases (NFS)
    real = inbox.check_stream

    def check_and_append(stream, spec, settings):
        writer.write(GOOD)
        writer.flush()
        return real(stream, spec, settings)

    monkeypatch.setattr(inbox, "check_stream", check_and_append)
    outcomes = ingest_inbox(project, ingest_settings(), now=LATER)
    writer.close()
    assert [(o.status, o.detail) for o in outcomes] == [("waiting", "changed while it was read")]
    assert path.read_bytes() == GOOD * 1001
    assert [p for p in every_file(project) if p != path] == []


# ---------------------------------------------------------------- the source goes only when the copy is safe


def test_the_source_stays_when_the_copy_does_not_verify(project, monkeypatch):
    drop(project, "v.jsonl", GOOD)
    monkeypatch.setattr(queue, "sha256_file", lambda path: "0" * 64)
    outcomes = ingest_inbox(project, ingest_settings(), now=LATER)
    assert outcomes[0].status == "waiting" and "did not verify" in outcomes[0].detail
    assert (project.inbox / "v.jsonl").read_bytes() == GOOD
    assert every_file(project) == [project.inbox / "v.jsonl"]


def test_a_crash_before_the_link_leaves_the_file_in_the_inbox(project, monkeypatch):
    drop(project, "k.jsonl", GOOD)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stands for SIGKILL between the copy and the link

    monkeypatch.setattr(queue, "publish", killed)
    with pytest.raises(KeyboardInterrupt):
        ingest_inbox(project, ingest_settings(), now=LATER)
    monkeypatch.undo()
    assert every_file(project) == [project.ingesting / "k.jsonl"]  # claimed: in one place, whole
    assert (project.ingesting / "k.jsonl").read_bytes() == GOOD
    outcomes = ingest_inbox(project, ingest_settings(), now=LATER)
    assert [o.status for o in outcomes] == ["accepted"]
    assert [p.parent.name for p in every_file(project)] == ["normal", "normal"]  # entry and report, once


def test_a_crash_after_the_link_is_completed_by_the_next_run_not_queued_twice(project, monkeypatch):
    drop(project, "k.meta.yaml", b"priority: low\n")
    drop(project, "k.jsonl", GOOD)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # killed after the entry was linked, before the inbox file was removed

    monkeypatch.setattr(inbox.claim_area, "release", killed)
    with pytest.raises(KeyboardInterrupt):
        ingest_inbox(project, ingest_settings(), now=LATER)
    monkeypatch.undo()
    assert (project.ingesting / "k.jsonl").exists()
    assert ingest_inbox(project, ingest_settings(), now=LATER + 1) == []
    entries = queue.entries(project.queue_dir("low"))
    assert len(entries) == 1 and entries[0].read_bytes() == GOOD
    assert list(project.inbox.iterdir()) == [] and not (project.queue / inbox.INTENT).exists()


def test_a_report_linked_without_its_entry_is_undone_by_the_next_run(project, monkeypatch):
    drop(project, "h.jsonl", GOOD)
    real_link = queue.link_new

    def link_report_then_die(src, dst):
        if dst.name.endswith(".jsonl"):
            raise KeyboardInterrupt
        return real_link(src, dst)

    monkeypatch.setattr(queue, "link_new", link_report_then_die)
    with pytest.raises(KeyboardInterrupt):
        ingest_inbox(project, ingest_settings(), now=LATER)
    monkeypatch.undo()
    outcomes = ingest_inbox(project, ingest_settings(), now=LATER + 5)
    assert [o.status for o in outcomes] == ["accepted"]
    files = every_file(project)
    assert len(files) == 2 and {p.suffix for p in files} == {".jsonl", ".json"}


# ---------------------------------------------------------------- hostile input


HOSTILE = {
    # name: (bytes, status, the kind of finding)
    "invalid_utf8.jsonl": (GOOD + b'{"messages": "\xc3\x28"}\n', "rejected", "encoding"),
    "bom.jsonl": (b"\xef\xbb\xbf" + GOOD, "rejected", "bom"),
    "crlf.jsonl": (GOOD.replace(b"\n", b"\r\n") * 2, "accepted", "crlf"),
    "blank_lines.jsonl": (GOOD + b"\n\n" + GOOD, "rejected", "blank_line"),
    "empty.jsonl": (b"", "rejected", "empty_file"),
    "not_object.jsonl": (b"[]\n42\n\"text\"\nnull\n", "rejected", "not_object"),
    "deep.jsonl": (b'{"messages": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n", "rejected", "too_deep"),
    "nested.jsonl": (b'{"messages": ' + b"[" * 500 + b"]" * 500 + b"}\n", "rejected", "schema"),
    "nul.jsonl": (GOOD[:20] + b"\x00" + GOOD[20:], "rejected", "nul_byte"),
    "name with spaces é ünï 数据.jsonl": (GOOD, "accepted", None),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_input_gets_a_clear_outcome_and_its_bytes_survive(project, name):
    data, status, kind = HOSTILE[name]
    drop(project, name, data)
    [outcome] = ingest_inbox(project, ingest_settings(), now=LATER)
    assert outcome.status == status
    assert outcome.entry.read_bytes() == data and outcome.entry.name.endswith(name)
    doc = fsio.read_json(queue.companion(outcome.entry, queue.REPORT_SUFFIX if status == "accepted"
                                         else queue.REASON_SUFFIX))
    assert doc["sha256"] == sha(data)
    if kind:
        assert kind in doc["totals"]
    if status == "rejected":
        assert doc["findings"] and all(f["message"] for f in doc["findings"])
    assert list(project.inbox.iterdir()) == []


def test_a_file_name_that_is_not_utf8_is_ingested_under_a_printable_name(project):
    raw_name = os.fsencode(project.inbox) + b"/caf\xe9 latin1.jsonl"
    with open(raw_name, "wb") as f:
        f.write(GOOD)
    [outcome] = ingest_inbox(project, ingest_settings(), now=LATER)
    assert outcome.status == "accepted" and outcome.entry.name.endswith("caf\ufffd latin1.jsonl")
    report = fsio.read_json(queue.companion(outcome.entry, queue.REPORT_SUFFIX))
    assert report["entry"] == outcome.entry.name and report["source"] == "caf\\xe9 latin1.jsonl"
    assert outcome.entry.read_bytes() == GOOD and list(project.inbox.iterdir()) == []


def test_a_symlink_out_of_the_inbox_is_rejected_and_its_target_untouched(project, tmp_path):
    secret = tmp_path / "outside" / "secret.jsonl"
    secret.parent.mkdir()
    secret.write_bytes(GOOD)
    os.symlink(secret, project.inbox / "link.jsonl")
    [outcome] = ingest_inbox(project, ingest_settings(), now=LATER)
    assert outcome.status == "rejected"
    assert outcome.entry.is_symlink() and os.readlink(outcome.entry) == str(secret)
    reason = fsio.read_json(queue.companion(outcome.entry, queue.REASON_SUFFIX))
    schemas.validate(reason, "ingest_reason")
    assert reason["findings"][0]["kind"] == "symlink" and str(secret) in reason["reason"]
    assert secret.read_bytes() == GOOD and list(secret.parent.iterdir()) == [secret]
    assert list(project.inbox.iterdir()) == []


def test_a_50_mb_single_line_is_rejected_without_being_held_in_memory(project):
    data = b'{"messages": "' + b"x" * (50 * 1024 * 1024) + b'"}\n'
    drop(project, "huge.jsonl", data)
    tracemalloc.start()
    try:
        [outcome] = ingest_inbox(project, ingest_settings(), now=LATER)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert outcome.status == "rejected" and peak < 20 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
    reason = fsio.read_json(queue.companion(outcome.entry, queue.REASON_SUFFIX))
    assert [f["kind"] for f in reason["findings"]] == ["line_too_long"]
    assert reason["sha256"] == sha(data) and outcome.entry.stat().st_size == len(data)


# ---------------------------------------------------------------- retry


def test_retry_puts_a_failed_file_back_and_keeps_its_reason_as_history(project):
    drop(project, "r.meta.yaml", b"spec: chat_sft_v2\n")
    drop(project, "r.jsonl", GOOD)
    failed = only_entry(ingest_inbox(project, ingest_settings(), now=LATER))
    back = queue.retry(project, failed.name)
    assert back == project.inbox / "r.jsonl" and back.read_bytes() == GOOD
    assert (project.inbox / "r.meta.yaml").read_bytes() == b"spec: chat_sft_v2\n"
    kept = project.failed / "retried" / queue.companion(failed, queue.REASON_SUFFIX).name
    assert fsio.read_json(kept)["findings"][0]["kind"] == "unknown_spec"
    assert queue.failed_entries(project) == []
    (project.inbox / "r.meta.yaml").write_bytes(b"spec: chat_sft_v1\n")  # the fix
    entry = only_entry(ingest_inbox(project, ingest_settings(), now=LATER + 10))
    report = fsio.read_json(queue.companion(entry, queue.REPORT_SUFFIX))
    assert report["history"] == [str(kept.relative_to(project.root))]


def test_retry_refuses_an_unknown_name_and_a_taken_inbox_name(project):
    from autopilot.errors import QueueError

    with pytest.raises(QueueError, match="no failed entry"):
        queue.retry(project, "nothing.jsonl")
    drop(project, "t.jsonl", b"[]\n")
    failed = only_entry(ingest_inbox(project, ingest_settings(), now=LATER))
    drop(project, "t.jsonl", GOOD)
    with pytest.raises(QueueError, match="exists"):
        queue.retry(project, failed.name)
    assert failed.read_bytes() == b"[]\n" and (project.inbox / "t.jsonl").read_bytes() == GOOD


def test_reports_travel_with_claims(project):
    drop(project, "t.jsonl", GOOD)
    ingest_inbox(project, ingest_settings(), now=LATER)
    claimed = queue.claim_next(project)
    report = json.loads(queue.companion(claimed, queue.REPORT_SUFFIX).read_text())
    assert report["entry"] == claimed.name and report["priority"] == "normal"
