"""When the queue runs low, a batch per skill at its current level goes into inbox/ and through ingest.

Called by propose before it claims the run's dataset (`top_up`): when fewer than `curriculum.min_queue` datasets
wait in queue/{high,normal,low}/, each skill of the curriculum gets one batch of `batch_size` records, a
`replay_share` of them from earlier levels (the forgotten ones when there are any, else every level below), none
from a level's held-out set. A batch is written as a producer should (sidecar first, each file to a dotfile, then
renamed) and ingested at once with the study's checks like any other file (settle time waived for these two
files only: they are complete when renamed); a batch the checks reject goes to queue/failed/ with its reason.

Usage:
    outcomes = top_up(study)      # [] when the curriculum is off or the queue holds enough
"""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path

import yaml

from autopilot import fsio
from autopilot.curriculum import SKILLS, held_out, state
from autopilot.ingest import inbox, queue
from autopilot.ingest.checks import Settings
from autopilot.ingest.recovery import recover
from autopilot.paths import PRIORITIES, Project
from autopilot.study import Study

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Batch:
    skill: str
    level: int
    number: int  # the skill's batch count: names the file and seeds its draw
    replay: tuple[int, ...]  # earlier levels mixed in


def waiting(project: Project) -> int:
    """Datasets waiting in the queue (not those claimed by a run)."""
    return sum(len(queue.entries(project.queue_dir(p))) for p in PRIORITIES)


def top_up(study: Study) -> list[inbox.Outcome]:
    """Generate and ingest one batch per skill if the curriculum is on and the queue holds fewer than min_queue."""
    c = study.settings.curriculum
    if not c.enabled or waiting(study.project) >= c.min_queue:
        return []
    with state.changing(study) as st:  # numbered first: a batch number is never used twice
        plans = [plan(st["skills"][skill], skill) for skill in c.skills]
        for p in plans:
            st["skills"][p.skill]["batches"] += 1
    paths = [write(study, p) for p in plans]
    outcomes = ingest_now(study, paths)
    for o in outcomes:
        log.log(logging.INFO if o.status == "accepted" else logging.WARNING, "curriculum batch %s: %s %s",
                o.source, o.status, o.detail)
    return outcomes


def plan(entry: dict, skill: str) -> Batch:
    forgotten = tuple(f["level"] for f in entry["forgotten"])
    return Batch(skill, entry["level"], entry["batches"] + 1, forgotten or tuple(range(1, entry["level"])))


def split(total: int, share: float, replay: tuple[int, ...]) -> dict[int, int]:
    """Records per earlier level (round robin over `replay`) for a replay share of `total`."""
    n = round(share * total) if replay else 0
    counts = dict.fromkeys(replay, 0)
    for i in range(n):
        counts[replay[i % len(replay)]] += 1
    return {level: k for level, k in counts.items() if k}


def compose(study: Study, batch: Batch) -> list[dict]:
    """The batch's records: its level and the replayed ones, shuffled; no held-out problem of any level."""
    c = study.settings.curriculum
    skill = SKILLS[batch.skill]
    replayed = split(c.batch_size, c.replay_share, batch.replay)
    counts = {batch.level: c.batch_size - sum(replayed.values()), **replayed}
    seed = f"batch:{study.settings.seed}:{batch.number}"
    records = [r for level, n in counts.items()
               for r in skill.generate(level, n, seed=seed, exclude=held_out.keys(study, batch.skill, level))]
    random.Random(seed).shuffle(records)
    return records


def file_name(study: Study, batch: Batch) -> str:
    return f"{study.name}-{batch.skill}-L{batch.level:02d}-b{batch.number:05d}.jsonl"


def write(study: Study, batch: Batch) -> Path:
    """The batch and its sidecar in inbox/, each written to a dotfile and renamed (the sidecar first)."""
    records = compose(study, batch)
    target = study.project.inbox / file_name(study, batch)
    replay = f", {sum(1 for r in records if f'-L{batch.level}-' not in r['id'])} replayed from levels " \
             f"{', '.join(map(str, batch.replay))}" if batch.replay else ""
    meta = {"spec": SKILLS[batch.skill].SPEC, "priority": study.settings.curriculum.priority,
            "note": f"curriculum batch {batch.number} of study {study.name}: {batch.skill} level {batch.level}, "
                    f"{len(records)} records{replay}"}
    study.project.inbox.mkdir(parents=True, exist_ok=True)
    fsio.atomic_write_text(inbox.sidecar_of(target), yaml.safe_dump(meta, sort_keys=False))
    fsio.atomic_write_text(target, held_out.jsonl(records))
    return target


def ingest_now(study: Study, paths: list[Path]) -> list[inbox.Outcome]:
    """Ingest exactly these inbox files, checked at the study's level, without waiting for them to settle."""
    project = study.project
    settings = dataclasses.replace(Settings.from_config(study.config.get("ingest"), project.root), settle_seconds=0)
    with queue.writer_lock(project):
        recover(project)
        outcomes = [inbox.ingest_safely(project, p, settings) for p in paths]
    return [o for o in outcomes if o is not None]
