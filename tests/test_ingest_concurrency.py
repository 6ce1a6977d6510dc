"""Two ingest processes started at once on the same inbox: no file processed twice, none lost."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml
from helpers import REPO

from autopilot.ingest import queue
from autopilot.paths import Project

AUTOPILOT = Path(sys.executable).parent / "autopilot"
FILES = 200


def record(i: int) -> bytes:
    turns = [{"role": "user", "content": f"Question number {i}?"}, {"role": "assistant", "content": f"Answer {i}."}]
    return (json.dumps({"messages": turns}) + "\n").encode()


def test_two_ingests_at_once_take_every_file_exactly_once(tmp_path):
    project = Project(tmp_path)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["ingest"] = {"default_spec": "chat_sft_v1", "settle_seconds": 0}
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    project.inbox.mkdir()
    dropped = {}
    for i in range(FILES):
        data = record(i) * (1 + i % 3)
        (project.inbox / f"part-{i:03d}.jsonl").write_bytes(data)
        if i % 10 == 0:
            (project.inbox / f"part-{i:03d}.meta.yaml").write_text("priority: high\n")
        dropped[hashlib.sha256(data).hexdigest()] = f"part-{i:03d}.jsonl"

    procs = [subprocess.Popen([str(AUTOPILOT), "--root", str(tmp_path), "ingest"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results

    entries = [e for p in ("high", "normal", "low") for e in queue.entries(project.queue_dir(p))]
    seen = Counter(hashlib.sha256(e.read_bytes()).hexdigest() for e in entries)
    assert set(seen) == set(dropped) and set(seen.values()) == {1}, "a file was lost or queued twice"
    assert len(queue.entries(project.queue_dir("high"))) == FILES // 10
    assert all(queue.companion(e, queue.REPORT_SUFFIX).exists() for e in entries)
    assert queue.failed_entries(project) == [] and list(project.inbox.iterdir()) == []
    accepted = [int(out.split()[1]) if "accepted" in out else 0 for out, _ in results]
    assert sum(accepted) == FILES, results
