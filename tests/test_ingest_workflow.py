"""The Snakemake target `ingest`: takes the inbox on every invocation, as a target or before the first new run."""

from __future__ import annotations

import os

from helpers import snakemake

from autopilot.ingest import queue
from autopilot.paths import Project

GOOD = b'{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}\n'


def drop(root, name: str, data: bytes) -> None:
    path = root / "inbox" / name
    path.write_bytes(data)
    os.utime(path, (1_000_000, 1_000_000))  # long settled


def test_snakemake_ingest_takes_the_inbox_every_time_it_is_asked(project):
    drop(project, "first.meta.yaml", b"spec: chat_sft_v1\n")
    drop(project, "first.jsonl", GOOD)
    snakemake(project, "ingest")
    drop(project, "second.meta.yaml", b"spec: chat_sft_v1\npriority: high\n")
    drop(project, "second.jsonl", GOOD)
    snakemake(project, "ingest")  # the kept marker of the first run must not make this one a no-op
    p = Project(project)
    assert [e.name.split("-", 2)[2] for e in queue.entries(p.queue_dir("normal"))] == ["first.jsonl"]
    assert [e.name.split("-", 2)[2] for e in queue.entries(p.queue_dir("high"))] == ["second.jsonl"]
    assert (project / "queue" / "ingest.log").read_text().strip().endswith("ingest: 1 accepted (high 1)")


def test_the_loop_ingests_before_its_first_new_run(project):
    dry = snakemake(project, "-n", "--config", "iterations=1")
    assert "ingest" in dry.stdout and "propose_run" in dry.stdout
